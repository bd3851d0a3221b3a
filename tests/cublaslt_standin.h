/*
 * cublaslt_standin.h - knobs and counters of tests/cublaslt_standin.c, the
 * host stand-in of the cuBLASLt and CUDA runtime functions that
 * kernels/cuda/matmul_lt.c calls (see test_matmul_lt.c).
 */
#ifndef MT_CUBLASLT_STANDIN_H
#define MT_CUBLASLT_STANDIN_H

typedef struct {
    long matmuls;     /* cublasLtMatmul calls computed */
    long epilogue[4]; /* of them: BIAS, GELU_AUX_BIAS, DGELU(_BGRAD), BGRADA/B */
    long fallbacks;   /* unfused mt_cuda_* ops called (matmul_lt.c's fallback) */
    long live;        /* descriptors, layouts and preferences not yet destroyed */
    long rejected;    /* calls the stand-in did not understand (each also aborts) */
    long heuristics;  /* cublasLtMatmulAlgoGetHeuristic calls */
    long descs;       /* cublasLtMatmulDescCreate calls */
    long handles;     /* cuBLASLt handles and device buffers not yet destroyed or freed */
    long widened;     /* mt_cuda_from_bf16 calls (matmul_bf16's fallback widening) */
} mt_standin_stats;

extern mt_standin_stats mt_standin;
/* 1: the heuristic finds no algorithm (matmul_lt.c must fall back) */
extern int mt_standin_no_algo;

#endif
