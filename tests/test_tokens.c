/*
 * test_tokens.c - llm.c token shards (io/tokens.h): the bytes mt_tokens_write
 * puts on disk, opening a glob of shards in sorted order, training windows
 * (count, contents, the token consecutive windows share, shard boundaries),
 * and every malformed shard giving one MT_ERR_DATA error naming the file
 * and the problem.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/tokens.h"
#include "test_util.h"

static char dir[64];

static void path_of(char *out, const char *name) {
    snprintf(out, MT_TOKENS_PATH, "%s/%s", dir, name);
}

/* Token i of test shard `id`: distinct across shards, within vocab 256. */
static uint16_t tok_of(int id, int64_t i) {
    return (uint16_t)((id * 37 + i * 11) % 256);
}

static void write_shard(const char *name, int id, int64_t n) {
    uint16_t *t = malloc((size_t)(n ? n : 1) * sizeof *t);
    for (int64_t i = 0; i < n; i++) t[i] = tok_of(id, i);
    char p[MT_TOKENS_PATH];
    path_of(p, name);
    mt_err e = {0};
    CHECK(mt_tokens_write(p, t, n, &e) == MT_OK, "write %s: %s", p, e.msg);
    free(t);
}

static long long file_size(const char *name) {
    char p[MT_TOKENS_PATH];
    path_of(p, name);
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* Overwrites bytes at offset of a file (or appends when offset < 0). */
static void patch(const char *name, long offset, const void *bytes, size_t n) {
    char p[MT_TOKENS_PATH];
    path_of(p, name);
    FILE *f = fopen(p, offset < 0 ? "ab" : "r+b");
    if (offset >= 0) fseek(f, offset, SEEK_SET);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static void patch_le32(const char *name, long offset, int32_t v) {
    unsigned char b[4];
    uint32_t u = (uint32_t)v;
    for (int i = 0; i < 4; i++) b[i] = (unsigned char)(u >> (8 * i));
    patch(name, offset, b, 4);
}

static void test_write_bytes(void) {
    write_shard("raw.bin", 1, 5);
    CHECK(file_size("raw.bin") == 1024 + 10, "5 tokens: %d bytes expected, file has %lld",
          1024 + 10, file_size("raw.bin"));
    char p[MT_TOKENS_PATH];
    path_of(p, "raw.bin");
    unsigned char b[1034];
    FILE *f = fopen(p, "rb");
    size_t got = f ? fread(b, 1, sizeof b, f) : 0;
    if (f) fclose(f);
    CHECK(got == sizeof b, "read %zu of %zu bytes", got, sizeof b);
    int32_t h[3];
    for (int k = 0; k < 3; k++)
        h[k] = (int32_t)((uint32_t)b[4 * k] | (uint32_t)b[4 * k + 1] << 8 |
                         (uint32_t)b[4 * k + 2] << 16 | (uint32_t)b[4 * k + 3] << 24);
    CHECK(h[0] == 20240520 && h[1] == 1 && h[2] == 5,
          "header (little-endian): magic %d version %d count %d, expected 20240520 1 5", h[0], h[1],
          h[2]);
    int nonzero = 0;
    for (int i = 12; i < 1024; i++) nonzero += b[i] != 0;
    CHECK(nonzero == 0, "header ints 3..255 are zero; %d bytes are not", nonzero);
    for (int i = 0; i < 5; i++) {
        unsigned v = b[1024 + 2 * i] | b[1024 + 2 * i + 1] << 8;
        CHECK(v == tok_of(1, i), "token %d on disk (little-endian) is %u, expected %u", i, v,
              (unsigned)tok_of(1, i));
    }
    /* no temporary file left next to it */
    int tmp = 0;
    DIR *d = opendir(dir);
    for (struct dirent *de; d && (de = readdir(d));) tmp += strstr(de->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    CHECK(tmp == 0, "%d temporary files left in %s", tmp, dir);

    mt_err e = {0};
    uint16_t one = 7;
    CHECK(mt_tokens_write("/nonexistent-dir/x.bin", &one, 1, &e) == MT_ERR_USAGE &&
              strstr(e.msg, "/nonexistent-dir/x.bin"),
          "write into a missing folder: code %d, message '%s'", e.code, e.msg);
    mt_err_clear(&e);
    CHECK(mt_tokens_write(p, NULL, 1LL << 31, &e) == MT_ERR_USAGE && strstr(e.msg, "2147483648"),
          "2^31 tokens do not fit an int32 header: code %d, message '%s'", e.code, e.msg);
    CHECK(file_size("raw.bin") == 1034, "the refused write left raw.bin alone (%lld bytes)",
          file_size("raw.bin"));
}

/* Shards a (10 tokens), b (7), c (0) and d (4), opened with one glob. */
static void test_open_and_windows(void) {
    static const int64_t len[4] = {10, 7, 0, 4};
    /* written out of order: the set must still come back sorted */
    write_shard("ok_train_000003.bin", 3, len[3]);
    write_shard("ok_train_000001.bin", 1, len[1]);
    write_shard("ok_train_000000.bin", 0, len[0]);
    write_shard("ok_train_000002.bin", 2, len[2]);
    char pat[MT_TOKENS_PATH];
    path_of(pat, "ok_train_*.bin");
    mt_token_set s;
    mt_err e = {0};
    CHECK(mt_tokens_open(&s, pat, 256, &e) == MT_OK, "open %s: %s", pat, e.msg);
    CHECK(s.n == 4 && s.total == 21, "4 shards with 21 tokens, got %d with %lld", s.n,
          (long long)s.total);
    for (int i = 0; i < s.n && i < 4; i++) {
        char want[MT_TOKENS_PATH];
        snprintf(want, sizeof want, "%s/ok_train_%06d.bin", dir, i);
        CHECK(!strcmp(s.shard[i].path, want), "shard %d is %s, expected %s", i, s.shard[i].path,
              want);
        CHECK(s.shard[i].ntok == len[i], "shard %d: %lld tokens, expected %lld", i,
              (long long)s.shard[i].ntok, (long long)len[i]);
        int bad = -1;
        for (int64_t j = 0; j < s.shard[i].ntok && bad < 0; j++)
            if (s.shard[i].tok[j] != tok_of(i, j)) bad = (int)j;
        CHECK(bad < 0, "shard %d token %d is %u, expected %u", i, bad,
              bad < 0 ? 0u : s.shard[i].tok[bad], bad < 0 ? 0u : tok_of(i, bad));
    }

    /* T = 3: floor((n-1)/3) windows per shard: 3 + 2 + 0 + 1 */
    const int T = 3;
    int64_t nw = mt_tokens_windows(&s, T);
    CHECK(nw == 6, "T=3: 6 windows expected, got %lld", (long long)nw);
    /* global window -> (shard, first token) */
    static const int where[6][2] = {{0, 0}, {0, 3}, {0, 6}, {1, 0}, {1, 3}, {3, 0}};
    int32_t x[3], y[3], py[3] = {0, 0, 0};
    for (int k = 0; k < 6; k++) {
        int sh = where[k][0], at = where[k][1];
        CHECK(mt_tokens_window(&s, k, T, x, y) == MT_OK, "window %d", k);
        for (int j = 0; j < T; j++) {
            CHECK(x[j] == tok_of(sh, at + j) && y[j] == tok_of(sh, at + j + 1),
                  "window %d pos %d: x=%d y=%d, expected x=%u y=%u (shard %d tokens %d..%d)", k, j,
                  x[j], y[j], (unsigned)tok_of(sh, at + j), (unsigned)tok_of(sh, at + j + 1), sh,
                  at, at + T);
        }
        if (k > 0 && where[k - 1][0] == sh)
            CHECK(py[T - 1] == x[0], "windows %d and %d share one token: last y %d, first x %d",
                  k - 1, k, py[T - 1], x[0]);
        memcpy(py, y, sizeof y);
    }
    /* the last window of a shard ends at its last token at most */
    CHECK(mt_tokens_window(&s, 2, T, x, y) == MT_OK && y[T - 1] == tok_of(0, 9),
          "window 2 ends at token 9 of shard 0: y=%d, expected %u", y[T - 1],
          (unsigned)tok_of(0, 9));
    x[0] = -5;
    CHECK(mt_tokens_window(&s, 6, T, x, y) == MT_ERR_INTERNAL && x[0] == -5,
          "window 6 of 6 is refused and leaves x alone");
    CHECK(mt_tokens_window(&s, -1, T, x, y) == MT_ERR_INTERNAL, "window -1 is refused");
    CHECK(mt_tokens_window(&s, 0, 0, x, y) == MT_ERR_INTERNAL, "T=0 is refused");

    /* other T: exact fits, and windows longer than a shard */
    struct {
        int T;
        int64_t want;
    } cases[] = {{1, 9 + 6 + 0 + 3}, {9, 1}, {6, 1 + 1}, {10, 0}, {0, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        CHECK(mt_tokens_windows(&s, cases[c].T) == cases[c].want, "T=%d: %lld windows, got %lld",
              cases[c].T, (long long)cases[c].want, (long long)mt_tokens_windows(&s, cases[c].T));
    int32_t x9[9], y9[9];
    CHECK(mt_tokens_window(&s, 0, 9, x9, y9) == MT_OK && x9[0] == tok_of(0, 0) &&
              y9[8] == tok_of(0, 9),
          "T=9: the one window is all of shard 0");
    int32_t x6[6], y6[6];
    CHECK(mt_tokens_window(&s, 1, 6, x6, y6) == MT_OK && x6[0] == tok_of(1, 0) &&
              y6[5] == tok_of(1, 6),
          "T=6: window 1 is all of shard 1 (shard 0 has one)");
    mt_tokens_close(&s);
    CHECK(s.n == 0 && s.shard == NULL && s.total == 0, "close empties the set");

    /* vocab bounds: tokens up to vocab-1 pass */
    uint16_t edge[3] = {0, 254, 255};
    char p[MT_TOKENS_PATH];
    path_of(p, "edge.bin");
    CHECK(mt_tokens_write(p, edge, 3, &e) == MT_OK, "write edge.bin: %s", e.msg);
    CHECK(mt_tokens_open(&s, p, 256, &e) == MT_OK && s.n == 1 && s.total == 3,
          "token 255 with vocab 256 is fine: %s", e.msg);
    mt_tokens_close(&s);
    /* a name with glob characters is taken literally */
    path_of(p, "odd[1].bin");
    CHECK(mt_tokens_write(p, edge, 3, &e) == MT_OK, "write odd[1].bin: %s", e.msg);
    CHECK(mt_tokens_open(&s, p, 256, &e) == MT_OK && s.n == 1 && !strcmp(s.shard[0].path, p),
          "odd[1].bin opens as one file: %s", e.msg);
    mt_tokens_close(&s);
}

/* Opens pattern (a name in dir) expecting MT_ERR_DATA with a message holding
 * the path and every fragment. */
static void expect_error(const char *what, const char *name, int vocab, const char *frag1,
                         const char *frag2) {
    char p[MT_TOKENS_PATH];
    path_of(p, name);
    mt_token_set s;
    mt_err e = {0};
    int rc = mt_tokens_open(&s, p, vocab, &e);
    CHECK(rc == MT_ERR_DATA && e.code == MT_ERR_DATA, "%s: code %d, expected %d (%s)", what, rc,
          MT_ERR_DATA, e.msg);
    CHECK(strstr(e.msg, p) != NULL, "%s: message does not name %s: '%s'", what, p, e.msg);
    CHECK(strstr(e.msg, frag1) != NULL, "%s: message lacks '%s': '%s'", what, frag1, e.msg);
    if (frag2)
        CHECK(strstr(e.msg, frag2) != NULL, "%s: message lacks '%s': '%s'", what, frag2, e.msg);
    CHECK(s.n == 0 && s.shard == NULL && s.total == 0, "%s: set left empty", what);
    mt_tokens_close(&s);
    printf("  %s -> %s\n", what, e.msg);
}

static void test_errors(void) {
    write_shard("magic.bin", 0, 8);
    patch_le32("magic.bin", 0, 12345);
    expect_error("wrong magic", "magic.bin", 256, "has magic 12345, not 20240520",
                 "not an llm.c token shard");

    write_shard("version.bin", 0, 8);
    patch_le32("version.bin", 4, 2);
    expect_error("wrong version", "version.bin", 256, "has version 2, not 1", NULL);

    write_shard("negative.bin", 0, 8);
    patch_le32("negative.bin", 8, -3);
    expect_error("negative count", "negative.bin", 256, "header says -3 tokens", NULL);

    write_shard("truncated.bin", 0, 488); /* 2000 bytes */
    patch_le32("truncated.bin", 8, 1000);
    expect_error("truncated", "truncated.bin", 256,
                 "is truncated: header says 1000 tokens (3024 bytes), file has 2000 bytes", NULL);

    write_shard("trailing.bin", 0, 8);
    patch("trailing.bin", -1, "\x01", 1);
    expect_error("trailing bytes", "trailing.bin", 256,
                 "has 1 trailing byte:", "header says 8 tokens (1040 bytes), file has 1041 bytes");

    write_shard("short.bin", 0, 0);
    char p[MT_TOKENS_PATH];
    path_of(p, "short.bin");
    CHECK(truncate(p, 100) == 0, "truncate short.bin");
    expect_error("header shorter than 1024 bytes", "short.bin", 256,
                 "has 100 bytes, less than the 1024-byte header", NULL);
    path_of(p, "empty.bin");
    fclose(fopen(p, "wb"));
    expect_error("empty file", "empty.bin", 256, "has 0 bytes", NULL);

    uint16_t t[20];
    for (int i = 0; i < 20; i++) t[i] = (uint16_t)i;
    t[12] = 300;
    t[15] = 65535;
    path_of(p, "vocab.bin");
    mt_err e = {0};
    CHECK(mt_tokens_write(p, t, 20, &e) == MT_OK, "write vocab.bin: %s", e.msg);
    expect_error("token >= vocab_size", "vocab.bin", 256,
                 "token 300 at position 12 is >= vocab_size 256", NULL);
    expect_error("token == vocab_size", "vocab.bin", 300,
                 "token 300 at position 12 is >= vocab_size 300", NULL);
    expect_error("token 65535 >= vocab_size", "vocab.bin", 301,
                 "token 65535 at position 15 is >= vocab_size 301", NULL);
    mt_token_set s;
    CHECK(mt_tokens_open(&s, p, 65536, &e) == MT_OK && s.total == 20,
          "vocab 65536 takes every uint16: %s", e.msg);
    mt_tokens_close(&s);

    expect_error("no file matching the pattern", "nothing_*.bin", 256, "no token shard matches",
                 NULL);
    expect_error("a missing single file", "missing.bin", 256, "no token shard matches", NULL);

    /* one bad shard among good ones: the error names it, nothing stays open */
    write_shard("mix_000000.bin", 0, 5);
    write_shard("mix_000001.bin", 1, 5);
    write_shard("mix_000002.bin", 2, 5);
    patch_le32("mix_000001.bin", 8, 4);
    char bad[MT_TOKENS_PATH], pat[MT_TOKENS_PATH];
    path_of(bad, "mix_000001.bin");
    path_of(pat, "mix_*.bin");
    mt_err_clear(&e);
    CHECK(mt_tokens_open(&s, pat, 256, &e) == MT_ERR_DATA && strstr(e.msg, bad) &&
              strstr(e.msg, "2 trailing bytes") && s.n == 0 && s.shard == NULL,
          "glob with one bad shard: code %d, '%s'", e.code, e.msg);
    mt_tokens_close(&s);

    /* a folder is not a shard */
    char sub[MT_TOKENS_PATH];
    path_of(sub, "folder.bin");
    mkdir(sub, 0777);
    expect_error("a folder", "folder.bin", 256, "is not a regular file", NULL);
    rmdir(sub);
}

/* Removes every file in dir, then dir (the test makes no subfolders that stay). */
static void remove_dir(void) {
    DIR *d = opendir(dir);
    char p[MT_TOKENS_PATH];
    for (struct dirent *de; d && (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        path_of(p, de->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/mt_test_tokens.XXXXXX");
    if (!mkdtemp(dir)) {
        printf("FAIL: cannot make a temporary folder\n");
        return 1;
    }
    test_write_bytes();
    test_open_and_windows();
    test_errors();
    remove_dir();
    return mt_test_finish("test_tokens");
}
