/*
 * iofault.c - an LD_PRELOAD shim that makes chosen file writes fail, for the
 * fault-injection tests (docs/FAULTS.md). Built as a module library
 * (libiofault.so) and loaded into mpirun and every rank with
 *   LD_PRELOAD=.../libiofault.so MT_IOFAULT=RULE[,RULE...] mpirun ...
 * A rule is
 *   ERR:op=OPS:path=SUBSTR[:after=BYTES][:skip=N][:rank=R]
 * ERR    enospc | eio | erofs | edquot: the errno the failing call sets;
 *        hang: the call never returns (a file system that stalls: signal
 *        handlers still run, the call goes on waiting)
 * OPS    write (write, writev, pwrite, pwrite64, pwritev, pwritev2 and their
 *        64 variants: HDF5's sec2 driver uses pwrite64, Open MPI's OMPIO
 *        pwrite64 and pwritev, the registry write), fsync (fsync,
 *        fdatasync), open (an open for writing), stat (access, unlink: what
 *        the checkpoint watchdog asks of the folder); several joined by '+'
 * path   the call's file (its /proc/self/fd link, or open's argument)
 *        contains SUBSTR
 * after  the first BYTES bytes of matching writes of this process succeed;
 *        the write that crosses the limit is cut short there (what a full
 *        disk does), the ones after it fail
 * skip   the first N matching calls of this process succeed
 * rank   only in the process whose OMPI_COMM_WORLD_RANK (or PMIX_RANK) is R
 * Each process notes the first failure of each rule it injects on one line
 *   iofault: pid P rank R: ENOSPC from pwrite64 on PATH
 * appended to the file MT_IOFAULT_LOG (when set), so a test can show the
 * fault fired; stdout and stderr stay the program's own. Without
 * MT_IOFAULT the shim only passes calls through.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_RULES 8

enum { OP_WRITE = 1, OP_FSYNC = 2, OP_OPEN = 4, OP_STAT = 8 };
#define ERR_HANG (-1) /* rule.err of a hang */

typedef struct {
    int err;          /* errno to set */
    const char *name; /* its name, for the log */
    int ops;          /* OP_* */
    char path[512];   /* substring of the file's path */
    int64_t after;    /* bytes that pass (-1: no limit) */
    int64_t skip;     /* calls that pass */
    int rank;         /* -1: any process */
    int64_t bytes;    /* matching bytes written so far */
    int64_t calls;    /* matching calls so far */
    int logged;       /* the first failure was noted */
} rule;

static rule rules[MAX_RULES];
static int n_rules = -1; /* -1: not parsed yet */
static int my_rank = -1;

static const struct {
    const char *name;
    int err;
} errs[] = {
    {"enospc", ENOSPC}, {"eio", EIO}, {"erofs", EROFS}, {"edquot", EDQUOT}, {"hang", ERR_HANG}};

/* A malformed MT_IOFAULT is a test's bug: say so and stop at once. */
static void die(const char *what, const char *text) {
    fprintf(stderr, "iofault: bad MT_IOFAULT %s: '%s'\n", what, text);
    _exit(2);
}

static void parse_rule(char *text, rule *r) {
    char *rest = text, *tok = strsep(&rest, ":");
    memset(r, 0, sizeof *r);
    r->after = -1, r->rank = -1;
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++)
        if (strcmp(tok, errs[i].name) == 0) r->err = errs[i].err, r->name = errs[i].name;
    if (!r->err) die("error (enospc, eio, erofs, edquot, hang)", tok);
    while ((tok = strsep(&rest, ":"))) {
        char *val = strchr(tok, '=');
        if (!val) die("field", tok);
        *val++ = '\0';
        if (strcmp(tok, "op") == 0) {
            for (char *o = strtok(val, "+"); o; o = strtok(NULL, "+"))
                r->ops |= strcmp(o, "write") == 0   ? OP_WRITE
                          : strcmp(o, "fsync") == 0 ? OP_FSYNC
                          : strcmp(o, "open") == 0  ? OP_OPEN
                          : strcmp(o, "stat") == 0  ? OP_STAT
                                                    : (die("op (write, fsync, open, stat)", o), 0);
        } else if (strcmp(tok, "path") == 0 && strlen(val) < sizeof r->path) {
            strcpy(r->path, val);
        } else if (strcmp(tok, "after") == 0) {
            r->after = atoll(val);
        } else if (strcmp(tok, "skip") == 0) {
            r->skip = atoll(val);
        } else if (strcmp(tok, "rank") == 0) {
            r->rank = atoi(val);
        } else {
            die("field", tok);
        }
    }
    if (!r->ops || !r->path[0]) die("rule (needs op= and path=)", text);
}

static void parse(void) {
    if (__atomic_load_n(&n_rules, __ATOMIC_ACQUIRE) >= 0) return;
    static char buf[4096];
    const char *spec = getenv("MT_IOFAULT");
    const char *rank = getenv("OMPI_COMM_WORLD_RANK");
    if (!rank) rank = getenv("PMIX_RANK");
    my_rank = rank ? atoi(rank) : -1;
    int n = 0;
    if (spec && strlen(spec) < sizeof buf) {
        strcpy(buf, spec);
        char *rest = buf;
        for (char *item = strsep(&rest, ","); item && n < MAX_RULES; item = strsep(&rest, ","))
            if (item[0]) parse_rule(item, &rules[n++]);
    }
    __atomic_store_n(&n_rules, n, __ATOMIC_RELEASE);
}

static void *next(const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) {
        fprintf(stderr, "iofault: no next symbol %s\n", name);
        _exit(2);
    }
    return f;
}

static void note(rule *r, const char *call, const char *path) {
    if (__atomic_exchange_n(&r->logged, 1, __ATOMIC_ACQ_REL)) return;
    const char *log = getenv("MT_IOFAULT_LOG");
    if (!log) return;
    char line[1024];
    int n = snprintf(line, sizeof line, "iofault: pid %ld rank %d: %s from %s on %s\n",
                     (long)getpid(), my_rank, r->name, call, path);
    static ssize_t (*real_write)(int, const void *, size_t);
    if (!real_write) real_write = next("write");
    int fd =
        ((int (*)(const char *, int, ...))next("open"))(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    ssize_t w = real_write(fd, line, n < (int)sizeof line ? (size_t)n : sizeof line - 1);
    (void)w;
    close(fd);
}

/* The rule that fails this call of op on path moving len bytes (writes),
 * or NULL; *allow: the bytes of a write that still pass (cut short). */
static rule *match(int op, const char *path, size_t len, size_t *allow, const char *call) {
    parse();
    *allow = len;
    for (int i = 0; i < n_rules; i++) {
        rule *r = &rules[i];
        if (!(r->ops & op) || (r->rank >= 0 && r->rank != my_rank) || !strstr(path, r->path))
            continue;
        int64_t k = __atomic_fetch_add(&r->calls, 1, __ATOMIC_ACQ_REL);
        if (k < r->skip) continue;
        if (op == OP_WRITE && r->after >= 0) {
            int64_t before = __atomic_fetch_add(&r->bytes, (int64_t)len, __ATOMIC_ACQ_REL);
            if (before + (int64_t)len <= r->after) continue;
            if (before < r->after) { /* a short write up to the limit */
                *allow = (size_t)(r->after - before);
                note(r, call, path);
                return NULL;
            }
        }
        note(r, call, path);
        return r;
    }
    return NULL;
}

/* The rule that fails this call on fd, or NULL (see match). */
static rule *match_fd(int op, int fd, size_t len, size_t *allow, const char *call) {
    parse();
    *allow = len;
    if (n_rules == 0) return NULL;
    char link[64], path[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return NULL;
    path[n] = '\0';
    return match(op, path, len, allow, call);
}

static size_t iov_bytes(const struct iovec *iov, int n) {
    size_t s = 0;
    for (int i = 0; i < n; i++) s += iov[i].iov_len;
    return s;
}

/* Cuts iov (n entries) down to allow bytes, in out; returns the entries used. */
static int iov_cut(const struct iovec *iov, int n, size_t allow, struct iovec *out) {
    int k = 0;
    for (int i = 0; i < n && allow > 0 && k < 64; i++, k++) {
        out[k] = iov[i];
        if (out[k].iov_len > allow) out[k].iov_len = allow;
        allow -= out[k].iov_len;
    }
    return k;
}

#define FAIL_IF(r)                                                                                 \
    if (r) {                                                                                       \
        while ((r)->err == ERR_HANG) pause();                                                      \
        errno = (r)->err;                                                                          \
        return -1;                                                                                 \
    }

ssize_t write(int fd, const void *buf, size_t len) {
    static ssize_t (*real)(int, const void *, size_t);
    if (!real) real = next("write");
    size_t allow;
    rule *r = match_fd(OP_WRITE, fd, len, &allow, "write");
    FAIL_IF(r);
    return real(fd, buf, allow);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (!real) real = next("pwrite");
    size_t allow;
    rule *r = match_fd(OP_WRITE, fd, len, &allow, "pwrite");
    FAIL_IF(r);
    return real(fd, buf, allow, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off64_t off) {
    static ssize_t (*real)(int, const void *, size_t, off64_t);
    if (!real) real = next("pwrite64");
    size_t allow;
    rule *r = match_fd(OP_WRITE, fd, len, &allow, "pwrite64");
    FAIL_IF(r);
    return real(fd, buf, allow, off);
}

/* The vector writes: cut short by passing fewer bytes to the real call. */
ssize_t writev(int fd, const struct iovec *iov, int n) {
    static ssize_t (*real)(int, const struct iovec *, int);
    if (!real) real = next("writev");
    size_t len = iov_bytes(iov, n), allow;
    rule *r = match_fd(OP_WRITE, fd, len, &allow, "writev");
    FAIL_IF(r);
    struct iovec cut[64];
    if (allow < len) n = iov_cut(iov, n, allow, cut), iov = cut;
    return real(fd, iov, n);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off) {
    static ssize_t (*real)(int, const struct iovec *, int, off_t);
    if (!real) real = next("pwritev");
    size_t len = iov_bytes(iov, n), allow;
    rule *r = match_fd(OP_WRITE, fd, len, &allow, "pwritev");
    FAIL_IF(r);
    struct iovec cut[64];
    if (allow < len) n = iov_cut(iov, n, allow, cut), iov = cut;
    return real(fd, iov, n, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int n, off64_t off) {
    static ssize_t (*real)(int, const struct iovec *, int, off64_t);
    if (!real) real = next("pwritev64");
    size_t len = iov_bytes(iov, n), allow;
    rule *r = match_fd(OP_WRITE, fd, len, &allow, "pwritev64");
    FAIL_IF(r);
    struct iovec cut[64];
    if (allow < len) n = iov_cut(iov, n, allow, cut), iov = cut;
    return real(fd, iov, n, off);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int n, off_t off, int flags) {
    static ssize_t (*real)(int, const struct iovec *, int, off_t, int);
    if (!real) real = next("pwritev2");
    size_t len = iov_bytes(iov, n), allow;
    rule *r = match_fd(OP_WRITE, fd, len, &allow, "pwritev2");
    FAIL_IF(r);
    struct iovec cut[64];
    if (allow < len) n = iov_cut(iov, n, allow, cut), iov = cut;
    return real(fd, iov, n, off, flags);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int n, off64_t off, int flags) {
    static ssize_t (*real)(int, const struct iovec *, int, off64_t, int);
    if (!real) real = next("pwritev64v2");
    size_t len = iov_bytes(iov, n), allow;
    rule *r = match_fd(OP_WRITE, fd, len, &allow, "pwritev64v2");
    FAIL_IF(r);
    struct iovec cut[64];
    if (allow < len) n = iov_cut(iov, n, allow, cut), iov = cut;
    return real(fd, iov, n, off, flags);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = next("fsync");
    size_t allow;
    rule *r = match_fd(OP_FSYNC, fd, 0, &allow, "fsync");
    FAIL_IF(r);
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = next("fdatasync");
    size_t allow;
    rule *r = match_fd(OP_FSYNC, fd, 0, &allow, "fdatasync");
    FAIL_IF(r);
    return real(fd);
}

/* The opens: only those for writing are candidates. */
static mode_t mode_of(int flags, va_list ap) {
    return flags & (O_CREAT | __O_TMPFILE) ? (mode_t)va_arg(ap, int) : 0;
}

static rule *match_open(const char *path, int flags, const char *call) {
    size_t allow;
    return flags & (O_WRONLY | O_RDWR | O_CREAT) ? match(OP_OPEN, path, 0, &allow, call) : NULL;
}

int open(const char *path, int flags, ...) {
    static int (*real)(const char *, int, ...);
    if (!real) real = next("open");
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_of(flags, ap);
    va_end(ap);
    rule *r = match_open(path, flags, "open");
    FAIL_IF(r);
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    static int (*real)(const char *, int, ...);
    if (!real) real = next("open64");
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_of(flags, ap);
    va_end(ap);
    rule *r = match_open(path, flags, "open64");
    FAIL_IF(r);
    return real(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    static int (*real)(int, const char *, int, ...);
    if (!real) real = next("openat");
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_of(flags, ap);
    va_end(ap);
    rule *r = match_open(path, flags, "openat");
    FAIL_IF(r);
    return real(dirfd, path, flags, mode);
}

/* What the checkpoint watchdog asks of the folder (op stat). */
int access(const char *path, int mode) {
    static int (*real)(const char *, int);
    if (!real) real = next("access");
    size_t allow;
    rule *r = match(OP_STAT, path, 0, &allow, "access");
    FAIL_IF(r);
    return real(path, mode);
}

int unlink(const char *path) {
    static int (*real)(const char *);
    if (!real) real = next("unlink");
    size_t allow;
    rule *r = match(OP_STAT, path, 0, &allow, "unlink");
    FAIL_IF(r);
    return real(path);
}
