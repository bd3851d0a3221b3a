/*
 * checkpoint_load.c - reading a checkpoint back, collectively, under any
 * layout: every rank reads what it holds of each tensor (its block; mirrors
 * too) with parallel HDF5, whatever layout wrote the file (global-view,
 * DESIGN decision 2). The file is verified first (mt_ckpt_verify, rank 0).
 */
#include <string.h>

#include "io/checkpoint_private.h"
#include "io/h5util.h"

/* Collective: reads this rank's block of tensor t (mirrors too) from its
 * dataset; a rank holding none of it joins with an empty selection. */
static int read_tensor(hid_t f, hid_t dxpl, const char *file, const mt_tensor_view *t, mt_err *e) {
    const char *path = t->path;
    mt_ckpt_geom g;
    mt_ckpt_geometry(t, 1, 1, &g); /* (the chunking is the file's own) */
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0) return mt_err_set(e, MT_ERR_CKPT, "checkpoint %s has no tensor %s", file, path);
    hid_t space = H5Dget_space(ds);
    hsize_t dims[H5S_MAX_RANK];
    int nd = H5Sget_simple_extent_dims(space, dims, NULL);
    int bad = nd != g.ndim;
    for (int d = 0; !bad && d < nd; d++) bad = dims[d] != g.gdims[d];
    if (bad) {
        mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: %s has another shape than the model's", file,
                   path);
        H5Sselect_none(space); /* still join the collective read */
    }
    /* the rows held: the whole block, or a range of whole rows of it
     * (mt_ckpt_check_views) */
    hsize_t lo = g.inner ? (hsize_t)t->begin / g.inner : 0;
    hsize_t hi = g.inner ? (hsize_t)(t->begin + t->count) / g.inner : 0;
    hid_t mspace;
    mt_ckpt_select_rows(&g, lo, t->held && !bad ? hi : lo, space, &mspace);
    float *buf = t->data ? t->data : mt_ckpt_no_data();
    if (H5Dread(ds, H5T_NATIVE_FLOAT, mspace, space, dxpl, buf) < 0 && !bad) {
        bad = 1;
        mt_err_set(e, MT_ERR_CKPT,
                   "checkpoint %s: reading %s failed its checksum (the file is corrupt)", file,
                   path);
    }
    H5Sclose(mspace);
    H5Sclose(space);
    H5Dclose(ds);
    return bad;
}

/* The optimizer kind and step count of the open file f. */
static void read_optim(hid_t f, const char *path, char kind[16], int64_t *steps, mt_err *e) {
    hid_t a = H5Aopen_by_name(f, "/optim", "kind", H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || mt_ckpt_read_string(a, 1, kind, 16, NULL))
        mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: no optimizer kind", path);
    if (a >= 0) H5Aclose(a);
    a = H5Aopen_by_name(f, "/optim", "step_count", H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || mt_h5_npoints(a) != 1 || H5Aread(a, H5T_NATIVE_INT64, steps) < 0)
        mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: no optimizer step count", path);
    if (a >= 0) H5Aclose(a);
}

int mt_ckpt_load(const mt_comm *c, const char *path, const char *optim_kind,
                 const mt_tensor_view *views, int nv, int64_t *optim_steps, mt_err *e) {
    mt_ckpt_check_views(c, views, nv, 1, e);
    if (mt_comm_agree(c, e)) return e->code;
    mt_h5_quiet();
    hid_t fapl = mt_ckpt_fapl(c->world);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        mt_err_set(e, MT_ERR_CKPT, "cannot open checkpoint %s", path);
        return mt_comm_agree(c, e);
    }
    mt_err local = {0}; /* every rank makes every collective call, even after an error */
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    char kind[16] = "";
    int64_t steps = 0;
    read_optim(f, path, kind, &steps, &local);
    /* another optimizer's state is not read (the weights still are, alike
     * on every rank: the file is the same) */
    int same = strcmp(kind, optim_kind) == 0;
    if (!same)
        mt_err_set(&local, MT_ERR_CKPT, "checkpoint %s: optimizer '%s' does not match", path, kind);
    for (int i = 0; i < nv; i++)
        if (same || strncmp(views[i].path, "/model/", 7) == 0)
            read_tensor(f, dxpl, path, &views[i], &local);
    *optim_steps = steps;
    H5Pclose(dxpl);
    H5Fclose(f);
    if (local.code) *e = local;
    return mt_comm_agree(c, e);
}
