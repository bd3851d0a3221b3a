/*
 * signals.c - stopping a run on a signal (core/run.h; docs/SIGNALS.md).
 *
 * The first SIGTERM, SIGINT, SIGUSR1 or SIGUSR2 (Slurm's warning of a time
 * limit or preemption, scancel --signal, mpirun forwarding USR1/USR2, a
 * Ctrl-C) asks for a checkpoint at the end of the current step and exit
 * status 75; the step loop learns of it through its per-step reduction, so
 * every rank stops at the same step. A signal that arrives while a
 * checkpoint is written lets that write finish: the handler only records it.
 *
 * A second SIGTERM or SIGINT means "now": the rank writes one line and
 * exits 128 + the signal's number at once. A SIGUSR1/2 does not count:
 * after Slurm's USR1 warning, the time limit's SIGTERM is the first, and a
 * checkpoint under way may use Slurm's KillWait to finish. Once the run has
 * ended (records written, MPI finishing), a second signal exits with the
 * run's status instead. Checkpoints are written to a temporary name and
 * renamed into place, so the newest complete one stays. The handlers are
 * installed before MPI_Init, so an early signal is not fatal.
 */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "core/run.h"

static volatile sig_atomic_t stop_signal;
static volatile sig_atomic_t terms;         /* SIGTERMs and SIGINTs received */
static volatile sig_atomic_t finished = -1; /* the run's exit status once it has ended */

/* Only async-signal-safe calls here: write and _exit. */
static void exit_now(int sig) {
    static const char term[] = "mpitrain: error: second SIGTERM: exiting at once without a "
                               "checkpoint (the newest complete checkpoint stays)\n";
    static const char intr[] = "mpitrain: error: second SIGINT: exiting at once without a "
                               "checkpoint (the newest complete checkpoint stays)\n";
    const char *msg = sig == SIGTERM ? term : intr;
    size_t n = sig == SIGTERM ? sizeof term - 1 : sizeof intr - 1;
    ssize_t w = write(STDERR_FILENO, msg, n);
    (void)w;
    _exit(128 + sig);
}

/* A second signal after the run ended (its checkpoint and records are
 * written; MPI is finishing): the run's own status, not a false alarm. */
static void exit_finished(void) {
    static const char msg[] = "mpitrain: a second stop signal after the run ended: exiting with "
                              "the run's status\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(finished);
}

/* The handlers block each other (sa_mask), so this never nests. */
static void on_stop_signal(int sig) {
    if (!stop_signal) stop_signal = sig;
    if (sig != SIGTERM && sig != SIGINT) return;
    if (terms++ == 0) return;
    if (finished >= 0) exit_finished();
    exit_now(sig);
}

void mt_run_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESTART;
    const int sigs[] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&sa.sa_mask, sigs[i]);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}

void mt_run_signals_finished(int code) {
    finished = code;
}

int mt_run_stop_signal(void) {
    return stop_signal;
}
