/* h5util.c - shared HDF5 helpers (see h5util.h). */
#include "h5util.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mt_h5_quiet(void) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

long long mt_h5_npoints(hid_t obj) {
    H5I_type_t kind = H5Iget_type(obj);
    hid_t space = kind == H5I_ATTR      ? H5Aget_space(obj)
                  : kind == H5I_DATASET ? H5Dget_space(obj)
                                        : -1;
    if (space < 0) return -1;
    hssize_t n = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    return n < 0 ? -1 : (long long)n;
}

int mt_h5_bytes(const hsize_t *dims, int nd, size_t elem, size_t *bytes) {
    size_t n = elem;
    for (int d = 0; d < nd; d++) {
        if (dims[d] && n > (SIZE_MAX - 64) / dims[d]) return 1;
        n *= (size_t)dims[d];
    }
    *bytes = n;
    return 0;
}

int mt_h5_short(hid_t ds, size_t bytes) {
    return bytes > 0 && (size_t)H5Dget_storage_size(ds) < bytes;
}

typedef struct {
    int err;       /* errno from a "errno = N" description */
    char mpi[128]; /* an MPI-IO driver's error string */
} h5_cause;

static herr_t find_cause(unsigned n, const H5E_error2_t *d, void *ctx) {
    (void)n;
    h5_cause *c = ctx;
    const char *at = d->desc ? strstr(d->desc, "errno = ") : NULL;
    if (at && !c->err) c->err = atoi(at + 8);
    at = d->desc ? strstr(d->desc, "MPI error string is '") : NULL;
    if (at && !c->mpi[0]) {
        at += 21;
        size_t len = strcspn(at, "'");
        snprintf(c->mpi, sizeof c->mpi, "%.*s", (int)len, at);
    }
    return 0;
}

const char *mt_h5_cause(int saved_errno) {
    static __thread char text[160];
    h5_cause c = {0, ""};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, find_cause, &c);
    H5Eclear2(H5E_DEFAULT);
    int err = c.err ? c.err : saved_errno;
    if (err)
        snprintf(text, sizeof text, "%s", strerror(err));
    else
        snprintf(text, sizeof text, "%s", c.mpi);
    return text;
}

hid_t mt_h5_create(const char *path, mt_err *e) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) mt_err_set(e, MT_ERR_USAGE, "cannot create HDF5 file (%s)", path);
    return f;
}

int mt_h5_write(hid_t file, const char *path, hid_t type, const void *data, int ndim,
                const hsize_t *dims, mt_err *e) {
    hsize_t chunk[4];
    size_t elem = H5Tget_size(type);
    /* Chunks of about 1 MiB along the first dimension, whole along the rest. */
    hsize_t row = elem;
    for (int i = 1; i < ndim; i++) row *= dims[i];
    hsize_t rows = row ? (1u << 20) / row : 1;
    if (rows < 1) rows = 1;
    if (rows > dims[0]) rows = dims[0];
    if (rows < 1) rows = 1;
    chunk[0] = rows;
    for (int i = 1; i < ndim; i++) chunk[i] = dims[i] ? dims[i] : 1;

    int rc = MT_OK;
    hid_t space = H5Screate_simple(ndim, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    if (dims[0] > 0) {
        H5Pset_chunk(dcpl, ndim, chunk);
        H5Pset_fletcher32(dcpl);
    }
    hid_t ds = H5Dcreate2(file, path, type, space, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0) {
        rc = mt_err_set(e, MT_ERR_INTERNAL, "cannot create HDF5 dataset %s", path);
    } else {
        if (dims[0] > 0 && H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            rc = mt_err_set(e, MT_ERR_INTERNAL, "cannot write HDF5 dataset %s", path);
        H5Dclose(ds);
    }
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
    return rc;
}

int mt_h5_write_attr_str(hid_t file, const char *path, const char *name, const char *value,
                         mt_err *e) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    H5Tset_strpad(type, H5T_STR_NULLTERM);
    hid_t space = H5Screate(H5S_SCALAR);
    int rc = MT_OK;
    hid_t a =
        H5Acreate_by_name(file, path, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, type, value) < 0)
        rc = mt_err_set(e, MT_ERR_INTERNAL, "cannot write HDF5 attribute %s on %s", name, path);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
    return rc;
}

void mt_h5_version(char *buf, size_t n) {
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    snprintf(buf, n, "%u.%u.%u%s", maj, min, rel,
#ifdef H5_HAVE_PARALLEL
             " (parallel)"
#else
             " (serial)"
#endif
    );
}
