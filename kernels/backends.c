/* backends.c - the table of backends: selection by name, device choice,
 * library versions (see backends.h). */
#include "backends.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/sbgemm_cpu.h"

#ifdef MT_HAVE_CUDA
#include "kernels/cuda/backend_cuda.h"
#include "kernels/cuda/device.h"
#endif

/* The staged backend counts what would make the host wait for a GPU: the
 * copies to the host, synchronize, and the ops that return a value to the
 * host (mt_backend_staged_syncs). */
static long syncs[MT_STAGED_SYNC_KINDS];
static const mt_backend *cpu_be;

static void staged_to_host(float *dst, const float *src, size_t n) {
    syncs[MT_SYNC_TO_HOST]++;
    cpu_be->to_host(dst, src, n);
}
static void staged_to_device(float *dst, const float *src, size_t n) {
    syncs[MT_SYNC_TO_DEVICE]++;
    cpu_be->to_device(dst, src, n);
}
static void staged_synchronize(void) {
    syncs[MT_SYNC_SYNCHRONIZE]++;
    cpu_be->synchronize();
}
static double staged_xent(float *probs, const float *logits, const int32_t *labels, int B, int C,
                          int ld) {
    syncs[MT_SYNC_VALUE]++;
    return cpu_be->softmax_xent_forward(probs, logits, labels, B, C, ld);
}
static int64_t staged_correct(const float *logits, const int32_t *labels, int B, int C, int ld) {
    syncs[MT_SYNC_VALUE]++;
    return cpu_be->count_correct(logits, labels, B, C, ld);
}
static double staged_sumsq(const float *x, size_t n) {
    syncs[MT_SYNC_VALUE]++;
    return cpu_be->sumsq(x, n);
}
/* (sumsq_multi and xent_fused write the backend's memory: no wait) */

/* The CPU's work is done when its calls return: a poll, not a wait. */
static int staged_queue_done(void) {
    return 1;
}

/* Pinned host memory and copies queued behind the work: on the CPU plain
 * memory and a copy, counted as no wait. */
static float *staged_host_alloc(size_t n) {
    return calloc(n ? n : 1, sizeof(float));
}
static void staged_to_device_async(float *dst, const float *src, size_t n) {
    cpu_be->to_device(dst, src, n);
}

const mt_backend *mt_backend_cpu_staged(void) {
    static mt_backend staged;
    if (!staged.name) {
        cpu_be = mt_backend_cpu();
        staged = *cpu_be;
        staged.name = "cpu-staged";
        staged.host_memory = 0;
        staged.to_host = staged_to_host;
        staged.to_device = staged_to_device;
        staged.synchronize = staged_synchronize;
        staged.softmax_xent_forward = staged_xent;
        staged.count_correct = staged_correct;
        staged.sumsq = staged_sumsq;
        staged.queue_done = staged_queue_done;
        staged.host_alloc = staged_host_alloc;
        staged.host_free = free;
        staged.to_device_async = staged_to_device_async;
    }
    return &staged;
}

int mt_backend_flash_takes(const mt_backend *be, int head_size) {
    return mt_backend_has_fused(be, "flash_attention") &&
           (!be->flash_max_head || head_size <= be->flash_max_head);
}

long mt_backend_staged_syncs(int kind) {
    if (kind >= 0 && kind < MT_STAGED_SYNC_KINDS) return syncs[kind];
    long all = 0;
    for (int k = 0; k < MT_STAGED_SYNC_KINDS; k++) all += syncs[k];
    return all;
}

const mt_backend *mt_backend_get(const char *name) {
    if (strcmp(name, "cpu") == 0) return mt_backend_cpu();
    if (strcmp(name, "cpu-staged") == 0) return mt_backend_cpu_staged();
#ifdef MT_HAVE_CUDA
    if (strcmp(name, "cuda") == 0) return mt_backend_cuda();
#endif
    return NULL;
}

int mt_backend_probe(const char *name, char *why, size_t n) {
    if (strcmp(name, "cpu") == 0 || strcmp(name, "cpu-staged") == 0) return 1;
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

int mt_backend_select_device(const char *name, int local_rank, char *desc, size_t n) {
#ifdef MT_HAVE_CUDA
    if (strcmp(name, "cuda") == 0) return mt_cuda_select(local_rank, desc, n);
#else
    (void)local_rank;
#endif
    snprintf(desc, n, "backend '%s' has no devices to choose", name);
    return -1;
}

int mt_backend_cpu_bf16_check(char *why, size_t n) {
    return mt_cpu_sbgemm_check(why, n);
}

const char *mt_backend_cpu_bf16_path(void) {
    return mt_cpu_bf16_path();
}

void mt_backend_device_uid(char *buf, size_t n) {
#ifdef MT_HAVE_CUDA
    mt_cuda_device_uid(buf, n);
#else
    if (n) buf[0] = '\0';
#endif
}

void mt_backend_versions_get(mt_backend_versions *v) {
    memset(v, 0, sizeof *v);
#ifdef MT_HAVE_CUDA
    mt_cuda_versions(v->cuda_runtime, v->cuda_driver, v->cublas, sizeof v->cublas);
#endif
}

int mt_backend_has_fused(const mt_backend *be, const char *op) {
    if (!strcmp(op, "flash_attention"))
        return be->flash_attention_forward && be->flash_attention_backward;
    if (!strcmp(op, "residual_layernorm")) return be->residual_layernorm_forward != NULL;
    if (!strcmp(op, "bias_gelu")) return be->bias_gelu_forward && be->gelu_bias_backward;
    if (!strcmp(op, "xent")) return be->xent_fused != NULL;
    if (!strcmp(op, "adamw_multi")) return be->adamw_multi != NULL;
    if (!strcmp(op, "matmul_bias")) return be->matmul_bias != NULL;
    if (!strcmp(op, "matmul_bias_gelu")) return be->matmul_bias_gelu != NULL;
    if (!strcmp(op, "matmul_dgelu")) return be->matmul_dgelu != NULL;
    if (!strcmp(op, "matmul_wgrad_bgrad")) return be->matmul_wgrad_bgrad != NULL;
    if (!strcmp(op, "matmul_bf16")) return be->matmul_bf16 != NULL;
    return 0;
}
