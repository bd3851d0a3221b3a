/*
 * fuzz_dataset.c - libFuzzer target: the dataset loader (io/dataset.c) on
 * small HDF5 files whose structure the input describes (fuzz_h5.h): the
 * inputs and labels datasets (present or not, a group or a link in their
 * place, any type, rank, shape, layout, filter and values), extra objects
 * beside them, the names the loader is asked for, and the model's input
 * width and classes.
 *
 * The input is a list of edits (fz_edits) of four slots: the call (width,
 * classes, names), the inputs, the labels, an extra dataset beside them.
 * The empty input is a valid file: /train/images float32 (3, 2, 2),
 * /train/labels int64 (3), for a model of 4 inputs and 10 classes.
 * Properties: a failure is a data error (exit 3) with a message; a success
 * has n >= 1 samples of dim inputs, every input finite, every label in
 * [0, classes).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_h5.h"
#include "io/dataset.h"
#include "io/h5util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what) {
    fprintf(stderr, "fuzz: %s\n", what);
    abort();
}

/* The names the loader is asked for: the ones written, or others. */
static const char *ask(fz_in *in, const char *name) {
    static const char *other[] = {
        "",        "/",           "/train", "/train/images/x", "train/labels", "//train//images",
        "/train/", "/train/extra"};
    unsigned k = fz_pick(in, 16);
    return k < 8 ? name : other[k - 8];
}

/* The input's slots (fz_edits): what each part of the file and the call is. */
enum { S_CALL, S_IMAGES, S_LABELS, S_EXTRA, NSLOTS };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_edits ed;
    fz_edits_parse(&ed, data, size, NSLOTS);
    mt_h5_quiet();
    fz_in call = ed.slot[S_CALL]; /* the model's width and classes, the names asked for */
    int64_t dim = 4, classes = 10;
    if (fz_u8(&call)) {
        dim = 1 + fz_pick(&call, 20);
        classes = 1 + fz_pick(&call, 20);
    }
    const char *xi = ask(&call, "/train/images");
    const char *yi = ask(&call, "/train/labels");
    const char *path = fz_tmp("data.h5");
    hid_t f = fz_h5_create(path);
    fz_h5_spec images = {H5T_NATIVE_FLOAT, 3, {3, 2, 2}, NULL};
    fz_h5_spec labels = {H5T_NATIVE_INT64, 1, {3}, NULL};
    fz_h5_dataset(&ed.slot[S_IMAGES], f, "/train/images", &images);
    fz_h5_dataset(&ed.slot[S_LABELS], f, "/train/labels", &labels);
    if (ed.slot[S_EXTRA].n) fz_h5_dataset(&ed.slot[S_EXTRA], f, "/train/extra", &labels);
    H5Fclose(f);

    mt_dataset d;
    mt_err e = {0};
    int rc = mt_dataset_load(&d, path, xi, yi, dim, classes, &e);
    fz_report("mt_dataset_load", &e);
    if (rc) {
        fz_check_err(&e, "mt_dataset_load");
        if (e.code != MT_ERR_DATA) fail("mt_dataset_load failed with another code than 3");
        if (d.x || d.y) fail("a failed load left buffers behind");
    } else {
        if (d.n < 1 || d.dim != dim) fail("a loaded dataset has no samples or another width");
        for (int64_t i = 0; i < d.n; i++)
            if (d.y[i] < 0 || d.y[i] >= classes) fail("a label out of range got through");
        for (int64_t i = 0; i < d.n * d.dim; i++)
            if (!isfinite(d.x[i])) fail("a NaN or Inf input got through");
        mt_dataset_free(&d);
    }
    remove(path);
    return 0;
}
