/* modelfile.c - write the model's weights to HDF5 (see modelfile.h). */
#include "modelfile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/files.h"
#include "io/h5util.h"

/* Copies tensor-parallel block r of t, in its memory layout (part-major rows
 * along shard_dim, see tensor_view.h), into the full tensor. */
static void place_block(const mt_tensor_view *t, int r, const float *blk, float *full) {
    int sd = t->shard_dim;
    size_t outer = 1, inner = 1, len = (size_t)t->shard_len, parts = (size_t)t->shard_parts;
    for (int d = 0; d < sd; d++) outer *= (size_t)t->shape[d];
    for (int d = sd + 1; d < t->ndim; d++) inner *= (size_t)t->shape[d];
    size_t rows = (size_t)t->shape[sd], block = rows / parts, off = (size_t)r * len;
    for (size_t o = 0; o < outer; o++)
        for (size_t p = 0; p < parts; p++)
            memcpy(full + (o * rows + p * block + off) * inner,
                   blk + ((o * parts + p) * len) * inner, len * inner * sizeof(float));
}

/* Rank 0: the attributes. */
static int write_header(hid_t f, const mt_modelfile_meta *meta, mt_err *e) {
    char step[32];
    snprintf(step, sizeof step, "%lld", meta->step);
    int rc = mt_h5_write_attr_str(f, "/", "format", "mpitrain-model", e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "model_kind", meta->model_kind, e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "run_id", meta->run_id, e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "step", step, e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "mpitrain_version", meta->mpitrain_version, e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "code_commit", meta->code_commit, e);
    if (!rc) rc = mt_h5_write_attr_str(f, "/", "config", meta->config_text, e);
    return rc;
}

/* Rank 0: the gather buffers and the temporary file with its attributes.
 * full: (largest tensor's global numel); blk: (largest block's numel). */
static hid_t open_file(const char *path, const mt_tensor_view *views, int nv,
                       const mt_modelfile_meta *meta, char *tmp, size_t ntmp, float **full,
                       float **blk, mt_err *e) {
    size_t most = 1, most_blk = 1;
    for (int i = 0; i < nv; i++) {
        size_t n = mt_view_global_numel(&views[i]), b = mt_view_block_numel(&views[i]);
        most = n > most ? n : most;
        most_blk = b > most_blk ? b : most_blk;
    }
    if (strlen(path) >= MT_CKPT_PATH) {
        mt_err_set(e, MT_ERR_USAGE,
                   "model file path too long (%zu characters, at most %d): %.60s...", strlen(path),
                   MT_CKPT_PATH - 1, path);
        return -1;
    }
    *full = calloc(most, sizeof(float));
    *blk = calloc(most_blk, sizeof(float));
    mt_file_tmp_name(path, tmp, ntmp);
    mt_h5_quiet();
    if (!*full || !*blk) {
        mt_err_set(e, MT_ERR_INTERNAL, "out of memory gathering the model for %s", path);
        return -1;
    }
    hid_t f = mt_h5_create(tmp, e);
    if (f >= 0) write_header(f, meta, e);
    return f;
}

/* Tensor t's copy of the first data-parallel replica goes to rank 0, which
 * assembles it in full and writes it (unless an error is set: rank 0 keeps
 * receiving, so that no sender waits forever). Each tensor-parallel rank of
 * the owning stage sends its block of a split tensor, tensor-parallel rank
 * 0 a whole one; mirrors never send. */
static void gather_tensor(const mt_comm *c, hid_t f, const mt_tensor_view *t, float *full,
                          float *blk, mt_err *e) {
    int split = mt_view_is_split(t);
    int senders = split ? c->tp_size : 1, first = t->stage * c->dp_size * c->tp_size;
    if (c->rank != 0) {
        if (c->rank >= first && c->rank < first + senders && t->held && !t->mirror)
            mt_coll_send_floats(c->world, 0, t->data, (size_t)t->count);
        return;
    }
    size_t nb = mt_view_block_numel(t);
    for (int r = 0; r < senders; r++) {
        /* a block that is a contiguous run of the full tensor lands in place */
        int direct = !split || (t->shard_dim == 0 && t->shard_parts == 1);
        float *dst = !split ? full : direct ? full + (size_t)r * nb : blk;
        if (first + r == 0)
            memcpy(dst, t->data, nb * sizeof(float));
        else
            mt_coll_recv_floats(c->world, first + r, dst, nb);
        if (!direct) place_block(t, r, blk, full);
    }
    if (!e->code) {
        hsize_t dims[MT_VIEW_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
        mt_h5_write(f, t->path, H5T_NATIVE_FLOAT, full, t->ndim, dims, e);
    }
}

int mt_modelfile_write(const mt_comm *c, const char *path, const mt_tensor_view *views, int nv,
                       const mt_modelfile_meta *meta, mt_err *e) {
    char tmp[MT_CKPT_PATH + 32] = ""; /* path (< MT_CKPT_PATH) + ".tmp." + a pid */
    hid_t f = -1;
    float *full = NULL, *blk = NULL; /* rank 0 */
    mt_ckpt_check_views(c, views, nv, 0, e);
    if (c->rank == 0 && !e->code)
        f = open_file(path, views, nv, meta, tmp, sizeof tmp, &full, &blk, e);
    if (mt_comm_agree(c, e)) {
        if (f >= 0) H5Fclose(f), unlink(tmp);
        free(full);
        free(blk);
        return e->code;
    }
    for (int i = 0; i < nv; i++) gather_tensor(c, f, &views[i], full, blk, e);
    if (c->rank == 0) {
        if (H5Fclose(f) < 0 && !e->code) mt_err_set(e, MT_ERR_USAGE, "cannot write %s", tmp);
        if (e->code)
            unlink(tmp);
        else
            mt_file_commit(tmp, path, e);
    }
    free(full);
    free(blk);
    return mt_comm_agree(c, e);
}
