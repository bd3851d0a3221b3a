/*
 * run.h - one training run (`mpitrain train`), shared by the files that
 * make it up; private to them (the public entry is trainer.h):
 *
 *   trainer.c       mt_train: set-up, the step loop, evaluation, finishing
 *   run_setup.c     the configuration every rank agrees on; model, optimizer, data
 *   device_setup.c  the backend and GPU of each rank; host copies of the state
 *   ckpt_policy.c   when checkpoints are written, writing one, resuming
 *   run_record.c    the run folder, run.json (one writer), the registry events
 *   report.c        what rank 0 prints and the metrics record of a step
 *   signals.c       SIGTERM / SIGINT / SIGUSR1 / SIGUSR2: checkpoint and stop
 *   time_budget.c   train.time_limit: stop while a checkpoint still fits
 *
 * Every function taking an mt_run is collective over the world unless its
 * comment says "rank 0".
 */
#ifndef MT_RUN_H
#define MT_RUN_H

#include <stdint.h>

#include "base/error.h"
#include "core/batches.h"
#include "core/config.h"
#include "core/optim.h"
#include "core/params.h"
#include "core/stage.h"
#include "io/checkpoint.h"
#include "io/files.h"
#include "io/metrics.h"
#include "kernels/backend.h"
#include "parallel/comm.h"
#include "parallel/gradsync.h"

#define MT_TIMING_SKIP 5 /* first steps excluded from ms/step (warm-up) */

/* The newest metrics of the run; NaN until measured. */
typedef struct {
    double loss, train_acc, grad_norm, lr, test_loss, test_acc;
} mt_run_metrics;

/* An evaluation over the evaluation split. */
typedef struct {
    double loss, accuracy;  /* per label */
    int64_t correct, total; /* labels hit, labels */
} mt_eval;

typedef struct {
    mt_comm *comm;
    mt_config cfg;
    char *config_text; /* the resolved INI, as every record stores it */
    int threads;       /* compute threads per rank */
    /* the device (device_setup.c) */
    const mt_backend *be;
    char gpu[256]; /* the GPU this rank uses; "" on the CPU */
    /* data, model, optimizer (run_setup.c) */
    mt_batches data;
    mt_params params; /* the flat parameters and gradient, in the backend's memory */
    mt_stage st;      /* the model stage this rank runs, and its pipeline */
    mt_optim opt;
    mt_gradsync sync;    /* the gradient's reductions */
    mt_step_stats stats; /* what a step reads back from the device, in one copy */
    mt_zero_piece
        *zero_pieces; /* parallel.zero = 1: every dp rank's shard (mt_state_zero_pieces) */
    int64_t mb_rows;  /* rows per micro-batch */
    /* host copies of the parameters and optimizer state for init, checkpoints
     * and resume: the real ones when the backend's memory is host memory */
    mt_params *hp, hp_store;
    mt_optim *hopt, hopt_store;
    /* progress */
    int64_t start_step;      /* 0, or the step of the checkpoint resumed */
    int64_t step_done;       /* steps completed so far */
    int64_t stop_step;       /* where an early stop ended the run */
    double busy_fraction;    /* of the timed loop spent computing (the rest: pipeline bubble) */
    long host_syncs[4];      /* cpu-staged: what would make the host wait for a GPU, by kind */
    int64_t host_sync_steps; /* (kernels/backends.h's MT_SYNC_*), over this many steps */
    int64_t nan_skips;       /* steps skipped by train.nan_policy = skip, in this invocation */
    int64_t nan_in_row;      /* of them, the latest consecutive ones */
    /* train.time_limit (time_budget.c; rank 0) */
    double time_left0; /* seconds the run had at time_t0; 0 = no limit */
    double time_t0;    /* mt_wtime() when the limit was read */
    char time_how[96]; /* the limit, for the header and the stop message; "" = none */
    double step_s_max; /* longest step so far, without its checkpoint */
    mt_run_metrics last;
    /* checkpoints (ckpt_policy.c) */
    char resume_path[MT_CKPT_PATH];    /* "" for a fresh start */
    mt_ckpt_meta resumed;              /* what that checkpoint recorded */
    char resume_sha[72];               /* that file's SHA-256 */
    char ckpt_dir[MT_CKPT_PATH];       /* "" when this run writes none */
    char ckpt_last[MT_CKPT_PATH + 64]; /* newest checkpoint this run wrote */
    char ckpt_last_sha[72];            /* its SHA-256 and size, for the registry */
    int64_t ckpt_last_bytes;
    double ckpt_time;   /* seconds the training stood still for checkpoints */
    double ckpt_last_s; /* seconds the newest checkpoint took (write, hash, rename) */
    /* the checkpoint job in the background (checkpoint.async's write, or the
     * SHA-256 after a synchronous one): published once every rank's part
     * is done; pending on every rank alike */
    mt_ckpt_bg *ckpt_bg; /* NULL until the first checkpoint */
    struct {
        int pending;
        int64_t step;
        char name[64], path[MT_CKPT_PATH + 64];
        double write_s;         /* a synchronous write's (rank 0) */
        double stall_s;         /* the training's stop for it (copy, or write) */
        double t0;              /* mt_wtime() when it began */
        mt_run_metrics metrics; /* the run's metrics at its step (the registry's) */
    } ckpt_job;
    /* what the checkpoints cost the training (run.json's result.checkpoints) */
    int64_t ckpt_count, ckpt_waits; /* written; of them, waited for a job in flight */
    double ckpt_stall_sum, ckpt_stall_max, ckpt_wait_s, ckpt_stage_mb;
    double steps_s[2]; /* timed steps' seconds: [0] no job in flight, [1] one in flight */
    int64_t steps_n[2];
    /* the run's files and records (run_record.c; rank 0) */
    char run_dir[MT_PATH_LEN], run_id[37];
    mt_metrics metrics;
    char registry[MT_CFG_STR_LEN + 32]; /* "" when registry.enabled is false */
    char hosts[4096];                   /* distinct host names of the ranks */
    int registered;                     /* START is in the registry */
    mt_err retire_err;                  /* a DELETE record that could not be written */
} mt_run;

/* run_setup.c */
int mt_run_load_config(mt_run *r, const char *path, const char **overrides, int n, mt_err *e);
int mt_run_open_data(mt_run *r, mt_err *e);
int mt_run_build(mt_run *r, mt_err *e);
/* The fused ops this run calls (train.fused; the model's list and, with
 * AdamW, adamw_multi, those the backend has), space-separated, or "off"
 * (train.fused = false) or "none"; in lacks, the model's and optimizer's
 * ones the backend does not have ("" when none). */
void mt_run_fused_ops(const mt_run *r, char *ran, char *lacks, size_t n);
void mt_run_release(mt_run *r);

/* device_setup.c */
int mt_run_setup_device(mt_run *r, mt_err *e);
int mt_run_host_views(mt_run *r, mt_err *e);
/* Parameters and optimizer state: device -> host copies (before a
 * checkpoint or the model file), host copies -> device (after init or a
 * resume). Nothing to do when they are the same memory. */
void mt_run_state_to_host(mt_run *r);
void mt_run_state_to_device(mt_run *r);

/* ckpt_policy.c */
int mt_run_writes_checkpoints(const mt_config *cfg);
int mt_run_resume(mt_run *r, mt_err *e);
int mt_run_check_ckpt_dir(mt_run *r, mt_err *e);
/* Writes the checkpoint of step (checkpoint.async: starts its write in the
 * background), first waiting for the job in flight, if any. */
int mt_run_save_checkpoint(mt_run *r, int64_t step, mt_err *e);
/* 1 while this rank's part of the checkpoint job in flight runs (not collective). */
int mt_run_ckpt_busy(const mt_run *r);
/* Waits for the checkpoint job in flight (every rank's part), then rank 0
 * points `latest` at it, registers it and applies retention. Nothing to do
 * when none is pending. waiting_for: the step whose checkpoint waits for it
 * (logged), or 0. */
int mt_run_ckpt_finish(mt_run *r, int64_t waiting_for, mt_err *e);
/* Rank 0: run.json's result.checkpoints (what checkpoints cost the training). */
cJSON *mt_run_ckpt_record(const mt_run *r);
/* The trained model at path (io/modelfile.h). */
int mt_run_write_model(mt_run *r, const char *path, mt_err *e);

/* run_record.c */
int mt_run_open_folder(mt_run *r, mt_err *e);
/* Rank 0: run.json with result (taken over; NULL: none yet). */
int mt_run_write_record(mt_run *r, cJSON *result, mt_err *e);
/* Rank 0: a registry event of type (CHECKPOINT: the checkpoint written at
 * step, with metrics m, from the background job's thread; COMPLETE: the
 * model file model_path; ABORT; FAIL). */
int mt_run_register_checkpoint(mt_run *r, const char *path, const char *sha, int64_t bytes,
                               int64_t step, const mt_run_metrics *m, mt_err *e);
int mt_run_register_end(mt_run *r, const char *type, const char *model_path, int64_t step,
                        const mt_eval *ev, const char *why, const char *reason, int code,
                        mt_err *e);
/* After the run folder exists, a failure is recorded in run.json and the registry. */
void mt_run_record_failure(mt_run *r, const mt_err *e);
/* Retention deleting a checkpoint (io/checkpoint.h's mt_ckpt_removed_fn). */
void mt_run_on_ckpt_removed(const char *path, const char *sha256, void *ctx);

/* report.c */
void mt_run_print_header(const mt_run *r);
/* Rank 0: the progress line and the metrics record of step `done`. */
typedef struct {
    int64_t done, epoch, from; /* step done; its epoch; first step of this log interval */
    double loss, train_acc, lr, norm;
    double seconds, since_log, since_start; /* since the log interval began; since the start */
    int logged, evaluated;
    int skipped; /* train.nan_policy = skip dropped the step */
    mt_eval ev;
} mt_step_report;
void mt_run_report_step(mt_run *r, const mt_step_report *s, mt_err *e);
/* The pipeline's record (collective; JSON on rank 0, NULL elsewhere). */
cJSON *mt_run_pipeline_record(const mt_run *r);
/* The gradient sum's record: its path, buckets, and the means over the
 * ranks of the exposed tail and the reduction phase (collective; JSON on
 * rank 0, NULL elsewhere). */
cJSON *mt_run_gradsync_record(const mt_run *r);
void mt_run_print_end(const mt_run *r, double ms_per_step, const mt_eval *ev);

/* time_budget.c */
/* Reads train.time_limit (auto: the Slurm job's time left, on rank 0). */
int mt_run_time_budget(mt_run *r, mt_err *e);
/* Rank 0: 1 when the run should stop after this step (one more step of
 * step_s seconds, a checkpoint — two when this step writes one too,
 * ckpt_due — and train.time_margin no longer fit). */
int mt_run_time_up(mt_run *r, double step_s, int ckpt_due);

/* signals.c */
void mt_run_catch_signals(void);
/* The run has ended with status code: a second signal exits with it. */
void mt_run_signals_finished(int code);
/* The first stop signal received (SIGTERM, SIGINT, SIGUSR1, SIGUSR2), or 0. */
int mt_run_stop_signal(void);

#endif
