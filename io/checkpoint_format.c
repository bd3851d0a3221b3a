/*
 * checkpoint_format.c - what a checkpoint file is besides its tensor data:
 * its identity (format, format_version), the table of attributes that hold
 * mt_ckpt_meta (written, read and inspected from the one table), the
 * optimizer hyperparameters, the resolved config, the optimizer state
 * tensors each kind has, and the HDF5 access properties of the format.
 * docs/CHECKPOINT_FORMAT.md describes the result.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint_private.h"
#include "io/h5util.h"

/* ---- optimizer state tensors ---- */

int mt_ckpt_state_names(const char *kind, const char *names[MT_CKPT_MAX_STATES]) {
    if (strcmp(kind, "adamw") == 0) {
        names[0] = "m";
        names[1] = "v";
        return 2;
    }
    if (strcmp(kind, "sgd") == 0) {
        names[0] = "momentum";
        return 1;
    }
    return -1;
}

/* ---- file access ---- */

hid_t mt_ckpt_fapl(MPI_Comm comm) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (comm != MPI_COMM_NULL) {
        H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
        H5Pset_all_coll_metadata_ops(fapl, 1);
        H5Pset_coll_metadata_write(fapl, 1);
    }
    /* the 1.8+ file format: checksummed object headers and superblock */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    return fapl;
}

/* ---- the attributes, one table for writing, reading and inspecting ---- */

typedef enum { A_I64, A_INT, A_F64, A_STR } attr_type;

typedef struct {
    const char *group;
    const char *name;
    attr_type type;
    size_t off, len;
} attr_def;

#define M(f) offsetof(mt_ckpt_meta, f)
#define S(f) M(f), sizeof(((mt_ckpt_meta *)0)->f)
static const attr_def meta_attrs[] = {
    {"/", "step", A_I64, M(step), 0},
    {"/", "epoch", A_I64, M(epoch), 0},
    {"/", "samples_seen", A_I64, M(samples_seen), 0},
    {"/", "seed", A_I64, M(seed), 0},
    {"/", "run_id", A_STR, S(run_id)},
    {"/", "model_name", A_STR, S(run_name)},
    {"/", "model_kind", A_STR, S(model_kind)},
    {"/", "created_utc", A_STR, S(created_utc)},
    {"/", "mpitrain_version", A_STR, S(mpitrain_version)},
    {"/", "code_commit", A_STR, S(code_commit)},
    {"/", "code_dirty", A_INT, M(code_dirty), 0},
    {"/", "data_sha256", A_STR, S(data_sha256)},
    {"/", "resumed_from", A_STR, S(resumed_from)},
    {"/", "world_size", A_INT, M(world), 0},
    {"/", "dp", A_INT, M(dp), 0},
    {"/", "tp", A_INT, M(tp), 0},
    {"/", "pp", A_INT, M(pp), 0},
    {"/optim", "kind", A_STR, S(optim_kind)},
    {"/optim", "step_count", A_I64, M(optim_steps), 0},
    {"/train", "step_in_epoch", A_I64, M(step_in_epoch), 0},
    {"/train", "lr_last", A_F64, M(lr_last), 0},
    {"/train", "lr_next", A_F64, M(lr_next), 0},
    {"/train", "loss", A_F64, M(loss), 0},
    {"/train", "train_acc", A_F64, M(train_acc), 0},
    {"/train", "grad_norm", A_F64, M(grad_norm), 0},
    {"/train", "test_loss", A_F64, M(test_loss), 0},
    {"/train", "test_acc", A_F64, M(test_acc), 0},
};
#undef S
#undef M
#define N_META_ATTRS (sizeof meta_attrs / sizeof meta_attrs[0])

static int write_attr(hid_t f, const char *obj, const char *name, hid_t type, const void *v) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int bad = a < 0 || H5Awrite(a, type, v) < 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return bad;
}

static int write_meta_attr(hid_t f, const attr_def *d, const mt_ckpt_meta *m, mt_err *e) {
    const char *v = (const char *)m + d->off;
    int bad;
    switch (d->type) {
    case A_STR:
        return mt_h5_write_attr_str(f, d->group, d->name, v, e);
    case A_I64:
        bad = write_attr(f, d->group, d->name, H5T_NATIVE_INT64, v);
        break;
    case A_INT:
        bad = write_attr(f, d->group, d->name, H5T_NATIVE_INT, v);
        break;
    default:
        bad = write_attr(f, d->group, d->name, H5T_NATIVE_DOUBLE, v);
        break;
    }
    if (bad) mt_err_set(e, MT_ERR_CKPT, "cannot write attribute %s of %s", d->name, d->group);
    return e->code;
}

/* Copies s into buf (n bytes), or hands it over through *alloc; nonzero
 * when it does not fit buf. */
static int take_string(const char *s, char *buf, size_t n, char **alloc) {
    if (alloc) return (*alloc = strdup(s)) == NULL;
    if (strlen(s) >= n) return 1;
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

int mt_ckpt_read_string(hid_t obj, int is_attr, char *buf, size_t n, char **alloc) {
    if (mt_h5_npoints(obj) != 1) return 1; /* one string, not an array of them */
    hid_t type = is_attr ? H5Aget_type(obj) : H5Dget_type(obj);
    if (type < 0) return 1;
    int rc = 1;
    if (H5Tget_class(type) == H5T_STRING) {
        if (H5Tis_variable_str(type) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            char *s = NULL;
            if ((is_attr ? H5Aread(obj, mt, &s)
                         : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &s)) >= 0 &&
                s) {
                rc = take_string(s, buf, n, alloc);
                H5free_memory(s);
            }
            H5Tclose(mt);
        } else {
            size_t size = H5Tget_size(type);
            char *s = size <= MT_H5_TEXT_MAX ? calloc(size + 1, 1) : NULL;
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, size);
            if (s && (is_attr ? H5Aread(obj, mt, s)
                              : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, s)) >= 0)
                rc = take_string(s, buf, n, alloc);
            free(s);
            H5Tclose(mt);
        }
    }
    H5Tclose(type);
    return rc;
}

static int read_meta_attr(hid_t f, const char *path, const attr_def *d, mt_ckpt_meta *m,
                          mt_err *e) {
    char *v = (char *)m + d->off;
    if (H5Aexists_by_name(f, d->group, d->name, H5P_DEFAULT) <= 0)
        return mt_err_set(e, MT_ERR_CKPT,
                          "checkpoint %s lacks attribute '%s' of %s (damaged, or not written by "
                          "mpitrain)",
                          path, d->name, d->group);
    hid_t a = H5Aopen_by_name(f, d->group, d->name, H5P_DEFAULT, H5P_DEFAULT);
    /* one value: HDF5 would write every element of an array into v */
    int bad = a < 0 || mt_h5_npoints(a) != 1;
    switch (bad ? -1 : (int)d->type) {
    case -1:
        break;
    case A_STR:
        bad = mt_ckpt_read_string(a, 1, v, d->len, NULL);
        break;
    case A_I64:
        bad = H5Aread(a, H5T_NATIVE_INT64, v) < 0;
        break;
    case A_INT:
        bad = H5Aread(a, H5T_NATIVE_INT, v) < 0;
        break;
    default:
        bad = H5Aread(a, H5T_NATIVE_DOUBLE, v) < 0;
        break;
    }
    if (a >= 0) H5Aclose(a);
    if (a < 0 || bad)
        return mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: attribute '%s' of %s is unreadable", path,
                          d->name, d->group);
    return MT_OK;
}

/* The optimizer's hyperparameters, /optim attributes in this order. */
static int write_hyper(hid_t f, const mt_ckpt_hyper *h, mt_err *e) {
    const struct {
        const char *name;
        float v;
    } hyper[] = {{"beta1", h->beta1},
                 {"beta2", h->beta2},
                 {"eps", h->eps},
                 {"momentum", h->momentum},
                 {"weight_decay", h->weight_decay}};
    for (size_t i = 0; i < sizeof hyper / sizeof hyper[0]; i++) {
        if (write_attr(f, "/optim", hyper[i].name, H5T_NATIVE_FLOAT, &hyper[i].v))
            return mt_err_set(e, MT_ERR_CKPT, "cannot write /optim attributes");
    }
    return MT_OK;
}

/* The resolved config, as a scalar fixed-length string dataset. */
static int write_config(hid_t f, const char *config, mt_err *e) {
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, strlen(config) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t ds = H5Dcreate2(f, "/config", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, config) < 0)
        mt_err_set(e, MT_ERR_CKPT, "cannot write /config");
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(st);
    return e->code;
}

int mt_ckpt_write_header(hid_t f, const mt_ckpt_meta *m, const char *config, mt_err *e) {
    int64_t version = MT_CKPT_VERSION;
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g1 = H5Gcreate2(f, "/optim", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    hid_t g2 = H5Gcreate2(f, "/train", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    hid_t g3 = H5Gcreate2(f, "/model", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    H5Gclose(g1), H5Gclose(g2), H5Gclose(g3), H5Pclose(gcpl);
    if (g1 < 0 || g2 < 0 || g3 < 0) return mt_err_set(e, MT_ERR_CKPT, "cannot create groups");
    if (mt_h5_write_attr_str(f, "/", "format", MT_CKPT_FORMAT, e)) return e->code;
    if (write_attr(f, "/", "format_version", H5T_NATIVE_INT64, &version))
        return mt_err_set(e, MT_ERR_CKPT, "cannot write format_version");
    for (size_t i = 0; i < N_META_ATTRS; i++)
        if (write_meta_attr(f, &meta_attrs[i], m, e)) return e->code;
    if (write_hyper(f, &m->hyper, e)) return e->code;
    return write_config(f, config, e);
}

/* The format identity: format, then format_version (into *version). */
static int check_format(hid_t f, const char *path, int *version, mt_err *e) {
    char fmt[64] = "";
    hid_t a = H5Aexists_by_name(f, "/", "format", H5P_DEFAULT) > 0
                  ? H5Aopen_by_name(f, "/", "format", H5P_DEFAULT, H5P_DEFAULT)
                  : -1;
    if (a >= 0) {
        mt_ckpt_read_string(a, 1, fmt, sizeof fmt, NULL);
        H5Aclose(a);
    }
    if (strcmp(fmt, MT_CKPT_FORMAT) != 0) {
        mt_err_set(e, MT_ERR_CKPT, "%s is not an mpitrain checkpoint (format '%s', expected '%s')",
                   path, fmt, MT_CKPT_FORMAT);
        if (strcmp(fmt, "mpitrain-model") == 0)
            mt_err_hint(e, "model.h5 holds the weights only; resume from a file in the run's "
                           "checkpoints/ folder");
        return e->code;
    }
    int64_t v = -1;
    a = H5Aexists_by_name(f, "/", "format_version", H5P_DEFAULT) > 0
            ? H5Aopen_by_name(f, "/", "format_version", H5P_DEFAULT, H5P_DEFAULT)
            : -1;
    hid_t type = a >= 0 ? H5Aget_type(a) : -1;
    int is_int = type >= 0 && H5Tget_class(type) == H5T_INTEGER && mt_h5_npoints(a) == 1;
    if (type >= 0) H5Tclose(type);
    if (!is_int || H5Aread(a, H5T_NATIVE_INT64, &v) < 0) v = -1;
    if (a >= 0) H5Aclose(a);
    *version = (int)v;
    if (v > MT_CKPT_VERSION) {
        mt_err_set(e, MT_ERR_CKPT,
                   "checkpoint %s has format version %lld, newer than the version %d this "
                   "mpitrain reads",
                   path, (long long)v, MT_CKPT_VERSION);
        mt_err_hint(e, "resume it with the mpitrain version that wrote it, or a newer one");
    } else if (v != MT_CKPT_VERSION) {
        mt_err_set(e, MT_ERR_CKPT,
                   "checkpoint %s has no valid format_version (found %lld, this mpitrain reads "
                   "%d)",
                   path, (long long)v, MT_CKPT_VERSION);
    }
    return e->code;
}

/* Values no checkpoint mpitrain writes can hold: counters below 0 (a
 * negative step indexes the data order backwards on resume) or a layout
 * below 1 rank. The SHA-256 sidecar proves a file unchanged, not that it
 * was written by mpitrain. */
static int check_meta_values(const char *path, const mt_ckpt_meta *m, mt_err *e) {
    const struct {
        const char *name;
        int64_t v, min;
    } v[] = {{"step", m->step, 0},
             {"epoch", m->epoch, 0},
             {"samples_seen", m->samples_seen, 0},
             {"/optim step_count", m->optim_steps, 0},
             {"/train step_in_epoch", m->step_in_epoch, 0},
             {"world_size", m->world, 1},
             {"dp", m->dp, 1},
             {"tp", m->tp, 1},
             {"pp", m->pp, 1}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i].v < v[i].min)
            return mt_err_set(e, MT_ERR_CKPT,
                              "checkpoint %s: attribute %s = %lld is below %lld (a damaged file, "
                              "or not written by mpitrain)",
                              path, v[i].name, (long long)v[i].v, (long long)v[i].min);
    return MT_OK;
}

int mt_ckpt_read_header(hid_t f, const char *path, int *version, mt_ckpt_meta *m, mt_err *e) {
    if (check_format(f, path, version, e)) return e->code;
    for (size_t i = 0; i < N_META_ATTRS && !e->code; i++)
        read_meta_attr(f, path, &meta_attrs[i], m, e);
    return e->code ? e->code : check_meta_values(path, m, e);
}
