/* weights.c - a checkpoint's or model file's weights in memory (see weights.h). */
#include "io/weights.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/h5util.h"

#define MODELFILE_FORMAT "mpitrain-model" /* io/modelfile.c's format attribute */

typedef struct {
    hid_t f;
    const char *file;
    mt_weights *w;
    mt_err *e;
} walk_ctx;

/* Reads dataset /model/<name> into a new entry of w (every chunk through its
 * Fletcher32 check). */
static int read_tensor(walk_ctx *c, const char *name) {
    char path[MT_VIEW_PATH_LEN];
    if (strlen(name) >= MT_VIEW_NAME_LEN)
        return mt_err_set(c->e, MT_ERR_CKPT, "%s: tensor name '%.40s...' is too long", c->file,
                          name);
    snprintf(path, sizeof path, "/model/%s", name);
    hid_t ds = H5Dopen2(c->f, path, H5P_DEFAULT);
    if (ds < 0) return mt_err_set(c->e, MT_ERR_CKPT, "%s: %s is not a dataset", c->file, path);
    hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
    hsize_t dims[H5S_MAX_RANK];
    int nd = H5Sget_simple_extent_dims(space, dims, NULL);
    int f32 = H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4;
    H5Tclose(type);
    H5Sclose(space);
    mt_weight *nw = f32 && nd >= 1 && nd <= MT_VIEW_MAX_DIMS
                        ? realloc(c->w->w, (size_t)(c->w->n + 1) * sizeof *nw)
                        : NULL;
    if (!nw) {
        H5Dclose(ds);
        return mt_err_set(c->e, MT_ERR_CKPT, "%s: %s is not a float32 tensor of 1 to %d dimensions",
                          c->file, path, MT_VIEW_MAX_DIMS);
    }
    c->w->w = nw;
    mt_weight *t = &nw[c->w->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = nd;
    size_t bytes = 0;
    for (int d = 0; d < nd; d++) t->shape[d] = (int64_t)dims[d];
    if (mt_h5_bytes(dims, nd, sizeof(float), &bytes)) {
        H5Dclose(ds);
        return mt_err_set(c->e, MT_ERR_CKPT,
                          "%s: %s has more elements than memory can hold (the file is damaged)",
                          c->file, path);
    }
    if (mt_h5_short(ds, bytes)) {
        H5Dclose(ds);
        return mt_err_set(c->e, MT_ERR_CKPT,
                          "%s: %s claims %zu bytes, more than the file stores for it (the file is "
                          "damaged)",
                          c->file, path, bytes);
    }
    size_t n = bytes / sizeof(float);
    t->data = malloc(bytes + 4);
    if (!t->data) {
        H5Dclose(ds);
        return mt_err_set(c->e, MT_ERR_INTERNAL, "out of memory reading %s of %s", path, c->file);
    }
    c->w->n++;
    if (n && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
        mt_err_set(c->e, MT_ERR_CKPT,
                   "%s: %s fails its checksum or cannot be read (the file is corrupt)", c->file,
                   path);
    H5Dclose(ds);
    return c->e->code;
}

static herr_t visit(hid_t g, const char *name, const H5L_info_t *li, void *data) {
    (void)g;
    (void)li;
    return read_tensor(data, name) ? -1 : 0;
}

/* A string attribute of the root group as written by mt_h5_write_attr_str
 * (fixed length) into a malloc'd *out; nonzero when missing or not one. */
static int root_attr(hid_t f, const char *name, char **out) {
    *out = NULL;
    if (H5Aexists_by_name(f, "/", name, H5P_DEFAULT) <= 0) return 1;
    hid_t a = H5Aopen_by_name(f, "/", name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t type = a >= 0 ? H5Aget_type(a) : -1;
    int bad = type < 0 || H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) != 0 ||
              mt_h5_npoints(a) != 1 || H5Tget_size(type) > MT_H5_TEXT_MAX;
    if (!bad) {
        size_t size = H5Tget_size(type);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, size);
        *out = calloc(size + 1, 1);
        bad = !*out || H5Aread(a, mt, *out) < 0;
        H5Tclose(mt);
    }
    if (type >= 0) H5Tclose(type);
    if (a >= 0) H5Aclose(a);
    if (bad) free(*out), *out = NULL;
    return bad;
}

/* The format attribute of an HDF5 file ("" when it has none): which reader. */
static void file_format(const char *path, char *buf, size_t n) {
    buf[0] = '\0';
    if (H5Fis_hdf5(path) <= 0) return;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    char *s = NULL;
    if (f >= 0 && !root_attr(f, "format", &s)) snprintf(buf, n, "%s", s);
    free(s);
    if (f >= 0) H5Fclose(f);
}

/* A model file's identity: config, model_kind, run_id, step. */
static int read_modelfile_header(hid_t f, const char *path, mt_weights *w, mt_err *e) {
    char *kind = NULL, *run = NULL, *step = NULL;
    if (root_attr(f, "config", &w->config_text) || root_attr(f, "model_kind", &kind) ||
        root_attr(f, "run_id", &run) || root_attr(f, "step", &step))
        mt_err_set(e, MT_ERR_CKPT,
                   "model file %s lacks its config, model_kind, run_id or step attribute "
                   "(damaged, or not written by mpitrain)",
                   path);
    else {
        snprintf(w->model_kind, sizeof w->model_kind, "%s", kind);
        snprintf(w->run_id, sizeof w->run_id, "%s", run);
        w->step = strtoll(step, NULL, 10);
    }
    free(kind);
    free(run);
    free(step);
    return e->code;
}

static int read_modelfile(const char *path, mt_weights *w, mt_err *e) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mt_err_set(e, MT_ERR_CKPT, "cannot open model file %s (truncated or damaged HDF5)",
                          path);
    walk_ctx c = {f, path, w, e};
    if (!read_modelfile_header(f, path, w, e)) {
        if (H5Lexists(f, "/model", H5P_DEFAULT) <= 0)
            mt_err_set(e, MT_ERR_CKPT, "model file %s has no /model group", path);
        else
            H5Literate_by_name(f, "/model", H5_INDEX_NAME, H5_ITER_INC, NULL, visit, &c,
                               H5P_DEFAULT);
        if (!e->code && w->n == 0)
            mt_err_set(e, MT_ERR_CKPT, "model file %s holds no weights", path);
    }
    if (H5Fclose(f) < 0) mt_err_set(e, MT_ERR_CKPT, "model file %s: cannot close", path);
    return e->code;
}

static int read_checkpoint(const char *path, mt_weights *w, mt_err *e) {
    mt_ckpt_info info;
    if (mt_ckpt_verify(path, 0, &info, e)) {
        mt_ckpt_info_free(&info);
        return e->code;
    }
    w->is_checkpoint = 1;
    w->config_text = info.config_text;
    info.config_text = NULL;
    snprintf(w->model_kind, sizeof w->model_kind, "%s", info.meta.model_kind);
    snprintf(w->run_id, sizeof w->run_id, "%s", info.meta.run_id);
    w->step = info.meta.step;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) mt_err_set(e, MT_ERR_CKPT, "cannot open checkpoint %s", path);
    walk_ctx c = {f, path, w, e};
    for (int i = 0; i < info.n_tensors && !e->code; i++)
        if (strncmp(info.tensors[i].path, "/model/", 7) == 0)
            read_tensor(&c, info.tensors[i].path + 7);
    if (f >= 0 && H5Fclose(f) < 0) mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: cannot close", path);
    mt_ckpt_info_free(&info);
    return e->code;
}

int mt_weights_read(const char *path, mt_weights *w, mt_err *e) {
    memset(w, 0, sizeof *w);
    mt_h5_quiet();
    /* a .sha256 beside the file is checked before HDF5 reads a byte of it
     * (a checkpoint's is checked again by mt_ckpt_verify) */
    char sha[72];
    int checked;
    if (mt_ckpt_check_sidecar(path, sha, &checked, e)) return e->code;
    char format[64];
    file_format(path, format, sizeof format);
    /* anything but a model file goes to the checkpoint check, whose errors
     * say what the file is not */
    if (strcmp(format, MODELFILE_FORMAT) == 0) return read_modelfile(path, w, e);
    return read_checkpoint(path, w, e);
}

const mt_weight *mt_weights_find(const mt_weights *w, const char *name) {
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->w[i].name, name) == 0) return &w->w[i];
    return NULL;
}

void mt_weights_free(mt_weights *w) {
    for (int i = 0; i < w->n; i++) free(w->w[i].data);
    free(w->w);
    free(w->config_text);
    memset(w, 0, sizeof *w);
}
