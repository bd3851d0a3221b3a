/* files.c - whole-file reads and atomic, durable writes (see files.h). */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int mt_path_vfmt(char *out, size_t n, int code, mt_err *e, const char *fmt, va_list ap) {
    int len = vsnprintf(out, n, fmt, ap);
    if (len >= 0 && (size_t)len < n) return MT_OK;
    mt_err_set(e, code, "path too long (%d characters; at most %zu): %.200s...", len, n - 1, out);
    mt_err_hint(e, "use shorter folder names (run.dir, checkpoint.dir), or a symbolic link");
    out[0] = '\0';
    return e->code;
}

int mt_path_fmt(char *out, size_t n, mt_err *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = mt_path_vfmt(out, n, MT_ERR_USAGE, e, fmt, ap);
    va_end(ap);
    return rc;
}

void mt_file_tmp_name(const char *path, char *tmp, size_t n) {
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
}

void mt_file_dir(const char *path, char *out, size_t n) {
    snprintf(out, n, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == out)
        out[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(out, n, ".");
}

static void sync_parent_dir(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd); /* best effort: makes the rename durable where supported */
        close(fd);
    }
}

int mt_file_commit(const char *tmp, const char *path, mt_err *e) {
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        int err = errno;
        if (fd >= 0) close(fd);
        unlink(tmp);
        return mt_err_set(e, MT_ERR_USAGE, "cannot sync %s: %s", tmp, strerror(err));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return mt_err_set(e, MT_ERR_USAGE, "cannot rename %s to %s: %s", tmp, path, strerror(err));
    }
    sync_parent_dir(path);
    return MT_OK;
}

int mt_file_write_atomic(const char *path, const char *text, size_t len, mt_err *e) {
    char tmp[4200];
    mt_file_tmp_name(path, tmp, sizeof tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return mt_err_set(e, MT_ERR_USAGE, "cannot write %s: %s", tmp, strerror(errno));
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            break;
        }
        done += (size_t)w;
    }
    int err = errno;
    if (close(fd) != 0 && done == len) done = 0, err = errno;
    if (done < len) {
        unlink(tmp);
        return mt_err_set(e, MT_ERR_USAGE, "cannot write %s: %s", path, strerror(err));
    }
    return mt_file_commit(tmp, path, e);
}

int mt_file_read(const char *path, const char *what, int code, char **buf, size_t *len, mt_err *e) {
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return mt_err_set(e, code, "cannot read %s %s: %s", what, path, strerror(errno));
    struct stat st = {0};
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mt_err_set(e, code, "cannot read %s %s: %s", what, path,
                          S_ISDIR(st.st_mode) ? "Is a directory" : "not a regular file");
    }
    size_t size = (size_t)st.st_size;
    char *b = malloc(size + 1);
    if (!b) {
        fclose(f);
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory reading %zu bytes of %s", size, path);
    }
    size_t got = fread(b, 1, size, f);
    int bad = ferror(f) || got != size;
    int err = errno;
    fclose(f);
    if (bad) {
        free(b);
        return mt_err_set(e, code, "cannot read %s %s: %s", what, path,
                          got != size ? "file changed while reading" : strerror(err));
    }
    b[size] = '\0';
    *buf = b;
    *len = size;
    return MT_OK;
}

int mt_mkdirs(const char *dir, mt_err *e) {
    char buf[4096];
    if (!dir[0]) return mt_err_set(e, MT_ERR_USAGE, "an empty folder name");
    if (strlen(dir) >= sizeof buf) return mt_err_set(e, MT_ERR_USAGE, "path too long: %s", dir);
    strcpy(buf, dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return mt_err_set(e, MT_ERR_USAGE, "cannot create folder %s: %s", buf,
                                  strerror(errno));
            *p = c;
            if (c == '\0') break;
        }
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return mt_err_set(e, MT_ERR_USAGE, "%s is not a folder", dir);
    return MT_OK;
}

int mt_file_put_f32le(FILE *f, const float *x, size_t n) {
    unsigned char buf[16384 * 4];
    for (size_t i = 0; i < n;) {
        size_t k = n - i < 16384 ? n - i : 16384;
        for (size_t j = 0; j < k; j++) {
            uint32_t u = 0;
            if (x) memcpy(&u, &x[i + j], 4);
            buf[4 * j] = (unsigned char)u, buf[4 * j + 1] = (unsigned char)(u >> 8);
            buf[4 * j + 2] = (unsigned char)(u >> 16), buf[4 * j + 3] = (unsigned char)(u >> 24);
        }
        if (fwrite(buf, 4, k, f) != k) return -1;
        i += k;
    }
    return 0;
}

int mt_file_close_tmp(FILE *f, const char *tmp, int bad, mt_err *e) {
    int err = errno;
    if (fclose(f) != 0 && !bad) bad = 1, err = errno;
    if (!bad) return MT_OK;
    unlink(tmp);
    /* the file meant: tmp without mt_file_tmp_name's ".tmp.PID" */
    const char *dot = strstr(tmp, ".tmp.");
    int len = dot ? (int)(dot - tmp) : (int)strlen(tmp);
    return mt_err_set(e, MT_ERR_USAGE, "cannot write %.*s: %s (nothing was replaced)", len, tmp,
                      strerror(err));
}

int mt_file_check_out(const char *path, const char *what, mt_err *e) {
    for (const char *c = path; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return mt_err_set(e, MT_ERR_USAGE, "%s has a control character in its name", what);
    struct stat st;
    if (lstat(path, &st) != 0) return MT_OK; /* (absent: made new) */
    if (S_ISREG(st.st_mode)) return MT_OK;
    return mt_err_set(e, MT_ERR_USAGE, "%s %s is %s, not a regular file: not replaced", what, path,
                      S_ISDIR(st.st_mode)    ? "a folder"
                      : S_ISLNK(st.st_mode)  ? "a symbolic link"
                      : S_ISFIFO(st.st_mode) ? "a FIFO"
                                             : "a device or socket");
}
