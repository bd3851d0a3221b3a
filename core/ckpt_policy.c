/*
 * ckpt_policy.c - a run's checkpoints (core/run.h): whether it writes any,
 * the folder they go to, resuming from one (core/resume.h chooses it), and
 * writing one at a step: the state copied to the host, the collective
 * write, then `latest`, the registry's model version and retention. Also
 * the trained model's file at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/lineage.h"
#include "core/resume.h"
#include "core/run.h"
#include "core/state_views.h"
#include "core/version.h"
#include "io/modelfile.h"
#include "io/sha256.h"
#include "parallel/collectives.h"

int mt_run_writes_checkpoints(const mt_config *cfg) {
    return cfg->checkpoint.every_steps > 0 || cfg->checkpoint.every_seconds > 0 ||
           cfg->checkpoint.save_final || cfg->checkpoint.save_initial ||
           cfg->train.exit_after_steps > 0;
}

/* Rank 0 picks and checks the checkpoint; then every rank reads its part. */
/* Rank 0: a run stopped by a second signal in the middle of a checkpoint
 * write left its temporary in its own folder, which the resumed run (in a
 * new run folder) would never clean otherwise. That folder may belong to a
 * run still alive on another host (a branch from its checkpoint), whose
 * writer the process check cannot see: only temporaries untouched for a
 * minute go (a live writer keeps writing into its own). */
static void remove_temporaries_beside(const char *ckpt) {
    char dir[MT_CKPT_PATH];
    snprintf(dir, sizeof dir, "%s", ckpt);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    mt_ckpt_remove_temporaries(slash ? dir : ".", 60.0, stdout);
}

int mt_run_resume(mt_run *r, mt_err *e) {
    const mt_comm *c = r->comm;
    mt_ckpt_info info = {0};
    if (c->rank == 0) {
        if (!mt_resume_find(&r->cfg, r->resume_path, sizeof r->resume_path, &info, stdout, e) &&
            r->resume_path[0])
            mt_resume_check(&r->cfg, r->hp, r->resume_path, &info, stdout, e);
        r->resumed = info.meta;
        snprintf(r->resume_sha, sizeof r->resume_sha, "%s", info.file_sha256);
        mt_ckpt_info_free(&info);
        /* without a .sha256 beside it, hash it here: the registry names the parent by it */
        if (!e->code && r->resume_path[0] && !r->resume_sha[0] && r->cfg.registry.enabled)
            mt_sha256_file(r->resume_path, r->resume_sha, e);
        if (!e->code && r->resume_path[0]) remove_temporaries_beside(r->resume_path);
        fflush(stdout);
    }
    if (mt_comm_agree(c, e)) return e->code;
    mt_coll_bcast(c->world, 0, r->resume_path, sizeof r->resume_path);
    if (!r->resume_path[0]) return MT_OK;
    mt_coll_bcast(c->world, 0, &r->resumed, sizeof r->resumed);
    mt_state_views sv;
    mt_state_views_build(&sv, r->hp, r->hopt, e);
    if (mt_comm_agree(c, e)) { /* another rank's error: this one's views are built */
        mt_state_views_free(&sv);
        return e->code;
    }
    int64_t optim_steps = 0;
    mt_ckpt_load(c, r->resume_path, mt_state_optim_kind(r->hopt), sv.v, sv.n, &optim_steps, e);
    mt_state_views_free(&sv);
    if (e->code) return e->code;
    r->hopt->t = optim_steps;
    mt_run_state_to_device(r);
    r->start_step = r->step_done = r->resumed.step;
    if (r->start_step > r->cfg.train.steps) {
        mt_err_set(e, MT_ERR_USAGE, "checkpoint %s is at step %lld, beyond train.steps = %lld",
                   r->resume_path, (long long)r->start_step, (long long)r->cfg.train.steps);
        mt_err_hint(e, "raise train.steps to train further");
    }
    const mt_ckpt_meta *m = &r->resumed;
    r->last = (mt_run_metrics){m->loss,    m->train_acc, m->grad_norm,
                               m->lr_last, m->test_loss, m->test_acc};
    return mt_comm_agree(c, e);
}

/* Same file, by device and inode (paths may differ in spelling). */
static int same_dir(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* Rank 0: a file can be made in dir (a read-only file system, a folder
 * of another user), so that the first checkpoint, perhaps written in the
 * background, does not fail hours into the run. */
static int probe_dir(const char *dir, mt_err *e) {
    char probe[MT_CKPT_PATH + 64];
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    snprintf(probe, sizeof probe, "%s/.mpitrain-probe-%s-%ld", dir, host, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        mt_err_set(e, MT_ERR_CKPT, "checkpoint.dir %s is not writable: %s", dir, strerror(errno));
        mt_err_hint(e, "choose a folder this job may write (checkpoint.dir)");
        return e->code;
    }
    close(fd);
    unlink(probe);
    return MT_OK;
}

/* A named checkpoint.dir is shared between runs: a run may only write into
 * one that holds checkpoints when it continues from one of them. */
int mt_run_check_ckpt_dir(mt_run *r, mt_err *e) {
    const char *dir = r->cfg.checkpoint.dir;
    if (r->comm->rank == 0 && dir[0] && mt_run_writes_checkpoints(&r->cfg)) {
        int64_t *steps;
        int n;
        char from[MT_CKPT_PATH];
        mt_file_dir(r->resume_path, from, sizeof from);
        if (!mt_ckpt_list(dir, &steps, &n, e) && n > 0 &&
            !(r->resume_path[0] && same_dir(from, dir))) {
            mt_err_set(e, MT_ERR_USAGE,
                       "checkpoint.dir %s already holds %d checkpoint(s) of another run (newest "
                       "step %lld); this run would mix with them",
                       dir, n, (long long)steps[n - 1]);
            mt_err_hint(e, "set checkpoint.resume = auto to continue them, or choose another "
                           "checkpoint.dir");
        }
        free(steps);
        if (!e->code) mt_mkdirs(dir, e);
        if (!e->code) probe_dir(dir, e);
    }
    if (r->cfg.checkpoint.async && !r->comm->thread_multiple && !e->code) {
        mt_err_set(e, MT_ERR_USAGE,
                   "checkpoint.async = true needs an MPI library that provides "
                   "MPI_THREAD_MULTIPLE; this one does not");
        mt_err_hint(e, "set checkpoint.async = false (checkpoints then stop the training while "
                       "they are written)");
    }
    return mt_comm_agree(r->comm, e);
}

/* What a checkpoint of step `done` records besides its tensors. */
static void meta_of(const mt_run *r, int64_t done, mt_ckpt_meta *m) {
    const mt_config *cfg = &r->cfg;
    const mt_comm *c = r->comm;
    memset(m, 0, sizeof *m);
    mt_version_info v;
    mt_version_get(&v);
    m->step = done;
    m->epoch = done / r->data.steps_per_epoch;
    m->step_in_epoch = done % r->data.steps_per_epoch;
    m->samples_seen = done * cfg->train.global_batch;
    m->seed = cfg->run.seed;
    m->optim_steps = r->opt.t;
    m->lr_last = r->last.lr;
    m->lr_next = mt_lr_at(cfg, r->opt.t); /* steps skipped for a NaN do not advance it */
    m->loss = r->last.loss;
    m->train_acc = r->last.train_acc;
    m->grad_norm = r->last.grad_norm;
    m->test_loss = r->last.test_loss;
    m->test_acc = r->last.test_acc;
    m->world = c->size;
    m->dp = c->dp_size;
    m->tp = c->tp_size;
    m->pp = c->pp_size;
    m->code_dirty = v.dirty;
    m->hyper = mt_state_hyper(r->hopt);
    snprintf(m->optim_kind, sizeof m->optim_kind, "%s",
             mt_config_enum_name("optim", "kind", cfg->optim.kind));
    snprintf(m->model_kind, sizeof m->model_kind, "%s",
             mt_config_enum_name("model", "kind", cfg->model.kind));
    snprintf(m->run_id, sizeof m->run_id, "%s", r->run_id);
    snprintf(m->run_name, sizeof m->run_name, "%s", mt_lineage_model_name(cfg));
    time_t now = time(NULL);
    strftime(m->created_utc, sizeof m->created_utc, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    snprintf(m->mpitrain_version, sizeof m->mpitrain_version, "%s", v.version);
    snprintf(m->code_commit, sizeof m->code_commit, "%s", v.commit);
    snprintf(m->data_sha256, sizeof m->data_sha256, "%s", r->data.sha256);
    snprintf(m->resumed_from, sizeof m->resumed_from, "%s", r->resume_path);
}

/*
 * Rank 0, in the background job's thread (mt_ckpt_done_fn), once the file
 * is durable on every rank and its .sha256 written: points `latest` at it,
 * registers it as a model version, applies retention. It runs beside the
 * training thread, so it reads only what that thread leaves alone while a
 * job is pending: the job's description (r->ckpt_job, set before the job
 * started), the config and the run's identity; it writes the registry,
 * the checkpoint folder, r->ckpt_last* and r->retire_err, which the
 * training thread reads only after mt_ckpt_bg_wait.
 */
static int publish(const mt_ckpt_bg_result *res, void *ctx, mt_err *e) {
    mt_run *r = ctx;
    const mt_config *cfg = &r->cfg;
    const char *path = r->ckpt_job.path, *sha = res->sha256;
    int async = cfg->checkpoint.async;
    double write_s = async ? res->write_s : r->ckpt_job.write_s;
    struct stat st = {0};
    stat(path, &st);
    double mb = (double)st.st_size / 1e6;
    printf("checkpoint: step %lld -> %s (%.1f MB in %.3f s = %.1f MB/s; sha256 %.3f s; "
           "training stalled %.3f s)\n",
           (long long)r->ckpt_job.step, path, mb, write_s, mb / write_s, res->hash_s,
           r->ckpt_job.stall_s + (async ? res->stage_s : 0.0));
    mt_ckpt_set_latest(r->ckpt_dir, r->ckpt_job.name, e);
    /* the record carries the metrics of the checkpoint's step */
    if (!e->code)
        mt_run_register_checkpoint(r, path, sha, (int64_t)st.st_size, r->ckpt_job.step,
                                   &r->ckpt_job.metrics, e);
    if (!e->code)
        mt_ckpt_retain(r->ckpt_dir, cfg->checkpoint.keep_last, cfg->checkpoint.keep_every, stdout,
                       mt_run_on_ckpt_removed, r, e);
    if (!e->code && r->retire_err.code) *e = r->retire_err;
    fflush(stdout);
    snprintf(r->ckpt_last, sizeof r->ckpt_last, "%s", path);
    snprintf(r->ckpt_last_sha, sizeof r->ckpt_last_sha, "%s", sha);
    r->ckpt_last_bytes = (int64_t)st.st_size;
    return e->code;
}

int mt_run_ckpt_busy(const mt_run *r) {
    return mt_ckpt_bg_busy(r->ckpt_bg);
}

int mt_run_ckpt_finish(mt_run *r, int64_t waiting_for, mt_err *e) {
    if (!r->ckpt_job.pending) return MT_OK; /* the same on every rank */
    const mt_comm *c = r->comm;
    double t0 = mt_wtime();
    /* a checkpoint that waits: did any rank's part still run? (logged, counted) */
    int busy = mt_ckpt_bg_busy(r->ckpt_bg);
    if (waiting_for > 0) mt_coll_max_ints(c->world, &busy, 1);
    mt_ckpt_bg_result res;
    mt_err we = {0};
    mt_ckpt_bg_wait(r->ckpt_bg, &res, &we); /* rank 0's thread has published it */
    r->ckpt_job.pending = 0;
    if (mt_comm_agree(c, &we)) {
        if (!e->code) *e = we;
        return e->code;
    }
    double waited = mt_wtime() - t0;
    int async = r->cfg.checkpoint.async;
    int waited_busy = waiting_for > 0 && busy;
    if (c->rank == 0 && waited_busy)
        printf("checkpoint: step %lld waited %.3f s for the %s of step %lld, still in flight "
               "(checkpoints come faster than %s)\n",
               (long long)waiting_for, waited, async ? "write" : "hash",
               (long long)r->ckpt_job.step, async ? "one is written" : "rank 0 hashes one");
    if (waited_busy) r->ckpt_waits++, r->ckpt_wait_s += waited;
    if (res.stage_mb > 0) r->ckpt_stage_mb = res.stage_mb;
    /* what it took from the copy to the .sha256 (train.time_limit's estimate, rank 0) */
    r->ckpt_last_s = r->ckpt_job.stall_s + (async ? res.stage_s + res.write_s : 0.0) + res.hash_s;
    return MT_OK;
}

/* Writes the checkpoint of step done, or starts its background write. */
int mt_run_save_checkpoint(mt_run *r, int64_t done, mt_err *e) {
    const mt_comm *c = r->comm;
    double t0 = mt_wtime();
    if (mt_run_ckpt_finish(r, done, e)) return e->code; /* one job at a time */
    double t1 = mt_wtime();
    mt_ckpt_meta m;
    meta_of(r, done, &m);
    char name[64], path[MT_CKPT_PATH + 64];
    mt_ckpt_name(done, name, sizeof name);
    double write_s = 0.0;
    /* a run configured to write none still checkpoints when a signal or
     * train.time_limit stops it: its folder is made now */
    if (c->rank == 0 && !r->ckpt_dir[0] &&
        !mt_resume_ckpt_dir(&r->cfg, r->run_dir, r->ckpt_dir, sizeof r->ckpt_dir, e))
        mt_mkdirs(r->ckpt_dir, e);
    snprintf(path, sizeof path, "%s/%s", r->ckpt_dir, name);
    if (!r->ckpt_bg && mt_ckpt_bg_open(&r->ckpt_bg, c, r->cfg.checkpoint.async, e)) return e->code;
    mt_run_state_to_host(r);
    mt_state_views sv;
    mt_state_views_build(&sv, r->hp, r->hopt, e);
    if (mt_comm_agree(c, e)) { /* another rank's error: this one's views are built */
        mt_state_views_free(&sv);
        return e->code;
    }
    /* the job's description, which publish reads in the job's thread */
    r->ckpt_job.step = done;
    snprintf(r->ckpt_job.name, sizeof r->ckpt_job.name, "%s", name);
    snprintf(r->ckpt_job.path, sizeof r->ckpt_job.path, "%s", path);
    r->ckpt_job.t0 = t1;
    r->ckpt_job.metrics = r->last;
    if (r->cfg.checkpoint.async) {
        /* the live buffers are copied; a host copy of device memory is
         * itself the staging copy (nothing writes it until the wait) */
        int copy = r->hp == &r->params;
        r->ckpt_job.write_s = 0.0;
        r->ckpt_job.stall_s = mt_wtime() - t1; /* publish adds the copy's time */
        mt_ckpt_bg_write(r->ckpt_bg, path, &m, r->config_text, sv.v, sv.n, copy,
                         r->cfg.checkpoint.timeout, publish, r, e);
    } else {
        /* the file is durable on return; rank 0 hashes it while every rank trains on */
        mt_ckpt_write(c, path, &m, r->config_text, sv.v, sv.n, r->cfg.checkpoint.timeout, &write_s,
                      NULL, e);
        r->ckpt_job.write_s = write_s;
        r->ckpt_job.stall_s = mt_wtime() - t1;
        if (!e->code && c->rank == 0) mt_ckpt_bg_hash(r->ckpt_bg, path, publish, r, e);
        mt_comm_agree(c, e);
    }
    mt_state_views_free(&sv);
    if (e->code) return e->code;
    double now = mt_wtime();
    r->ckpt_job.pending = 1;
    r->ckpt_count++;
    r->ckpt_stall_sum += now - t1;
    if (now - t1 > r->ckpt_stall_max) r->ckpt_stall_max = now - t1;
    r->ckpt_time += now - t0;
    return MT_OK;
}

cJSON *mt_run_ckpt_record(const mt_run *r) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "mode", r->cfg.checkpoint.async ? "async" : "sync");
    cJSON_AddNumberToObject(o, "written", (double)r->ckpt_count);
    cJSON_AddNumberToObject(o, "stall_s_mean",
                            r->ckpt_count ? r->ckpt_stall_sum / (double)r->ckpt_count : 0.0);
    cJSON_AddNumberToObject(o, "stall_s_max", r->ckpt_stall_max);
    cJSON_AddNumberToObject(o, "waits", (double)r->ckpt_waits);
    cJSON_AddNumberToObject(o, "wait_s", r->ckpt_wait_s);
    for (int k = 0; k < 2; k++)
        cJSON_AddNumberToObject(o, k ? "step_ms_writing" : "step_ms_idle",
                                r->steps_n[k] ? 1e3 * r->steps_s[k] / (double)r->steps_n[k] : 0.0);
    cJSON_AddNumberToObject(o, "steps_writing", (double)r->steps_n[1]);
    cJSON_AddNumberToObject(o, "staging_mb", r->ckpt_stage_mb);
    return o;
}

int mt_run_write_model(mt_run *r, const char *path, mt_err *e) {
    mt_version_info v;
    mt_version_get(&v);
    mt_modelfile_meta meta = {r->config_text,
                              r->run_id,
                              mt_config_enum_name("model", "kind", r->cfg.model.kind),
                              (long long)r->cfg.train.steps,
                              v.version,
                              v.commit};
    /* collective: rank 0 gathers each tensor from the ranks holding it */
    mt_run_state_to_host(r);
    mt_state_views sv;
    mt_state_views_build(&sv, r->hp, NULL, e);
    if (mt_comm_agree(r->comm, e)) {
        mt_state_views_free(&sv);
        return e->code;
    }
    mt_modelfile_write(r->comm, path, sv.v, sv.n, &meta, e);
    mt_state_views_free(&sv);
    return e->code;
}
