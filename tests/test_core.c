/*
 * test_core.c - counter-based RNG, parameter init, LR schedules and the
 * optimizers against straightforward double-precision references; the
 * checkpoint folder's names and long paths; Slurm's time-left text and
 * the time budget's rule; MPITRAIN_FAULT's parser; the CPU matmul gives the
 * same bits at 1, 2 and 3 threads.
 */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/optim.h"
#include "core/params.h"
#include "base/rng.h"
#include "base/sumsq_exact.h"
#include "base/fault.h"
#include "core/split.h"
#include "core/time_budget.h"
#include "parallel/pipeline.h"
#include "parallel/threads.h"
#include "io/checkpoint.h"
#include "kernels/backend.h"
#include "test_util.h"

static void test_rng(void) {
    uint64_t s = mt_rng_stream("test");
    CHECK(mt_rng_u64(1, s, 5) == mt_rng_u64(1, s, 5), "same counter, different value");
    CHECK(mt_rng_u64(1, s, 5) != mt_rng_u64(2, s, 5), "seed ignored");
    CHECK(mt_rng_u64(1, s, 5) != mt_rng_u64(1, s, 6), "index ignored");
    CHECK(mt_rng_stream("a") != mt_rng_stream("b"), "stream names collide");
    /* uniform: mean 0.5, var 1/12, all in [0,1) */
    enum { N = 200000 };
    double m = 0, v = 0, nm = 0, nv = 0;
    int out = 0;
    for (int i = 0; i < N; i++) {
        double u = mt_rng_uniform(3, s, (uint64_t)i);
        out += u < 0 || u >= 1;
        m += u;
        v += (u - 0.5) * (u - 0.5);
        double z = mt_rng_normal(3, s, (uint64_t)i);
        nm += z;
        nv += z * z;
    }
    m /= N, v /= N, nm /= N, nv /= N;
    printf("uniform mean %.4f var %.5f; normal mean %.4f var %.4f\n", m, v, nm, nv);
    CHECK(out == 0, "%d uniforms outside [0,1)", out);
    CHECK(fabs(m - 0.5) < 0.005 && fabs(v - 1.0 / 12) < 0.002, "uniform moments off");
    CHECK(fabs(nm) < 0.01 && fabs(nv - 1.0) < 0.02, "normal moments off");
    /* permutation: valid, seeded, different per epoch */
    int64_t p[1000], q[1000];
    mt_rng_permutation(9, mt_rng_substream(s, 0), p, 1000);
    mt_rng_permutation(9, mt_rng_substream(s, 0), q, 1000);
    CHECK(memcmp(p, q, sizeof p) == 0, "permutation not reproducible");
    int seen[1000] = {0}, fixed = 0;
    for (int i = 0; i < 1000; i++) {
        if (p[i] >= 0 && p[i] < 1000) seen[p[i]]++;
        fixed += p[i] == i;
    }
    int dup = 0;
    for (int i = 0; i < 1000; i++) dup += seen[i] != 1;
    CHECK(dup == 0, "permutation is not a permutation (%d bad entries)", dup);
    CHECK(fixed < 10, "permutation leaves %d of 1000 in place", fixed);
    mt_rng_permutation(9, mt_rng_substream(s, 1), q, 1000);
    CHECK(memcmp(p, q, sizeof p) != 0, "epochs 0 and 1 share an order");
    /* below(): in range and roughly uniform over 3 values */
    int cnt[3] = {0};
    for (int i = 0; i < 30000; i++) cnt[mt_rng_below(1, s, (uint64_t)i, 3)]++;
    CHECK(abs(cnt[0] - 10000) < 400 && abs(cnt[1] - 10000) < 400, "below(3) counts %d %d %d",
          cnt[0], cnt[1], cnt[2]);
}

/* A shard of a tensor inits exactly as the slice of the whole tensor. */
static void test_init_layout_independent(void) {
    int64_t shape[2] = {6, 5};
    mt_params whole, shard;
    mt_err e = {0};
    mt_params_init(&whole);
    mt_params_add(&whole, "w", 2, shape, 1, MT_INIT_NORMAL, 0.02f);
    mt_params_alloc(&whole, &e);
    mt_params_init_values(&whole, 11);
    /* rows 2..3 along dim 0, and columns 1..3 along dim 1 */
    for (int dim = 0; dim < 2; dim++) {
        mt_params_init(&shard);
        mt_params_add(&shard, "w", 2, shape, 1, MT_INIT_NORMAL, 0.02f);
        mt_param *t = &shard.v[0];
        t->shard_dim = dim;
        t->shard_offset = dim == 0 ? 2 : 1;
        t->shard_len = dim == 0 ? 2 : 3;
        t->numel = dim == 0 ? 2 * 5 : 6 * 3;
        shard.numel = t->numel;
        mt_params_alloc(&shard, &e);
        mt_params_init_values(&shard, 11);
        int bad = 0;
        for (size_t j = 0; j < t->numel; j++) {
            size_t r = dim == 0 ? 2 + j / 5 : j / 3, c = dim == 0 ? j % 5 : 1 + j % 3;
            bad += shard.data[j] != whole.data[r * 5 + c];
        }
        CHECK(bad == 0, "shard along dim %d differs from the slice in %d elements", dim, bad);
        mt_params_free(&shard);
    }
    /* q|k|v style: dim 0 is 3 blocks of 2 rows, split over 2 ranks; rank 1 owns
     * rows 1, 3 and 5 */
    mt_params_init(&shard);
    mt_params_add(&shard, "w", 2, shape, 1, MT_INIT_NORMAL, 0.02f);
    mt_params_shard(&shard, 0, 0, 3, 1, 2);
    mt_params_alloc(&shard, &e);
    mt_params_init_values(&shard, 11);
    int bad = shard.v[0].numel != 15;
    for (size_t j = 0; j < 15 && !bad; j++)
        bad += shard.data[j] != whole.data[(1 + 2 * (j / 5)) * 5 + j % 5];
    CHECK(bad == 0, "a q|k|v shard differs from rows 1, 3, 5 of the whole tensor");
    mt_params_free(&shard);
    /* a tensor of another pipeline stage holds nothing */
    mt_params_init(&shard);
    mt_params_add(&shard, "a", 2, shape, 1, MT_INIT_NORMAL, 0.02f);
    mt_params_add(&shard, "b", 2, shape, 1, MT_INIT_NORMAL, 0.02f);
    mt_params_place(&shard, 0, 1, 0, 0);
    mt_params_alloc(&shard, &e);
    CHECK(shard.v[0].numel == 0 && shard.v[1].numel == 30 && mt_params_count(&shard) == 30 &&
              mt_params_global_count(&shard) == 60,
          "a tensor of another stage is not left out of this rank's buffers");
    mt_params_free(&shard);
    /* Different seeds or names give different values; same give same. */
    mt_params other;
    mt_params_init(&other);
    mt_params_add(&other, "w2", 2, shape, 1, MT_INIT_NORMAL, 0.02f);
    mt_params_alloc(&other, &e);
    mt_params_init_values(&other, 11);
    CHECK(memcmp(other.data, whole.data, 30 * sizeof(float)) != 0, "names share init values");
    mt_params_free(&other);
    mt_params_free(&whole);
}

static void test_lr(void) {
    mt_config c;
    mt_config_defaults(&c);
    c.optim.lr = 1.0;
    c.optim.min_lr = 0.1;
    c.train.steps = 11;
    c.optim.warmup_steps = 0;
    c.optim.schedule = MT_SCHED_COSINE;
    CHECK(fabs(mt_lr_at(&c, 0) - 1.0) < 1e-12, "cosine starts at %g", mt_lr_at(&c, 0));
    CHECK(fabs(mt_lr_at(&c, 5) - 0.55) < 1e-12, "cosine midpoint %g (want 0.55)", mt_lr_at(&c, 5));
    CHECK(fabs(mt_lr_at(&c, 10) - 0.1) < 1e-12, "cosine ends at %g", mt_lr_at(&c, 10));
    c.optim.warmup_steps = 4;
    CHECK(fabs(mt_lr_at(&c, 0) - 0.25) < 1e-12, "warmup step 0: %g", mt_lr_at(&c, 0));
    CHECK(fabs(mt_lr_at(&c, 3) - 1.0) < 1e-12, "warmup step 3: %g", mt_lr_at(&c, 3));
    CHECK(fabs(mt_lr_at(&c, 4) - 1.0) < 1e-12, "first step after warmup: %g", mt_lr_at(&c, 4));
    CHECK(fabs(mt_lr_at(&c, 10) - 0.1) < 1e-12, "cosine after warmup ends at %g", mt_lr_at(&c, 10));
    c.optim.schedule = MT_SCHED_CONSTANT;
    CHECK(mt_lr_at(&c, 1) == 0.5 && mt_lr_at(&c, 9) == 1.0, "constant with warmup");
}

/* Optimizer steps against a double-precision reference of PyTorch's formulas;
 * fused: AdamW in one adamw_multi pass (train.fused), clipping folded in. */
static void test_optim(int kind, int fused) {
    const mt_backend *be = mt_backend_cpu();
    mt_config c;
    mt_config_defaults(&c);
    c.optim.kind = kind;
    c.train.fused = fused;
    c.optim.weight_decay = 0.1;
    c.optim.lr = 0.01;
    mt_params p;
    mt_err e = {0};
    mt_params_init(&p);
    int64_t ws[2] = {3, 4}, bs[1] = {3};
    mt_params_add(&p, "w", 2, ws, 1, MT_INIT_UNIFORM, 1.0f);
    mt_params_add(&p, "b", 1, bs, 0, MT_INIT_UNIFORM, 1.0f);
    mt_params_alloc(&p, &e);
    mt_params_init_values(&p, 5);
    mt_optim o;
    mt_optim_init(&o, &c, &p, be, NULL, &e);
    CHECK(o.multi == (fused && kind == MT_OPTIM_ADAMW), "fused %d: multi-tensor AdamW %d", fused,
          o.multi);
    size_t n = p.numel;
    double *x = calloc(n, 8), *m = calloc(n, 8), *v = calloc(n, 8);
    for (size_t i = 0; i < n; i++) x[i] = p.data[i];
    for (int t = 1; t <= 5; t++) {
        for (size_t i = 0; i < n; i++) p.grad[i] = mt_rng_uniform(6, (uint64_t)t, i) - 0.5f;
        mt_optim_step(&o, &p, be, 0.01f);
        for (int k = 0; k < p.n; k++) {
            const mt_param *pt = &p.v[k];
            double wd = pt->decay ? 0.1 : 0.0;
            for (size_t j = pt->offset; j < pt->offset + pt->numel; j++) {
                double g = p.grad[j];
                if (kind == MT_OPTIM_ADAMW) {
                    x[j] *= 1 - 0.01 * wd;
                    m[j] = 0.9 * m[j] + 0.1 * g;
                    v[j] = 0.999 * v[j] + 0.001 * g * g;
                    double mh = m[j] / (1 - pow(0.9, t)), vh = v[j] / (1 - pow(0.999, t));
                    x[j] -= 0.01 * mh / (sqrt(vh) + 1e-8);
                } else {
                    g += wd * x[j];
                    m[j] = 0.9 * m[j] + g;
                    x[j] -= 0.01 * m[j];
                }
            }
        }
    }
    double worst = 0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs(x[i] - p.data[i]));
    printf("%s%s: 5 steps, max |float - double reference| = %.2e\n",
           kind == MT_OPTIM_ADAMW ? "adamw" : "sgd", o.multi ? " (one pass)" : "", worst);
    CHECK(worst < 1e-6, "optimizer differs from the reference by %.3e", worst);
    /* clipping scales the gradient to the max norm */
    memset(p.grad, 0, n * sizeof(float)); /* padding between tensors stays zero */
    for (int k = 0; k < p.n; k++)
        for (size_t j = 0; j < p.v[k].numel; j++) p.grad[p.v[k].offset + j] = 1.0f;
    double norm = sqrt(be->sumsq(p.grad, n)); /* one rank: what gradsync's norm is */
    mt_optim_clip(&o, &p, be, norm, 1.0);
    double after = sqrt(be->sumsq(p.grad, n));
    if (o.multi) { /* the gradient stays; the next step applies the factor */
        CHECK(fabs(norm - sqrt(15.0)) < 1e-6 && fabs(after - norm) == 0.0 &&
                  fabs(o.gscale * norm - 1.0) < 1e-6,
              "clip (one pass): norm %.6f, after %.6f (want unchanged), factor %.6f", norm, after,
              (double)o.gscale);
        float *x0 = mt_test_copy(p.data, n), *m0 = mt_test_copy(o.m, n), *v0 = mt_test_copy(o.v, n);
        mt_optim_step(&o, &p, be, 0.01f);
        double bc1 = 1 - pow(0.9, 6), bc2 = 1 - pow(0.999, 6), wrong = 0;
        for (int k = 0; k < p.n; k++)
            for (size_t j = p.v[k].offset; j < p.v[k].offset + p.v[k].numel; j++) {
                double g = 1.0 / sqrt(15.0), wd = p.v[k].decay ? 0.1 : 0.0;
                double mm = 0.9 * m0[j] + 0.1 * g, vv = 0.999 * v0[j] + 0.001 * g * g;
                double want = x0[j] * (1 - 0.01 * wd) - 0.01 * (mm / bc1) / (sqrt(vv / bc2) + 1e-8);
                wrong = fmax(wrong, fabs(want - p.data[j]));
            }
        CHECK(wrong < 1e-6 && o.gscale == 1.0f,
              "clip (one pass): the step after differs by %.3e from the clipped reference, "
              "factor after %g (want 1)",
              wrong, (double)o.gscale);
        free(x0), free(m0), free(v0);
    } else {
        CHECK(fabs(norm - sqrt(15.0)) < 1e-6 && fabs(after - 1.0) < 1e-6,
              "clip: norm %.6f (want %.6f), after %.6f (want 1)", norm, sqrt(15.0), after);
    }
    free(x), free(m), free(v);
    mt_optim_free(&o, be);
    mt_params_free(&p);
}

/* Checkpoint names: only the exact names the writer gives are its files. */
static void test_ckpt_names(void) {
    char name[64];
    mt_ckpt_name(50, name, sizeof name);
    CHECK(strcmp(name, "step_00000050.h5") == 0, "name of step 50: %s", name);
    CHECK(mt_ckpt_parse_name(name) == 50, "step_00000050.h5 not parsed");
    mt_ckpt_name(123456789012LL, name, sizeof name);
    CHECK(mt_ckpt_parse_name(name) == 123456789012LL, "long step not round-tripped: %s", name);
    static const char *foreign[] = {"step_50.h5",
                                    "step_000000050.h5",
                                    "step_00000050.h5.sha256",
                                    "step_00000050.h5x",
                                    "Step_00000050.h5",
                                    "step_0000005a.h5",
                                    "latest",
                                    "step_-0000050.h5",
                                    ""};
    for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++)
        CHECK(mt_ckpt_parse_name(foreign[i]) == -1, "'%s' taken for a checkpoint name", foreign[i]);
}

/* Makes dir (mkdir -p, absolute) out of components of at most 200 bytes
 * until it is `len` characters long; returns 0 on success. */
static int deep_dir(char *dir, size_t len) {
    while (strlen(dir) < len) {
        size_t n = strlen(dir), add = len - n - 1 > 200 ? 200 : len - n - 1;
        dir[n] = '/';
        memset(dir + n + 1, 'd', add);
        dir[n + 1 + add] = '\0';
        if (mkdir(dir, 0755) != 0) return -1;
    }
    return 0;
}

/* A checkpoint folder whose paths come close to PATH_MAX: paths up to 4095
 * characters work; a file name that would make one longer is an error,
 * never a truncated path (which would name another file). */
static void test_ckpt_long_paths(void) {
    char dir[MT_CKPT_PATH + 64], side[MT_CKPT_PATH + 64 + 32];
    snprintf(dir, sizeof dir, "%s/mt_long.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) return;
    char top[MT_CKPT_PATH + 64];
    snprintf(top, sizeof top, "%s", dir);
    const char *name = "step_00000001.h5";
    mt_err e = {0};
    /* dir/step_00000001.h5 is 4095 characters: it fits */
    int ok = deep_dir(dir, MT_CKPT_PATH - 2 - strlen(name)) == 0;
    CHECK(ok, "cannot make a folder of %zu characters", strlen(dir));
    int fd = ok ? open(dir, O_RDONLY | O_DIRECTORY) : -1;
    int64_t *steps = NULL;
    int n = 0;
    if (fd >= 0) close(openat(fd, name, O_WRONLY | O_CREAT, 0644));
    CHECK(fd >= 0 && mt_ckpt_list(dir, &steps, &n, &e) == 0 && n == 1 && steps[0] == 1,
          "a folder of %zu characters: %d checkpoints listed (%s)", strlen(dir), n, e.msg);
    free(steps);
    /* dir/latest fits, dir/step_00000001.h5.sha256 does not */
    CHECK(fd >= 0 && mt_ckpt_set_latest(dir, name, &e) == 0, "latest in a long folder: %s", e.msg);
    char got[64];
    mt_ckpt_latest(dir, got, sizeof got);
    CHECK(strcmp(got, name) == 0, "latest in a long folder names '%s'", got);
    snprintf(side, sizeof side, "%s/%s", dir, name);
    mt_ckpt_info info;
    e = (mt_err){0};
    CHECK(mt_ckpt_verify(side, 0, &info, &e) == MT_ERR_CKPT && strstr(e.msg, "too long"),
          "verify of a 4095-character path whose .sha256 name is longer: '%s'", e.msg);
    mt_ckpt_info_free(&info);
    /* a sub-folder of 10 characters: dir/SUB/latest is 4096 characters, one
     * more than a path may hold, and the files listed longer still. (With
     * "/x", latest itself fit and only its writer's temporary latest.tmp.PID
     * did not, and then only for a PID of 4 digits or more.) */
    const char *sub = "xxxxxxxxxx";
    char *deeper = dir + strlen(dir);
    snprintf(deeper, sizeof dir - strlen(dir), "/%s", sub);
    int fd2 = ok && mkdir(dir, 0755) == 0 ? open(dir, O_RDONLY | O_DIRECTORY) : -1;
    if (fd2 >= 0) close(openat(fd2, name, O_WRONLY | O_CREAT, 0644));
    e = (mt_err){0};
    CHECK(fd2 >= 0 && mt_ckpt_list(dir, &steps, &n, &e) == MT_ERR_CKPT &&
              strstr(e.msg, "too long") && n == 0,
          "listing a folder whose files' paths exceed PATH_MAX: code %d, %d listed, '%s'", e.code,
          n, e.msg);
    e = (mt_err){0};
    CHECK(fd2 >= 0 && mt_ckpt_set_latest(dir, name, &e) == MT_ERR_CKPT,
          "latest in a folder whose latest exceeds PATH_MAX: code %d", e.code);
    if (fd2 >= 0) unlinkat(fd2, name, 0), close(fd2);
    *deeper = '\0';
    if (fd >= 0) {
        unlinkat(fd, name, 0);
        unlinkat(fd, "latest", 0);
        unlinkat(fd, sub, AT_REMOVEDIR);
        close(fd);
    }
    while (strlen(dir) > strlen(top) && rmdir(dir) == 0) *strrchr(dir, '/') = '\0';
    rmdir(top);
}

/* Pipeline stages: balanced by cost, each with a layer, or as configured. */
static void test_split(void) {
    mt_config cfg;
    mt_config_defaults(&cfg);
    mt_comm c;
    memset(&c, 0, sizeof c);
    c.tp_size = 1;
    c.pp_size = 2;
    mt_split s;
    mt_err e = {0};
    double eq[4] = {1, 1, 1, 1};
    CHECK(mt_split_make(&s, &c, &cfg, 4, eq, 0, 0, &e) == 0 && s.first[1] == 2 && s.first[2] == 4,
          "4 equal layers on 2 stages: cut at %d", s.first[1]);
    /* a heavy first stage (embeddings) gets fewer layers */
    CHECK(mt_split_make(&s, &c, &cfg, 4, eq, 2.0, 0, &e) == 0 && s.first[1] == 1,
          "embeddings worth 2 layers: cut at %d, not 1", s.first[1]);
    c.pp_size = 4;
    double mlp[4] = {100, 1, 1, 1};
    CHECK(mt_split_make(&s, &c, &cfg, 4, mlp, 0, 0, &e) == 0 && s.first[1] == 1 &&
              s.first[2] == 2 && s.first[3] == 3,
          "every stage gets at least one layer");
    c.pp_size = 5;
    CHECK(mt_split_make(&s, &c, &cfg, 4, mlp, 0, 0, &e) == MT_ERR_USAGE &&
              strstr(e.msg, "parallel.pp"),
          "more stages than layers is an error naming parallel.pp: %s", e.msg);
    memset(&e, 0, sizeof e);
    c.pp_size = 2;
    cfg.parallel.stage_layers.n = 2;
    cfg.parallel.stage_layers.v[0] = 3;
    cfg.parallel.stage_layers.v[1] = 1;
    CHECK(mt_split_make(&s, &c, &cfg, 4, eq, 0, 0, &e) == 0 && s.first[1] == 3 &&
              mt_split_stage_of(&s, 2) == 0 && mt_split_stage_of(&s, 3) == 1,
          "parallel.stage_layers = 3,1 is followed");
    /* activation slots: GPipe holds every micro-batch, 1F1B at most pp - stage */
    CHECK(mt_pipe_slots(MT_PIPE_SCHED_GPIPE, 0, 4, 8) == 8 &&
              mt_pipe_slots(MT_PIPE_SCHED_1F1B, 0, 4, 8) == 4 &&
              mt_pipe_slots(MT_PIPE_SCHED_1F1B, 3, 4, 8) == 1 &&
              mt_pipe_slots(MT_PIPE_SCHED_1F1B, 0, 4, 2) == 2,
          "pipeline slot counts");
}

static void test_time_budget(void) {
    static const struct {
        const char *text;
        int rc;
        double s;
    } cases[] = {{"1-02:03:04\n", 0, 93784},
                 {"02:03:04", 0, 7384},
                 {"59:59", 0, 3599},
                 {"45", 0, 45},
                 {"0:00", 0, 0},
                 {" 9:05 \n", 0, 545},
                 {"UNLIMITED\n", 1, 0},
                 {"NOT_SET", 1, 0},
                 {"", -1, 0},
                 {"1-02:03", -1, 0},
                 {"1:2:3:4", -1, 0},
                 {"INVALID", -1, 0},
                 {"-5", -1, 0},
                 {"12:xx", -1, 0},
                 {"3-", -1, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double s = -1;
        int rc = mt_slurm_time_left(cases[i].text, &s);
        CHECK(rc == cases[i].rc && (rc != 0 || s == cases[i].s),
              "squeue time left '%s': rc %d, %g s; want rc %d, %g s", cases[i].text, rc, s,
              cases[i].rc, cases[i].s);
    }
    CHECK(!mt_time_is_up(100, 10, 20, 30) && mt_time_is_up(59.9, 10, 20, 30),
          "time budget: 100 s left covers a 10 s step + a 20 s checkpoint + 30 s margin; 59.9 does "
          "not");
}

/* scale by 0 clears a buffer even where a NaN step left NaN or Inf, and
 * keeps x * 0 (its sign of zero) for finite x, as before */
static void test_scale_zero(void) {
    const mt_backend *be = mt_backend_cpu();
    float x[5] = {NAN, INFINITY, -INFINITY, -2.5f, 3.0f};
    be->scale(x, 0.0f, 5);
    CHECK(x[0] == 0.0f && x[1] == 0.0f && x[2] == 0.0f && x[3] == 0.0f && x[4] == 0.0f &&
              signbit(x[3]) && !signbit(x[4]),
          "scale by 0: %g %g %g %g %g", x[0], x[1], x[2], x[3], x[4]);
}

/* The CPU matmul at 2 and 3 threads (set as the trainer sets run.threads)
 * equals 1 thread bitwise: the MLP's and the GPT bench's shapes, odd sizes,
 * every transpose pair, padded leads, beta 0 and 1, fp32 and bf16. OpenBLAS
 * 0.3.21's own threading fails this at the MLP's shapes. */
static void test_matmul_threads(void) {
    static const int shapes[][3] = {
        /* M, N, K */
        {64, 256, 784},
        {256, 784, 64},
        {64, 10, 256},
        {1024, 768, 256},
        {97, 133, 301},
        {333, 517, 129},
        {5, 3, 1000},
        {1, 700, 700},
        /* tiles: 2 x 1 with odd rows, 1 x 2 odd columns, 2 x 2 (last 50 x 70) */
        {600, 1100, 130},
        {300, 1500, 200},
        {130, 150, 500}};
    const mt_backend *be = mt_backend_cpu();
    long differ = 0, cases = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int v = 0; v < 16; v++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            int ta = v & 1, tb = v >> 1 & 1, bf = v >> 3 & 1;
            float beta = (float)(v >> 2 & 1);
            if (bf && M * N > 100000) continue; /* bf16: the small shapes suffice */
            int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
            int lda = ac + 1, ldb = bc + 3, ldc = N + 2;
            size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)M * ldc;
            float *A = malloc(na * sizeof *A), *B = malloc(nb * sizeof *B);
            float *C0 = malloc(nc * sizeof *C0), *C[3];
            if (!A || !B || !C0) abort();
            mt_test_fill(A, na, 11 + s, -1, 1);
            mt_test_fill(B, nb, 12 + s, -1, 1);
            mt_test_fill(C0, nc, 13 + s, -1, 1);
            be->set_precision(bf);
            for (int t = 0; t < 3; t++) {
                C[t] = mt_test_copy(C0, nc);
                mt_threads_apply(t + 1);
                be->matmul(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, beta, C[t], ldc);
            }
            mt_threads_apply(1);
            be->set_precision(0);
            /* the tiles cover C exactly: against a double reference (every
             * stride-th row: ~2e7 multiply-adds), padding untouched */
            int stride = (int)((long)M * N * K / 20000000) + 1;
            double err = 0, ref2 = 0;
            long pad = 0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < ldc; j++) {
                    size_t c = (size_t)i * ldc + j;
                    if (j >= N) {
                        pad += memcmp(&C[0][c], &C0[c], sizeof(float)) != 0;
                        continue;
                    }
                    if (bf || i % stride) continue;
                    double r = beta * C0[c];
                    for (int k = 0; k < K; k++)
                        r += 0.5 * (double)(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]) *
                             (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                    err += (C[0][c] - r) * (C[0][c] - r);
                    ref2 += r * r;
                }
            CHECK(pad == 0 && sqrt(err) <= 1e-5 * sqrt(ref2),
                  "matmul %dx%dx%d ta%d tb%d beta %g: normalized error %.2e vs double, %ld padding "
                  "element(s) written",
                  M, N, K, ta, tb, beta, sqrt(err / (ref2 > 0 ? ref2 : 1)), pad);
            for (int t = 1; t < 3; t++) {
                int same = memcmp(C[0], C[t], nc * sizeof(float)) == 0;
                differ += !same;
                CHECK(same,
                      "matmul %dx%dx%d ta%d tb%d beta %g %s: %d threads differ from 1 (normalized "
                      "%.2e)",
                      M, N, K, ta, tb, beta, bf ? "bf16" : "fp32", t + 1,
                      mt_test_nerr(C[0], C[t], nc));
            }
            cases++;
            free(A), free(B), free(C0), free(C[0]), free(C[1]), free(C[2]);
        }
    printf("  matmul at 2 and 3 threads vs 1: %ld of %ld products differ\n", differ, 2 * cases);
}

static void test_fault_spec(void) {
    static const char *good[] = {"",
                                 "kill:rank=1:step=3",
                                 "stall:rank=0:step=2:seconds=5",
                                 "stall:rank=0:step=2:seconds=1.5",
                                 "stall:rank=0:step=2:seconds=12:during=checkpoint",
                                 "nan:step=4",
                                 "nan:step=4:rank=2",
                                 "signal:rank=1:step=5:sig=TERM:during=checkpoint",
                                 "kill:rank=0:step=1:during=checkpoint",
                                 "kill:rank=0:step=1:during=checkpoint_data",
                                 "kill:rank=1:step=3:during=gradsync",
                                 "stall:rank=1:step=3:seconds=1:during=backward",
                                 "signal:rank=0:step=1:sig=SIGUSR1,nan:step=2"};
    static const char *bad[] = {"boom",
                                "kill:step=3",
                                "kill:rank=1",
                                "nan:step=0",
                                "nan:step=x",
                                "stall:rank=0:step=2:seconds=",
                                "stall:rank=0:step=2:seconds=-1",
                                "signal:rank=0:step=1",
                                "signal:rank=0:step=1:sig=HUP",
                                "nan:step=1:sig=TERM",
                                "kill:rank=-1:step=2",
                                "signal:rank=0:step=1:sig=INT:during=eval",
                                "stall:rank=0:step=1:during=eval",
                                "kill:rank=0:step=1:during=eval",
                                "nan:step=1:during=checkpoint",
                                "nan:step=1:during=gradsync",
                                "kill:rank=0:step=1:during=Gradsync",
                                "nan:step=1,",
                                "kill:rank=1:step=2:extra"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        mt_err e = {0};
        CHECK(mt_fault_init(good[i], 1, &e) == MT_OK, "MPITRAIN_FAULT='%s' refused: %s", good[i],
              e.msg);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mt_err e = {0};
        CHECK(mt_fault_init(bad[i], 1, &e) == MT_ERR_USAGE && strstr(e.msg, "MPITRAIN_FAULT"),
              "MPITRAIN_FAULT='%s' accepted (or not named in the error: '%s')", bad[i], e.msg);
    }
    mt_err e = {0};
    mt_fault_init("nan:step=4:rank=2,nan:step=6", 1, &e);
    CHECK(!mt_fault_nan(4) && mt_fault_nan(6) && !mt_fault_nan(5),
          "nan faults fire on the wrong rank or step");
    mt_fault_init("", 1, &e);
}

/* base/sumsq_exact: the exact value (against long double on values whose
 * squares and sums it holds exactly), whatever the order and split of the
 * elements; subnormals, the largest float, infinities, NaN. */
static void test_sumsq_exact(void) {
    enum { N = 5000 };
    static float x[N], y[N];
    long double ref = 0.0L;
    for (int i = 0; i < N; i++) {
        /* 11-bit mantissas times powers of two in [2^-20, 2^-10]: squares
         * and their sums fit long double's 64 bits exactly */
        x[i] = (float)ldexp((double)(mt_rng_below(3, 7, (uint64_t)i, 2048) + 1),
                            -20 - (int)mt_rng_below(3, 8, (uint64_t)i, 10));
        ref += (long double)x[i] * x[i];
    }
    for (int i = 0; i < N; i++) y[i] = x[(i * 7919) % N]; /* a permutation (7919 prime) */
    mt_sumsq a, b;
    mt_sumsq_zero(&a);
    mt_sumsq_add(&a, x, N);
    mt_sumsq_zero(&b);
    mt_sumsq_add(&b, y + 1234, N - 1234);
    mt_sumsq_add(&b, y, 1234);
    double va = mt_sumsq_value(&a), vb = mt_sumsq_value(&b);
    CHECK(va == (double)ref && vb == va,
          "exact sum of squares %.17g, permuted and split %.17g, "
          "long double %.17Lg",
          va, vb, ref);
    /* word by word sums of normalised accumulators are the sum (two ranks) */
    mt_sumsq c, d;
    mt_sumsq_zero(&c);
    mt_sumsq_add(&c, x, N / 2);
    mt_sumsq_zero(&d);
    mt_sumsq_add(&d, x + N / 2, N - N / 2);
    uint64_t *cw = (uint64_t *)&c, *dw = (uint64_t *)&d;
    for (int k = 0; k < MT_SUMSQ_WORDS; k++) cw[k] += dw[k];
    CHECK(mt_sumsq_value(&c) == va, "accumulators summed word by word: %.17g, want %.17g",
          mt_sumsq_value(&c), va);
    float odd[3] = {1e-45f, 3.4028235e38f, -2.0f}; /* subnormal, the largest, negative */
    mt_sumsq_zero(&a);
    mt_sumsq_add(&a, odd, 3);
    double want = (double)odd[1] * odd[1] + 4.0; /* 1e-90 is far below its last bit */
    CHECK(mt_sumsq_value(&a) == want, "odd values: %.17g, want %.17g", mt_sumsq_value(&a), want);
    mt_sumsq_zero(&a);
    mt_sumsq_add(&a, odd, 1);
    CHECK(mt_sumsq_value(&a) == (double)odd[0] * odd[0], "a subnormal's square: %.17g",
          mt_sumsq_value(&a));
    float bad[2] = {INFINITY, 1.0f};
    mt_sumsq_zero(&a);
    mt_sumsq_add(&a, bad, 2);
    CHECK(isinf(mt_sumsq_value(&a)), "infinity: %g", mt_sumsq_value(&a));
    bad[1] = NAN;
    mt_sumsq_add(&a, bad + 1, 1);
    CHECK(isnan(mt_sumsq_value(&a)), "NaN: %g", mt_sumsq_value(&a));
}

int main(void) {
    test_sumsq_exact();
    test_time_budget();
    test_scale_zero();
    test_matmul_threads();
    test_fault_spec();
    test_split();
    test_rng();
    test_ckpt_names();
    test_ckpt_long_paths();
    test_init_layout_independent();
    test_lr();
    for (int fused = 0; fused <= 1; fused++) {
        test_optim(MT_OPTIM_ADAMW, fused);
        test_optim(MT_OPTIM_SGD, fused);
    }
    return mt_test_finish("core");
}
