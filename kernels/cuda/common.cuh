/*
 * common.cuh - the helpers the CUDA kernel files (the .cu files of
 * kernels/cuda) share, one copy each: the lazily grown work buffer. Private
 * to kernels/cuda; the ops themselves are declared in cuda_ops.h.
 */
#ifndef MT_CUDA_COMMON_CUH
#define MT_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stddef.h>

#include "kernels/cuda/cuda_ops.h"

/* A device work buffer, grown on demand and never freed. Each file keeps its
 * own (a static mt_cuda_work), as cuda_ops.h says: no two files share one. */
typedef struct {
    void *buf;  /* device memory, cap bytes */
    size_t cap; /* bytes */
} mt_cuda_work;

/* w's buffer, grown to at least bytes; what it held is lost when it grows. */
static inline void *mt_cuda_work_get(mt_cuda_work *w, size_t bytes) {
    if (bytes > w->cap) {
        /* cudaFree synchronises, so no kernel still in flight uses the old buffer. */
        if (w->buf) MT_CUDA_CHECK(cudaFree(w->buf));
        w->buf = NULL;
        w->cap = 0;
        MT_CUDA_CHECK(cudaMalloc(&w->buf, bytes));
        w->cap = bytes;
    }
    return w->buf;
}

#endif
