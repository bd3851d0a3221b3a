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
 * Memory beyond the outputs: one scratch block per thread and call, a few
 * tiles of FA_BR x max(FA_BC, hs) floats.
 *
 * Determinism: the forward is split over (b, h, query tile), the backward
 * over (b, h) (a pair's dK and dV sum over its query tiles, in order, on the
 * thread that owns the pair); every product is a single-threaded sgemm on
 * tiles whose shapes depend only on (T, hs) (mt_cpu_blas_serial), so the
 * bits never depend on the thread count.
 *
 * bf16 matmul mode (mt_cpu_precision_bf16): the tiles of q, k, v and dout
 * are rounded to bf16 as they are loaded, and P (before P V and P^T dO) and
 * dS (before dS K and dS^T Q) are rounded to bf16 copies, as the unfused
 * attention does; the softmax, its statistics and all sums stay fp32.
 */
#include "kernels/cpu/flash_attention.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/bf16.h"
#include "kernels/cpu/gpt_cpu.h"
#include "kernels/cpu/vec.h"

#define FA_BR 64 /* query rows per tile */
#define FA_BC 64 /* key rows per tile */

static int imin(int a, int b) {
    return a < b ? a : b;
}

/* One head of one batch row: q, k, v are (T,hs) slices of qkv with lead ld
 * (3C), already offset to the head's channels. */
typedef struct {
    const float *q, *k, *v;
    int T, hs, ld;
    float scale; /* 1/sqrt(hs) */
    int bf;      /* bf16 matmul mode */
} fa_head;

/* A thread's scratch for one call; tiles contiguous (lead hs or FA_BC). */
typedef struct {
    float *q;    /* (FA_BR, hs) query tile, as the products read it */
    float *k;    /* (FA_BC, hs) key tile */
    float *v;    /* (FA_BC, hs) value tile */
    float *dout; /* (FA_BR, hs) dout tile (backward) */
    float *acc;  /* (FA_BR, hs) output accumulator (forward) or dq (backward) */
    float *s;    /* (FA_BR, FA_BC) scores, then probabilities P */
    float *dp;   /* (FA_BR, FA_BC) dP, then dS */
    float *pm;   /* (FA_BR, FA_BC) bf16 copy of P or dS (bf16 mode) */
    float *m;    /* (FA_BR) running max (forward) */
    float *l;    /* (FA_BR) running sum (forward) */
    float *d;    /* (FA_BR) D = dout . out (backward) */
    float *base; /* the one allocation */
} fa_scratch;

static void scratch_init(fa_scratch *w, int hs) {
    size_t th = ((size_t)FA_BR * hs + 15) & ~(size_t)15; /* 64-byte aligned tiles */
    size_t ts = (size_t)FA_BR * FA_BC;
    size_t n = 5 * th + 3 * ts + 3 * FA_BR;
    w->base = aligned_alloc(64, n * sizeof(float));
    if (!w->base) {
        fprintf(stderr, "mpitrain: error: out of memory for %zu bytes of flash attention scratch\n",
                n * sizeof(float));
        abort();
    }
    float *p = w->base;
    w->q = p, p += th;
    w->k = p, p += th;
    w->v = p, p += th;
    w->dout = p, p += th;
    w->acc = p, p += th;
    w->s = p, p += ts;
    w->dp = p, p += ts;
    w->pm = p, p += ts;
    w->m = p, p += FA_BR;
    w->l = p, p += FA_BR;
    w->d = p;
}

/* ---- products on tiles: single-threaded sgemm ---- */

/* C(M,N) = alpha * A(M,K) B(N,K)^T */
static void prod_nt(int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                    int ldb, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, alpha, A, lda, B, ldb, 0.0f, C,
                ldc);
}

/* C(M,N) += A(M,K) B(K,N) */
static void prod_nn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                    int ldc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C,
                ldc);
}

/* C(M,N) += A(K,M)^T B(K,N) */
static void prod_tn(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                    int ldc) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C,
                ldc);
}

/* ---- elementwise pieces ---- */

/* exp(x), branch-free so that the loops calling it vectorize (expf is a
 * scalar call): x = k ln2 + r with k the nearest integer (adding and
 * subtracting 1.5 * 2^23 rounds it) and ln2 in two parts so that k * ln2hi
 * is exact, exp(r) for |r| <= ln2/2 by Horner's rule on the Taylor series to
 * r^7 (truncation below 1e-8), then 2^k put in the exponent bits; relative
 * error about 2e-7. Below -87 (where 2^k would leave the normal range) the
 * result is 0: every argument here is a score minus its row's max or lse,
 * so this only drops terms far below the row's largest. A NaN stays NaN. */
static inline float fa_exp(float x) {
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc > 88.0f ? 88.0f : xc;
    float k = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = xc - k * 0.693359375f; /* ln2 high part: 8 significant bits */
    r = r + k * 2.12194440e-4f;      /* ln2 - 0.693359375 = -2.12194440e-4 */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t e = ((int32_t)k + 127) << 23;
    float two_k;
    memcpy(&two_k, &e, sizeof two_k);
    return x < -87.0f ? 0.0f : p * two_k;
}

/* x[j] = exp(x[j] - sub) for j < n; returns their sum, in 8 interleaved
 * partial sums added in a fixed order (so it vectorizes). */
MT_VEC static float exp_row(float *x, int n, float sub) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int j = 0;
    for (; j + 8 <= n; j += 8)
        for (int u = 0; u < 8; u++) {
            float e = fa_exp(x[j + u] - sub);
            x[j + u] = e;
            acc[u] += e;
        }
    for (; j < n; j++) {
        float e = fa_exp(x[j] - sub);
        x[j] = e;
        acc[j & 7] += e;
    }
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* ds[j] = p[j] * (ds[j] - d) * scale: dP becomes dS in place */
MT_VEC static void dscores_row(float *ds, const float *p, int n, float d, float scale) {
    for (int j = 0; j < n; j++) ds[j] = p[j] * (ds[j] - d) * scale;
}

/* dst(rows,cols) with lead ldd = src(rows,cols) with lead lds, rounded to
 * bf16 when bf (a plain copy otherwise) */
static void load_block(float *dst, int ldd, const float *src, int lds, int rows, int cols, int bf) {
    for (int r = 0; r < rows; r++) {
        const float *sr = src + (size_t)r * lds;
        float *dr = dst + (size_t)r * ldd;
        if (bf)
            for (int c = 0; c < cols; c++) dr[c] = mt_bf16_round(sr[c]);
        else
            memcpy(dr, sr, (size_t)cols * sizeof(float));
    }
}

/* Keys of the tile at s0 that query row t sees: all nc of them, or up to t
 * in the diagonal tile. */
static int keys_seen(int t, int s0, int nc) {
    return imin(nc, t - s0 + 1);
}

/* ---- forward ---- */

/* Row r of the scores tile (nc keys from s0, query row t): the online
 * softmax step. P replaces the scores (0 where masked), l and m move on, and
 * the accumulator row is rescaled to the new max. */
static void online_softmax_row(fa_scratch *w, int r, int t, int s0, int nc, int hs) {
    float *sr = w->s + (size_t)r * FA_BC;
    int n = keys_seen(t, s0, nc);
    float mx = w->m[r];
    for (int j = 0; j < n; j++) mx = sr[j] > mx ? sr[j] : mx;
    float corr = fa_exp(w->m[r] - mx); /* 0 on the first tile (m = -inf) */
    float sum = exp_row(sr, n, mx);
    for (int j = n; j < nc; j++) sr[j] = 0.0f;
    w->l[r] = w->l[r] * corr + sum;
    w->m[r] = mx;
    if (corr != 1.0f) {
        float *ar = w->acc + (size_t)r * hs;
        for (int c = 0; c < hs; c++) ar[c] *= corr;
    }
}

/* Query rows [t0,t1) of one head: out rows (lead ldo) and lse[t0..t1). */
static void forward_tile(fa_scratch *w, const fa_head *hd, float *out, int ldo, float *lse, int t0,
                         int t1) {
    int nr = t1 - t0, hs = hd->hs;
    load_block(w->q, hs, hd->q + (size_t)t0 * hd->ld, hd->ld, nr, hs, hd->bf);
    memset(w->acc, 0, (size_t)nr * hs * sizeof(float));
    for (int r = 0; r < nr; r++) w->m[r] = -INFINITY, w->l[r] = 0.0f;
    for (int s0 = 0; s0 < t1; s0 += FA_BC) {
        int nc = imin(s0 + FA_BC, t1) - s0;
        load_block(w->k, hs, hd->k + (size_t)s0 * hd->ld, hd->ld, nc, hs, hd->bf);
        load_block(w->v, hs, hd->v + (size_t)s0 * hd->ld, hd->ld, nc, hs, hd->bf);
        /* S(nr,nc) = scale * q k^T */
        prod_nt(nr, nc, hs, hd->scale, w->q, hs, w->k, hs, w->s, FA_BC);
        for (int r = 0; r < nr; r++) online_softmax_row(w, r, t0 + r, s0, nc, hs);
        const float *p = w->s;
        if (hd->bf) {
            load_block(w->pm, FA_BC, w->s, FA_BC, nr, nc, 1);
            p = w->pm;
        }
        /* acc(nr,hs) += P v */
        prod_nn(nr, hs, nc, p, FA_BC, w->v, hs, w->acc, hs);
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
        mt_cpu_blas_serial(); /* the sgemms below: one thread each */
        fa_scratch w;
        scratch_init(&w, hs);
#pragma omp for schedule(static)
        for (int it = 0; it < B * NH * nq; it++) {
            int bh = it / nq, t0 = it % nq * FA_BR, b = bh / NH, h = bh % NH;
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs;
            fa_head hd = {q, q + C, q + 2 * C, T, hs, C3, scale, bf};
            forward_tile(&w, &hd, out + (size_t)b * T * C + (size_t)h * hs, C, lse + (size_t)bh * T,
                         t0, imin(t0 + FA_BR, T));
        }
        free(w.base);
    }
}

/* ---- backward ---- */

/* One head's gradient slices, lead ld (3C), zeroed rows [0,T) of dk and dv
 * on entry; dq is written. */
typedef struct {
    float *dq, *dk, *dv;
} fa_grad;

/* Query rows [t0,t1) of one head: dq rows written, their dk and dv terms
 * added. dout, out: the head's slices (lead ldo); lse: the head's (T). */
static void backward_tile(fa_scratch *w, const fa_head *hd, const fa_grad *g, const float *dout,
                          const float *out, int ldo, const float *lse, int t0, int t1) {
    int nr = t1 - t0, hs = hd->hs, ld = hd->ld;
    load_block(w->q, hs, hd->q + (size_t)t0 * ld, ld, nr, hs, hd->bf);
    load_block(w->dout, hs, dout + (size_t)t0 * ldo, ldo, nr, hs, hd->bf);
    for (int r = 0; r < nr; r++) { /* D_t = dout_t . out_t, in fp32 from the unrounded values */
        const float *dr = dout + (size_t)(t0 + r) * ldo, *orow = out + (size_t)(t0 + r) * ldo;
        double d = 0.0;
        for (int c = 0; c < hs; c++) d += (double)dr[c] * orow[c];
        w->d[r] = (float)d;
    }
    memset(w->acc, 0, (size_t)nr * hs * sizeof(float));
    for (int s0 = 0; s0 < t1; s0 += FA_BC) {
        int nc = imin(s0 + FA_BC, t1) - s0;
        load_block(w->k, hs, hd->k + (size_t)s0 * ld, ld, nc, hs, hd->bf);
        load_block(w->v, hs, hd->v + (size_t)s0 * ld, ld, nc, hs, hd->bf);
        /* P(nr,nc) = exp(scale * q k^T - lse), 0 where masked */
        prod_nt(nr, nc, hs, hd->scale, w->q, hs, w->k, hs, w->s, FA_BC);
        for (int r = 0; r < nr; r++) {
            float *sr = w->s + (size_t)r * FA_BC;
            int n = keys_seen(t0 + r, s0, nc);
            exp_row(sr, n, lse[t0 + r]);
            for (int j = n; j < nc; j++) sr[j] = 0.0f;
        }
        const float *p = w->s;
        if (hd->bf) {
            load_block(w->pm, FA_BC, w->s, FA_BC, nr, nc, 1);
            p = w->pm;
        }
        /* dv[s0:s0+nc] += P^T dout */
        prod_tn(nc, hs, nr, p, FA_BC, w->dout, hs, g->dv + (size_t)s0 * ld, ld);
        /* dP(nr,nc) = dout v^T, then dS = P (dP - D) scale in place */
        prod_nt(nr, nc, hs, 1.0f, w->dout, hs, w->v, hs, w->dp, FA_BC);
        for (int r = 0; r < nr; r++)
            dscores_row(w->dp + (size_t)r * FA_BC, w->s + (size_t)r * FA_BC, nc, w->d[r],
                        hd->scale);
        const float *ds = w->dp;
        if (hd->bf) {
            load_block(w->pm, FA_BC, w->dp, FA_BC, nr, nc, 1);
            ds = w->pm;
        }
        /* dq(nr,hs) += dS k; dk[s0:s0+nc] += dS^T q */
        prod_nn(nr, hs, nc, ds, FA_BC, w->k, hs, w->acc, hs);
        prod_tn(nc, hs, nr, ds, FA_BC, w->q, hs, g->dk + (size_t)s0 * ld, ld);
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
        mt_cpu_blas_serial(); /* the sgemms below: one thread each */
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
                              imin(t0 + FA_BR, T));
        }
        free(w.base);
    }
}
