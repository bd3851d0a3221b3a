/*
 * lineage.h - the registry records of a training run (docs/REGISTRY.md):
 * what every event carries (the run, its data, code, configuration,
 * framework, environment, libraries, layout, scheduler and parent) and what
 * the CHECKPOINT, COMPLETE, FAIL and ABORT events add.
 */
#ifndef MT_LINEAGE_H
#define MT_LINEAGE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "core/config.h"

typedef struct {
    const mt_config *cfg;
    const char *config_text; /* the resolved INI */
    const char *run_id, *run_dir;
    /* the data: name (data.path or the train_tokens glob), its SHA-256 (of
     * the file, or of the list of shard SHA-256s), every file, and the splits */
    const char *data_name, *data_sha256;
    int nfiles;
    const char *const *file_path, *const *file_sha256;
    const int64_t *file_bytes;
    const char *split_name[2]; /* "train", "test" / "val" */
    const char *split_src[2];  /* dataset names (mlp) or shard globs (gpt) */
    const char *split_unit;    /* "samples" or "sequences" */
    int64_t split_n[2];
    int world, dp, tp, pp, threads;
    const char *device;    /* the backend the ranks computed with: "cpu", "cuda" */
    const char *precision; /* "fp32" or "bf16" */
    const char *gpu;       /* rank 0's GPU, or "" */
    const char *hosts;     /* distinct host names, '\n'-separated */
    /* the checkpoint this run continues, or parent_ckpt "" */
    const char *parent_ckpt, *parent_sha256, *parent_run_id;
    int64_t parent_step;
} mt_lineage;

/* Metrics at a step; NaN = not measured (written as null). */
typedef struct {
    int64_t step;
    double loss, train_acc, grad_norm, lr, test_loss, test_acc;
} mt_lineage_metrics;

/* The model name runs are registered under: registry.model_name, else run.name. */
const char *mt_lineage_model_name(const mt_config *cfg);
/* The registry file: registry.path, else <run.dir>/registry.jsonl. */
void mt_lineage_registry_path(const mt_config *cfg, char *out, size_t n);

/* An event of type (START, CHECKPOINT, COMPLETE, FAIL, ABORT) with the common
 * fields. The caller adds to it, appends it and deletes it. */
cJSON *mt_lineage_event(const mt_lineage *l, const char *type);
/* A DELETE event: the checkpoint at path (with that SHA-256, "" if unknown)
 * was deleted, for reason. */
cJSON *mt_lineage_delete_event(const mt_lineage *l, const char *path, const char *sha256,
                               const char *reason);
/* Adds "metrics". */
void mt_lineage_add_metrics(cJSON *ev, const mt_lineage_metrics *m);
/* Adds an output file (path made absolute) to "outputs", and for a
 * CHECKPOINT, the "model" version fields (version filled in by the registry). */
void mt_lineage_add_output(cJSON *ev, const char *kind, const char *path, const char *sha256,
                           int64_t bytes);
void mt_lineage_add_model(cJSON *ev, const mt_lineage *l, const char *path, const char *sha256,
                          int64_t bytes, int64_t step);
/* Adds key: the host names of hosts (one a line) as an array. */
void mt_lineage_add_hosts(cJSON *obj, const char *key, const char *hosts);
/* Adds "result": status, and for failures the exit code and message; for
 * an early stop, its reason (preempted, time_limit, exit_after_steps). */
void mt_lineage_add_result(cJSON *ev, const char *status, int code, const char *message,
                           const char *reason);

/* ISO 8601 UTC time with milliseconds. */
void mt_lineage_now(char out[32]);
/* path made absolute against the working folder (not resolved further). */
void mt_lineage_abspath(const char *path, char *out, size_t n);

#endif
