/*
 * checkpoint_dir.c - the checkpoint folder: the names of checkpoint files,
 * listing them, the `latest` pointer, retention of old files and stale
 * temporaries, and the bounded path building the whole module uses.
 * docs/CHECKPOINT_FORMAT.md section 2 describes the folder.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/checkpoint_private.h"
#include "io/files.h"

#define NAME_DIGITS 8
/* A checkpoint file name of the scheme: "step_" + up to 19 digits + ".h5". */
#define NAME_LEN 64

int mt_ckpt_path(char *buf, size_t n, mt_err *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = mt_path_vfmt(buf, n, MT_ERR_CKPT, e, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- names ---- */

void mt_ckpt_name(int64_t step, char *buf, size_t n) {
    snprintf(buf, n, "step_%0*lld.h5", NAME_DIGITS, (long long)step);
}

/* Length of the "step_NNNNNNNN.h5" prefix of name, with its step, or 0. */
static size_t scheme_prefix(const char *name, int64_t *step) {
    if (strncmp(name, "step_", 5) != 0) return 0;
    const char *p = name + 5;
    int64_t v = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (v > (INT64_MAX - 9) / 10) return 0;
        v = v * 10 + (*p - '0');
    }
    if (digits < NAME_DIGITS || strncmp(p, ".h5", 3) != 0) return 0;
    *step = v;
    return (size_t)(p + 3 - name);
}

int64_t mt_ckpt_parse_name(const char *name) {
    int64_t step;
    size_t n = scheme_prefix(name, &step);
    char canon[NAME_LEN];
    if (!n || name[n] != '\0') return -1;
    mt_ckpt_name(step, canon, sizeof canon); /* only the name the writer gives step */
    return strcmp(canon, name) == 0 ? step : -1;
}

/* ---- the folder: listing, latest, retention ---- */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int mt_ckpt_list(const char *dir, int64_t **steps, int *n, mt_err *e) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return MT_OK;
        return mt_err_set(e, MT_ERR_CKPT, "cannot list checkpoint folder %s: %s", dir,
                          strerror(errno));
    }
    int cap = 0;
    for (struct dirent *de; (de = readdir(d));) {
        int64_t s = mt_ckpt_parse_name(de->d_name);
        if (s < 0) continue;
        char full[MT_CKPT_PATH];
        struct stat st;
        if (mt_ckpt_path(full, sizeof full, e, "%s/%s", dir, de->d_name)) break;
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *ns = realloc(*steps, (size_t)cap * sizeof *ns);
            if (!ns) abort();
            *steps = ns;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (e->code) {
        free(*steps);
        *steps = NULL;
        *n = 0;
        return e->code;
    }
    if (*n) qsort(*steps, (size_t)*n, sizeof **steps, cmp_i64);
    return MT_OK;
}

void mt_ckpt_latest(const char *dir, char *name, size_t n) {
    char path[MT_CKPT_PATH], *text = NULL;
    size_t len;
    mt_err ignored = {0};
    name[0] = '\0';
    if (mt_ckpt_path(path, sizeof path, &ignored, "%s/latest", dir)) return;
    struct stat st;
    if (stat(path, &st) != 0 || mt_file_read(path, "pointer", MT_ERR_CKPT, &text, &len, &ignored))
        return;
    text[strcspn(text, "\r\n")] = '\0';
    if (mt_ckpt_parse_name(text) >= 0 && strlen(text) < n) memcpy(name, text, strlen(text) + 1);
    free(text);
}

int mt_ckpt_set_latest(const char *dir, const char *name, mt_err *e) {
    char path[MT_CKPT_PATH], line[NAME_LEN + 1];
    if (mt_ckpt_parse_name(name) < 0 || strlen(name) + 1 >= sizeof line)
        return mt_err_set(e, MT_ERR_INTERNAL, "'%.80s' is not a checkpoint name", name);
    if (mt_ckpt_path(path, sizeof path, e, "%s/latest", dir)) return e->code;
    snprintf(line, sizeof line, "%s\n", name);
    if (mt_file_write_atomic(path, line, strlen(line), e)) e->code = MT_ERR_CKPT;
    return e->code;
}

/* A leftover temporary of the scheme: step_N.h5[.sha256].tmp.PID or latest.tmp.PID */
static int stale_temporary(const char *name) {
    int64_t step;
    size_t k = scheme_prefix(name, &step);
    const char *rest = k ? name + k : strncmp(name, "latest", 6) == 0 ? name + 6 : NULL;
    if (!rest) return 0;
    if (k && strncmp(rest, ".sha256", 7) == 0) rest += 7;
    if (strncmp(rest, ".tmp.", 5) != 0 || !rest[5]) return 0;
    for (const char *p = rest + 5; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    /* a writer on this host that is still alive keeps its temporary */
    pid_t pid = (pid_t)atol(rest + 5);
    return pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH);
}

/* Deletes checkpoint `name` of dir and its .sha256, telling `removed` first. */
static int remove_checkpoint(const char *dir, const char *name, FILE *log,
                             mt_ckpt_removed_fn removed, void *ctx, mt_err *e) {
    char path[MT_CKPT_PATH], side[MT_CKPT_PATH];
    if (mt_ckpt_path(path, sizeof path, e, "%s/%s", dir, name) ||
        mt_ckpt_path(side, sizeof side, e, "%s/%s.sha256", dir, name))
        return e->code;
    if (removed) {
        char sha[72] = "";
        FILE *f = fopen(side, "r");
        if (!f || fscanf(f, "%64[0-9a-f]", sha) != 1) sha[0] = '\0';
        if (f) fclose(f);
        removed(path, sha, ctx);
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return mt_err_set(e, MT_ERR_CKPT, "cannot delete old checkpoint %s: %s", path,
                          strerror(errno));
    if (log) fprintf(log, "checkpoint: removed %s (retention)\n", path);
    unlink(side);
    return MT_OK;
}

int mt_ckpt_retain(const char *dir, int64_t keep_last, int64_t keep_every, FILE *log,
                   mt_ckpt_removed_fn removed, void *ctx, mt_err *e) {
    int64_t *steps;
    int n;
    if (mt_ckpt_list(dir, &steps, &n, e)) return e->code;
    char latest[NAME_LEN];
    mt_ckpt_latest(dir, latest, sizeof latest);
    int64_t keep_latest = latest[0] ? mt_ckpt_parse_name(latest) : -1;
    char name[NAME_LEN];
    /* Files newer than `latest` were never committed (a writer died between
     * rename and pointer); they are neither counted nor deleted. */
    int committed = n;
    while (keep_latest >= 0 && committed > 0 && steps[committed - 1] > keep_latest) committed--;
    for (int i = 0; i < committed; i++) {
        int64_t s = steps[i];
        int keep = keep_last == 0 || i >= committed - keep_last || s == keep_latest ||
                   (keep_every > 0 && s % keep_every == 0);
        if (keep) continue;
        mt_ckpt_name(s, name, sizeof name);
        if (remove_checkpoint(dir, name, log, removed, ctx, e)) break;
    }
    free(steps);
    /* temporaries left by writers that died; this process's own are gone by now */
    mt_ckpt_remove_temporaries(dir, 0.0, log);
    return e->code;
}

void mt_ckpt_remove_temporaries(const char *dir, double min_age, FILE *log) {
    char path[MT_CKPT_PATH];
    DIR *d = opendir(dir);
    mt_err too_long = {0}; /* such a name cannot be one of ours: skip it */
    time_t now = time(NULL);
    struct stat st;
    for (struct dirent *de; d && (de = readdir(d));)
        if (stale_temporary(de->d_name) &&
            !mt_ckpt_path(path, sizeof path, &too_long, "%s/%s", dir, de->d_name) &&
            stat(path, &st) == 0 && difftime(now, st.st_mtime) >= min_age) {
            if (unlink(path) == 0 && log)
                fprintf(log, "checkpoint: removed %s (left by an interrupted write)\n", path);
        }
    if (d) closedir(d);
}
