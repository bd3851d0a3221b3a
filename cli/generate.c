/*
 * generate.c - `mpitrain generate` (see generate.h). Loads a GPT
 * checkpoint on one process (verified first, then its /model tensors read
 * serially with HDF5: no MPI, so it runs without mpirun) and samples one
 * token at a time, re-running the forward over the whole context each step.
 * That costs block_size times the work of a KV cache and is fine for the
 * small models mpitrain trains; the counter-based RNG makes the output a
 * function of (checkpoint, prompt, options, seed) alone.
 */
#include "cli/generate.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "base/error.h"
#include "core/gpt.h"
#include "core/params.h"
#include "core/resume.h"
#include "base/rng.h"
#include "io/checkpoint.h"
#include "io/h5util.h"
#include "kernels/backend.h"
#include "io/gpt2_bpe.h"
#include "parallel/threads.h"

#define GEN_TOKENS_MAX  1000000
#define GEN_BYTE_VOCAB  256 /* byte-level models: token = byte value */
#define GEN_START_BYTE  10  /* '\n': the context of an empty prompt (byte models) */
#define GEN_START_TOKEN 0   /* ... and of other models */
#define GEN_VOCAB_DIR   "data/gpt2"

/* How text maps to the model's token ids, by the checkpoint's
 * data.tokenizer: a byte each, GPT-2's BPE, or none (ids in and out). */
enum { GEN_IDS = 0, GEN_BYTES = 1, GEN_BPE = 2 };
typedef struct {
    int kind;
    mt_gpt2_bpe *bpe; /* GEN_BPE */
} gen_codec;
#define GEN_DEFAULT_TEMP 1.0

typedef struct {
    const char *checkpoint;
    const char *prompt;        /* bytes, or NULL */
    const char *prompt_tokens; /* "1,2,3", or NULL */
    const char *vocab_dir;     /* GPT-2's vocabulary (data.tokenizer = gpt2) */
    int64_t tokens;
    double temperature; /* 0 = greedy */
    int64_t top_k;      /* 0 = all */
    uint64_t seed;
} gen_args;

static void usage(FILE *out) {
    fprintf(out,
            "usage: mpitrain generate --checkpoint FILE [--prompt TEXT | --prompt-tokens IDS]\n"
            "                         [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
            "\n"
            "Samples from a GPT checkpoint (model.kind = gpt) on one process; no mpirun.\n"
            "\n"
            "  --checkpoint FILE    a checkpoint file (run folder's checkpoints/step_N.h5),\n"
            "                       checked completely (as `mpitrain ckpt verify`) before use\n"
            "  --prompt TEXT        text to continue, for models that say how text is\n"
            "                       tokenized: data.tokenizer = bytes (or 256 ids unsaid: one\n"
            "                       token per byte) or gpt2 (GPT-2's BPE)\n"
            "  --prompt-tokens IDS  the prompt as token ids \"1,2,3\", each < model.vocab_size\n"
            "  --vocab-dir DIR      GPT-2's encoder.json and vocab.bpe, for gpt2 models\n"
            "                       (default " GEN_VOCAB_DIR ": scripts/fetch_gpt2_vocab.sh)\n"
            "  --tokens N           tokens to generate, 1 to %d (default 200)\n"
            "  --temperature T      divides the logits; 0 = greedy arg-max (default %.1f)\n"
            "  --top-k K            sample among the K likeliest tokens; 0 = all (default 0)\n"
            "  --seed S             sampling seed: the same seed gives the same output\n"
            "                       (default 1)\n"
            "  -h, --help           print this help\n"
            "\n"
            "Without a prompt, a byte-level model starts from '\\n' (token %d), a gpt2\n"
            "model from <|endoftext|> (50256) and any other model from token %d; that\n"
            "start token is not printed. Each step sees the last model.block_size tokens.\n"
            "\n"
            "stdout gets only the prompt, then the generated tokens, then a newline: text\n"
            "(each token's bytes, as they come) for bytes and gpt2 models, else\n"
            "comma-separated token ids. The checkpoint, model and speed go to stderr.\n"
            "\n"
            "Exit status: 0 done, 2 usage (or a checkpoint that is not a GPT model),\n"
            "3 GPT-2's vocabulary missing or corrupt, 4 corrupt or unreadable checkpoint,\n"
            "6 the model's logits are not finite.\n",
            GEN_TOKENS_MAX, GEN_DEFAULT_TEMP, GEN_START_BYTE, GEN_START_TOKEN);
}

/*
 * Matches argv[*i] against option `name` as "--name VALUE" or "--name=VALUE".
 * Returns 1 and sets *value on a match (advancing *i past a separate value),
 * 0 when it is another option, -1 on a usage error (e set). Only --prompt
 * may be empty (an empty prompt is a prompt).
 */
static int take_option(int argc, char **argv, int *i, const char *name, const char **value,
                       mt_err *e) {
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0 || (arg[n] != '\0' && arg[n] != '=')) return 0;
    if (*value) return mt_err_set(e, MT_ERR_USAGE, "option %s given twice", name), -1;
    if (arg[n] == '=')
        *value = arg + n + 1;
    else if (*i + 1 < argc)
        *value = argv[++*i];
    else
        return mt_err_set(e, MT_ERR_USAGE, "option %s needs a value", name), -1;
    if (!**value && strcmp(name, "--prompt") != 0)
        return mt_err_set(e, MT_ERR_USAGE, "option %s has an empty value", name), -1;
    return 1;
}

/* A whole number in [lo, hi]: digits only, no sign, no spaces. */
static int parse_int(const char *name, const char *text, int64_t lo, int64_t hi, int64_t *out,
                     mt_err *e) {
    char *end = NULL;
    errno = 0;
    long long v = text[0] >= '0' && text[0] <= '9' ? strtoll(text, &end, 10) : -1;
    if (end && !*end && v >= lo && (errno == ERANGE || v > hi))
        return mt_err_set(e, MT_ERR_USAGE,
                          "%s %s is too large: it must be a whole number from %lld to %lld", name,
                          text, (long long)lo, (long long)hi);
    if (v < lo || v > hi || !end || *end || errno)
        return mt_err_set(e, MT_ERR_USAGE, "%s must be a whole number from %lld to %lld, not '%s'",
                          name, (long long)lo, (long long)hi, text);
    *out = v;
    return MT_OK;
}

static int parse_seed(const char *text, uint64_t *out, mt_err *e) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = text[0] >= '0' && text[0] <= '9' ? strtoull(text, &end, 10) : 0;
    if (end && !*end && errno == ERANGE)
        return mt_err_set(e, MT_ERR_USAGE,
                          "--seed %s is too large: it must be a whole number from 0 to %llu", text,
                          (unsigned long long)UINT64_MAX);
    if (!end || *end || errno)
        return mt_err_set(e, MT_ERR_USAGE, "--seed must be a whole number from 0 to %llu, not '%s'",
                          (unsigned long long)UINT64_MAX, text);
    *out = v;
    return MT_OK;
}

static int parse_temperature(const char *text, double *out, mt_err *e) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end != text && !*end && errno == ERANGE && v == HUGE_VAL)
        return mt_err_set(e, MT_ERR_USAGE, "--temperature %s is too large", text);
    if (end == text || *end || errno || !isfinite(v) || v < 0.0)
        return mt_err_set(e, MT_ERR_USAGE,
                          "--temperature must be a number >= 0 (0 = greedy), not '%s'", text);
    *out = v;
    return MT_OK;
}

/* "1,2,3" -> ids (malloc'd), n; range is checked once the vocabulary is known. */
static int parse_ids(const char *text, int32_t **ids, int64_t *n, mt_err *e) {
    size_t cap = 1;
    for (const char *c = text; *c; c++) cap += *c == ',';
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the prompt");
    *n = 0;
    for (const char *c = text;;) {
        char *end = NULL;
        errno = 0;
        long long v = *c >= '0' && *c <= '9' ? strtoll(c, &end, 10) : -1;
        if (v >= 0 && (errno == ERANGE || v > INT32_MAX) && (*end == ',' || *end == '\0'))
            return mt_err_set(e, MT_ERR_USAGE, "--prompt-tokens: token %.*s is too large",
                              (int)(end - c), c);
        if (v < 0 || errno || v > INT32_MAX || (*end != ',' && *end != '\0'))
            return mt_err_set(e, MT_ERR_USAGE,
                              "--prompt-tokens must be token ids separated by commas "
                              "(\"1,2,3\"), not '%s'",
                              text);
        (*ids)[(*n)++] = (int32_t)v;
        if (*end == '\0') break;
        c = end + 1;
    }
    return MT_OK;
}

static int parse_args(int argc, char **argv, gen_args *a, mt_err *e) {
    const char *tokens = NULL, *temp = NULL, *topk = NULL, *seed = NULL;
    for (int i = 1; i < argc && !e->code; i++) {
        const char *arg = argv[i];
        int m = take_option(argc, argv, &i, "--checkpoint", &a->checkpoint, e);
        if (m == 0) m = take_option(argc, argv, &i, "--prompt-tokens", &a->prompt_tokens, e);
        if (m == 0) m = take_option(argc, argv, &i, "--prompt", &a->prompt, e);
        if (m == 0) m = take_option(argc, argv, &i, "--vocab-dir", &a->vocab_dir, e);
        if (m == 0) m = take_option(argc, argv, &i, "--tokens", &tokens, e);
        if (m == 0) m = take_option(argc, argv, &i, "--temperature", &temp, e);
        if (m == 0) m = take_option(argc, argv, &i, "--top-k", &topk, e);
        if (m == 0) m = take_option(argc, argv, &i, "--seed", &seed, e);
        if (m == 0 && arg[0] == '-')
            mt_err_set(e, MT_ERR_USAGE, "unknown option '%s' for mpitrain generate", arg);
        else if (m == 0)
            mt_err_set(e, MT_ERR_USAGE,
                       "unexpected argument '%s' (the checkpoint is given with "
                       "--checkpoint FILE)",
                       arg);
    }
    if (e->code) return e->code;
    a->tokens = 200;
    a->temperature = GEN_DEFAULT_TEMP;
    a->seed = 1;
    if (!a->checkpoint)
        return mt_err_set(e, MT_ERR_USAGE, "mpitrain generate needs --checkpoint FILE");
    if (a->prompt && a->prompt_tokens)
        return mt_err_set(e, MT_ERR_USAGE, "give --prompt or --prompt-tokens, not both");
    if (tokens) parse_int("--tokens", tokens, 1, GEN_TOKENS_MAX, &a->tokens, e);
    if (temp && !e->code) parse_temperature(temp, &a->temperature, e);
    /* the upper bound, model.vocab_size, is checked once the model is loaded */
    if (topk && !e->code) parse_int("--top-k", topk, 0, INT32_MAX, &a->top_k, e);
    if (seed && !e->code) parse_seed(seed, &a->seed, e);
    return e->code;
}

/* Reads every parameter from /model/<name> of a verified checkpoint. */
static int read_weights(const char *path, mt_params *p, mt_err *e) {
    mt_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return mt_err_set(e, MT_ERR_CKPT, "cannot open checkpoint %s", path);
    for (int i = 0; i < p->n && !e->code; i++) {
        const mt_param *t = &p->v[i];
        char dp[MT_PARAM_NAME_LEN + 8];
        snprintf(dp, sizeof dp, "/model/%s", t->name);
        hid_t ds = H5Lexists(f, dp, H5P_DEFAULT) > 0 ? H5Dopen2(f, dp, H5P_DEFAULT) : -1;
        if (ds < 0) {
            mt_err_set(e, MT_ERR_CKPT, "checkpoint %s has no tensor %s", path, dp);
            break;
        }
        hid_t space = H5Dget_space(ds);
        hsize_t dims[H5S_MAX_RANK];
        int nd = H5Sget_simple_extent_dims(space, dims, NULL);
        int same = nd == t->ndim;
        for (int d = 0; same && d < nd; d++) same = dims[d] == (hsize_t)t->shape[d];
        if (!same)
            mt_err_set(e, MT_ERR_CKPT,
                       "checkpoint %s: %s has another shape than its config's model", path, dp);
        else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p->data + t->offset) <
                 0)
            mt_err_set(e, MT_ERR_CKPT,
                       "checkpoint %s: %s fails its checksum or cannot be read (the file is "
                       "corrupt)",
                       path, dp);
        H5Sclose(space);
        H5Dclose(ds);
    }
    if (H5Fclose(f) < 0) mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: cannot close", path);
    return e->code;
}

/* Verifies the checkpoint, builds the model of its stored config and loads
 * its weights; *tokenizer: its data.tokenizer (mt_tokenizer). */
static int load(const char *path, mt_ckpt_info *info, mt_gpt *m, mt_params *p, int *tokenizer,
                mt_err *e) {
    if (mt_ckpt_verify(path, 0, info, e)) return e->code;
    mt_config cfg;
    if (mt_resume_config_of(path, info, &cfg, e)) return e->code;
    *tokenizer = cfg.data.tokenizer;
    if (cfg.model.kind != MT_MODEL_GPT) {
        mt_err_set(e, MT_ERR_USAGE,
                   "checkpoint %s holds a model.kind = %s model; mpitrain generate samples from "
                   "GPT models only (model.kind = gpt)",
                   path, mt_config_enum_name("model", "kind", cfg.model.kind));
        return e->code;
    }
    mt_gpt_config gc = mt_gpt_config_of(&cfg, mt_backend_cpu()); /* sample()'s backend */
    mt_err perr = {0};
    if (mt_gpt_build(m, &gc, p, &perr))
        return mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: its model cannot be built: %s", path,
                          perr.msg);
    if (mt_params_alloc(p, e)) return e->code;
    return read_weights(path, p, e);
}

typedef struct {
    float z;
    int32_t id;
} gen_cand;

/* Larger logit first; the lower id first on ties (so top-k 1 is arg-max). */
static int cand_cmp(const void *a, const void *b) {
    const gen_cand *x = a, *y = b;
    if (x->z != y->z) return x->z > y->z ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/*
 * The next token from logits z(V): arg-max (first on ties) when temp == 0 or
 * k == 1; else a draw with uniform u from softmax(z / temp) over the k
 * largest logits (k == 0 or k >= V: all of them). cand(V) is scratch.
 */
static int32_t pick(const float *z, int V, double temp, int k, float u, gen_cand *cand) {
    int n = k > 0 && k < V ? k : V;
    if (temp == 0.0 || n == 1) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (z[i] > z[best]) best = i;
        return best;
    }
    for (int i = 0; i < V; i++) cand[i].z = z[i], cand[i].id = i;
    if (n < V) qsort(cand, (size_t)V, sizeof *cand, cand_cmp);
    float zmax = cand[0].z;
    for (int i = 1; i < n; i++)
        if (cand[i].z > zmax) zmax = cand[i].z;
    /* weights exp((z - max) / temp) in [0, 1]: no overflow at any temperature */
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp(((double)cand[i].z - zmax) / temp);
    double r = (double)u * sum, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += exp(((double)cand[i].z - zmax) / temp);
        if (cum > r) return cand[i].id;
    }
    return cand[0].id; /* not reached: r < sum, and cum ends at sum */
}

/* The output of one token: its byte, its BPE bytes (which may end inside a
 * UTF-8 character: the next token's finish it), or ",id" after the first. */
static void emit(const gen_codec *cd, int32_t tok, int64_t *written) {
    size_t len = 0;
    const uint8_t *b =
        cd->kind == GEN_BPE ? mt_gpt2_bpe_token_bytes(cd->bpe, (unsigned)tok, &len) : NULL;
    if (cd->kind == GEN_BYTES)
        fputc(tok, stdout);
    else if (b)
        fwrite(b, 1, len, stdout);
    else
        printf("%s%d", *written ? "," : "", (int)tok);
    ++*written;
}

/* Samples a->tokens tokens after seq[0..n) (seq has room for them) and
 * writes them to stdout as they come. */
static int sample(const gen_args *a, mt_gpt *m, const mt_params *p, int32_t *seq, int64_t n,
                  const gen_codec *cd, int64_t *written, mt_err *e) {
    const mt_backend *be = mt_backend_cpu();
    const int V = m->cfg.vocab_size, Vp = mt_gpt_vocab_padded(&m->cfg), BT = m->cfg.block_size;
    float *row = malloc((size_t)V * sizeof *row);      /* (V) logits of the last position */
    gen_cand *cand = malloc((size_t)V * sizeof *cand); /* (V) */
    if (!row || !cand || mt_gpt_alloc(m, be, 1, BT, e)) {
        mt_err_set(e, MT_ERR_INTERNAL, "out of memory for sampling");
    } else {
        const uint64_t stream = mt_rng_stream("generate");
        for (int64_t i = 0; i < a->tokens; i++) {
            int T = n < BT ? (int)n : BT;
            mt_gpt_forward(m, be, p, seq + n - T, NULL, 1, T, NULL);
            /* the logits' rows are Vp apart; the padding columns are no tokens */
            be->to_host(row, m->logits + (size_t)(T - 1) * (size_t)Vp, (size_t)V);
            for (int v = 0; v < V; v++)
                if (!isfinite(row[v])) {
                    mt_err_set(e, MT_ERR_NUMERIC,
                               "the model's logits are not finite (token %d at step %lld): the "
                               "checkpoint's weights hold NaN or Inf",
                               v, (long long)i);
                    break;
                }
            if (e->code) break;
            float u = mt_rng_uniform(a->seed, stream, (uint64_t)i);
            seq[n] = pick(row, V, a->temperature, (int)a->top_k, u, cand);
            emit(cd, seq[n++], written);
            fflush(stdout);
        }
    }
    free(row);
    free(cand);
    return e->code;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The prompt text's ids (malloc'd) by the codec: a byte each, or GPT-2's
 * BPE. */
static int text_ids(const char *text, const gen_codec *cd, int32_t **ids, int64_t *n, mt_err *e) {
    size_t len = strlen(text);
    *n = 0;
    if (cd->kind == GEN_BYTES) {
        if (!(*ids = malloc(len * sizeof **ids)))
            return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the prompt");
        for (size_t i = 0; i < len; i++) (*ids)[i] = (unsigned char)text[i];
        *n = (int64_t)len;
        return MT_OK;
    }
    mt_gpt2_tokens tok = {0};
    const uint8_t *doc = (const uint8_t *)text;
    if (mt_gpt2_bpe_encode(cd->bpe, &doc, &len, 1, &tok, e)) {
        free(tok.tok);
        return e->code;
    }
    if (!(*ids = malloc((tok.n ? tok.n : 1) * sizeof **ids))) {
        free(tok.tok);
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the prompt");
    }
    for (size_t i = 0; i < tok.n; i++) (*ids)[i] = tok.tok[i];
    *n = (int64_t)tok.n;
    free(tok.tok);
    return MT_OK;
}

/* The checkpoint's data.tokenizer as a codec (GPT-2's vocabulary loaded
 * from vocab_dir), refusing one that does not fit the model's vocabulary. */
static int open_codec(int tokenizer, int V, const char *vocab_dir, gen_codec *cd, mt_err *e) {
    cd->kind = tokenizer == MT_TOK_GPT2    ? GEN_BPE
               : tokenizer == MT_TOK_BYTES ? GEN_BYTES
               : V == GEN_BYTE_VOCAB       ? GEN_BYTES /* (256 ids unsaid: bytes, as before) */
                                           : GEN_IDS;
    int want = cd->kind == GEN_BPE ? MT_GPT2_VOCAB : GEN_BYTE_VOCAB;
    if (cd->kind != GEN_IDS && V != want)
        return mt_err_set(e, MT_ERR_USAGE,
                          "the checkpoint says data.tokenizer = %s, which needs model.vocab_size "
                          "= %d, but the model has %d",
                          cd->kind == GEN_BPE ? "gpt2" : "bytes", want, V);
    if (cd->kind == GEN_BPE) return mt_gpt2_bpe_load(&cd->bpe, vocab_dir, e);
    return MT_OK;
}

/* Builds the context seq (room for the generated tokens too) from the prompt,
 * checking its ids against the model; *start is 1 when it holds only the
 * start token. */
static int make_context(const gen_args *a, int V, const gen_codec *cd, int32_t **seq, int64_t *n,
                        int *start, mt_err *e) {
    int32_t *ids = NULL;
    int64_t np = 0;
    if (a->prompt_tokens) {
        if (parse_ids(a->prompt_tokens, &ids, &np, e)) {
            free(ids);
            return e->code;
        }
        for (int64_t i = 0; i < np; i++)
            if (ids[i] >= V) {
                mt_err_set(e, MT_ERR_USAGE,
                           "--prompt-tokens: token %d is out of range (model.vocab_size = %d)",
                           (int)ids[i], V);
                free(ids);
                return e->code;
            }
    } else if (a->prompt && a->prompt[0]) {
        if (cd->kind == GEN_IDS) {
            mt_err_set(e, MT_ERR_USAGE,
                       "--prompt is text, and this model does not say how its ids encode text "
                       "(data.tokenizer = ids, model.vocab_size = %d)",
                       V);
            mt_err_hint(e, "give the prompt as token ids: --prompt-tokens 1,2,3");
            return e->code;
        }
        if (text_ids(a->prompt, cd, &ids, &np, e)) return e->code;
    }
    *start = np == 0;
    int64_t len = (*start ? 1 : np) + a->tokens;
    *seq = malloc((size_t)len * sizeof **seq);
    if (!*seq) {
        free(ids);
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for %lld tokens", (long long)len);
    }
    if (*start)
        (*seq)[0] = cd->kind == GEN_BYTES ? GEN_START_BYTE
                    : cd->kind == GEN_BPE ? MT_GPT2_EOT
                                          : GEN_START_TOKEN;
    else
        memcpy(*seq, ids, (size_t)np * sizeof *ids);
    *n = *start ? 1 : np;
    free(ids);
    return MT_OK;
}

int mt_cli_generate(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    mt_err e = {0};
    gen_args a = {0};
    if (parse_args(argc, argv, &a, &e)) {
        mt_err_hint(&e, "run 'mpitrain generate --help' for usage");
        mt_err_print(&e);
        return e.code;
    }
    mt_ckpt_info info;
    mt_gpt m;
    mt_params p;
    memset(&m, 0, sizeof m);
    mt_params_init(&p);
    int32_t *seq = NULL;
    int64_t n = 0, written = 0;
    int start = 0, tok = MT_TOK_IDS;
    gen_codec cd = {GEN_IDS, NULL};
    if (!load(a.checkpoint, &info, &m, &p, &tok, &e)) {
        const int V = m.cfg.vocab_size;
        if (a.top_k > V)
            mt_err_set(&e, MT_ERR_USAGE, "--top-k %lld is larger than model.vocab_size = %d",
                       (long long)a.top_k, V);
        if (!e.code && !open_codec(tok, V, a.vocab_dir ? a.vocab_dir : GEN_VOCAB_DIR, &cd, &e) &&
            !make_context(&a, V, &cd, &seq, &n, &start, &e)) {
            char why[128];
            int threads = mt_threads_choose(0, 1, why, sizeof why);
            mt_threads_apply(threads);
            fprintf(stderr,
                    "generate: checkpoint %s | step %lld | run %s\n"
                    "generate: model gpt n_layer %d n_head %d n_embd %d block_size %d "
                    "vocab_size %d | %zu parameters | %d thread(s)\n",
                    a.checkpoint, (long long)info.meta.step, info.meta.run_id, m.cfg.n_layer,
                    m.cfg.n_head, m.cfg.n_embd, m.cfg.block_size, V, mt_params_global_count(&p),
                    threads);
            if (start)
                fprintf(stderr, "generate: no prompt: starting from token %d%s\n", (int)seq[0],
                        cd.kind == GEN_BYTES ? " ('\\n')"
                        : cd.kind == GEN_BPE ? " (<|endoftext|>)"
                                             : "");
            if (!start)
                for (int64_t i = 0; i < n; i++) emit(&cd, seq[i], &written);
            double t0 = now_s();
            if (!sample(&a, &m, &p, seq, n, &cd, &written, &e)) {
                double dt = now_s() - t0;
                fprintf(stderr, "generate: %lld tokens in %.2f s (%.0f tokens/s)\n",
                        (long long)a.tokens, dt, dt > 0 ? (double)a.tokens / dt : 0.0);
            }
            fputc('\n', stdout);
            if (fflush(stdout) != 0 || ferror(stdout))
                mt_err_set(&e, MT_ERR_INTERNAL, "writing the output failed: %s", strerror(errno));
        }
    }
    if (e.code) mt_err_print(&e);
    free(seq);
    if (cd.bpe) mt_gpt2_bpe_free(cd.bpe);
    mt_gpt_free(&m, mt_backend_cpu());
    mt_params_free(&p);
    mt_ckpt_info_free(&info);
    return e.code;
}
