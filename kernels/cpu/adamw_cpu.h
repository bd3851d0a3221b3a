/*
 * adamw_cpu.h - the CPU backend's multi-tensor AdamW, defined in adamw_cpu.c
 * and hooked into the backend struct in backend_cpu.c. Internal to
 * kernels/cpu: callers reach it only through mt_backend.adamw_multi (the
 * contract is in kernels/backend.h).
 */
#ifndef MT_ADAMW_CPU_H
#define MT_ADAMW_CPU_H

#include <stddef.h>

/* adamw_update of each of the nseg segments (n[i] elements of p, g at
 * p_off[i], of m, v at s_off[i], weight decay wd[i]), the gradient first
 * scaled by gscale as be->scale would, in one OpenMP region. */
void mt_cpu_adamw_multi(float *p, const float *g, float *m, float *v, int nseg, const size_t *p_off,
                        const size_t *s_off, const size_t *n, const float *wd, float gscale,
                        float lr, float beta1, float beta2, float eps, float bc1, float bc2);

#endif
