/*
 * time_budget.h - train.time_limit: when a run must stop so that its last
 * checkpoint is written before the job's wall-time limit (docs/TRAINING.md,
 * "Wall-time budget"). The run's side is in core/run.h.
 */
#ifndef MT_TIME_BUDGET_H
#define MT_TIME_BUDGET_H

/* Slurm's time left as squeue's %L prints it: [days-]hours:minutes:seconds,
 * minutes:seconds, or seconds. 0 and *seconds set; 1 for UNLIMITED (or
 * NOT_SET); -1 for anything else. */
int mt_slurm_time_left(const char *text, double *seconds);

/* Whether a run that has `left` seconds should stop now: one more step
 * (step_s), a checkpoint write (ckpt_s) and the margin no longer fit. */
int mt_time_is_up(double left, double step_s, double ckpt_s, double margin);

#endif
