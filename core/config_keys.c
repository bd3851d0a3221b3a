/*
 * config_keys.c - the one table of configuration keys (DESIGN decision 5).
 * Every key mpitrain reads is here: section, key, type, default, range,
 * and the help text that --help-config and docs/CONFIG.md show.
 */
#include <stddef.h>

#include "config.h"

#define NOMAX 1e300
/* Upper bounds of keys with no natural one, so that every product the
 * trainer forms from them fits its 64-bit integers and clocks: a number of
 * steps (10^12), a count of samples, checkpoints or windows (10^9), and a
 * number of seconds (10^9, about 31 years). Larger values are "too large". */
#define STEPMAX  1e12
#define COUNTMAX 1e9
#define SECMAX   MT_CFG_SECONDS_MAX
#define OFF(f)   offsetof(mt_config, f)

/* clang-format off */
const mt_cfg_key mt_cfg_keys[] = {
    /* section, key, type, default, min, max, min_excl, max_excl, choices, offset, help */
    {"run", "name", MT_CFG_STR, "mnist_mlp", 0, 0, 0, 0, NULL, OFF(run.name),
     "run name; each run's files go to a new folder run.dir/run.name/NNNN (letters, digits, _ - .)"},
    {"run", "dir", MT_CFG_STR, "runs", 0, 0, 0, 0, NULL, OFF(run.dir),
     "folder under which run folders are made"},
    {"run", "seed", MT_CFG_INT, "1234", 0, 9.2e18, 0, 0, NULL, OFF(run.seed),
     "seed of every random number (init, sample order)"},
    {"run", "log_every", MT_CFG_INT, "50", 1, STEPMAX, 0, 0, NULL, OFF(run.log_every),
     "steps between progress lines and metrics records"},
    {"run", "threads", MT_CFG_INT, "0", 0, 1024, 0, 0, NULL, OFF(run.threads),
     "compute threads per rank; 0 = OMP_NUM_THREADS if set, else the node's cores / ranks on the node"},

    {"data", "path", MT_CFG_STR, "data/mnist.h5", 0, 0, 0, 0, NULL, OFF(data.path),
     "HDF5 file holding the dataset"},
    {"data", "train_images", MT_CFG_STR, "/train/images", 0, 0, 0, 0, NULL, OFF(data.train_images),
     "dataset of training inputs, float32 [N, inputs]"},
    {"data", "train_labels", MT_CFG_STR, "/train/labels", 0, 0, 0, 0, NULL, OFF(data.train_labels),
     "dataset of training labels, uint8 [N], each < classes"},
    {"data", "test_images", MT_CFG_STR, "/test/images", 0, 0, 0, 0, NULL, OFF(data.test_images),
     "dataset of held-out inputs, float32 [M, inputs]"},
    {"data", "test_labels", MT_CFG_STR, "/test/labels", 0, 0, 0, 0, NULL, OFF(data.test_labels),
     "dataset of held-out labels, uint8 [M]"},

    {"data", "train_tokens", MT_CFG_STR, "", 0, 0, 0, 0, NULL, OFF(data.train_tokens),
     "gpt: training token shards (llm.c format), a file or a glob such as data/x/x_train_*.bin"},
    {"data", "val_tokens", MT_CFG_STR, "", 0, 0, 0, 0, NULL, OFF(data.val_tokens),
     "gpt: validation token shards, a file or a glob"},
    {"data", "tokenizer", MT_CFG_ENUM, "ids", 0, 0, 0, 0, "ids|bytes|gpt2", OFF(data.tokenizer),
     "gpt: what the token ids mean, recorded with the model for `generate`: ids (not said: "
     "prompts and output as ids, except that a vocabulary of 256 reads as bytes), bytes (`data "
     "tokenize --bytes`; model.vocab_size = 256), gpt2 (GPT-2's BPE: `data tokenize --gpt2` or "
     "llm.c's shards; model.vocab_size = 50257)"},

    {"model", "kind", MT_CFG_ENUM, "mlp", 0, 0, 0, 0, "mlp|gpt", OFF(model.kind),
     "model architecture: mlp (classifier on data.path) or gpt (GPT-2 language model on "
     "data.train_tokens)"},
    {"model", "layers", MT_CFG_INTLIST, "784,256,128,10", 1, 1048576, 0, 0, NULL, OFF(model.layers),
     "MLP widths: inputs, hidden layers..., classes"},
    {"model", "activation", MT_CFG_ENUM, "relu", 0, 0, 0, 0, "relu|gelu", OFF(model.activation),
     "activation after each hidden layer (gelu: tanh approximation)"},

    {"model", "n_layer", MT_CFG_INT, "4", 1, 1024, 0, 0, NULL, OFF(model.n_layer),
     "gpt: transformer blocks"},
    {"model", "n_head", MT_CFG_INT, "4", 1, 1024, 0, 0, NULL, OFF(model.n_head),
     "gpt: attention heads per block (n_embd must be divisible by it)"},
    {"model", "n_embd", MT_CFG_INT, "128", 1, 65536, 0, 0, NULL, OFF(model.n_embd),
     "gpt: channels of the residual stream"},
    {"model", "block_size", MT_CFG_INT, "128", 1, 65536, 0, 0, NULL, OFF(model.block_size),
     "gpt: longest sequence (rows of the position embedding)"},
    {"model", "vocab_size", MT_CFG_INT, "256", 2, 65536, 0, 0, NULL, OFF(model.vocab_size),
     "gpt: token ids are below this (256 for byte-level shards, 50257 for GPT-2 BPE)"},
    {"model", "vocab_pad", MT_CFG_INT, "0", 0, 4096, 0, 0, NULL, OFF(model.vocab_pad),
     "gpt: the vocabulary in memory (wte's rows, the logits' columns) is padded to a multiple of "
     "this, the padding zero and outside the loss; files hold vocab_size rows whatever it is, "
     "so it may change on resume. 0 = auto: the backend's choice (cuda 128, cpu 1 = none)"},
    {"model", "dropout", MT_CFG_FLOAT, "0", 0, 1, 0, 1, NULL, OFF(model.dropout),
     "gpt: dropout after the embeddings and on each residual branch while training"},

    {"optim", "kind", MT_CFG_ENUM, "adamw", 0, 0, 0, 0, "adamw|sgd", OFF(optim.kind),
     "optimizer: AdamW (decoupled weight decay) or SGD with momentum"},
    {"optim", "lr", MT_CFG_FLOAT, "0.001", 0, 1000, 1, 0, NULL, OFF(optim.lr),
     "peak learning rate"},
    {"optim", "momentum", MT_CFG_FLOAT, "0.9", 0, 1, 0, 1, NULL, OFF(optim.momentum),
     "SGD momentum (0 = plain SGD)"},
    {"optim", "beta1", MT_CFG_FLOAT, "0.9", 0, 1, 0, 1, NULL, OFF(optim.beta1),
     "AdamW first-moment decay"},
    {"optim", "beta2", MT_CFG_FLOAT, "0.999", 0, 1, 0, 1, NULL, OFF(optim.beta2),
     "AdamW second-moment decay"},
    {"optim", "eps", MT_CFG_FLOAT, "1e-08", 0, 1, 1, 0, NULL, OFF(optim.eps),
     "AdamW denominator epsilon"},
    {"optim", "weight_decay", MT_CFG_FLOAT, "0", 0, NOMAX, 0, 0, NULL, OFF(optim.weight_decay),
     "weight decay of weight matrices (not biases); decoupled for AdamW, L2 for SGD"},
    {"optim", "grad_clip", MT_CFG_FLOAT, "0", 0, NOMAX, 0, 0, NULL, OFF(optim.grad_clip),
     "clip the global L2 norm of the gradient to this; 0 = off"},
    {"optim", "schedule", MT_CFG_ENUM, "constant", 0, 0, 0, 0, "constant|cosine",
     OFF(optim.schedule),
     "learning-rate schedule after warmup: constant, or cosine decay to min_lr at the last step"},
    {"optim", "warmup_steps", MT_CFG_INT, "0", 0, STEPMAX, 0, 0, NULL, OFF(optim.warmup_steps),
     "steps of linear warmup from lr/warmup_steps to lr"},
    {"optim", "min_lr", MT_CFG_FLOAT, "0", 0, NOMAX, 0, 0, NULL, OFF(optim.min_lr),
     "final learning rate of the cosine schedule"},

    {"train", "steps", MT_CFG_INT, "1000", 1, STEPMAX, 0, 0, NULL, OFF(train.steps),
     "optimizer steps to train for (one step = one global batch)"},
    {"train", "global_batch", MT_CFG_INT, "64", 1, COUNTMAX, 0, 0, NULL, OFF(train.global_batch),
     "samples per step over all ranks; must be divisible by the number of ranks"},
    {"train", "eval_every", MT_CFG_INT, "0", 0, STEPMAX, 0, 0, NULL, OFF(train.eval_every),
     "steps between evaluations on the held-out split; 0 = only at the end"},
    {"train", "shuffle", MT_CFG_BOOL, "true", 0, 0, 0, 0, NULL, OFF(train.shuffle),
     "visit training samples in a new seeded order each epoch (false: file order)"},
    {"train", "exit_after_steps", MT_CFG_INT, "0", 0, STEPMAX, 0, 0, NULL, OFF(train.exit_after_steps),
     "stop after this many steps in this invocation, writing a checkpoint first (for time-sliced "
     "jobs; resume with checkpoint.resume=auto); 0 = off"},

    {"train", "time_limit", MT_CFG_STR, "0", 0, 0, 0, 0, NULL, OFF(train.time_limit),
     "wall-time budget of this invocation: seconds, or auto (the Slurm job's end, from squeue); "
     "the run stops with a checkpoint and exit 75 while one more step, a checkpoint write and "
     "train.time_margin still fit; 0 = off"},
    {"train", "time_margin", MT_CFG_FLOAT, "30", 0, SECMAX, 0, 0, NULL, OFF(train.time_margin),
     "seconds train.time_limit keeps free after the last checkpoint is written"},
    {"train", "nan_policy", MT_CFG_ENUM, "stop", 0, 0, 0, 0, "stop|skip", OFF(train.nan_policy),
     "a step whose loss or gradient norm is NaN or infinite: stop the run (exit 6), or skip it "
     "(no update; the batch is used up; optimizer and schedule do not advance)"},
    {"train", "nan_max_skips", MT_CFG_INT, "10", 0, COUNTMAX, 0, 0, NULL, OFF(train.nan_max_skips),
     "train.nan_policy = skip: more consecutive skipped steps than this stop the run (exit 6)"},

    {"train", "seq_len", MT_CFG_INT, "0", 0, 65536, 0, 0, NULL, OFF(train.seq_len),
     "gpt: tokens per training sequence; 0 = model.block_size"},
    {"train", "eval_windows", MT_CFG_INT, "0", 0, COUNTMAX, 0, 0, NULL, OFF(train.eval_windows),
     "gpt: validation sequences per evaluation (the first ones); 0 = all"},
    {"train", "device", MT_CFG_ENUM, "cpu", 0, 0, 0, 0, "cpu|cuda|auto", OFF(train.device),
     "where each rank computes: cpu, cuda (one GPU per rank: the node-local rank modulo the "
     "visible GPUs; an error when there is none) or auto (cuda when a GPU is usable, else cpu, "
     "saying so)"},
    {"train", "precision", MT_CFG_ENUM, "fp32", 0, 0, 0, 0, "fp32|bf16", OFF(train.precision),
     "matmul precision: fp32, or bf16 (operands rounded to bfloat16, fp32 accumulation; weights, "
     "optimizer state and checkpoints stay fp32; on the CPU emulated, slowly, or OpenBLAS's "
     "sbgemm where the CPU has AVX512-BF16: MPITRAIN_CPU_SBGEMM in docs/CUDA.md)"},
    {"train", "fused", MT_CFG_BOOL, "true", 0, 0, 0, 0, NULL, OFF(train.fused),
     "fused kernels where the backend has them: flash-style attention (no T x T matrix), "
     "residual + LayerNorm, bias + GELU, one-pass cross-entropy (no probability matrix), one "
     "AdamW pass over all tensors; false = the separate ops (same math, other rounding order)"},

    {"parallel", "tp", MT_CFG_INT, "1", 1, 1024, 0, 0, NULL, OFF(parallel.tp),
     "tensor-parallel ranks: each layer's matrices split Megatron-style (MLP: pairs of column- "
     "then row-parallel layers; gpt: attention by heads, the MLP by its 4 x n_embd width)"},
    {"parallel", "pp", MT_CFG_INT, "1", 1, 1024, 0, 0, NULL, OFF(parallel.pp),
     "pipeline stages: consecutive layers on different ranks; data-parallel replicas = ranks / "
     "(tp x pp)"},
    {"parallel", "microbatches", MT_CFG_INT, "1", 1, 65536, 0, 0, NULL,
     OFF(parallel.microbatches),
     "micro-batches each replica splits its share of a step into (gradients accumulate over "
     "them; with pp > 1 they fill the pipeline)"},
    {"parallel", "schedule", MT_CFG_ENUM, "1f1b", 0, 0, 0, 0, "1f1b|gpipe", OFF(parallel.schedule),
     "pipeline schedule: 1f1b (one forward, one backward: at most pp micro-batches of activations "
     "held) or gpipe (all forwards, then all backwards)"},
    {"parallel", "stage_layers", MT_CFG_INTLIST, "0", 0, 1048576, 0, 0, NULL,
     OFF(parallel.stage_layers),
     "layers of each pipeline stage, first to last (pp numbers summing to the MLP's layers or "
     "model.n_layer); 0 = balanced by parameter count"},

    {"parallel", "deterministic", MT_CFG_BOOL, "false", 0, 0, 0, 0, NULL,
     OFF(parallel.deterministic),
     "bitwise the same parameters at any data-parallel size (fixed micro-batch size, dp x "
     "microbatches constant): each micro-batch's gradient in its own buffer, summed in one "
     "pairwise tree keyed by the global micro-batch index, across ranks by recursive halving "
     "and doubling; needs dp and microbatches powers of two"},

    {"parallel", "bucket_mb", MT_CFG_FLOAT, "25", 0, 65536, 1, 0, NULL, OFF(parallel.bucket_mb),
     "megabytes of gradient per data-parallel reduction bucket (buckets follow the backward "
     "order: the last layers' gradients first); > 0"},
    {"parallel", "overlap", MT_CFG_BOOL, "true", 0, 0, 0, 0, NULL, OFF(parallel.overlap),
     "start each bucket's non-blocking reduction as soon as the last micro-batch's backward has "
     "made its gradients final, driven between layers while the backward goes on (docs/PARALLEL.md, "
     "\"Buckets and overlap\"); false = every bucket after the backward"},
    {"parallel", "zero", MT_CFG_INT, "0", 0, 1, 0, 0, NULL, OFF(parallel.zero),
     "ZeRO stage: 0 = every replica holds the whole optimizer state; 1 = each data-parallel rank "
     "holds and updates only its shard of it (gradients reduce-scattered, parameters all-gathered; "
     "optimizer memory per rank / dp)"},

    {"parallel", "timeout", MT_CFG_FLOAT, "300", 0, SECMAX, 0, 0, NULL, OFF(parallel.timeout),
     "seconds a communication of the training loop (from its second step) may wait before the "
     "job ends with exit 5, naming the rank behind (docs/PARALLEL.md, \"Watchdog\"); set-up, "
     "checkpoint writes and the end have no deadline; 0 = off"},

    {"checkpoint", "dir", MT_CFG_STR, "", 0, 0, 0, 0, NULL, OFF(checkpoint.dir),
     "folder of checkpoint files step_NNNNNNNN.h5; empty = <run folder>/checkpoints"},
    {"checkpoint", "every_steps", MT_CFG_INT, "0", 0, STEPMAX, 0, 0, NULL, OFF(checkpoint.every_steps),
     "write a checkpoint every N steps; 0 = off"},
    {"checkpoint", "every_seconds", MT_CFG_FLOAT, "0", 0, SECMAX, 0, 0, NULL,
     OFF(checkpoint.every_seconds),
     "write a checkpoint when this much wall-clock time has passed since the last one (rank 0 "
     "decides); 0 = off"},
    {"checkpoint", "timeout", MT_CFG_FLOAT, "0", 0, SECMAX, 0, 0, NULL, OFF(checkpoint.timeout),
     "seconds a checkpoint write may take before every rank gives up with exit 4 (a dead peer or "
     "a stalled file system); 0 = auto: 300 s + 1 s per 20 MB"},
    {"checkpoint", "keep_last", MT_CFG_INT, "3", 0, COUNTMAX, 0, 0, NULL, OFF(checkpoint.keep_last),
     "keep the N newest checkpoints in checkpoint.dir, delete older ones; 0 = keep all"},
    {"checkpoint", "keep_every", MT_CFG_INT, "0", 0, STEPMAX, 0, 0, NULL, OFF(checkpoint.keep_every),
     "never delete checkpoints whose step is a multiple of this; 0 = none"},
    {"checkpoint", "save_initial", MT_CFG_BOOL, "false", 0, 0, 0, 0, NULL,
     OFF(checkpoint.save_initial),
     "write a checkpoint of step 0 (the initial parameters) before the first step of a fresh run"},
    {"checkpoint", "save_final", MT_CFG_BOOL, "true", 0, 0, 0, 0, NULL, OFF(checkpoint.save_final),
     "write a checkpoint after the last step"},
    {"checkpoint", "async", MT_CFG_BOOL, "false", 0, 0, 0, 0, NULL, OFF(checkpoint.async),
     "write checkpoints in the background: each rank copies what it writes at the step boundary "
     "and trains on while a thread writes the same file (one write at a time; needs "
     "MPI_THREAD_MULTIPLE and a host copy of the rank's share of the state)"},
    {"checkpoint", "resume", MT_CFG_STR, "none", 0, 0, 0, 0, NULL, OFF(checkpoint.resume),
     "none: start from step 0; auto: continue from the newest valid checkpoint of this run name "
     "(or of checkpoint.dir), if any; or the path of a checkpoint file to continue from"},

    {"checkpoint", "allow_data_change", MT_CFG_BOOL, "false", 0, 0, 0, 0, NULL,
     OFF(checkpoint.allow_data_change),
     "resume although the data file's SHA-256 differs from the one the checkpoint was trained on "
     "(a warning instead of the error, exit 3)"},

    {"registry", "enabled", MT_CFG_BOOL, "true", 0, 0, 0, 0, NULL, OFF(registry.enabled),
     "record the run's lineage (START, each CHECKPOINT as a new model version, COMPLETE, FAIL, "
     "ABORT) in the registry file; see docs/REGISTRY.md"},
    {"registry", "path", MT_CFG_STR, "", 0, 0, 0, 0, NULL, OFF(registry.path),
     "the registry file (JSON Lines, shared by every run that names it); empty = "
     "run.dir/registry.jsonl"},
    {"registry", "model_name", MT_CFG_STR, "", 0, 0, 0, 0, NULL, OFF(registry.model_name),
     "name the run's checkpoints are registered under as model versions (letters, digits, _ - .); "
     "empty = run.name"},

    {NULL, NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL},
};
/* clang-format on */
