/*
 * fuzz_util.h - what the libFuzzer targets of tests/fuzz share: reading a
 * fuzzer input as a stream of small decisions (the structure-aware targets
 * decode their input this way: every byte string is some valid description,
 * and a short input ends in defaults), scratch files on tmpfs, and the check
 * that an error a target got is one of mpitrain's.
 */
#ifndef MT_FUZZ_UTIL_H
#define MT_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct {
    const uint8_t *p;
    size_t n;
} fz_in;

/* The next byte, 2 or 8 bytes (little-endian); 0 once the input is used up. */
uint8_t fz_u8(fz_in *in);
uint16_t fz_u16(fz_in *in);
uint64_t fz_u64(fz_in *in);
/* A choice in [0, n): one byte mod n. */
unsigned fz_pick(fz_in *in, unsigned n);
/* A string of at most max - 1 bytes into buf (NUL-terminated): a length
 * byte, then that many bytes, NULs cut off. Returns its length. */
size_t fz_str(fz_in *in, char *buf, size_t max);

/* An input read as edits of numbered slots (the parts of a file a target
 * writes): each edit is a slot byte (mod nslots), a length byte and that
 * many bytes, the slot's own decisions; a later edit of a slot replaces an
 * earlier one. A slot no edit names reads as empty: all defaults. So a
 * short input changes any one part of a file, however late it is written. */
#define FZ_MAX_SLOTS 64
typedef struct {
    fz_in slot[FZ_MAX_SLOTS];
} fz_edits;
void fz_edits_parse(fz_edits *ed, const uint8_t *data, size_t size, unsigned nslots);

/* A per-process scratch path "/dev/shm/mpitrain-fuzz-PID-TAG" (TMPDIR or
 * /tmp when /dev/shm is missing): the same path on every call with that tag. */
const char *fz_tmp(const char *tag);
/* Writes n bytes to path (truncating); aborts if it cannot: the target is
 * then broken, not the code under test. */
void fz_write_file(const char *path, const void *data, size_t n);

/* With MT_FUZZ_PRINT set in the environment, prints what the code under
 * test said ("WHAT: ok" or its error): to see what an input reaches. */
void fz_report(const char *what, const mt_err *e);

/* Aborts unless e holds a code that mpitrain reports (1..7) and a message:
 * an error without a message, or an unknown code, is a bug. */
void fz_check_err(const mt_err *e, const char *what);

#endif
