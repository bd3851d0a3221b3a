/* version.c - build and library versions (see version.h). */
#include "version.h"

#include <string.h>

#include "buildinfo.h"
#include "io/h5util.h"
#include "kernels/backend.h"
#include "kernels/backends.h"
#include "parallel/collectives.h"
#include "parallel/xcomm.h"

static void fill(mt_version_info *info) {
    memset(info, 0, sizeof *info);
    info->version = MT_VERSION;
    info->commit = MT_GIT_COMMIT;
    info->branch = MT_GIT_BRANCH;
    info->dirty = MT_GIT_DIRTY;
    info->compiler = MT_COMPILER;
    mt_coll_mpi_version(info->mpi, sizeof info->mpi);
    mt_h5_version(info->hdf5, sizeof info->hdf5);
    mt_backend_blas_version(info->blas, sizeof info->blas);
    mt_backend_versions bv;
    mt_backend_versions_get(&bv);
    snprintf(info->cuda_runtime, sizeof info->cuda_runtime, "%s", bv.cuda_runtime);
    snprintf(info->cuda_driver, sizeof info->cuda_driver, "%s", bv.cuda_driver);
    snprintf(info->cublas, sizeof info->cublas, "%s", bv.cublas);
    mt_xcomm_nccl_version(info->nccl, sizeof info->nccl);
}

/* Filled once: the libraries do not change in a process, and a checkpoint
 * job's thread (rank 0's registry records) then only reads it, never
 * calling MPI, HDF5 or OpenBLAS's version queries beside the training. The
 * trainer's first call comes on its main thread, after the device is set
 * up (the run folder's record), before any checkpoint job. */
static mt_version_info cached;
static int have_cached;

void mt_version_get(mt_version_info *out) {
    if (!have_cached) {
        fill(&cached);
        have_cached = 1;
    }
    *out = cached;
}

void mt_version_print(FILE *f) {
    mt_version_info v;
    mt_version_get(&v);
    fprintf(f, "mpitrain %s\n", v.version);
    fprintf(f, "commit:   %s%s (%s)\n", v.commit, v.dirty ? "-dirty" : "", v.branch);
    fprintf(f, "MPI:      %s\n", v.mpi);
    fprintf(f, "HDF5:     %s\n", v.hdf5);
    fprintf(f, "BLAS:     %s\n", v.blas);
    fprintf(f, "compiler: %s\n", v.compiler);
    if (v.cuda_runtime[0])
        fprintf(f, "CUDA:     runtime %s, driver %s, cuBLAS %s, NCCL %s\n", v.cuda_runtime,
                v.cuda_driver[0] ? v.cuda_driver : "none", v.cublas,
                v.nccl[0] ? v.nccl : "not built");
    else
        fprintf(f, "CUDA:     not built\n");
}

void mt_version_add_code(cJSON *obj, const mt_version_info *v) {
    cJSON_AddStringToObject(obj, "mpitrain_version", v->version);
    cJSON_AddStringToObject(obj, "commit", v->commit);
    cJSON_AddStringToObject(obj, "branch", v->branch);
    cJSON_AddBoolToObject(obj, "dirty", v->dirty);
}

void mt_version_add_libraries(cJSON *obj, const mt_version_info *v, int nulls) {
    cJSON_AddStringToObject(obj, "mpi", v->mpi);
    cJSON_AddStringToObject(obj, "hdf5", v->hdf5);
    cJSON_AddStringToObject(obj, "blas", v->blas);
    cJSON_AddStringToObject(obj, "compiler", v->compiler);
    const char *gv[4] = {v->cuda_runtime, v->cuda_driver, v->cublas, v->nccl};
    const char *gk[4] = {"cuda_runtime", "cuda_driver", "cublas", "nccl"};
    for (int i = 0; i < 4; i++)
        if (gv[i][0])
            cJSON_AddStringToObject(obj, gk[i], gv[i]);
        else if (nulls)
            cJSON_AddNullToObject(obj, gk[i]);
}
