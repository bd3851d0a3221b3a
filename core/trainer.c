/*
 * trainer.c - `mpitrain train`, top to bottom: set the run up, train step
 * by step, evaluate, finish (docs/ARCHITECTURE.md follows one step through
 * these calls). The pieces live in files named for them (core/run.h).
 *
 * Data parallelism over replicas, each a tensor- and pipeline-parallel
 * split of the model (docs/PARALLEL.md). Every global batch of
 * train.global_batch rows is split evenly over the replicas and each
 * replica's share runs through its pipeline in parallel.microbatches
 * micro-batches. Each rank's gradient is scaled by 1 / (the global batch's
 * labels) and summed over the replicas (parallel/gradsync.h), so every rank
 * holds the mean gradient of the global batch and takes the same step.
 * Errors are agreed on at phase boundaries and, during the loop, through a
 * flag carried by the per-step reduction, so no rank is left waiting.
 */
#include "trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/fault.h"
#include "core/run.h"
#include "kernels/backends.h"
#include "parallel/detsum.h"
#include "parallel/threads.h"
#include "parallel/watchdog.h"

/* What every rank adds up after a step's backward: the loss and hits of the
 * replicas (their last stage's tensor-parallel rank 0 speaks for each), and
 * flags any rank may raise. One reduction of seven doubles. */
typedef struct {
    double loss_sum; /* the losses of the global batch's labels */
    double correct;  /* labels the model's top guess hit */
    double failed;   /* ranks that met an error last step */
    double ckpt_due; /* rank 0: checkpoint.every_seconds has passed */
    double signals;  /* ranks that received a stop signal */
    double time_up;  /* rank 0: train.time_limit leaves room for no further step */
    double writing;  /* ranks whose part of the checkpoint job in flight still runs */
} step_totals;
_Static_assert(sizeof(step_totals) == 7 * sizeof(double), "step_totals is summed as doubles");

/* Why a run ends before train.steps (stop_reason): a signal's number, or one of these. */
enum { STOP_AFTER_STEPS = -1, STOP_TIME_LIMIT = -2 };

/* Each data-parallel replica evaluates its contiguous share of the
 * evaluation split through its pipeline; losses and hits are summed over
 * the replicas and averaged per label. */
static mt_eval evaluate(mt_run *r) {
    const mt_comm *c = r->comm;
    mt_batches *d = &r->data;
    int64_t n = d->n_eval, lo = n * c->dp_rank / c->dp_size, hi = n * (c->dp_rank + 1) / c->dp_size;
    r->st.loss = r->st.correct = 0.0;
    mt_stage_eval_begin(&r->st);
    for (int64_t i = lo; i < hi; i += d->eval_rows) {
        int64_t k = hi - i < d->eval_rows ? hi - i : d->eval_rows;
        mt_model_batch b = mt_batches_eval(d, i, k);
        mt_stage_eval(&r->st, &b);
    }
    double sums[2] = {0.0, 0.0};
    if (mt_stage_reports(&r->st)) sums[0] = r->st.loss, sums[1] = r->st.correct;
    mt_coll_sum_doubles(c->world, sums, 2);
    double labels = (double)n * (double)d->shape.y_width;
    mt_eval ev = {sums[0] / labels, sums[1] / labels, (int64_t)sums[1], (int64_t)labels};
    return ev;
}

/* Rank 0: whether step `done` writes a checkpoint of its own (every_steps,
 * every_seconds; since_ckpt: seconds since the last one), which the time
 * budget must then also fit. */
static int ckpt_now(const mt_run *r, int64_t done, double since_ckpt) {
    const mt_config *cfg = &r->cfg;
    int64_t every = cfg->checkpoint.every_steps;
    double every_s = cfg->checkpoint.every_seconds;
    return (every > 0 && done % every == 0) || (every_s > 0 && since_ckpt >= every_s) ||
           (done == cfg->train.steps && cfg->checkpoint.save_final);
}

/* The replica's loss sum this rank adds to the step's totals (0 unless it
 * reports). parallel.deterministic: the replicas' sums added in the tree of
 * the gradient's (parallel/detsum.h), counted once, by data-parallel rank
 * 0's reporter, so the world sum adds only zeros to it. */
static double loss_share(const mt_run *r, int reports) {
    double loss = reports ? r->st.loss : 0.0;
    if (!r->cfg.parallel.deterministic) return loss;
    if (r->comm->dp_size > 1) mt_detsum_doubles(r->comm->dp, &loss, 1);
    return r->comm->dp_rank == 0 ? loss : 0.0;
}

/* One training step: the replica's batch through the pipeline, the
 * gradient's reductions, the step totals over every rank, clipping and the
 * optimizer. Returns the totals; *norm gets the gradient's global norm.
 * A step whose loss or norm is not finite changes nothing (the caller
 * applies train.nan_policy). t_ckpt: when the last checkpoint was written
 * (checkpoint.every_seconds); t0: when this step began. */
static step_totals train_step(mt_run *r, int64_t step, double t_ckpt, double t0, double *norm,
                              const mt_err *e) {
    const mt_comm *c = r->comm;
    /* parallel.timeout from the second step this process runs: the first
     * carries the set-up's skew (rank 0 hashing data or verifying the
     * checkpoint it resumes from, first allocations, device warm-up) */
    mt_watchdog_phase("training", step + 1, step > r->start_step);
    mt_fault_at(MT_FAULT_STEP_BEGIN, step + 1); /* a test aid (base/fault.h) */
    mt_model_batch b = mt_batches_step(&r->data, step);
    float scale = 1.0f / (float)(r->data.global_batch * r->data.shape.y_width);
    /* MPITRAIN_FAULT's nan: NaN through the whole backward (from the loss's
     * gradient, on the last stage) and in this rank's gradient (any stage) */
    int nan = mt_fault_nan(step + 1);
    r->st.loss = r->st.correct = 0.0;
    /* the buckets start during the backward, unless the fault's NaN comes after it */
    mt_gradsync_begin(&r->sync, step + 1, step - r->start_step >= MT_TIMING_SKIP, !nan);
    mt_stage_train(&r->st, &b, nan ? NAN : scale); /* every micro-batch's forward and backward */
    if (nan) r->be->scale(r->params.grad, NAN, r->params.numel);
    mt_gradsync_reduce(&r->sync); /* tied copies, then over the replicas */
    /* the step's one wait for the device: the losses and the norm's parts */
    mt_gradsync_norm_queue(&r->sync, mt_step_stats_norm(&r->stats));
    mt_step_stats_read(&r->stats, c->world);
    mt_stage_collect(&r->st);
    if (nan) r->st.loss = NAN;
    double every_s = r->cfg.checkpoint.every_seconds, now = mt_wtime();
    int rank0 = c->rank == 0, reports = mt_stage_reports(&r->st);
    double step_s = r->step_s_max > now - t0 ? r->step_s_max : now - t0;
    step_totals tot = {
        loss_share(r, reports),
        reports ? (double)(int64_t)r->st.correct : 0.0,
        e->code ? 1.0 : 0.0,
        rank0 && every_s > 0 && now - t_ckpt >= every_s ? 1.0 : 0.0,
        mt_run_stop_signal() ? 1.0 : 0.0,
        rank0 && mt_run_time_up(r, step_s, ckpt_now(r, step + 1, now - t_ckpt)) ? 1.0 : 0.0,
        mt_run_ckpt_busy(r) ? 1.0 : 0.0};
    mt_coll_sum_doubles(c->world, (double *)&tot, sizeof tot / sizeof(double));
    if (tot.failed > 0) return tot;
    *norm = mt_gradsync_norm_end(&r->sync, mt_step_stats_host_norm(&r->stats));
    double loss = tot.loss_sum / (double)(r->data.global_batch * r->data.shape.y_width);
    if (!isfinite(loss) || !isfinite(*norm)) return tot; /* see nan_policy */
    mt_optim_clip(&r->opt, &r->params, r->be, *norm, r->cfg.optim.grad_clip);
    /* the schedule follows the updates taken: steps skipped for a NaN do not count */
    mt_optim_step(&r->opt, &r->params, r->be, (float)mt_lr_at(&r->cfg, r->opt.t));
    mt_gradsync_gather(&r->sync, r->params.data); /* ZeRO-1: every shard's update */
    return tot;
}

/* A step whose loss or gradient norm is NaN or infinite (every rank saw the
 * same reduced values): an error under train.nan_policy = stop, or past
 * train.nan_max_skips consecutive skips; otherwise the step is skipped and
 * its gradient cleared (the models' own buffers clear with a scale by 0,
 * which turns NaN and Inf into 0; kernels/backend.h). */
static int nan_policy(mt_run *r, double loss, double norm, int64_t step, mt_err *e) {
    const mt_config *cfg = &r->cfg;
    int skip = cfg->train.nan_policy == MT_NAN_SKIP;
    const char *what = isfinite(loss) ? "gradient norm" : "loss";
    const char *value = isnan(isfinite(loss) ? norm : loss) ? "NaN" : "infinite";
    if (skip && r->nan_in_row < cfg->train.nan_max_skips) {
        r->nan_skips++, r->nan_in_row++;
        r->be->scale(r->params.grad, 0.0f, r->params.numel); /* NaN and Inf too */
        return MT_OK;
    }
    if (skip)
        mt_err_set(e, MT_ERR_NUMERIC,
                   "%s is %s at step %lld: %lld steps in a row with a NaN or infinite value, "
                   "more than train.nan_max_skips = %lld",
                   what, value, (long long)step + 1, (long long)r->nan_in_row + 1,
                   (long long)cfg->train.nan_max_skips);
    else
        mt_err_set(e, MT_ERR_NUMERIC, "%s is %s at step %lld", what, value, (long long)step + 1);
    mt_err_hint(e, "lower optim.lr, or set optim.grad_clip (e.g. 1.0)%s",
                skip ? "" : "; train.nan_policy = skip skips such steps");
    return e->code;
}

/* The highest stop signal any rank received (0: none); collective. Also
 * after a checkpoint: a signal that arrived during the write lets it finish
 * and the run stops with that checkpoint (one small reduction per
 * checkpoint). */
static int agreed_signal(const mt_run *r) {
    int sig = mt_run_stop_signal();
    mt_coll_max_ints(r->comm->world, &sig, 1);
    return sig;
}

/* Why a run ends before train.steps: a signal's number (the highest any
 * rank received), STOP_TIME_LIMIT, STOP_AFTER_STEPS, or 0: it goes on. A
 * run that has just done its last step completes. */
static int stop_reason(const mt_run *r, const step_totals *tot, int64_t done, int last) {
    if (last) return 0;
    if (tot->signals > 0) return agreed_signal(r);
    if (tot->time_up > 0) return STOP_TIME_LIMIT;
    int64_t after = r->cfg.train.exit_after_steps;
    return after > 0 && done - r->start_step == after ? STOP_AFTER_STEPS : 0;
}

/* cpu-staged (MPITRAIN_TEST_STAGED=1): count the host synchronisations of
 * the training steps (sign -1 before a step, +1 after it) */
static void count_syncs(mt_run *r, int sign) {
    if (strcmp(r->be->name, "cpu-staged") != 0) return;
    for (int k = 0; k < MT_STAGED_SYNC_KINDS; k++)
        r->host_syncs[k] += sign * mt_backend_staged_syncs(k);
    if (sign > 0) r->host_sync_steps++;
}

/* run.json's result.host_syncs_per_step and its line (rank 0's counts) */
static void report_syncs(const mt_run *r, cJSON *res) {
    _Static_assert(sizeof r->host_syncs / sizeof r->host_syncs[0] == MT_STAGED_SYNC_KINDS,
                   "one count per kind");
    if (r->host_sync_steps == 0) return;
    double n = (double)r->host_sync_steps, k[MT_STAGED_SYNC_KINDS], all = 0.0;
    for (int i = 0; i < MT_STAGED_SYNC_KINDS; i++) all += k[i] = (double)r->host_syncs[i] / n;
    cJSON *o = cJSON_AddObjectToObject(res, "host_syncs_per_step");
    cJSON_AddNumberToObject(o, "all", all);
    cJSON_AddNumberToObject(o, "to_host", k[MT_SYNC_TO_HOST]);
    cJSON_AddNumberToObject(o, "to_device", k[MT_SYNC_TO_DEVICE]);
    cJSON_AddNumberToObject(o, "synchronize", k[MT_SYNC_SYNCHRONIZE]);
    cJSON_AddNumberToObject(o, "values", k[MT_SYNC_VALUE]);
    printf("device: cpu-staged: %.1f host synchronisations per training step on rank 0 (copies "
           "to the host %.1f, to the device %.1f, synchronize %.1f, values returned %.1f)\n",
           all, k[MT_SYNC_TO_HOST], k[MT_SYNC_TO_DEVICE], k[MT_SYNC_SYNCHRONIZE], k[MT_SYNC_VALUE]);
}

/* Trains from r->start_step. *stopped is set when the run ends early (see
 * stop_reason); *final_eval is the evaluation after the last step. */
static int train_loop(mt_run *r, double *ms_per_step, mt_eval *final_eval, int *stopped,
                      mt_err *e) {
    const mt_config *cfg = &r->cfg;
    int64_t steps = cfg->train.steps, start = r->start_step, end_step = steps;
    int64_t labels = r->data.global_batch * r->data.shape.y_width;
    double t_start = mt_wtime(), t_timed = 0.0, t_log = t_start, eval_time = 0.0;
    double t_ckpt = t_start, ckpt_time0 = r->ckpt_time; /* last checkpoint; time spent before */
    int64_t log_from = start;
    *ms_per_step = 0.0;
    if (start == 0 && cfg->checkpoint.save_initial && mt_run_save_checkpoint(r, 0, e))
        return e->code;
    if (start == steps) { /* resumed at the end: only the final evaluation is left */
        *final_eval = evaluate(r);
        return mt_comm_agree(r->comm, e);
    }
    for (int64_t step = start; step < steps; step++) {
        double t_step = mt_wtime(), ckpt_before = r->ckpt_time;
        if (step - start == MT_TIMING_SKIP)
            t_timed = t_step, eval_time = 0.0, ckpt_time0 = r->ckpt_time, r->st.pipe.busy_s = 0.0;
        double norm = 0.0;
        int in_flight = r->ckpt_job.pending; /* a checkpoint job runs beside this step */
        count_syncs(r, -1);
        step_totals tot = train_step(r, step, t_ckpt, t_step, &norm, e);
        count_syncs(r, 1);
        if (tot.failed > 0) return mt_comm_agree(r->comm, e);
        /* every rank's part of the checkpoint job is done (rank 0's thread
         * has published it): join and agree on its error */
        if (tot.writing == 0 && mt_run_ckpt_finish(r, 0, e)) return e->code;
        double loss = tot.loss_sum / (double)labels;
        int skipped = !isfinite(loss) || !isfinite(norm);
        if (skipped && nan_policy(r, loss, norm, step, e)) return e->code;
        if (!skipped) r->nan_in_row = 0;
        mt_step_report rep = {.done = step + 1,
                              .epoch = step / r->data.steps_per_epoch,
                              .from = log_from,
                              .loss = loss,
                              .train_acc = tot.correct / (double)labels,
                              .lr = mt_lr_at(cfg, r->opt.t - (skipped ? 0 : 1)),
                              .norm = norm,
                              .skipped = skipped};
        if (!skipped) {
            r->last.loss = loss, r->last.train_acc = rep.train_acc;
            r->last.grad_norm = norm, r->last.lr = rep.lr;
        }
        int64_t done = r->step_done = step + 1;
        int last = done == steps;
        rep.evaluated = last || (cfg->train.eval_every > 0 && done % cfg->train.eval_every == 0);
        rep.logged = last || done % cfg->run.log_every == 0 || done == 1 || skipped;
        if (rep.evaluated) {
            mt_watchdog_phase("evaluation", done, step > r->start_step);
            double t0 = mt_wtime();
            rep.ev = evaluate(r);
            eval_time += mt_wtime() - t0;
            if (last) *final_eval = rep.ev;
            r->last.test_loss = rep.ev.loss, r->last.test_acc = rep.ev.accuracy;
        }
        if (r->comm->rank == 0 && (rep.logged || rep.evaluated)) {
            double now = mt_wtime();
            rep.since_log = now - t_log, rep.since_start = now - t_start;
            mt_run_report_step(r, &rep, e); /* a failure stops all ranks next step */
            t_log = mt_wtime();
            log_from = done;
        }
        int stop = stop_reason(r, &tot, done, last);
        const int64_t every = cfg->checkpoint.every_steps;
        if ((every > 0 && done % every == 0) || tot.ckpt_due > 0 ||
            (last && cfg->checkpoint.save_final) || stop) {
            mt_watchdog_phase("checkpoint", done, 0); /* checkpoint.timeout's */
            if (mt_run_save_checkpoint(r, done, e)) return e->code;
            t_ckpt = mt_wtime();
            if (!stop && !last) stop = agreed_signal(r);
        }
        double took = mt_wtime() - t_step - (r->ckpt_time - ckpt_before);
        if (took > r->step_s_max) r->step_s_max = took;
        if (step - start >= MT_TIMING_SKIP && !rep.evaluated)
            r->steps_s[in_flight] += took, r->steps_n[in_flight]++;
        if (stop) {
            *stopped = stop;
            r->stop_step = end_step = done;
            break;
        }
    }
    double end = mt_wtime(), other = eval_time + (r->ckpt_time - ckpt_time0);
    int64_t ran = end_step - start, timed = ran - MT_TIMING_SKIP;
    *ms_per_step = timed > 0 ? 1e3 * (end - t_timed - other) / (double)timed
                             : 1e3 * (end - t_start - other) / (double)ran;
    double loop_s = (timed > 0 ? end - t_timed : end - t_start) - other;
    r->busy_fraction = loop_s > 0 ? r->st.pipe.busy_s / loop_s : 0.0;
    mt_watchdog_phase("finish", r->step_done, 0); /* rank 0 may still be writing its records */
    return mt_comm_agree(r->comm, e);
}

/* A run ended early (how: see stop_reason): its checkpoint is the result.
 * A signal ends with MT_ERR_STOPPED (75), so a job script can requeue. */
static int finish_stopped(mt_run *r, double ms_per_step, int how, mt_err *e) {
    char why[160];
    const char *reason = how > 0                  ? "preempted"
                         : how == STOP_TIME_LIMIT ? "time_limit"
                                                  : "exit_after_steps";
    if (how == STOP_AFTER_STEPS)
        snprintf(why, sizeof why, "train.exit_after_steps = %lld",
                 (long long)r->cfg.train.exit_after_steps);
    else if (how == STOP_TIME_LIMIT)
        snprintf(why, sizeof why, "train.time_limit = %s", r->time_how);
    else
        snprintf(why, sizeof why, "signal SIG%s", sigabbrev_np(how) ? sigabbrev_np(how) : "?");
    int64_t step = r->stop_step;
    int code = how == STOP_AFTER_STEPS ? 0 : MT_ERR_STOPPED;
    if (r->comm->rank == 0) {
        cJSON *res = cJSON_CreateObject();
        cJSON_AddStringToObject(res, "status", "stopped");
        cJSON_AddStringToObject(res, "reason", reason);
        cJSON_AddStringToObject(res, "by", why);
        cJSON_AddNumberToObject(res, "steps", (double)step);
        cJSON_AddStringToObject(res, "checkpoint", r->ckpt_last);
        cJSON_AddItemToObject(res, "checkpoints", mt_run_ckpt_record(r));
        cJSON_AddNumberToObject(res, "ms_per_step", ms_per_step);
        cJSON_AddNumberToObject(res, "nan_skips", (double)r->nan_skips);
        mt_run_write_record(r, res, e);
        mt_metrics_close(&r->metrics, e);
        if (!e->code) mt_run_register_end(r, "ABORT", NULL, step, NULL, why, reason, code, e);
    }
    if (mt_comm_agree(r->comm, e)) return e->code;
    if (r->comm->rank == 0) {
        printf("time: %.3f ms/step\n", ms_per_step);
        printf("stopped at step %lld of %lld (%s); checkpoint %s\n", (long long)step,
               (long long)r->cfg.train.steps, why, r->ckpt_last);
        printf("continue with: --set checkpoint.resume=auto\n");
        fflush(stdout);
    }
    if (code) {
        mt_err_set(e, code,
                   "stopped by %s at step %lld after writing checkpoint %s (exit status 75: "
                   "requeue the job)",
                   why, (long long)step, r->ckpt_last);
        mt_err_hint(e, "resume with --set checkpoint.resume=auto");
    }
    return e->code;
}

/* The run completed: the model file, run.json's result, the registry's
 * COMPLETE event, the closing lines. */
static int finish_run(mt_run *r, double ms_per_step, const mt_eval *ev, mt_err *e) {
    char model_path[MT_PATH_LEN];
    if (mt_path_fmt(model_path, sizeof model_path, e, "%s/model.h5", r->run_dir) ||
        mt_run_write_model(r, model_path, e))
        return mt_comm_agree(r->comm, e);
    cJSON *pipe = mt_run_pipeline_record(r), *sync = mt_run_gradsync_record(r);
    if (r->comm->rank == 0) {
        cJSON *res = cJSON_CreateObject();
        cJSON_AddItemToObject(res, "checkpoints", mt_run_ckpt_record(r));
        cJSON_AddItemToObject(res, "pipeline", pipe);
        cJSON_AddItemToObject(res, "gradsync", sync);
        cJSON_AddStringToObject(res, "status", "completed");
        cJSON_AddNumberToObject(res, "steps", (double)r->cfg.train.steps);
        cJSON_AddNumberToObject(res, "test_loss", ev->loss);
        cJSON_AddNumberToObject(res, "test_accuracy", ev->accuracy);
        cJSON_AddNumberToObject(res, "ms_per_step", ms_per_step);
        cJSON_AddNumberToObject(res, "nan_skips", (double)r->nan_skips);
        cJSON_AddStringToObject(res, "model", model_path);
        report_syncs(r, res);
        mt_run_write_record(r, res, e);
        mt_metrics_close(&r->metrics, e);
        if (!e->code)
            mt_run_register_end(r, "COMPLETE", model_path, r->cfg.train.steps, ev, NULL, NULL, 0,
                                e);
    }
    if (mt_comm_agree(r->comm, e)) return e->code;
    if (r->comm->rank == 0) mt_run_print_end(r, ms_per_step, ev);
    return MT_OK;
}

void mt_train_catch_signals(void) {
    mt_run_catch_signals();
}

int mt_train(mt_comm *comm, const mt_train_args *args, mt_err *e) {
    mt_run *r = calloc(1, sizeof *r);
    if (!r) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    r->comm = comm;
    r->last = (mt_run_metrics){NAN, NAN, NAN, NAN, NAN, NAN};
    mt_run_catch_signals();
    if (!mt_run_load_config(r, args->config_path, args->overrides, args->n_overrides, e)) {
        mt_watchdog_enable(r->cfg.parallel.timeout); /* same config on every rank */
        char why[128];
        r->threads = mt_threads_choose((int)r->cfg.run.threads, comm->local_size, why, sizeof why);
        mt_threads_apply(r->threads);
        if (!mt_run_setup_device(r, e) && !mt_run_open_data(r, e) && !mt_run_build(r, e) &&
            !mt_run_resume(r, e) && !mt_run_check_ckpt_dir(r, e) && !mt_run_open_folder(r, e)) {
            mt_run_print_header(r);
            double ms = 0.0;
            mt_eval ev = {0};
            int stopped = 0;
            int failed = train_loop(r, &ms, &ev, &stopped, e);
            /* the checkpoint in flight is complete and published before
             * anything else (after a failure too: it is a good checkpoint) */
            mt_err late = {0};
            /* no deadline: rank 0 may still be hashing, then writes the model file */
            mt_watchdog_phase("finish", r->step_done, 0);
            if (mt_run_ckpt_finish(r, 0, failed ? &late : e)) failed = 1;
            if (!failed) {
                if (stopped)
                    finish_stopped(r, ms, stopped, e);
                else
                    finish_run(r, ms, &ev, e);
            }
            if (e->code) mt_run_record_failure(r, e);
        }
    }
    mt_watchdog_enable(0.0);
    mt_run_release(r);
    free(r);
    mt_run_signals_finished(e->code);
    return e->code;
}
