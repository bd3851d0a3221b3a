/*
 * trainer.h - `mpitrain train`: configuration, data, model, the training
 * loop, evaluation and the run's files (core/trainer.c reads top to bottom;
 * core/run.h lists the files it is made of). Called on every rank after MPI
 * is up; returns the exit status every rank agreed on.
 */
#ifndef MT_TRAINER_H
#define MT_TRAINER_H

#include "base/error.h"
#include "parallel/comm.h"

typedef struct {
    const char *config_path;
    const char **overrides; /* "section.key=value" from --set */
    int n_overrides;
} mt_train_args;

/* Installs the stop signals' handlers (core/signals.c); called before
 * MPI_Init, so that a signal in the first moments of a job is not fatal. */
void mt_train_catch_signals(void);
int mt_train(mt_comm *comm, const mt_train_args *args, mt_err *e);

#endif
