/*
 * fault.h - injected faults, a test aid (docs/TRAINING.md, "Fault
 * injection"). The environment variable MPITRAIN_FAULT, read once at
 * start-up, lists faults separated by commas:
 *
 *   kill:rank=R:step=S[:during=checkpoint]
 *                                    rank R sends itself SIGKILL as it begins step S, or in
 *                                    the middle of writing the checkpoint of step S
 *   stall:rank=R:step=S[:seconds=N][:during=checkpoint]
 *                                    rank R sleeps N seconds (e.g. 1.5; default: until killed)
 *                                    as it begins step S, or in the middle of writing the
 *                                    checkpoint of step S (as signal's during)
 *   nan:step=S[:rank=R]              step S's loss and gradient are NaN (on rank R; default all)
 *   signal:rank=R:step=S:sig=NAME[:during=checkpoint]
 *                                    rank R raises SIGNAME (USR1, USR2, TERM, INT) on itself
 *                                    as it begins step S, or in the middle of writing the
 *                                    checkpoint of step S (tensors written, not yet renamed)
 *
 * during= also takes, for kill, stall and signal (docs/FAULTS.md):
 *   checkpoint_data  inside the collective write of the checkpoint of step S,
 *                    after its first tensor (the other ranks wait in it)
 *   backward         in step S's backward, as each layer's gradient becomes
 *                    final (the buckets already full may be summing)
 *   gradsync         inside step S's data-parallel gradient sum, once its
 *                    first bucket is summed (the others in flight; with one
 *                    bucket, as this rank joins the sum)
 * (backward and gradsync are the bucketed sum's points: with
 * parallel.deterministic or parallel.zero they never fire)
 *
 * "In the middle of writing" is after the tensors are written, before the
 * file is renamed into place; for an asynchronous checkpoint
 * (checkpoint.async) that is in the background writer thread, while
 * training goes on. Signals go to the process (its main thread takes them).
 * S counts steps from 1, as the progress lines do; R is the world rank.
 * Production runs never set it. Lives in base/ so that any layer can hold
 * a fault point.
 */
#ifndef MT_FAULT_H
#define MT_FAULT_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef enum {
    MT_FAULT_STEP_BEGIN, /* a training step begins */
    MT_FAULT_CKPT_WRITE, /* a checkpoint's tensors are written; it is not yet in place */
    MT_FAULT_CKPT_DATA, /* inside the collective write of a checkpoint's tensors, after the first */
    MT_FAULT_BACKWARD,  /* in the backward: a layer's gradient is final (each layer) */
    MT_FAULT_GRADSYNC,  /* inside the gradient's data-parallel sum: after its first bucket */
} mt_fault_point;

/* Parses spec (NULL or "": no faults) for this world rank. MT_ERR_USAGE
 * naming the bad part otherwise. */
int mt_fault_init(const char *spec, int rank, mt_err *e);
/* The faults set, as one line of text ("" when none); for the run's header. */
const char *mt_fault_spec(void);
/* Fires the kill, stall and signal faults of this rank at point where of
 * step S (1-based). */
void mt_fault_at(mt_fault_point where, int64_t step);
/* 1 when step S's loss and gradient are to be NaN on this rank. */
int mt_fault_nan(int64_t step);

#endif
