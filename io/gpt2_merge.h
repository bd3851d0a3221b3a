/*
 * gpt2_merge.h - the byte-pair merges of one pre-token (GPT-2's encoder.py
 * bpe()): start from the byte symbols; while some adjacent pair has a merge,
 * merge every occurrence of the lowest-ranked one, left to right.
 */
#ifndef MT_GPT2_MERGE_H
#define MT_GPT2_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "io/gpt2_vocab.h"

/* Scratch of one thread, reused from word to word; zero it before the first
 * use and free it with mt_gpt2_merge_free. */
typedef struct {
    uint16_t *sym;  /* [cap] symbols */
    uint32_t *next; /* [cap] the next live symbol (heap path) */
    uint32_t *prev; /* [cap] the previous live symbol (heap path) */
    void *heap;     /* [3 * cap] candidate pairs (heap path) */
    size_t cap;
} mt_gpt2_merge_scratch;

/* Merges the n >= 1 bytes s into tokens; *tok points into the scratch and
 * holds *m tokens until the next call. -1 when out of memory. */
int mt_gpt2_merge_word(const mt_gpt2_vocab *v, mt_gpt2_merge_scratch *w, const uint8_t *s, size_t n,
                       const uint16_t **tok, size_t *m);
void mt_gpt2_merge_free(mt_gpt2_merge_scratch *w);

#endif
