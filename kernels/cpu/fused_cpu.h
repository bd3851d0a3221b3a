/*
 * fused_cpu.h - the CPU backend's fused element-wise ops, defined in
 * fused_cpu.c and hooked into the backend struct in backend_cpu.c. Internal
 * to kernels/cpu: callers reach these only through mt_backend
 * (kernels/backend.h, where each op's shapes and semantics are the contract:
 * residual_layernorm_forward, bias_gelu_forward, gelu_bias_backward).
 */
#ifndef MT_FUSED_CPU_H
#define MT_FUSED_CPU_H

void mt_cpu_residual_layernorm_forward(float *res, float *out, float *mean, float *rstd,
                                       const float *a, const float *b, const float *w,
                                       const float *bias, int N, int C);
void mt_cpu_bias_gelu_forward(float *h, float *g, const float *bias, int N, int C);
void mt_cpu_gelu_bias_backward(float *dx, float *db, const float *dy, const float *h, int N, int C);

#endif
