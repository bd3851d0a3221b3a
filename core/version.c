/* version.c - build and library versions (see version.h). */
#include "version.h"

#include <hdf5.h>
#include <mpi.h>
#include <string.h>

#include "buildinfo.h"
#include "kernels/backend.h"

char *openblas_get_config(void);

void mt_version_get(mt_version_info *info) {
    memset(info, 0, sizeof *info);
    info->version = MT_VERSION;
    info->commit = MT_GIT_COMMIT;
    info->branch = MT_GIT_BRANCH;
    info->dirty = MT_GIT_DIRTY;
    info->compiler = MT_COMPILER;
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(lib, &len); /* allowed before MPI_Init */
    lib[len < (int)sizeof lib ? len : (int)sizeof lib - 1] = '\0';
    char *nl = strpbrk(lib, "\r\n,");
    if (nl) *nl = '\0';
    snprintf(info->mpi, sizeof info->mpi, "%s", lib);
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    snprintf(info->hdf5, sizeof info->hdf5, "%u.%u.%u%s", maj, min, rel,
#ifdef H5_HAVE_PARALLEL
             " (parallel)"
#else
             " (serial)"
#endif
    );
    snprintf(info->blas, sizeof info->blas, "%s", openblas_get_config());
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
    mt_backend_versions bv;
    mt_backend_versions_get(&bv);
    if (bv.cuda_runtime[0])
        fprintf(f, "CUDA:     runtime %s, driver %s, cuBLAS %s, NCCL %s\n", bv.cuda_runtime,
                bv.cuda_driver[0] ? bv.cuda_driver : "none", bv.cublas,
                bv.nccl[0] ? bv.nccl : "not built");
    else
        fprintf(f, "CUDA:     not built\n");
}
