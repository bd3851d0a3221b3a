/* gpt2_bpe_private.h - the tokenizer's tables, shared by gpt2_vocab.c
 * (loading) and gpt2_bpe.c (encoding). Not part of the public API. */
#ifndef MT_GPT2_BPE_PRIVATE_H
#define MT_GPT2_BPE_PRIVATE_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>

#include "io/gpt2_bpe.h"

#define GPT2_MERGE_EMPTY UINT32_MAX /* no key: ids are < 65535 */
#define GPT2_MERGE_BITS  17         /* 131072 slots for 50000 merges: load 0.38 */
#define GPT2_MERGE_MASK  ((1u << GPT2_MERGE_BITS) - 1)

/* One merge: the pair (a << 16 | b) -> its rank and the merged token. */
typedef struct {
    uint32_t key;
    uint32_t rank;
    uint16_t merged;
} gpt2_merge;

struct mt_gpt2_bpe {
    uint8_t *bytes; /* all tokens' bytes, concatenated */
    uint32_t *off;  /* [MT_GPT2_VOCAB + 1]: token id's bytes are bytes[off[id]..off[id+1]) */
    uint16_t byte_tok[256]; /* the token of each single byte */
    gpt2_merge *merges;     /* open-addressing table, GPT2_MERGE_MASK + 1 slots */
    pcre2_code *re;         /* GPT-2's pre-tokenizer regex, UTF + UCP */
    int jit;                /* 1 when re is JIT-compiled */
};

/* Fibonacci hashing: the top bits of key * 2^32/phi. */
static inline uint32_t gpt2_pair_slot(uint32_t key) {
    return (key * 2654435761u) >> (32 - GPT2_MERGE_BITS);
}

/* The merge of the adjacent tokens (a, b), or NULL when there is none. */
static inline const gpt2_merge *gpt2_merge_find(const mt_gpt2_bpe *t, uint16_t a, uint16_t b) {
    uint32_t key = (uint32_t)a << 16 | b;
    for (uint32_t i = gpt2_pair_slot(key);; i = (i + 1) & GPT2_MERGE_MASK) {
        if (t->merges[i].key == key) return &t->merges[i];
        if (t->merges[i].key == GPT2_MERGE_EMPTY) return NULL;
    }
}

#endif
