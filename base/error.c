/* error.c - the error convention: first error wins, one printed form. */
#include "error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every message is one line (a log reader greps for "mpitrain: error:" at
 * the start of a line): a line break or other control character that a
 * value brought in (a file name, a --set value) is shown as '?'. */
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = '?';
}

int mt_err_set(mt_err *e, int code, const char *fmt, ...) {
    if (e->code != MT_OK) return e->code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    one_line(e->msg);
    e->hint[0] = '\0';
    return code;
}

void mt_err_hint(mt_err *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->hint, sizeof e->hint, fmt, ap);
    va_end(ap);
    one_line(e->hint);
}

void mt_err_clear(mt_err *e) {
    memset(e, 0, sizeof *e);
}

void mt_err_print(const mt_err *e) {
    fprintf(stderr, "mpitrain: error: %s\n", e->msg);
    if (e->hint[0]) fprintf(stderr, "mpitrain: hint: %s\n", e->hint);
    fflush(stderr);
}

void mt_die(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mpitrain: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(code);
}
