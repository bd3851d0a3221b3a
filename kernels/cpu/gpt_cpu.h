/*
 * gpt_cpu.h - the CPU backend's transformer (GPT) ops, defined in gpt_cpu.c
 * and hooked into the backend struct in backend_cpu.c, and the matmul
 * precision both files follow. Internal to kernels/cpu: callers reach these
 * only through mt_backend (kernels/backend.h, where each op's shapes and
 * semantics are the contract).
 */
#ifndef MT_GPT_CPU_H
#define MT_GPT_CPU_H

#include <stddef.h>
#include <stdint.h>

void mt_cpu_add(float *out, const float *a, const float *b, size_t n);
void mt_cpu_accumulate(float *dst, const float *src, size_t n);
void mt_cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                              const float *b, int N, int C);
void mt_cpu_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                               const float *w, const float *mean, const float *rstd, int N, int C);
void mt_cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C,
                              int NH);
void mt_cpu_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH);
void mt_cpu_embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                              int B, int T, int C);
void mt_cpu_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                               int B, int T, int C);
void mt_cpu_dropout_forward(float *y, const float *x, size_t n, float p, uint64_t seed,
                            uint64_t stream, uint64_t offset);
void mt_cpu_dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t seed,
                             uint64_t stream, uint64_t offset);

/* Matmul precision and its helpers, defined in backend_cpu.c and shared with
 * the attention ops here. set_precision: 1 rounds every matmul operand to
 * bf16 (kernels/bf16.h), 0 is plain fp32. */
void mt_cpu_set_precision(int bf16);
int mt_cpu_precision_bf16(void);
/* Called first in every parallel region whose threads call cblas_sgemm:
 * makes those calls single-threaded even in a team of one, so that a
 * product's bits never depend on the thread count (backend_cpu.c). */
void mt_cpu_blas_serial(void);
/* dst(rows,cols) = bf16(src(rows,cols)), row-major with leads ldd and lds;
 * elements past cols in each row are not touched. */
void mt_cpu_bf16_round_block(float *dst, int ldd, const float *src, int lds, int rows, int cols);
/* *buf grown to at least n floats (64-byte aligned; old contents dropped),
 * *cap its size; aborts with a message when memory runs out. One buffer per
 * call site, never freed; not for use by two threads at once. */
float *mt_cpu_scratch(float **buf, size_t *cap, size_t n);

#endif
