/*
 * llmc.h - writing a GPT-2 in llm.c's model file layout (gpt2_124M.bin,
 * version 3: float32), which llm.c's train_gpt2.c / .cu load:
 *
 *   header   256 int32 little-endian: [0] 20240326 (magic), [1] 3 (version:
 *            float32 weights), [2] maxT (block size), [3] V (vocabulary),
 *            [4] L (layers), [5] NH (heads), [6] C (channels), [7] Vp (the
 *            vocabulary padded), the rest 0
 *   weights  float32 little-endian, back to back, in this order and layout
 *            (PyTorch Linear's (out, in), each block's tensor of one kind
 *            stacked over the L blocks):
 *              wte (Vp, C): V rows, then Vp - V rows of zeros
 *              wpe (maxT, C)
 *              ln1w, ln1b (L, C)   qkvw (L, 3C, C)   qkvb (L, 3C)
 *              attprojw (L, C, C)  attprojb (L, C)   ln2w, ln2b (L, C)
 *              fcw (L, 4C, C)      fcb (L, 4C)
 *              fcprojw (L, C, 4C)  fcprojb (L, C)
 *              lnfw, lnfb (C)
 */
#ifndef MT_LLMC_H
#define MT_LLMC_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define MT_LLMC_MAGIC   20240326
#define MT_LLMC_VERSION 3

typedef struct {
    int32_t max_t, vocab, layers, heads, channels, vocab_padded;
} mt_llmc_shape;

/*
 * Writes the header of s and then the n arrays part[i] (len[i] floats each)
 * to the new file tmp, inserting (vocab_padded - vocab) * channels zeros
 * after the first array (wte's V rows), so part lists wte, wpe, then every
 * kind's L blocks in the order above, then lnfw, lnfb. Not committed: the
 * caller renames tmp into place (mt_file_commit). Output errors are
 * MT_ERR_USAGE; on failure tmp is removed.
 */
int mt_llmc_write_tmp(const char *tmp, const mt_llmc_shape *s, const float *const *part,
                      const size_t *len, int n, mt_err *e);

#endif
