/*
 * report.c - what a run tells its user (core/run.h): the header (versions,
 * resolved config, layout, each rank's share of the model and memory, data,
 * model, schedule), a progress line and a metrics record per logged step,
 * the pipeline's record, and the closing lines. Rank 0 speaks; the
 * gathers behind it are collective.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fault.h"
#include "core/run.h"
#include "core/version.h"
#include "parallel/threads.h"

/* One rank's row of the memory table: what the split bought. */
typedef struct {
    double rank, stage, tp_rank, dp_rank;
    double layer0, layer1; /* layers [layer0, layer1) */
    double params;         /* parameters held */
    double state_bytes;    /* weights and gradient */
    double optim_bytes;    /* optimizer state (ZeRO-1: the shard's) */
    double sync_bytes;     /* the gradient reductions' buffers (deterministic, ZeRO-1) */
    double act_bytes;      /* activations, scratch and pipeline buffers */
    double tree_bytes;     /* parallel.deterministic: the micro-batch gradients' tree */
} mem_row;

/* Collective: every rank's row, gathered on rank 0 into rows (world). */
static void gather_memory(const mt_run *r, mem_row *rows) {
    const mt_comm *c = r->comm;
    int nstate = r->cfg.optim.kind == MT_OPTIM_ADAMW ? 2 : 1;
    double n = (double)mt_params_count(&r->params);
    /* the shard's elements, without the padding between tensors */
    double shard = n;
    if (r->opt.shard) {
        shard = 0.0;
        for (int i = 0; i < r->params.n; i++) shard += (double)r->opt.shard[i].n;
    }
    mem_row mine = {c->rank,
                    c->pp_rank,
                    c->tp_rank,
                    c->dp_rank,
                    r->st.sp.first[c->pp_rank],
                    r->st.sp.first[c->pp_rank + 1],
                    n,
                    (4.0 * 2 + (r->params.data16 ? 2.0 : 0.0)) * n, /* (+ the bf16 copy) */
                    4.0 * shard * nstate,
                    mt_gradsync_bytes(&r->sync),
                    mt_stage_act_bytes(&r->st),
                    r->st.deterministic ? mt_gradtree_bytes(&r->st.tree) : 0.0};
    mt_coll_gather(c->world, 0, &mine, sizeof mine, rows);
}

/* The table: "gradsync" holds the gradient reductions' buffers (ZeRO-1's
 * receive buffer; parallel.deterministic's tree of micro-batch gradients,
 * core/gradtree.h, and host buffers, parallel/detsum.h). */
static void print_memory(const mt_run *r, const mem_row *rows) {
    int det = r->cfg.parallel.deterministic;
    printf("per rank (one replica; the others match; memory is an estimate of what mpitrain "
           "allocates):\n");
    printf("  %4s %5s %3s %9s %12s %13s %10s %9s %12s %9s\n", "rank", "stage", "tp", "layers",
           "parameters", "weights+grad", "optimizer", "gradsync", "activations", "total");
    printf("  %4s %5s %3s %9s %12s %13s %10s %9s %12s %9s\n", "", "", "", "", "", "MB", "MB",
           det ? "MB (*)" : "MB", "MB", "MB");
    for (int k = 0; k < r->comm->size; k++) {
        const mem_row *x = &rows[k];
        if (x->dp_rank != 0) continue;
        char layers[32];
        snprintf(layers, sizeof layers, "%d-%d", (int)x->layer0, (int)x->layer1 - 1);
        double sync = x->sync_bytes + x->tree_bytes;
        double total = x->state_bytes + x->optim_bytes + sync + x->act_bytes;
        printf("  %4d %5d %3d %9s %12.0f %13.2f %10.2f %9.2f %12.2f %9.2f\n", (int)x->rank,
               (int)x->stage, (int)x->tp_rank, layers, x->params, x->state_bytes / 1e6,
               x->optim_bytes / 1e6, sync / 1e6, x->act_bytes / 1e6, total / 1e6);
    }
    if (det)
        printf("  (*) parallel.deterministic, rank 0: %.2f MB gradient tree (log2(microbatches) "
               "gradients, backend memory) + %.2f MB host buffers of the replicas' sum\n",
               rows[0].tree_bytes / 1e6, rows[0].sync_bytes / 1e6);
}

/* Rank 0: where the run writes, and what it continues from. */
static void print_files(const mt_run *r) {
    const mt_config *cfg = &r->cfg;
    printf("run folder: %s (run id %s)\n", r->run_dir, r->run_id);
    if (r->ckpt_dir[0])
        printf("checkpoints: %s (every %lld steps, every %g s, keep last %lld, keep every %lld, "
               "final %s)\n",
               r->ckpt_dir, (long long)cfg->checkpoint.every_steps, cfg->checkpoint.every_seconds,
               (long long)cfg->checkpoint.keep_last, (long long)cfg->checkpoint.keep_every,
               cfg->checkpoint.save_final ? "yes" : "no");
    if (r->resume_path[0]) {
        printf("resume: from %s (step %lld of run %s, epoch %lld, %lld samples seen, next lr "
               "%.3e)\n",
               r->resume_path, (long long)r->resumed.step, r->resumed.run_id,
               (long long)r->resumed.epoch, (long long)r->resumed.samples_seen,
               mt_lr_at(cfg, r->opt.t)); /* the schedule follows optimizer steps */
        if (strcmp(r->resumed.data_sha256, r->data.sha256) != 0)
            printf("warning: the data file differs from the one the checkpoint was trained on "
                   "(sha256 %.16s... then, %.16s... now)\n",
                   r->resumed.data_sha256, r->data.sha256);
    }
}

/* How the data-parallel sum goes: parallel.deterministic, ZeRO, or
 * buckets (rank 0's stage: another stage's gradient may cut otherwise). */
static const char *sync_path(const mt_run *r) {
    const mt_buckets *k = r->sync.bk;
    return r->cfg.parallel.deterministic ? "deterministic"
           : r->cfg.parallel.zero        ? "zero"
           : k && k->n > 1               ? "buckets"
                                         : "flat";
}

static void print_gradsync(const mt_run *r) {
    const mt_buckets *k = r->sync.bk;
    const char *path = sync_path(r);
    int zero = r->cfg.parallel.zero == 1;
    printf("gradient sum over dp %d: ", r->comm->dp_size);
    if (!strcmp(path, "deterministic"))
        printf("deterministic tree after the backward (parallel.overlap and bucket_mb have no "
               "effect)");
    else if (!strcmp(path, "buckets"))
        printf("%d buckets of ~%g MB, %s", k->n, k->mb,
               k->overlap ? "overlapped with the last micro-batch's backward"
                          : "after the backward (parallel.overlap = false)");
    else if (!strcmp(path, "flat"))
        printf("one flat sum after the backward (one bucket: the gradient fits "
               "parallel.bucket_mb, dp is 1, or device memory goes through the host)");
    else
        printf("a reduce-scatter after the backward (parallel.overlap and bucket_mb have no "
               "effect)");
    if (zero)
        printf(" | ZeRO-1: each rank holds and updates its shard of the optimizer state, the "
               "parameters all-gathered after the update");
    printf("\n");
}

void mt_run_print_header(const mt_run *r) {
    const mt_comm *c = r->comm;
    mem_row *mem = c->rank == 0 ? calloc((size_t)c->size, sizeof *mem) : NULL;
    gather_memory(r, mem);
    if (c->rank != 0) return;
    mt_version_info v;
    mt_version_get(&v);
    const mt_config *cfg = &r->cfg;
    printf("mpitrain %s (%.12s%s) | %s | HDF5 %s\n", v.version, v.commit, v.dirty ? "-dirty" : "",
           v.mpi, v.hdf5);
    printf("resolved config:\n%s\n", r->config_text);
    printf("layout: world %d = dp %d x tp %d x pp %d | %lld micro-batch(es) of %lld per replica, "
           "schedule %s | %d thread(s) per rank | backend %s\n",
           c->size, c->dp_size, c->tp_size, c->pp_size, (long long)cfg->parallel.microbatches,
           (long long)r->mb_rows,
           mt_config_enum_name("parallel", "schedule", cfg->parallel.schedule), r->threads,
           r->be->name);
    print_gradsync(r);
    if (mem) print_memory(r, mem);
    free(mem);
    r->data.ops->describe(&r->data, stdout);
    char line[512]; /* the model's shape: no paths */
    r->st.ops->describe(cfg, r->be, line, sizeof line);
    printf("model: %s | %zu parameters | optimizer %s\n", line, mt_params_global_count(&r->params),
           mt_config_enum_name("optim", "kind", cfg->optim.kind));
    printf("training: %lld steps of %lld %s (%lld per replica), %lld steps per epoch\n",
           (long long)cfg->train.steps, (long long)cfg->train.global_batch, r->data.row_unit,
           (long long)r->data.local_batch, (long long)r->data.steps_per_epoch);
    if (r->time_left0 > 0)
        printf("time limit: %s; the run stops with a checkpoint while one more step, a checkpoint "
               "write and %g s (train.time_margin) still fit\n",
               r->time_how, cfg->train.time_margin);
    else if (r->time_how[0])
        printf("time limit: %s\n", r->time_how);
    if (cfg->train.nan_policy == MT_NAN_SKIP)
        printf("NaN policy: skip steps whose loss or gradient norm is NaN or infinite, at most "
               "%lld in a row\n",
               (long long)cfg->train.nan_max_skips);
    if (mt_fault_spec()[0])
        printf("fault injection (MPITRAIN_FAULT, a test aid): %s\n", mt_fault_spec());
    print_files(r);
    if (!mt_threads_blas_openmp())
        printf("warning: the OpenBLAS loaded is not its OpenMP build; with more than one thread "
               "per rank its threads and mpitrain's compete for the cores\n");
    fflush(stdout);
}

static void fmt_duration(double s, char *buf, size_t n) {
    if (s < 60)
        snprintf(buf, n, "%.0fs", s);
    else if (s < 3600)
        snprintf(buf, n, "%dm%02ds", (int)(s / 60), (int)s % 60);
    else
        snprintf(buf, n, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
}

/* A value for a progress line: NaN, inf, -inf or the number. */
static const char *value_name(double v, char *buf, size_t n) {
    if (isnan(v)) return "NaN";
    snprintf(buf, n, "%.4g", v);
    return buf;
}

void mt_run_report_step(mt_run *r, const mt_step_report *s, mt_err *e) {
    char v1[32], v2[32];
    const mt_batches *d = &r->data;
    int64_t steps = r->cfg.train.steps, B = d->global_batch;
    double labels = (double)(B * d->shape.y_width);
    double rate = (double)(s->done - s->from) * labels / s->since_log; /* labels per second */
    double per_step = s->since_start / (double)s->done;
    char eta[32];
    fmt_duration(per_step * (double)(steps - s->done), eta, sizeof eta);
    int width = (int)snprintf(NULL, 0, "%lld", (long long)steps);
    if (s->skipped)
        printf(
            "step %*lld/%lld | epoch %lld | skipped: loss %s, gradient norm %s (train.nan_policy "
            "= skip: %lld in a row, %lld in all)\n",
            width, (long long)s->done, (long long)steps, (long long)s->epoch,
            value_name(s->loss, v1, sizeof v1), value_name(s->norm, v2, sizeof v2),
            (long long)r->nan_in_row, (long long)r->nan_skips);
    else if (s->logged)
        printf("step %*lld/%lld | epoch %lld | loss %.4f | acc %5.1f%% | lr %.2e | %.0f %s/s | "
               "eta %s\n",
               width, (long long)s->done, (long long)steps, (long long)s->epoch, s->loss,
               100.0 * s->train_acc, s->lr, rate, d->label_unit, eta);
    if (s->evaluated)
        d->ops->print_eval(stdout, s->done, s->ev.loss, s->ev.accuracy, s->ev.correct, s->ev.total);
    fflush(stdout);
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "run_id", r->run_id);
    cJSON_AddNumberToObject(m, "step", (double)s->done);
    cJSON_AddNumberToObject(m, "epoch", (double)s->epoch);
    cJSON_AddNumberToObject(m, "samples", (double)(s->done * B));
    cJSON_AddNumberToObject(m, "loss", s->loss);
    cJSON_AddNumberToObject(m, "train_acc", s->train_acc);
    cJSON_AddNumberToObject(m, "lr", s->lr);
    cJSON_AddNumberToObject(m, "grad_norm", s->norm);
    cJSON_AddNumberToObject(m, "samples_per_s", rate * (double)B / labels);
    if (strcmp(d->label_unit, d->row_unit) != 0) { /* rows of several labels: theirs too */
        char key[64];
        snprintf(key, sizeof key, "%s_per_s", d->label_unit);
        cJSON_AddNumberToObject(m, key, rate);
    }
    cJSON_AddNumberToObject(m, "time_s", s->since_start);
    if (s->skipped) cJSON_AddTrueToObject(m, "skipped");
    if (r->nan_skips) cJSON_AddNumberToObject(m, "nan_skips", (double)r->nan_skips);
    if (s->evaluated) {
        cJSON_AddNumberToObject(m, "test_loss", s->ev.loss);
        cJSON_AddNumberToObject(m, "test_acc", s->ev.accuracy);
    }
    mt_metrics_write(&r->metrics, m, e);
    cJSON_Delete(m);
}

/* One stage's line of the pipeline record: whether this rank speaks for it
 * (replica 0, tensor-parallel rank 0), the most micro-batches of
 * activations it held at once, the fraction of the step spent computing. */
typedef struct {
    double stage, speaks, peak_held, busy;
} pipe_row;

cJSON *mt_run_pipeline_record(const mt_run *r) {
    const mt_comm *c = r->comm;
    pipe_row mine = {c->pp_rank, c->tp_rank == 0 && c->dp_rank == 0, r->st.pipe.peak,
                     r->busy_fraction};
    pipe_row *all = c->rank == 0 ? calloc((size_t)c->size, sizeof mine) : NULL;
    mt_coll_gather(c->world, 0, &mine, sizeof mine, all);
    if (c->rank != 0) return NULL;
    const mt_config *cfg = &r->cfg;
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "schedule",
                            mt_config_enum_name("parallel", "schedule", cfg->parallel.schedule));
    cJSON_AddNumberToObject(p, "microbatches", (double)cfg->parallel.microbatches);
    cJSON *peak = cJSON_AddArrayToObject(p, "peak_held");
    cJSON *busy = cJSON_AddArrayToObject(p, "busy_fraction");
    for (int s = 0; s < c->pp_size; s++)
        for (int k = 0; all && k < c->size; k++) {
            if ((int)all[k].stage != s || all[k].speaks == 0) continue;
            cJSON_AddItemToArray(peak, cJSON_CreateNumber(all[k].peak_held));
            cJSON_AddItemToArray(busy, cJSON_CreateNumber(all[k].busy));
        }
    double m = (double)cfg->parallel.microbatches, pp = c->pp_size;
    cJSON_AddNumberToObject(p, "bubble_theory", (pp - 1) / (m + pp - 1));
    free(all);
    if (c->pp_size > 1) {
        char *ps = cJSON_PrintUnformatted(p);
        printf("pipeline: %s\n", ps);
        free(ps);
    }
    return p;
}

void mt_run_print_end(const mt_run *r, double ms_per_step, const mt_eval *ev) {
    const mt_batches *d = &r->data;
    double labels = (double)(d->global_batch * d->shape.y_width);
    printf("time: %.3f ms/step (%lld steps, first %d excluded), %.0f %s/s\n", ms_per_step,
           (long long)r->cfg.train.steps, MT_TIMING_SKIP, 1e3 * labels / ms_per_step,
           d->label_unit);
    d->ops->print_final(stdout, ev->loss, ev->accuracy, ev->correct, ev->total);
    printf("run files: %s (config.ini, run.json, metrics.jsonl, model.h5%s)\n", r->run_dir,
           r->ckpt_dir[0] && strncmp(r->ckpt_dir, r->run_dir, strlen(r->run_dir)) == 0
               ? ", checkpoints/"
               : "");
    if (r->ckpt_last[0]) printf("last checkpoint: %s\n", r->ckpt_last);
    fflush(stdout);
}

/* Collective: the mean over the timed steps of the step's exposed tail on
 * its critical path, the latest end of a reduction minus the latest begin
 * over all ranks (ms); NAN unless every rank is on one node (where
 * CLOCK_MONOTONIC is one clock) and there were timed steps. */
static double critical_tail_ms(const mt_run *r) {
    const mt_comm *c = r->comm;
    const double *at;
    int n = mt_gradsync_spans(&r->sync, &at), most = n;
    mt_coll_min_ints(c->world, &n, 1);
    mt_coll_max_ints(c->world, &most, 1);
    if (n != most || n == 0 || c->local_size != c->size) return NAN;
    double *t = malloc(2 * (size_t)n * sizeof *t);
    int ok = t != NULL;
    mt_coll_min_ints(c->world, &ok, 1);
    if (!ok) {
        free(t);
        return NAN;
    }
    /* MPI_Wtime need not be one clock across processes: Open MPI 4.1 counts
     * from each process's first call. CLOCK_MONOTONIC is one per node. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double shift = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec - mt_wtime();
    for (int i = 0; i < 2 * n; i++) t[i] = at[i] + shift;
    mt_coll_max_doubles(c->world, t, 2 * n);
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += t[2 * i + 1] - t[2 * i];
    free(t);
    return 1e3 * sum / n;
}

cJSON *mt_run_gradsync_record(const mt_run *r) {
    const mt_comm *c = r->comm;
    double critical = critical_tail_ms(r);
    const mt_buckets *k = r->sync.bk;
    double mine[4] = {0.0, 0.0, k ? k->n : 0, 0.0}; /* tail ms, sync ms, buckets, gather ms */
    if (k)
        mt_buckets_means(k, &mine[0], &mine[1]);
    else
        mt_gradsync_means(&r->sync, &mine[0], &mine[3]), mine[1] = mine[0];
    double *all = c->rank == 0 ? calloc((size_t)c->size, sizeof mine) : NULL;
    mt_coll_gather(c->world, 0, mine, sizeof mine, all);
    if (c->rank != 0) return NULL;
    cJSON *g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "path", sync_path(r));
    cJSON_AddNumberToObject(g, "bucket_mb", r->cfg.parallel.bucket_mb);
    cJSON_AddBoolToObject(g, "overlap", k && k->overlap && k->n > 1);
    if (all) {
        double tail = 0.0, tail_max = 0.0, sync = 0.0, most = 0.0, gather = 0.0;
        for (int i = 0; i < c->size; i++) {
            const double *a = all + 4 * i;
            tail += a[0] / c->size, sync += a[1] / c->size, gather += a[3] / c->size;
            tail_max = a[0] > tail_max ? a[0] : tail_max;
            most = a[2] > most ? a[2] : most;
        }
        if (k) cJSON_AddNumberToObject(g, "buckets", most); /* the most on any stage */
        cJSON_AddNumberToObject(g, "exposed_tail_ms", tail);
        cJSON_AddNumberToObject(g, "exposed_tail_ms_max", tail_max);
        cJSON_AddNumberToObject(g, "sync_ms", sync);
        if (!isnan(critical)) cJSON_AddNumberToObject(g, "exposed_tail_critical_ms", critical);
        if (r->cfg.parallel.zero == 1) cJSON_AddNumberToObject(g, "gather_ms", gather);
    }
    free(all);
    return g;
}
