/*
 * run_record.c - what a run leaves behind besides tensors (core/run.h): its
 * folder (config.ini, run.json, metrics.jsonl), run.json written by one
 * function whatever the outcome, and the registry's lineage events (START,
 * CHECKPOINT, DELETE, COMPLETE, ABORT, FAIL; docs/REGISTRY.md). Rank 0
 * writes them all.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/lineage.h"
#include "core/resume.h"
#include "core/run.h"
#include "kernels/backends.h"
#include "core/version.h"
#include "io/registry.h"
#include "io/rundir.h"
#include "io/sha256.h"

static void lineage_of(const mt_run *r, mt_lineage *l) {
    const mt_batches *d = &r->data;
    memset(l, 0, sizeof *l);
    l->cfg = &r->cfg;
    l->config_text = r->config_text;
    l->run_id = r->run_id;
    l->run_dir = r->run_dir;
    l->data_sha256 = d->sha256;
    l->data_name = d->name;
    l->nfiles = d->nfiles;
    l->file_path = (const char *const *)d->file_path;
    l->file_sha256 = d->file_sha;
    l->file_bytes = d->file_bytes;
    for (int k = 0; k < 2; k++) {
        l->split_name[k] = d->split_name[k];
        l->split_src[k] = d->split_src[k];
        l->split_n[k] = d->split_rows[k];
    }
    l->split_unit = d->row_unit;
    l->world = r->comm->size;
    l->dp = r->comm->dp_size;
    l->tp = r->comm->tp_size;
    l->pp = r->comm->pp_size;
    l->threads = r->threads;
    l->device = r->be ? r->be->name : "cpu";
    l->precision = mt_config_enum_name("train", "precision", r->cfg.train.precision);
    l->gpu = r->gpu;
    l->hosts = r->hosts;
    l->parent_ckpt = r->resume_path;
    l->parent_sha256 = r->resume_sha;
    l->parent_run_id = r->resumed.run_id;
    l->parent_step = r->resumed.step;
}

static mt_lineage_metrics metrics_of(const mt_run_metrics *m, int64_t step) {
    mt_lineage_metrics lm = {step,  m->loss,      m->train_acc, m->grad_norm,
                             m->lr, m->test_loss, m->test_acc};
    return lm;
}

/* Appends ev to the registry (and deletes it); *version gets a
 * CHECKPOINT's model version. */
static int registry_append(mt_run *r, cJSON *ev, int64_t *version, mt_err *e) {
    int64_t v = 0;
    if (r->registry[0]) mt_registry_append(r->registry, ev, &v, e);
    cJSON_Delete(ev);
    if (version) *version = v;
    return e->code;
}

/* The run's record: identity, code, libraries, data, layout, scheduler,
 * parent, files; the result when there is one. */
static cJSON *run_json(const mt_run *r) {
    mt_version_info v;
    mt_version_get(&v);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "run_id", r->run_id);
    cJSON_AddStringToObject(j, "run_dir", r->run_dir);
    mt_version_add_code(cJSON_AddObjectToObject(j, "code"), &v);
    mt_version_add_libraries(cJSON_AddObjectToObject(j, "libraries"), &v, 0);
    r->data.ops->record(&r->data, cJSON_AddObjectToObject(j, "data"));
    const mt_comm *c = r->comm;
    cJSON *lay = cJSON_AddObjectToObject(j, "layout");
    cJSON_AddNumberToObject(lay, "world", c->size);
    cJSON_AddNumberToObject(lay, "dp", c->dp_size);
    cJSON_AddNumberToObject(lay, "tp", c->tp_size);
    cJSON_AddNumberToObject(lay, "pp", c->pp_size);
    cJSON_AddNumberToObject(lay, "microbatches", (double)r->cfg.parallel.microbatches);
    cJSON_AddStringToObject(lay, "schedule",
                            mt_config_enum_name("parallel", "schedule", r->cfg.parallel.schedule));
    cJSON_AddNumberToObject(lay, "threads_per_rank", r->threads);
    cJSON_AddStringToObject(lay, "device", r->be ? r->be->name : "cpu");
    cJSON_AddStringToObject(lay, "precision",
                            mt_config_enum_name("train", "precision", r->cfg.train.precision));
    if (r->be) { /* the fused ops the run calls, or "off" (train.fused) */
        char ran[256], lacks[256];
        mt_run_fused_ops(r, ran, lacks, sizeof ran);
        cJSON_AddStringToObject(lay, "fused", ran);
    }
    if (r->be && strncmp(r->be->name, "cpu", 3) == 0 && r->cfg.train.precision == MT_PREC_BF16)
        cJSON_AddStringToObject(lay, "bf16_matmuls", mt_backend_cpu_bf16_path());
    if (r->gpu[0]) cJSON_AddStringToObject(lay, "gpu", r->gpu);
    if (r->be && !r->be->host_memory) {
        cJSON *cm = cJSON_AddObjectToObject(lay, "comms");
        cJSON_AddStringToObject(cm, "dp", c->xdp.how);
        cJSON_AddStringToObject(cm, "tp", c->xtp.how);
        cJSON_AddStringToObject(cm, "emb", c->xemb.how);
        cJSON_AddStringToObject(cm, "pp", c->xpp.how);
    }
    cJSON_AddStringToObject(j, "host", host);
    mt_lineage_add_hosts(j, "hosts", r->hosts); /* every rank's, distinct */
    /* The scheduler's view, when there is one (Slurm today). */
    cJSON *sched = cJSON_AddObjectToObject(j, "scheduler");
    static const char *slurm_vars[] = {"SLURM_JOB_ID",       "SLURM_RESTART_COUNT",
                                       "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
                                       "SLURM_JOB_NAME",     "SLURM_JOB_PARTITION"};
    for (size_t i = 0; i < sizeof slurm_vars / sizeof slurm_vars[0]; i++) {
        const char *val = getenv(slurm_vars[i]);
        if (val) cJSON_AddStringToObject(sched, slurm_vars[i], val);
    }
    cJSON_AddNumberToObject(j, "parameters", (double)mt_params_global_count(&r->params));
    if (r->st.ops) { /* the start-up line's shape ("..., vocab 50257 (padded to 50304), ...") */
        char shape[512];
        r->st.ops->describe(&r->cfg, r->be, shape, sizeof shape);
        cJSON_AddStringToObject(j, "model", shape);
    }
    if (r->resume_path[0]) {
        cJSON *par = cJSON_AddObjectToObject(j, "parent");
        cJSON_AddStringToObject(par, "checkpoint", r->resume_path);
        cJSON_AddStringToObject(par, "run_id", r->resumed.run_id);
        cJSON_AddNumberToObject(par, "step", (double)r->resumed.step);
    }
    if (r->ckpt_dir[0]) cJSON_AddStringToObject(j, "checkpoint_dir", r->ckpt_dir);
    if (r->registry[0]) {
        cJSON *reg = cJSON_AddObjectToObject(j, "registry");
        cJSON_AddStringToObject(reg, "path", r->registry);
        cJSON_AddStringToObject(reg, "model_name", mt_lineage_model_name(&r->cfg));
    }
    return j;
}

int mt_run_write_record(mt_run *r, cJSON *result, mt_err *e) {
    cJSON *j = run_json(r);
    if (result) cJSON_AddItemToObject(j, "result", result);
    char *s = cJSON_Print(j);
    char path[MT_PATH_LEN];
    if (!mt_path_fmt(path, sizeof path, e, "%s/run.json", r->run_dir))
        mt_file_write_atomic(path, s, strlen(s), e);
    free(s);
    cJSON_Delete(j);
    return e->code;
}

/* Every rank's host name, gathered on rank 0 as a list of distinct names. */
static void gather_hosts(mt_run *r) {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const mt_comm *c = r->comm;
    char *all = c->rank == 0 ? calloc((size_t)c->size, sizeof host) : NULL;
    mt_coll_gather(c->world, 0, host, sizeof host, all);
    if (c->rank != 0) return;
    size_t len = 0;
    for (int k = 0; all && k < c->size; k++) {
        const char *h = all + (size_t)k * sizeof host;
        int seen = 0;
        for (int q = 0; q < k && !seen; q++) seen = strcmp(h, all + (size_t)q * sizeof host) == 0;
        if (!seen && len + strlen(h) + 2 < sizeof r->hosts)
            len += (size_t)snprintf(r->hosts + len, sizeof r->hosts - len, "%s\n", h);
    }
    free(all);
}

/* Rank 0: a resumed run trains on the data its checkpoint was trained on
 * (same SHA-256), unless checkpoint.allow_data_change (then report.c warns).
 * A checkpoint without the data's SHA-256 is not checked. */
static int check_data(const mt_run *r, mt_err *e) {
    const char *then = r->resumed.data_sha256, *now = r->data.sha256;
    if (!r->resume_path[0] || !then[0] || strcmp(then, now) == 0 ||
        r->cfg.checkpoint.allow_data_change)
        return MT_OK;
    const mt_batches *d = &r->data;
    mt_err_set(e, MT_ERR_DATA,
               "the data changed since checkpoint %s was written: %s has SHA-256 %.16s... now, "
               "%.16s... then",
               r->resume_path, d->nfiles == 1 ? d->file_path[0] : "the data files", now, then);
    mt_err_hint(e, "resume with the data the run was trained on, or set "
                   "checkpoint.allow_data_change = true to go on with this data");
    return e->code;
}

/* Rank 0: the folder's files and the START event. */
static int open_files(mt_run *r, mt_err *e) {
    char path[MT_PATH_LEN];
    if (r->cfg.registry.enabled) mt_lineage_registry_path(&r->cfg, r->registry, sizeof r->registry);
    if (!mt_batches_hash(&r->data, e) && !check_data(r, e) &&
        !mt_rundir_create(r->cfg.run.dir, r->cfg.run.name, r->run_dir, sizeof r->run_dir, e) &&
        r->registry[0] && mt_registry_writable(r->registry, e)) {
        rmdir(r->run_dir); /* still empty: a bad registry leaves nothing behind */
        r->run_dir[0] = '\0';
    }
    if (e->code) return e->code;
    if (!mt_path_fmt(path, sizeof path, e, "%s/config.ini", r->run_dir) &&
        !mt_file_write_atomic(path, r->config_text, strlen(r->config_text), e))
        mt_run_write_record(r, NULL, e);
    if (!e->code && !mt_path_fmt(path, sizeof path, e, "%s/metrics.jsonl", r->run_dir))
        mt_metrics_open(&r->metrics, path, e);
    if (!e->code && mt_run_writes_checkpoints(&r->cfg) &&
        !mt_resume_ckpt_dir(&r->cfg, r->run_dir, r->ckpt_dir, sizeof r->ckpt_dir, e))
        mt_mkdirs(r->ckpt_dir, e);
    if (!e->code && r->registry[0]) {
        mt_lineage l;
        lineage_of(r, &l);
        r->registered = !registry_append(r, mt_lineage_event(&l, "START"), NULL, e);
    }
    return e->code;
}

/* Rank 0 claims the run folder and writes the resolved config and run record. */
int mt_run_open_folder(mt_run *r, mt_err *e) {
    const mt_comm *c = r->comm;
    if (c->rank == 0) mt_uuid4(r->run_id);
    mt_coll_bcast(c->world, 0, r->run_id, sizeof r->run_id);
    gather_hosts(r);
    if (c->rank == 0) open_files(r, e);
    mt_coll_bcast(c->world, 0, r->run_dir, sizeof r->run_dir);
    mt_coll_bcast(c->world, 0, r->ckpt_dir, sizeof r->ckpt_dir);
    return mt_comm_agree(c, e);
}

int mt_run_register_checkpoint(mt_run *r, const char *path, const char *sha, int64_t bytes,
                               int64_t step, const mt_run_metrics *m, mt_err *e) {
    if (!r->registry[0]) return MT_OK;
    mt_lineage l;
    lineage_of(r, &l);
    cJSON *ev = mt_lineage_event(&l, "CHECKPOINT");
    mt_lineage_add_output(ev, "checkpoint", path, sha, bytes);
    mt_lineage_add_model(ev, &l, path, sha, bytes, step);
    mt_lineage_metrics mm = metrics_of(m, step);
    mt_lineage_add_metrics(ev, &mm);
    int64_t version;
    if (!registry_append(r, ev, &version, e))
        printf("registry: %s version %lld (step %lld) in %s\n", mt_lineage_model_name(&r->cfg),
               (long long)version, (long long)step, r->registry);
    return e->code;
}

int mt_run_register_end(mt_run *r, const char *type, const char *model_path, int64_t step,
                        const mt_eval *ev, const char *why, const char *reason, int code,
                        mt_err *e) {
    if (!r->registry[0]) return MT_OK;
    char sha[72] = "";
    if (model_path && mt_sha256_file(model_path, sha, e)) return e->code;
    mt_lineage l;
    lineage_of(r, &l);
    cJSON *rec = mt_lineage_event(&l, type);
    if (model_path) {
        struct stat st = {0};
        stat(model_path, &st);
        mt_lineage_add_output(rec, "model", model_path, sha, (int64_t)st.st_size);
    }
    if (r->ckpt_last[0])
        mt_lineage_add_output(rec, "checkpoint", r->ckpt_last, r->ckpt_last_sha,
                              r->ckpt_last_bytes);
    mt_lineage_metrics mm = metrics_of(&r->last, step);
    if (ev) mm.test_loss = ev->loss, mm.test_acc = ev->accuracy;
    mt_lineage_add_metrics(rec, &mm);
    if (why) {
        char msg[160];
        snprintf(msg, sizeof msg, "stopped at step %lld of %lld by %s", (long long)step,
                 (long long)r->cfg.train.steps, why);
        mt_lineage_add_result(rec, "stopped", code, msg, reason);
    } else {
        mt_lineage_add_result(rec, "completed", 0, NULL, NULL);
    }
    return registry_append(r, rec, NULL, e);
}

void mt_run_on_ckpt_removed(const char *path, const char *sha256, void *ctx) {
    mt_run *r = ctx;
    if (!r->registry[0] || r->retire_err.code) return;
    char why[160];
    snprintf(why, sizeof why,
             "retention: checkpoint.keep_last = %lld, checkpoint.keep_every = %lld",
             (long long)r->cfg.checkpoint.keep_last, (long long)r->cfg.checkpoint.keep_every);
    mt_lineage l;
    lineage_of(r, &l);
    registry_append(r, mt_lineage_delete_event(&l, path, sha256, why), NULL, &r->retire_err);
}

void mt_run_record_failure(mt_run *r, const mt_err *e) {
    if (r->comm->rank != 0 || !r->run_dir[0] || e->code == MT_ERR_STOPPED) return;
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "status", "failed");
    cJSON_AddNumberToObject(res, "exit_code", e->code);
    cJSON_AddStringToObject(res, "error", e->msg);
    mt_err ignored = {0}; /* the original error is the one to report */
    mt_run_write_record(r, res, &ignored);
    /* a registry that just failed is not written again (a lock held too
     * long would hold the exit for as long again) */
    if (!r->registered || e->code == MT_ERR_REGISTRY) return;
    mt_lineage l;
    lineage_of(r, &l);
    cJSON *ev = mt_lineage_event(&l, "FAIL");
    mt_lineage_metrics mm = metrics_of(&r->last, r->step_done);
    mt_lineage_add_metrics(ev, &mm);
    mt_lineage_add_result(ev, "failed", e->code, e->msg, NULL);
    mt_err quiet = {0};
    if (registry_append(r, ev, NULL, &quiet))
        fprintf(stderr, "mpitrain: warning: could not record the failure in the registry: %s\n",
                quiet.msg);
}
