/*
 * checkpoint_layout.c - where each element of a tensor goes: its chunking
 * in the file, the block a rank holds in memory, the share of the block's
 * rows each of the ranks holding it writes, and the HDF5 selections that
 * move those rows between the two. Everything here follows from the view's
 * shard description and the layout (dp x tp), so any rank can lay out any
 * tensor, held or not.
 */
#include <string.h>

#include "io/checkpoint_private.h"

#define MT_CKPT_CHUNK_BYTES ((hsize_t)4 << 20) /* target chunk size of a tensor */

/* Rows per chunk: n rows in chunks of at most `most` rows, as few as that
 * allows, but a multiple of w when more than one (each sharer writes as many),
 * of equal rows where they divide evenly: a partial last chunk costs a read. */
static hsize_t even_rows(hsize_t n, hsize_t most, hsize_t w) {
    hsize_t rows = n ? n : 1, nchunks = (rows + most - 1) / most;
    if (nchunks > 1) nchunks = (nchunks + w - 1) / w * w;
    if (nchunks > rows) nchunks = rows;
    return (rows + nchunks - 1) / nchunks;
}

/* Rows per chunk of a tensor split along dim 0 (len rows in each of parts
 * blocks): a divisor of len, so that no chunk straddles two tensor-parallel
 * ranks' rows, unless every divisor makes chunks under half the size the
 * byte target allows (a prime len); then straddling chunks, which
 * create_tensor makes real. A block of more than one chunk's bytes gets a
 * number of chunks the w sharers split evenly where a divisor allows. */
static hsize_t dim0_rows(hsize_t len, hsize_t parts, hsize_t most, hsize_t w) {
    if (len == 0) return 1;
    hsize_t m0 = (len + most - 1) / most, big = (len + m0 - 1) / m0, any = 0;
    int balance = parts * len > most;
    for (hsize_t m = m0; m <= len && len / m * 2 >= big; m++) {
        if (len % m) continue;
        if (!balance || parts * m % w == 0) return len / m;
        if (!any) any = m;
    }
    return any ? len / any : big;
}

/* A ZeRO-1 shard's chunk rows (dp_shard): n rows in at least w chunks (a
 * multiple of w where there are rows enough), so that each of the w
 * sharers writes about n / w rows, or fewer rows where `most` demands. */
static hsize_t shard_rows(hsize_t n, hsize_t most, hsize_t w) {
    hsize_t rows = n ? n : 1, nchunks = (rows + most - 1) / most;
    nchunks = (nchunks + w - 1) / w * w;
    if (nchunks > rows) nchunks = rows;
    return (rows + nchunks - 1) / nchunks;
}

/* The same along a dim 0 split into parts blocks of len rows: a divisor m
 * of len (chunks never straddle two tensor-parallel ranks) with parts * m
 * chunks a multiple of w, at most `most` rows each; one-row chunks when no
 * divisor fits. */
static hsize_t shard_dim0_rows(hsize_t len, hsize_t parts, hsize_t most, hsize_t w) {
    if (len == 0) return 1;
    for (hsize_t m = (len + most - 1) / most; m <= len; m++)
        if (len % m == 0 && parts * m % w == 0) return len / m;
    return 1;
}

void mt_ckpt_geometry(const mt_tensor_view *t, int dp, int tp, mt_ckpt_geom *g) {
    memset(g, 0, sizeof *g);
    g->ndim = t->ndim;
    g->sd = t->shard_dim >= 0 && t->shard_dim < t->ndim ? t->shard_dim : -1;
    g->parts = g->sd >= 0 ? (hsize_t)t->shard_parts : 1;
    g->len = g->sd >= 0 ? (hsize_t)t->shard_len : 0;
    g->off = g->sd >= 0 ? (hsize_t)t->shard_offset : 0;
    g->sharers = (hsize_t)dp * (g->sd >= 0 ? 1 : (hsize_t)tp);
    hsize_t row = sizeof(float); /* bytes of one dim-0 row of a chunk */
    for (int d = 0; d < t->ndim; d++) {
        g->gdims[d] = (hsize_t)t->shape[d];
        g->ldims[d] = d == g->sd ? g->parts * g->len : g->gdims[d];
        g->chunk[d] = d == g->sd && d > 0 ? g->len : g->gdims[d];
        if (d > 0) row *= g->chunk[d];
    }
    if (g->sd >= 0) g->block = g->gdims[g->sd] / g->parts;
    g->rows = g->ldims[0];
    g->inner = 1;
    for (int d = 1; d < t->ndim; d++) g->inner *= g->ldims[d];
    hsize_t most = MT_CKPT_CHUNK_BYTES / row; /* rows in MT_CKPT_CHUNK_BYTES */
    if (most < 1) most = 1;
    if (t->dp_shard)
        g->chunk[0] = g->sd == 0 ? shard_dim0_rows(g->len, g->parts, most, g->sharers)
                                 : shard_rows(g->gdims[0], most, g->sharers);
    else
        g->chunk[0] = g->sd == 0 ? dim0_rows(g->len, g->parts, most, g->sharers)
                                 : even_rows(g->gdims[0], most, g->sharers);
    g->units = (g->rows + g->chunk[0] - 1) / g->chunk[0];
}

void mt_ckpt_share(const mt_ckpt_geom *g, hsize_t k, hsize_t *lo, hsize_t *hi) {
    hsize_t u0 = g->units * k / g->sharers, u1 = g->units * (k + 1) / g->sharers;
    *lo = u0 * g->chunk[0];
    *hi = u1 * g->chunk[0];
    if (*hi > g->rows) *hi = g->rows;
    if (*lo > *hi) *lo = *hi;
}

hsize_t mt_ckpt_writer(const mt_ckpt_geom *g, int dp_rank, int tp_rank, int tp) {
    return g->sd >= 0 ? (hsize_t)dp_rank : (hsize_t)dp_rank * (hsize_t)tp + (hsize_t)tp_rank;
}

void mt_ckpt_dp_rows(const mt_tensor_view *v, int dp, int tp, int dp_rank, int64_t *lo, int64_t *hi,
                     int64_t *row) {
    mt_ckpt_geom g;
    mt_ckpt_geometry(v, dp, tp, &g);
    hsize_t a, b, x, y;
    int last = g.sd >= 0 ? 0 : tp - 1; /* a whole tensor's tp ranks write consecutive shares */
    mt_ckpt_share(&g, mt_ckpt_writer(&g, dp_rank, 0, tp), &a, &b);
    mt_ckpt_share(&g, mt_ckpt_writer(&g, dp_rank, last, tp), &x, &y);
    *lo = (int64_t)a;
    *hi = (int64_t)(y > a ? y : a);
    *row = (int64_t)g.inner;
}

/* Which writer writes global dim-0 row r (along sd > 0, every block splits its
 * rows alike): the tp block times the sharers, plus the sharer (inverse of
 * mt_ckpt_share: the largest k with units * k / sharers <= unit). */
hsize_t mt_ckpt_row_writer(const mt_ckpt_geom *g, hsize_t r) {
    hsize_t q = r, tpb = 0;
    if (g->sd == 0) {
        hsize_t in = r % g->block;
        tpb = in / g->len;
        q = r / g->block * g->len + in % g->len;
    }
    hsize_t u = q / g->chunk[0], w = g->sharers;
    return tpb * w + ((u + 1) * w + g->units - 1) / g->units - 1;
}

/* Selects, in file and memory, rows [lo, hi) of this rank's block. Along
 * sd the block is a strided hyperslab (start off, stride block, count parts,
 * block len); rows of a dim-0 block that are not whole parts are their own
 * pieces. Memory is shaped like the block, so HDF5 copies whole runs. */
void mt_ckpt_select_rows(const mt_ckpt_geom *g, hsize_t lo, hsize_t hi, hid_t fspace,
                         hid_t *mspace) {
    if (hi <= lo || g->inner == 0) {
        hsize_t one = 1;
        H5Sselect_none(fspace);
        *mspace = H5Screate_simple(1, &one, NULL);
        H5Sselect_none(*mspace);
        return;
    }
    hsize_t start[MT_VIEW_MAX_DIMS], stride[MT_VIEW_MAX_DIMS], count[MT_VIEW_MAX_DIMS],
        block[MT_VIEW_MAX_DIMS], mdims[MT_VIEW_MAX_DIMS];
    for (int d = 0; d < g->ndim; d++) {
        start[d] = 0, stride[d] = 1, count[d] = 1, block[d] = g->gdims[d];
        mdims[d] = g->ldims[d];
    }
    mdims[0] = hi - lo;
    if (g->sd > 0) {
        start[g->sd] = g->off, stride[g->sd] = g->block;
        count[g->sd] = g->parts, block[g->sd] = g->len;
    }
    if (g->sd != 0) {
        start[0] = lo, block[0] = hi - lo;
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, stride, count, block);
    } else {
        H5S_seloper_t op = H5S_SELECT_SET;
        for (hsize_t q = lo; q < hi; op = H5S_SELECT_OR) {
            hsize_t part = q / g->len, s = q % g->len;
            start[0] = part * g->block + g->off + s;
            if (s == 0 && hi - q >= g->len) { /* whole parts */
                count[0] = (hi - q) / g->len, stride[0] = g->block, block[0] = g->len;
            } else {
                hsize_t end = (part + 1) * g->len < hi ? (part + 1) * g->len : hi;
                count[0] = 1, stride[0] = 1, block[0] = end - q;
            }
            H5Sselect_hyperslab(fspace, op, start, stride, count, block);
            q += count[0] * block[0];
        }
    }
    *mspace = H5Screate_simple(g->ndim, mdims, NULL);
}

float *mt_ckpt_no_data(void) {
    static float none;
    return &none;
}

/* A held range of t that is not its whole block: whole dim-0 rows that
 * contain the rows this rank writes. */
static int range_fits(const mt_comm *c, const mt_tensor_view *t) {
    mt_ckpt_geom g;
    mt_ckpt_geometry(t, c->dp_size, c->tp_size, &g);
    if (t->begin < 0 || t->count < 0 || g.inner == 0 || (hsize_t)t->begin % g.inner ||
        (hsize_t)t->count % g.inner || (size_t)(t->begin + t->count) > mt_view_block_numel(t))
        return 0;
    hsize_t lo = 0, hi = 0;
    if (!t->mirror)
        mt_ckpt_share(&g, mt_ckpt_writer(&g, c->dp_rank, c->tp_rank, c->tp_size), &lo, &hi);
    return hi <= lo ||
           ((hsize_t)t->begin <= lo * g.inner && hi * g.inner <= (hsize_t)(t->begin + t->count));
}

int mt_ckpt_check_views(const mt_comm *c, const mt_tensor_view *views, int n, int ranges_ok,
                        mt_err *e) {
    for (int i = 0; i < n; i++) {
        const mt_tensor_view *t = &views[i];
        int whole = t->begin == 0 && (size_t)t->count == mt_view_block_numel(t);
        if (t->held && !whole && (!ranges_ok || !range_fits(c, t)))
            return mt_err_set(e, MT_ERR_INTERNAL,
                              "tensor %s: this rank holds elements %lld..%lld of its block of "
                              "%zu; %s",
                              t->path, (long long)t->begin, (long long)(t->begin + t->count),
                              mt_view_block_numel(t),
                              ranges_ok ? "not whole rows containing the rows it writes"
                                        : "model files take whole blocks only");
        if (t->shard_dim < 0) continue;
        int64_t rows = t->shard_dim < t->ndim ? t->shape[t->shard_dim] : -1;
        if (t->shard_parts < 1 || t->shard_len < 1 ||
            (int64_t)t->shard_parts * t->shard_len * c->tp_size != rows ||
            t->shard_offset != (int64_t)c->tp_rank * t->shard_len)
            return mt_err_set(e, MT_ERR_INTERNAL,
                              "tensor %s: its shard (dim %d, %d parts, rows %lld..%lld of each) "
                              "is not tensor-parallel rank %d's of %d equal blocks of its shape",
                              t->path, t->shard_dim, t->shard_parts, (long long)t->shard_offset,
                              (long long)(t->shard_offset + t->shard_len), c->tp_rank, c->tp_size);
    }
    return MT_OK;
}
