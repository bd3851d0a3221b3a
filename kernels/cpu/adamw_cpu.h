/*
 * adamw_cpu.h - the CPU backend's multi-tensor AdamW, defined in adamw_cpu.c
 * and hooked into the backend struct in backend_cpu.c. Internal to
 * kernels/cpu: callers reach it only through mt_backend.adamw_multi (the
 * contract is in kernels/backend.h).
 */
#ifndef MT_ADAMW_CPU_H
#define MT_ADAMW_CPU_H

#include <math.h>
#include <stddef.h>

/* adamw_update of each of the nseg segments (n[i] elements of p, g at
 * p_off[i], of m, v at s_off[i], weight decay wd[i]), the gradient first
 * scaled by gscale as be->scale would, in one OpenMP region. */
void mt_cpu_adamw_multi(float *p, const float *g, float *m, float *v, int nseg, const size_t *p_off,
                        const size_t *s_off, const size_t *n, const float *wd, float gscale,
                        float lr, float beta1, float beta2, float eps, float bc1, float bc2);

/* One element's AdamW step from its gradient g (already scaled): the float
 * expressions of both adamw_update (backend_cpu.c) and adamw_multi, so that
 * their bits agree. Inlined with the includer's flags: both files contract
 * no a * b + c (CMakeLists.txt), which keeps them equal on every CPU.
 * step = lr / bc1, inv_sqrt_bc2 = 1 / sqrt(bc2), decay = 1 - lr * wd. */
static inline void mt_adamw_elem(float *p, float *m, float *v, float g, float beta1, float beta2,
                                 float eps, float step, float inv_sqrt_bc2, float decay) {
    float mi = beta1 * *m + (1.0f - beta1) * g;
    float vi = beta2 * *v + (1.0f - beta2) * g * g;
    *m = mi;
    *v = vi;
    float denom = sqrtf(vi) * inv_sqrt_bc2 + eps;
    *p = *p * decay - step * (mi / denom);
}

#endif
