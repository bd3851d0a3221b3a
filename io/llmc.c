/* llmc.c - llm.c's GPT-2 model file (see llmc.h). */
#include "io/llmc.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "io/files.h"

#define LLMC_HEADER_INTS 256

int mt_llmc_write_tmp(const char *tmp, const mt_llmc_shape *s, const float *const *part,
                      const size_t *len, int n, mt_err *e) {
    int32_t h[LLMC_HEADER_INTS] = {MT_LLMC_MAGIC, MT_LLMC_VERSION, s->max_t,    s->vocab,
                                   s->layers,     s->heads,        s->channels, s->vocab_padded};
    unsigned char le[LLMC_HEADER_INTS * 4];
    for (int i = 0; i < LLMC_HEADER_INTS; i++)
        for (int b = 0; b < 4; b++) le[4 * i + b] = (unsigned char)((uint32_t)h[i] >> (8 * b));
    FILE *f = fopen(tmp, "wb");
    if (!f) return mt_err_set(e, MT_ERR_USAGE, "cannot write %s: %s", tmp, strerror(errno));
    int bad = fwrite(le, 1, sizeof le, f) != sizeof le;
    size_t pad = (size_t)(s->vocab_padded - s->vocab) * (size_t)s->channels;
    for (int i = 0; !bad && i < n; i++) {
        bad = mt_file_put_f32le(f, part[i], len[i]) != 0;
        if (!bad && i == 0) bad = mt_file_put_f32le(f, NULL, pad) != 0; /* wte's padding rows */
    }
    return mt_file_close_tmp(f, tmp, bad, e);
}
