/*
 * gpt2_bpe_tool.c - the GPT-2 tokenizer library (io/gpt2_bpe.h) from the
 * command line, for tests/test_gpt2_bpe.sh and the speed figure:
 *
 *   gpt2_bpe_tool VOCAB_DIR encode IN OUT.u16   tokens of IN, little-endian uint16
 *   gpt2_bpe_tool VOCAB_DIR decode IN.u16 OUT   the bytes of the tokens
 *   gpt2_bpe_tool VOCAB_DIR speed IN REPEAT     encodes IN REPEAT times, prints MB/s
 *   gpt2_bpe_tool VOCAB_DIR roundtrip FILE...   decode(encode(x)) == x for each file
 *
 * Threads: OMP_NUM_THREADS. Exit 0 on success, the error's code otherwise.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/files.h"
#include "io/gpt2_bpe.h"

static int write_all(const char *path, const void *p, size_t n, mt_err *e) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0)
        return mt_err_set(e, MT_ERR_USAGE, "cannot write %s", path);
    return MT_OK;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run(mt_gpt2_bpe *t, const char *cmd, const char *a, const char *b, mt_err *e) {
    char *buf = NULL;
    size_t len = 0;
    if (mt_file_read(a, "input", MT_ERR_DATA, &buf, &len, e)) return e->code;
    const uint8_t *doc = (const uint8_t *)buf;
    mt_gpt2_tokens tok = {NULL, 0, 0};
    if (!strcmp(cmd, "encode")) {
        if (!mt_gpt2_bpe_encode(t, &doc, &len, 1, &tok, e))
            write_all(b, tok.tok, tok.n * sizeof *tok.tok, e);
    } else if (!strcmp(cmd, "decode")) {
        uint8_t *text = NULL;
        size_t n = 0;
        if (!mt_gpt2_bpe_decode(t, (const uint16_t *)buf, len / 2, &text, &n, e))
            write_all(b, text, n, e);
        free(text);
    } else if (!strcmp(cmd, "speed")) {
        int reps = atoi(b);
        double best = 1e30;
        for (int r = 0; r < reps && !e->code; r++) {
            tok.n = 0;
            double t0 = now();
            mt_gpt2_bpe_encode(t, &doc, &len, 1, &tok, e);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        if (!e->code)
            printf("gpt2_bpe speed: %zu bytes -> %zu tokens, best of %d: %.3f s, %.2f MB/s on %d "
                   "thread(s)\n",
                   len, tok.n, reps, best, (double)len / best / 1e6, omp_get_max_threads());
    } else {
        mt_err_set(e, MT_ERR_USAGE, "unknown command '%s'", cmd);
    }
    free(tok.tok);
    free(buf);
    return e->code;
}

/* decode(encode(x)) == x for each file; names each one that differs. */
static int roundtrip(mt_gpt2_bpe *t, int n, char **files, mt_err *e) {
    int bad = 0;
    for (int i = 0; i < n && !e->code; i++) {
        char *buf = NULL;
        size_t len = 0, dlen = 0;
        uint8_t *text = NULL;
        mt_gpt2_tokens tok = {NULL, 0, 0};
        const uint8_t *doc = NULL;
        if (!mt_file_read(files[i], "input", MT_ERR_DATA, &buf, &len, e) &&
            !mt_gpt2_bpe_encode(t, (doc = (const uint8_t *)buf, &doc), &len, 1, &tok, e) &&
            !mt_gpt2_bpe_decode(t, tok.tok, tok.n, &text, &dlen, e) &&
            (dlen != len || memcmp(text, buf, len) != 0)) {
            printf("roundtrip differs: %s (%zu bytes, %zu decoded)\n", files[i], len, dlen);
            bad++;
        }
        free(text);
        free(tok.tok);
        free(buf);
    }
    if (!e->code && bad) mt_err_set(e, MT_ERR_DATA, "%d of %d round trips differ", bad, n);
    if (!e->code) printf("roundtrip ok: %d files\n", n);
    return e->code;
}

int main(int argc, char **argv) {
    mt_err e;
    mt_err_clear(&e);
    if (argc >= 4 && !strcmp(argv[2], "roundtrip")) {
        mt_gpt2_bpe *t = NULL;
        if (!mt_gpt2_bpe_load(&t, argv[1], &e)) roundtrip(t, argc - 3, argv + 3, &e);
        mt_gpt2_bpe_free(t);
        if (e.code) mt_err_print(&e);
        return e.code;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: gpt2_bpe_tool VOCAB_DIR encode|decode|speed IN OUT|REPEAT\n");
        return 2;
    }
    mt_gpt2_bpe *t = NULL;
    if (!mt_gpt2_bpe_load(&t, argv[1], &e)) run(t, argv[2], argv[3], argv[4], &e);
    mt_gpt2_bpe_free(t);
    if (e.code) mt_err_print(&e);
    return e.code;
}
