/*
 * config.h - the resolved training configuration and the one table of keys
 * that drives INI parsing, --set overrides, validation, --help-config and
 * docs/CONFIG.md (DESIGN decision 5). Unknown sections and keys are errors.
 */
#ifndef MT_CONFIG_H
#define MT_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/error.h"

/* String values (paths above all) may be as long as a path: PATH_MAX - 1
 * characters. Cluster scratch paths are long; a value that parses is always
 * stored and read back whole (config text in checkpoints included). */
#define MT_CFG_STR_LEN  PATH_MAX
#define MT_CFG_LIST_MAX 16

typedef struct {
    int n;
    int64_t v[MT_CFG_LIST_MAX];
} mt_cfg_intlist;

typedef enum { MT_MODEL_MLP = 0, MT_MODEL_GPT = 1 } mt_model_kind;
typedef enum { MT_ACT_RELU = 0, MT_ACT_GELU = 1 } mt_activation;
typedef enum { MT_OPTIM_ADAMW = 0, MT_OPTIM_SGD = 1 } mt_optim_kind;
typedef enum { MT_SCHED_CONSTANT = 0, MT_SCHED_COSINE = 1 } mt_sched_kind;
typedef enum { MT_PIPE_1F1B = 0, MT_PIPE_GPIPE = 1 } mt_pipe_schedule;
typedef enum { MT_DEVICE_CPU = 0, MT_DEVICE_CUDA = 1, MT_DEVICE_AUTO = 2 } mt_device_kind;
typedef enum { MT_PREC_FP32 = 0, MT_PREC_BF16 = 1 } mt_precision;
typedef enum { MT_NAN_STOP = 0, MT_NAN_SKIP = 1 } mt_nan_policy;
typedef enum { MT_TOK_IDS = 0, MT_TOK_BYTES = 1, MT_TOK_GPT2 = 2 } mt_tokenizer;

typedef struct {
    struct {
        char name[MT_CFG_STR_LEN]; /* run name: the folder under dir */
        char dir[MT_CFG_STR_LEN];  /* where run folders are made */
        int64_t seed;
        int64_t log_every; /* steps between progress lines */
        int64_t threads;   /* compute threads per rank; 0 = auto */
    } run;
    struct {
        char path[MT_CFG_STR_LEN];
        char train_images[MT_CFG_STR_LEN];
        char train_labels[MT_CFG_STR_LEN];
        char test_images[MT_CFG_STR_LEN];
        char test_labels[MT_CFG_STR_LEN];
        char train_tokens[MT_CFG_STR_LEN]; /* GPT: token shard file or glob */
        char val_tokens[MT_CFG_STR_LEN];
        int tokenizer; /* mt_tokenizer: what the ids mean (generate) */
    } data;
    struct {
        int kind;              /* mt_model_kind */
        mt_cfg_intlist layers; /* MLP widths: input, hidden..., classes */
        int activation;        /* mt_activation */
        /* GPT */
        int64_t n_layer, n_head, n_embd, block_size, vocab_size;
        int64_t vocab_pad; /* the vocabulary in memory: a multiple of this; 0 = auto */
        double dropout;
    } model;
    struct {
        int kind; /* mt_optim_kind */
        double lr;
        double momentum;
        double beta1, beta2, eps;
        double weight_decay;
        double grad_clip; /* max global L2 norm; 0 = off */
        int schedule;     /* mt_sched_kind */
        int64_t warmup_steps;
        double min_lr;
    } optim;
    struct {
        int64_t steps;
        int64_t global_batch;
        int64_t eval_every; /* 0 = only at the end */
        int shuffle;
        int64_t exit_after_steps; /* stop (with a checkpoint) after this many steps; 0 = off */
        int64_t seq_len;          /* GPT: tokens per sequence; 0 = model.block_size */
        int64_t eval_windows;     /* GPT: validation sequences per evaluation; 0 = all */
        int device;               /* mt_device_kind */
        int precision;            /* mt_precision */
        int fused;                /* the backend's fused ops (backend.h) where it has them */
        char time_limit[MT_CFG_STR_LEN]; /* "0" (off) | seconds | "auto" (the Slurm job's end) */
        double time_margin;              /* seconds kept free before the time limit */
        int nan_policy;                  /* mt_nan_policy */
        int64_t nan_max_skips;           /* consecutive skipped steps before the run stops */
    } train;
    struct {
        int64_t tp, pp;       /* tensor- and pipeline-parallel ranks; dp = world / (tp x pp) */
        int64_t microbatches; /* per step and data-parallel replica */
        int schedule;         /* mt_pipe_schedule */
        mt_cfg_intlist stage_layers; /* layers of each stage; {0} = balanced */
        double timeout;              /* seconds a loop's wait may take; 0 = off */
        int deterministic;           /* bitwise the same at any dp (issue 17) */
        double bucket_mb;            /* megabytes of gradient per reduction bucket */
        int overlap;                 /* bucket reductions overlap the backward */
        int64_t zero;                /* ZeRO stage: 0 or 1 (optimizer state sharded over dp) */
    } parallel;
    struct {
        char dir[MT_CFG_STR_LEN]; /* "" = <run folder>/checkpoints */
        int64_t every_steps;      /* 0 = off */
        double every_seconds;     /* wall clock since the last checkpoint; 0 = off */
        double timeout;           /* seconds a write may take before every rank exits; 0 = auto */
        int64_t keep_last;        /* newest N kept; 0 = keep all */
        int64_t keep_every; /* checkpoints at multiples of this step never deleted; 0 = none */
        int save_final;
        int save_initial;            /* a checkpoint of step 0, before the first update */
        int async;                   /* written by a background thread while training goes on */
        char resume[MT_CFG_STR_LEN]; /* none | auto | PATH */
        int allow_data_change;       /* resume on data of another SHA-256 (a warning) */
    } checkpoint;
    struct {
        int enabled;
        char path[MT_CFG_STR_LEN];       /* "" = <run.dir>/registry.jsonl */
        char model_name[MT_CFG_STR_LEN]; /* "" = run.name */
    } registry;
} mt_config;

typedef enum {
    MT_CFG_INT,
    MT_CFG_FLOAT,
    MT_CFG_BOOL,
    MT_CFG_STR,
    MT_CFG_ENUM,
    MT_CFG_INTLIST,
} mt_cfg_type;

typedef struct {
    const char *section;
    const char *key;
    mt_cfg_type type;
    const char *def;     /* default, as text; parsed like user input */
    double min, max;     /* INT, FLOAT, INTLIST elements */
    int min_exclusive;   /* value must be > min rather than >= min */
    int max_exclusive;   /* value must be < max rather than <= max */
    const char *choices; /* ENUM: "a|b|c", index = stored value */
    size_t offset;       /* field offset in mt_config */
    const char *help;
} mt_cfg_key;

/* The table (core/config_keys.c), terminated by a zeroed entry. */
extern const mt_cfg_key mt_cfg_keys[];

void mt_config_defaults(mt_config *c);
/* Parses INI text; origin names it in errors (the file path). */
int mt_config_parse(mt_config *c, const char *text, const char *origin, mt_err *e);
/* Applies one "section.key=value" override (from --set). */
int mt_config_set(mt_config *c, const char *assignment, mt_err *e);
/* Checks rules that span keys (e.g. min_lr <= lr); the model's own rules
 * are mt_model_check's (core/models.h). */
int mt_config_validate(const mt_config *c, mt_err *e);
/* The most seconds any time key takes (about 31 years): deadlines formed
 * from them stay far inside the clocks' integers. */
#define MT_CFG_SECONDS_MAX 1e9
/* train.time_limit: 0 with *seconds set (0 = off), 1 for "auto", -1 when
 * it is neither a number of seconds nor "auto", -2 when it is more than
 * MT_CFG_SECONDS_MAX seconds. */
int mt_config_time_limit(const mt_config *c, double *seconds);
/* Writes the resolved configuration as INI text; returns the length needed. */
size_t mt_config_format(const mt_config *c, char *buf, size_t n);
/* The resolved configuration as INI text (malloc'd into *text), checked to
 * read back as c, key by key: what run folders and checkpoints store must
 * parse again. MT_ERR_USAGE naming the key otherwise. */
int mt_config_text(const mt_config *c, char **text, mt_err *e);
/* Writes the value of key k in c as config text ("0.001", "784,256,10"). */
size_t mt_config_value(const mt_config *c, const mt_cfg_key *k, char *buf, size_t n);
/* Prints every key with type, default, range and meaning (markdown table or text). */
void mt_config_help(FILE *f, int markdown);
/* The name of an enum value of key section.key, e.g. "adamw". */
const char *mt_config_enum_name(const char *section, const char *key, int value);

#endif
