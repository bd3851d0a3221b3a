/*
 * export.c - `mpitrain export` (see export.h): a checkpoint's or model
 * file's weights as a safetensors file for the Hugging Face / PyTorch
 * world (a GPT gets GPT2LMHeadModel's names and layout and a config.json
 * beside it; an MLP its own names as stored), or a GPT as llm.c's model
 * file. docs/EXPORT.md is the contract (names, transposes, what is dropped
 * and why).
 */
#include "cli/export.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/error.h"
#include "core/config.h"
#include "core/models.h"
#include "core/version.h"
#include "io/files.h"
#include "io/llmc.h"
#include "io/safetensors.h"
#include "io/weights.h"

#define EXPORT_MAX_META  24
#define LLMC_VOCAB_ALIGN 128 /* llm.c pads its vocabulary to a multiple of 128 */

typedef struct {
    const char *format; /* "safetensors" | "llmc" */
    const char *in, *out;
    int force;
} export_args;

/* What goes into the file: the tensors (their data borrowed from the
 * weights, or owned: a transposed copy), the metadata, config.json. */
typedef struct {
    mt_st_tensor *t;
    char (*names)[96];
    float **owned; /* (n) a transposed copy, or NULL */
    int n;
    const char *meta[2 * EXPORT_MAX_META];
    int n_meta;
    char numbers[8][32];               /* metadata values that are numbers */
    char layers[MT_CFG_LIST_MAX * 24]; /* MLP: model.layers, "784,256,10" */
    char *config_json;                 /* GPT: config.json's text, else NULL */
    const char *in;                    /* CKPT, for errors */
    int llmc;                          /* --format llmc: llm.c's file of this shape */
    mt_llmc_shape shape;
} export_plan;

static void usage(FILE *out) {
    fprintf(out, "usage: mpitrain export --format safetensors CKPT OUT.safetensors [--force]\n"
                 "       mpitrain export --format llmc CKPT OUT.bin [--force]\n"
                 "\n"
                 "Writes the weights of CKPT (a checkpoint, checked completely first as `mpitrain\n"
                 "ckpt verify` does, or a run's model.h5) for use outside mpitrain, float32, on\n"
                 "one process (no mpirun).\n"
                 "\n"
                 "  --format safetensors  a safetensors file (Hugging Face, PyTorch)\n"
                 "  --format llmc         llm.c's GPT-2 model file (gpt2_124M.bin, version 3)\n"
                 "  --force               replace OUT (and config.json) when they exist\n"
                 "  -h, --help            print this help\n"
                 "\n"
                 "safetensors: a GPT (model.kind = gpt) gets Hugging Face GPT2LMHeadModel's\n"
                 "tensor names (transformer.wte.weight, transformer.h.0.attn.c_attn.weight, ...)\n"
                 "with the linear weights transposed to its Conv1D layout [in, out], the\n"
                 "vocabulary padding dropped and no lm_head.weight (tied to\n"
                 "transformer.wte.weight), and a config.json in OUT's folder: name OUT\n"
                 "DIR/model.safetensors and GPT2LMHeadModel.from_pretrained(DIR) loads it. An\n"
                 "MLP keeps its names (fc1.weight [out, in], fc1.bias, ...).\n"
                 "\n"
                 "llmc: a GPT only; llm.c's header and tensor order, its vocabulary padded to a\n"
                 "multiple of 128 with zero rows.\n"
                 "\n"
                 "Files are written atomically (temporary name, fsync, rename); an existing OUT\n"
                 "or config.json is an error without --force. See docs/EXPORT.md.\n"
                 "\n"
                 "Exit status: 0 written, 2 usage or an unwritable output, 4 CKPT is not a\n"
                 "checkpoint or model file, or is corrupt.\n");
}

static int parse_args(int argc, char **argv, export_args *a, mt_err *e) {
    int npos = 0;
    for (int i = 1; i < argc && !e->code; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--force") == 0) {
            a->force = 1;
        } else if (strncmp(arg, "--format=", 9) == 0) {
            a->format = arg + 9;
        } else if (strcmp(arg, "--format") == 0) {
            if (i + 1 >= argc) return mt_err_set(e, MT_ERR_USAGE, "--format needs a value");
            a->format = argv[++i];
        } else if (arg[0] == '-' && arg[1] != '\0') {
            mt_err_set(e, MT_ERR_USAGE, "unknown option '%s' for mpitrain export", arg);
        } else if (npos < 2) {
            *(npos++ ? &a->out : &a->in) = arg;
        } else {
            mt_err_set(e, MT_ERR_USAGE, "unexpected argument '%s' (give CKPT and OUT)", arg);
        }
    }
    if (e->code) return e->code;
    if (!a->format)
        return mt_err_set(e, MT_ERR_USAGE, "mpitrain export needs --format (safetensors or llmc)");
    if (strcmp(a->format, "safetensors") != 0 && strcmp(a->format, "llmc") != 0)
        return mt_err_set(e, MT_ERR_USAGE, "unknown export format '%s' (known: safetensors, llmc)",
                          a->format);
    if (npos < 2) return mt_err_set(e, MT_ERR_USAGE, "mpitrain export needs CKPT and OUT");
    if (!a->in[0] || !a->out[0]) return mt_err_set(e, MT_ERR_USAGE, "an empty file name");
    return MT_OK;
}

/* path may be (re)written: its folder exists, it is not a folder itself,
 * and it does not exist unless force. */
static int check_output(const char *path, int force, mt_err *e) {
    char dir[MT_PATH_LEN];
    struct stat st;
    if (strlen(path) + 32 >= MT_PATH_LEN)
        return mt_err_set(e, MT_ERR_USAGE, "output path too long: %.60s...", path);
    mt_file_dir(path, dir, sizeof dir);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0)
        return mt_err_set(e, MT_ERR_USAGE, "cannot write %s: its folder %s %s", path, dir,
                          stat(dir, &st) != 0    ? "does not exist"
                          : !S_ISDIR(st.st_mode) ? "is not a folder"
                                                 : "is not writable");
    if (mt_file_check_out(path, "output", e)) return e->code;
    if (lstat(path, &st) != 0) return MT_OK;
    if (!force) {
        mt_err_set(e, MT_ERR_USAGE, "%s exists: not replaced", path);
        mt_err_hint(e, "add --force to replace it");
    }
    return e->code;
}

/* config.json's path: OUT's folder. */
static int config_path(const char *out, char *buf, size_t n, mt_err *e) {
    char dir[MT_PATH_LEN];
    mt_file_dir(out, dir, sizeof dir);
    return mt_path_fmt(buf, n, e, "%s/config.json", dir);
}

/* How a tensor goes from the file into the export. */
enum { AS_STORED = 0, TRANSPOSED = 1, FIRST_ROWS = 2 };

/* Adds tensor name (shape d0 x d1, or d0 alone when d1 == 0) taken from the
 * weight src: as stored, transposed (src is (d1, d0)), or its first d0 rows
 * (src has d0 or more: the rows past them are vocabulary padding). */
static int add_tensor(export_plan *p, const mt_weights *w, const char *src, const char *name,
                      int64_t d0, int64_t d1, int how, mt_err *e) {
    const mt_weight *s = mt_weights_find(w, src);
    int64_t want0 = how == TRANSPOSED ? d1 : d0, want1 = how == TRANSPOSED ? d0 : d1;
    int fits = s && s->ndim == (d1 ? 2 : 1) && (d1 == 0 || s->shape[1] == want1) &&
               (s->shape[0] == want0 || (how == FIRST_ROWS && s->shape[0] > want0));
    if (!fits)
        return mt_err_set(e, MT_ERR_CKPT,
                          "%s has no tensor %s of the shape its config's model gives", p->in, src);
    mt_st_tensor *t = &p->t[p->n];
    snprintf(p->names[p->n], sizeof p->names[0], "%s", name);
    t->name = p->names[p->n];
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0, t->shape[1] = d1;
    t->data = s->data; /* FIRST_ROWS: row-major, so the first d0 rows are the start */
    if (how == TRANSPOSED) {
        float *x = malloc((size_t)(d0 * d1) * sizeof *x);
        if (!x) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory transposing %s", src);
        for (int64_t i = 0; i < d1; i++)
            for (int64_t j = 0; j < d0; j++) x[j * d1 + i] = s->data[i * d0 + j];
        t->data = p->owned[p->n] = x;
    }
    p->n++;
    return MT_OK;
}

static void meta(export_plan *p, const char *key, const char *value) {
    if (p->n_meta < EXPORT_MAX_META) {
        p->meta[2 * p->n_meta] = key;
        p->meta[2 * p->n_meta + 1] = value;
        p->n_meta++;
    }
}

static const char *num(export_plan *p, int slot, long long v) {
    snprintf(p->numbers[slot], sizeof p->numbers[slot], "%lld", v);
    return p->numbers[slot];
}

/* Hugging Face's GPT2Config for the model of cfg. */
static char *gpt_config_json(const mt_config *cfg, mt_err *e) {
    const int64_t V = cfg->model.vocab_size;
    cJSON *c = cJSON_CreateObject(), *arch = cJSON_CreateArray();
    cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
    cJSON_AddItemToObject(c, "architectures", arch);
    cJSON_AddStringToObject(c, "model_type", "gpt2");
    cJSON_AddNumberToObject(c, "vocab_size", (double)V);
    cJSON_AddNumberToObject(c, "n_positions", (double)cfg->model.block_size);
    cJSON_AddNumberToObject(c, "n_ctx", (double)cfg->model.block_size);
    cJSON_AddNumberToObject(c, "n_embd", (double)cfg->model.n_embd);
    cJSON_AddNumberToObject(c, "n_layer", (double)cfg->model.n_layer);
    cJSON_AddNumberToObject(c, "n_head", (double)cfg->model.n_head);
    cJSON_AddNullToObject(c, "n_inner");                           /* 4 * n_embd */
    cJSON_AddStringToObject(c, "activation_function", "gelu_new"); /* GELU, tanh form */
    cJSON_AddNumberToObject(c, "layer_norm_epsilon", 1e-5);
    cJSON_AddNumberToObject(c, "initializer_range", 0.02);
    /* mpitrain's dropout: after the embeddings and on the residual branches */
    cJSON_AddNumberToObject(c, "embd_pdrop", cfg->model.dropout);
    cJSON_AddNumberToObject(c, "resid_pdrop", cfg->model.dropout);
    cJSON_AddNumberToObject(c, "attn_pdrop", 0.0);
    cJSON_AddTrueToObject(c, "scale_attn_weights");
    cJSON_AddTrueToObject(c, "tie_word_embeddings");
    cJSON_AddTrueToObject(c, "use_cache");
    if (V == 50257) { /* GPT-2's vocabulary: <|endoftext|> */
        cJSON_AddNumberToObject(c, "bos_token_id", 50256);
        cJSON_AddNumberToObject(c, "eos_token_id", 50256);
    }
    cJSON_AddStringToObject(c, "torch_dtype", "float32");
    char *text = cJSON_Print(c);
    cJSON_Delete(c);
    if (!text) mt_err_set(e, MT_ERR_INTERNAL, "out of memory building config.json");
    return text;
}

/* A GPT block's tensors in mpitrain's order and shapes (in units of C;
 * cols 0: a vector). The Linear weights (out, in) become Conv1D's (in, out)
 * in GPT2LMHeadModel's layout; llm.c's keeps mpitrain's. */
static const struct {
    const char *name;
    int rows, cols;
    int linear;
} gpt_block[] = {
    {"ln_1.weight", 1, 0, 0},      {"ln_1.bias", 1, 0, 0},          {"attn.c_attn.weight", 3, 1, 1},
    {"attn.c_attn.bias", 3, 0, 0}, {"attn.c_proj.weight", 1, 1, 1}, {"attn.c_proj.bias", 1, 0, 0},
    {"ln_2.weight", 1, 0, 0},      {"ln_2.bias", 1, 0, 0},          {"mlp.c_fc.weight", 4, 1, 1},
    {"mlp.c_fc.bias", 4, 0, 0},    {"mlp.c_proj.weight", 1, 4, 1},  {"mlp.c_proj.bias", 1, 0, 0},
};
#define GPT_BLOCK_TENSORS ((int)(sizeof gpt_block / sizeof gpt_block[0]))

/* GPT2LMHeadModel's tensors, in its state_dict order. */
static int plan_gpt(export_plan *p, const mt_config *cfg, const mt_weights *w, mt_err *e) {
    const int64_t C = cfg->model.n_embd, V = cfg->model.vocab_size, L = cfg->model.n_layer;
    char src[96], dst[96];
    add_tensor(p, w, "wte.weight", "transformer.wte.weight", V, C, FIRST_ROWS, e);
    if (!e->code)
        add_tensor(p, w, "wpe.weight", "transformer.wpe.weight", cfg->model.block_size, C,
                   AS_STORED, e);
    for (int64_t l = 0; l < L && !e->code; l++)
        for (int k = 0; k < GPT_BLOCK_TENSORS && !e->code; k++) {
            snprintf(src, sizeof src, "h.%lld.%s", (long long)l, gpt_block[k].name);
            snprintf(dst, sizeof dst, "transformer.h.%lld.%s", (long long)l, gpt_block[k].name);
            if (gpt_block[k].linear) /* Conv1D: (in, out) */
                add_tensor(p, w, src, dst, gpt_block[k].cols * C, gpt_block[k].rows * C, TRANSPOSED,
                           e);
            else
                add_tensor(p, w, src, dst, gpt_block[k].rows * C, gpt_block[k].cols * C, AS_STORED,
                           e);
        }
    if (!e->code) add_tensor(p, w, "ln_f.weight", "transformer.ln_f.weight", C, 0, AS_STORED, e);
    if (!e->code) add_tensor(p, w, "ln_f.bias", "transformer.ln_f.bias", C, 0, AS_STORED, e);
    if (!e->code && p->n != w->n)
        mt_err_set(e, MT_ERR_CKPT, "%s holds %d tensors, the GPT of its config %d", p->in, w->n,
                   p->n);
    if (e->code) return e->code;
    meta(p, "mpitrain.layout",
         "hf-gpt2: Conv1D weights [in, out]; lm_head tied to transformer.wte.weight");
    meta(p, "mpitrain.vocab_size", num(p, 2, V));
    p->config_json = gpt_config_json(cfg, e);
    return e->code;
}

/* llm.c's tensors in its order (llmc.h): each kind of block tensor stacked
 * over the layers, every tensor as mpitrain holds it. */
static int plan_llmc(export_plan *p, const mt_config *cfg, const mt_weights *w, mt_err *e) {
    const int64_t C = cfg->model.n_embd, V = cfg->model.vocab_size, L = cfg->model.n_layer;
    char src[96];
    add_tensor(p, w, "wte.weight", "wte", V, C, FIRST_ROWS, e);
    if (!e->code) add_tensor(p, w, "wpe.weight", "wpe", cfg->model.block_size, C, AS_STORED, e);
    for (int k = 0; k < GPT_BLOCK_TENSORS && !e->code; k++)
        for (int64_t l = 0; l < L && !e->code; l++) {
            snprintf(src, sizeof src, "h.%lld.%s", (long long)l, gpt_block[k].name);
            add_tensor(p, w, src, src, gpt_block[k].rows * C, gpt_block[k].cols * C, AS_STORED, e);
        }
    if (!e->code) add_tensor(p, w, "ln_f.weight", "lnfw", C, 0, AS_STORED, e);
    if (!e->code) add_tensor(p, w, "ln_f.bias", "lnfb", C, 0, AS_STORED, e);
    if (!e->code && p->n != w->n)
        mt_err_set(e, MT_ERR_CKPT, "%s holds %d tensors, the GPT of its config %d", p->in, w->n,
                   p->n);
    p->llmc = 1;
    mt_llmc_shape sh = {
        (int32_t)cfg->model.block_size,
        (int32_t)V,
        (int32_t)L,
        (int32_t)cfg->model.n_head,
        (int32_t)C,
        (int32_t)((V + LLMC_VOCAB_ALIGN - 1) / LLMC_VOCAB_ALIGN * LLMC_VOCAB_ALIGN)};
    p->shape = sh;
    return e->code;
}

/* The MLP's tensors as stored, layer by layer. */
static int plan_mlp(export_plan *p, const mt_config *cfg, const mt_weights *w, mt_err *e) {
    const int64_t *d = cfg->model.layers.v; /* widths D0 .. DL: layer l maps D(l-1) -> D(l) */
    char name[32];
    for (int l = 1; l < cfg->model.layers.n && !e->code; l++) {
        snprintf(name, sizeof name, "fc%d.weight", l);
        add_tensor(p, w, name, name, d[l], d[l - 1], AS_STORED, e);
        snprintf(name, sizeof name, "fc%d.bias", l);
        if (!e->code) add_tensor(p, w, name, name, d[l], 0, AS_STORED, e);
    }
    if (!e->code && p->n != w->n)
        mt_err_set(e, MT_ERR_CKPT, "%s holds %d tensors, the MLP of its config %d", p->in, w->n,
                   p->n);
    char *layers = p->layers;
    size_t len = 0;
    layers[0] = '\0';
    for (int i = 0; i < cfg->model.layers.n; i++)
        len += (size_t)snprintf(layers + len, sizeof p->layers - len, "%s%lld", i ? "," : "",
                                (long long)cfg->model.layers.v[i]);
    meta(p, "mpitrain.layout", "mlp: fcN.weight [out, in], fcN.bias; y = x W^T + b");
    meta(p, "mpitrain.layers", layers);
    meta(p, "mpitrain.activation",
         mt_config_enum_name("model", "activation", cfg->model.activation));
    return e->code;
}

/* The stored config of the file, parsed and checked. */
static int file_config(const char *path, const mt_weights *w, mt_config *cfg, mt_err *e) {
    mt_config_defaults(cfg);
    mt_err perr = {0};
    if (mt_config_parse(cfg, w->config_text, path, &perr) || mt_config_validate(cfg, &perr) ||
        mt_model_check(cfg, &perr))
        return mt_err_set(e, MT_ERR_CKPT, "the config stored in %s is invalid: %s", path, perr.msg);
    return MT_OK;
}

static int plan(export_plan *p, const export_args *a, const mt_weights *w, mt_err *e) {
    mt_config cfg;
    if (file_config(a->in, w, &cfg, e)) return e->code;
    p->in = a->in;
    int most = w->n + 2; /* a GPT exports at most the file's tensors */
    p->t = calloc((size_t)most, sizeof *p->t);
    p->names = calloc((size_t)most, sizeof *p->names);
    p->owned = calloc((size_t)most, sizeof *p->owned);
    if (!p->t || !p->names || !p->owned)
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory planning the export");
    static mt_version_info v;
    mt_version_get(&v);
    meta(p, "format", "pt"); /* what transformers' safetensors loader asks for */
    meta(p, "mpitrain.version", v.version);
    meta(p, "mpitrain.code_commit", v.commit);
    meta(p, "mpitrain.source", w->is_checkpoint ? "checkpoint" : "model file");
    meta(p, "mpitrain.run_id", w->run_id);
    meta(p, "mpitrain.step", num(p, 0, (long long)w->step));
    meta(p, "mpitrain.model_kind", w->model_kind);
    if (strcmp(a->format, "llmc") == 0) {
        if (cfg.model.kind != MT_MODEL_GPT)
            return mt_err_set(e, MT_ERR_USAGE,
                              "%s holds a model.kind = %s model; --format llmc is llm.c's GPT-2 "
                              "file (model.kind = gpt)",
                              a->in, mt_config_enum_name("model", "kind", cfg.model.kind));
        return plan_llmc(p, &cfg, w, e);
    }
    if (cfg.model.kind == MT_MODEL_GPT) return plan_gpt(p, &cfg, w, e);
    return plan_mlp(p, &cfg, w, e);
}

/* Writes config.json's text to the temporary file tmp. */
static int write_text_tmp(const char *tmp, const char *text, mt_err *e) {
    FILE *f = fopen(tmp, "wb");
    if (!f) return mt_err_set(e, MT_ERR_USAGE, "cannot write %s: %s", tmp, strerror(errno));
    size_t n = strlen(text);
    int bad = fwrite(text, 1, n, f) != n || fputc('\n', f) == EOF;
    return mt_file_close_tmp(f, tmp, bad, e);
}

/* The plan's tensors as llm.c's file, to the temporary file tmp. */
static int write_llmc_tmp(const export_plan *p, const char *tmp, mt_err *e) {
    const float **part = calloc((size_t)p->n, sizeof *part);
    size_t *len = calloc((size_t)p->n, sizeof *len);
    if (!part || !len) {
        mt_err_set(e, MT_ERR_INTERNAL, "out of memory writing %s", tmp);
    } else {
        for (int i = 0; i < p->n; i++) {
            part[i] = p->t[i].data;
            len[i] = (size_t)p->t[i].shape[0] * (size_t)(p->t[i].ndim == 2 ? p->t[i].shape[1] : 1);
        }
        mt_llmc_write_tmp(tmp, &p->shape, part, len, p->n, e);
    }
    free(part);
    free(len);
    return e->code;
}

/* Both files to temporary names, then each renamed into place: a failure
 * before the renames leaves nothing; one at the second rename removes the
 * first file. */
static int write_files(const export_plan *p, const char *out, const char *cfg_path, mt_err *e) {
    char tmp[MT_PATH_LEN + 32], ctmp[MT_PATH_LEN + 32];
    mt_file_tmp_name(out, tmp, sizeof tmp);
    mt_file_tmp_name(cfg_path, ctmp, sizeof ctmp);
    if (p->llmc) {
        if (write_llmc_tmp(p, tmp, e)) return e->code;
    } else if (mt_safetensors_write_tmp(tmp, p->t, p->n, p->meta, p->n_meta, e)) {
        return e->code;
    }
    if (p->config_json && write_text_tmp(ctmp, p->config_json, e)) {
        unlink(tmp);
        return e->code;
    }
    if (mt_file_commit(tmp, out, e)) {
        if (p->config_json) unlink(ctmp);
        return e->code;
    }
    if (p->config_json && mt_file_commit(ctmp, cfg_path, e)) unlink(out);
    return e->code;
}

static void plan_free(export_plan *p) {
    for (int i = 0; p->owned && i < p->n; i++) free(p->owned[i]);
    free(p->owned);
    free(p->names);
    free(p->t);
    cJSON_free(p->config_json);
}

/* Whether paths a and b name one file (both exist). */
static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static int run(const export_args *a, mt_err *e) {
    char cfg_path[MT_PATH_LEN];
    if (check_output(a->out, a->force, e) || config_path(a->out, cfg_path, sizeof cfg_path, e))
        return e->code;
    if (same_file(a->in, a->out) || same_file(a->in, cfg_path))
        return mt_err_set(e, MT_ERR_USAGE, "OUT %s would replace the file read, %s", a->out, a->in);
    mt_weights w;
    export_plan p;
    memset(&p, 0, sizeof p);
    const char *base = strrchr(a->out, '/') ? strrchr(a->out, '/') + 1 : a->out;
    if (!mt_weights_read(a->in, &w, e) && !plan(&p, a, &w, e)) {
        /* config.json is checked only now: an MLP writes none */
        if (p.config_json && strcmp(base, "config.json") == 0)
            mt_err_set(e, MT_ERR_USAGE, "OUT %s would be the config.json written beside it",
                       a->out);
        else if (!p.config_json || !check_output(cfg_path, a->force, e))
            write_files(&p, a->out, cfg_path, e);
        if (!e->code)
            printf("export: %s (%s, step %lld) -> %s: %d tensors, float32%s%s\n", a->in,
                   w.model_kind, (long long)w.step, a->out, p.n, p.config_json ? ", and " : "",
                   p.config_json ? cfg_path : "");
    }
    plan_free(&p);
    mt_weights_free(&w);
    return e->code;
}

int mt_cli_export(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    mt_err e = {0};
    export_args a = {0};
    if (parse_args(argc, argv, &a, &e)) { /* (the usage hint for the arguments only) */
        if (!e.hint[0]) mt_err_hint(&e, "run 'mpitrain export --help' for usage");
    } else {
        run(&a, &e);
    }
    if (e.code) mt_err_print(&e);
    return e.code;
}
