/*
 * rundir.h - the run's folder and its id.
 *
 * Every run gets a new folder <run.dir>/<run.name>/<NNNN> (0001, 0002, ...),
 * claimed with mkdir(2), which is atomic, so concurrent jobs sharing a run
 * name never share a folder and nothing an earlier run wrote is touched.
 */
#ifndef MT_RUNDIR_H
#define MT_RUNDIR_H

#include <stddef.h>

#include "base/error.h"

/* Creates the parents and claims the next free numbered folder; out gets its path. */
int mt_rundir_create(const char *dir, const char *name, char *out, size_t out_len, mt_err *e);
/* A random UUID (version 4) as 36 characters and a NUL. */
void mt_uuid4(char out[37]);

#endif
