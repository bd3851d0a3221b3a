/*
 * version.h - what this binary is: mpitrain version, the git commit it was
 * built from, and the versions of the libraries it runs with (MPI, HDF5,
 * BLAS, compiler, CUDA, cuBLAS, NCCL). Shown by --version, stored with every run.
 */
#ifndef MT_VERSION_H
#define MT_VERSION_H

#include <cjson/cJSON.h>
#include <stdio.h>

typedef struct {
    const char *version; /* mpitrain, e.g. "0.1.0" */
    const char *commit;  /* git commit at build time, or "unknown" */
    const char *branch;
    int dirty; /* built from a tree with uncommitted changes */
    const char *compiler;
    char mpi[256]; /* MPI_Get_library_version, first line */
    char hdf5[32];
    char blas[128]; /* openblas_get_config */
    /* the GPU libraries this build has ("" where it has none; the driver ""
     * without one) */
    char cuda_runtime[32], cuda_driver[32], cublas[32], nccl[32];
} mt_version_info;

/* Fills info; safe before MPI_Init. */
void mt_version_get(mt_version_info *info);
void mt_version_print(FILE *f);
/* Records of a run (run.json, the registry): the code (mpitrain_version,
 * commit, branch, dirty) and the libraries (mpi, hdf5, blas, compiler, then
 * the GPU libraries: absent ones as null when nulls, else left out). */
void mt_version_add_code(cJSON *obj, const mt_version_info *v);
void mt_version_add_libraries(cJSON *obj, const mt_version_info *v, int nulls);

#endif
