/*
 * signals.c - stopping a run on a signal (core/run.h). The first SIGTERM,
 * SIGUSR1 or SIGUSR2 (Slurm's warning of a time limit or preemption,
 * scancel --signal, or mpirun forwarding USR1/USR2) asks for a checkpoint
 * at the end of the current step and exit status 75; the step loop learns
 * of it through its per-step reduction, so every rank stops at the same step.
 */
#include <signal.h>
#include <string.h>

#include "core/run.h"

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    if (!stop_signal) stop_signal = sig;
}

void mt_run_catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
}

int mt_run_stop_signal(void) {
    return stop_signal;
}
