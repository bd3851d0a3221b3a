/*
 * backends.h - the table of backends (kernels/backend.h is the interface
 * each fills): choosing one by name, whether it can run here, the device a
 * rank takes, and the versions of the GPU libraries a build has.
 */
#ifndef MT_BACKENDS_H
#define MT_BACKENDS_H

#include <stddef.h>

#include "kernels/backend.h"

/* The CPU backend posing as a device backend (host_memory 0, name
 * "cpu-staged"): the trainer, pipeline and comms then take every path they
 * take for GPU memory (host copies, staging), on the CPU. For tests
 * (MPITRAIN_TEST_STAGED=1 with train.device = cpu; docs/CUDA.md). */
const mt_backend *mt_backend_cpu_staged(void);
/* What the staged backend counted since the process started, by kind: the
 * calls that make the host wait for a GPU on a device backend (a copy to
 * the host, a copy to the device, synchronize, an op returning a value to
 * the host: sumsq, the unfused losses, count_correct); kind -1: all of
 * them. (Copies queued with to_device_async do not wait.) The trainer reports them
 * per step (docs/CUDA.md, "Host synchronisations"). */
enum {
    MT_SYNC_TO_HOST,
    MT_SYNC_TO_DEVICE, /* (cudaMemcpy from pageable memory waits for the stream first) */
    MT_SYNC_SYNCHRONIZE,
    MT_SYNC_VALUE,
    MT_STAGED_SYNC_KINDS
};
long mt_backend_staged_syncs(int kind);
/* 1 when be's flash attention ops take heads of head_size channels
 * (flash_max_head; the GPT runs the unfused attention otherwise) */
int mt_backend_flash_takes(const mt_backend *be, int head_size);
/* Chooses a backend by name ("cpu", "cuda", "cpu-staged"); NULL if unknown
 * or not built. */
const mt_backend *mt_backend_get(const char *name);
/* Whether backend `name` can run here: > 0 (devices; 1 for the CPU), or 0
 * with the reason in why (not built, no driver, no device). */
int mt_backend_probe(const char *name, char *why, size_t n);
/* Backend "cuda": makes the GPU of this node-local rank current (local_rank
 * modulo the visible GPUs) and describes it in desc. Returns the device
 * index, or -1 with the reason in desc. */
int mt_backend_select_device(const char *name, int local_rank, char *desc, size_t n);
/* The CPU backend's bf16 matmul path as MPITRAIN_CPU_SBGEMM asks for it
 * (auto, on, off; docs/CUDA.md): 0, or -1 with one line in why (an unknown
 * value, or on where the OpenBLAS loaded has no cblas_sbgemm). A run checks
 * this before set_precision, which would otherwise exit 2 on every rank. */
int mt_backend_cpu_bf16_check(char *why, size_t n);
/* One line: the CPU's bf16 matmul path after set_precision(1) and why
 * ("emulated (MPITRAIN_CPU_SBGEMM = auto: the CPU has no AVX512-BF16)"). */
const char *mt_backend_cpu_bf16_path(void);
/* "<host>/<PCI bus id>" of this rank's current GPU ("" without CUDA). */
void mt_backend_device_uid(char *buf, size_t n);

/* Whether backend be has the fused op (backend.h) named op: "flash_attention"
 * (forward and backward), "residual_layernorm", "bias_gelu" (forward and
 * backward), "xent", "adamw_multi", "matmul_bias", "matmul_bias_gelu",
 * "matmul_dgelu", "matmul_wgrad_bgrad", "matmul_bf16"; 0 for another name. */
int mt_backend_has_fused(const mt_backend *be, const char *op);

/* Versions of the GPU libraries this binary was built with ("" when it was
 * built without them; the driver "" when there is none). NCCL's is the comm
 * layer's (parallel/xcomm.h). */
typedef struct {
    char cuda_runtime[32], cuda_driver[32], cublas[32];
} mt_backend_versions;
void mt_backend_versions_get(mt_backend_versions *v);

#endif
