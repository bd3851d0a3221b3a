/*
 * sbgemm_cpu.h - the CPU backend's native bf16 matmul path (sbgemm_cpu.c):
 * OpenBLAS's cblas_sbgemm (bf16 operands, fp32 accumulation, fp32 C) in
 * place of the emulation (operands rounded to bf16 into float copies, then
 * sgemm; backend_cpu.c). The path is chosen once per process, by the CPU
 * (AVX512-BF16), the OpenBLAS loaded (whether it has cblas_sbgemm at all)
 * and MPITRAIN_CPU_SBGEMM = auto | on | off (docs/CUDA.md, "bf16 on the
 * CPU"). Internal to kernels/cpu (and its tests); a run reaches the check
 * through mt_backend_cpu_bf16_check (kernels/backends.h).
 */
#ifndef MT_SBGEMM_CPU_H
#define MT_SBGEMM_CPU_H

#include <cblas.h>
#include <stddef.h>

/* cblas_sbgemm's type (OpenBLAS's cblas.h; bfloat16 is a uint16_t there) */
typedef void (*mt_cpu_sbgemm_fn)(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta,
                                 enum CBLAS_TRANSPOSE tb, blasint M, blasint N, blasint K,
                                 float alpha, const bfloat16 *A, blasint lda, const bfloat16 *B,
                                 blasint ldb, float beta, float *C, blasint ldc);

/* MPITRAIN_CPU_SBGEMM as it stands, without choosing: 0, or -1 with one line
 * in why (a value other than auto, on, off or empty; or on where the
 * loaded OpenBLAS has no cblas_sbgemm). */
int mt_cpu_sbgemm_check(char *why, size_t n);

/* The bf16 matmul path of this process: 1 cblas_sbgemm, 0 the emulation.
 * Chosen at the first call (the backend calls it at the first
 * set_precision(1) and at every bf16 matmul) and fixed from then on;
 * thread-safe. Where the check above fails it prints
 * "mpitrain: error: <why>" on stderr and exits 2 (a run has checked before
 * and stopped with an agreed error instead; core/device_setup.c). */
int mt_cpu_bf16_native(void);
/* One line on the choice and why, e.g. "emulated (MPITRAIN_CPU_SBGEMM =
 * auto: the CPU has no AVX512-BF16)"; chooses if not yet chosen. */
const char *mt_cpu_bf16_path(void);

/* C(M,N) = alpha * op(A) op(B) + beta * C with A and B rounded to bf16 (as
 * mt_bf16_bits) into scratch copies with the same leads, then one
 * cblas_sbgemm per tile of backend_cpu.c's tile plan, single-threaded each
 * (results independent of the thread count). Arguments as the backend's
 * matmul (kernels/backend.h); M, N, K > 0. Not for two threads at once
 * (one scratch buffer), as the emulation. */
void mt_cpu_sbgemm_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta, float *C,
                          int ldc);

/* For tests: fn runs in place of the loaded OpenBLAS's cblas_sbgemm (a
 * stand-in where the library has none). Only before the path is chosen;
 * fn NULL: the library's again. */
void mt_cpu_sbgemm_use(mt_cpu_sbgemm_fn fn);
/* 1 when the OpenBLAS loaded exports cblas_sbgemm (built with
 * BUILD_BFLOAT16; Debian 12's 0.3.21 is not). */
int mt_cpu_sbgemm_loaded(void);

/* backend_cpu.c's tile plan: *tm x *tn tiles for C(M,N) = op(A)(M,K)
 * op(B)(K,N), depending on (M, N, K) alone; M, N > 0. */
void mt_cpu_tile_plan(int M, int N, int K, int *tm, int *tn);

/* One product C(M,N) = alpha * op(A)(M,K) op(B)(K,N) + beta * C, row-major
 * with leads lda, ldb, ldc, as the backend's matmul takes it; A and B are
 * floats (the sgemm path) or bf16 bits (the sbgemm path), as the tile
 * function knows. */
typedef struct {
    int trans_a, trans_b, M, N, K;
    float alpha, beta;
    const void *A; /* (M,K), or (K,M) when transposed */
    int lda;
    const void *B; /* (K,N), or (N,K) when transposed */
    int ldb;
    float *C; /* (M,N) */
    int ldc;
} mt_cpu_gemm;

/* One tile of g: the m x n block of C starting c elements into C, from the
 * rows of op(A) starting a elements into A and the columns of op(B) starting
 * b elements into B (elements of A's and B's own type). Called from an
 * OpenMP thread: one single-threaded BLAS call. */
typedef void (*mt_cpu_tile_fn)(const mt_cpu_gemm *g, int m, int n, size_t a, size_t b, size_t c);

/* backend_cpu.c's tile loop, the one both matmul paths run: g cut by the
 * tile plan, the tiles shared out over OpenMP threads (the BLAS made serial
 * in each, mt_cpu_blas_serial), tile() called once per tile; every element
 * of C is summed in an order fixed by (M, N, K) alone. */
void mt_cpu_tiles_run(const mt_cpu_gemm *g, mt_cpu_tile_fn tile);

#endif
