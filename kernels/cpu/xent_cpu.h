/*
 * xent_cpu.h - the CPU backend's one-pass softmax cross-entropy, defined in
 * xent_cpu.c and hooked into the backend struct in backend_cpu.c. Internal to
 * kernels/cpu: callers reach it only through mt_backend.xent_fused (the
 * contract is in kernels/backend.h).
 */
#ifndef MT_XENT_CPU_H
#define MT_XENT_CPU_H

#include <stdint.h>

/* logits(N,V) overwritten with softmax - onehot(labels(N)); out[0] = the
 * sum of the N losses, out[1] = the rows whose first arg-max is the label. */
void mt_cpu_xent_fused(float *logits, const int32_t *labels, int N, int V, int ld, double *out);

#endif
