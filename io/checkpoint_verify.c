/*
 * checkpoint_verify.c - checking a checkpoint file completely on one process
 * (mpitrain ckpt verify | inspect, and before every resume): the SHA-256 in
 * the .sha256 beside it, HDF5 structure, format and version, every
 * attribute, every tensor read back through its Fletcher32 checksums, and
 * optimizer state for every weight. docs/CHECKPOINT_FORMAT.md section 5
 * lists the checks in order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/checkpoint_private.h"
#include "io/files.h"
#include "io/h5util.h"
#include "io/sha256.h"

typedef struct {
    hid_t f;
    const char *file;
    mt_ckpt_info *info;
    int hash;
    mt_err *e;
} walk_ctx;

static int add_tensor(walk_ctx *w, const char *path) {
    mt_ckpt_info *in = w->info;
    hid_t ds = H5Dopen2(w->f, path, H5P_DEFAULT);
    if (ds < 0)
        return mt_err_set(w->e, MT_ERR_CKPT, "checkpoint %s: %s is not a dataset", w->file, path);
    hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
    hsize_t dims[H5S_MAX_RANK];
    int nd = H5Sget_simple_extent_dims(space, dims, NULL);
    int is_f32 = H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4;
    H5Tclose(type);
    H5Sclose(space);
    if (!is_f32 || nd < 1 || nd > MT_VIEW_MAX_DIMS) {
        H5Dclose(ds);
        return mt_err_set(w->e, MT_ERR_CKPT,
                          "checkpoint %s: %s must be a float32 tensor of 1 to %d dimensions",
                          w->file, path, MT_VIEW_MAX_DIMS);
    }
    mt_ckpt_tensor *nt = realloc(in->tensors, (size_t)(in->n_tensors + 1) * sizeof *nt);
    if (!nt) abort();
    in->tensors = nt;
    mt_ckpt_tensor *t = &nt[in->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->path, sizeof t->path, "%s", path);
    t->ndim = nd;
    size_t bytes = 0;
    for (int d = 0; d < nd; d++) t->shape[d] = (int64_t)dims[d];
    if (mt_h5_bytes(dims, nd, sizeof(float), &bytes)) {
        H5Dclose(ds);
        return mt_err_set(w->e, MT_ERR_CKPT,
                          "checkpoint %s: %s has more elements than memory can hold (the file "
                          "is damaged)",
                          w->file, path);
    }
    if (mt_h5_short(ds, bytes)) {
        H5Dclose(ds);
        return mt_err_set(w->e, MT_ERR_CKPT,
                          "checkpoint %s: %s claims %zu bytes, more than the file stores for it "
                          "(the file is damaged)",
                          w->file, path, bytes);
    }
    size_t n = bytes / sizeof(float);
    float *x = malloc(bytes + 4);
    if (!x) {
        H5Dclose(ds);
        return mt_err_set(w->e, MT_ERR_INTERNAL, "out of memory reading %s of checkpoint %s", path,
                          w->file);
    }
    /* reading passes every chunk through its Fletcher32 check */
    if (n && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        mt_err_set(w->e, MT_ERR_CKPT,
                   "checkpoint %s: %s fails its checksum or cannot be read (the file is corrupt)",
                   w->file, path);
    else if (w->hash)
        mt_sha256_buf(x, n * sizeof(float), t->sha256);
    free(x);
    H5Dclose(ds);
    return w->e->code;
}

static herr_t visit_model(hid_t g, const char *name, const H5L_info_t *li, void *data) {
    (void)g;
    (void)li;
    walk_ctx *w = data;
    char path[MT_VIEW_PATH_LEN];
    if (strlen(name) >= MT_VIEW_NAME_LEN)
        return mt_err_set(w->e, MT_ERR_CKPT, "checkpoint %s: tensor name '%.40s...' is too long",
                          w->file, name),
               -1;
    snprintf(path, sizeof path, "/model/%s", name);
    return add_tensor(w, path) ? -1 : 0;
}

int mt_ckpt_check_sidecar(const char *path, char sha_hex[72], int *checked, mt_err *e) {
    *checked = 0;
    sha_hex[0] = '\0';
    char side[MT_CKPT_PATH];
    if (mt_ckpt_path(side, sizeof side, e, "%s.sha256", path)) return e->code;
    struct stat st;
    if (stat(side, &st) != 0) return MT_OK; /* no sidecar: *checked stays 0 */
    char *text;
    size_t len;
    if (mt_file_read(side, "checksum file", MT_ERR_CKPT, &text, &len, e)) return e->code;
    int ok = len >= 64;
    for (int i = 0; ok && i < 64; i++) ok = strchr("0123456789abcdef", text[i]) && text[i];
    char want[65] = "";
    if (ok) memcpy(want, text, 64); /* (a shorter file has fewer bytes to copy) */
    want[64] = '\0';
    free(text);
    if (!ok)
        return mt_err_set(e, MT_ERR_CKPT, "checksum file %s does not start with a SHA-256", side);
    if (mt_sha256_file(path, sha_hex, e)) return e->code = MT_ERR_CKPT;
    *checked = 1;
    if (strcmp(want, sha_hex) != 0) {
        mt_err_set(e, MT_ERR_CKPT,
                   "checkpoint %s is corrupt: its SHA-256 %.16s... differs from %.16s... "
                   "recorded in %s (changed or truncated after it was written)",
                   path, sha_hex, want, side);
        return e->code;
    }
    return MT_OK;
}

int mt_ckpt_verify(const char *path, int hash_tensors, mt_ckpt_info *info, mt_err *e) {
    memset(info, 0, sizeof *info);
    mt_h5_quiet();
    struct stat st;
    if (stat(path, &st) != 0)
        return mt_err_set(e, MT_ERR_CKPT, "cannot read checkpoint %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return mt_err_set(e, MT_ERR_CKPT, "checkpoint %s is not a regular file", path);
    if (mt_ckpt_check_sidecar(path, info->file_sha256, &info->has_sidecar, e)) return e->code;
    if (H5Fis_hdf5(path) <= 0)
        return mt_err_set(e, MT_ERR_CKPT,
                          "checkpoint %s is not an HDF5 file (truncated or damaged)", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mt_err_set(e, MT_ERR_CKPT, "cannot open checkpoint %s (truncated or damaged HDF5)",
                          path);
    mt_ckpt_read_header(f, path, &info->format_version, &info->meta, e);
    if (!e->code) {
        hid_t ds =
            H5Lexists(f, "/config", H5P_DEFAULT) > 0 ? H5Dopen2(f, "/config", H5P_DEFAULT) : -1;
        if (ds < 0 || mt_ckpt_read_string(ds, 0, NULL, 0, &info->config_text) ||
            !info->config_text[0])
            mt_err_set(e, MT_ERR_CKPT, "checkpoint %s has no readable /config", path);
        if (ds >= 0) H5Dclose(ds);
    }
    walk_ctx w = {f, path, info, hash_tensors, e};
    if (!e->code) {
        if (H5Lexists(f, "/model", H5P_DEFAULT) <= 0)
            mt_err_set(e, MT_ERR_CKPT, "checkpoint %s has no /model group", path);
        else
            H5Literate_by_name(f, "/model", H5_INDEX_NAME, H5_ITER_INC, NULL, visit_model, &w,
                               H5P_DEFAULT);
        if (!e->code && info->n_tensors == 0)
            mt_err_set(e, MT_ERR_CKPT, "checkpoint %s holds no weights", path);
    }
    const char *states[MT_CKPT_MAX_STATES];
    int ns = e->code ? 0 : mt_ckpt_state_names(info->meta.optim_kind, states);
    if (ns < 0)
        mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: unknown optimizer kind '%s'", path,
                   info->meta.optim_kind);
    int nmodel = info->n_tensors;
    for (int s = 0; s < ns && !e->code; s++)
        for (int i = 0; i < nmodel && !e->code; i++) {
            char sp[MT_VIEW_PATH_LEN]; /* the name is < MT_VIEW_NAME_LEN (visit_model) */
            snprintf(sp, sizeof sp, "/optim/%s/%s", states[s], info->tensors[i].path + 7);
            if (H5Lexists(f, "/optim", H5P_DEFAULT) <= 0 || H5Lexists(f, sp, H5P_DEFAULT) <= 0 ||
                H5Oexists_by_name(f, sp, H5P_DEFAULT) <= 0) {
                mt_err_set(e, MT_ERR_CKPT, "checkpoint %s lacks optimizer state %s", path, sp);
                break;
            }
            if (add_tensor(&w, sp)) break;
            const mt_ckpt_tensor *a = &info->tensors[i], *b = &info->tensors[info->n_tensors - 1];
            if (a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof a->shape) != 0)
                mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: %s and %s differ in shape", path,
                           a->path, b->path);
        }
    if (H5Fclose(f) < 0) mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: cannot close", path);
    return e->code;
}

void mt_ckpt_info_free(mt_ckpt_info *info) {
    free(info->config_text);
    free(info->tensors);
    memset(info, 0, sizeof *info);
}
