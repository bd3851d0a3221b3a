/*
 * checkpoint.h - checkpoint files: the complete training state in one HDF5
 * file, global-view (DESIGN decision 2), written by all ranks at once with
 * parallel HDF5 and read back under any layout. The layout of the file is
 * docs/CHECKPOINT_FORMAT.md.
 *
 * The tensors come as a list of views (io/tensor_view.h): what io/ needs to
 * know of each, nothing of core's types; core/state_views.c builds the list
 * from the parameters and optimizer state.
 *
 * A checkpoint directory holds step_NNNNNNNN.h5 files, a NAME.sha256 beside
 * each (sha256sum format) and a `latest` file naming the newest complete
 * one. Writing is: temporary name in the same folder, fsync on every rank,
 * rename, SHA-256 file, then `latest`; retention runs after that.
 *
 * The module is one header over several files, one concept each:
 * checkpoint_write.c (the collective write, room check, watchdog),
 * checkpoint_load.c (the collective load), checkpoint_verify.c (the
 * one-process check), checkpoint_dir.c (names, listing, latest, retention),
 * checkpoint_format.c (attributes, config, optimizer state names) and
 * checkpoint_layout.c (chunks, blocks, shares, selections); what they share
 * is checkpoint_private.h.
 */
#ifndef MT_CHECKPOINT_H
#define MT_CHECKPOINT_H

#include <stdint.h>
#include <stdio.h>

#include "base/error.h"
#include "io/tensor_view.h"
#include "parallel/comm.h"

#define MT_CKPT_FORMAT  "mpitrain-checkpoint"
#define MT_CKPT_VERSION 1
/* Every path buffer: PATH_MAX on Linux, the longest path the kernel takes,
 * its NUL included. A longer path is an error, never truncated. */
#define MT_CKPT_PATH 4096
/* String fields that hold a config string (run_name): as long as those. */
#define MT_CKPT_STR_LEN 4096
/* Optimizer state tensors of one kind, at most (AdamW: m and v). */
#define MT_CKPT_MAX_STATES 2

/* The optimizer's hyperparameters as it uses them (float32). Written as
 * /optim attributes for readers, all five for either kind; a resume takes
 * them from the config, so nothing reads them back (zero after verify). */
typedef struct {
    float beta1, beta2, eps, momentum, weight_decay;
} mt_ckpt_hyper;

/* Everything in a checkpoint besides the tensors and the config text. */
typedef struct {
    int64_t step;          /* optimizer steps completed */
    int64_t epoch;         /* epoch of the next step */
    int64_t step_in_epoch; /* position of the next step inside its epoch */
    int64_t samples_seen;  /* step * global batch */
    int64_t seed;
    int64_t optim_steps; /* optimizer step count (AdamW bias correction) */
    double lr_last;      /* learning rate of the last step taken */
    double lr_next;      /* learning rate the next step will use */
    /* last metrics; NaN where not measured */
    double loss, train_acc, grad_norm, test_loss, test_acc;
    int world, dp, tp, pp; /* layout that wrote it */
    int code_dirty;
    mt_ckpt_hyper hyper;
    char optim_kind[16]; /* "adamw" | "sgd": names the state tensors (mt_ckpt_state_names) */
    char model_kind[16];
    char run_id[40];
    char run_name[MT_CKPT_STR_LEN]; /* the model's name (run.name or registry.model_name) */
    char created_utc[32];
    char mpitrain_version[32];
    char code_commit[64];
    char data_sha256[72];
    char resumed_from[MT_CKPT_PATH]; /* checkpoint this run continued from, or "" */
} mt_ckpt_meta;

typedef struct {
    char path[MT_VIEW_PATH_LEN]; /* "/model/fc1.weight", "/optim/m/fc1.weight" */
    int ndim;
    int64_t shape[MT_VIEW_MAX_DIMS];
    char sha256[72]; /* of the float32 data, little-endian; filled by inspect */
} mt_ckpt_tensor;

/* What mt_ckpt_verify learned about a file. */
typedef struct {
    mt_ckpt_meta meta;
    int format_version;
    char *config_text;
    char file_sha256[72];
    int has_sidecar; /* a .sha256 beside the file was checked */
    int n_tensors;
    mt_ckpt_tensor *tensors;
} mt_ckpt_info;

/* The optimizer state tensors a checkpoint holds for optimizer kind, in
 * file order: their group names under /optim ("m", "v" for adamw;
 * "momentum" for sgd). Returns how many, or -1 for an unknown kind. Core
 * names its state views /optim/<name>/<tensor> with these. */
int mt_ckpt_state_names(const char *kind, const char *names[MT_CKPT_MAX_STATES]);

/* "step_00000050.h5" */
void mt_ckpt_name(int64_t step, char *buf, size_t n);
/* The step of a file name of the checkpoint naming scheme, or -1. */
int64_t mt_ckpt_parse_name(const char *name);

/*
 * Collective over c->world: writes path (atomically: temporary name, fsync,
 * rename), then path.sha256. views (n) are every tensor of the file, in file
 * order: the weights (/model/...), then each optimizer state of
 * meta->optim_kind (/optim/<state>/...); every rank lists the same paths
 * and shapes (core/state_views.c builds them). Tensors are written
 * global-view, each by the stage that owns it (never from a mirror): the
 * ranks holding the same block (the data-parallel group for a tensor split
 * over tensor-parallel ranks, every rank of the stage for a whole one) each
 * write a share of its chunks. meta and config_text are taken from rank 0.
 * On return *write_s is the time from create to rename and, unless sha_hex
 * is NULL, path.sha256 is written and sha_hex holds the file's SHA-256
 * (both on rank 0). With sha_hex NULL the file is complete and durable but
 * has no sidecar yet: the caller hashes it later (mt_ckpt_write_sidecar,
 * or a background job, below), before `latest` may name it.
 * Before writing, rank 0 checks that the folder has room for the file. A
 * write that takes longer than timeout_s (0: 300 s + 1 s per 20 MB) ends
 * every rank with exit status MT_ERR_CKPT: collective I/O cannot recover
 * when one rank fails inside it, and a hung job would lose its allocation.
 */
int mt_ckpt_write(const mt_comm *c, const char *path, const mt_ckpt_meta *meta,
                  const char *config_text, const mt_tensor_view *views, int n, double timeout_s,
                  double *write_s, char sha_hex[72], mt_err *e);

/* One process: the SHA-256 of the (durable) file path into sha_hex and
 * path.sha256 beside it, in sha256sum's format with the file's base name. */
int mt_ckpt_write_sidecar(const char *path, char sha_hex[72], mt_err *e);

/*
 * Background jobs (checkpoint_async.c): a checkpoint written while training
 * goes on (checkpoint.async), or, after a synchronous write, its SHA-256
 * taken by rank 0 while every rank trains on. One thread per rank and one
 * job at a time; docs/CHECKPOINT_FORMAT.md, "Asynchronous checkpoints",
 * argues the design. While a write job runs, its thread is the only caller
 * of HDF5 in the process (HDF5 is not thread-safe): nothing else may touch
 * HDF5 until mt_ckpt_bg_wait has returned.
 */
typedef struct mt_ckpt_bg mt_ckpt_bg;
typedef struct {
    double write_s;  /* create to rename, as mt_ckpt_write's (rank 0; 0 for a hash job) */
    double hash_s;   /* rank 0's SHA-256 and sidecar */
    double stage_s;  /* this rank's staging copy, seconds */
    double stage_mb; /* what it copied */
    char sha256[72]; /* the file's (rank 0) */
} mt_ckpt_bg_result;
/* Rank 0's thread calls it once the file is complete, durable on every
 * rank and its .sha256 written, with the job's figures: the caller's
 * publication (`latest`, records, retention), as early as the file allows.
 * It runs beside the training thread: it may touch only what that thread
 * leaves alone until mt_ckpt_bg_wait. Its error is the job's. */
typedef int (*mt_ckpt_done_fn)(const mt_ckpt_bg_result *res, void *ctx, mt_err *e);

/* Collective over c->world: the jobs' thread state and, when writes (write
 * jobs will come, not only hash jobs), a duplicate of c->world for the
 * writer's collective I/O. */
int mt_ckpt_bg_open(mt_ckpt_bg **bg, const mt_comm *c, int writes, mt_err *e);
/* Collective: waits for a job still running, frees everything. */
void mt_ckpt_bg_close(mt_ckpt_bg *bg);
/*
 * Collective: a write job. Each rank copies what it writes of views (its
 * share of each tensor's chunks, mt_ckpt_write) into staging memory the
 * writer keeps for the next job (copy 0: the views' data is itself a
 * staging copy, such as the host copy of device memory, which the caller
 * leaves unchanged until mt_ckpt_bg_wait), then returns while a thread
 * writes path exactly as mt_ckpt_write does over the duplicate
 * communicator, and rank 0's thread then writes path.sha256 and calls
 * done(ctx) (NULL: nothing). Needs
 * MPI_THREAD_MULTIPLE (c->thread_multiple). The thread blocks every signal
 * (the main thread takes them) and waits on no watchdog (parallel.timeout);
 * checkpoint.timeout's alarm covers it as it covers a synchronous write.
 */
int mt_ckpt_bg_write(mt_ckpt_bg *bg, const char *path, const mt_ckpt_meta *meta,
                     const char *config_text, const mt_tensor_view *views, int n, int copy,
                     double timeout_s, mt_ckpt_done_fn done, void *ctx, mt_err *e);
/* Rank 0, not collective: a hash job: mt_ckpt_write_sidecar of path (a
 * complete, durable checkpoint) in the thread, then done(ctx). The job
 * itself calls no MPI and no HDF5 (done must not either: MPI may be
 * FUNNELED in sync mode). */
int mt_ckpt_bg_hash(mt_ckpt_bg *bg, const char *path, mt_ckpt_done_fn done, void *ctx, mt_err *e);
/* 1 while this rank's thread still works on the job (without waiting). */
int mt_ckpt_bg_busy(const mt_ckpt_bg *bg);
/* Not collective: waits for this rank's part of the job (none: returns at
 * once, res zeroed) and returns its error. A write's error is the same on
 * every rank (agreed over the writer's communicator); a hash job's is rank
 * 0's alone, so the caller agrees on it. */
int mt_ckpt_bg_wait(mt_ckpt_bg *bg, mt_ckpt_bg_result *res, mt_err *e);

/*
 * One process: checks path completely (SHA-256 against the .sha256 beside
 * it when there is one, HDF5 structure, format and version, attributes,
 * every tensor read back through its Fletcher32 checksums, optimizer state
 * matching the weights). hash_tensors fills each tensor's sha256. Errors
 * are MT_ERR_CKPT and name the file and what is wrong with it.
 */
int mt_ckpt_verify(const char *path, int hash_tensors, mt_ckpt_info *info, mt_err *e);
void mt_ckpt_info_free(mt_ckpt_info *info);

/* One process: when path.sha256 exists, the file's SHA-256 (into sha_hex)
 * must be the one it records, before anything parses the file: libhdf5
 * 1.10 can crash on damaged bytes (docs/FUZZING.md). *checked: 1 when a
 * sidecar was checked, 0 when there is none. A mismatch or an unreadable
 * sidecar is MT_ERR_CKPT. mt_ckpt_verify starts with it. */
int mt_ckpt_check_sidecar(const char *path, char sha_hex[72], int *checked, mt_err *e);

/* Collective: every rank reads what it holds of each view (its block, or
 * range of it; mirrors included) from a verified checkpoint written under
 * any layout, and *optim_steps, the optimizer step count. The file's
 * optimizer must be optim_kind (the kind whose state the views name). */
int mt_ckpt_load(const mt_comm *c, const char *path, const char *optim_kind,
                 const mt_tensor_view *views, int n, int64_t *optim_steps, mt_err *e);

/* This rank's views (n) fit c's grid: each split tensor is tp_size blocks
 * of shard_parts x shard_len rows along shard_dim and this rank holds block
 * tp_rank, either whole (begin 0, count = block size) or, when ranges_ok,
 * a range of whole dim-0 rows of it that contains the rows this rank
 * writes (mt_ckpt_dp_rows: a ZeRO-1 shard of optimizer state; the model
 * file takes whole blocks only). MT_ERR_INTERNAL naming the tensor
 * otherwise. Not collective; mt_ckpt_write, mt_ckpt_load (ranges_ok) and
 * mt_modelfile_write check it first. */
int mt_ckpt_check_views(const mt_comm *c, const mt_tensor_view *views, int n, int ranges_ok,
                        mt_err *e);

/* The dim-0 rows [*lo, *hi) of v's tensor-parallel block that the
 * checkpoint writers of data-parallel rank dp_rank write under a dp x tp
 * layout (for a tensor not split, the shares of all tp ranks of it, which
 * are consecutive), and the elements per row (*row). The rows of dp ranks
 * 0 .. dp - 1 are consecutive and cover the block: ZeRO-1 shards optimizer
 * state this way (parallel/zero.h), so each rank writes a checkpoint's
 * optimizer state from its own shard. */
void mt_ckpt_dp_rows(const mt_tensor_view *v, int dp, int tp, int dp_rank, int64_t *lo, int64_t *hi,
                     int64_t *row);

/* Steps of the checkpoint files in dir, ascending (malloc'd; *n may be 0). */
int mt_ckpt_list(const char *dir, int64_t **steps, int *n, mt_err *e);
/* The file `latest` names in dir ("" when there is none, it is unreadable,
 * or dir/latest would be longer than a path can be). */
void mt_ckpt_latest(const char *dir, char *name, size_t n);
int mt_ckpt_set_latest(const char *dir, const char *name, mt_err *e);
/*
 * Retention: deletes the checkpoint files (and their .sha256) in dir that
 * are neither among the keep_last newest (0 = keep all), nor at a multiple
 * of keep_every, nor the one `latest` names; also stale temporaries of the
 * naming scheme. Touches no other file. Prints each deletion to log and,
 * when removed is not NULL, calls it with each deleted checkpoint's path and
 * the SHA-256 its .sha256 recorded ("" if none) before deleting it.
 */
typedef void (*mt_ckpt_removed_fn)(const char *path, const char *sha256, void *ctx);
int mt_ckpt_retain(const char *dir, int64_t keep_last, int64_t keep_every, FILE *log,
                   mt_ckpt_removed_fn removed, void *ctx, mt_err *e);
/* Deletes the temporaries of the naming scheme in dir that writers left when
 * they died (a writer on this host still alive keeps its own, and so does
 * any temporary modified less than min_age seconds ago), printing each to
 * log. */
void mt_ckpt_remove_temporaries(const char *dir, double min_age, FILE *log);

#endif
