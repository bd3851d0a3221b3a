/*
 * ckpt.c - `mpitrain ckpt inspect | verify` (see ckpt.h). Both run
 * the full check of mt_ckpt_verify (SHA-256 beside the file, HDF5
 * structure, format version, Fletcher32 of every tensor, optimizer state)
 * and also that the tensors are those the stored config's model defines.
 */
#include "cli/ckpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "base/error.h"
#include "core/model.h"
#include "core/params.h"
#include "core/resume.h"
#include "io/checkpoint.h"
#include "kernels/backends.h"
#include "core/models.h"

static void usage(FILE *out) {
    fprintf(out, "usage: mpitrain ckpt inspect FILE\n"
                 "       mpitrain ckpt verify FILE [FILE ...]\n"
                 "\n"
                 "inspect  prints the checkpoint's position (step, epoch, samples, learning\n"
                 "         rate), identity (run, code, time), last metrics, resolved config, and\n"
                 "         every tensor with its shape and the SHA-256 of its float32 data\n"
                 "verify   checks each file completely: SHA-256 against FILE.sha256 (when\n"
                 "         present), HDF5 structure, format and version, the Fletcher32\n"
                 "         checksum of every tensor, optimizer state, and that the tensors fit\n"
                 "         the model of the stored config; prints one line per file\n"
                 "\n"
                 "Exit status: 0 intact, 4 a file is corrupt or not a checkpoint, 2 usage.\n"
                 "The layout is docs/CHECKPOINT_FORMAT.md.\n");
}

/* Full check: the file itself, then its tensors against its own config's model. */
static int check(const char *path, int hash, mt_ckpt_info *info, mt_err *e) {
    if (mt_ckpt_verify(path, hash, info, e)) return e->code;
    mt_config cfg;
    if (mt_resume_config_of(path, info, &cfg, e)) return e->code;
    mt_err perr = {0};
    /* the whole model on one rank: every tensor at its full shape */
    const mt_model_ops *ops = mt_model_of(&cfg);
    double first, last;
    mt_split sp;
    mt_split_whole(&sp, ops->layers(&cfg, NULL, &first, &last));
    mt_params p;
    mt_params_init(&p);
    void *m = calloc(1, ops->size);
    FILE *devnull = fopen("/dev/null", "w");
    if (!m)
        mt_err_set(e, MT_ERR_INTERNAL, "out of memory");
    else if (ops->build(m, &cfg, NULL, &p, &sp, &perr))
        mt_err_set(e, MT_ERR_CKPT, "checkpoint %s: its model cannot be built: %s", path, perr.msg);
    else
        mt_resume_check(&cfg, &p, path, info, devnull ? devnull : stderr, e);
    if (devnull) fclose(devnull);
    if (m) ops->free(m, mt_backend_cpu());
    free(m);
    mt_params_free(&p);
    return e->code;
}

static void print_metric(const char *name, double v, int percent) {
    if (isnan(v))
        printf(" %s -", name);
    else if (percent)
        printf(" %s %.2f%%", name, 100.0 * v);
    else
        printf(" %s %.6g", name, v);
}

static int inspect(const char *path) {
    mt_ckpt_info in;
    mt_err e = {0};
    if (check(path, 1, &in, &e)) {
        mt_err_print(&e);
        mt_ckpt_info_free(&in);
        return e.code;
    }
    const mt_ckpt_meta *m = &in.meta;
    printf("checkpoint: %s\n", path);
    printf("format: %s version %d\n", MT_CKPT_FORMAT, in.format_version);
    if (in.has_sidecar)
        printf("sha256: %s (matches %s.sha256)\n", in.file_sha256, path);
    else
        printf("sha256: not checked (no %s.sha256 beside it)\n", path);
    printf("step: %lld | epoch %lld, step %lld of it | samples seen %lld | optimizer steps %lld\n",
           (long long)m->step, (long long)m->epoch, (long long)m->step_in_epoch,
           (long long)m->samples_seen, (long long)m->optim_steps);
    printf("learning rate: last %.6g, next %.6g\n", m->lr_last, m->lr_next);
    printf("last metrics:");
    print_metric("loss", m->loss, 0);
    print_metric("| train acc", m->train_acc, 1);
    print_metric("| grad norm", m->grad_norm, 0);
    print_metric("| test loss", m->test_loss, 0);
    print_metric("| test acc", m->test_acc, 1);
    printf("\n");
    printf("run: %s (name %s) | model %s | optimizer %s | seed %lld\n", m->run_id, m->run_name,
           m->model_kind, m->optim_kind, (long long)m->seed);
    printf(
        "written: %s by mpitrain %s (commit %.12s%s) | layout world %d = dp %d x tp %d x pp %d\n",
        m->created_utc, m->mpitrain_version, m->code_commit, m->code_dirty ? "-dirty" : "",
        m->world, m->dp, m->tp, m->pp);
    printf("data: sha256 %s\n", m->data_sha256);
    printf("resumed from: %s\n", m->resumed_from[0] ? m->resumed_from : "- (a fresh start)");
    printf("config:\n");
    for (const char *l = in.config_text; *l;) {
        size_t n = strcspn(l, "\n");
        printf("  %.*s\n", (int)n, l);
        l += n + (l[n] == '\n');
    }
    printf("tensors (%d, float32):\n", in.n_tensors);
    for (int i = 0; i < in.n_tensors; i++) {
        const mt_ckpt_tensor *t = &in.tensors[i];
        char shape[96] = "";
        size_t len = 0;
        for (int d = 0; d < t->ndim; d++)
            len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%lld", d ? ", " : "",
                                    (long long)t->shape[d]);
        printf("  %-28s [%s]%*s sha256 %s\n", t->path, shape, (int)(14 - strlen(shape)), "",
               t->sha256);
    }
    mt_ckpt_info_free(&in);
    return 0;
}

static int verify(int n, char **paths) {
    int worst = 0;
    for (int i = 0; i < n; i++) {
        mt_ckpt_info in;
        mt_err e = {0};
        if (check(paths[i], 0, &in, &e)) {
            printf("%s: CORRUPT: %s\n", paths[i], e.msg);
            worst = e.code;
        } else {
            printf("%s: ok (step %lld, %d tensors, %s)\n", paths[i], (long long)in.meta.step,
                   in.n_tensors,
                   in.has_sidecar ? "SHA-256 matches"
                                  : "no .sha256 beside it: HDF5 checksums only");
        }
        mt_ckpt_info_free(&in);
    }
    fflush(stdout);
    return worst;
}

int mt_cli_ckpt(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? MT_ERR_USAGE : 0;
    }
    const char *cmd = argv[1];
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1] == '-') {
            mt_err e = {0}; /* through mt_err: one line whatever argv holds */
            mt_err_set(&e, MT_ERR_USAGE, "unknown option '%s' for mpitrain ckpt %s", argv[i], cmd);
            mt_err_print(&e);
            return MT_ERR_USAGE;
        }
    if (strcmp(cmd, "inspect") == 0 && argc == 3) return inspect(argv[2]);
    if (strcmp(cmd, "verify") == 0 && argc >= 3) return verify(argc - 2, argv + 2);
    mt_err e = {0};
    if (strcmp(cmd, "inspect") == 0 || strcmp(cmd, "verify") == 0)
        mt_err_set(&e, MT_ERR_USAGE, "mpitrain ckpt %s needs %s", cmd,
                   cmd[0] == 'i' ? "exactly one FILE" : "at least one FILE");
    else
        mt_err_set(&e, MT_ERR_USAGE, "unknown ckpt command '%s'", cmd);
    mt_err_print(&e);
    usage(stderr);
    return MT_ERR_USAGE;
}
