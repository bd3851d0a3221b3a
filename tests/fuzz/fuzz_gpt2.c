/*
 * fuzz_gpt2.c - libFuzzer target: the GPT-2 BPE tokenizer (io/gpt2_bpe.c,
 * gpt2_merge.c): encoding any bytes (invalid UTF-8 included) and decoding.
 *
 * Input: up to 4 documents separated by NUL bytes. Properties: encoding
 * never fails; every token is < 50257; decoding gives the documents back
 * byte for byte, joined by "<|endoftext|>"; encoding the documents together
 * equals encoding each alone with the EOT token between; and the input
 * read as uint16 ids decodes, or fails as a data error exactly when one id
 * is >= 50257.
 *
 * The vocabulary (encoder.json, vocab.bpe) is read once from
 * $MPITRAIN_GPT2_VOCAB, else from the build folder's gpt2_vocab/ (where the
 * ctest fetches it with scripts/fetch_gpt2_vocab.sh); without it the target
 * exits 77 saying so.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/gpt2_bpe.h"

#ifndef MT_FUZZ_GPT2_DIR
#define MT_FUZZ_GPT2_DIR "gpt2_vocab"
#endif
#define MAX_DOCS 4

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mt_gpt2_bpe *bpe;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *dir = getenv("MPITRAIN_GPT2_VOCAB");
    if (!dir || !dir[0]) dir = MT_FUZZ_GPT2_DIR;
    mt_err e = {0};
    if (mt_gpt2_bpe_load(&bpe, dir, &e)) {
        fprintf(stderr,
                "skip - fuzz_gpt2 needs GPT-2's vocabulary in %s (%s); fetch it with "
                "scripts/fetch_gpt2_vocab.sh --out %s, or set MPITRAIN_GPT2_VOCAB\n",
                dir, e.msg, dir);
        exit(77);
    }
    return 0;
}

static void fail(const char *what) {
    fprintf(stderr, "fuzz: %s\n", what);
    abort();
}

static void encode(const uint8_t *const *docs, const size_t *lens, size_t n, mt_gpt2_tokens *out) {
    mt_err e = {0};
    memset(out, 0, sizeof *out);
    if (mt_gpt2_bpe_encode(bpe, docs, lens, n, out, &e)) fail(e.msg);
    for (size_t i = 0; i < out->n; i++)
        if (out->tok[i] >= MT_GPT2_VOCAB) fail("a token id >= 50257");
}

static void check_decode_ids(const uint8_t *data, size_t size) {
    size_t n = size / 2;
    uint16_t *ids = malloc(n ? n * sizeof *ids : 1);
    int any_bad = 0;
    for (size_t i = 0; i < n; i++) {
        ids[i] = (uint16_t)(data[2 * i] | data[2 * i + 1] << 8);
        any_bad |= ids[i] >= MT_GPT2_VOCAB;
    }
    uint8_t *text = NULL;
    size_t len = 0;
    mt_err e = {0};
    int rc = mt_gpt2_bpe_decode(bpe, ids, n, &text, &len, &e);
    if (rc) fz_check_err(&e, "mt_gpt2_bpe_decode");
    if (any_bad != (rc == MT_ERR_DATA)) fail("decode's verdict on the ids is wrong");
    free(text);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *docs[MAX_DOCS];
    size_t lens[MAX_DOCS], nd = 0, start = 0;
    while (nd < MAX_DOCS) { /* the last document takes the rest, NULs included */
        const uint8_t *nul =
            nd < MAX_DOCS - 1 && start < size ? memchr(data + start, 0, size - start) : NULL;
        size_t end = nul ? (size_t)(nul - data) : size;
        docs[nd] = data + start;
        lens[nd++] = end - start;
        if (!nul) break;
        start = end + 1;
    }
    mt_gpt2_tokens all;
    encode(docs, lens, nd, &all);
    uint8_t *text = NULL;
    size_t len = 0;
    mt_err e = {0};
    if (mt_gpt2_bpe_decode(bpe, all.tok, all.n, &text, &len, &e)) fail(e.msg);
    /* the documents joined by "<|endoftext|>" */
    size_t o = 0;
    for (size_t d = 0; d < nd; d++) {
        if (d) {
            if (len - o < 13 || memcmp(text + o, "<|endoftext|>", 13) != 0)
                fail("no <|endoftext|> between two documents");
            o += 13;
        }
        if (len - o < lens[d] || (lens[d] && memcmp(text + o, docs[d], lens[d]) != 0))
            fail("decode(encode(x)) differs from x");
        o += lens[d];
    }
    if (o != len) fail("decode(encode(x)) is longer than x");
    /* each document alone, EOT between */
    size_t k = 0;
    for (size_t d = 0; d < nd; d++) {
        mt_gpt2_tokens one;
        encode(&docs[d], &lens[d], 1, &one);
        if (d && (k >= all.n || all.tok[k++] != MT_GPT2_EOT)) fail("EOT missing between documents");
        if (all.n - k < one.n || (one.n && memcmp(all.tok + k, one.tok, one.n * 2) != 0))
            fail("a document encodes differently alone than among others");
        k += one.n;
        free(one.tok);
    }
    if (k != all.n) fail("the documents together have more tokens than alone");
    free(text);
    free(all.tok);
    check_decode_ids(data, size);
    return 0;
}
