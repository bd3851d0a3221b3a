/*
 * h5cmp.c - test helper: compares the float32 tensors of two mpitrain HDF5
 * files (model files, checkpoints: weights and optimizer state), found by
 * walking every group.
 *
 *   h5cmp A.h5 B.h5 --bitwise      every tensor identical, bit for bit
 *   h5cmp A.h5 B.h5 --rtol 1e-5    per tensor: max|a-b| / max|b| <= rtol
 *   h5cmp A.h5 B.h5 --nrtol 1e-5   per tensor: ||a-b||_2 / ||b||_2 <= rtol
 *                                  (normalized error; see tests/test_dp.sh)
 *
 * Prints each tensor's error and exits 0 on agreement, 1 otherwise.
 */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    hid_t a, b;
    int bitwise, norm;
    double rtol;
    int failures, count;
} ctx;

static float *read_all(hid_t f, const char *path, hsize_t *n) {
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0) return NULL;
    hid_t sp = H5Dget_space(ds);
    *n = (hsize_t)H5Sget_simple_extent_npoints(sp);
    float *x = malloc(*n * sizeof(float) + 1);
    if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0) {
        free(x);
        x = NULL;
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return x;
}

/* True if path in f is a float32 dataset. */
static int is_tensor(hid_t f, const char *path) {
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    if (ds < 0) return 0;
    hid_t t = H5Dget_type(ds);
    int yes = H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4;
    H5Tclose(t);
    H5Dclose(ds);
    return yes;
}

static herr_t count_tensors(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    *(int *)data += is_tensor(g, name);
    return 0;
}

static herr_t visit(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    ctx *c = data;
    if (!is_tensor(g, name)) return 0;
    char path[512];
    snprintf(path, sizeof path, "/%s", name);
    hsize_t na = 0, nb = 0;
    float *x = read_all(c->a, path, &na), *y = read_all(c->b, path, &nb);
    c->count++;
    if (!x || !y || na != nb) {
        printf("%-22s MISSING or different size (%llu vs %llu)\n", name, (unsigned long long)na,
               (unsigned long long)nb);
        c->failures++;
    } else if (c->bitwise) {
        int same = memcmp(x, y, na * sizeof(float)) == 0;
        printf("%-22s %s\n", name, same ? "identical" : "DIFFERENT");
        c->failures += !same;
    } else {
        double maxdiff = 0.0, maxref = 0.0, d2 = 0.0, r2 = 0.0;
        for (hsize_t i = 0; i < na; i++) {
            double d = fabs((double)x[i] - (double)y[i]);
            if (!(d <= maxdiff)) maxdiff = d; /* NaN counts as a difference */
            if (fabs((double)y[i]) > maxref) maxref = fabs((double)y[i]);
            d2 += d * d;
            r2 += (double)y[i] * y[i];
        }
        double rel_max = maxref > 0 ? maxdiff / maxref : maxdiff;
        double rel_norm = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
        double rel = c->norm ? rel_norm : rel_max;
        int ok = rel <= c->rtol; /* false for NaN */
        printf("%-22s max|a-b|/max|b| %.3e  ||a-b||/||b|| %.3e  %s (%s tolerance %.1e)\n", name,
               rel_max, rel_norm, ok ? "ok" : "TOO LARGE", c->norm ? "normalized" : "max", c->rtol);
        c->failures += !ok;
    }
    free(x);
    free(y);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: h5cmp A.h5 B.h5 (--bitwise | --rtol X | --nrtol X)\n");
        return 2;
    }
    ctx c = {0};
    c.bitwise = strcmp(argv[3], "--bitwise") == 0;
    c.norm = strcmp(argv[3], "--nrtol") == 0;
    if (!c.bitwise && strcmp(argv[3], "--rtol") != 0 && !c.norm) {
        fprintf(stderr, "h5cmp: unknown mode %s\n", argv[3]);
        return 2;
    }
    c.rtol = argc == 5 ? atof(argv[4]) : 0.0;
    c.a = H5Fopen(argv[1], H5F_ACC_RDONLY, H5P_DEFAULT);
    c.b = H5Fopen(argv[2], H5F_ACC_RDONLY, H5P_DEFAULT);
    if (c.a < 0 || c.b < 0) {
        fprintf(stderr, "h5cmp: cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int in_a = 0;
    H5Lvisit(c.a, H5_INDEX_NAME, H5_ITER_INC, count_tensors, &in_a);
    H5Lvisit(c.b, H5_INDEX_NAME, H5_ITER_INC, visit, &c);
    if (in_a != c.count) {
        printf("h5cmp: %s has %d tensors, %s has %d\n", argv[1], in_a, argv[2], c.count);
        c.failures++;
    }
    H5Fclose(c.a);
    H5Fclose(c.b);
    if (c.count == 0) {
        printf("h5cmp: no tensors compared\n");
        return 1;
    }
    printf("h5cmp: %d tensor(s), %d failing\n", c.count, c.failures);
    return c.failures ? 1 : 0;
}
