/*
 * h5raw_probe.c - not a regression target: a libFuzzer probe of libhdf5
 * itself, mutating the raw bytes of a small HDF5 file and opening it the
 * way mpitrain's readers do (H5Fis_hdf5, H5Fopen, then every link of the
 * root group, its attributes, and every dataset read). It shows what
 * docs/FUZZING.md reports: libhdf5 1.10 crashes on some damaged files, so
 * the real targets mutate structure, and checkpoints are hash-checked
 * before HDF5 sees them. Built with the targets (cmake --build B --target
 * h5raw_probe), never run by ctest.
 */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static herr_t visit(hid_t g, const char *name, const H5L_info_t *li, void *op) {
    (void)li, (void)op;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0) return 0;
    H5O_info_t oi;
    if (H5Oget_info2(o, &oi, H5O_INFO_BASIC | H5O_INFO_NUM_ATTRS) >= 0 &&
        oi.type == H5O_TYPE_DATASET) {
        hid_t sp = H5Dget_space(o);
        hssize_t n = H5Sget_simple_extent_npoints(sp);
        if (n > 0 && n < 1 << 20) {
            float *buf = malloc((size_t)n * sizeof *buf);
            if (buf) H5Dread(o, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            free(buf);
        }
        H5Sclose(sp);
    }
    H5Oclose(o);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    const char *path = fz_tmp("raw.h5");
    fz_write_file(path, data, size);
    if (H5Fis_hdf5(path) > 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0) {
            H5Literate(f, H5_INDEX_NAME, H5_ITER_INC, NULL, visit, NULL);
            H5Fclose(f);
        }
    }
    remove(path);
    return 0;
}
