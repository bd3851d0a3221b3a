/* registry.c - the JSON Lines model registry (see registry.h). */
#include "registry.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/files.h"

#define TAIL_BYTES (1 << 20) /* where the newest version of a name is looked for first */

int mt_registry_valid_name(const char *s) {
    if (!s || !s[0] || strlen(s) > MT_REGISTRY_NAME_MAX || strcmp(s, ".") == 0 ||
        strcmp(s, "..") == 0)
        return 0;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.') return 0;
    return 1;
}

static const cJSON *at_path(const cJSON *rec, const char *path) {
    char key[64];
    const cJSON *o = rec;
    while (o && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof key) return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        o = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
        path += n + (path[n] == '.');
    }
    return o;
}

const char *mt_registry_str(const cJSON *rec, const char *path) {
    const cJSON *o = at_path(rec, path);
    return cJSON_IsString(o) ? o->valuestring : NULL;
}

double mt_registry_num(const cJSON *rec, const char *path, double fallback) {
    const cJSON *o = at_path(rec, path);
    return cJSON_IsNumber(o) ? o->valuedouble : fallback;
}

int64_t mt_registry_version(const cJSON *rec, const char *path) {
    double v = mt_registry_num(rec, path, 0);
    return v >= 1 && v <= MT_REGISTRY_VERSION_MAX ? (int64_t)v : 0;
}

/* What makes a line a record: an object with the event's type, time and run. */
static cJSON *parse_record(const char *s, size_t n, const char **why) {
    cJSON *r = cJSON_ParseWithLength(s, n);
    if (!r) {
        *why = "not JSON (a torn or corrupt line)";
    } else if (!cJSON_IsObject(r)) {
        *why = "not a JSON object";
    } else if (!mt_registry_str(r, "eventType") || !mt_registry_str(r, "eventTime") ||
               !mt_registry_str(r, "run.runId")) {
        *why = "lacks eventType, eventTime or run.runId";
    } else {
        return r;
    }
    cJSON_Delete(r);
    return NULL;
}

/* ---- writing ---- */

static int lock_file(int fd, const char *path, mt_err *e) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    struct timespec nap = {0, 5 * 1000 * 1000};
    for (double waited = 0; fcntl(fd, F_SETLK, &fl) != 0; waited += 0.005) {
        if (errno != EACCES && errno != EAGAIN && errno != EINTR) {
            mt_err_set(e, MT_ERR_REGISTRY, "cannot lock registry %s: %s", path, strerror(errno));
            mt_err_hint(e, "the file system must support fcntl locks (on NFS, mount with locking)");
            return e->code;
        }
        if (waited >= MT_REGISTRY_LOCK_S) {
            mt_err_set(e, MT_ERR_REGISTRY,
                       "registry %s stayed locked by another process for %.0f s", path,
                       MT_REGISTRY_LOCK_S);
            return e->code;
        }
        nanosleep(&nap, NULL);
    }
    return MT_OK;
}

static int read_at(int fd, char *buf, size_t n, off_t off) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, buf + got, n - got, off + (off_t)got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

/* The newest version of model name among the complete lines of buf (which
 * starts at a line start when whole), scanning from the end; 0 if none. */
static int64_t newest_in(const char *buf, size_t n, int whole, const char *name) {
    size_t end = n;
    while (end > 0) {
        size_t start = end - 1;
        while (start > 0 && buf[start - 1] != '\n') start--;
        if (start == 0 && !whole) break; /* may be the tail of a line */
        const char *why;
        cJSON *r = parse_record(buf + start, end - start, &why);
        int64_t v = 0;
        if (r) {
            const char *t = mt_registry_str(r, "eventType"), *m = mt_registry_str(r, "model.name");
            if (strcmp(t, "CHECKPOINT") == 0 && m && strcmp(m, name) == 0)
                v = mt_registry_version(r, "model.version");
            cJSON_Delete(r);
        }
        if (v > 0) return v;
        end = start;
    }
    return 0;
}

static int64_t newest_version(int fd, off_t size, const char *name, int *bad) {
    size_t tail = size > TAIL_BYTES ? TAIL_BYTES : (size_t)size;
    for (int pass = 0; pass < 2; pass++) {
        char *buf = malloc(tail + 1);
        if (!buf || read_at(fd, buf, tail, size - (off_t)tail)) {
            free(buf);
            *bad = 1;
            return 0;
        }
        int64_t v = newest_in(buf, tail, tail == (size_t)size, name);
        free(buf);
        if (v > 0 || tail == (size_t)size) return v;
        tail = (size_t)size; /* not in the tail: the whole file */
    }
    return 0;
}

static int open_registry(const char *path, mt_err *e) {
    char dir[4096];
    mt_file_dir(path, dir, sizeof dir);
    if (mt_mkdirs(dir, e)) {
        e->code = MT_ERR_REGISTRY;
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        mt_err_set(e, MT_ERR_REGISTRY, "cannot open registry %s for appending: %s", path,
                   strerror(errno));
        mt_err_hint(e, "set registry.path to a writable file, or registry.enabled = false");
    }
    return fd;
}

int mt_registry_writable(const char *path, mt_err *e) {
    int fd = open_registry(path, e);
    if (fd >= 0) close(fd);
    return e->code;
}

int mt_registry_append(const char *path, cJSON *rec, int64_t *version, mt_err *e) {
    *version = 0;
    int fd = open_registry(path, e);
    if (fd < 0) return e->code;
    char *line = NULL;
    struct stat st;
    if (lock_file(fd, path, e)) goto out;
    if (fstat(fd, &st) != 0) {
        mt_err_set(e, MT_ERR_REGISTRY, "cannot stat registry %s: %s", path, strerror(errno));
        goto out;
    }
    const char *type = mt_registry_str(rec, "eventType"),
               *name = mt_registry_str(rec, "model.name");
    if (type && strcmp(type, "CHECKPOINT") == 0 && name) {
        int bad = 0;
        *version = newest_version(fd, st.st_size, name, &bad) + 1;
        if (bad) {
            mt_err_set(e, MT_ERR_REGISTRY, "cannot read registry %s", path);
            goto out;
        }
        cJSON *model = cJSON_GetObjectItemCaseSensitive(rec, "model");
        cJSON *num = cJSON_CreateNumber((double)*version);
        if (!cJSON_GetObjectItemCaseSensitive(model, "version"))
            cJSON_AddItemToObject(model, "version", num);
        else
            cJSON_ReplaceItemInObjectCaseSensitive(model, "version", num);
    }
    /* a line left without its newline (a torn record) must not swallow ours */
    char last = '\n';
    if (st.st_size > 0 && read_at(fd, &last, 1, st.st_size - 1)) last = '\n';
    char *json = cJSON_PrintUnformatted(rec);
    if (!json) {
        mt_err_set(e, MT_ERR_INTERNAL, "cannot format a registry record");
        goto out;
    }
    size_t n = strlen(json);
    line = malloc(n + 3);
    if (!line) {
        free(json);
        mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
        goto out;
    }
    size_t off = 0;
    if (last != '\n') line[off++] = '\n';
    memcpy(line + off, json, n);
    off += n;
    line[off++] = '\n';
    free(json);
    ssize_t w = write(fd, line, off);
    if (w != (ssize_t)off) {
        int err = w < 0 ? errno : ENOSPC;
        /* cut off what got written, so no half record stays behind */
        if (w > 0 && ftruncate(fd, st.st_size) != 0) err = errno;
        mt_err_set(e, MT_ERR_REGISTRY, "cannot append to registry %s: %s", path, strerror(err));
        goto out;
    }
    if (fsync(fd) != 0) {
        /* the record may be lost or kept: cut it off, so it did not happen */
        int err = errno;
        if (ftruncate(fd, st.st_size) == 0) fsync(fd);
        mt_err_set(e, MT_ERR_REGISTRY, "cannot sync registry %s: %s", path, strerror(err));
    }
out:
    free(line);
    close(fd); /* releases the lock */
    return e->code;
}

/* ---- reading ---- */

static int add(mt_registry *r, cJSON *rec, int line) {
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 64;
        cJSON **v = realloc(r->rec, (size_t)cap * sizeof *v);
        int *l = v ? realloc(r->line, (size_t)cap * sizeof *l) : NULL;
        if (v) r->rec = v;
        if (!l) return -1;
        r->line = l;
        r->cap = cap;
    }
    r->rec[r->n] = rec;
    r->line[r->n++] = line;
    return 0;
}

int mt_registry_read(const char *path, mt_registry *r, FILE *warn, mt_err *e) {
    memset(r, 0, sizeof *r);
    char *buf;
    size_t len;
    if (mt_file_read(path, "registry", MT_ERR_REGISTRY, &buf, &len, e)) return e->code;
    size_t start = 0;
    for (int line = 1; start < len; line++) {
        size_t end = start;
        while (end < len && buf[end] != '\n') end++;
        size_t s = start;
        while (s < end && isspace((unsigned char)buf[s])) s++;
        if (s < end) { /* blank lines are not records, and not worth a warning */
            const char *why = NULL;
            cJSON *rec = parse_record(buf + start, end - start, &why);
            if (rec) {
                if (add(r, rec, line)) {
                    cJSON_Delete(rec);
                    mt_err_set(e, MT_ERR_INTERNAL, "out of memory reading registry %s", path);
                    break;
                }
            } else {
                r->skipped++;
                if (warn)
                    fprintf(warn, "warning: registry %s line %d: %s; skipped\n", path, line,
                            end == len && why && strncmp(why, "not JSON", 8) == 0
                                ? "an incomplete last line (a torn record)"
                                : why);
            }
        }
        start = end + 1;
    }
    free(buf);
    if (e->code) mt_registry_free(r);
    return e->code;
}

void mt_registry_free(mt_registry *r) {
    for (int i = 0; i < r->n; i++) cJSON_Delete(r->rec[i]);
    free(r->rec);
    free(r->line);
    memset(r, 0, sizeof *r);
}
