/*
 * batches.h - where a run's rows come from: one batch source for both kinds
 * of data (core/model.h's mt_data_kind), each kind a file behind the same
 * table of operations (source_samples.c: HDF5 feature vectors and labels;
 * source_tokens.c: windows of llm.c token shards).
 *
 * The source owns the training and evaluation splits, the sample order of
 * each epoch (a permutation drawn from (run.seed, epoch) alone, so the same
 * on every rank and at every world size), the step's batch of this
 * data-parallel replica and the evaluation batches, copied row by row into
 * host buffers and uploaded to the backend's memory, and the SHA-256 of
 * every data file for the lineage.
 *
 * Every global batch of train.global_batch rows is split evenly: replica r
 * takes positions [r*B/P, (r+1)*B/P) of it.
 */
#ifndef MT_BATCHES_H
#define MT_BATCHES_H

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>

#include "base/error.h"
#include "core/config.h"
#include "core/model.h"
#include "kernels/backend.h"

typedef struct mt_batches mt_batches;

/* What each kind of data provides. Splits are 0 (training) and 1 (evaluation). */
typedef struct {
    mt_data_kind kind;
    size_t size;        /* bytes of the kind's own state (mt_batches.src) */
    int64_t eval_chunk; /* rows per evaluation forward; 0: a training micro-batch */
    /* Opens both splits (every rank; errors name the file and key). */
    int (*open)(mt_batches *b, const mt_config *cfg, mt_err *e);
    /* Row r of split `split`: x_width inputs (4-byte elements) and y_width labels. */
    void (*row)(const mt_batches *b, int split, int64_t r, void *x, int32_t *y);
    /* The data files, training split first (for hashing and the lineage). */
    int (*nfiles)(const mt_batches *b);
    const char *(*file)(const mt_batches *b, int i);
    /* The header's "data: ..." line (paths whole: they may be 4095 characters). */
    void (*describe)(const mt_batches *b, FILE *f);
    /* run.json's data object (the data's SHA-256 in b->sha256). */
    void (*record)(const mt_batches *b, cJSON *data);
    /* The lines an evaluation prints (at a step, and at the end). */
    void (*print_eval)(FILE *f, int64_t step, double loss, double acc, int64_t hits,
                       int64_t labels);
    void (*print_final)(FILE *f, double loss, double acc, int64_t hits, int64_t labels);
    void (*close)(mt_batches *b);
} mt_source_ops;

struct mt_batches {
    const mt_source_ops *ops;
    void *src; /* the kind's own state */
    const mt_config *cfg;
    mt_model_rows shape; /* x_width, y_width per row */
    /* filled by open */
    int64_t n_train, n_eval; /* rows of the training split, rows evaluated */
    const char *name;        /* the data as the lineage names it (a file or a pattern) */
    const char *split_name[2], *split_src[2]; /* "train"/"test"; the config value of each */
    int64_t split_rows[2];                    /* rows in each split */
    const char *row_unit;                     /* "samples", "sequences" */
    const char *label_unit;                   /* "samples", "tokens" */
    int hash_manifest; /* the data's SHA-256 is that of "SHA256  PATH\n" of every file */
    int64_t eval_rows; /* rows per evaluation forward */
    /* this replica's batches */
    int64_t global_batch, local_batch, steps_per_epoch, first; /* first: replica's offset */
    int64_t *order;                                            /* (n_train) this epoch's order */
    int64_t order_epoch;
    void *hx;    /* (cap, x_width) host rows */
    int32_t *hy; /* (cap, y_width) */
    void *dx;    /* the same in the backend's memory (hx itself on the CPU) */
    int32_t *dy; /* (cap, y_width) */
    int64_t cap; /* rows the buffers hold */
    const mt_backend *be;
    /* the files and their SHA-256 (rank 0, after mt_batches_hash) */
    int nfiles;
    char **file_path;      /* (nfiles) */
    char (*sha_hex)[72];   /* (nfiles) */
    const char **file_sha; /* (nfiles) pointers into sha_hex, as the lineage takes them */
    int64_t *file_bytes;   /* (nfiles) */
    char sha256[72];       /* of the file, or of the manifest (hash_manifest) */
};

/* Opens the data the model of cfg reads (every rank). MT_ERR_USAGE or
 * MT_ERR_DATA naming the file, on every rank alike. */
int mt_batches_open(mt_batches *b, const mt_config *cfg, mt_err *e);
/* Rows per evaluation forward for micro-batches of mb_rows rows (the
 * kind's eval_chunk, or a micro-batch). */
int64_t mt_batches_eval_rows(const mt_batches *b, int64_t mb_rows);
/* This replica's share: dp_rank of dp_size replicas, micro-batches of
 * mb_rows rows; buffers in be's memory. */
int mt_batches_alloc(mt_batches *b, const mt_backend *be, int dp_rank, int dp_size, int64_t mb_rows,
                     mt_err *e);
/* The replica's rows of training step `step` (0-based), in the backend's
 * memory, with the randomness they carry (run.seed, step, global row). */
mt_model_batch mt_batches_step(mt_batches *b, int64_t step);
/* Rows [r, r + n) of the evaluation split, n <= eval_rows. */
mt_model_batch mt_batches_eval(mt_batches *b, int64_t r, int64_t n);
/* Rank 0: the SHA-256 of every data file, and b->sha256. */
int mt_batches_hash(mt_batches *b, mt_err *e);
void mt_batches_close(mt_batches *b);

/* The two kinds. */
extern const mt_source_ops mt_source_samples;
extern const mt_source_ops mt_source_tokens;

#endif
