/*
 * source_samples.c - the batch source of fixed-size samples (core/batches.h):
 * float feature vectors [N, D] and integer labels [N] from one HDF5 file
 * (data.path; dataset names from the config), training and test split.
 */
#include <stdio.h>
#include <string.h>

#include "core/batches.h"
#include "io/dataset.h"

typedef struct {
    mt_dataset split[2]; /* training, test */
} samples;

static int open_samples(mt_batches *b, const mt_config *cfg, mt_err *e) {
    samples *s = b->src;
    const mt_cfg_intlist *l = &cfg->model.layers;
    int64_t dim = l->v[0], classes = l->v[l->n - 1];
    if (!mt_dataset_load(&s->split[0], cfg->data.path, cfg->data.train_images,
                         cfg->data.train_labels, dim, classes, e))
        mt_dataset_load(&s->split[1], cfg->data.path, cfg->data.test_images, cfg->data.test_labels,
                        dim, classes, e);
    b->n_train = s->split[0].n;
    b->n_eval = s->split[1].n;
    b->name = cfg->data.path;
    b->split_name[0] = "train", b->split_name[1] = "test";
    b->split_src[0] = cfg->data.train_images, b->split_src[1] = cfg->data.test_images;
    b->split_rows[0] = b->n_train, b->split_rows[1] = b->n_eval;
    b->row_unit = b->label_unit = "samples";
    b->hash_manifest = 0;
    if (!e->code && b->n_train < cfg->train.global_batch)
        mt_err_set(e, MT_ERR_USAGE,
                   "train.global_batch = %lld is larger than the %lld training samples in %s",
                   (long long)cfg->train.global_batch, (long long)b->n_train, cfg->data.path);
    return e->code;
}

static void row(const mt_batches *b, int split, int64_t r, void *x, int32_t *y) {
    const mt_dataset *d = &((const samples *)b->src)->split[split];
    size_t D = (size_t)d->dim;
    memcpy(x, d->x + (size_t)r * D, D * sizeof(float));
    *y = d->y[r];
}

static int nfiles(const mt_batches *b) {
    (void)b;
    return 1;
}

static const char *file(const mt_batches *b, int i) {
    (void)i;
    return b->cfg->data.path;
}

static void describe(const mt_batches *b, FILE *f) {
    const samples *s = b->src;
    fprintf(f, "data: %s: %lld train, %lld test samples of %lld inputs (sha256 %.16s...)\n",
            b->cfg->data.path, (long long)s->split[0].n, (long long)s->split[1].n,
            (long long)s->split[0].dim, b->sha256);
}

static void record(const mt_batches *b, cJSON *data) {
    const samples *s = b->src;
    cJSON_AddStringToObject(data, "path", b->cfg->data.path);
    cJSON_AddStringToObject(data, "sha256", b->sha256);
    cJSON_AddNumberToObject(data, "train_samples", (double)s->split[0].n);
    cJSON_AddNumberToObject(data, "test_samples", (double)s->split[1].n);
}

static void print_eval(FILE *f, int64_t step, double loss, double acc, int64_t hits,
                       int64_t labels) {
    fprintf(f, "eval  step %lld: test loss %.4f | test accuracy %.2f%% (%lld/%lld)\n",
            (long long)step, loss, 100.0 * acc, (long long)hits, (long long)labels);
}

static void print_final(FILE *f, double loss, double acc, int64_t hits, int64_t labels) {
    fprintf(f, "final test accuracy: %.2f%% (%lld/%lld), test loss %.4f\n", 100.0 * acc,
            (long long)hits, (long long)labels, loss);
}

static void close_samples(mt_batches *b) {
    samples *s = b->src;
    mt_dataset_free(&s->split[0]);
    mt_dataset_free(&s->split[1]);
}

const mt_source_ops mt_source_samples = {
    .kind = MT_DATA_SAMPLES,
    .size = sizeof(samples),
    .eval_chunk = 256, /* a fixed chunk of samples bounds the activations */
    .open = open_samples,
    .row = row,
    .nfiles = nfiles,
    .file = file,
    .describe = describe,
    .record = record,
    .print_eval = print_eval,
    .print_final = print_final,
    .close = close_samples,
};
