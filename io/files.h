/*
 * files.h - the file helpers every reader and writer in io/ shares: whole
 * regular files read into memory, and the one way mpitrain makes a file
 * durable and atomic (write a temporary name in the same folder, fsync it,
 * rename it over the final name, fsync the folder), so a crash at any
 * moment leaves either the old file or the complete new one.
 */
#ifndef MT_FILES_H
#define MT_FILES_H

#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "base/error.h"

/* Room for any path the system accepts (PATH_MAX - 1 characters and the NUL). */
#define MT_PATH_LEN PATH_MAX

/* Formats a path into out (n bytes). A path that does not fit is an
 * MT_ERR_USAGE error naming its start, never a silently shortened path. */
int mt_path_fmt(char *out, size_t n, mt_err *e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same with the error code to report (MT_ERR_CKPT for a checkpoint's). */
int mt_path_vfmt(char *out, size_t n, int code, mt_err *e, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

/* The temporary name a writer of path uses: "<path>.tmp.<pid>". */
void mt_file_tmp_name(const char *path, char *tmp, size_t n);
/* Makes the finished temporary file tmp durable and renames it to path.
 * On failure tmp is removed. Errors are MT_ERR_USAGE (the output is bad). */
int mt_file_commit(const char *tmp, const char *path, mt_err *e);
/* Writes len bytes of text to path atomically (temporary name + commit). */
int mt_file_write_atomic(const char *path, const char *text, size_t len, mt_err *e);
/* Reads the regular file path whole into *buf (NUL-terminated, malloc'd;
 * *len excludes the NUL). what names the file in errors ("config file");
 * code is the error code to report (MT_ERR_USAGE, MT_ERR_DATA, ...). */
int mt_file_read(const char *path, const char *what, int code, char **buf, size_t *len, mt_err *e);
/* The folder part of path ("." when it has none), into out. */
void mt_file_dir(const char *path, char *out, size_t n);
/* Makes dir and its parents (mkdir -p). */
int mt_mkdirs(const char *dir, mt_err *e);
/* Writes the n floats of x (n zeros when x is NULL) to f as little-endian
 * float32, whatever the host's order (exported weight files). 0, or -1 when
 * a write fails. */
int mt_file_put_f32le(FILE *f, const float *x, size_t n);
/* Closes f, which was being written to the temporary file tmp (from
 * mt_file_tmp_name); bad: a write failed before (errno still says why). On
 * any failure tmp is removed and e gets one error (MT_ERR_USAGE) naming the
 * file tmp stood for. */
int mt_file_close_tmp(FILE *f, const char *tmp, int bad, mt_err *e);
/* Whether path may be written by renaming a finished file over it: absent,
 * or a regular file (not a folder, symbolic link, FIFO, device or socket),
 * and no control character in its name (what names it in the error:
 * "--out", "OUT"). */
int mt_file_check_out(const char *path, const char *what, mt_err *e);

#endif
