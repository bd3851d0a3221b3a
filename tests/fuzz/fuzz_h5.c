/* fuzz_h5.c - an HDF5 file from a fuzzer's description (see fuzz_h5.h). */
#include "fuzz_h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SMALL_MAX 4096 /* elements written with values; more stay unwritten */

/* Huge extents: products of these (or with small ones) overflow 64 bits. */
static const hsize_t huge[] = {(hsize_t)1 << 61, (hsize_t)1 << 62,       (hsize_t)1 << 63,
                               ~(hsize_t)0 - 1,  ((hsize_t)1 << 62) + 1, (hsize_t)3 << 61};

hid_t fz_h5_create(const char *path) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        fprintf(stderr, "fuzz: cannot create %s\n", path);
        abort();
    }
    return f;
}

/* The type: spec's, or another one (the caller closes it). */
static hid_t pick_type(fz_in *in, const fz_h5_spec *spec) {
    unsigned k = fz_pick(in, 16);
    hid_t t;
    switch (k) {
    case 0: /* as specified */
        t = H5Tcopy(spec->type);
        if (H5Tget_class(t) == H5T_STRING) H5Tset_size(t, spec->text ? strlen(spec->text) + 1 : 1);
        return t;
    case 1:
        return H5Tcopy(H5T_NATIVE_FLOAT);
    case 2:
        return H5Tcopy(H5T_NATIVE_DOUBLE);
    case 3:
        return H5Tcopy(H5T_IEEE_F32BE);
    case 4:
        return H5Tcopy(H5T_NATIVE_INT8);
    case 5:
        return H5Tcopy(H5T_NATIVE_UINT64);
    case 6:
        return H5Tcopy(H5T_NATIVE_INT64);
    case 7:
        return H5Tcopy(H5T_NATIVE_INT);
    case 8: /* a fixed string of any size */
        t = H5Tcopy(H5T_C_S1);
        size_t len = fz_u8(in);
        H5Tset_size(t, 1 + len * (fz_u8(in) ? 1 : 300));
        H5Tset_strpad(t, (H5T_str_t)fz_pick(in, 3));
        return t;
    case 9:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        return t;
    case 10: /* a compound of one float */
        t = H5Tcreate(H5T_COMPOUND, sizeof(float));
        H5Tinsert(t, "x", 0, H5T_NATIVE_FLOAT);
        return t;
    case 11: { /* an array of floats */
        hsize_t n = 1 + fz_pick(in, 4);
        return H5Tarray_create2(H5T_NATIVE_FLOAT, 1, &n);
    }
    case 12:
        return H5Tcopy(H5T_NATIVE_B8);
    case 13:
        return H5Tcreate(H5T_OPAQUE, 1 + fz_pick(in, 8));
    case 14: { /* a float of odd precision */
        t = H5Tcopy(H5T_NATIVE_FLOAT);
        H5Tset_precision(t, 16 + fz_pick(in, 16));
        return t;
    }
    default:
        return H5Tcopy(H5T_NATIVE_UINT16);
    }
}

/* The dataspace: spec's shape, or another rank or extents. */
static hid_t pick_space(fz_in *in, const fz_h5_spec *spec, hsize_t *dims, int *rank) {
    *rank = spec->rank;
    memcpy(dims, spec->dims, sizeof spec->dims);
    unsigned k = fz_pick(in, 8);
    switch (k) {
    case 0:
        break;
    case 1:
        *rank = (int)fz_pick(in, FZ_MAX_RANK + 1); /* fall through: new extents */
    case 2:
        for (int d = 0; d < *rank; d++) dims[d] = fz_pick(in, 9);
        break;
    case 3: /* one extent huge */
    case 4: /* one extent changed by a little */
        if (*rank) {
            unsigned d = fz_pick(in, (unsigned)*rank), v = fz_pick(in, 6);
            dims[d] = k == 3 ? huge[v] : dims[d] + v % 3 - 1;
        }
        break;
    case 5:
        return H5Screate(H5S_NULL);
    case 6:
        *rank = 0;
        break;
    default: /* all extents huge */
        for (int d = 0; d < *rank; d++) dims[d] = huge[fz_pick(in, 6)];
        break;
    }
    if (*rank == 0) return H5Screate(H5S_SCALAR);
    return H5Screate_simple(*rank, dims, NULL);
}

/* Fills n elements of type t from the input (vlen strings: short strings). */
static void *values(fz_in *in, hid_t t, hsize_t n, const fz_h5_spec *spec, char ***vlen) {
    size_t size = H5Tget_size(t);
    *vlen = NULL;
    if (H5Tis_variable_str(t) > 0) {
        char **s = calloc(n ? n : 1, sizeof *s);
        for (hsize_t i = 0; s && i < n; i++) {
            char buf[64];
            fz_str(in, buf, sizeof buf);
            s[i] = strdup(i == 0 && !buf[0] && spec->text ? spec->text : buf);
        }
        *vlen = s;
        return s;
    }
    uint8_t *b = calloc(n ? n : 1, size ? size : 1);
    if (!b) return NULL;
    if (H5Tget_class(t) == H5T_STRING && spec->text && n >= 1)
        memcpy(b, spec->text, strlen(spec->text) < size ? strlen(spec->text) : size);
    /* then bytes of the input over the first elements (0: keep) */
    size_t k = fz_pick(in, 64);
    for (size_t i = 0; i < k && i < n * size; i++) {
        uint8_t v = fz_u8(in);
        if (v) b[i] = v;
    }
    return b;
}

static void free_values(void *buf, char **vlen, hsize_t n) {
    for (hsize_t i = 0; vlen && i < n; i++) free(vlen[i]);
    free(buf);
}

static hsize_t count(int rank, const hsize_t *dims, hid_t space) {
    if (H5Sget_simple_extent_type(space) == H5S_NULL) return 0;
    hsize_t n = 1;
    for (int d = 0; d < rank; d++) {
        if (dims[d] && n > SMALL_MAX / dims[d]) return SMALL_MAX + 1;
        n *= dims[d];
    }
    return n;
}

/* The creation properties: chunked with Fletcher32 (as mpitrain), or
 * contiguous, compact, other chunks and filters. */
static hid_t pick_dcpl(fz_in *in, int rank, const hsize_t *dims, hsize_t n) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    unsigned k = fz_pick(in, 6);
    if (rank == 0 || k == 1 || (k == 2 && n > 64)) return dcpl; /* contiguous */
    if (k == 2) {
        H5Pset_layout(dcpl, H5D_COMPACT);
        return dcpl;
    }
    hsize_t chunk[FZ_MAX_RANK];
    for (int d = 0; d < rank; d++) {
        hsize_t c = dims[d] < 4 ? dims[d] : 4;
        if (k == 4) c = 1 + fz_pick(in, 3);
        chunk[d] = c ? c : 1;
    }
    H5Pset_chunk(dcpl, rank, chunk);
    if (k == 0 || k == 3) H5Pset_fletcher32(dcpl);
    if (k == 3) H5Pset_shuffle(dcpl), H5Pset_deflate(dcpl, 1);
    if (k == 5) H5Pset_deflate(dcpl, 9);
    return dcpl;
}

int fz_h5_dataset(fz_in *in, hid_t file, const char *path, const fz_h5_spec *spec) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    int wrote = 0;
    switch (fz_pick(in, 12)) {
    case 1:
        break; /* missing */
    case 2:
        H5Gclose(H5Gcreate2(file, path, lcpl, H5P_DEFAULT, H5P_DEFAULT));
        break;
    case 3:
        H5Lcreate_soft("/nowhere", file, path, lcpl, H5P_DEFAULT);
        break;
    case 4:
        H5Lcreate_external("missing-file.h5", "/x", file, path, lcpl, H5P_DEFAULT);
        break;
    case 5:
        H5Lcreate_soft("/", file, path, lcpl, H5P_DEFAULT);
        break; /* the root group */
    case 6:
        H5Lcreate_hard(file, "/", file, path, lcpl, H5P_DEFAULT);
        break;
    default: {
        hid_t t = pick_type(in, spec);
        hsize_t dims[FZ_MAX_RANK];
        int rank;
        hid_t space = pick_space(in, spec, dims, &rank);
        hsize_t n = count(rank, dims, space);
        hid_t dcpl = pick_dcpl(in, rank, dims, n);
        hid_t ds = H5Dcreate2(file, path, t, space, lcpl, dcpl, H5P_DEFAULT);
        if (ds >= 0) {
            wrote = 1;
            if (n >= 1 && n <= SMALL_MAX) {
                char **vlen;
                void *buf = values(in, t, n, spec, &vlen);
                if (buf) H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
                free_values(buf, vlen, n);
            }
            if (fz_pick(in, 3) == 2) { /* an attribute on it, now and then */
                char name[16];
                fz_str(in, name, sizeof name);
                fz_h5_spec as = {H5T_NATIVE_INT64, 0, {0}, NULL};
                fz_h5_attr(in, ds, ".", name[0] ? name : "a", &as);
            }
            H5Dclose(ds);
        }
        H5Pclose(dcpl);
        H5Sclose(space);
        H5Tclose(t);
    }
    }
    H5Pclose(lcpl);
    return wrote;
}

void fz_h5_attr(fz_in *in, hid_t file, const char *obj, const char *name, const fz_h5_spec *spec) {
    if (fz_pick(in, 8) == 1) return; /* missing */
    hid_t t = pick_type(in, spec);
    hsize_t dims[FZ_MAX_RANK];
    int rank;
    hid_t space = pick_space(in, spec, dims, &rank);
    hsize_t n = count(rank, dims, space);
    hid_t a = H5Acreate_by_name(file, obj, name, t, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        if (n >= 1 && n <= SMALL_MAX) {
            char **vlen;
            void *buf = values(in, t, n, spec, &vlen);
            if (buf) H5Awrite(a, t, buf);
            free_values(buf, vlen, n);
        }
        H5Aclose(a);
    }
    H5Sclose(space);
    H5Tclose(t);
}
