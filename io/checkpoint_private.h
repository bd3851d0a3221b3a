/*
 * checkpoint_private.h - what the files of the checkpoint module share and
 * nothing outside io/checkpoint_*.c may use: the layout of a tensor in the
 * file and in memory (checkpoint_layout.c), the file's metadata
 * (checkpoint_format.c) and bounded path building (checkpoint_dir.c). The
 * public API is io/checkpoint.h.
 */
#ifndef MT_CHECKPOINT_PRIVATE_H
#define MT_CHECKPOINT_PRIVATE_H

#include <hdf5.h>
#include <mpi.h>

#include "io/checkpoint.h"

/* ---- checkpoint_layout.c: a tensor in the file and in memory ---- */

/*
 * A rank's block of a tensor: along the shard dimension sd it owns rows
 * [off, off + len) of each of `parts` equal blocks of B rows (B = tp * len);
 * along every other dimension, everything. In memory the block is row-major
 * with parts * len rows along sd, part-major (tensor_view.h). When the
 * tensor is not split (sd < 0) the block is the whole tensor.
 *
 * The ranks holding the same block share its writing by "rows" of the
 * block: its dim-0 rows, which for sd = 0 are the parts * len local rows.
 * Each sharer takes whole units of chunk[0] rows, so that in the file every
 * chunk is written whole by one rank wherever the chunks align with the
 * blocks: chunks are whole global rows when sd < 0, len wide along sd when
 * sd > 0, and, when sd = 0, of a number of rows dividing len where one of a
 * reasonable size does.
 */
typedef struct {
    int ndim, sd;
    hsize_t gdims[MT_VIEW_MAX_DIMS]; /* the full logical shape */
    hsize_t ldims[MT_VIEW_MAX_DIMS]; /* this rank's block, as in memory */
    hsize_t chunk[MT_VIEW_MAX_DIMS]; /* chunk shape in the file */
    hsize_t parts, len, off, block;  /* along sd: block = gdims[sd] / parts */
    hsize_t rows;                    /* ldims[0]: rows split among the sharers */
    hsize_t inner;                   /* elements per row of the block */
    hsize_t units;                   /* units of chunk[0] rows in the block */
    hsize_t sharers;                 /* ranks holding (and writing) the same block */
} mt_ckpt_geom;

/* The layout of tensor v in the file and in memory when written by dp x tp
 * ranks per stage; read by any layout (the chunking is then the file's own). */
void mt_ckpt_geometry(const mt_tensor_view *v, int dp, int tp, mt_ckpt_geom *g);
/* Which sharer of g's block data-parallel rank dp_rank, tensor-parallel
 * rank tp_rank of tp writes as: dp_rank for a split tensor (each tp rank
 * has its own block), dp_rank * tp + tp_rank for a whole one, so that a dp
 * rank's tp ranks write consecutive shares (mt_ckpt_dp_rows). */
hsize_t mt_ckpt_writer(const mt_ckpt_geom *g, int dp_rank, int tp_rank, int tp);
/* Rows [lo, hi) of the block that sharer k of g->sharers writes. */
void mt_ckpt_share(const mt_ckpt_geom *g, hsize_t k, hsize_t *lo, hsize_t *hi);
/* Which writer writes global dim-0 row r (the inverse of mt_ckpt_share). */
hsize_t mt_ckpt_row_writer(const mt_ckpt_geom *g, hsize_t r);
/* Selects, in the file space and a new memory space *mspace (the caller
 * closes it), rows [lo, hi) of this rank's block. */
void mt_ckpt_select_rows(const mt_ckpt_geom *g, hsize_t lo, hsize_t hi, hid_t fspace,
                         hid_t *mspace);
/* A buffer HDF5 accepts for an empty selection (a view not held has none). */
float *mt_ckpt_no_data(void);

/* ---- checkpoint_format.c: what the file is, besides tensor data ---- */

/* A file access property list of the checkpoint format (libver bounds):
 * MPI-IO over comm, or one process when comm is MPI_COMM_NULL. */
hid_t mt_ckpt_fapl(MPI_Comm comm);
/* Rank 0, serial: the groups, every attribute of meta (root, /optim,
 * /train) and /config. */
int mt_ckpt_write_header(hid_t f, const mt_ckpt_meta *m, const char *config, mt_err *e);
/* The format identity (format, format_version; into *version) and every
 * attribute of the table into *m; errors name the file `path`. */
int mt_ckpt_read_header(hid_t f, const char *path, int *version, mt_ckpt_meta *m, mt_err *e);
/* Reads a string attribute (is_attr) or scalar string dataset, fixed or
 * variable length, into buf (n bytes) or, when alloc is not NULL, into a
 * malloc'd *alloc. Nonzero if it is missing, not a string or longer than buf. */
int mt_ckpt_read_string(hid_t obj, int is_attr, char *buf, size_t n, char **alloc);

/* ---- checkpoint_write.c ---- */

/* glibc's malloc set for HDF5's per-chunk filter buffers (once; main thread). */
void mt_ckpt_tune_malloc(void);

/* ---- checkpoint_dir.c: paths ---- */

/* snprintf into buf (n bytes); MT_ERR_CKPT naming the start of the path when
 * it does not fit (a path longer than MT_CKPT_PATH cannot be opened). */
int mt_ckpt_path(char *buf, size_t n, mt_err *e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
