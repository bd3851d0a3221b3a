/*
 * gpt2_merge.c - BPE merges of one pre-token (gpt2_merge.h), two ways with
 * the same result:
 *   - short words (<= MERGE_SHORT bytes, nearly all): GPT-2's loop as
 *     written, O(n^2): find the lowest-ranked pair, merge all of its
 *     occurrences in one left-to-right pass, repeat;
 *   - long words: a min-heap of candidate pairs ordered by (rank, position)
 *     over a linked list of symbols, O(n log n), so a megabyte without a
 *     space or punctuation takes a second, not hours.
 * They agree because GPT-2's merges are consistent (checked at load,
 * gpt2_vocab.c): every merge's parts are bytes or made by a lower-ranked
 * merge, so a pair that a merge creates always ranks after it, and popping
 * pairs by (rank, position) merges all occurrences of the lowest-ranked pair,
 * leftmost first, before any other pair, exactly as the pass does; an
 * occurrence that overlaps one merged before it is stale and skipped, as the
 * pass skips it.
 */
#include "io/gpt2_merge.h"

#include <stdlib.h>
#include <string.h>

#define MERGE_SHORT 64
#define NONE        UINT32_MAX
#define DEAD        0xFFFFu /* symbol of a merged-away position: no token has this id */

/* A candidate: symbols at pos and nxt, when they are still a and b. */
typedef struct {
    uint32_t rank, pos, nxt;
    uint16_t a, b;
} cand;

static int reserve(mt_gpt2_merge_scratch *w, size_t n) {
    if (n <= w->cap) return 0;
    uint16_t *sym = realloc(w->sym, n * sizeof *sym);
    if (sym) w->sym = sym;
    uint32_t *next = realloc(w->next, n * sizeof *next);
    if (next) w->next = next;
    uint32_t *prev = realloc(w->prev, n * sizeof *prev);
    if (prev) w->prev = prev;
    cand *heap = realloc(w->heap, 3 * n * sizeof *heap);
    if (heap) w->heap = heap;
    if (!sym || !next || !prev || !heap) return -1;
    w->cap = n;
    return 0;
}

static size_t merge_short(const mt_gpt2_vocab *v, uint16_t *sym, size_t m) {
    while (m > 1) {
        const gpt2_merge *best = NULL;
        for (size_t i = 0; i + 1 < m; i++) {
            const gpt2_merge *g = gpt2_merge_find(v, sym[i], sym[i + 1]);
            if (g && (!best || g->rank < best->rank)) best = g;
        }
        if (!best) break;
        uint16_t a = (uint16_t)(best->key >> 16), b = (uint16_t)(best->key & 0xFFFF);
        size_t j = 0;
        for (size_t i = 0; i < m;) {
            if (i + 1 < m && sym[i] == a && sym[i + 1] == b) {
                sym[j++] = best->merged;
                i += 2;
            } else {
                sym[j++] = sym[i++];
            }
        }
        m = j;
    }
    return m;
}

static int cand_less(const cand *x, const cand *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0 && cand_less(&c, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

/* Pushes the pair starting at pos, if it has a merge. */
static void push_pair(const mt_gpt2_vocab *v, const mt_gpt2_merge_scratch *w, cand *h, size_t *n,
                      uint32_t pos) {
    uint32_t nxt = pos == NONE ? NONE : w->next[pos];
    if (nxt == NONE) return;
    const gpt2_merge *g = gpt2_merge_find(v, w->sym[pos], w->sym[nxt]);
    if (g) heap_push(h, n, (cand){g->rank, pos, nxt, w->sym[pos], w->sym[nxt]});
}

static size_t merge_long(const mt_gpt2_vocab *v, mt_gpt2_merge_scratch *w, size_t m) {
    cand *h = w->heap;
    size_t nh = 0;
    for (size_t i = 0; i < m; i++) {
        w->next[i] = i + 1 < m ? (uint32_t)(i + 1) : NONE;
        w->prev[i] = i > 0 ? (uint32_t)(i - 1) : NONE;
    }
    for (size_t i = 0; i + 1 < m; i++) push_pair(v, w, h, &nh, (uint32_t)i);
    while (nh > 0) {
        cand c = heap_pop(h, &nh);
        if (w->sym[c.pos] != c.a || w->next[c.pos] != c.nxt || w->sym[c.nxt] != c.b)
            continue; /* stale: one of the two was merged since */
        w->sym[c.pos] = gpt2_merge_find(v, c.a, c.b)->merged;
        w->sym[c.nxt] = DEAD;
        w->next[c.pos] = w->next[c.nxt];
        if (w->next[c.nxt] != NONE) w->prev[w->next[c.nxt]] = c.pos;
        push_pair(v, w, h, &nh, w->prev[c.pos]);
        push_pair(v, w, h, &nh, c.pos);
    }
    size_t j = 0;
    for (uint32_t i = 0; i != NONE; i = w->next[i]) w->sym[j++] = w->sym[i];
    return j;
}

int mt_gpt2_merge_word(const mt_gpt2_vocab *v, mt_gpt2_merge_scratch *w, const uint8_t *s, size_t n,
                       const uint16_t **tok, size_t *m) {
    if (reserve(w, n)) return -1;
    for (size_t i = 0; i < n; i++) w->sym[i] = v->byte_tok[s[i]];
    *m = n <= MERGE_SHORT ? merge_short(v, w->sym, n) : merge_long(v, w, n);
    *tok = w->sym;
    return 0;
}

void mt_gpt2_merge_free(mt_gpt2_merge_scratch *w) {
    free(w->sym);
    free(w->next);
    free(w->prev);
    free(w->heap);
    memset(w, 0, sizeof *w);
}
