/*
 * gpt_cpu.c - CPU transformer (GPT) ops: residual add, LayerNorm, causal
 * multi-head attention, token + position embedding, dropout. Shapes and
 * semantics are the contract in kernels/backend.h.
 *
 * Determinism: every output element is computed by exactly one thread with a
 * fixed order of operations, so results are bitwise the same for the same
 * inputs. Reductions across rows (LayerNorm dw/db, embedding gradients) are
 * split by channel, never by row, so they are also independent of the thread
 * count. Attention is split over (batch, head) pairs; each pair's products go
 * through a single-threaded sgemm (OpenBLAS's OpenMP build does not fork inside
 * an active parallel region; mt_cpu_blas_serial covers a team of one), so a
 * pair's bits do not depend on the thread count either.
 */
#include "kernels/cpu/gpt_cpu.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "kernels/cpu/vmath.h"

#define CH_BLOCK  64 /* channels per thread task in reductions over rows */
#define ATT_BLOCK 64 /* query (or key) rows per causal block in attention */
#define LN_EPS    1e-5

/* ---- elementwise ---- */

void mt_cpu_add(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void mt_cpu_accumulate(float *dst, const float *src, size_t n) {
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

/* ---- LayerNorm ---- */

void mt_cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *w,
                              const float *b, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C >= MT_OMP_MIN)
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * C;
        float *o = out + (size_t)r * C;
        /* Row statistics in double, two passes: no cancellation when |mean| >> std. */
        double s = 0.0;
        for (int c = 0; c < C; c++) s += xr[c];
        double m = s / C;
        double v = 0.0;
        for (int c = 0; c < C; c++) v += ((double)xr[c] - m) * ((double)xr[c] - m);
        float mf = (float)m;
        float rs = (float)(1.0 / sqrt(v / C + LN_EPS));
        /* Normalize with the saved float mean/rstd so the backward sees the same xhat. */
        for (int c = 0; c < C; c++) o[c] = (xr[c] - mf) * rs * w[c] + b[c];
        mean[r] = mf;
        rstd[r] = rs;
    }
}

void mt_cpu_layernorm_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                               const float *w, const float *mean, const float *rstd, int N, int C) {
    int big = (size_t)N * C >= MT_OMP_MIN;
    /* dx: rows are independent. */
#pragma omp parallel for schedule(static) if (big)
    for (int r = 0; r < N; r++) {
        const float *xr = x + (size_t)r * C, *dr = dout + (size_t)r * C;
        float *dxr = dx + (size_t)r * C;
        float mf = mean[r], rs = rstd[r];
        double sd = 0.0, sdx = 0.0; /* sums of dnorm and dnorm * xhat */
        for (int c = 0; c < C; c++) {
            float xhat = (xr[c] - mf) * rs;
            float dn = dr[c] * w[c];
            sd += dn;
            sdx += (double)dn * xhat;
        }
        float md = (float)(sd / C), mdx = (float)(sdx / C);
        for (int c = 0; c < C; c++) {
            float xhat = (xr[c] - mf) * rs;
            float dn = dr[c] * w[c];
            dxr[c] += rs * (dn - md - xhat * mdx);
        }
    }
    /* dw, db: each task owns CH_BLOCK channels and sums all rows in order,
     * then adds once (so a second call adds exactly the same amount). */
#pragma omp parallel for schedule(static) if (big && C > CH_BLOCK)
    for (int c0 = 0; c0 < C; c0 += CH_BLOCK) {
        int c1 = mt_imin(c0 + CH_BLOCK, C);
        float aw[CH_BLOCK] = {0}, ab[CH_BLOCK] = {0};
        for (int r = 0; r < N; r++) {
            const float *xr = x + (size_t)r * C, *dr = dout + (size_t)r * C;
            float mf = mean[r], rs = rstd[r];
            for (int c = c0; c < c1; c++) {
                aw[c - c0] += dr[c] * ((xr[c] - mf) * rs);
                ab[c - c0] += dr[c];
            }
        }
        for (int c = c0; c < c1; c++) {
            dw[c] += aw[c - c0];
            db[c] += ab[c - c0];
        }
    }
}

/* ---- causal multi-head attention ----
 * Per (b,h) pair, with lead dimension 3C for the q/k/v slices of qkv and C for
 * out/dout, so nothing is copied:
 *   q, k, v  (T,hs)   att, datt  (T,T)   out, dout  (T,hs)
 * Queries are processed in blocks of ATT_BLOCK rows [t0,t1); those rows only
 * see keys [0,t1), which roughly halves the sgemm work for large T.
 *
 * bf16 matmul mode (mt_cpu_precision_bf16): every sgemm operand is rounded to
 * bf16 first, as in the backend's matmul; the softmax and its backward stay
 * fp32. The inputs qkv (B,T,3C) and dout (B,T,C) are rounded once into
 * copies of the same layout; att blocks are rounded per thread into
 * att_tmp (threads, ATT_BLOCK*T) since att itself is an output kept in fp32;
 * d(scores) is rounded in place in datt, which is scratch (backend.h). */

static float *qkv_bf, *dout_bf, *att_tmp; /* bf16 scratch, grown on demand */
static size_t qkv_cap, dout_cap, att_cap;

static void sgemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                  const float *B, int ldb, float *C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, 0.0f, C, ldc);
}

/* x(rows,cols) (contiguous), rounded to bf16 into *buf */
static const float *bf16_copy(float **buf, size_t *cap, const float *x, int rows, int cols) {
    float *r = mt_cpu_scratch(buf, cap, (size_t)rows * cols);
    mt_cpu_bf16_round_block(r, cols, x, cols, rows, cols);
    return r;
}

/* This thread's ATT_BLOCK*T floats of att_tmp (allocated before the loop). */
static float *att_tmp_of_thread(int T) {
    return att_tmp + (size_t)omp_get_thread_num() * ATT_BLOCK * T;
}

/* Row t of att(T,T) holds scores for keys [0,t]: softmax them, zero the rest. */
static void softmax_causal_row(float *a, int t, int T) {
    float mx = a[0];
    for (int s = 1; s <= t; s++) mx = a[s] > mx ? a[s] : mx;
    double sum = 0.0;
    for (int s = 0; s <= t; s++) {
        a[s] = expf(a[s] - mx);
        sum += a[s];
    }
    float inv = (float)(1.0 / sum);
    for (int s = 0; s <= t; s++) a[s] *= inv;
    for (int s = t + 1; s < T; s++) a[s] = 0.0f;
}

void mt_cpu_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C,
                              int NH) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    int bf = mt_cpu_precision_bf16();
    const float *qkvm = qkv; /* qkv as the sgemms read it */
    if (bf) {
        qkvm = bf16_copy(&qkv_bf, &qkv_cap, qkv, B * T, C3);
        mt_cpu_scratch(&att_tmp, &att_cap, (size_t)omp_get_max_threads() * ATT_BLOCK * T);
    }
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        mt_cpu_blas_serial(); /* the sgemms below: one thread each */
        const float *q = qkvm + (size_t)b * T * C3 + (size_t)h * hs;
        const float *k = q + C, *v = q + 2 * C;
        float *a = att + (size_t)bh * T * T;
        float *o = out + (size_t)b * T * C + (size_t)h * hs;
        for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
            int t1 = mt_imin(t0 + ATT_BLOCK, T);
            /* att[t0:t1, 0:t1] = scale * q[t0:t1] k[0:t1]^T */
            sgemm(0, 1, t1 - t0, t1, hs, scale, q + (size_t)t0 * C3, C3, k, C3, a + (size_t)t0 * T,
                  T);
            for (int t = t0; t < t1; t++) softmax_causal_row(a + (size_t)t * T, t, T);
            /* out[t0:t1] = att[t0:t1, 0:t1] v[0:t1] */
            const float *am = a + (size_t)t0 * T;
            int lda = T;
            if (bf) {
                float *w = att_tmp_of_thread(T);
                mt_cpu_bf16_round_block(w, t1, am, T, t1 - t0, t1);
                am = w, lda = t1;
            }
            sgemm(0, 0, t1 - t0, hs, t1, 1.0f, am, lda, v, C3, o + (size_t)t0 * C, C);
        }
    }
}

void mt_cpu_attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH) {
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    int bf = mt_cpu_precision_bf16();
    const float *qkvm = qkv, *doutm = dout; /* as the sgemms read them */
    if (bf) {
        qkvm = bf16_copy(&qkv_bf, &qkv_cap, qkv, B * T, C3);
        doutm = bf16_copy(&dout_bf, &dout_cap, dout, B * T, C);
        mt_cpu_scratch(&att_tmp, &att_cap, (size_t)omp_get_max_threads() * ATT_BLOCK * T);
    }
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        mt_cpu_blas_serial(); /* the sgemms below: one thread each */
        size_t qoff = (size_t)b * T * C3 + (size_t)h * hs;
        const float *q = qkvm + qoff, *k = q + C, *v = q + 2 * C;
        float *dq = dqkv + qoff, *dk = dq + C, *dv = dq + 2 * C;
        const float *a = att + (size_t)bh * T * T;
        float *da = datt + (size_t)bh * T * T;
        const float *dr = doutm + (size_t)b * T * C + (size_t)h * hs;
        for (int t0 = 0; t0 < T; t0 += ATT_BLOCK) {
            int t1 = mt_imin(t0 + ATT_BLOCK, T);
            /* datt[t0:t1, 0:t1] = dout[t0:t1] v[0:t1]^T */
            sgemm(0, 1, t1 - t0, t1, hs, 1.0f, dr + (size_t)t0 * C, C, v, C3, da + (size_t)t0 * T,
                  T);
            /* Softmax backward in place: datt becomes d(scores), times the
             * 1/sqrt(hs) of the forward; masked entries become 0. */
            for (int t = t0; t < t1; t++) {
                const float *ar = a + (size_t)t * T;
                float *dar = da + (size_t)t * T;
                double dot = 0.0;
                for (int s = 0; s <= t; s++) dot += (double)ar[s] * dar[s];
                float df = (float)dot;
                for (int s = 0; s <= t; s++) dar[s] = ar[s] * (dar[s] - df) * scale;
                for (int s = t + 1; s < T; s++) dar[s] = 0.0f;
                if (bf) mt_cpu_bf16_round_block(dar, T, dar, T, 1, t + 1);
            }
            /* dq[t0:t1] = dscores[t0:t1, 0:t1] k[0:t1] */
            sgemm(0, 0, t1 - t0, hs, t1, 1.0f, da + (size_t)t0 * T, T, k, C3, dq + (size_t)t0 * C3,
                  C3);
        }
        /* Keys [s0,s1) are seen only by queries t >= s0:
         * dk[s0:s1] = dscores[s0:T, s0:s1]^T q[s0:T], dv[s0:s1] = att[s0:T, s0:s1]^T dout[s0:T] */
        for (int s0 = 0; s0 < T; s0 += ATT_BLOCK) {
            int s1 = mt_imin(s0 + ATT_BLOCK, T);
            size_t d = (size_t)s0 * T + s0;
            sgemm(1, 0, s1 - s0, hs, T - s0, 1.0f, da + d, T, q + (size_t)s0 * C3, C3,
                  dk + (size_t)s0 * C3, C3);
            const float *am = a + d;
            int lda = T;
            if (bf) {
                float *w = att_tmp_of_thread(T);
                mt_cpu_bf16_round_block(w, s1 - s0, am, T, T - s0, s1 - s0);
                am = w, lda = s1 - s0;
            }
            sgemm(1, 0, s1 - s0, hs, T - s0, 1.0f, am, lda, dr + (size_t)s0 * C, C,
                  dv + (size_t)s0 * C3, C3);
        }
    }
}

/* ---- embedding ---- */

void mt_cpu_embedding_forward(float *out, const int32_t *tokens, const float *wte, const float *wpe,
                              int B, int T, int C) {
    int n = B * T;
#pragma omp parallel for schedule(static) if ((size_t)n * C >= MT_OMP_MIN)
    for (int i = 0; i < n; i++) {
        const float *e = wte + (size_t)tokens[i] * C, *p = wpe + (size_t)(i % T) * C;
        float *o = out + (size_t)i * C;
        for (int c = 0; c < C; c++) o[c] = e[c] + p[c];
    }
}

static int cmp_u64(const void *pa, const void *pb) {
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return (a > b) - (a < b);
}

void mt_cpu_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                               int B, int T, int C) {
    /* Positions sorted by (token, position): each token's rows are then summed
     * in position order and added to dwte once, so no two writers share a row
     * and a second call adds exactly the same amount. order(n): token << 32 | i
     * (positions i < 2^32). */
    size_t n = (size_t)B * T;
    uint64_t *order = malloc((n ? n : 1) * sizeof(uint64_t));
    if (!order) abort();
    for (size_t i = 0; i < n; i++) order[i] = (uint64_t)(uint32_t)tokens[i] << 32 | (uint64_t)i;
    qsort(order, n, sizeof(uint64_t), cmp_u64);
    /* Each task owns CH_BLOCK channels of dwte and dwpe for all tokens and positions. */
#pragma omp parallel for schedule(static) if (n * C >= MT_OMP_MIN && C > CH_BLOCK)
    for (int c0 = 0; c0 < C; c0 += CH_BLOCK) {
        int c1 = mt_imin(c0 + CH_BLOCK, C), w = c1 - c0;
        float acc[CH_BLOCK];
        for (size_t i = 0; i < n;) {
            uint64_t tok = order[i] >> 32;
            memset(acc, 0, sizeof acc);
            for (; i < n && order[i] >> 32 == tok; i++) {
                const float *dr = dout + (size_t)(order[i] & 0xffffffffu) * C + c0;
                for (int c = 0; c < w; c++) acc[c] += dr[c];
            }
            float *g = dwte + (size_t)tok * C + c0;
            for (int c = 0; c < w; c++) g[c] += acc[c];
        }
        for (int t = 0; t < T; t++) {
            memset(acc, 0, sizeof acc);
            for (int b = 0; b < B; b++) {
                const float *dr = dout + ((size_t)b * T + t) * C + c0;
                for (int c = 0; c < w; c++) acc[c] += dr[c];
            }
            float *g = dwpe + (size_t)t * C + c0;
            for (int c = 0; c < w; c++) g[c] += acc[c];
        }
    }
    free(order);
}

/* ---- dropout ----
 * The mask is a pure function of (seed, stream, offset + i), so the backward
 * recomputes it instead of storing it, and a shard of a tensor drops the same
 * elements as the unsharded tensor when offset is the shard's global start. */

static void dropout_apply(float *y, const float *x, size_t n, float p, uint64_t seed,
                          uint64_t stream, uint64_t offset) {
    if (p == 0.0f) {
        if (y != x) memcpy(y, x, n * sizeof(float));
        return;
    }
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n >= MT_OMP_MIN / 4)
    for (size_t i = 0; i < n; i++)
        y[i] = mt_rng_uniform(seed, stream, offset + i) >= p ? x[i] * scale : 0.0f;
}

void mt_cpu_dropout_forward(float *y, const float *x, size_t n, float p, uint64_t seed,
                            uint64_t stream, uint64_t offset) {
    dropout_apply(y, x, n, p, seed, stream, offset);
}

void mt_cpu_dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t seed,
                             uint64_t stream, uint64_t offset) {
    dropout_apply(dx, dy, n, p, seed, stream, offset);
}
