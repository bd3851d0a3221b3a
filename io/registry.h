/*
 * registry.h - the model registry: an append-only JSON Lines file, one
 * self-contained event per line (docs/REGISTRY.md, docs/registry.schema.json).
 *
 * Writers take an exclusive fcntl lock on the whole file, write each record
 * with one write() and fsync it, so many jobs may share one registry. A
 * CHECKPOINT record gets its model version under that lock: one more than the
 * newest version of its model name in the file. A write that fails part way
 * (a full disk), or whose fsync fails (an I/O error), is cut off again, so
 * the file never keeps half a record, or one reported as failed, from
 * mpitrain; a line torn some other way (a crash of the machine) is skipped by
 * readers with a warning naming the line, and the next writer starts a new
 * line after it.
 */
#ifndef MT_REGISTRY_H
#define MT_REGISTRY_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

#include "base/error.h"

#define MT_REGISTRY_SCHEMA "mpitrain-registry/1"
#define MT_REGISTRY_LOCK_S 60.0 /* how long a writer waits for the lock */

/* Appends rec as one line of registry path (created, with its folder, if
 * missing). When rec is a CHECKPOINT event with model.name, model.version is
 * set first (under the lock) and returned in *version (else *version = 0). */
int mt_registry_append(const char *path, cJSON *rec, int64_t *version, mt_err *e);

/* Checks that path can be opened for appending (creating it and its folder
 * if missing), so a run fails before it starts rather than at its first
 * record. */
int mt_registry_writable(const char *path, mt_err *e);

typedef struct {
    cJSON **rec; /* the readable records, in file order */
    int *line;   /* their line numbers (from 1) */
    int n, cap;
    int skipped; /* unreadable lines, each warned about */
} mt_registry;

/* Reads every record of path; each line that is not a record is reported on
 * warn (if not NULL) as "warning: registry PATH line N: ..." and skipped. A
 * missing file is an error. */
int mt_registry_read(const char *path, mt_registry *r, FILE *warn, mt_err *e);
void mt_registry_free(mt_registry *r);

/* A model name (and alias) may hold letters, digits, '_', '-', '.'. */
int mt_registry_valid_name(const char *s);
/* The longest model or alias name mt_registry_valid_name accepts. */
#define MT_REGISTRY_NAME_MAX 128
/* The largest model version: every integer up to it is exact in a JSON
 * number (a double); a record claiming more is not counted. */
#define MT_REGISTRY_VERSION_MAX 9007199254740991.0 /* 2^53 - 1 */

/* Small accessors for records: the string or number at a dotted path
 * ("model.name"), or NULL / fallback when missing or of another type. */
const char *mt_registry_str(const cJSON *rec, const char *path);
double mt_registry_num(const cJSON *rec, const char *path, double fallback);
/* The model version at path ("model.version", "alias.version"): its integer
 * part when it is a number in [1, MT_REGISTRY_VERSION_MAX], else 0 (a
 * larger double does not convert to an integer). */
int64_t mt_registry_version(const cJSON *rec, const char *path);

#endif
