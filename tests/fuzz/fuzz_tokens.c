/*
 * fuzz_tokens.c - libFuzzer target: the token-shard reader (io/tokens.c).
 *
 * Input: the bytes of one shard file (header of 256 int32, then uint16
 * tokens), written to a scratch file and opened with mt_tokens_open under
 * two vocabulary sizes (GPT-2's, and one from the input's length, so that
 * "token >= vocab_size" is reached). Properties: a failure is a data error
 * (exit 3) with a message; a shard that opens has exactly (size - 1024) / 2
 * tokens, all below vocab_size, every window reads inside it, and writing
 * the tokens back with mt_tokens_write gives the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what) {
    fprintf(stderr, "fuzz: %s\n", what);
    abort();
}

static void check_open(const char *path, const uint8_t *data, size_t size, int vocab) {
    mt_token_set s;
    mt_err e = {0};
    if (mt_tokens_open(&s, path, vocab, &e)) {
        fz_check_err(&e, "mt_tokens_open");
        if (e.code != MT_ERR_DATA) fail("mt_tokens_open failed with another code than 3");
        if (s.n != 0 || s.shard != NULL) fail("a failed open left shards behind");
        return;
    }
    if (s.n != 1 || size < MT_TOKENS_HEADER_BYTES ||
        s.total != (int64_t)(size - MT_TOKENS_HEADER_BYTES) / 2)
        fail("an opened shard's token count differs from its size");
    for (int64_t i = 0; i < s.total; i++)
        if (s.shard[0].tok[i] >= vocab) fail("a token >= vocab_size got through");
    int32_t x[8], y[8];
    for (int T = 1; T <= 8; T++) {
        int64_t w = mt_tokens_windows(&s, T);
        if (w > 0 && (mt_tokens_window(&s, 0, T, x, y) || mt_tokens_window(&s, w - 1, T, x, y)))
            fail("a counted window does not read");
        if (mt_tokens_window(&s, w, T, x, y) != MT_ERR_INTERNAL)
            fail("a window past the end reads");
    }
    /* the writer gives back the same file */
    const char *copy = fz_tmp("copy");
    if (mt_tokens_write(copy, s.shard[0].tok, s.total, &e)) fail(e.msg);
    FILE *f = fopen(copy, "rb");
    uint8_t *back = malloc(size + 1);
    size_t got = f && back ? fread(back, 1, size + 1, f) : 0;
    if (f) fclose(f);
    /* header words 3.. are not checked by the reader and written as 0 */
    uint8_t *want = malloc(size);
    if (want) {
        memcpy(want, data, size);
        memset(want + 12, 0, MT_TOKENS_HEADER_BYTES - 12);
    }
    if (got != size || !want || memcmp(back, want, size) != 0)
        fail("mt_tokens_write does not give the shard back");
    free(want);
    free(back);
    remove(copy);
    mt_tokens_close(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_tmp("shard");
    fz_write_file(path, data, size);
    check_open(path, data, size, 50257);
    check_open(path, data, size, 1 + (int)(size % 600));
    remove(path);
    return 0;
}
