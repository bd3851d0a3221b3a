/* backend.c - backend selection by name. */
#include "backend.h"

#include <stdio.h>
#include <string.h>

#ifdef MT_HAVE_CUDA
#include "kernels/cuda/backend_cuda.h"
#endif

const mt_backend *mt_backend_get(const char *name) {
    if (strcmp(name, "cpu") == 0) return mt_backend_cpu();
#ifdef MT_HAVE_CUDA
    if (strcmp(name, "cuda") == 0) return mt_backend_cuda();
#endif
    return NULL;
}

int mt_backend_probe(const char *name, char *why, size_t n) {
    if (strcmp(name, "cpu") == 0) return 1;
#ifdef MT_HAVE_CUDA
    if (strcmp(name, "cuda") == 0) return mt_cuda_probe(why, n);
#else
    if (strcmp(name, "cuda") == 0) {
        snprintf(why, n,
                 "this mpitrain was built without the CUDA backend (no nvcc found, or "
                 "MPITRAIN_CUDA=OFF)");
        return 0;
    }
#endif
    snprintf(why, n, "unknown backend '%s'", name);
    return 0;
}
