/* fault.c - injected faults for tests (see fault.h). */
#include "fault.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_FAULTS 16

typedef enum { F_KILL, F_STALL, F_NAN, F_SIGNAL } fault_kind;

typedef struct {
    fault_kind kind;
    int rank;       /* -1: every rank */
    int64_t step;   /* 1-based */
    double seconds; /* stall; <0: forever */
    int sig;        /* signal */
    int during;     /* kill, signal, stall: the mt_fault_point where it fires */
} fault;

static fault faults[MAX_FAULTS];
static int n_faults, my_rank;
static char spec_text[512];

static const struct {
    const char *name;
    int sig;
} sig_names[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"INT", SIGINT}};

static int parse_int(const char *v, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo) return -1;
    *out = x;
    return 0;
}

/* One key=value of fault f; 0, or -1 when it is not one f takes. */
static int parse_field(fault *f, const char *key, const char *val) {
    int64_t x;
    if (strcmp(key, "rank") == 0) {
        if (parse_int(val, 0, &x) || x > 1 << 30) return -1;
        f->rank = (int)x;
    } else if (strcmp(key, "step") == 0) {
        if (parse_int(val, 1, &x)) return -1;
        f->step = x;
    } else if (strcmp(key, "seconds") == 0 && f->kind == F_STALL) {
        char *end;
        errno = 0;
        double sec = strtod(val, &end);
        if (errno || end == val || *end || !(sec >= 0 && sec < 1e9)) return -1;
        f->seconds = sec;
    } else if (strcmp(key, "sig") == 0 && f->kind == F_SIGNAL) {
        if (strncmp(val, "SIG", 3) == 0) val += 3;
        for (size_t i = 0; i < sizeof sig_names / sizeof sig_names[0]; i++)
            if (strcmp(val, sig_names[i].name) == 0) f->sig = sig_names[i].sig;
        if (!f->sig) return -1;
    } else if (strcmp(key, "during") == 0 && f->kind != F_NAN) {
        static const struct {
            const char *name;
            mt_fault_point at;
        } points[] = {{"checkpoint", MT_FAULT_CKPT_WRITE},
                      {"checkpoint_data", MT_FAULT_CKPT_DATA},
                      {"backward", MT_FAULT_BACKWARD},
                      {"gradsync", MT_FAULT_GRADSYNC}};
        f->during = -1;
        for (size_t i = 0; i < sizeof points / sizeof points[0]; i++)
            if (strcmp(val, points[i].name) == 0) f->during = (int)points[i].at;
        if (f->during < 0) return -1;
    } else {
        return -1;
    }
    return 0;
}

/* One fault "kind:key=val:..." (item is modified). */
static int parse_fault(char *item, fault *f, mt_err *e) {
    static const char *kinds[] = {"kill", "stall", "nan", "signal"};
    char *rest = item, *tok = strsep(&rest, ":");
    *f = (fault){.kind = F_KILL, .rank = -1, .step = 0, .seconds = -1.0};
    int k = -1;
    for (int i = 0; tok && i < 4; i++)
        if (strcmp(tok, kinds[i]) == 0) k = i;
    if (k < 0)
        return mt_err_set(e, MT_ERR_USAGE,
                          "MPITRAIN_FAULT: unknown fault '%s' (kill, stall, nan, signal)",
                          tok ? tok : "");
    f->kind = (fault_kind)k;
    while ((tok = strsep(&rest, ":"))) {
        char *eq = strchr(tok, '=');
        if (eq) *eq = '\0';
        if (!eq || parse_field(f, tok, eq + 1))
            return mt_err_set(e, MT_ERR_USAGE, "MPITRAIN_FAULT: %s: bad field '%s%s%s'", kinds[k],
                              tok, eq ? "=" : "", eq ? eq + 1 : "");
    }
    if (!f->step) return mt_err_set(e, MT_ERR_USAGE, "MPITRAIN_FAULT: %s needs step=S", kinds[k]);
    if (f->kind != F_NAN && f->rank < 0)
        return mt_err_set(e, MT_ERR_USAGE, "MPITRAIN_FAULT: %s needs rank=R", kinds[k]);
    if (f->kind == F_SIGNAL && !f->sig)
        return mt_err_set(e, MT_ERR_USAGE, "MPITRAIN_FAULT: signal needs sig=USR1|USR2|TERM|INT");
    return MT_OK;
}

int mt_fault_init(const char *spec, int rank, mt_err *e) {
    n_faults = 0;
    spec_text[0] = '\0';
    my_rank = rank;
    if (!spec || !spec[0]) return MT_OK;
    if (strlen(spec) >= sizeof spec_text)
        return mt_err_set(e, MT_ERR_USAGE, "MPITRAIN_FAULT is longer than %zu characters",
                          sizeof spec_text - 1);
    char buf[sizeof spec_text];
    snprintf(buf, sizeof buf, "%s", spec);
    char *rest = buf;
    for (char *item = strsep(&rest, ","); item; item = strsep(&rest, ",")) {
        if (n_faults == MAX_FAULTS)
            return mt_err_set(e, MT_ERR_USAGE, "MPITRAIN_FAULT: more than %d faults", MAX_FAULTS);
        char one[sizeof spec_text];
        snprintf(one, sizeof one, "%s", item);
        if (parse_fault(one, &faults[n_faults], e)) {
            n_faults = 0;
            return e->code;
        }
        n_faults++;
    }
    snprintf(spec_text, sizeof spec_text, "%s", spec);
    return MT_OK;
}

const char *mt_fault_spec(void) {
    return spec_text;
}

static void stall(double seconds) {
    if (seconds < 0) {
        for (;;) pause(); /* a stop signal is recorded; a second TERM still exits */
    }
    struct timespec left = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
}

void mt_fault_at(mt_fault_point where, int64_t step) {
    for (int i = 0; i < n_faults; i++) {
        const fault *f = &faults[i];
        if (f->step != step || (f->rank >= 0 && f->rank != my_rank)) continue;
        if (f->during != (int)where) continue;
        if (f->kind == F_SIGNAL) {
            /* to the process, not this thread: an asynchronous checkpoint's
             * writer thread blocks the stop signals, the main thread takes them */
            kill(getpid(), f->sig);
        } else if (f->kind == F_KILL) {
            fflush(NULL);
            raise(SIGKILL);
        } else if (f->kind == F_STALL) {
            stall(f->seconds);
        }
    }
}

int mt_fault_nan(int64_t step) {
    for (int i = 0; i < n_faults; i++)
        if (faults[i].kind == F_NAN && faults[i].step == step &&
            (faults[i].rank < 0 || faults[i].rank == my_rank))
            return 1;
    return 0;
}
