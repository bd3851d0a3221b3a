/*
 * time_budget.c - train.time_limit (time_budget.h, core/run.h). Rank 0
 * resolves the limit at start-up (a number of seconds, or the Slurm job's
 * time left through squeue), and after each step's compute says whether
 * one more step, a checkpoint write and train.time_margin still fit; its
 * verdict reaches every rank through the step's reduction.
 *
 * The checkpoint write is the last one's measured duration (the whole
 * save: write, hash, rename); before any, an estimate of the state's size
 * at a slow 50 MB/s plus a second, on the safe side for a shared file
 * system.
 */
#include "time_budget.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/run.h"

int mt_slurm_time_left(const char *text, double *seconds) {
    char buf[64];
    size_t n = strcspn(text, "\r\n");
    while (n && isspace((unsigned char)text[n - 1])) n--;
    while (n && isspace((unsigned char)*text)) text++, n--;
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, text, n);
    buf[n] = '\0';
    if (strcmp(buf, "UNLIMITED") == 0 || strcmp(buf, "NOT_SET") == 0) return 1;
    long days = 0, part[3];
    const char *p = buf;
    char *end;
    const char *dash = strchr(p, '-');
    if (dash) {
        errno = 0;
        days = strtol(p, &end, 10);
        if (errno || end != dash || end == p || days < 0) return -1;
        p = dash + 1;
    }
    int k = 0;
    for (;;) {
        if (!isdigit((unsigned char)*p) || k == 3) return -1;
        errno = 0;
        part[k++] = strtol(p, &end, 10);
        if (errno || part[k - 1] < 0) return -1;
        if (*end == '\0') break;
        if (*end != ':') return -1;
        p = end + 1;
    }
    if (dash && k != 3) return -1; /* days come with hours:minutes:seconds */
    double s = 0.0;
    for (int i = 0; i < k; i++) s = s * 60.0 + (double)part[i];
    *seconds = s + 86400.0 * (double)days;
    return 0;
}

int mt_time_is_up(double left, double step_s, double ckpt_s, double margin) {
    return left < step_s + ckpt_s + margin;
}

/* Rank 0: the Slurm job's time left, through squeue. */
static int slurm_left(double *left, int *unlimited, mt_err *e) {
    const char *job = getenv("SLURM_JOB_ID");
    if (!job || !job[0]) {
        mt_err_set(e, MT_ERR_USAGE,
                   "train.time_limit = auto needs a Slurm job: SLURM_JOB_ID is not set");
        mt_err_hint(e, "give the limit in seconds instead (train.time_limit = 3600)");
        return e->code;
    }
    for (const char *p = job; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '_')
            return mt_err_set(e, MT_ERR_USAGE,
                              "train.time_limit = auto: SLURM_JOB_ID = '%s' is not a job id", job);
    char cmd[128], out[128] = "";
    snprintf(cmd, sizeof cmd, "squeue -h -j %s -o %%L 2>/dev/null", job);
    int rc = -1, got = 0, status = 0;
    for (int attempt = 0; attempt < 3 && rc < 0; attempt++) { /* a busy controller times out */
        if (attempt) sleep(2);
        out[0] = '\0';
        FILE *f = popen(cmd, "r");
        got = f && fgets(out, sizeof out, f) != NULL;
        status = f ? pclose(f) : -1;
        rc = got && status == 0 ? mt_slurm_time_left(out, left) : -1;
    }
    if (rc < 0) { /* the job goes on: Slurm's own warning signal still stops it */
        out[strcspn(out, "\n")] = '\0';
        printf("warning: train.time_limit = auto: '%s' %s%s%s three times; running without a "
               "time limit of its own\n",
               cmd, got ? "printed '" : "failed (status ",
               got ? out : (status < 0 ? "-1" : "nonzero"), got ? "', not a time," : "),");
        *unlimited = 1;
        return MT_OK;
    }
    *unlimited = rc == 1;
    return MT_OK;
}

int mt_run_time_budget(mt_run *r, mt_err *e) {
    const mt_config *cfg = &r->cfg;
    double limit = 0.0;
    int is_auto = mt_config_time_limit(cfg, &limit) == 1, unlimited = 0;
    r->time_left0 = 0.0; /* off */
    if (r->comm->rank == 0 && is_auto && !slurm_left(&limit, &unlimited, e) && !unlimited &&
        limit <= 0)
        mt_err_set(e, MT_ERR_USAGE, "train.time_limit = auto: the Slurm job has no time left");
    if (mt_comm_agree(r->comm, e)) return e->code;
    if (r->comm->rank == 0 && unlimited)
        snprintf(r->time_how, sizeof r->time_how,
                 "none (train.time_limit = auto: no limit read for the Slurm job)");
    if (r->comm->rank != 0 || unlimited || limit <= 0) return MT_OK;
    r->time_left0 = limit;
    r->time_t0 = mt_wtime();
    snprintf(r->time_how, sizeof r->time_how, "%.0f s%s", limit,
             is_auto ? " (auto: the Slurm job's time left)" : "");
    return MT_OK;
}

int mt_run_time_up(mt_run *r, double step_s, int ckpt_due) {
    if (r->time_left0 <= 0.0) return 0;
    double left = r->time_left0 - (mt_wtime() - r->time_t0);
    double ckpt_s = r->ckpt_last_s;
    if (ckpt_s <= 0.0) {
        int tp = (int)r->cfg.parallel.tp, pp = (int)r->cfg.parallel.pp;
        double bytes = 12.0 * (double)r->params.numel * tp * pp; /* weights + two optimizer slots */
        ckpt_s = 1.0 + bytes / 50e6;
    }
    /* a checkpoint this step writes anyway comes before the next step and its
     * own; a job still in flight (checkpoint.async, or the SHA-256) is waited
     * for first, for about what is left of a whole one */
    double reserve = ckpt_due ? 2.0 * ckpt_s : ckpt_s;
    if (r->ckpt_job.pending) {
        double left_of_job = ckpt_s - (mt_wtime() - r->ckpt_job.t0);
        reserve += left_of_job > 0.0 ? left_of_job : 0.0;
    }
    return mt_time_is_up(left, step_s, reserve, r->cfg.train.time_margin);
}
