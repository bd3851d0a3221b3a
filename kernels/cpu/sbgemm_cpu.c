/*
 * sbgemm_cpu.c - the CPU backend's native bf16 matmul path (sbgemm_cpu.h):
 * which path a process takes, and the matmul through OpenBLAS's
 * cblas_sbgemm.
 *
 * cblas_sbgemm is looked up at run time (dlsym), not linked: OpenBLAS has
 * it only when built with BUILD_BFLOAT16, and Debian 12's 0.3.21 (every
 * variant: openmp, pthread, serial, 64-bit) is built without it, though
 * its cblas.h declares it. A binary built here then takes the sbgemm path
 * wherever the OpenBLAS it loads has the function.
 *
 * Numerics, the same contract as the emulation: both operands rounded to
 * bf16 by mt_bf16_bits (ours, not cblas_sbstobf16, so that the two paths
 * see the same bf16 values), products exact, fp32 sums into an fp32 C.
 * What differs is the order of the fp32 sums inside OpenBLAS's kernel and,
 * with AVX512-BF16 (VDPBF16PS), subnormal inputs and results flushed to
 * zero. docs/CUDA.md has the measured differences.
 */
#include "kernels/cpu/sbgemm_cpu.h"

#include <dlfcn.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"
#include "kernels/bf16.h"
#include "kernels/cpu/gpt_cpu.h"
#include "kernels/cpu/vec.h"
#include "kernels/cpu/vmath.h"

#define ENV_NAME "MPITRAIN_CPU_SBGEMM"

enum { MODE_AUTO, MODE_ON, MODE_OFF, MODE_BAD };

static mt_cpu_sbgemm_fn test_kernel; /* mt_cpu_sbgemm_use's stand-in, or NULL */
static mt_cpu_sbgemm_fn kernel;      /* what the sbgemm path calls, once chosen */
static int native;                   /* the choice: 1 sbgemm, 0 emulation */
static char path_line[256];          /* mt_cpu_bf16_path's line */
static pthread_once_t chosen = PTHREAD_ONCE_INIT;

static int env_mode(const char **value) {
    const char *v = getenv(ENV_NAME);
    *value = v ? v : "";
    if (!v || !v[0] || strcmp(v, "auto") == 0) return MODE_AUTO;
    if (strcmp(v, "on") == 0) return MODE_ON;
    if (strcmp(v, "off") == 0) return MODE_OFF;
    return MODE_BAD;
}

/* The library's cblas_sbgemm, or the test's stand-in; NULL if neither */
static mt_cpu_sbgemm_fn find_kernel(void) {
    if (test_kernel) return test_kernel;
    return (mt_cpu_sbgemm_fn)dlsym(RTLD_DEFAULT, "cblas_sbgemm");
}

int mt_cpu_sbgemm_loaded(void) {
    return dlsym(RTLD_DEFAULT, "cblas_sbgemm") != NULL;
}

/* AVX512-BF16 usable (CPUID leaf 7 subleaf 1 EAX bit 5, and the OS saving
 * the AVX-512 state: libgcc checks both) */
static int cpu_has_bf16(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
#else
    return 0;
#endif
}

int mt_cpu_sbgemm_check(char *why, size_t n) {
    const char *v;
    int mode = env_mode(&v);
    if (mode == MODE_BAD) {
        snprintf(why, n, "%s = '%.40s' is not a valid value (auto, on or off)", ENV_NAME, v);
        return -1;
    }
    if (mode == MODE_ON && !find_kernel()) {
        snprintf(why, n,
                 "%s = on, but the OpenBLAS loaded (%s) has no cblas_sbgemm (it was built "
                 "without BUILD_BFLOAT16); use auto or off",
                 ENV_NAME, openblas_get_config());
        return -1;
    }
    return 0;
}

static void choose(void) {
    char why[384];
    if (mt_cpu_sbgemm_check(why, sizeof why) < 0) mt_die(MT_ERR_USAGE, "%s", why);
    const char *v;
    int mode = env_mode(&v), bf16 = cpu_has_bf16();
    kernel = find_kernel();
    const char *core = openblas_get_corename();
    if (mode == MODE_OFF) {
        snprintf(path_line, sizeof path_line, "emulated (%s = off)", ENV_NAME);
    } else if (mode == MODE_ON) {
        native = 1;
        snprintf(path_line, sizeof path_line,
                 "sbgemm (%s = on; the CPU %s AVX512-BF16; OpenBLAS core %s%s)", ENV_NAME,
                 bf16 ? "has" : "has no", core, test_kernel ? "; a test's stand-in kernel" : "");
    } else if (!bf16) {
        snprintf(path_line, sizeof path_line, "emulated (%s = auto: the CPU has no AVX512-BF16)",
                 ENV_NAME);
    } else if (!kernel) {
        snprintf(path_line, sizeof path_line,
                 "emulated (%s = auto: the CPU has AVX512-BF16, but the OpenBLAS loaded has no "
                 "cblas_sbgemm)",
                 ENV_NAME);
    } else {
        native = 1;
        snprintf(path_line, sizeof path_line,
                 "sbgemm (%s = auto: the CPU has AVX512-BF16; OpenBLAS core %s)", ENV_NAME, core);
    }
}

int mt_cpu_bf16_native(void) {
    pthread_once(&chosen, choose);
    return native;
}

const char *mt_cpu_bf16_path(void) {
    pthread_once(&chosen, choose);
    return path_line;
}

void mt_cpu_sbgemm_use(mt_cpu_sbgemm_fn fn) {
    test_kernel = fn;
}

/* One row: dst[c] = the bf16 bits of src[c] (vectorized where AVX2 is) */
MT_VEC static void bf16_row(uint16_t *dst, const float *src, int cols) {
    for (int c = 0; c < cols; c++) dst[c] = mt_bf16_bits(src[c]);
}

/* dst(rows,cols) = bf16 bits of src(rows,cols), both with lead ld; the
 * padding past cols is not written (cblas_sbgemm never reads it) */
static void bf16_block(uint16_t *dst, const float *src, int ld, int rows, int cols) {
#pragma omp parallel for schedule(static) if ((size_t)rows * cols >= MT_OMP_MIN &&                 \
                                              !omp_in_parallel())
    for (int r = 0; r < rows; r++) bf16_row(dst + (size_t)r * ld, src + (size_t)r * ld, cols);
}

/* One tile of backend_cpu.c's tile loop (mt_cpu_tiles_run): one
 * single-threaded cblas_sbgemm over the whole K on the bf16 copies A and B
 * (same leads as the floats they were made from). */
static void sbgemm_tile(const mt_cpu_gemm *g, int m, int n, size_t a, size_t b, size_t c) {
    kernel(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
           g->trans_b ? CblasTrans : CblasNoTrans, m, n, g->K, g->alpha, (const uint16_t *)g->A + a,
           g->lda, (const uint16_t *)g->B + b, g->ldb, g->beta, g->C + c, g->ldc);
}

void mt_cpu_sbgemm_matmul(int trans_a, int trans_b, int M, int N, int K, float alpha,
                          const float *A, int lda, const float *B, int ldb, float beta, float *C,
                          int ldc) {
    /* A is stored (M,K), or (K,M) when transposed; B (K,N), or (N,K). */
    static float *scratch; /* [A's bf16 copy | B's], as uint16; grown on demand, never freed */
    static size_t cap;
    int ar = trans_a ? K : M, ac = trans_a ? M : K;
    int br = trans_b ? N : K, bc = trans_b ? K : N;
    size_t sa = (size_t)(ar - 1) * lda + ac, sb = (size_t)(br - 1) * ldb + bc;
    size_t na = (sa + 31) & ~(size_t)31; /* B's copy 64-byte aligned */
    uint16_t *s = (uint16_t *)mt_cpu_scratch(&scratch, &cap, (na + sb + 1) / 2);
    pthread_once(&chosen, choose);
    bf16_block(s, A, lda, ar, ac);
    bf16_block(s + na, B, ldb, br, bc);
    mt_cpu_gemm g = {trans_a, trans_b, M, N, K, alpha, beta, s, lda, s + na, ldb, C, ldc};
    mt_cpu_tiles_run(&g, sbgemm_tile);
}
