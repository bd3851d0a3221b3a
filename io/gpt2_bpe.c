/*
 * gpt2_bpe.c - GPT-2 BPE encoding and decoding (gpt2_bpe.h): UTF-8 runs,
 * the PCRE2 pre-tokenizer, merges by rank, and the chunks the OpenMP threads
 * share. The tables are loaded by gpt2_vocab.c.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "io/gpt2_bpe.h"
#include "io/gpt2_merge.h"

struct mt_gpt2_bpe {
    mt_gpt2_vocab v;
    pcre2_code *re; /* GPT-2's pre-tokenizer regex, UTF + UCP */
    int jit;        /* 1 when re is JIT-compiled */
};

#define CHUNK_BYTES (256 * 1024) /* aim of one chunk; cut only at a safe point */

static int tokens_reserve(mt_gpt2_tokens *v, size_t more) {
    if (v->n + more <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 1024;
    while (cap < v->n + more) cap *= 2;
    uint16_t *p = realloc(v->tok, cap * sizeof *p);
    if (!p) return -1;
    v->tok = p;
    v->cap = cap;
    return 0;
}

/* Length of the valid UTF-8 sequence at s[0..n) (PCRE2's definition: shortest
 * form, no surrogates, <= U+10FFFF), 0 when s[0] does not start one. */
static size_t utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    size_t k = c >= 0xC2 && c <= 0xDF   ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
    if (!k || k > n) return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] > 0x8F))
        return 0; /* overlong, surrogate, beyond U+10FFFF */
    return k;
}

/* Per-thread state: PCRE2 match data and the scratch of one pre-token. */
typedef struct {
    pcre2_match_data *md;
    mt_gpt2_merge_scratch merge;
} worker;

/* Appends the tokens of one pre-token. */
static int bpe_word(const mt_gpt2_bpe *t, worker *w, const uint8_t *s, size_t n,
                    mt_gpt2_tokens *out) {
    const uint16_t *tok;
    size_t m;
    if (mt_gpt2_merge_word(&t->v, &w->merge, s, n, &tok, &m) || tokens_reserve(out, m)) return -1;
    memcpy(out->tok + out->n, tok, m * sizeof *tok);
    out->n += m;
    return 0;
}

/* Pre-tokens of one valid UTF-8 run s[0..n) by GPT-2's regex. The pattern's
 * alternatives cover every code point, so matches tile the run; a gap would
 * still be encoded (byte by byte, as one pre-token) to keep the round trip. */
static int encode_run(const mt_gpt2_bpe *t, worker *w, const uint8_t *s, size_t n,
                      mt_gpt2_tokens *out, mt_err *e) {
    PCRE2_SIZE at = 0;
    while (at < n) {
        int rc = t->jit ? pcre2_jit_match(t->re, s, n, at, 0, w->md, NULL)
                        : pcre2_match(t->re, s, n, at, PCRE2_NO_UTF_CHECK, w->md, NULL);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH && t->jit) /* e.g. JIT stack: interpret */
            rc = pcre2_match(t->re, s, n, at, PCRE2_NO_UTF_CHECK, w->md, NULL);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(w->md);
        PCRE2_SIZE ms = rc >= 0 ? ov[0] : n, me = rc >= 0 ? ov[1] : n;
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return mt_err_set(e, MT_ERR_INTERNAL, "PCRE2 match failed: %s", (const char *)msg);
        }
        if (me <= ms) me = ms + 1 > n ? n : ms + 1; /* no empty match: the pattern has none */
        if ((ms > at && bpe_word(t, w, s + at, ms - at, out)) ||
            (me > ms && bpe_word(t, w, s + ms, me - ms, out)))
            return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for tokens");
        at = me;
    }
    return MT_OK;
}

/* One segment of a document: maximal valid UTF-8 runs through the regex,
 * every other byte a pre-token (and token) of its own. */
static int encode_segment(const mt_gpt2_bpe *t, worker *w, const uint8_t *s, size_t n,
                          mt_gpt2_tokens *out, mt_err *e) {
    size_t i = 0;
    while (i < n && !e->code) {
        size_t j = i, k;
        while (j < n && (k = utf8_len(s + j, n - j)) > 0) j += k;
        if (j > i) {
            encode_run(t, w, s + i, j - i, out, e);
        } else {
            if (tokens_reserve(out, 1))
                return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for tokens");
            out->tok[out->n++] = t->v.byte_tok[s[j++]];
        }
        i = j;
    }
    return e->code;
}

/* A chunk: from (d0, o0) to (d1, o1) in document order; an EOT follows each
 * document that ends inside the chunk, except the last document. */
typedef struct {
    size_t d0, o0, d1, o1;
} chunk;

static int printable(uint8_t c) {
    return c > ' ' && c < 0x7F;
}

/* ASCII whitespace: what the pattern's \s matches below 0x80 */
static int ascii_space(uint8_t c) {
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* The first safe cut at or after q in s[0..n), or 0: before ASCII
 * whitespace that follows a printable ASCII character (no alternative of the
 * pattern extends a match over whitespace, and none looks behind, so the
 * whitespace starts the same match whether the text before it is there or
 * not), or after a lone '\n' between two printable ASCII characters (proof
 * in docs/DATA.md). CRLF text and one-line text have the first kind. */
static size_t safe_cut(const uint8_t *s, size_t n, size_t q) {
    for (size_t i = q < 2 ? 2 : q; i < n; i++)
        if ((ascii_space(s[i]) && printable(s[i - 1])) ||
            (s[i - 1] == '\n' && printable(s[i - 2]) && printable(s[i])))
            return i;
    return 0;
}

/* Appends a chunk ending at (d, o); the next one starts right after it. */
static int push_chunk(chunk **c, size_t *k, size_t *cap, size_t *d0, size_t *o0, size_t d, size_t o,
                      size_t len_d) {
    if (*k == *cap) {
        chunk *q = realloc(*c, (*cap *= 2) * sizeof *q);
        if (!q) return -1;
        *c = q;
    }
    (*c)[(*k)++] = (chunk){*d0, *o0, d, o};
    *d0 = o == len_d ? d + 1 : d;
    *o0 = o == len_d ? 0 : o;
    return 0;
}

/* Cuts the documents into chunks of about CHUNK_BYTES (more when a document
 * has no safe cut); the cuts depend on the text only, never on threads. */
static chunk *plan_chunks(const uint8_t *const *docs, const size_t *lens, size_t ndocs,
                          size_t *nchunks) {
    size_t cap = 16, k = 0, acc = 0, d0 = 0, o0 = 0;
    chunk *c = malloc(cap * sizeof *c);
    for (size_t d = 0; c && d < ndocs; d++) {
        size_t o = 0, p;
        while (lens[d] - o + acc > CHUNK_BYTES &&
               (p = safe_cut(docs[d], lens[d], o + (CHUNK_BYTES - acc))) > 0) {
            if (push_chunk(&c, &k, &cap, &d0, &o0, d, p, lens[d])) goto oom;
            o = p, acc = 0;
        }
        acc += lens[d] - o;
        if ((acc >= CHUNK_BYTES || d + 1 == ndocs) &&
            push_chunk(&c, &k, &cap, &d0, &o0, d, lens[d], lens[d]))
            goto oom;
        if (acc >= CHUNK_BYTES) acc = 0;
    }
    *nchunks = k;
    return c;
oom:
    free(c);
    return NULL;
}

static int encode_chunk(const mt_gpt2_bpe *t, worker *w, const uint8_t *const *docs,
                        const size_t *lens, size_t ndocs, chunk c, mt_gpt2_tokens *out, mt_err *e) {
    for (size_t d = c.d0; d <= c.d1 && !e->code; d++) {
        size_t s = d == c.d0 ? c.o0 : 0, end = d == c.d1 ? c.o1 : lens[d];
        encode_segment(t, w, docs[d] + s, end - s, out, e);
        if (!e->code && end == lens[d] && d + 1 < ndocs) {
            if (tokens_reserve(out, 1))
                return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for tokens");
            out->tok[out->n++] = MT_GPT2_EOT;
        }
    }
    return e->code;
}

int mt_gpt2_bpe_encode(const mt_gpt2_bpe *t, const uint8_t *const *docs, const size_t *lens,
                       size_t ndocs, mt_gpt2_tokens *out, mt_err *e) {
    if (ndocs == 0) return MT_OK;
    size_t nc = 0;
    chunk *plan = plan_chunks(docs, lens, ndocs, &nc);
    mt_gpt2_tokens *parts = plan ? calloc(nc, sizeof *parts) : NULL;
    mt_err *errs = parts ? calloc(nc, sizeof *errs) : NULL;
    if (!errs) {
        free(plan);
        free(parts);
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the tokenizer's chunks");
    }
#pragma omp parallel
    {
        worker w = {pcre2_match_data_create_from_pattern(t->re, NULL), {0}};
#pragma omp for schedule(dynamic, 1)
        for (size_t i = 0; i < nc; i++) {
            mt_err_clear(&errs[i]);
            if (!w.md)
                mt_err_set(&errs[i], MT_ERR_INTERNAL, "out of memory for PCRE2 match data");
            else
                encode_chunk(t, &w, docs, lens, ndocs, plan[i], &parts[i], &errs[i]);
        }
        pcre2_match_data_free(w.md);
        mt_gpt2_merge_free(&w.merge);
    }
    size_t total = 0;
    for (size_t i = 0; i < nc; i++) total += parts[i].n;
    for (size_t i = 0; i < nc && !e->code; i++)
        if (errs[i].code) *e = errs[i];
    if (!e->code && tokens_reserve(out, total))
        mt_err_set(e, MT_ERR_INTERNAL, "out of memory for %zu tokens", total);
    for (size_t i = 0; i < nc; i++) {
        /* an empty part (an empty document) has no buffer, nor may out yet */
        if (!e->code && parts[i].n) {
            memcpy(out->tok + out->n, parts[i].tok, parts[i].n * sizeof *out->tok);
            out->n += parts[i].n;
        }
        free(parts[i].tok);
    }
    free(parts);
    free(errs);
    free(plan);
    return e->code;
}

int mt_gpt2_bpe_decode(const mt_gpt2_bpe *t, const uint16_t *tok, size_t n, uint8_t **text,
                       size_t *len, mt_err *e) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (tok[i] >= MT_GPT2_VOCAB)
            return mt_err_set(e, MT_ERR_DATA,
                              "token %u at position %zu is not a GPT-2 token "
                              "(vocab %d)",
                              (unsigned)tok[i], i, MT_GPT2_VOCAB);
        total += t->v.off[tok[i] + 1] - t->v.off[tok[i]];
    }
    uint8_t *p = malloc(total + 1);
    if (!p) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for %zu decoded bytes", total);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        size_t m = t->v.off[tok[i] + 1] - t->v.off[tok[i]];
        memcpy(p + o, t->v.bytes + t->v.off[tok[i]], m);
        o += m;
    }
    p[o] = 0;
    *text = p;
    *len = o;
    return MT_OK;
}

/* GPT-2's pattern, verbatim (encoder.py), compiled for UTF-8 with Unicode
 * properties for \s and \p (PCRE2_UCP); JIT when the platform has it. */
static int compile_regex(mt_gpt2_bpe *t, mt_err *e) {
    static const char pat[] =
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
    int err;
    PCRE2_SIZE at;
    t->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &at,
                          NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return mt_err_set(e, MT_ERR_INTERNAL, "PCRE2 cannot compile GPT-2's regex: %s",
                          (const char *)msg);
    }
    t->jit = pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE) == 0;
    return MT_OK;
}

int mt_gpt2_bpe_load(mt_gpt2_bpe **out, const char *dir, mt_err *e) {
    *out = NULL;
    mt_gpt2_bpe *t = calloc(1, sizeof *t);
    if (!t) return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the GPT-2 tokenizer");
    if (mt_gpt2_vocab_load(&t->v, dir, e) || compile_regex(t, e)) {
        mt_gpt2_bpe_free(t);
        return e->code;
    }
    *out = t;
    return MT_OK;
}

void mt_gpt2_bpe_free(mt_gpt2_bpe *t) {
    if (!t) return;
    pcre2_code_free(t->re);
    mt_gpt2_vocab_free(&t->v);
    free(t);
}

const uint8_t *mt_gpt2_bpe_token_bytes(const mt_gpt2_bpe *t, unsigned id, size_t *len) {
    if (id >= MT_GPT2_VOCAB) return NULL;
    *len = t->v.off[id + 1] - t->v.off[id];
    return t->v.bytes + t->v.off[id];
}
