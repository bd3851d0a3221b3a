/* device.c - GPU choice and CUDA versions (see device.h). */
#include "kernels/cuda/device.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <unistd.h>

int mt_cuda_select(int local_rank, char *desc, size_t n) {
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess || count == 0) {
        snprintf(desc, n, "no usable CUDA device (%s)",
                 err != cudaSuccess ? cudaGetErrorString(err) : "none visible");
        cudaGetLastError();
        return -1;
    }
    int dev = local_rank % count;
    struct cudaDeviceProp prop;
    char bus[32] = "?";
    if ((err = cudaSetDevice(dev)) != cudaSuccess ||
        (err = cudaGetDeviceProperties(&prop, dev)) != cudaSuccess) {
        snprintf(desc, n, "cannot use CUDA device %d of %d: %s", dev, count,
                 cudaGetErrorString(err));
        cudaGetLastError();
        return -1;
    }
    cudaDeviceGetPCIBusId(bus, sizeof bus, dev);
    snprintf(desc, n, "GPU %d of %d: %s, %.0f MiB, sm_%d%d, PCI %s", dev, count, prop.name,
             (double)prop.totalGlobalMem / 1048576.0, prop.major, prop.minor, bus);
    return dev;
}

void mt_cuda_device_uid(char *buf, size_t n) {
    char host[64] = "?", bus[32] = "?";
    int dev = -1;
    gethostname(host, sizeof host - 1);
    if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetPCIBusId(bus, sizeof bus, dev);
    cudaGetLastError();
    snprintf(buf, n, "%s/%s", host, bus);
}

void mt_cuda_versions(char *runtime, char *driver, char *cublas, size_t n) {
    int v = 0;
    if (cudaRuntimeGetVersion(&v) == cudaSuccess)
        snprintf(runtime, n, "%d.%d", v / 1000, (v % 1000) / 10);
    else
        snprintf(runtime, n, "unknown");
    v = 0;
    if (cudaDriverGetVersion(&v) == cudaSuccess && v > 0)
        snprintf(driver, n, "%d.%d", v / 1000, (v % 1000) / 10);
    else
        driver[0] = '\0';
    cudaGetLastError();
    int ma = 0, mi = 0, pa = 0;
    if (cublasGetProperty(MAJOR_VERSION, &ma) == CUBLAS_STATUS_SUCCESS &&
        cublasGetProperty(MINOR_VERSION, &mi) == CUBLAS_STATUS_SUCCESS &&
        cublasGetProperty(PATCH_LEVEL, &pa) == CUBLAS_STATUS_SUCCESS)
        snprintf(cublas, n, "%d.%d.%d", ma, mi, pa);
    else
        snprintf(cublas, n, "unknown");
}
