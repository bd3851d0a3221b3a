/*
 * tokens.h - token shard files, the format of llm.c (karpathy/llm.c,
 * dev/data/data_common.py), so shards made by that ecosystem's data scripts
 * (GPT-2 BPE: tinyshakespeare, fineweb, ...) are read as they are.
 *
 * A shard is a header of 256 little-endian int32 (header[0] = 20240520, the
 * magic; header[1] = 1, the version; header[2] = n, the token count; the rest
 * 0 and not checked), then n little-endian uint16 tokens: exactly
 * 1024 + 2n bytes. A data set is a glob of shards taken in sorted order
 * (data/x_train_*.bin).
 *
 * Reading validates every shard whole before anything uses it (magic,
 * version, count, exact size, every token < vocab_size) and maps it
 * read-only, so the ranks of one node share one copy in the page cache.
 * Big-endian hosts get a byte-swapped private copy instead of the mapping.
 *
 * Training windows follow llm.c's loader: window k of a shard is the T+1
 * tokens [k*T, k*T+T]; inputs x are its first T, targets y its last T, so
 * consecutive windows share one token. Windows never cross a shard boundary
 * and are numbered shard by shard in file order.
 */
#ifndef MT_TOKENS_H
#define MT_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define MT_TOKENS_MAGIC        20240520
#define MT_TOKENS_VERSION      1
#define MT_TOKENS_HEADER_BYTES 1024
#define MT_TOKENS_HEADER_INTS  256
#define MT_TOKENS_MAX          2147483647LL /* most tokens one header can count (int32) */
#define MT_TOKENS_PATH         4096

typedef struct {
    char path[MT_TOKENS_PATH]; /* the file, as the pattern matched it */
    int64_t ntok;              /* tokens in the file */
    const uint16_t *tok;       /* (ntok) token ids in host byte order; read-only */
    void *base;                /* what mt_tokens_close releases: the mapping or the copy */
    size_t base_bytes;         /* its length; 0 for a malloc'd copy */
} mt_token_shard;

typedef struct {
    mt_token_shard *shard; /* (n) in sorted path order */
    int n;                 /* shards */
    int64_t total;         /* tokens in all shards */
} mt_token_set;

/*
 * Opens every shard matching pattern: a glob(3) pattern (matches sorted by
 * byte order) or the name of one file (taken literally, even with glob
 * characters in it). Each bad shard, and a pattern matching nothing, is one
 * MT_ERR_DATA error naming the file (or the pattern); s is then left empty
 * (safe to close). vocab_size >= 1; every token must be below it.
 */
int mt_tokens_open(mt_token_set *s, const char *pattern, int vocab_size, mt_err *e);
void mt_tokens_close(mt_token_set *s);

/* Windows of T+1 tokens in all shards (floor((ntok-1)/T) per non-empty
 * shard); 0 when T < 1. */
int64_t mt_tokens_windows(const mt_token_set *s, int T);
/* Fills x (T) with the inputs and y (T) with the targets of global window k.
 * Returns MT_OK, or MT_ERR_INTERNAL (x, y untouched) when k is not in
 * [0, mt_tokens_windows(s, T)) or T < 1: a caller's bug. */
int mt_tokens_window(const mt_token_set *s, int64_t k, int T, int32_t *x, int32_t *y);

/* Writes n tokens (0 <= n <= MT_TOKENS_MAX) as one shard at path, atomically
 * (temporary name in the same folder, fsync, rename; io/files.h). Errors are
 * MT_ERR_USAGE (the output is bad), as for every writer in io/. */
int mt_tokens_write(const char *path, const uint16_t *tok, int64_t n, mt_err *e);

#endif
