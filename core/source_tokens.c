/*
 * source_tokens.c - the batch source of token windows (core/batches.h): llm.c
 * token shards (data.train_tokens, data.val_tokens: a file or a glob), read
 * as windows of T tokens with their next tokens; the evaluation split is the
 * first train.eval_windows windows of the validation shards.
 */
#include <stdio.h>

#include "core/batches.h"
#include "io/tokens.h"

typedef struct {
    mt_token_set split[2]; /* training, validation */
    int T;                 /* tokens per window */
} tokens;

static int open_tokens(mt_batches *b, const mt_config *cfg, mt_err *e) {
    tokens *s = b->src;
    s->T = (int)b->shape.x_width;
    const char *pat[2] = {cfg->data.train_tokens, cfg->data.val_tokens};
    const char *key[2] = {"data.train_tokens", "data.val_tokens"};
    int64_t n[2] = {0, 0};
    for (int k = 0; k < 2 && !e->code; k++) {
        if (mt_tokens_open(&s->split[k], pat[k], (int)cfg->model.vocab_size, e)) break;
        n[k] = mt_tokens_windows(&s->split[k], s->T);
        if (n[k] == 0) {
            mt_err_set(e, MT_ERR_USAGE,
                       "%s (%s) holds %lld tokens: not one sequence of %d + 1 tokens "
                       "(model.block_size / train.seq_len is larger than the data)",
                       key[k], pat[k], (long long)s->split[k].total, s->T);
            mt_err_hint(e, "use more data, or a smaller model.block_size or train.seq_len");
        }
    }
    b->n_train = n[0];
    b->n_eval =
        cfg->train.eval_windows && cfg->train.eval_windows < n[1] ? cfg->train.eval_windows : n[1];
    b->name = cfg->data.train_tokens;
    b->split_name[0] = "train", b->split_name[1] = "val";
    b->split_src[0] = cfg->data.train_tokens, b->split_src[1] = cfg->data.val_tokens;
    b->split_rows[0] = n[0], b->split_rows[1] = n[1];
    b->row_unit = "sequences";
    b->label_unit = "tokens";
    b->hash_manifest = 1;
    if (!e->code && b->n_train < cfg->train.global_batch)
        mt_err_set(e, MT_ERR_USAGE,
                   "train.global_batch = %lld is larger than the %lld sequences of %d tokens in "
                   "%s",
                   (long long)cfg->train.global_batch, (long long)b->n_train, s->T,
                   cfg->data.train_tokens);
    return e->code;
}

static void row(const mt_batches *b, int split, int64_t r, void *x, int32_t *y) {
    const tokens *s = b->src;
    mt_tokens_window(&s->split[split], r, s->T, x, y);
}

static int nfiles(const mt_batches *b) {
    const tokens *s = b->src;
    return s->split[0].n + s->split[1].n;
}

static const char *file(const mt_batches *b, int i) {
    const tokens *s = b->src;
    return i < s->split[0].n ? s->split[0].shard[i].path
                             : s->split[1].shard[i - s->split[0].n].path;
}

static void describe(const mt_batches *b, FILE *f) {
    const tokens *s = b->src;
    fprintf(f,
            "data: %s: %lld tokens in %d shard(s), %lld sequences of %d; %s: %lld tokens, %lld "
            "sequences for validation (sha256 %.16s...)\n",
            b->cfg->data.train_tokens, (long long)s->split[0].total, s->split[0].n,
            (long long)b->n_train, s->T, b->cfg->data.val_tokens, (long long)s->split[1].total,
            (long long)b->n_eval, b->sha256);
}

static void record(const mt_batches *b, cJSON *data) {
    const tokens *s = b->src;
    cJSON_AddStringToObject(data, "train_tokens", b->cfg->data.train_tokens);
    cJSON_AddStringToObject(data, "val_tokens", b->cfg->data.val_tokens);
    cJSON_AddStringToObject(data, "sha256", b->sha256);
    cJSON_AddNumberToObject(data, "seq_len", s->T);
    cJSON_AddNumberToObject(data, "train_sequences", (double)b->n_train);
    cJSON_AddNumberToObject(data, "val_sequences", (double)b->n_eval);
}

static void print_eval(FILE *f, int64_t step, double loss, double acc, int64_t hits,
                       int64_t labels) {
    fprintf(f,
            "eval  step %lld: val loss %.4f | val next-token accuracy %.2f%% (%lld/%lld "
            "tokens)\n",
            (long long)step, loss, 100.0 * acc, (long long)hits, (long long)labels);
}

static void print_final(FILE *f, double loss, double acc, int64_t hits, int64_t labels) {
    fprintf(f, "final val loss %.4f | val next-token accuracy %.2f%% (%lld/%lld tokens)\n", loss,
            100.0 * acc, (long long)hits, (long long)labels);
}

static void close_tokens(mt_batches *b) {
    tokens *s = b->src;
    mt_tokens_close(&s->split[0]);
    mt_tokens_close(&s->split[1]);
}

const mt_source_ops mt_source_tokens = {
    .kind = MT_DATA_TOKENS,
    .size = sizeof(tokens),
    .eval_chunk = 0, /* a micro-batch: the shape training runs (windows are long) */
    .open = open_tokens,
    .row = row,
    .nfiles = nfiles,
    .file = file,
    .describe = describe,
    .record = record,
    .print_eval = print_eval,
    .print_final = print_final,
    .close = close_tokens,
};
