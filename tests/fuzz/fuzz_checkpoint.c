/*
 * fuzz_checkpoint.c - libFuzzer target: the checkpoint readers on small HDF5
 * files whose structure the input describes (fuzz_h5.h): mt_ckpt_verify
 * (io/checkpoint_verify.c: sidecar, format, every attribute, /config, every
 * tensor and its optimizer state) and then the collective mt_ckpt_load
 * (io/checkpoint_load.c) of a small model, as a resume does - on one MPI
 * rank (a singleton world, no mpirun).
 *
 * The input decides every attribute of the format (missing, another type,
 * an array, a string of any size, other values), /config, the optimizer
 * kind, how many tensors /model holds, their names, types, shapes, layouts
 * and values, which optimizer states exist, extra objects, and the .sha256
 * beside the file (right, missing, wrong, garbage). The input is a list of
 * edits (fz_edits) of slots: the file-wide choices, each attribute,
 * /config, each tensor and each of its optimizer states; the empty input is a
 * valid checkpoint of two float32 tensors t0 (2, 3) and t1 (3) with AdamW
 * state and a right sidecar. Properties: every failure is a checkpoint
 * error (exit 4) with a message, or out of memory (1) for sizes no memory
 * holds; a file that verifies has weights, a config and tensors of 1 to 4
 * dimensions.
 */
#include <mpi.h>
#include <sanitizer/lsan_interface.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_h5.h"
#include "io/checkpoint.h"
#include "io/files.h"
#include "io/h5util.h"
#include "io/sha256.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static mt_comm comm;

/* Open MPI keeps (and leaks) what it allocates when it starts and when
 * MPI-IO loads its plugins at the first collective open: both happen here,
 * unseen by the leak checker, with one valid checkpoint loaded; leaks of
 * the code under test in any input are still caught. */
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    int provided;
    __lsan_disable();
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    comm.world = MPI_COMM_WORLD;
    comm.size = comm.dp_size = comm.tp_size = comm.pp_size = 1;
    comm.local_size = 1;
    LLVMFuzzerTestOneInput(NULL, 0);
    __lsan_enable();
    return 0;
}

static void fail(const char *what, const mt_err *e) {
    fprintf(stderr, "fuzz: %s%s%s\n", what, e ? ": " : "", e ? e->msg : "");
    abort();
}

/* The format's attributes (io/checkpoint_format.c), as mpitrain writes them. */
typedef struct {
    const char *group, *name;
    char kind; /* 'l' int64, 'i' int, 'd' double, 's' string */
} attr;
static const attr attrs[] = {
    {"/", "format", 's'},
    {"/", "format_version", 'l'},
    {"/", "step", 'l'},
    {"/", "epoch", 'l'},
    {"/", "samples_seen", 'l'},
    {"/", "seed", 'l'},
    {"/", "run_id", 's'},
    {"/", "model_name", 's'},
    {"/", "model_kind", 's'},
    {"/", "created_utc", 's'},
    {"/", "mpitrain_version", 's'},
    {"/", "code_commit", 's'},
    {"/", "code_dirty", 'i'},
    {"/", "data_sha256", 's'},
    {"/", "resumed_from", 's'},
    {"/", "world_size", 'i'},
    {"/", "dp", 'i'},
    {"/", "tp", 'i'},
    {"/", "pp", 'i'},
    {"/optim", "kind", 's'},
    {"/optim", "step_count", 'l'},
    {"/train", "step_in_epoch", 'l'},
    {"/train", "lr_last", 'd'},
    {"/train", "lr_next", 'd'},
    {"/train", "loss", 'd'},
    {"/train", "train_acc", 'd'},
    {"/train", "grad_norm", 'd'},
    {"/train", "test_loss", 'd'},
    {"/train", "test_acc", 'd'},
};

/* The model the loader expects: t0 (2, 3) and t1 (3). */
#define NT 2
static const char *tname[NT] = {"t0", "t1"};
static const int trank[NT] = {2, 1};
static const hsize_t tdims[NT][2] = {{2, 3}, {3, 0}};

static const char *optim_kind(fz_in *in) {
    static const char *k[] = {"adamw", "sgd", "", "adam", "momentum", "adamw\x01"};
    return k[fz_pick(in, 6)];
}

/* The input's slots (fz_edits): the file-wide decisions, each attribute,
 * /config, and each tensor of /model and its optimizer states. */
#define NATTR    (int)(sizeof attrs / sizeof attrs[0])
#define MAX_T    4
#define S_FILE   0
#define S_ATTR   1
#define S_CONFIG (S_ATTR + NATTR)
#define S_TENSOR (S_CONFIG + 1) /* + 3 * i + (0: weight, 1.. its states) */
#define NSLOTS   (S_TENSOR + 3 * MAX_T)

typedef struct {
    unsigned sidecar;    /* write_sidecar's choice */
    int hash, also_load; /* verify's hash_tensors; load even when verify fails */
    const char *kind;    /* /optim kind */
    int ntensors;
} file_plan;

static void plan_file(fz_in *in, file_plan *p) {
    p->sidecar = fz_pick(in, 6);
    p->hash = fz_u8(in) & 1;
    p->also_load = fz_u8(in) & 1;
    p->kind = optim_kind(in);
    p->ntensors = NT;
    if (fz_u8(in)) p->ntensors = (int)fz_pick(in, MAX_T + 1);
}

static void write_attrs(fz_edits *ed, hid_t f, const char *kind) {
    for (int i = 0; i < NATTR; i++) {
        const attr *a = &attrs[i];
        fz_in *in = &ed->slot[S_ATTR + i];
        fz_h5_spec s = {a->kind == 'l'   ? H5T_NATIVE_INT64
                        : a->kind == 'i' ? H5T_NATIVE_INT
                        : a->kind == 'd' ? H5T_NATIVE_DOUBLE
                                         : H5T_C_S1,
                        0,
                        {0},
                        a->kind == 's' ? "x" : NULL};
        if (strcmp(a->name, "format") == 0) s.text = MT_CKPT_FORMAT;
        if (strcmp(a->name, "kind") == 0) s.text = kind;
        if (strcmp(a->name, "format_version") == 0 && in->n == 0) {
            /* its value matters (1): written apart unless edited */
            int64_t one = 1;
            hid_t sp = H5Screate(H5S_SCALAR);
            hid_t at = H5Acreate_by_name(f, "/", a->name, H5T_NATIVE_INT64, sp, H5P_DEFAULT,
                                         H5P_DEFAULT, H5P_DEFAULT);
            if (at >= 0) H5Awrite(at, H5T_NATIVE_INT64, &one), H5Aclose(at);
            H5Sclose(sp);
            continue;
        }
        fz_h5_attr(in, f, a->group, a->name, &s);
    }
}

static void write_file(fz_edits *ed, const file_plan *p, const char *path) {
    hid_t f = fz_h5_create(path);
    fz_in *fin = &ed->slot[S_FILE];
    for (int g = 0; g < 3; g++) /* /optim, /train, /model: groups, or not */
        if (fz_pick(fin, 8) != 1) {
            static const char *gp[] = {"/optim", "/train", "/model"};
            H5Gclose(H5Gcreate2(f, gp[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
        }
    write_attrs(ed, f, p->kind);
    fz_h5_spec cfg = {H5T_C_S1, 0, {0}, "[run]\nname = fuzz\n"};
    fz_h5_dataset(&ed->slot[S_CONFIG], f, "/config", &cfg);
    /* the tensors and their optimizer state: t0, t1 by default */
    const char *states[MT_CKPT_MAX_STATES];
    int ns = mt_ckpt_state_names(p->kind, states);
    for (int i = 0; i < p->ntensors; i++) {
        fz_in *in = &ed->slot[S_TENSOR + 3 * i];
        char name[128];
        if (fz_pick(in, 4) == 1)
            fz_str(in, name, 100);
        else
            snprintf(name, sizeof name, "t%d", i);
        fz_h5_spec s = {H5T_NATIVE_FLOAT, i < NT ? trank[i] : 1, {0}, NULL};
        for (int d = 0; d < s.rank; d++) s.dims[d] = i < NT ? tdims[i][d] : 2;
        char dp[300];
        snprintf(dp, sizeof dp, "/model/%s", name);
        fz_h5_dataset(in, f, dp, &s);
        for (int k = 0; k < ns && k < 2; k++) {
            snprintf(dp, sizeof dp, "/optim/%s/%s", states[k], name);
            fz_h5_dataset(&ed->slot[S_TENSOR + 3 * i + 1 + k], f, dp, &s);
        }
    }
    H5Fclose(f);
}

/* The .sha256 beside the file: right, missing, wrong, garbage or a folder. */
static void write_sidecar(fz_in *in, unsigned mode, const char *path, const char *side) {
    char sha[72], line[200];
    mt_err e = {0};
    switch (mode) {
    case 1:
        return;
    case 2:
        fz_write_file(side, "", 0);
        return;
    case 3:
        fz_str(in, line, sizeof line), fz_write_file(side, line, strlen(line));
        return;
    case 4:
        fz_write_file(side, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 64);
        return;
    case 5:
        mkdir(side, 0700);
        return;
    default:
        if (mt_sha256_file(path, sha, &e)) fail("cannot hash the file written", &e);
        snprintf(line, sizeof line, "%s  fuzz.h5\n", sha);
        fz_write_file(side, line, strlen(line));
    }
}

static void expect_ckpt_err(const mt_err *e, const char *what) {
    fz_check_err(e, what);
    /* also no "out of memory" (exit 1): a tensor's extents beyond what the
     * file stores are a damaged file (mt_h5_short) */
    if (e->code != MT_ERR_CKPT) fail("a checkpoint reader failed with another code than 4", e);
}

/* mt_ckpt_load of the expected model (its views), as a resume does. */
static void load(const char *path, const char *kind) {
    const char *states[MT_CKPT_MAX_STATES];
    int ns = mt_ckpt_state_names(kind, states);
    if (ns < 0) ns = 0;
    mt_tensor_view v[NT * (1 + MT_CKPT_MAX_STATES)];
    float buf[NT * (1 + MT_CKPT_MAX_STATES)][6];
    int nv = 0;
    for (int s = -1; s < ns; s++)
        for (int i = 0; i < NT; i++, nv++) {
            mt_tensor_view *t = &v[nv];
            memset(t, 0, sizeof *t);
            if (s < 0)
                snprintf(t->path, sizeof t->path, "/model/%s", tname[i]);
            else
                snprintf(t->path, sizeof t->path, "/optim/%s/%s", states[s], tname[i]);
            t->ndim = trank[i];
            for (int d = 0; d < t->ndim; d++) t->shape[d] = (int64_t)tdims[i][d];
            t->shard_dim = -1;
            t->shard_parts = 1;
            t->count = (int64_t)mt_view_global_numel(t);
            t->held = 1;
            t->data = buf[nv];
        }
    int64_t steps = 0;
    mt_err e = {0};
    /* the file's kind when it is one (else the mismatch path: weights only) */
    int rc = mt_ckpt_load(&comm, path, ns > 0 ? kind : "adamw", v, nv, &steps, &e);
    fz_report("mt_ckpt_load", &e);
    if (rc) expect_ckpt_err(&e, "mt_ckpt_load");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_edits ed;
    fz_edits_parse(&ed, data, size, NSLOTS);
    mt_h5_quiet();
    const char *path = fz_tmp("ckpt.h5"), *side = fz_tmp("ckpt.h5.sha256");
    file_plan p;
    plan_file(&ed.slot[S_FILE], &p);
    write_file(&ed, &p, path);
    write_sidecar(&ed.slot[S_FILE], p.sidecar, path, side);
    int also_load = p.also_load;
    mt_ckpt_info info;
    mt_err e = {0};
    int rc = mt_ckpt_verify(path, p.hash, &info, &e);
    fz_report("mt_ckpt_verify", &e);
    if (rc) {
        expect_ckpt_err(&e, "mt_ckpt_verify");
    } else {
        if (info.n_tensors < 1 || !info.config_text || !info.config_text[0])
            fail("a verified checkpoint lacks weights or config", NULL);
        const mt_ckpt_meta *m = &info.meta;
        if (m->step < 0 || m->epoch < 0 || m->samples_seen < 0 || m->optim_steps < 0 ||
            m->step_in_epoch < 0 || m->world < 1 || m->dp < 1 || m->tp < 1 || m->pp < 1)
            fail("a verified checkpoint holds a negative counter or an empty layout", NULL);
        for (int i = 0; i < info.n_tensors; i++)
            if (info.tensors[i].ndim < 1 || info.tensors[i].ndim > MT_VIEW_MAX_DIMS)
                fail("a verified tensor has a rank out of 1..4", NULL);
        also_load = 1; /* a resume loads what verified */
    }
    mt_ckpt_info_free(&info);
    if (also_load) load(path, p.kind);
    remove(path);
    remove(side);
    rmdir(side);
    return 0;
}
