/* checkpoint.c - parallel HDF5 checkpoint files (see checkpoint.h). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "io/files.h"
#include "io/h5util.h"
#include "io/sha256.h"

#define CHUNK_BYTES ((hsize_t)4 << 20) /* target chunk size of a tensor */
#define NAME_DIGITS 8

/* ---- names ---- */

void mt_ckpt_name(int64_t step, char *buf, size_t n) {
    snprintf(buf, n, "step_%0*lld.h5", NAME_DIGITS, (long long)step);
}

/* Length of the "step_NNNNNNNN.h5" prefix of name, with its step, or 0. */
static size_t scheme_prefix(const char *name, int64_t *step) {
    if (strncmp(name, "step_", 5) != 0) return 0;
    const char *p = name + 5;
    int64_t v = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (v > (INT64_MAX - 9) / 10) return 0;
        v = v * 10 + (*p - '0');
    }
    if (digits < NAME_DIGITS || strncmp(p, ".h5", 3) != 0) return 0;
    *step = v;
    return (size_t)(p + 3 - name);
}

int64_t mt_ckpt_parse_name(const char *name) {
    int64_t step;
    size_t n = scheme_prefix(name, &step);
    char canon[64];
    if (!n || name[n] != '\0') return -1;
    mt_ckpt_name(step, canon, sizeof canon); /* only the name the writer gives step */
    return strcmp(canon, name) == 0 ? step : -1;
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

/* Reads a string attribute or scalar string dataset (fixed or variable
 * length) into buf; returns nonzero if it is missing or not a string. */
static int read_string(hid_t obj, int is_attr, char *buf, size_t n, char **alloc) {
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
                if (alloc)
                    *alloc = strdup(s);
                else
                    snprintf(buf, n, "%s", s);
                H5free_memory(s);
                rc = 0;
            }
            H5Tclose(mt);
        } else {
            size_t size = H5Tget_size(type);
            char *s = calloc(size + 1, 1);
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, size);
            if ((is_attr ? H5Aread(obj, mt, s)
                         : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, s)) >= 0) {
                if (alloc) {
                    *alloc = s;
                    s = NULL;
                } else {
                    snprintf(buf, n, "%s", s);
                }
                rc = 0;
            }
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
    int bad;
    switch (d->type) {
    case A_STR:
        bad = read_string(a, 1, v, d->len, NULL);
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

/* ---- tensors: global shape, local block, the share a writer takes ---- */

/*
 * A rank's block of a tensor: along the shard dimension sd it owns rows
 * [off, off + len) of each of `parts` equal blocks of B rows (B = tp * len);
 * along every other dimension, everything. In memory the block is row-major
 * with parts * len rows along sd, part-major (mt_param_global_index). When
 * the tensor is not split (sd < 0) the block is the whole tensor.
 *
 * The ranks holding the same block share its writing by "rows" of the
 * block: its dim-0 rows, which for sd = 0 are the parts * len local rows.
 * Each sharer takes whole units of chunk[0] rows, so that in the file every
 * chunk is written whole by one rank wherever the chunks align with the
 * blocks: chunks are whole global rows when sd < 0, len wide along sd when
 * sd > 0, and, when sd = 0, of a number of rows dividing len where one of a
 * reasonable size does.
 */
typedef struct {
    int ndim, sd;
    hsize_t gdims[MT_PARAM_MAX_DIMS]; /* the full logical shape */
    hsize_t ldims[MT_PARAM_MAX_DIMS]; /* this rank's block, as in memory */
    hsize_t chunk[MT_PARAM_MAX_DIMS]; /* chunk shape in the file */
    hsize_t parts, len, off, block;   /* along sd: block = gdims[sd] / parts */
    hsize_t rows;                     /* ldims[0]: rows split among the sharers */
    hsize_t inner;                    /* elements per row of the block */
    hsize_t units;                    /* units of chunk[0] rows in the block */
    hsize_t sharers;                  /* ranks holding (and writing) the same block */
} tensor_geom;

/* Rows per chunk: n rows in chunks of at most `most` rows, as few as that
 * allows, but a multiple of w when more than one (each sharer writes as many),
 * of equal rows where they divide evenly: a partial last chunk costs a read. */
static hsize_t even_rows(hsize_t n, hsize_t most, hsize_t w) {
    hsize_t rows = n ? n : 1, nchunks = (rows + most - 1) / most;
    if (nchunks > 1) nchunks = (nchunks + w - 1) / w * w;
    if (nchunks > rows) nchunks = rows;
    return (rows + nchunks - 1) / nchunks;
}

/* Rows per chunk of a tensor split along dim 0 (len rows in each of parts
 * blocks): a divisor of len, so that no chunk straddles two tensor-parallel
 * ranks' rows, unless every divisor makes chunks under half the size the
 * byte target allows (a prime len); then straddling chunks, which
 * create_tensor makes real. A block of more than one chunk's bytes gets a
 * number of chunks the w sharers split evenly where a divisor allows. */
static hsize_t dim0_rows(hsize_t len, hsize_t parts, hsize_t most, hsize_t w) {
    if (len == 0) return 1;
    hsize_t m0 = (len + most - 1) / most, big = (len + m0 - 1) / m0, any = 0;
    int balance = parts * len > most;
    for (hsize_t m = m0; m <= len && len / m * 2 >= big; m++) {
        if (len % m) continue;
        if (!balance || parts * m % w == 0) return len / m;
        if (!any) any = m;
    }
    return any ? len / any : big;
}

/* The layout of tensor t in the file and in memory when written by dp x tp
 * ranks per stage; read by any layout (the chunking is then the file's own). */
static void geometry(const mt_param *t, int dp, int tp, tensor_geom *g) {
    memset(g, 0, sizeof *g);
    g->ndim = t->ndim;
    g->sd = t->shard_dim >= 0 && t->shard_dim < t->ndim ? t->shard_dim : -1;
    g->parts = g->sd >= 0 ? (hsize_t)t->shard_parts : 1;
    g->len = g->sd >= 0 ? (hsize_t)t->shard_len : 0;
    g->off = g->sd >= 0 ? (hsize_t)t->shard_offset : 0;
    g->sharers = (hsize_t)dp * (g->sd >= 0 ? 1 : (hsize_t)tp);
    hsize_t row = sizeof(float); /* bytes of one dim-0 row of a chunk */
    for (int d = 0; d < t->ndim; d++) {
        g->gdims[d] = (hsize_t)t->shape[d];
        g->ldims[d] = d == g->sd ? g->parts * g->len : g->gdims[d];
        g->chunk[d] = d == g->sd && d > 0 ? g->len : g->gdims[d];
        if (d > 0) row *= g->chunk[d];
    }
    if (g->sd >= 0) g->block = g->gdims[g->sd] / g->parts;
    g->rows = g->ldims[0];
    g->inner = 1;
    for (int d = 1; d < t->ndim; d++) g->inner *= g->ldims[d];
    hsize_t most = CHUNK_BYTES / row; /* rows in CHUNK_BYTES */
    if (most < 1) most = 1;
    g->chunk[0] = g->sd == 0 ? dim0_rows(g->len, g->parts, most, g->sharers)
                             : even_rows(g->gdims[0], most, g->sharers);
    g->units = (g->rows + g->chunk[0] - 1) / g->chunk[0];
}

/* Rows [lo, hi) of the block that sharer k of g->sharers writes. */
static void share(const tensor_geom *g, hsize_t k, hsize_t *lo, hsize_t *hi) {
    hsize_t u0 = g->units * k / g->sharers, u1 = g->units * (k + 1) / g->sharers;
    *lo = u0 * g->chunk[0];
    *hi = u1 * g->chunk[0];
    if (*hi > g->rows) *hi = g->rows;
    if (*lo > *hi) *lo = *hi;
}

/* Which writer writes global dim-0 row r (along sd > 0, every block splits its
 * rows alike): the tp block times the sharers, plus the sharer (inverse of
 * share: the largest k with units * k / sharers <= unit). */
static hsize_t row_writer(const tensor_geom *g, hsize_t r) {
    hsize_t q = r, tpb = 0;
    if (g->sd == 0) {
        hsize_t in = r % g->block;
        tpb = in / g->len;
        q = r / g->block * g->len + in % g->len;
    }
    hsize_t u = q / g->chunk[0], w = g->sharers;
    return tpb * w + ((u + 1) * w + g->units - 1) / g->units - 1;
}

/* Selects, in file and memory, rows [lo, hi) of this rank's block. Along
 * sd the block is a strided hyperslab (start off, stride block, count parts,
 * block len); rows of a dim-0 block that are not whole parts are their own
 * pieces. Memory is shaped like the block, so HDF5 copies whole runs. */
static void select_rows(const tensor_geom *g, hsize_t lo, hsize_t hi, hid_t fspace, hid_t *mspace) {
    if (hi <= lo || g->inner == 0) {
        hsize_t one = 1;
        H5Sselect_none(fspace);
        *mspace = H5Screate_simple(1, &one, NULL);
        H5Sselect_none(*mspace);
        return;
    }
    hsize_t start[MT_PARAM_MAX_DIMS], stride[MT_PARAM_MAX_DIMS], count[MT_PARAM_MAX_DIMS],
        block[MT_PARAM_MAX_DIMS], mdims[MT_PARAM_MAX_DIMS];
    for (int d = 0; d < g->ndim; d++) {
        start[d] = 0, stride[d] = 1, count[d] = 1, block[d] = g->gdims[d];
        mdims[d] = g->ldims[d];
    }
    mdims[0] = hi - lo;
    if (g->sd > 0) {
        start[g->sd] = g->off, stride[g->sd] = g->block;
        count[g->sd] = g->parts, block[g->sd] = g->len;
    }
    if (g->sd != 0) {
        start[0] = lo, block[0] = hi - lo;
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, stride, count, block);
    } else {
        H5S_seloper_t op = H5S_SELECT_SET;
        for (hsize_t q = lo; q < hi; op = H5S_SELECT_OR) {
            hsize_t part = q / g->len, s = q % g->len;
            start[0] = part * g->block + g->off + s;
            if (s == 0 && hi - q >= g->len) { /* whole parts */
                count[0] = (hi - q) / g->len, stride[0] = g->block, block[0] = g->len;
            } else {
                hsize_t end = (part + 1) * g->len < hi ? (part + 1) * g->len : hi;
                count[0] = 1, stride[0] = 1, block[0] = end - q;
            }
            H5Sselect_hyperslab(fspace, op, start, stride, count, block);
            q += count[0] * block[0];
        }
    }
    *mspace = H5Screate_simple(g->ndim, mdims, NULL);
}

int mt_ckpt_check_views(const mt_comm *c, const mt_params *p, mt_err *e) {
    for (int i = 0; i < p->n; i++) {
        const mt_param *t = &p->v[i];
        if (t->shard_dim < 0) continue;
        int64_t rows = t->shard_dim < t->ndim ? t->shape[t->shard_dim] : -1;
        if (t->shard_parts < 1 || t->shard_len < 1 ||
            (int64_t)t->shard_parts * t->shard_len * c->tp_size != rows ||
            t->shard_offset != (int64_t)c->tp_rank * t->shard_len)
            return mt_err_set(e, MT_ERR_INTERNAL,
                              "tensor %s: its shard (dim %d, %d parts, rows %lld..%lld of each) "
                              "is not tensor-parallel rank %d's of %d equal blocks of its shape",
                              t->name, t->shard_dim, t->shard_parts, (long long)t->shard_offset,
                              (long long)(t->shard_offset + t->shard_len), c->tp_rank, c->tp_size);
    }
    return MT_OK;
}

/* Rank 0, serial: creates dataset path for tensor t (chunked as geometry
 * says, Fletcher32, no fill value) and places every chunk in the file
 * without writing its data.
 *
 * Parallel HDF5 1.10 needs every chunk of a filtered dataset allocated before
 * a collective write (it tells chunks apart by file address), and when it
 * allocates them itself, at creation or at opening for writing, it writes
 * the whole tensor once in fill values: twice the bytes of the checkpoint.
 * So rank 0 creates the dataset serially with incremental allocation and
 * gives each chunk a 4-byte placeholder (H5Dwrite_chunk); the collective
 * write then moves each chunk to full-size space and writes it once. That
 * holds only for a chunk one rank overwrites whole: any other chunk (the
 * partial last one, one that straddles two writers' rows) gets a real,
 * checksummed chunk of zeros instead, since the collective write reads and
 * unfilters it before merging the new elements (a placeholder there fails to
 * unfilter on one rank and leaves the others waiting in the collective call
 * until the checkpoint timeout: keep row_writer in step with share). The
 * placeholders never
 * outlive the write: the file is renamed into place only after every chunk
 * has been written. Rank 0 may hold none of t (another stage's tensor):
 * everything here follows from the shard description and the layout. */
static int create_tensor(hid_t f, const char *path, const mt_param *t, int dp, int tp,
                         const float *zeros, mt_err *e) {
    tensor_geom g;
    geometry(t, dp, tp, &g);
    hsize_t start[MT_PARAM_MAX_DIMS] = {0}, count[MT_PARAM_MAX_DIMS];
    hid_t space = H5Screate_simple(g.ndim, g.gdims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    H5Pset_chunk(dcpl, g.ndim, g.chunk);
    H5Pset_fletcher32(dcpl);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_INCR);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t ds = H5Dcreate2(f, path, H5T_IEEE_F32LE, space, lcpl, dcpl, H5P_DEFAULT);
    int bad = ds < 0;
    const uint32_t placeholder = 0;
    /* chunks across sd > 0: each lies in one block, split by rows alike */
    hsize_t across = g.sd > 0 ? g.gdims[g.sd] / g.len : 1;
    for (hsize_t r = 0; !bad && r < g.gdims[0]; r += g.chunk[0]) {
        int whole = r + g.chunk[0] <= g.gdims[0];
        for (hsize_t q = r + 1, w = row_writer(&g, r); whole && q < r + g.chunk[0]; q++)
            whole = row_writer(&g, q) == w;
        memcpy(count, g.chunk, sizeof count);
        if (r + count[0] > g.gdims[0]) count[0] = g.gdims[0] - r;
        start[0] = r;
        for (hsize_t a = 0; !bad && a < across; a++) {
            if (g.sd > 0) start[g.sd] = a * g.len;
            if (whole) {
                bad =
                    H5Dwrite_chunk(ds, H5P_DEFAULT, 0, start, sizeof placeholder, &placeholder) < 0;
            } else {
                hid_t mspace = H5Screate_simple(g.ndim, count, NULL);
                H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
                bad = H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace, space, H5P_DEFAULT, zeros) < 0;
                H5Sclose(mspace);
            }
        }
    }
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
    if (bad) mt_err_set(e, MT_ERR_CKPT, "cannot create tensor %s", path);
    return bad;
}

/* Bytes of the largest chunk of p's tensors written by dp x tp ranks a stage. */
static size_t max_chunk_bytes(const mt_params *p, int dp, int tp) {
    size_t n = 0;
    for (int i = 0; i < p->n; i++) {
        tensor_geom g;
        geometry(&p->v[i], dp, tp, &g);
        size_t b = sizeof(float);
        for (int d = 0; d < g.ndim; d++) b *= (size_t)g.chunk[d];
        if (b > n) n = b;
    }
    return n;
}

/* Collective: writes this rank's share of the chunks of tensor t into
 * dataset path. Only the owner's copies are written (local, not a mirror);
 * the ranks holding the same block (the data-parallel group for a split
 * tensor, every rank of the stage for a whole one) each write a share. */
static int write_tensor(const mt_comm *c, hid_t f, hid_t dxpl, const char *path, const mt_param *t,
                        const float *local, mt_err *e) {
    tensor_geom g;
    geometry(t, c->dp_size, c->tp_size, &g);
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    hid_t space = ds >= 0 ? H5Dget_space(ds) : H5Screate_simple(g.ndim, g.gdims, NULL);
    hsize_t lo = 0, hi = 0;
    if (t->local && !t->mirror)
        share(&g, (hsize_t)(g.sd >= 0 ? c->dp_rank : c->tp_rank * c->dp_size + c->dp_rank), &lo,
              &hi);
    hid_t mspace;
    select_rows(&g, lo, hi, space, &mspace);
    int bad =
        ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, mspace, space, dxpl, local + lo * g.inner) < 0;
    H5Sclose(mspace);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space);
    if (bad) mt_err_set(e, MT_ERR_CKPT, "cannot write tensor %s", path);
    return bad;
}

/* Collective: reads this rank's block of tensor t (mirrors too) from dataset
 * path; a rank holding none of it joins with an empty selection. */
static int read_tensor(hid_t f, hid_t dxpl, const char *file, const char *path, const mt_param *t,
                       float *local, mt_err *e) {
    tensor_geom g;
    geometry(t, 1, 1, &g); /* (the chunking is the file's own) */
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    int bad = ds < 0;
    if (!bad) {
        hid_t space = H5Dget_space(ds);
        hsize_t dims[H5S_MAX_RANK];
        int nd = H5Sget_simple_extent_dims(space, dims, NULL);
        bad = nd != g.ndim;
        for (int d = 0; !bad && d < nd; d++) bad = dims[d] != g.gdims[d];
        if (bad) {
            mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: %s has another shape than the model's", file,
                       path);
            H5Sselect_none(space); /* still join the collective read */
        }
        hid_t mspace;
        select_rows(&g, 0, t->local && !bad ? g.rows : 0, space, &mspace);
        if (H5Dread(ds, H5T_NATIVE_FLOAT, mspace, space, dxpl, local) < 0 && !bad) {
            bad = 1;
            mt_err_set(e, MT_ERR_CKPT,
                       "checkpoint %s: reading %s failed its checksum (the file is corrupt)", file,
                       path);
        }
        H5Sclose(mspace);
        H5Sclose(space);
        H5Dclose(ds);
    } else {
        mt_err_set(e, MT_ERR_CKPT, "checkpoint %s has no tensor %s", file, path);
    }
    return bad;
}

/* The optimizer state tensors of each kind: group names under /optim. */
static int state_names(const char *kind, const char **names) {
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

static float *state_buffer(const mt_optim *o, int i) {
    return i == 0 ? o->m : o->v;
}

/* ---- writing: room, watchdog ---- */

/* Bytes of the tensors a checkpoint of p holds (weights + optimizer state). */
static double tensor_bytes(const mt_params *p, const mt_optim *o) {
    return (double)mt_params_global_count(p) * sizeof(float) * (o->kind == MT_OPTIM_ADAMW ? 3 : 2);
}

static int check_room(const char *path, double need, mt_err *e) {
    char dir[MT_CKPT_PATH];
    mt_file_dir(path, dir, sizeof dir);
    struct statvfs v;
    if (statvfs(dir, &v) != 0) return MT_OK; /* the write itself will report it */
    double avail = (double)v.f_bavail * (double)v.f_frsize;
    if (avail < need) {
        mt_err_set(e, MT_ERR_CKPT,
                   "no room for checkpoint %s: it needs about %.1f MB, %s has %.1f MB free", path,
                   need / 1e6, dir, avail / 1e6);
        mt_err_hint(e, "free space there, lower checkpoint.keep_last, or set checkpoint.dir");
    }
    return e->code;
}

static char wd_msg[MT_CKPT_PATH + 256], wd_tmp[MT_CKPT_PATH + 64];
static int wd_rank;

/* SIGALRM during a write: only async-signal-safe calls. */
static void on_watchdog(int sig) {
    (void)sig;
    if (wd_rank == 0) {
        ssize_t w = write(2, wd_msg, strlen(wd_msg));
        (void)w;
        unlink(wd_tmp);
    }
    _exit(MT_ERR_CKPT);
}

static void arm_watchdog(const mt_comm *c, const char *tmp, int64_t step, double timeout) {
    wd_rank = c->rank;
    snprintf(wd_tmp, sizeof wd_tmp, "%s", tmp);
    snprintf(wd_msg, sizeof wd_msg,
             "mpitrain: error: the checkpoint write of step %lld did not finish within %.0f s "
             "(checkpoint.timeout): a rank failed inside the collective write, or the file "
             "system stalls; the previous checkpoint and `latest` are intact\n",
             (long long)step, timeout);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_watchdog;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    alarm((unsigned)(timeout < 1 ? 1 : timeout > 1e9 ? 1e9 : timeout));
}

/* ---- writing ---- */

static hid_t parallel_fapl(MPI_Comm comm) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    H5Pset_all_coll_metadata_ops(fapl, 1);
    H5Pset_coll_metadata_write(fapl, 1);
    /* the 1.8+ file format: checksummed object headers and superblock */
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    return fapl;
}

/* Test-only: MPITRAIN_TEST_STALL_CKPT=STEP stops the writer of that step's
 * checkpoint midway (after the weights), so a test can kill a rank there. */
static void test_stall(const mt_comm *c, int64_t step) {
    const char *s = getenv("MPITRAIN_TEST_STALL_CKPT");
    if (!s || atoll(s) != step) return;
    if (c->rank == 0) {
        printf("test hook: stalling the checkpoint write of step %lld\n", (long long)step);
        fflush(stdout);
    }
    for (;;) pause();
}

/* The k-th tensor a checkpoint holds (weights, then each optimizer state):
 * its dataset path, parameter and this rank's buffer; 0 past the last. */
static int tensor_at(const mt_params *p, const mt_optim *o, const char *kind, int k, char *path,
                     size_t n, const mt_param **t, const float **buf) {
    const char *states[2];
    int ns = state_names(kind, states);
    if (ns < 0 || k >= (1 + ns) * p->n) return 0;
    int s = k / p->n - 1, i = k % p->n;
    *t = &p->v[i];
    if (s < 0) {
        snprintf(path, n, "/model/%s", p->v[i].name);
        *buf = p->data + p->v[i].offset;
    } else {
        snprintf(path, n, "/optim/%s/%s", states[s], p->v[i].name);
        *buf = state_buffer(o, s) + p->v[i].offset;
    }
    return 1;
}

/* Rank 0, serial: everything but the tensors' data. */
static int create_structure(hid_t f, const mt_ckpt_meta *m, const char *config, const mt_params *p,
                            const mt_optim *o, const mt_comm *c, mt_err *e) {
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
    const struct {
        const char *name;
        float v;
    } hyper[] = {{"beta1", o->beta1},
                 {"beta2", o->beta2},
                 {"eps", o->eps},
                 {"momentum", o->momentum},
                 {"weight_decay", o->weight_decay}};
    for (size_t i = 0; i < sizeof hyper / sizeof hyper[0]; i++) {
        if (write_attr(f, "/optim", hyper[i].name, H5T_NATIVE_FLOAT, &hyper[i].v))
            return mt_err_set(e, MT_ERR_CKPT, "cannot write /optim attributes");
    }

    /* the resolved config, as a scalar string dataset */
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, strlen(config) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t ds = H5Dcreate2(f, "/config", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, config) < 0)
        mt_err_set(e, MT_ERR_CKPT, "cannot write /config");
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    H5Tclose(st);
    if (e->code) return e->code;

    if (state_names(m->optim_kind, (const char *[2]){0}) < 0)
        return mt_err_set(e, MT_ERR_INTERNAL, "unknown optimizer '%s'", m->optim_kind);
    float *zeros = calloc(1, max_chunk_bytes(p, c->dp_size, c->tp_size));
    if (!zeros) return mt_err_set(e, MT_ERR_CKPT, "out of memory creating a checkpoint");
    char path[160];
    const mt_param *t;
    const float *buf;
    for (int k = 0; tensor_at(p, o, m->optim_kind, k, path, sizeof path, &t, &buf); k++)
        if (create_tensor(f, path, t, c->dp_size, c->tp_size, zeros, e)) break;
    free(zeros);
    return e->code;
}

/* Collective: every rank writes its share of every tensor. */
static int write_data(const mt_comm *c, hid_t f, const char *tmp, const mt_ckpt_meta *m,
                      const mt_params *p, const mt_optim *o, mt_err *e) {
    /* After each tensor, start the write-back of what is written so far, so
     * that the final fsync has little left to wait for: the disk works while
     * the next tensors are checksummed and copied. */
    int fd = open(tmp, O_RDONLY);
    mt_err local = {0}; /* every rank makes every collective call, even after an error */
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    /* Most chunks are written whole by one rank, and HDF5 gives any chunk that
     * several ranks write to one of them, which merges the others' elements
     * first: so the collective call may write chunks with independent MPI-IO,
     * no two-phase aggregation through other ranks. */
    H5Pset_dxpl_mpio_collective_opt(dxpl, H5FD_MPIO_INDIVIDUAL_IO);
    char path[160];
    const mt_param *t;
    const float *buf;
    for (int k = 0; tensor_at(p, o, m->optim_kind, k, path, sizeof path, &t, &buf); k++) {
        if (k == p->n) test_stall(c, m->step); /* after the weights */
        write_tensor(c, f, dxpl, path, t, buf, &local);
        if (fd >= 0) sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    if (fd >= 0) close(fd);
    H5Pclose(dxpl);
    if (local.code) *e = local;
    return e->code;
}

int mt_ckpt_write(const mt_comm *c, const char *path, const mt_ckpt_meta *meta,
                  const char *config_text, const mt_params *p, const mt_optim *o, double timeout_s,
                  double *write_s, char sha_hex[72], mt_err *e) {
    /* HDF5's filter pipeline allocates a fresh buffer per chunk; glibc would
     * mmap each one and fault in every page again. Keeping buffers up to
     * 64 MiB on the heap, and freed memory there, lets them be reused. */
    static int tuned;
    if (!tuned) {
        mallopt(M_MMAP_THRESHOLD, 64 << 20);
        mallopt(M_TRIM_THRESHOLD, 256 << 20);
        tuned = 1;
    }
    mt_ckpt_meta m = *meta;
    MPI_Bcast(&m, sizeof m, MPI_BYTE, 0, c->world);
    char tmp[MT_CKPT_PATH + 64] = "";
    if (c->rank == 0) mt_file_tmp_name(path, tmp, sizeof tmp);
    MPI_Bcast(tmp, sizeof tmp, MPI_CHAR, 0, c->world);
    double bytes = tensor_bytes(p, o);
    if (c->rank == 0) check_room(path, 1.02 * bytes + (double)strlen(config_text) + 1e6, e);
    if (!e->code) mt_ckpt_check_views(c, p, e);
    if (mt_comm_agree(c, e)) return e->code;
    arm_watchdog(c, tmp, m.step, timeout_s > 0 ? timeout_s : 300.0 + bytes / 20e6);
    mt_h5_quiet();
    double t0 = MPI_Wtime();
    /* rank 0 lays out the file; then every rank writes its part of the data */
    if (c->rank == 0) {
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST); /* checksummed headers */
        hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        H5Pclose(fapl);
        if (f < 0) {
            mt_err_set(e, MT_ERR_CKPT, "cannot create checkpoint file %s", tmp);
        } else {
            create_structure(f, &m, config_text, p, o, c, e);
            if (H5Fclose(f) < 0 && !e->code)
                mt_err_set(e, MT_ERR_CKPT, "cannot finish checkpoint file %s", tmp);
        }
    }
    if (!mt_comm_agree(c, e)) {
        hid_t fapl = parallel_fapl(c->world);
        hid_t f = H5Fopen(tmp, H5F_ACC_RDWR, fapl);
        H5Pclose(fapl);
        if (f < 0) {
            mt_err_set(e, MT_ERR_CKPT, "cannot open checkpoint file %s for writing", tmp);
        } else {
            write_data(c, f, tmp, &m, p, o, e);
            if (H5Fclose(f) < 0)
                mt_err_set(e, MT_ERR_CKPT, "cannot finish checkpoint file %s", tmp);
        }
    }
    /* Each rank makes its own writes durable (parallel file systems sync per client). */
    if (!e->code) {
        int fd = open(tmp, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0)
            mt_err_set(e, MT_ERR_CKPT, "cannot sync checkpoint file %s: %s", tmp, strerror(errno));
        if (fd >= 0) close(fd);
    }
    if (mt_comm_agree(c, e)) {
        alarm(0);
        if (c->rank == 0) unlink(tmp);
        return e->code;
    }
    if (c->rank == 0 && mt_file_commit(tmp, path, e)) e->code = MT_ERR_CKPT;
    alarm(0);
    if (mt_comm_agree(c, e)) return e->code;
    *write_s = MPI_Wtime() - t0;
    if (c->rank == 0 && !mt_sha256_file(path, sha_hex, e)) {
        char side[MT_CKPT_PATH + 16], line[MT_CKPT_PATH + 96];
        snprintf(side, sizeof side, "%s.sha256", path);
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        snprintf(line, sizeof line, "%s  %s\n", sha_hex, base);
        mt_file_write_atomic(side, line, strlen(line), e);
    }
    if (e->code) e->code = MT_ERR_CKPT;
    return mt_comm_agree(c, e);
}

/* ---- verifying (one process) ---- */

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
    if (!is_f32 || nd < 1 || nd > MT_PARAM_MAX_DIMS) {
        H5Dclose(ds);
        return mt_err_set(w->e, MT_ERR_CKPT,
                          "checkpoint %s: %s must be a float32 tensor of 1 to %d dimensions",
                          w->file, path, MT_PARAM_MAX_DIMS);
    }
    mt_ckpt_tensor *nt = realloc(in->tensors, (size_t)(in->n_tensors + 1) * sizeof *nt);
    if (!nt) abort();
    in->tensors = nt;
    mt_ckpt_tensor *t = &nt[in->n_tensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->path, sizeof t->path, "%s", path);
    t->ndim = nd;
    size_t n = 1;
    for (int d = 0; d < nd; d++) t->shape[d] = (int64_t)dims[d], n *= (size_t)dims[d];
    float *x = malloc(n * sizeof(float) + 4);
    if (!x) {
        H5Dclose(ds);
        return mt_err_set(w->e, MT_ERR_INTERNAL, "out of memory reading %s", path);
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
    char path[160];
    if (strlen(name) >= MT_PARAM_NAME_LEN)
        return mt_err_set(w->e, MT_ERR_CKPT, "checkpoint %s: tensor name '%.40s...' is too long",
                          w->file, name),
               -1;
    snprintf(path, sizeof path, "/model/%s", name);
    return add_tensor(w, path) ? -1 : 0;
}

static int read_sidecar(const char *path, mt_ckpt_info *info, mt_err *e) {
    char side[MT_CKPT_PATH + 16];
    snprintf(side, sizeof side, "%s.sha256", path);
    struct stat st;
    if (stat(side, &st) != 0) return MT_OK; /* has_sidecar stays 0 */
    char *text;
    size_t len;
    if (mt_file_read(side, "checksum file", MT_ERR_CKPT, &text, &len, e)) return e->code;
    int ok = len >= 64;
    for (int i = 0; ok && i < 64; i++) ok = strchr("0123456789abcdef", text[i]) && text[i];
    char want[65];
    memcpy(want, text, 64);
    want[64] = '\0';
    free(text);
    if (!ok)
        return mt_err_set(e, MT_ERR_CKPT, "checksum file %s does not start with a SHA-256", side);
    if (mt_sha256_file(path, info->file_sha256, e)) return e->code = MT_ERR_CKPT;
    info->has_sidecar = 1;
    if (strcmp(want, info->file_sha256) != 0) {
        mt_err_set(e, MT_ERR_CKPT,
                   "checkpoint %s is corrupt: its SHA-256 %.16s... differs from %.16s... "
                   "recorded in %s (changed or truncated after it was written)",
                   path, info->file_sha256, want, side);
        return e->code;
    }
    return MT_OK;
}

static int check_format(hid_t f, const char *path, mt_ckpt_info *info, mt_err *e) {
    char fmt[64] = "";
    hid_t a = H5Aexists_by_name(f, "/", "format", H5P_DEFAULT) > 0
                  ? H5Aopen_by_name(f, "/", "format", H5P_DEFAULT, H5P_DEFAULT)
                  : -1;
    if (a >= 0) {
        read_string(a, 1, fmt, sizeof fmt, NULL);
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
    int is_int = type >= 0 && H5Tget_class(type) == H5T_INTEGER;
    if (type >= 0) H5Tclose(type);
    if (!is_int || H5Aread(a, H5T_NATIVE_INT64, &v) < 0) v = -1;
    if (a >= 0) H5Aclose(a);
    info->format_version = (int)v;
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

int mt_ckpt_verify(const char *path, int hash_tensors, mt_ckpt_info *info, mt_err *e) {
    memset(info, 0, sizeof *info);
    mt_h5_quiet();
    struct stat st;
    if (stat(path, &st) != 0)
        return mt_err_set(e, MT_ERR_CKPT, "cannot read checkpoint %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return mt_err_set(e, MT_ERR_CKPT, "checkpoint %s is not a regular file", path);
    if (read_sidecar(path, info, e)) return e->code;
    if (H5Fis_hdf5(path) <= 0)
        return mt_err_set(e, MT_ERR_CKPT,
                          "checkpoint %s is not an HDF5 file (truncated or damaged)", path);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mt_err_set(e, MT_ERR_CKPT, "cannot open checkpoint %s (truncated or damaged HDF5)",
                          path);
    if (!check_format(f, path, info, e))
        for (size_t i = 0; i < N_META_ATTRS && !e->code; i++)
            read_meta_attr(f, path, &meta_attrs[i], &info->meta, e);
    if (!e->code) {
        hid_t ds =
            H5Lexists(f, "/config", H5P_DEFAULT) > 0 ? H5Dopen2(f, "/config", H5P_DEFAULT) : -1;
        if (ds < 0 || read_string(ds, 0, NULL, 0, &info->config_text))
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
    const char *states[2];
    int ns = e->code ? 0 : state_names(info->meta.optim_kind, states);
    if (ns < 0)
        mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: unknown optimizer kind '%s'", path,
                   info->meta.optim_kind);
    int nmodel = info->n_tensors;
    for (int s = 0; s < ns && !e->code; s++)
        for (int i = 0; i < nmodel && !e->code; i++) {
            char sp[160];
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

/* ---- loading (collective) ---- */

int mt_ckpt_load(const mt_comm *c, const char *path, mt_params *p, mt_optim *o, mt_err *e) {
    mt_ckpt_check_views(c, p, e);
    if (mt_comm_agree(c, e)) return e->code;
    mt_h5_quiet();
    hid_t fapl = parallel_fapl(c->world);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        mt_err_set(e, MT_ERR_CKPT, "cannot open checkpoint %s", path);
        return mt_comm_agree(c, e);
    }
    mt_err local = {0};
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    char kind[16] = "", tp[160];
    hid_t a = H5Aopen_by_name(f, "/optim", "kind", H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || read_string(a, 1, kind, sizeof kind, NULL))
        mt_err_set(&local, MT_ERR_CKPT, "checkpoint %s: no optimizer kind", path);
    if (a >= 0) H5Aclose(a);
    int64_t steps = 0;
    a = H5Aopen_by_name(f, "/optim", "step_count", H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Aread(a, H5T_NATIVE_INT64, &steps) < 0)
        mt_err_set(&local, MT_ERR_CKPT, "checkpoint %s: no optimizer step count", path);
    if (a >= 0) H5Aclose(a);
    for (int i = 0; i < p->n; i++) {
        snprintf(tp, sizeof tp, "/model/%s", p->v[i].name);
        read_tensor(f, dxpl, path, tp, &p->v[i], p->data + p->v[i].offset, &local);
    }
    const char *states[2];
    int ns = state_names(kind, states);
    int want = o->kind == MT_OPTIM_ADAMW ? 2 : 1;
    if (ns != want)
        mt_err_set(&local, MT_ERR_CKPT, "checkpoint %s: optimizer '%s' does not match", path, kind);
    for (int s = 0; s < ns && ns == want; s++)
        for (int i = 0; i < p->n; i++) {
            snprintf(tp, sizeof tp, "/optim/%s/%s", states[s], p->v[i].name);
            read_tensor(f, dxpl, path, tp, &p->v[i], state_buffer(o, s) + p->v[i].offset, &local);
        }
    o->t = steps;
    H5Pclose(dxpl);
    H5Fclose(f);
    if (local.code) *e = local;
    return mt_comm_agree(c, e);
}

/* ---- the directory: listing, latest, retention ---- */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int mt_ckpt_list(const char *dir, int64_t **steps, int *n, mt_err *e) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return MT_OK;
        return mt_err_set(e, MT_ERR_CKPT, "cannot list checkpoint folder %s: %s", dir,
                          strerror(errno));
    }
    int cap = 0;
    for (struct dirent *de; (de = readdir(d));) {
        int64_t s = mt_ckpt_parse_name(de->d_name);
        if (s < 0) continue;
        char full[MT_CKPT_PATH + 300];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", dir, de->d_name);
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *ns = realloc(*steps, (size_t)cap * sizeof *ns);
            if (!ns) abort();
            *steps = ns;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (*n) qsort(*steps, (size_t)*n, sizeof **steps, cmp_i64);
    return MT_OK;
}

void mt_ckpt_latest(const char *dir, char *name, size_t n) {
    char path[MT_CKPT_PATH + 16], *text = NULL;
    size_t len;
    mt_err ignored = {0};
    name[0] = '\0';
    snprintf(path, sizeof path, "%s/latest", dir);
    struct stat st;
    if (stat(path, &st) != 0 || mt_file_read(path, "pointer", MT_ERR_CKPT, &text, &len, &ignored))
        return;
    text[strcspn(text, "\r\n")] = '\0';
    if (mt_ckpt_parse_name(text) >= 0) snprintf(name, n, "%s", text);
    free(text);
}

int mt_ckpt_set_latest(const char *dir, const char *name, mt_err *e) {
    char path[MT_CKPT_PATH + 16], line[300];
    snprintf(path, sizeof path, "%s/latest", dir);
    snprintf(line, sizeof line, "%s\n", name);
    if (mt_file_write_atomic(path, line, strlen(line), e)) e->code = MT_ERR_CKPT;
    return e->code;
}

/* A leftover temporary of the scheme: step_N.h5[.sha256].tmp.PID or latest.tmp.PID */
static int stale_temporary(const char *name) {
    int64_t step;
    size_t k = scheme_prefix(name, &step);
    const char *rest = k ? name + k : strncmp(name, "latest", 6) == 0 ? name + 6 : NULL;
    if (!rest) return 0;
    if (k && strncmp(rest, ".sha256", 7) == 0) rest += 7;
    if (strncmp(rest, ".tmp.", 5) != 0 || !rest[5]) return 0;
    for (const char *p = rest + 5; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    /* a writer on this host that is still alive keeps its temporary */
    pid_t pid = (pid_t)atol(rest + 5);
    return pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH);
}

int mt_ckpt_retain(const char *dir, int64_t keep_last, int64_t keep_every, FILE *log,
                   mt_ckpt_removed_fn removed, void *ctx, mt_err *e) {
    int64_t *steps;
    int n;
    if (mt_ckpt_list(dir, &steps, &n, e)) return e->code;
    char latest[300];
    mt_ckpt_latest(dir, latest, sizeof latest);
    int64_t keep_latest = latest[0] ? mt_ckpt_parse_name(latest) : -1;
    char name[64], path[MT_CKPT_PATH + 100];
    /* Files newer than `latest` were never committed (a writer died between
     * rename and pointer); they are neither counted nor deleted. */
    int committed = n;
    while (keep_latest >= 0 && committed > 0 && steps[committed - 1] > keep_latest) committed--;
    for (int i = 0; i < committed; i++) {
        int64_t s = steps[i];
        int keep = keep_last == 0 || i >= committed - keep_last || s == keep_latest ||
                   (keep_every > 0 && s % keep_every == 0);
        if (keep) continue;
        mt_ckpt_name(s, name, sizeof name);
        if (removed) {
            char sha[72] = "";
            snprintf(path, sizeof path, "%s/%s.sha256", dir, name);
            FILE *f = fopen(path, "r");
            if (!f || fscanf(f, "%64[0-9a-f]", sha) != 1) sha[0] = '\0';
            if (f) fclose(f);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            removed(path, sha, ctx);
        }
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (unlink(path) != 0 && errno != ENOENT) {
            mt_err_set(e, MT_ERR_CKPT, "cannot delete old checkpoint %s: %s", path,
                       strerror(errno));
            break;
        }
        if (log) fprintf(log, "checkpoint: removed %s (retention)\n", path);
        snprintf(path, sizeof path, "%s/%s.sha256", dir, name);
        unlink(path);
    }
    free(steps);
    /* temporaries left by writers that died; this process's own are gone by now */
    DIR *d = opendir(dir);
    for (struct dirent *de; d && (de = readdir(d));)
        if (stale_temporary(de->d_name)) {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            if (unlink(path) == 0 && log)
                fprintf(log, "checkpoint: removed %s (left by an interrupted write)\n", path);
        }
    if (d) closedir(d);
    return e->code;
}
