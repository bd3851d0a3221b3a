/*
 * xent_cpu.c - the CPU backend's one-pass softmax cross-entropy
 * (mt_backend.xent_fused; contract in kernels/backend.h): the loss, the
 * gradient and the arg-max count straight from the logits, which are
 * overwritten with the gradient, so no (N,V) probability buffer exists.
 *
 * Each row z(V) is swept three times; at V = 50304 a row is 197 KiB, so after
 * the first sweep (from memory) the other two run from the core's L2:
 *   1. max and first arg-max: 8 lanes, lane j keeping the first maximum of the
 *      elements c = j (mod 8), then the lanes merged (the largest value, the
 *      smallest index among equals), so compares vectorize;
 *   2. e = exp(z - max) (mt_vexp_xent, kernels/cpu/vmath.h) written over z and summed into 8
 *      double partial sums, lane j taking the elements c = j (mod 8) in
 *      order, added in a fixed tree, then the tail of V mod 8 in order;
 *   3. z = e * (1/sum), then 1 subtracted at the label.
 * The row's loss is log(sum) + max - z[label] in double, as
 * softmax_xent_forward computes it. Rows are ld floats apart; a padded
 * vocabulary's columns V..ld-1 are never read and are set to 0 (no gradient).
 *
 * Determinism: rows are shared out over OpenMP threads (static), a row is
 * computed by one thread in a fixed order, and each row's loss goes to its
 * own slot of a per-row array summed in row order after the loop: the loss,
 * the gradient and the count are bitwise the same at any thread count. The
 * row kernel is MT_VEC (kernels/cpu/vec.h); this file is built with
 * -ffp-contract=fast, so the x86-64-v3 copy's exp uses FMA and its bits
 * differ from the baseline copy's (within exp's accuracy), never with the
 * thread count.
 *
 * Against softmax_xent_forward + softmax_xent_backward (scale 1) +
 * count_correct: the exp (about 2e-7 relative against glibc's expf) and the
 * order of the sum (8 partials against one running sum, both in double)
 * differ, so losses and gradients agree to about 1e-7 relative; the arg-max
 * is the same (plain compares), except that rows holding a NaN get an
 * unspecified one (their loss is NaN anyway).
 */
#include "kernels/cpu/xent_cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cpu/vec.h"
#include "kernels/cpu/vmath.h"

#define LANES      8   /* vector lanes of the max and sum sweeps (AVX2 floats) */
#define LOSS_STACK 256 /* rows whose losses fit on the stack */

/* *mx = max of z(V), *best = the first index holding it (V >= 1) */
static inline void row_argmax(const float *z, int V, float *mx, int *best) {
    float m = z[0];
    int b = 0, c = 1;
    if (V >= 2 * LANES) {
        float lv[LANES]; /* lane j: the first maximum of z[c], c = j (mod 8) */
        int li[LANES];
        for (int j = 0; j < LANES; j++) lv[j] = z[j], li[j] = j;
        for (c = LANES; c + LANES <= V; c += LANES)
            for (int j = 0; j < LANES; j++) {
                int take = z[c + j] > lv[j];
                lv[j] = take ? z[c + j] : lv[j];
                li[j] = take ? c + j : li[j];
            }
        m = lv[0];
        b = li[0];
        for (int j = 1; j < LANES; j++)
            if (lv[j] > m || (lv[j] == m && li[j] < b)) m = lv[j], b = li[j];
    }
    for (; c < V; c++) /* the tail: later indices, so only a strictly larger value wins */
        if (z[c] > m) m = z[c], b = c;
    *mx = m;
    *best = b;
}

/* z(V) overwritten with exp(z - mx); returns the sum in double */
static inline double row_exp_sum(float *z, int V, float mx) {
    double acc[LANES] = {0, 0, 0, 0, 0, 0, 0, 0};
    int c = 0;
    for (; c + LANES <= V; c += LANES)
        for (int j = 0; j < LANES; j++) {
            float e = mt_vexp_xent(z[c + j] - mx);
            z[c + j] = e;
            acc[j] += (double)e;
        }
    double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (; c < V; c++) {
        float e = mt_vexp_xent(z[c] - mx);
        z[c] = e;
        s += (double)e;
    }
    return s;
}

/* One row z(V) with its label: z becomes softmax(z) - onehot(label); *hit =
 * whether the first arg-max is the label; returns the row's loss. */
static MT_VEC double xent_row(float *z, int V, int label, int *hit) {
    float mx;
    int best;
    row_argmax(z, V, &mx, &best);
    *hit = best == label;
    float zl = z[label];
    double sum = row_exp_sum(z, V, mx);
    float inv = (float)(1.0 / sum);
    for (int c = 0; c < V; c++) z[c] *= inv;
    z[label] -= 1.0f;
    /* logsumexp(z) - z[label], without log(0) */
    return log(sum) + (double)mx - (double)zl;
}

void mt_cpu_xent_fused(float *logits, const int32_t *labels, int N, int V, int ld, double *out) {
    out[0] = out[1] = 0.0;
    if (N <= 0 || V <= 0) return;
    double stack[LOSS_STACK];
    double *loss = N <= LOSS_STACK ? stack : malloc((size_t)N * sizeof *loss); /* (N) */
    if (!loss) {
        fprintf(stderr, "mpitrain: error: out of memory for %d cross-entropy row losses\n", N);
        abort();
    }
    int64_t hits = 0;
#pragma omp parallel for schedule(static) reduction(+ : hits) if ((size_t)N * ld >= MT_OMP_MIN)
    for (int r = 0; r < N; r++) {
        int hit;
        float *z = logits + (size_t)r * ld;
        loss[r] = xent_row(z, V, labels[r], &hit);
        for (int c = V; c < ld; c++) z[c] = 0.0f; /* the padding: no gradient */
        hits += hit;
    }
    double total = 0.0;
    for (int r = 0; r < N; r++) total += loss[r];
    if (loss != stack) free(loss);
    out[0] = total;
    out[1] = (double)hits;
}
