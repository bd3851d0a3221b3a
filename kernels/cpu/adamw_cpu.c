/*
 * adamw_cpu.c - the CPU backend's multi-tensor AdamW (mt_backend.adamw_multi;
 * contract in kernels/backend.h): every parameter tensor's update in one
 * OpenMP region, where the per-tensor adamw_update opens one region per
 * tensor (about 50 for the GPT bench model, each with its fork and barrier).
 *
 * The segments are cut into chunks of CHUNK elements (a segment's last chunk
 * shorter; a chunk never spans two segments), numbered in segment order, and
 * the chunks are shared out with schedule(static). Each element's update is
 * independent of every other, so the chunking and the thread count never
 * change a bit.
 *
 * Bits: the same as be->scale(g, gscale) (when gscale != 1) then
 * adamw_update on each segment, element for element: the same float
 * operations in the same order (one function, mt_adamw_elem in adamw_cpu.h,
 * after the same scaling of the gradient). The chunk loop is MT_VEC (kernels/cpu/vec.h);
 * this file is built with -ffp-contract=off, so the x86-64-v3 copy rounds
 * every multiply and add as the baseline copy (and adamw_update) do: wider
 * vectors, no FMA, no change in bits on any CPU.
 */
#include "kernels/cpu/adamw_cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cpu/vec.h"
#include "kernels/cpu/vmath.h"

#define CHUNK       8192 /* elements per task: 32 KiB of each of p, g, m, v */
#define FIRST_STACK 128  /* segments whose chunk table fits on the stack */

/* How the gradient is scaled first: as be->scale does it (backend.h). */
enum { G_AS_IS, G_SCALED, G_CLEARED };

typedef struct {
    float gscale, beta1, beta2, eps;
    float step;         /* lr / bc1 */
    float inv_sqrt_bc2; /* 1 / sqrt(bc2) */
} adamw_consts;

/* n elements of one segment: adamw_update's loop, the gradient scaled by
 * mode (loop-invariant, so each mode gets its own vectorized loop) */
static MT_VEC void adamw_chunk(float *p, const float *g, float *m, float *v, size_t n, int mode,
                               float decay, const adamw_consts *k) {
    const float gscale = k->gscale, beta1 = k->beta1, beta2 = k->beta2, eps = k->eps;
    const float step = k->step, inv_sqrt_bc2 = k->inv_sqrt_bc2;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        if (mode == G_SCALED) gi *= gscale;
        /* scale by 0 clears a NaN or Inf too, and keeps a finite value's sign of zero */
        if (mode == G_CLEARED) gi = isfinite(gi) ? gi * 0.0f : 0.0f;
        mt_adamw_elem(&p[i], &m[i], &v[i], gi, beta1, beta2, eps, step, inv_sqrt_bc2, decay);
    }
}

/* the segment holding chunk t: the last s with first[s] <= t (segments
 * without chunks have first[s] == first[s + 1] and are passed over) */
static int segment_of(const size_t *first, int nseg, size_t t) {
    int lo = 0, hi = nseg;
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        if (first[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

void mt_cpu_adamw_multi(float *p, const float *g, float *m, float *v, int nseg, const size_t *p_off,
                        const size_t *s_off, const size_t *n, const float *wd, float gscale,
                        float lr, float beta1, float beta2, float eps, float bc1, float bc2) {
    if (nseg <= 0) return;
    size_t stack[FIRST_STACK + 1];
    size_t *first = nseg <= FIRST_STACK ? stack : malloc(((size_t)nseg + 1) * sizeof *first);
    if (!first) {
        fprintf(stderr, "mpitrain: error: out of memory for the chunks of %d AdamW tensors\n",
                nseg);
        abort();
    }
    /* first(nseg + 1): segment s holds chunks [first[s], first[s + 1]) */
    size_t total = 0;
    first[0] = 0;
    for (int s = 0; s < nseg; s++) {
        first[s + 1] = first[s] + (n[s] + CHUNK - 1) / CHUNK;
        total += n[s];
    }
    /* the same float expressions as adamw_update's, so the same bits */
    adamw_consts k = {gscale, beta1, beta2, eps, lr / bc1, 1.0f / sqrtf(bc2)};
    int mode = gscale == 1.0f ? G_AS_IS : gscale == 0.0f ? G_CLEARED : G_SCALED;
    size_t nchunks = first[nseg];
#pragma omp parallel for schedule(static) if (total >= MT_OMP_MIN)
    for (size_t t = 0; t < nchunks; t++) {
        int s = segment_of(first, nseg, t);
        size_t i0 = (t - first[s]) * CHUNK;
        size_t len = n[s] - i0 < CHUNK ? n[s] - i0 : CHUNK;
        size_t at = p_off[s] + i0, st = s_off[s] + i0;
        adamw_chunk(p + at, g + at, m + st, v + st, len, mode, 1.0f - lr * wd[s], &k);
    }
    if (first != stack) free(first);
}
