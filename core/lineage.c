/* lineage.c - the registry records of a training run (see lineage.h). */
#include "lineage.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/version.h"
#include "io/registry.h"
#include "io/sha256.h"

const char *mt_lineage_model_name(const mt_config *cfg) {
    return cfg->registry.model_name[0] ? cfg->registry.model_name : cfg->run.name;
}

void mt_lineage_registry_path(const mt_config *cfg, char *out, size_t n) {
    if (cfg->registry.path[0])
        snprintf(out, n, "%s", cfg->registry.path);
    else
        snprintf(out, n, "%s/registry.jsonl", cfg->run.dir);
}

void mt_lineage_now(char out[32]) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char s[24];
    strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", s, (int)(tv.tv_usec / 1000));
}

void mt_lineage_abspath(const char *path, char *out, size_t n) {
    char cwd[4096];
    if (path[0] == '/' || !getcwd(cwd, sizeof cwd)) {
        snprintf(out, n, "%s", path);
        return;
    }
    const char *rel = path[0] == '.' && path[1] == '/' ? path + 2 : path;
    size_t c = strlen(cwd);
    if (c + 1 + strlen(rel) + 1 > n) { /* too long to make absolute: keep it as given */
        snprintf(out, n, "%s", path);
        return;
    }
    memcpy(out, cwd, c);
    out[c] = '/';
    memcpy(out + c + 1, rel, strlen(rel) + 1);
}

static void add_str_or_null(cJSON *o, const char *key, const char *v) {
    if (v && v[0])
        cJSON_AddStringToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

static void add_num_or_null(cJSON *o, const char *key, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(o, key, v);
    else
        cJSON_AddNullToObject(o, key);
}

/* Every key of the resolved config as "section.key": "value" text, in the
 * table's order (the order of config_ini). */
static void add_config_values(cJSON *values, const mt_config *cfg) {
    char key[256];
    char *v = malloc(MT_CFG_STR_LEN * 2);
    if (!v) return;
    for (const mt_cfg_key *k = mt_cfg_keys; k->section; k++) {
        snprintf(key, sizeof key, "%s.%s", k->section, k->key);
        mt_config_value(cfg, k, v, MT_CFG_STR_LEN * 2);
        cJSON_AddStringToObject(values, key, v);
    }
    free(v);
}

static void add_inputs(cJSON *ev, const mt_lineage *l) {
    cJSON *in = cJSON_AddArrayToObject(ev, "inputs");
    cJSON *d = cJSON_CreateObject();
    char abs[4200];
    mt_lineage_abspath(l->data_name, abs, sizeof abs);
    cJSON_AddStringToObject(d, "namespace", "file");
    cJSON_AddStringToObject(d, "name", abs);
    cJSON_AddStringToObject(d, "version", l->data_sha256);
    cJSON *files = cJSON_AddArrayToObject(d, "files");
    for (int i = 0; i < l->nfiles; i++) {
        cJSON *f = cJSON_CreateObject();
        mt_lineage_abspath(l->file_path[i], abs, sizeof abs);
        cJSON_AddStringToObject(f, "uri", abs);
        cJSON_AddStringToObject(f, "sha256", l->file_sha256[i]);
        cJSON_AddNumberToObject(f, "size_bytes", (double)l->file_bytes[i]);
        cJSON_AddItemToArray(files, f);
    }
    cJSON *splits = cJSON_AddObjectToObject(d, "splits");
    for (int k = 0; k < 2; k++) {
        cJSON *sp = cJSON_AddObjectToObject(splits, l->split_name[k]);
        cJSON_AddStringToObject(sp, "source", l->split_src[k]);
        cJSON_AddStringToObject(sp, "unit", l->split_unit);
        cJSON_AddNumberToObject(sp, "samples", (double)l->split_n[k]);
    }
    cJSON_AddItemToArray(in, d);
}

static void add_environment(cJSON *lin, const mt_lineage *l) {
    cJSON *env = cJSON_AddObjectToObject(lin, "environment");
    const char *app = getenv("APPTAINER_CONTAINER"), *sing = getenv("SINGULARITY_CONTAINER");
    const char *image = app && app[0] ? app : sing && sing[0] ? sing : NULL;
    add_str_or_null(env, "container", image);
    add_str_or_null(env, "container_runtime",
                    image ? (image == app ? "apptainer" : "singularity") : NULL);
    mt_lineage_add_hosts(env, "hosts", l->hosts);
}

static void add_scheduler(cJSON *lin) {
    cJSON *s = cJSON_AddObjectToObject(lin, "scheduler");
    const char *job = getenv("SLURM_JOB_ID");
    cJSON_AddStringToObject(s, "name", job ? "slurm" : "none");
    add_str_or_null(s, "job_id", job);
    add_str_or_null(s, "job_name", job ? getenv("SLURM_JOB_NAME") : NULL);
    const char *rc = getenv("SLURM_RESTART_COUNT");
    if (job)
        cJSON_AddNumberToObject(s, "restart_count", rc && rc[0] ? atof(rc) : 0);
    else
        cJSON_AddNullToObject(s, "restart_count");
    add_str_or_null(s, "array_job_id", getenv("SLURM_ARRAY_JOB_ID"));
    add_str_or_null(s, "array_task_id", getenv("SLURM_ARRAY_TASK_ID"));
}

/* The fields every record has. */
static cJSON *event_head(const mt_lineage *l, const char *type) {
    mt_version_info v;
    mt_version_get(&v);
    cJSON *ev = cJSON_CreateObject();
    char now[32], producer[64];
    mt_lineage_now(now);
    snprintf(producer, sizeof producer, "mpitrain %s", v.version);
    cJSON_AddStringToObject(ev, "schema", MT_REGISTRY_SCHEMA);
    cJSON_AddStringToObject(ev, "eventType", type);
    cJSON_AddStringToObject(ev, "eventTime", now);
    cJSON_AddStringToObject(ev, "producer", producer);
    cJSON *run = cJSON_AddObjectToObject(ev, "run");
    cJSON_AddStringToObject(run, "runId", l->run_id);
    cJSON_AddStringToObject(run, "dir", l->run_dir);
    cJSON *job = cJSON_AddObjectToObject(ev, "job");
    cJSON_AddStringToObject(job, "namespace", "mpitrain");
    cJSON_AddStringToObject(job, "name", l->cfg->run.name);
    return ev;
}

cJSON *mt_lineage_delete_event(const mt_lineage *l, const char *path, const char *sha256,
                               const char *reason) {
    cJSON *ev = event_head(l, "DELETE");
    cJSON *d = cJSON_AddObjectToObject(ev, "delete");
    char abs[4200];
    mt_lineage_abspath(path, abs, sizeof abs);
    cJSON_AddStringToObject(d, "source", abs);
    add_str_or_null(d, "sha256", sha256);
    cJSON_AddStringToObject(d, "reason", reason);
    return ev;
}

cJSON *mt_lineage_event(const mt_lineage *l, const char *type) {
    mt_version_info v;
    mt_version_get(&v);
    const mt_config *cfg = l->cfg;
    cJSON *ev = event_head(l, type);
    add_inputs(ev, l);
    cJSON_AddArrayToObject(ev, "outputs");

    cJSON *lin = cJSON_AddObjectToObject(ev, "lineage");
    mt_version_add_code(cJSON_AddObjectToObject(lin, "code"), &v);
    cJSON *hp = cJSON_AddObjectToObject(lin, "hyperparameters");
    char hash[65];
    mt_sha256_buf(l->config_text, strlen(l->config_text), hash);
    cJSON_AddStringToObject(hp, "config_sha256", hash);
    cJSON *values = cJSON_AddObjectToObject(hp, "values");
    add_config_values(values, cfg);
    cJSON_AddStringToObject(hp, "config_ini", l->config_text);
    cJSON *fw = cJSON_AddObjectToObject(lin, "framework");
    cJSON_AddStringToObject(fw, "name", "mpitrain");
    cJSON_AddStringToObject(fw, "version", v.version);
    cJSON_AddStringToObject(fw, "model_kind",
                            mt_config_enum_name("model", "kind", cfg->model.kind));
    cJSON_AddStringToObject(fw, "optimizer", mt_config_enum_name("optim", "kind", cfg->optim.kind));
    add_environment(lin, l);
    /* the GPU libraries this build has; null where it has none (or no driver) */
    mt_version_add_libraries(cJSON_AddObjectToObject(lin, "libraries"), &v, 1);
    cJSON *lay = cJSON_AddObjectToObject(lin, "layout");
    cJSON_AddNumberToObject(lay, "world", l->world);
    cJSON_AddNumberToObject(lay, "dp", l->dp);
    cJSON_AddNumberToObject(lay, "tp", l->tp);
    cJSON_AddNumberToObject(lay, "pp", l->pp);
    cJSON_AddNumberToObject(lay, "threads_per_rank", l->threads);
    if (l->device) cJSON_AddStringToObject(lay, "device", l->device);
    if (l->precision) cJSON_AddStringToObject(lay, "precision", l->precision);
    if (l->gpu && l->gpu[0]) cJSON_AddStringToObject(lay, "gpu", l->gpu);
    add_scheduler(lin);
    if (l->parent_ckpt && l->parent_ckpt[0]) {
        cJSON *par = cJSON_AddObjectToObject(lin, "parent");
        char abs[4200];
        mt_lineage_abspath(l->parent_ckpt, abs, sizeof abs);
        cJSON_AddStringToObject(par, "relation", "resumed");
        cJSON_AddStringToObject(par, "run_id", l->parent_run_id);
        cJSON_AddStringToObject(par, "checkpoint", abs);
        cJSON_AddStringToObject(par, "checkpoint_sha256", l->parent_sha256);
        cJSON_AddNumberToObject(par, "step", (double)l->parent_step);
    } else {
        cJSON_AddNullToObject(lin, "parent");
    }
    return ev;
}

void mt_lineage_add_metrics(cJSON *ev, const mt_lineage_metrics *m) {
    cJSON *o = cJSON_AddObjectToObject(ev, "metrics");
    cJSON_AddNumberToObject(o, "step", (double)m->step);
    add_num_or_null(o, "loss", m->loss);
    add_num_or_null(o, "train_accuracy", m->train_acc);
    add_num_or_null(o, "grad_norm", m->grad_norm);
    add_num_or_null(o, "lr", m->lr);
    add_num_or_null(o, "test_loss", m->test_loss);
    add_num_or_null(o, "test_accuracy", m->test_acc);
}

void mt_lineage_add_output(cJSON *ev, const char *kind, const char *path, const char *sha256,
                           int64_t bytes) {
    cJSON *outs = cJSON_GetObjectItemCaseSensitive(ev, "outputs");
    cJSON *o = cJSON_CreateObject();
    char abs[4200];
    mt_lineage_abspath(path, abs, sizeof abs);
    cJSON_AddStringToObject(o, "namespace", "file");
    cJSON_AddStringToObject(o, "name", abs);
    cJSON_AddStringToObject(o, "version", sha256);
    cJSON_AddStringToObject(o, "kind", kind);
    cJSON_AddStringToObject(o, "sha256", sha256);
    cJSON_AddNumberToObject(o, "size_bytes", (double)bytes);
    cJSON_AddItemToArray(outs, o);
}

void mt_lineage_add_model(cJSON *ev, const mt_lineage *l, const char *path, const char *sha256,
                          int64_t bytes, int64_t step) {
    cJSON *m = cJSON_AddObjectToObject(ev, "model");
    char abs[4200];
    mt_lineage_abspath(path, abs, sizeof abs);
    cJSON_AddStringToObject(m, "name", mt_lineage_model_name(l->cfg));
    cJSON_AddNumberToObject(m, "version", 0); /* set by the registry under its lock */
    cJSON_AddStringToObject(m, "source", abs);
    cJSON_AddStringToObject(m, "run_id", l->run_id);
    cJSON_AddArrayToObject(m, "aliases");
    cJSON_AddStringToObject(m, "sha256", sha256);
    cJSON_AddNumberToObject(m, "size_bytes", (double)bytes);
    cJSON_AddNumberToObject(m, "step", (double)step);
}

void mt_lineage_add_hosts(cJSON *obj, const char *key, const char *hosts) {
    cJSON *arr = cJSON_AddArrayToObject(obj, key);
    for (const char *p = hosts; p && *p;) {
        size_t n = strcspn(p, "\n");
        char h[256];
        snprintf(h, sizeof h, "%.*s", (int)(n < 255 ? n : 255), p);
        if (h[0]) cJSON_AddItemToArray(arr, cJSON_CreateString(h));
        p += n + (p[n] == '\n');
    }
}

void mt_lineage_add_result(cJSON *ev, const char *status, int code, const char *message,
                           const char *reason) {
    cJSON *r = cJSON_AddObjectToObject(ev, "result");
    cJSON_AddStringToObject(r, "status", status);
    cJSON_AddNumberToObject(r, "exit_code", code);
    add_str_or_null(r, "message", message);
    if (reason) cJSON_AddStringToObject(r, "reason", reason);
}
