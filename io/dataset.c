/* dataset.c - read and validate (inputs, labels) from HDF5 (see dataset.h). */
#include "dataset.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/h5util.h"

/* True if every component of the absolute or relative path exists. */
static int path_exists(hid_t file, const char *path) {
    if (path[0] == '\0') return 0;
    char *buf = strdup(path);
    if (!buf) return 0;
    int found = 1;
    for (char *p = buf + 1; found; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (strcmp(buf, "/") != 0 && H5Lexists(file, buf, H5P_DEFAULT) <= 0) found = 0;
            *p = c;
            if (c == '\0') break;
        }
    }
    free(buf);
    return found && H5Oexists_by_name(file, path, H5P_DEFAULT) > 0;
}

static int open_dataset(hid_t file, const char *fname, const char *name, const char *key, hid_t *ds,
                        mt_err *e) {
    if (!path_exists(file, name)) {
        mt_err_set(e, MT_ERR_DATA, "dataset '%s' not found in %s (data.%s)", name, fname, key);
        mt_err_hint(e, "list the file's datasets with: h5ls -r %s", fname);
        return e->code;
    }
    *ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (*ds < 0)
        return mt_err_set(e, MT_ERR_DATA, "'%s' in %s is not a dataset (data.%s)", name, fname,
                          key);
    return MT_OK;
}

/* The data file, opened read-only; a negative id with e set. */
static hid_t open_file(const char *path, mt_err *e) {
    struct stat st;
    if (stat(path, &st) != 0) {
        mt_err_set(e, MT_ERR_DATA, "data file %s: %s (data.path)", path, strerror(errno));
        mt_err_hint(e, "fetch MNIST with scripts/fetch_mnist.sh, or set data.path");
        return -1;
    }
    if (H5Fis_hdf5(path) <= 0) {
        mt_err_set(e, MT_ERR_DATA, "data file %s is not an HDF5 file (data.path)", path);
        return -1;
    }
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        mt_err_set(e, MT_ERR_DATA, "cannot open data file %s (data.path)", path);
        mt_err_hint(e, "on file systems without locking, set HDF5_USE_FILE_LOCKING=FALSE");
    }
    return file;
}

/* The inputs dx (N, d1, ...) and labels dy (N) fit each other and a model
 * of dim inputs; *n gets N. */
static int check_shapes(hid_t dx, hid_t dy, const char *path, const char *images,
                        const char *labels, int64_t dim, int64_t *n, mt_err *e) {
    hid_t sx = H5Dget_space(dx), sy = H5Dget_space(dy);
    hid_t tx = H5Dget_type(dx), ty = H5Dget_type(dy);
    H5T_class_t cx = H5Tget_class(tx), cy = H5Tget_class(ty);
    H5Tclose(tx);
    H5Tclose(ty);
    int xrank = H5Sget_simple_extent_ndims(sx), yrank = H5Sget_simple_extent_ndims(sy);
    hsize_t xd[H5S_MAX_RANK] = {0}, yd[1] = {0};
    if (xrank >= 2) H5Sget_simple_extent_dims(sx, xd, NULL);
    if (yrank == 1) H5Sget_simple_extent_dims(sy, yd, NULL);
    H5Sclose(sx);
    H5Sclose(sy);
    size_t per_sample = 1; /* inputs per sample: product of dims 1.. */
    /* (N, 28, 28) images feed a 784-input model: trailing dims are flattened.
     * Extents may multiply past 64 bits (and wrap to anything): too_many. */
    int too_many = xrank >= 2 && mt_h5_bytes(xd + 1, xrank - 1, 1, &per_sample);
    if (cx != H5T_FLOAT)
        return mt_err_set(e, MT_ERR_DATA, "dataset %s in %s must hold floating-point inputs",
                          images, path);
    if (cy != H5T_INTEGER)
        return mt_err_set(e, MT_ERR_DATA, "dataset %s in %s must hold integer labels", labels,
                          path);
    if (xrank < 2)
        return mt_err_set(e, MT_ERR_DATA,
                          "dataset %s in %s has rank %d, expected (N, %lld) or (N, d1, d2, ...)",
                          images, path, xrank, (long long)dim);
    if (yrank != 1)
        return mt_err_set(e, MT_ERR_DATA, "dataset %s in %s has rank %d, expected 1 (N)", labels,
                          path, yrank);
    if (too_many)
        return mt_err_set(e, MT_ERR_DATA,
                          "dataset %s in %s has more inputs per sample than memory can hold; the "
                          "model's first layer takes %lld (model.layers)",
                          images, path, (long long)dim);
    if (per_sample != (size_t)dim)
        return mt_err_set(e, MT_ERR_DATA,
                          "dataset %s in %s has %zu inputs per sample but the model's first "
                          "layer takes %lld (model.layers)",
                          images, path, per_sample, (long long)dim);
    if (xd[0] != yd[0])
        return mt_err_set(e, MT_ERR_DATA, "%s has %llu samples but %s has %llu labels (%s)", images,
                          (unsigned long long)xd[0], labels, (unsigned long long)yd[0], path);
    if (xd[0] == 0) return mt_err_set(e, MT_ERR_DATA, "dataset %s in %s is empty", images, path);
    /* the buffers of read_samples: (N, dim) floats, and N 64-bit labels */
    hsize_t xs[2] = {xd[0], (hsize_t)dim};
    size_t bytes;
    if (mt_h5_bytes(xs, 2, sizeof(float), &bytes) || mt_h5_bytes(xd, 1, sizeof(int64_t), &bytes))
        return mt_err_set(e, MT_ERR_DATA,
                          "dataset %s in %s has %llu samples: more than memory can hold", images,
                          path, (unsigned long long)xd[0]);
    *n = (int64_t)xd[0];
    return MT_OK;
}

/* Reads d->n samples: inputs must be finite, labels in [0, classes). */
static int read_samples(mt_dataset *d, hid_t dx, hid_t dy, const char *path, const char *images,
                        const char *labels, int64_t classes, mt_err *e) {
    d->x = malloc((size_t)d->n * (size_t)d->dim * sizeof(float));
    d->y = malloc((size_t)d->n * sizeof(int32_t));
    if (!d->x || !d->y)
        return mt_err_set(e, MT_ERR_DATA, "out of memory reading %lld samples from %s",
                          (long long)d->n, path);
    /* HDF5 converts any float/integer type to ours; out-of-range integers
     * would clip, so labels are read as 64-bit and checked. */
    int64_t *y64 = malloc((size_t)d->n * sizeof(int64_t));
    if (!y64) return mt_err_set(e, MT_ERR_DATA, "out of memory");
    if (H5Dread(dx, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->x) < 0 ||
        H5Dread(dy, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y64) < 0)
        mt_err_set(e, MT_ERR_DATA, "cannot read %s or %s from %s (corrupt file?)", images, labels,
                   path);
    for (int64_t i = 0; i < d->n && !e->code; i++) {
        if (y64[i] < 0 || y64[i] >= classes)
            mt_err_set(e, MT_ERR_DATA,
                       "label %lld of sample %lld in %s (%s) is out of range [0, %lld) (classes "
                       "from model.layers)",
                       (long long)y64[i], (long long)i, labels, path, (long long)classes);
        d->y[i] = (int32_t)y64[i];
    }
    free(y64);
    size_t total = (size_t)d->n * (size_t)d->dim;
    for (size_t i = 0; i < total && !e->code; i++)
        if (!isfinite(d->x[i]))
            mt_err_set(e, MT_ERR_DATA, "%s at sample %zu, input %zu of %s (%s)",
                       isnan(d->x[i]) ? "NaN" : "Inf", i / (size_t)d->dim, i % (size_t)d->dim,
                       images, path);
    return e->code;
}

int mt_dataset_load(mt_dataset *d, const char *path, const char *images, const char *labels,
                    int64_t dim, int64_t classes, mt_err *e) {
    memset(d, 0, sizeof *d);
    mt_h5_quiet();
    hid_t file = open_file(path, e);
    if (file < 0) return e->code;
    hid_t dx = -1, dy = -1;
    if (!open_dataset(file, path, images, "train_images/test_images", &dx, e) &&
        !open_dataset(file, path, labels, "train_labels/test_labels", &dy, e) &&
        !check_shapes(dx, dy, path, images, labels, dim, &d->n, e)) {
        d->dim = dim;
        read_samples(d, dx, dy, path, images, labels, classes, e);
    }
    if (dx >= 0) H5Dclose(dx);
    if (dy >= 0) H5Dclose(dy);
    H5Fclose(file);
    if (e->code) mt_dataset_free(d);
    return e->code;
}

void mt_dataset_free(mt_dataset *d) {
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}
