/*
 * test_ckpt_shard.c - checkpoints and model files under tensor and pipeline
 * parallelism; run under mpirun -np 2, 3 and 4.
 *
 * The model is a table of tensors of odd shapes: split along dim 0 (whole
 * rows, and q|k|v thirds), along dim 1 (also in thirds, of a 3-d tensor),
 * not split, on the first or the last stage, and a tied embedding mirrored
 * on the last stage; a few are big enough for several chunks (4 MiB), one
 * with a prime number of rows per tensor-parallel block (chunks straddling
 * two ranks' rows). A tensor is split over tp ranks when tp divides it and
 * whole otherwise; with pp > 2 the middle stages hold nothing.
 *
 * For every grid (tp, pp) the world size allows: write a checkpoint (weights
 * from mt_params_init_values, AdamW moments from the global element index),
 * check it with mt_ckpt_verify and against the full tensors read back with
 * HDF5 on rank 0, then load it under every grid and compare each element
 * held, mirrors included, exactly; and write the model file, whose tensors
 * must equal the full ones. A shard that is not the rank's block is refused
 * on every rank.
 */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/optim.h"
#include "core/params.h"
#include "core/state_views.h"
#include "io/checkpoint.h"
#include "io/modelfile.h"
#include "parallel/comm.h"
#include "test_util.h"

#define SEED 7

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[3];
    int dim, parts; /* split along dim (-1: never) in parts blocks */
    int last;       /* on the last stage (else the first) */
    int tied;       /* first stage, mirrored on the last */
} spec;

static const spec specs[] = {
    {"a.w", 2, {6, 5}, 0, 1, 0, 0},
    {"b.w", 2, {12, 5}, 0, 1, 0, 0},
    {"attn.w", 2, {12, 4}, 0, 3, 0, 0},
    {"proj.w", 2, {5, 8}, 1, 1, 1, 0},
    {"bias", 1, {7}, -1, 1, 1, 0},
    {"emb", 2, {8, 3}, 0, 1, 0, 1},
    {"ln", 1, {6}, -1, 1, 0, 0},
    {"qkv3", 3, {3, 12, 2}, 1, 3, 1, 0},
    {"tiny", 2, {2, 3}, 0, 1, 1, 0},
    {"big.qkv", 2, {1200, 1000}, 0, 3, 0, 0},
    {"big.proj", 2, {1101, 2048}, 1, 1, 1, 0},
    {"big.rep", 2, {1100, 1001}, -1, 1, 1, 0},
    {"big.prime", 2, {134, 16384}, 0, 1, 0, 0},
};
#define NSPEC (int)(sizeof specs / sizeof specs[0])

/* The model's views for c's grid (ws: no split, no stages: the whole model). */
static void build(const mt_comm *c, int whole, mt_params *p) {
    mt_err e = {0};
    mt_params_init(p);
    for (int i = 0; i < NSPEC; i++) {
        const spec *s = &specs[i];
        mt_params_add(p, s->name, s->ndim, s->shape, 1, MT_INIT_NORMAL, 1.0f);
        if (whole) continue;
        int tp = c->tp_size, pp = c->pp_size, st = c->pp_rank;
        if (s->dim >= 0 && s->shape[s->dim] % (s->parts * tp) == 0)
            mt_params_shard(p, i, s->dim, s->parts, c->tp_rank, tp);
        int stage = s->last ? pp - 1 : 0;
        int mirror = s->tied && pp > 1 && st == pp - 1;
        mt_params_place(p, i, stage, st == stage || mirror, mirror);
    }
    if (mt_params_alloc(p, &e)) {
        printf("FAIL: %s\n", e.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

/* The optimizer moments' value for global element g (exact in float32). */
static float moment(int which, uint64_t g) {
    return which == 0 ? (float)g + 0.25f : -((float)g + 0.5f);
}

static void optim_alloc(const mt_params *p, mt_optim *o) {
    memset(o, 0, sizeof *o);
    o->kind = MT_OPTIM_ADAMW;
    o->beta1 = 0.9f, o->beta2 = 0.95f, o->eps = 1e-8f, o->weight_decay = 0.1f;
    o->m = mt_alloc_floats(p->numel);
    o->v = mt_alloc_floats(p->numel);
    if (!o->m || !o->v) MPI_Abort(MPI_COMM_WORLD, 1);
}

static void fill_moments(const mt_params *p, mt_optim *o) {
    for (int i = 0; i < p->n; i++) {
        const mt_param *t = &p->v[i];
        for (size_t j = 0; j < t->numel; j++) {
            uint64_t g = mt_param_global_index(t, j);
            o->m[t->offset + j] = moment(0, g);
            o->v[t->offset + j] = moment(1, g);
        }
    }
}

static void grid_name(const mt_comm *c, char *buf, size_t n) {
    snprintf(buf, n, "dp%d.tp%d.pp%d", c->dp_size, c->tp_size, c->pp_size);
}

/* Rank 0: dataset path of file fname equals want (n elements). */
static void check_dataset(hid_t f, const char *fname, const char *path, const float *want,
                          size_t n) {
    float *x = malloc(n * sizeof(float) + 4);
    hid_t ds = H5Dopen2(f, path, H5P_DEFAULT);
    int ok = ds >= 0 && H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0;
    if (ds >= 0) H5Dclose(ds);
    CHECK(ok, "%s: cannot read %s", fname, path);
    size_t bad = 0, first = 0;
    for (size_t k = 0; ok && k < n; k++)
        if (x[k] != want[k] && !bad++) first = k;
    CHECK(bad == 0, "%s: %s differs in %zu of %zu elements (first at %zu: %g, want %g)", fname,
          path, bad, n, first, (double)x[first], (double)want[first]);
    free(x);
}

/* Rank 0: every tensor of file fname (and the moments when ckpt) is the full
 * tensor of the whole model. */
static void check_file(const char *fname, const mt_params *whole, int ckpt) {
    hid_t f = H5Fopen(fname, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0, "cannot open %s", fname);
    if (f < 0) return;
    char path[160];
    for (int i = 0; i < whole->n; i++) {
        const mt_param *t = &whole->v[i];
        snprintf(path, sizeof path, "/model/%s", t->name);
        check_dataset(f, fname, path, whole->data + t->offset, t->numel);
        if (!ckpt) continue;
        float *want = malloc(t->numel * sizeof(float) + 4);
        for (int s = 0; s < 2; s++) {
            for (size_t g = 0; g < t->numel; g++) want[g] = moment(s, g);
            snprintf(path, sizeof path, "/optim/%s/%s", s ? "v" : "m", t->name);
            check_dataset(f, fname, path, want, t->numel);
        }
        free(want);
    }
    H5Fclose(f);
}

/* Loads ckpt under c's grid and checks every element held. */
static void check_load(const mt_comm *c, const char *ckpt, const char *wrote) {
    char grid[64];
    grid_name(c, grid, sizeof grid);
    mt_params p, ref;
    build(c, 0, &p);
    build(c, 0, &ref);
    mt_params_init_values(&ref, SEED);
    mt_optim o;
    optim_alloc(&p, &o);
    for (size_t j = 0; j < p.numel; j++) p.data[j] = o.m[j] = o.v[j] = -999.0f;
    mt_err e = {0};
    double t0 = MPI_Wtime();
    mt_state_views sv;
    int rc = mt_state_views_build(&sv, &p, &o, &e);
    if (!rc) rc = mt_ckpt_load(c, ckpt, "adamw", sv.v, sv.n, &o.t, &e);
    mt_state_views_free(&sv);
    CHECK(rc == 0, "rank %d: load of %s checkpoint under %s: %s", c->rank, wrote, grid, e.msg);
    CHECK(o.t == 42, "rank %d: optimizer step count %lld after load, want 42", c->rank,
          (long long)o.t);
    for (int i = 0; i < p.n && rc == 0; i++) {
        const mt_param *t = &p.v[i];
        size_t bad = 0, first = 0;
        for (size_t j = 0; j < t->numel; j++) {
            uint64_t g = mt_param_global_index(t, j);
            size_t k = t->offset + j;
            if ((p.data[k] != ref.data[k] || o.m[k] != moment(0, g) || o.v[k] != moment(1, g)) &&
                !bad++)
                first = j;
        }
        CHECK(bad == 0,
              "rank %d: %s written under %s, loaded under %s%s: %zu of %zu elements differ "
              "(first: local %zu = global %llu: w %g want %g, m %g, v %g)",
              c->rank, t->name, wrote, grid, t->mirror ? " (mirror)" : "", bad, t->numel, first,
              (unsigned long long)mt_param_global_index(t, first),
              (double)p.data[t->offset + first], (double)ref.data[t->offset + first],
              (double)o.m[t->offset + first], (double)o.v[t->offset + first]);
    }
    if (c->rank == 0)
        printf("  loaded under %-14s %.2f s\n", grid, MPI_Wtime() - t0), fflush(stdout);
    free(o.m), free(o.v);
    mt_params_free(&p);
    mt_params_free(&ref);
}

/* A shard that is not the rank's block of its tensor (rank size-1's offset
 * of a.w moved by one row) is refused on every rank, before any I/O. */
static void check_bad_view(mt_comm *c, const char *dir) {
    mt_err e = {0};
    if (mt_comm_layout(c, c->size % 2 == 0 ? 2 : c->size, 1, &e)) return;
    mt_params p;
    build(c, 0, &p);
    if (c->rank == c->size - 1) p.v[0].shard_offset++;
    mt_optim o;
    optim_alloc(&p, &o);
    mt_ckpt_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.optim_kind, sizeof m.optim_kind, "adamw");
    char path[512], sha[72];
    snprintf(path, sizeof path, "%s/bad.h5", dir);
    double ws;
    int rc[3];
    mt_state_views sv;
    if (mt_state_views_build(&sv, &p, &o, &e)) MPI_Abort(MPI_COMM_WORLD, 1);
    rc[0] = mt_ckpt_write(c, path, &m, "", sv.v, sv.n, 0, &ws, sha, &e);
    e = (mt_err){0};
    rc[1] = mt_ckpt_load(c, path, "adamw", sv.v, sv.n, &o.t, &e);
    e = (mt_err){0};
    mt_modelfile_meta mm = {"", "test", "gpt", 0, "0", "none"};
    rc[2] = mt_modelfile_write(c, path, sv.v, sv.n_model, &mm, &e);
    mt_state_views_free(&sv);
    for (int k = 0; k < 3; k++)
        CHECK(rc[k] == MT_ERR_INTERNAL, "rank %d: a wrong shard of a.w gave %d (call %d), want %d",
              c->rank, rc[k], k, MT_ERR_INTERNAL);
    CHECK(access(path, F_OK) != 0, "a file was written with a wrong shard");
    if (c->rank == 0) printf("a wrong shard: %s\n", e.msg);
    free(o.m), free(o.v);
    mt_params_free(&p);
}

typedef struct {
    int tp, pp;
} grid;

int main(int argc, char **argv) {
    mt_comm c;
    mt_err e = {0};
    if (mt_comm_init(&c, &argc, &argv, &e)) {
        printf("FAIL: %s\n", e.msg);
        return 1;
    }
    /* every grid the world allows, with tp and pp up to 4 */
    grid grids[16];
    int ng = 0;
    for (int pp = 1; pp <= 4; pp++)
        for (int tp = 1; tp <= 4; tp++)
            if (c.size % (tp * pp) == 0) grids[ng++] = (grid){tp, pp};
    char dir[256] = "";
    if (c.rank == 0) {
        snprintf(dir, sizeof dir, "%s/mt_ckpt_shard.XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(dir)) MPI_Abort(MPI_COMM_WORLD, 1);
    }
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, c.world);
    mt_params whole;
    build(&c, 1, &whole);
    mt_params_init_values(&whole, SEED);

    for (int w = 0; w < ng; w++) {
        if (mt_comm_layout(&c, grids[w].tp, grids[w].pp, &e)) break;
        char wrote[64], ckpt[512], model[512];
        grid_name(&c, wrote, sizeof wrote);
        snprintf(ckpt, sizeof ckpt, "%s/%s.h5", dir, wrote);
        snprintf(model, sizeof model, "%s/model.%s.h5", dir, wrote);
        mt_params p;
        build(&c, 0, &p);
        mt_params_init_values(&p, SEED);
        mt_optim o;
        optim_alloc(&p, &o);
        fill_moments(&p, &o);
        o.t = 42;
        mt_ckpt_meta m;
        memset(&m, 0, sizeof m);
        m.step = m.optim_steps = 42;
        m.world = c.size, m.dp = c.dp_size, m.tp = c.tp_size, m.pp = c.pp_size;
        snprintf(m.optim_kind, sizeof m.optim_kind, "adamw");
        snprintf(m.model_kind, sizeof m.model_kind, "gpt");
        snprintf(m.run_id, sizeof m.run_id, "test");
        m.hyper = mt_state_hyper(&o);
        double write_s = 0, t0 = MPI_Wtime();
        char sha[72] = "";
        mt_state_views sv;
        if (mt_state_views_build(&sv, &p, &o, &e)) MPI_Abort(MPI_COMM_WORLD, 1);
        int rc =
            mt_ckpt_write(&c, ckpt, &m, "[model]\nkind = gpt\n", sv.v, sv.n, 0, &write_s, sha, &e);
        CHECK(rc == 0, "rank %d: checkpoint write under %s: %s", c.rank, wrote, e.msg);
        if (c.rank == 0) {
            printf("%s: checkpoint written in %.2f s\n", wrote, MPI_Wtime() - t0);
            mt_ckpt_info info;
            mt_err ve = {0};
            CHECK(mt_ckpt_verify(ckpt, 0, &info, &ve) == 0, "verify of %s: %s", ckpt, ve.msg);
            CHECK(info.n_tensors == 3 * NSPEC, "%s holds %d tensors, want %d", ckpt, info.n_tensors,
                  3 * NSPEC);
            mt_ckpt_info_free(&info);
            check_file(ckpt, &whole, 1);
        }
        mt_modelfile_meta mm = {"[model]\nkind = gpt\n", "test", "gpt", 42, "0", "none"};
        rc = mt_modelfile_write(&c, model, sv.v, sv.n_model, &mm, &e);
        mt_state_views_free(&sv);
        CHECK(rc == 0, "rank %d: model file under %s: %s", c.rank, wrote, e.msg);
        if (c.rank == 0 && rc == 0) check_file(model, &whole, 0);
        free(o.m), free(o.v);
        mt_params_free(&p);
        for (int r = 0; r < ng && rc == 0; r++) {
            if (mt_comm_layout(&c, grids[r].tp, grids[r].pp, &e)) break;
            check_load(&c, ckpt, wrote);
        }
        if (c.rank == 0) {
            unlink(ckpt);
            char side[600];
            snprintf(side, sizeof side, "%s.sha256", ckpt);
            unlink(side);
            unlink(model);
        }
        MPI_Barrier(c.world);
    }
    CHECK(e.code == 0, "rank %d: %s", c.rank, e.msg);
    check_bad_view(&c, dir);
    if (c.rank == 0) rmdir(dir);
    mt_params_free(&whole);
    int failed = mt_test_failures, any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, c.world);
    char name[64];
    snprintf(name, sizeof name, "test_ckpt_shard (rank %d of %d)", c.rank, c.size);
    int rc = mt_test_finish(name);
    mt_comm_finalize(&c);
    return rc || any ? 1 : 0;
}
