/*
 * fuzz_h5.h - the structure-aware half of the HDF5 fuzz targets: a fuzzer
 * input read as a description of an HDF5 file (which objects exist, what
 * kind each is, its type, rank, shape, layout, filters, values, and its
 * attributes), written with the HDF5 API. libhdf5 1.10 crashes on some
 * malformed raw bytes itself (docs/FUZZING.md), so the targets mutate the
 * structure and values of well-formed files, never their bytes.
 *
 * Every decision reads one byte, and 0 is always "as mpitrain writes it":
 * the empty input describes a valid file, and a short input is a valid
 * file with a few things changed. Sizes are small, or huge (>= 2^61
 * elements, never written: HDF5 keeps them as unallocated chunks) so that
 * size arithmetic overflows, never in between: a loader must not run out of
 * memory on a fuzzer's whim, only on a size it cannot hold at all.
 */
#ifndef MT_FUZZ_H5_H
#define MT_FUZZ_H5_H

#include <hdf5.h>

#include "fuzz_util.h"

#define FZ_MAX_RANK 6

/* What mpitrain writes for an object: its type and shape. */
typedef struct {
    hid_t type; /* H5T_NATIVE_FLOAT, H5T_NATIVE_INT64, a string type (H5T_C_S1) ... */
    int rank;   /* 0: scalar */
    hsize_t dims[FZ_MAX_RANK];
    const char *text; /* string value (type H5T_C_S1) */
} fz_h5_spec;

/* Writes the object at path (intermediate groups created) as spec says,
 * or something else in its place as the input says: missing, a group, a
 * dangling soft or external link, another type, rank or shape, another
 * layout or filter, other values. Returns 1 when it wrote a dataset. */
int fz_h5_dataset(fz_in *in, hid_t file, const char *path, const fz_h5_spec *spec);
/* The same for an attribute name of the object at obj. */
void fz_h5_attr(fz_in *in, hid_t file, const char *obj, const char *name, const fz_h5_spec *spec);
/* Creates path (truncating) for one process, the way mpitrain writes its
 * files; the caller closes it. Aborts on failure. */
hid_t fz_h5_create(const char *path);

#endif
