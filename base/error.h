/*
 * error.h - the one error convention of mpitrain (DESIGN decision 6).
 *
 * A fallible function takes an mt_err* and returns its code (MT_OK = 0).
 * The first error wins: later mt_err_set calls on a set error are ignored,
 * so the message names the root cause. Rank 0 prints
 *   mpitrain: error: <message>
 *   mpitrain: hint: <hint>          (only when a hint helps)
 * and every rank exits with the same code after the ranks agree on it
 * (mt_comm_agree in parallel/comm.h).
 */
#ifndef MT_ERROR_H
#define MT_ERROR_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
    MT_OK = 0,
    MT_ERR_INTERNAL = 1, /* a bug or an unexpected library failure */
    MT_ERR_USAGE = 2,    /* command line, config key or value, layout */
    MT_ERR_DATA = 3,     /* dataset missing, malformed or disagreeing with the model */
    MT_ERR_CKPT = 4,     /* checkpoint missing or corrupt */
    MT_ERR_COMM = 5,     /* communication failure or timeout */
    MT_ERR_NUMERIC = 6,  /* NaN or Inf in loss or gradients */
    MT_ERR_REGISTRY = 7, /* registry file unwritable, locked too long, or not a registry */
    MT_ERR_STOPPED = 75, /* stopped by a signal after a checkpoint: requeue */
} mt_code;

#define MT_ERR_MSG_LEN  512
#define MT_ERR_HINT_LEN 256

typedef struct {
    int code;                   /* mt_code; MT_OK when no error */
    char msg[MT_ERR_MSG_LEN];   /* what went wrong, naming file/key/rank */
    char hint[MT_ERR_HINT_LEN]; /* what to do about it, or "" */
} mt_err;

/* Sets the error (unless one is already set) and returns its code. */
int mt_err_set(mt_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Adds a hint to an error that is already set. */
void mt_err_hint(mt_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mt_err_clear(mt_err *e);
/* Prints "mpitrain: error: ..." (and the hint) to stderr. */
void mt_err_print(const mt_err *e);
/* Prints to stderr and exits with code; for failures before MPI is up. */
_Noreturn void mt_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
