/*
 * h5util.h - small helpers over the HDF5 C API shared by the readers and
 * writers in io/ (datasets, model files, the MNIST importer).
 */
#ifndef MT_H5UTIL_H
#define MT_H5UTIL_H

#include <hdf5.h>

#include "base/error.h"

/* "1.10.8 (parallel)": the HDF5 library's version and whether it is parallel. */
void mt_h5_version(char *buf, size_t n);

/* Turns off HDF5's own error-stack printing: mpitrain reports errors itself. */
void mt_h5_quiet(void);

/* Elements in the dataspace of attribute or dataset obj: 1 for a scalar, 0
 * for a null dataspace, -1 on error. A reader that reads into one variable
 * checks for 1 first: HDF5 writes every element of an array there. */
long long mt_h5_npoints(hid_t obj);
/* The longest string mpitrain reads from a file it did not just write (a
 * resolved config is a few kB): a type size from a damaged file must not
 * become a gigabyte allocation. */
#define MT_H5_TEXT_MAX ((size_t)1 << 20)

/* The bytes of nd extents dims of elem-byte elements into *bytes; nonzero
 * when they overflow a size_t (less 64 bytes of slack for the caller): a
 * dataspace's extents may multiply past any memory. */
int mt_h5_bytes(const hsize_t *dims, int nd, size_t elem, size_t *bytes);
/* Nonzero when dataset ds stores fewer than bytes bytes in its file.
 * mpitrain writes every element of its tensors (checksums only add), so a
 * tensor whose extents claim more is damaged; checked before a buffer of
 * that size is allocated and filled with fill values. */
int mt_h5_short(hid_t ds, size_t bytes);

/* Why the HDF5 call that just failed failed, as a system error text
 * ("No space left on device"): the errno the file driver recorded on HDF5's
 * error stack (sec2: "errno = 28"; MPI-IO: its error string), else
 * saved_errno, the errno read right after the call; "" when neither says.
 * Clears the stack. */
const char *mt_h5_cause(int saved_errno);

/*
 * Writes a whole dataset at path (intermediate groups are created), chunked
 * and with the Fletcher32 checksum filter. type is H5T_NATIVE_FLOAT,
 * H5T_NATIVE_UINT8, ...; dims has ndim entries (1..4).
 */
int mt_h5_write(hid_t file, const char *path, hid_t type, const void *data, int ndim,
                const hsize_t *dims, mt_err *e);

/* Writes a string attribute on the object at path ("/" for the file). */
int mt_h5_write_attr_str(hid_t file, const char *path, const char *name, const char *value,
                         mt_err *e);

/*
 * Creates file path (truncating) for one process; the caller writes into it
 * and closes with H5Fclose. Returns a negative id on error (e set).
 */
hid_t mt_h5_create(const char *path, mt_err *e);

#endif
