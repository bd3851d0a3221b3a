/* batches.c - the batch source: order, batches, upload, hashes (see batches.h). */
#include "batches.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/rng.h"
#include "io/sha256.h"
#include "core/models.h"

/* The kinds of data, by mt_data_kind. */
static const mt_source_ops *const sources[] = {
    [MT_DATA_SAMPLES] = &mt_source_samples,
    [MT_DATA_TOKENS] = &mt_source_tokens,
};

int mt_batches_open(mt_batches *b, const mt_config *cfg, mt_err *e) {
    memset(b, 0, sizeof *b);
    const mt_model_ops *m = mt_model_of(cfg);
    if (!m) return mt_err_set(e, MT_ERR_INTERNAL, "no model for model.kind");
    m->rows(cfg, &b->shape);
    b->cfg = cfg;
    b->ops = sources[b->shape.data];
    b->src = calloc(1, b->ops->size);
    b->order_epoch = -1;
    if (!b->src) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    if (b->ops->open(b, cfg, e)) return e->code;
    b->global_batch = cfg->train.global_batch;
    b->steps_per_epoch = b->n_train / b->global_batch;
    return MT_OK;
}

int64_t mt_batches_eval_rows(const mt_batches *b, int64_t mb_rows) {
    return b->ops->eval_chunk ? b->ops->eval_chunk : mb_rows;
}

/* The host rows are the backend's pinned memory (a device backend with
 * queued copies). */
static int pinned(const mt_batches *b) {
    const mt_backend *be = b->be;
    return !be->host_memory && be->host_alloc && be->host_free && be->to_device_async;
}

int mt_batches_alloc(mt_batches *b, const mt_backend *be, int dp_rank, int dp_size, int64_t mb_rows,
                     mt_err *e) {
    b->be = be;
    b->local_batch = b->global_batch / dp_size;
    b->first = dp_rank * b->local_batch;
    b->eval_rows = mt_batches_eval_rows(b, mb_rows);
    b->cap = b->local_batch > b->eval_rows ? b->local_batch : b->eval_rows;
    size_t nx = (size_t)b->cap * (size_t)b->shape.x_width;
    size_t ny = (size_t)b->cap * (size_t)b->shape.y_width;
    b->order = malloc((size_t)b->n_train * sizeof *b->order);
    /* on a device: pinned host memory, so the step's upload is queued and
     * the host goes on (pinned()) */
    if (pinned(b)) {
        b->hx = be->host_alloc(nx); /* floats or int32 tokens: 4 bytes */
        b->hy = (int32_t *)be->host_alloc(ny);
    } else {
        b->hx = malloc(nx * 4);
        b->hy = malloc(ny * sizeof *b->hy);
    }
    if (!b->order || !b->hx || !b->hy)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of %smemory for the batch buffers (%zu bytes)",
                          pinned(b) ? "pinned (page-locked) host " : "", (nx + ny) * 4);
    if (be->host_memory) {
        b->dx = b->hx, b->dy = b->hy;
        return MT_OK;
    }
    /* int32 buffers are allocated as floats: the same 4 bytes */
    b->dx = be->alloc(nx);
    b->dy = (int32_t *)be->alloc(ny);
    if (!b->dx || !b->dy)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of %s memory for the batch", be->name);
    return MT_OK;
}

/* Rows [0, n) of the host buffers into the backend's memory: queued behind
 * the work before it where the backend can (pinned host buffers; the host
 * writes them again only after the step's wait for the device, core/
 * step_stats.h, or an evaluation forward's), else copied. */
static void upload(const mt_batches *b, int64_t n) {
    if (b->be->host_memory) return;
    void (*copy)(float *, const float *, size_t) =
        pinned(b) ? b->be->to_device_async : b->be->to_device;
    copy(b->dx, b->hx, (size_t)n * (size_t)b->shape.x_width);
    copy((float *)b->dy, (const float *)b->hy, (size_t)n * (size_t)b->shape.y_width);
}

/* Row j of the host buffers. */
static void *hx_row(const mt_batches *b, int64_t j) {
    return (char *)b->hx + (size_t)j * (size_t)b->shape.x_width * 4;
}

mt_model_batch mt_batches_step(mt_batches *b, int64_t step) {
    int64_t epoch = step / b->steps_per_epoch, k = step % b->steps_per_epoch;
    if (epoch != b->order_epoch) {
        if (b->cfg->train.shuffle)
            mt_rng_permutation((uint64_t)b->cfg->run.seed,
                               mt_rng_substream(mt_rng_stream("order/epoch"), (uint64_t)epoch),
                               b->order, b->n_train);
        else
            for (int64_t i = 0; i < b->n_train; i++) b->order[i] = i;
        b->order_epoch = epoch;
    }
    int64_t pos = k * b->global_batch + b->first; /* the replica's first position */
    for (int64_t j = 0; j < b->local_batch; j++)
        b->ops->row(b, 0, b->order[pos + j], hx_row(b, j),
                    b->hy + (size_t)j * (size_t)b->shape.y_width);
    upload(b, b->local_batch);
    mt_model_batch mb = {b->dx,
                         b->dy,
                         (int)b->local_batch,
                         1,
                         (uint64_t)b->cfg->run.seed,
                         (uint64_t)step,
                         epoch * b->n_train + pos};
    return mb;
}

mt_model_batch mt_batches_eval(mt_batches *b, int64_t r, int64_t n) {
    for (int64_t j = 0; j < n; j++)
        b->ops->row(b, 1, r + j, hx_row(b, j), b->hy + (size_t)j * (size_t)b->shape.y_width);
    upload(b, n);
    mt_model_batch mb = {b->dx, b->dy, (int)n, 0, (uint64_t)b->cfg->run.seed, 0, r};
    return mb;
}

int mt_batches_hash(mt_batches *b, mt_err *e) {
    int n = b->ops->nfiles(b);
    b->nfiles = n;
    b->file_path = calloc((size_t)n, sizeof *b->file_path);
    b->sha_hex = calloc((size_t)n, sizeof *b->sha_hex);
    b->file_sha = calloc((size_t)n, sizeof *b->file_sha);
    b->file_bytes = calloc((size_t)n, sizeof *b->file_bytes);
    if (!b->file_path || !b->sha_hex || !b->file_sha || !b->file_bytes)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    size_t mlen = 0;
    char *manifest = NULL;
    for (int i = 0; i < n && !e->code; i++) {
        const char *path = b->ops->file(b, i);
        b->file_sha[i] = b->sha_hex[i];
        if (!(b->file_path[i] = strdup(path))) {
            mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
            break;
        }
        struct stat st = {0};
        stat(path, &st);
        b->file_bytes[i] = (int64_t)st.st_size;
        if (mt_sha256_file(path, b->sha_hex[i], e)) break;
        size_t add = strlen(b->sha_hex[i]) + strlen(path) + 4;
        char *m = realloc(manifest, mlen + add);
        if (!m) {
            mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
            break;
        }
        manifest = m;
        mlen += (size_t)snprintf(manifest + mlen, add, "%s  %s\n", b->sha_hex[i], path);
    }
    if (!e->code) {
        if (b->hash_manifest)
            mt_sha256_buf(manifest, mlen, b->sha256);
        else
            snprintf(b->sha256, sizeof b->sha256, "%s", b->sha_hex[0]);
    }
    free(manifest);
    return e->code;
}

void mt_batches_close(mt_batches *b) {
    if (b->ops && b->src) b->ops->close(b);
    free(b->src);
    free(b->order);
    if (b->be && !b->be->host_memory) {
        b->be->free(b->dx);
        b->be->free(b->dy);
    }
    if (b->be && pinned(b)) {
        b->be->host_free(b->hx);
        b->be->host_free(b->hy);
    } else {
        free(b->hx);
        free(b->hy);
    }
    for (int i = 0; b->file_path && i < b->nfiles; i++) free(b->file_path[i]);
    free(b->file_path);
    free(b->sha_hex);
    free(b->file_sha);
    free(b->file_bytes);
    memset(b, 0, sizeof *b);
}
