/*
 * backend_cuda.h - the CUDA backend (kernels/cuda): every op of the CPU
 * backend on the GPU, matmuls through cuBLAS, the rest in .cu kernels
 * (cuda_ops.h). Built when CMake finds nvcc (MPITRAIN_CUDA = AUTO | ON).
 */
#ifndef MT_BACKEND_CUDA_H
#define MT_BACKEND_CUDA_H

#include <stddef.h>

#include "kernels/backend.h"

/* The backend table; its ops run on the current CUDA device. */
const mt_backend *mt_backend_cuda(void);
/* Number of CUDA devices this process can use; 0 with the reason in why
 * (no driver, no device, ...). Never aborts. */
int mt_cuda_probe(char *why, size_t n);

#endif
