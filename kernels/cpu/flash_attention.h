/*
 * flash_attention.h - the CPU backend's flash-style causal attention,
 * defined in flash_attention.c and hooked into the backend struct in
 * backend_cpu.c (flash_attention_forward / flash_attention_backward). Internal
 * to kernels/cpu: callers reach these only through mt_backend
 * (kernels/backend.h, where the shapes and semantics are the contract).
 */
#ifndef MT_FLASH_ATTENTION_H
#define MT_FLASH_ATTENTION_H

/* out(B,T,C), lse(B,NH,T) from qkv(B,T,3C); no (T,T) matrix */
void mt_cpu_flash_attention_forward(float *out, float *lse, const float *qkv, int B, int T, int C,
                                    int NH);
/* OVERWRITES dqkv(B,T,3C) from dout(B,T,C) and the forward's qkv, out, lse */
void mt_cpu_flash_attention_backward(float *dqkv, const float *dout, const float *qkv,
                                     const float *out, const float *lse, int B, int T, int C,
                                     int NH);

#endif
