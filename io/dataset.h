/*
 * dataset.h - a generic reader of labelled arrays from an HDF5 file.
 *
 * The file and the dataset names come from the config; inputs are any
 * floating-point dataset of shape (N, D), labels any integer dataset of
 * shape (N). Everything read is validated before use: ranks, shapes against
 * the model, every input finite, every label in [0, classes). Each rank
 * reads the whole split into memory (MNIST-sized data; streaming readers
 * for larger sets come with the token-shard format).
 */
#ifndef MT_DATASET_H
#define MT_DATASET_H

#include <stdint.h>

#include "base/error.h"

typedef struct {
    int64_t n;   /* samples */
    int64_t dim; /* inputs per sample */
    float *x;    /* (n, dim) */
    int32_t *y;  /* (n) labels in [0, classes) */
} mt_dataset;

/* Reads and validates one split. dim and classes are what the model expects. */
int mt_dataset_load(mt_dataset *d, const char *path, const char *images, const char *labels,
                    int64_t dim, int64_t classes, mt_err *e);
void mt_dataset_free(mt_dataset *d);

#endif
