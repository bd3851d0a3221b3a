/* params.c - flat parameter buffers with named views (see params.h). */
#include "params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"

void mt_params_init(mt_params *p) {
    memset(p, 0, sizeof *p);
}

int mt_params_add(mt_params *p, const char *name, int ndim, const int64_t *shape, int decay,
                  mt_init_kind init, float init_scale) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        mt_param *nv = realloc(p->v, (size_t)p->cap * sizeof *nv);
        if (!nv) abort();
        p->v = nv;
    }
    mt_param *t = &p->v[p->n];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    t->shard_dim = -1;
    t->shard_parts = 1;
    t->shard_offset = 0;
    t->shard_len = shape[0];
    t->local = 1;
    /* Align every tensor to 16 floats so kernels may use aligned vectors. */
    t->offset = (p->numel + 15) & ~(size_t)15;
    t->numel = numel;
    t->decay = decay;
    t->init = init;
    t->init_scale = init_scale;
    p->numel = t->offset + numel;
    return p->n++;
}

float *mt_alloc_floats(size_t n) {
    size_t bytes = ((n * sizeof(float)) + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    float *x = aligned_alloc(64, bytes);
    if (x) memset(x, 0, bytes);
    return x;
}

void mt_params_shard(mt_params *p, int idx, int dim, int parts, int rank, int nranks) {
    mt_param *t = &p->v[idx];
    if (nranks <= 1) return;
    t->shard_dim = dim;
    t->shard_parts = parts;
    t->shard_len = t->shape[dim] / parts / nranks;
    t->shard_offset = (int64_t)rank * t->shard_len;
}

void mt_params_pad(mt_params *p, int idx, int64_t multiple) {
    mt_param *t = &p->v[idx];
    if (multiple <= 1 || t->shard_dim >= 0) return;
    t->pad_rows = (t->shape[0] + multiple - 1) / multiple * multiple - t->shape[0];
}

void mt_params_place(mt_params *p, int idx, int stage, int local, int mirror) {
    p->v[idx].stage = stage;
    p->v[idx].local = local;
    p->v[idx].mirror = mirror;
}

size_t mt_param_global_numel(const mt_param *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

size_t mt_param_block_numel(const mt_param *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= d == t->shard_dim ? (size_t)(t->shard_len * t->shard_parts) : (size_t)t->shape[d];
    return n;
}

size_t mt_param_held_numel(const mt_param *t) {
    size_t inner = 1;
    for (int d = 1; d < t->ndim; d++) inner *= (size_t)t->shape[d];
    return mt_param_block_numel(t) + (size_t)t->pad_rows * inner;
}

int mt_params_alloc(mt_params *p, mt_err *e) {
    return mt_params_alloc_on(p, NULL, e);
}

int mt_params_alloc_on(mt_params *p, const mt_backend *be, mt_err *e) {
    p->numel = 0;
    for (int i = 0; i < p->n; i++) {
        mt_param *t = &p->v[i];
        t->offset = (p->numel + 15) & ~(size_t)15;
        t->numel = t->local ? mt_param_held_numel(t) : 0;
        p->numel = t->offset + t->numel;
    }
    p->numel = (p->numel + 15) & ~(size_t)15;
    p->be = be && !be->host_memory ? be : NULL;
    p->data = p->be ? p->be->alloc(p->numel) : mt_alloc_floats(p->numel);
    p->grad = p->be ? p->be->alloc(p->numel) : mt_alloc_floats(p->numel);
    size_t n16 = (p->numel + 1) / 2; /* bf16 values in floats */
    if (p->want_bf16) p->data16 = (uint16_t *)(p->be ? p->be->alloc(n16) : mt_alloc_floats(n16));
    if (!p->data || !p->grad || (p->want_bf16 && !p->data16))
        return mt_err_set(e, MT_ERR_INTERNAL, "out of %s memory allocating %zu parameters",
                          p->be ? p->be->name : "host", p->numel);
    return MT_OK;
}

uint64_t mt_param_global_index(const mt_param *t, size_t j) {
    if (t->shard_dim < 0) return j;
    uint64_t inner = 1;
    for (int d = t->shard_dim + 1; d < t->ndim; d++) inner *= (uint64_t)t->shape[d];
    /* local index = ((outer * parts + part) * len + s) * inner + i */
    uint64_t len = (uint64_t)t->shard_len, parts = (uint64_t)t->shard_parts;
    uint64_t block = (uint64_t)t->shape[t->shard_dim] / parts; /* global rows per part */
    uint64_t i = j % inner, s = (j / inner) % len, part = (j / (inner * len)) % parts,
             outer = j / (inner * len * parts);
    uint64_t row = part * block + (uint64_t)t->shard_offset + s;
    return (outer * (uint64_t)t->shape[t->shard_dim] + row) * inner + i;
}

void mt_params_init_values(mt_params *p, uint64_t seed) {
    for (int i = 0; i < p->n; i++) {
        mt_param *t = &p->v[i];
        float *x = p->data + t->offset;
        char purpose[MT_PARAM_NAME_LEN + 8];
        snprintf(purpose, sizeof purpose, "init/%s", t->name);
        uint64_t stream = mt_rng_stream(purpose);
        size_t n = t->numel ? mt_param_block_numel(t) : 0;
        for (size_t j = n; j < t->numel; j++) x[j] = 0.0f; /* the pad rows */
        for (size_t j = 0; j < n; j++) {
            uint64_t g = mt_param_global_index(t, j);
            switch (t->init) {
            case MT_INIT_ZERO:
                x[j] = 0.0f;
                break;
            case MT_INIT_ONE:
                x[j] = 1.0f;
                break;
            case MT_INIT_UNIFORM:
                x[j] = (2.0f * mt_rng_uniform(seed, stream, g) - 1.0f) * t->init_scale;
                break;
            case MT_INIT_NORMAL:
                x[j] = mt_rng_normal(seed, stream, g) * t->init_scale;
                break;
            }
        }
    }
}

size_t mt_params_count(const mt_params *p) {
    size_t n = 0;
    for (int i = 0; i < p->n; i++) n += p->v[i].numel;
    return n;
}

size_t mt_params_global_count(const mt_params *p) {
    size_t n = 0;
    for (int i = 0; i < p->n; i++) n += mt_param_global_numel(&p->v[i]);
    return n;
}

const mt_param *mt_params_find(const mt_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->v[i].name, name) == 0) return &p->v[i];
    return NULL;
}

void mt_params_to_bf16(mt_params *p, const mt_backend *be) {
    if (p->data16) be->to_bf16(p->data16, p->data, p->numel);
}

void mt_params_free(mt_params *p) {
    free(p->v);
    if (p->be) {
        p->be->free(p->data);
        p->be->free(p->grad);
        if (p->data16) p->be->free(p->data16);
    } else {
        free(p->data);
        free(p->grad);
        free(p->data16);
    }
    memset(p, 0, sizeof *p);
}

int mt_params_gradsync(const mt_params *p, int tp_rank, mt_gradsync *g, mt_err *e) {
    for (int i = 0; i < p->n && !e->code; i++) {
        const mt_param *t = &p->v[i];
        if (!t->numel) continue;
        if (t->tied) mt_gradsync_add_tied(g, t->offset, t->numel, e);
        if (!t->mirror && (t->shard_dim >= 0 || tp_rank == 0))
            mt_gradsync_add_norm(g, t->offset, t->numel, e);
    }
    return e->code;
}
