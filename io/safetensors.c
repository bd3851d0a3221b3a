/* safetensors.c - the safetensors writer (see safetensors.h). */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/files.h"

static size_t numel(const mt_st_tensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

/* The header's JSON (malloc'd), or NULL with e set. */
static char *header_json(const mt_st_tensor *t, int n, const char *const *meta, int n_meta,
                         mt_err *e) {
    cJSON *root = cJSON_CreateObject(), *md = cJSON_CreateObject();
    int ok = root && md && cJSON_AddItemToObject(root, "__metadata__", md);
    if (!ok) cJSON_Delete(md);
    for (int i = 0; ok && i < n_meta; i++)
        ok = cJSON_AddStringToObject(md, meta[2 * i], meta[2 * i + 1]) != NULL;
    uint64_t off = 0;
    for (int i = 0; ok && i < n; i++) {
        if (strcmp(t[i].name, "__metadata__") == 0 ||
            cJSON_GetObjectItemCaseSensitive(root, t[i].name) || t[i].ndim < 0 ||
            t[i].ndim > MT_ST_MAX_DIMS) {
            mt_err_set(e, MT_ERR_INTERNAL,
                       "safetensors: tensor name '%s' repeated or reserved, or "
                       "rank %d out of range",
                       t[i].name, t[i].ndim);
            cJSON_Delete(root);
            return NULL;
        }
        cJSON *o = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        ok = o && shape && offs && cJSON_AddItemToObject(root, t[i].name, o);
        if (!ok) cJSON_Delete(o);
        ok = ok && cJSON_AddStringToObject(o, "dtype", "F32") != NULL;
        ok = ok && cJSON_AddItemToObject(o, "shape", shape);
        if (!ok) cJSON_Delete(shape);
        for (int d = 0; ok && d < t[i].ndim; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        uint64_t end = off + (uint64_t)numel(&t[i]) * 4u;
        ok = ok && cJSON_AddItemToObject(o, "data_offsets", offs);
        if (!ok) cJSON_Delete(offs);
        ok = ok && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        ok = ok && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)end));
        off = end;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) mt_err_set(e, MT_ERR_INTERNAL, "out of memory building the safetensors header");
    return text;
}

int mt_safetensors_write_tmp(const char *tmp, const mt_st_tensor *t, int n, const char *const *meta,
                             int n_meta, mt_err *e) {
    char *json = header_json(t, n, meta, n_meta, e);
    if (!json) return e->code;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        mt_err_set(e, MT_ERR_USAGE, "cannot write %s: %s", tmp, strerror(errno));
        free(json);
        return e->code;
    }
    /* spaces after the JSON: the data starts at a multiple of 8 bytes */
    uint64_t len = strlen(json), hlen = (len + 7) / 8 * 8;
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hlen >> (8 * i));
    int bad = fwrite(le, 1, 8, f) != 8 || fwrite(json, 1, len, f) != len;
    for (uint64_t i = len; !bad && i < hlen; i++) bad = fputc(' ', f) == EOF;
    for (int i = 0; !bad && i < n; i++) bad = mt_file_put_f32le(f, t[i].data, numel(&t[i])) != 0;
    int rc = mt_file_close_tmp(f, tmp, bad, e);
    free(json);
    return rc;
}

int mt_safetensors_write(const char *path, const mt_st_tensor *t, int n, const char *const *meta,
                         int n_meta, mt_err *e) {
    char tmp[MT_PATH_LEN + 32];
    mt_file_tmp_name(path, tmp, sizeof tmp);
    if (mt_safetensors_write_tmp(tmp, t, n, meta, n_meta, e)) return e->code;
    return mt_file_commit(tmp, path, e);
}
