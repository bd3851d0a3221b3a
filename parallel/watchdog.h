/*
 * watchdog.h - a deadline on the training loop's communication, and the
 * side channel that names the rank behind (docs/PARALLEL.md, "Watchdog").
 *
 * Every wait of parallel/ (collectives.c, xcomm.c, nccl.c) is a
 * non-blocking call completed by mt_watchdog_wait. With parallel.timeout
 * set, that wait polls; while it polls it answers queries on a world
 * communicator of its own (what it waits for, over which group, at which
 * step, since when). A rank whose wait passes the deadline asks every rank:
 * those that do not answer within the reply window are not in any
 * communication (stalled in computation or I/O, or hung): they are the
 * ranks behind, named in one error line before the job ends with exit 5.
 * Waits outside an armed phase (set-up, checkpoint writes, the end) answer
 * queries but have no deadline.
 */
#ifndef MT_WATCHDOG_H
#define MT_WATCHDOG_H

#include <mpi.h>
#include <stdint.h>

#include "kernels/backend.h"

/* The exit status of a communication timeout (MT_ERR_COMM). */
#define MT_WATCHDOG_EXIT 5

/* Collective over world: the side channel (a duplicate of world). */
void mt_watchdog_init(MPI_Comm world);
/* Collective: frees the side channel (before MPI_Finalize). */
void mt_watchdog_free(void);
/* The calling thread's waits are plain blocking waits from now on, with no
 * deadline and no part in the side channel (they test and sleep 0.1 ms
 * rather than spin, to leave the cores to training), and mt_watchdog_enabled is 0
 * in it: for a thread other than the training's (the background checkpoint
 * writer, io/checkpoint.h), which the watchdog's state is not shared with. */
void mt_watchdog_unwatched_thread(void);
/* parallel.timeout: seconds an armed wait may take; 0 = off (plain waits,
 * no side channel). The same on every rank. */
void mt_watchdog_enable(double timeout_s);
/* 1 when parallel.timeout is set (waits poll and answer queries). */
int mt_watchdog_enabled(void);
/* What this rank does now (for the error line): phase ("step",
 * "evaluation", "checkpoint", ...), the step (1-based), and whether waits
 * from now on have the deadline. */
void mt_watchdog_phase(const char *phase, int64_t step, int armed);
/* Completes the n requests. op names the operation ("allreduce"), comm its
 * communicator (named by MPI_Comm_set_name: dp, tp, pp, ...), peer the rank
 * in comm of a point-to-point's partner (-1 for a collective). */
void mt_watchdog_wait(MPI_Request *r, int n, const char *op, MPI_Comm comm, int peer);
/* The same for work MPI does not see (an NCCL stream): done(arg) returns 1
 * when it completed. */
void mt_watchdog_wait_for(int (*done)(void *), void *arg, const char *op, MPI_Comm comm, int peer);
/* Waits until the work queued on device backend be has finished (its
 * kernels and the NCCL calls among them, which are queued, not waited for,
 * parallel/nccl.c): polling be->queue_done under the deadline when the
 * watchdog is on, naming op and comm as mt_watchdog_wait_for does; off,
 * be->synchronize() when fence is set, else nothing (the caller's next copy
 * to the host waits anyway). Nothing for a host-memory backend. */
void mt_watchdog_wait_device(const mt_backend *be, const char *op, MPI_Comm comm, int fence);
/* Called once before the job is aborted (NCCL: ncclCommAbort of its
 * communicators, so no kernel waits for ever on a GPU). */
void mt_watchdog_on_abort(void (*fn)(void));

#endif
