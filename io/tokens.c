/*
 * tokens.c - llm.c token shards (see tokens.h): validated, read-only mapped
 * reading, training windows, and atomic writing. Bytes on disk are always
 * little-endian; the header is decoded byte by byte so the reader works on
 * any host, and only the token array depends on the host's byte order.
 */
#define _POSIX_C_SOURCE 200809L

#include "io/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/files.h"

#define WRITE_CHUNK 32768 /* tokens encoded per write() */

/* llm.c's version-2 shards (uint32 tokens, Llama 3) carry this magic. */
#define LLMC_MAGIC_V2 20240801

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static int32_t get_le32(const unsigned char *p) {
    uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t r;
    memcpy(&r, &v, sizeof r);
    return r;
}

static void put_le32(unsigned char *p, int32_t v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(u >> (8 * i));
}

static void shard_release(mt_token_shard *sh) {
    if (sh->base && sh->base_bytes)
        munmap(sh->base, sh->base_bytes);
    else
        free(sh->base);
    sh->base = NULL;
    sh->base_bytes = 0;
    sh->tok = NULL;
}

/* Checks the header and the size of the mapped file; sets sh->ntok. */
static int check_header(mt_token_shard *sh, const unsigned char *map, long long size, mt_err *e) {
    const char *p = sh->path;
    int32_t magic = get_le32(map), version = get_le32(map + 4), n = get_le32(map + 8);
    if (magic != MT_TOKENS_MAGIC) {
        mt_err_set(e, MT_ERR_DATA, "token shard %s has magic %d, not %d (not an llm.c token shard)",
                   p, (int)magic, MT_TOKENS_MAGIC);
        if (magic == LLMC_MAGIC_V2)
            mt_err_hint(e, "this is an llm.c version-2 shard (uint32 tokens, Llama 3); mpitrain "
                           "reads the GPT-2 format with uint16 tokens");
        return e->code;
    }
    if (version != MT_TOKENS_VERSION)
        return mt_err_set(e, MT_ERR_DATA,
                          "token shard %s has version %d, not %d (uint16 tokens); mpitrain reads "
                          "only version %d",
                          p, (int)version, MT_TOKENS_VERSION, MT_TOKENS_VERSION);
    if (n < 0)
        return mt_err_set(e, MT_ERR_DATA, "token shard %s: header says %d tokens (negative)", p,
                          (int)n);
    long long want = MT_TOKENS_HEADER_BYTES + 2LL * n;
    if (size < want)
        return mt_err_set(e, MT_ERR_DATA,
                          "token shard %s is truncated: header says %d tokens (%lld bytes), file "
                          "has %lld bytes",
                          p, (int)n, want, size);
    if (size > want)
        return mt_err_set(e, MT_ERR_DATA,
                          "token shard %s has %lld trailing byte%s: header says %d tokens (%lld "
                          "bytes), file has %lld bytes",
                          p, size - want, size - want == 1 ? "" : "s", (int)n, want, size);
    sh->ntok = n;
    return MT_OK;
}

/* Maps one shard, validates it whole, and points sh->tok at its tokens. */
static int shard_open(mt_token_shard *sh, const char *path, int vocab_size, mt_err *e) {
    memset(sh, 0, sizeof *sh);
    if (strlen(path) >= sizeof sh->path)
        return mt_err_set(e, MT_ERR_DATA, "token shard path too long (%.64s...)", path);
    strcpy(sh->path, path);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return mt_err_set(e, MT_ERR_DATA, "cannot read token shard %s: %s", path, strerror(errno));
    struct stat st = {0};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int dir = S_ISDIR(st.st_mode);
        close(fd);
        mt_err_set(e, MT_ERR_DATA, "token shard %s is not a regular file%s", path,
                   dir ? " (a folder)" : "");
        if (dir) mt_err_hint(e, "name the shards with a glob, e.g. %s/*_train_*.bin", path);
        return e->code;
    }
    long long size = (long long)st.st_size;
    if (size < MT_TOKENS_HEADER_BYTES) {
        close(fd);
        return mt_err_set(e, MT_ERR_DATA,
                          "token shard %s has %lld bytes, less than the %d-byte header (not an "
                          "llm.c token shard)",
                          path, size, MT_TOKENS_HEADER_BYTES);
    }
    void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (map == MAP_FAILED)
        return mt_err_set(e, MT_ERR_DATA, "cannot map token shard %s: %s", path, strerror(err));
    sh->base = map;
    sh->base_bytes = (size_t)size;
    if (check_header(sh, map, size, e)) {
        shard_release(sh);
        return e->code;
    }
    const unsigned char *raw = (const unsigned char *)map + MT_TOKENS_HEADER_BYTES;
    if (host_is_little_endian()) {
        sh->tok = (const uint16_t *)(const void *)raw; /* offset 1024: aligned */
    } else {
        uint16_t *copy = malloc(sh->ntok ? (size_t)sh->ntok * sizeof *copy : 1);
        if (!copy) {
            shard_release(sh);
            return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for %s", path);
        }
        for (int64_t i = 0; i < sh->ntok; i++)
            copy[i] = (uint16_t)(raw[2 * i] | raw[2 * i + 1] << 8);
        munmap(map, (size_t)size);
        sh->base = copy;
        sh->base_bytes = 0;
        sh->tok = copy;
    }
    if (vocab_size <= 0xffff) {
        for (int64_t i = 0; i < sh->ntok; i++) {
            if (sh->tok[i] >= vocab_size) {
                mt_err_set(e, MT_ERR_DATA,
                           "token shard %s: token %u at position %lld is >= vocab_size %d", path,
                           (unsigned)sh->tok[i], (long long)i, vocab_size);
                shard_release(sh);
                return e->code;
            }
        }
    }
    return MT_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int mt_tokens_open(mt_token_set *s, const char *pattern, int vocab_size, mt_err *e) {
    memset(s, 0, sizeof *s);
    if (vocab_size < 1)
        return mt_err_set(e, MT_ERR_INTERNAL, "token shards %s opened with vocab_size %d", pattern,
                          vocab_size);
    /* A name that exists is one file, even when it holds glob characters. */
    struct stat st;
    char *single[1] = {(char *)pattern};
    char **paths = single;
    size_t npaths = 1;
    glob_t g;
    int globbed = 0;
    if (stat(pattern, &st) != 0) {
        int rc = glob(pattern, 0, NULL, &g);
        if (rc != 0) globfree(&g); /* safe: glob initialized g */
        if (rc == GLOB_NOMATCH)
            return mt_err_set(e, MT_ERR_DATA, "no token shard matches %s", pattern);
        if (rc != 0)
            return mt_err_set(e, MT_ERR_DATA, "cannot list the token shards %s (%s)", pattern,
                              rc == GLOB_ABORTED ? "a folder cannot be read" : "out of memory");
        globbed = 1;
        paths = g.gl_pathv;
        npaths = g.gl_pathc;
        /* glob sorts by the locale's collation; byte order makes the shard
         * order (and so the window numbering) the same everywhere. */
        qsort(paths, npaths, sizeof *paths, cmp_str);
    }
    if (npaths > 1000000) {
        mt_err_set(e, MT_ERR_DATA, "%zu files match %s; at most 1000000 token shards", npaths,
                   pattern);
    } else {
        s->shard = calloc(npaths, sizeof *s->shard);
        if (!s->shard) mt_err_set(e, MT_ERR_INTERNAL, "out of memory for %zu shards", npaths);
    }
    for (size_t i = 0; s->shard && i < npaths; i++) {
        if (shard_open(&s->shard[i], paths[i], vocab_size, e)) {
            mt_tokens_close(s);
            break;
        }
        s->n++;
        s->total += s->shard[i].ntok;
    }
    if (globbed) globfree(&g);
    return e->code;
}

void mt_tokens_close(mt_token_set *s) {
    for (int i = 0; i < s->n; i++) shard_release(&s->shard[i]);
    free(s->shard);
    memset(s, 0, sizeof *s);
}

static int64_t shard_windows(int64_t ntok, int T) {
    return ntok > 0 ? (ntok - 1) / T : 0;
}

int64_t mt_tokens_windows(const mt_token_set *s, int T) {
    if (T < 1) return 0;
    int64_t n = 0;
    for (int i = 0; i < s->n; i++) n += shard_windows(s->shard[i].ntok, T);
    return n;
}

int mt_tokens_window(const mt_token_set *s, int64_t k, int T, int32_t *x, int32_t *y) {
    if (T < 1 || k < 0) return MT_ERR_INTERNAL;
    for (int i = 0; i < s->n; i++) {
        int64_t w = shard_windows(s->shard[i].ntok, T);
        if (k >= w) {
            k -= w;
            continue;
        }
        const uint16_t *t = s->shard[i].tok + k * T;
        for (int j = 0; j < T; j++) {
            x[j] = t[j];
            y[j] = t[j + 1];
        }
        return MT_OK;
    }
    return MT_ERR_INTERNAL;
}

static int write_all(int fd, const unsigned char *buf, size_t len) {
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

int mt_tokens_write(const char *path, const uint16_t *tok, int64_t n, mt_err *e) {
    if (n < 0 || n > MT_TOKENS_MAX)
        return mt_err_set(e, MT_ERR_USAGE,
                          "token shard %s: %lld tokens do not fit its header (0 .. %lld)", path,
                          (long long)n, MT_TOKENS_MAX);
    char tmp[MT_TOKENS_PATH + 32];
    if (strlen(path) >= MT_TOKENS_PATH)
        return mt_err_set(e, MT_ERR_USAGE, "token shard path too long (%.64s...)", path);
    mt_file_tmp_name(path, tmp, sizeof tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0)
        return mt_err_set(e, MT_ERR_USAGE, "cannot write token shard %s: %s", tmp, strerror(errno));
    unsigned char *buf = calloc(2 * WRITE_CHUNK, 1); /* header, then tokens as LE bytes */
    if (!buf) {
        close(fd);
        unlink(tmp);
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory writing %s", path);
    }
    put_le32(buf, MT_TOKENS_MAGIC);
    put_le32(buf + 4, MT_TOKENS_VERSION);
    put_le32(buf + 8, (int32_t)n);
    int bad = write_all(fd, buf, MT_TOKENS_HEADER_BYTES);
    for (int64_t i = 0; i < n && !bad; i += WRITE_CHUNK) {
        int64_t m = n - i < WRITE_CHUNK ? n - i : WRITE_CHUNK;
        for (int64_t j = 0; j < m; j++) {
            buf[2 * j] = (unsigned char)(tok[i + j] & 0xff);
            buf[2 * j + 1] = (unsigned char)(tok[i + j] >> 8);
        }
        bad = write_all(fd, buf, (size_t)(2 * m));
    }
    int err = errno;
    free(buf);
    if (close(fd) != 0 && !bad) bad = 1, err = errno;
    if (bad) {
        unlink(tmp);
        return mt_err_set(e, MT_ERR_USAGE, "cannot write token shard %s: %s", path, strerror(err));
    }
    return mt_file_commit(tmp, path, e);
}
