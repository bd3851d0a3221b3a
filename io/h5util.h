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
