/*
 * flash_attention.c - flash-style causal multi-head attention on the CPU:
 * attention_forward's out without the (T,T) att matrix, and its backward from
 * out and the rows' log-sum-exp alone (kernels/backend.h has the contract).
 *
 * Per (batch, head) pair the queries are cut into tiles of FA_BR rows and the
 * keys into tiles of FA_BC rows, both aligned at 0, so the last key tile a
 * query tile sees is its diagonal one (the only one masked inside); tiles
 * wholly above the diagonal are skipped. The forward keeps, per query row, a
 * running max m and sum l of exp(score - m), rescaling the output
 * accumulator when m grows (the online softmax); lse = m + log l. The
 * backward recomputes P = exp(S - lse) tile by tile:
 *   dV += P^T dO,  dP = dO V^T,  dS = P (dP - D) / sqrt(hs),
 *   dQ += dS K,    dK += dS^T Q,  with D_t = dout_t . out_t.
 * Memory beyond the outputs: one scratch buffer per thread, a few tiles of
 * FA_BR x max(FA_BC, hs) floats, kept between calls.
 *
 * Products: tile_gemm, a hand-written register-blocked kernel (6 rows x 16
 * columns of C in AVX registers, marked MT_VEC) that skips the zero half of
 * the diagonal tile. It beat single-threaded OpenBLAS sgemm on the same
 * tiles (2-core EPYC, GPT bench shape B 8, T 128, hs 64, 1 thread: forward
 * + backward 4.9 ms against 6.6 ms; T 1024: 31.5 against 35.7 ms; 64x64
 * products spend much of sgemm's time packing), and its operands need no
 * copies in fp32: q, k, v and dout are read in place, only the k and v
 * tiles are transposed.
 *
 * Determinism: the forward is split over (b, h, query tile), the backward
 * over (b, h) (a pair's dK and dV sum over its query tiles, in order, on the
 * thread that owns the pair); every element of a product is summed in an
 * order fixed by (T, hs) alone, so the bits never depend on the thread
 * count. (The AVX2 + FMA clone may contract a * b + c: this file is built
 * with -ffp-contract=fast, so bits may differ between CPUs, as vec.h says.)
 *
 * bf16 matmul mode (mt_cpu_precision_bf16): the tiles of q, k, v and dout
 * are rounded to bf16 copies as they are loaded, and P (before P V and
 * P^T dO) and dS (before dS K and dS^T Q) are rounded to bf16 copies, as the
 * unfused attention does; the softmax, its statistics and all sums stay
 * fp32 (a product of two bf16 values is exact in fp32, so an FMA changes
 * nothing there).
 */
#include "kernels/cpu/flash_attention.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"
#include "kernels/cpu/gpt_cpu.h"
#include "kernels/cpu/vec.h"
#include "kernels/cpu/vmath.h"

#define FA_BR 64 /* query rows per tile */
#define FA_BC 64 /* key rows per tile */

/* One head of one batch row: q, k, v are (T,hs) slices of qkv with lead ld
 * (3C), already offset to the head's channels. */
typedef struct {
    const float *q, *k, *v;
    int T, hs, ld;
    float scale; /* 1/sqrt(hs) */
    int bf;      /* bf16 matmul mode */
} fa_head;

/* A thread's scratch: views into its buffer (tiles contiguous). */
typedef struct {
    float *q;    /* (FA_BR, hs) bf16 copy of the query tile (bf16 mode) */
    float *k;    /* (FA_BC, hs) bf16 copy of the key tile (bf16 mode) */
    float *v;    /* (FA_BC, hs) bf16 copy of the value tile (bf16 mode) */
    float *dout; /* (FA_BR, hs) bf16 copy of the dout tile (bf16 mode) */
    float *kt;   /* (hs, FA_BC) key tile transposed */
    float *vt;   /* (hs, FA_BC) value tile transposed (backward) */
    float *acc;  /* (FA_BR, hs) output accumulator (forward) or dq (backward) */
    float *s;    /* (FA_BR, FA_BC) scores, then probabilities P */
    float *dp;   /* (FA_BR, FA_BC) dP, then dS */
    float *pm;   /* (FA_BR, FA_BC) bf16 copy of P or dS (bf16 mode) */
    float *m;    /* (FA_BR) running max of the scaled scores (forward) */
    float *l;    /* (FA_BR) running sum (forward) */
    float *d;    /* (FA_BR) D = dout . out (backward) */
} fa_scratch;

/* Each thread's buffer, grown on demand and kept for the next call:
 * allocating per call and thread cost 2-3 % of the forward at T = 128 (a
 * buffer past malloc's mmap threshold). A thread key frees it when its
 * thread ends (OpenMP drops pool threads when a team shrinks), so changing
 * the thread count leaks nothing. */
static _Thread_local float *tl_buf;
static _Thread_local size_t tl_cap;
static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

static void tl_key_create(void) {
    if (pthread_key_create(&tl_key, free) != 0) {
        fprintf(stderr, "mpitrain: error: no thread key left for flash attention scratch\n");
        abort();
    }
}

static void scratch_init(fa_scratch *w, int hs) {
    /* every tile padded to 16 floats: 64-byte aligned (FA_BR = FA_BC) */
    size_t th = ((size_t)FA_BR * hs + 15) & ~(size_t)15;
    size_t ts = (size_t)FA_BR * FA_BC;
    size_t n = 7 * th + 3 * ts + 3 * FA_BR;
    if (n > tl_cap) {
        pthread_once(&tl_once, tl_key_create);
        free(tl_buf);
        tl_buf = aligned_alloc(64, n * sizeof(float));
        if (!tl_buf) {
            fprintf(stderr,
                    "mpitrain: error: out of memory for %zu bytes of flash attention scratch\n",
                    n * sizeof(float));
            abort();
        }
        tl_cap = n;
        pthread_setspecific(tl_key, tl_buf); /* freed at thread exit */
    }
    float *p = tl_buf;
    w->q = p, p += th;
    w->k = p, p += th;
    w->v = p, p += th;
    w->dout = p, p += th;
    w->kt = p, p += th;
    w->vt = p, p += th;
    w->acc = p, p += th;
    w->s = p, p += ts;
    w->dp = p, p += ts;
    w->pm = p, p += ts;
    w->m = p, p += FA_BR;
    w->l = p, p += FA_BR;
    w->d = p;
}

/* ---- products on tiles ----
 * C(M,N) = A(M,K) B(K,N), or C += A B, with B and C row-major (leads ldb,
 * ldc) and A(i,k) = a[i*sam + k*sak], so that A may be read transposed. C
 * is done in panels of FA_MR rows (then 4, then 1) and blocks of 16, 8,
 * then 1 columns, each element summed over k in order: c (or 0), then
 * + a_i0 b_0j, + a_i1 b_1j, ... The causal zeros are skipped: with
 * off = t0 - s0 (query tile start minus key tile start),
 *   TRI_N:    C(i,j) is wanted only for j <= i + off (S, dP: rows queries,
 *             columns keys); a panel stops at the first multiple of 8
 *             past that, the rest of its rows left alone,
 *   TRI_KMAX: A(i,k) = 0 for k > i + off (P V, dS K: k runs over keys),
 *   TRI_KMIN: A(i,k) = 0 for k < i - off (P^T dO, dS^T Q: rows keys, k
 *             runs over queries).
 * A skipped term is an exact zero (P and dS are 0 where masked), so this
 * changes no result. */

#define FA_MR 6 /* rows of C per register panel */

enum { TRI_N, TRI_KMAX, TRI_KMIN };

typedef float fa_v8 __attribute__((vector_size(32))); /* 8 floats: one AVX register */

/* C(mr, 8*nv) of one panel at c, from K terms; mr, nv constants after
 * inlining, so acc lives in registers. */
static inline __attribute__((always_inline)) void gemm_block(int mr, int nv, int K, const float *a,
                                                             int sam, int sak, const float *b,
                                                             int ldb, float *c, int ldc,
                                                             int beta0) {
    fa_v8 acc[FA_MR][2], bv[2];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) {
            if (beta0)
                acc[r][v] = (fa_v8){0, 0, 0, 0, 0, 0, 0, 0};
            else
                memcpy(&acc[r][v], c + (size_t)r * ldc + 8 * v, sizeof(fa_v8));
        }
    for (int k = 0; k < K; k++) {
        for (int v = 0; v < nv; v++) memcpy(&bv[v], b + (size_t)k * ldb + 8 * v, sizeof(fa_v8));
        for (int r = 0; r < mr; r++) {
            float ar = a[(size_t)r * sam + (size_t)k * sak];
            for (int v = 0; v < nv; v++) acc[r][v] += ar * bv[v];
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++) memcpy(c + (size_t)r * ldc + 8 * v, &acc[r][v], sizeof(fa_v8));
}

/* One panel of mr rows (a constant after inlining): N columns, K terms. */
static inline __attribute__((always_inline)) void gemm_panel(int mr, int N, int K, const float *a,
                                                             int sam, int sak, const float *b,
                                                             int ldb, float *c, int ldc,
                                                             int beta0) {
    int j = 0;
    for (; j + 16 <= N; j += 16) gemm_block(mr, 2, K, a, sam, sak, b + j, ldb, c + j, ldc, beta0);
    for (; j + 8 <= N; j += 8) gemm_block(mr, 1, K, a, sam, sak, b + j, ldb, c + j, ldc, beta0);
    for (; j < N; j++)
        for (int r = 0; r < mr; r++) {
            float x = beta0 ? 0.0f : c[(size_t)r * ldc + j];
            for (int k = 0; k < K; k++)
                x += a[(size_t)r * sam + (size_t)k * sak] * b[(size_t)k * ldb + j];
            c[(size_t)r * ldc + j] = x;
        }
}

MT_VEC static void tile_gemm(int M, int N, int K, const float *a, int sam, int sak, const float *b,
                             int ldb, float *c, int ldc, int beta0, int tri, int off) {
    for (int i = 0; i < M;) {
        int mr = M - i >= FA_MR ? FA_MR : M - i >= 4 ? 4 : 1;
        int n = N, k0 = 0, k1 = K; /* this panel's columns and terms */
        if (tri == TRI_N)
            n = mt_imin(N, (i + mr + off + 7) & ~7); /* whole vectors: no scalar tail */
        if (tri == TRI_KMAX) k1 = mt_imin(K, i + mr + off);
        if (tri == TRI_KMIN) k0 = mt_imin(K, i - off > 0 ? i - off : 0);
        const float *ai = a + (size_t)i * sam + (size_t)k0 * sak, *bk = b + (size_t)k0 * ldb;
        float *ci = c + (size_t)i * ldc;
        if (mr == FA_MR)
            gemm_panel(FA_MR, n, k1 - k0, ai, sam, sak, bk, ldb, ci, ldc, beta0);
        else if (mr == 4)
            gemm_panel(4, n, k1 - k0, ai, sam, sak, bk, ldb, ci, ldc, beta0);
        else
            gemm_panel(1, n, k1 - k0, ai, sam, sak, bk, ldb, ci, ldc, beta0);
        i += mr;
    }
}

/* ---- elementwise pieces ---- */

/* x[j] = exp(x[j] * scale - sub) for j < n; returns their sum, in 8
 * interleaved partial sums added in a fixed order (so it vectorizes). */
MT_VEC static float exp_row(float *x, int n, float scale, float sub) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++) {
            float e = mt_vexp_flash(x[j + u] * scale - sub);
            x[j + u] = e;
            acc[u] += e;
        }
    for (; j < n; j++) {
        float e = mt_vexp_flash(x[j] * scale - sub);
        x[j] = e;
        acc[j & 7] += e;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* ds[j] = p[j] * (ds[j] - d) * scale: dP becomes dS in place */
MT_VEC static void dscores_row(float *ds, const float *p, int n, float d, float scale) {
    for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - d) * scale;
}

/* A (rows,cols) operand with lead ld, as the products read it. */
typedef struct {
    const float *p;
    int ld;
} fa_mat;

/* src(rows,cols) with lead lds as an operand: src itself in fp32, a bf16
 * copy in buf (lead cols) in bf16 mode. */
static fa_mat operand(float *buf, const float *src, int lds, int rows, int cols, int bf) {
    if (!bf) return (fa_mat){src, lds};
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            buf[(size_t)r * cols + c] = mt_bf16_round(src[(size_t)r * lds + c]);
    return (fa_mat){buf, cols};
}

typedef int fa_i8 __attribute__((vector_size(32)));
#if defined(__clang__)
#define FA_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define FA_SHUF(a, b, ...) __builtin_shuffle(a, b, (fa_i8){__VA_ARGS__})
#endif

/* dst(8,8) with lead ldd = src(8,8)^T (lead lds), in registers: unpack
 * pairs of rows, then pairs of pairs, then swap 128-bit halves (the AVX
 * 8x8 transpose; 24 shuffles for 64 floats, 4x faster than scalar moves) */
static inline __attribute__((always_inline)) void transpose8(float *dst, int ldd, const float *src,
                                                             int lds) {
    fa_v8 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++) memcpy(&r[i], src + (size_t)i * lds, sizeof(fa_v8));
    for (int i = 0; i < 8; i += 2) {
        t[i] = FA_SHUF(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = FA_SHUF(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++) {
            u[i + 2 * j] = FA_SHUF(t[i + j], t[i + j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + 2 * j + 1] = FA_SHUF(t[i + j], t[i + j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int i = 0; i < 4; i++) {
        fa_v8 lo = FA_SHUF(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        fa_v8 hi = FA_SHUF(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
        memcpy(dst + (size_t)i * ldd, &lo, sizeof(fa_v8));
        memcpy(dst + (size_t)(i + 4) * ldd, &hi, sizeof(fa_v8));
    }
}

/* dst(cols,rows) with lead FA_BC = src(rows,cols)^T (src with lead lds):
 * 8x8 blocks, scalar moves at the edges */
MT_VEC static void transpose(float *dst, const float *src, int lds, int rows, int cols) {
    int r8 = rows & ~7, c8 = cols & ~7;
    for (int r = 0; r < r8; r += 8)
        for (int c = 0; c < c8; c += 8)
            transpose8(dst + (size_t)c * FA_BC + r, FA_BC, src + (size_t)r * lds + c, lds);
    for (int r = 0; r < rows; r++)
        for (int c = r < r8 ? c8 : 0; c < cols; c++)
            dst[(size_t)c * FA_BC + r] = src[(size_t)r * lds + c];
}

/* x(rows,cols) with lead FA_BC rounded to bf16 into buf (the same lead) */
static const float *bf16_tile(float *buf, const float *x, int rows, int cols) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            buf[(size_t)r * FA_BC + c] = mt_bf16_round(x[(size_t)r * FA_BC + c]);
    return buf;
}

/* Keys of the tile at s0 that query row t sees: all nc of them, or up to t
 * in the diagonal tile. */
static int keys_seen(int t, int s0, int nc) {
    return mt_imin(nc, t - s0 + 1);
}

/* ---- forward ---- */

/* Row r of the scores tile (nc keys from s0, query row t): the online
 * softmax step. P replaces the scores (0 where masked), l and m move on, and
 * the accumulator row is rescaled to the new max. */
static void online_softmax_row(fa_scratch *w, const fa_head *hd, int r, int t, int s0, int nc) {
    float *sr = w->s + (size_t)r * FA_BC;
    int n = keys_seen(t, s0, nc);
    float mx = sr[0];
    for (int j = 1; j < n; j++) mx = sr[j] > mx ? sr[j] : mx;
    mx = mx * hd->scale > w->m[r] ? mx * hd->scale : w->m[r]; /* scale > 0 keeps the max */
    float corr = mt_vexp_flash(w->m[r] - mx);                 /* 0 on the first tile (m = -inf) */
    float sum = exp_row(sr, n, hd->scale, mx);
    for (int j = n; j < nc; j++) sr[j] = 0.0f;
    w->l[r] = w->l[r] * corr + sum;
    w->m[r] = mx;
    if (corr != 1.0f) {
        float *ar = w->acc + (size_t)r * hd->hs;
        for (int c = 0; c < hd->hs; c++) ar[c] *= corr;
    }
}

/* Query rows [t0,t1) of one head: out rows (lead ldo) and lse[t0..t1). */
static void forward_tile(fa_scratch *w, const fa_head *hd, float *out, int ldo, float *lse, int t0,
                         int t1) {
    int nr = t1 - t0, hs = hd->hs, ld = hd->ld;
    fa_mat q = operand(w->q, hd->q + (size_t)t0 * ld, ld, nr, hs, hd->bf);
    memset(w->acc, 0, (size_t)nr * hs * sizeof(float));
    for (int r = 0; r < nr; r++) w->m[r] = -INFINITY, w->l[r] = 0.0f;
    for (int s0 = 0; s0 < t1; s0 += FA_BC) {
        int nc = mt_imin(s0 + FA_BC, t1) - s0, off = t0 - s0;
        fa_mat k = operand(w->k, hd->k + (size_t)s0 * ld, ld, nc, hs, hd->bf);
        fa_mat v = operand(w->v, hd->v + (size_t)s0 * ld, ld, nc, hs, hd->bf);
        transpose(w->kt, k.p, k.ld, nc, hs);
        /* S(nr,nc) = q k^T (the scale goes into the exp) */
        tile_gemm(nr, nc, hs, q.p, q.ld, 1, w->kt, FA_BC, w->s, FA_BC, 1, TRI_N, off);
        for (int r = 0; r < nr; r++) online_softmax_row(w, hd, r, t0 + r, s0, nc);
        const float *p = hd->bf ? bf16_tile(w->pm, w->s, nr, nc) : w->s;
        /* acc(nr,hs) += P v */
        tile_gemm(nr, hs, nc, p, FA_BC, 1, v.p, v.ld, w->acc, hs, 0, TRI_KMAX, off);
    }
    for (int r = 0; r < nr; r++) {
        const float *ar = w->acc + (size_t)r * hs;
        float *o = out + (size_t)(t0 + r) * ldo;
        float inv = 1.0f / w->l[r];
        for (int c = 0; c < hs; c++) o[c] = ar[c] * inv;
        lse[t0 + r] = w->m[r] + logf(w->l[r]);
    }
}

void mt_cpu_flash_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C,
                                    int NH) {
    int hs = C / NH, C3 = 3 * C, nq = (T + FA_BR - 1) / FA_BR;
    int bf = mt_cpu_precision_bf16();
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel
    {
        fa_scratch w;
        scratch_init(&w, hs);
#pragma omp for schedule(static)
        for (int it = 0; it < B * NH * nq; it++) {
            int bh = it / nq, t0 = it % nq * FA_BR, b = bh / NH, h = bh % NH;
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs;
            fa_head hd = {q, q + C, q + 2 * C, T, hs, C3, scale, bf};
            forward_tile(&w, &hd, out + (size_t)b * T * C + (size_t)h * hs, C, lse + (size_t)bh * T,
                         t0, mt_imin(t0 + FA_BR, T));
        }
    }
}

/* ---- backward ---- */

/* One head's gradient slices, lead ld (3C), zeroed rows [0,T) of dk and dv
 * on entry; dq is written. */
typedef struct {
    float *dq, *dk, *dv;
} fa_grad;

/* P(nr,nc) = exp(scale * S - lse) in w->s, 0 where masked; then dP (w->dp)
 * becomes dS = P (dP - D) scale, 0 where masked. */
static void probs_tile(fa_scratch *w, const fa_head *hd, const float *lse, int t0, int nr, int s0,
                       int nc) {
    for (int r = 0; r < nr; r++) {
        float *sr = w->s + (size_t)r * FA_BC;
        int n = keys_seen(t0 + r, s0, nc);
        exp_row(sr, n, hd->scale, lse[t0 + r]);
        for (int j = n; j < nc; j++) sr[j] = 0.0f;
    }
}

static void dscores_tile(fa_scratch *w, const fa_head *hd, int t0, int nr, int s0, int nc) {
    for (int r = 0; r < nr; r++) {
        float *dr = w->dp + (size_t)r * FA_BC;
        int n = keys_seen(t0 + r, s0, nc); /* dP past n was not computed (TRI_N) */
        dscores_row(dr, w->s + (size_t)r * FA_BC, n, w->d[r], hd->scale);
        for (int j = n; j < nc; j++) dr[j] = 0.0f;
    }
}

/* Query rows [t0,t1) of one head: dq rows written, their dk and dv terms
 * added. dout, out: the head's slices (lead ldo); lse: the head's (T). */
static void backward_tile(fa_scratch *w, const fa_head *hd, const fa_grad *g, const float *dout,
                          const float *out, int ldo, const float *lse, int t0, int t1) {
    int nr = t1 - t0, hs = hd->hs, ld = hd->ld;
    fa_mat q = operand(w->q, hd->q + (size_t)t0 * ld, ld, nr, hs, hd->bf);
    fa_mat dO = operand(w->dout, dout + (size_t)t0 * ldo, ldo, nr, hs, hd->bf);
    for (int r = 0; r < nr; r++) { /* D_t = dout_t . out_t, in fp32 from the unrounded values */
        const float *dr = dout + (size_t)(t0 + r) * ldo, *orow = out + (size_t)(t0 + r) * ldo;
        double d = 0.0;
        for (int c = 0; c < hs; c++) d += (double)dr[c] * orow[c];
        w->d[r] = (float)d;
    }
    memset(w->acc, 0, (size_t)nr * hs * sizeof(float));
    for (int s0 = 0; s0 < t1; s0 += FA_BC) {
        int nc = mt_imin(s0 + FA_BC, t1) - s0, off = t0 - s0;
        fa_mat k = operand(w->k, hd->k + (size_t)s0 * ld, ld, nc, hs, hd->bf);
        fa_mat v = operand(w->v, hd->v + (size_t)s0 * ld, ld, nc, hs, hd->bf);
        transpose(w->kt, k.p, k.ld, nc, hs);
        transpose(w->vt, v.p, v.ld, nc, hs);
        tile_gemm(nr, nc, hs, q.p, q.ld, 1, w->kt, FA_BC, w->s, FA_BC, 1, TRI_N, off);
        probs_tile(w, hd, lse, t0, nr, s0, nc);
        const float *p = hd->bf ? bf16_tile(w->pm, w->s, nr, nc) : w->s;
        /* dv[s0:s0+nc] += P^T dout */
        tile_gemm(nc, hs, nr, p, 1, FA_BC, dO.p, dO.ld, g->dv + (size_t)s0 * ld, ld, 0, TRI_KMIN,
                  off);
        /* dP(nr,nc) = dout v^T, then dS */
        tile_gemm(nr, nc, hs, dO.p, dO.ld, 1, w->vt, FA_BC, w->dp, FA_BC, 1, TRI_N, off);
        dscores_tile(w, hd, t0, nr, s0, nc);
        const float *ds = hd->bf ? bf16_tile(w->pm, w->dp, nr, nc) : w->dp;
        /* dq(nr,hs) += dS k; dk[s0:s0+nc] += dS^T q */
        tile_gemm(nr, hs, nc, ds, FA_BC, 1, k.p, k.ld, w->acc, hs, 0, TRI_KMAX, off);
        tile_gemm(nc, hs, nr, ds, 1, FA_BC, q.p, q.ld, g->dk + (size_t)s0 * ld, ld, 0, TRI_KMIN,
                  off);
    }
    for (int r = 0; r < nr; r++)
        memcpy(g->dq + (size_t)(t0 + r) * ld, w->acc + (size_t)r * hs, (size_t)hs * sizeof(float));
}

void mt_cpu_flash_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                     const float *out, const float *lse, int B, int T, int C,
                                     int NH) {
    int hs = C / NH, C3 = 3 * C;
    int bf = mt_cpu_precision_bf16();
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel
    {
        fa_scratch w;
        scratch_init(&w, hs);
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            int b = bh / NH, h = bh % NH;
            size_t off = (size_t)b * T * C3 + (size_t)h * hs, ooff = (size_t)b * T * C + h * hs;
            fa_head hd = {qkv + off, qkv + off + C, qkv + off + 2 * C, T, hs, C3, scale, bf};
            fa_grad g = {dqkv + off, dqkv + off + C, dqkv + off + 2 * C};
            for (int t = 0; t < T; t++) { /* dk, dv are sums over query tiles */
                memset(g.dk + (size_t)t * C3, 0, (size_t)hs * sizeof(float));
                memset(g.dv + (size_t)t * C3, 0, (size_t)hs * sizeof(float));
            }
            for (int t0 = 0; t0 < T; t0 += FA_BR)
                backward_tile(&w, &hd, &g, dout + ooff, out + ooff, C, lse + (size_t)bh * T, t0,
                              mt_imin(t0 + FA_BR, T));
        }
    }
}
