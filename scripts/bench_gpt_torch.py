#!/usr/bin/python3
"""bench_gpt_torch.py - mpitrain's GPT training step in PyTorch, and a bare sgemm probe.

The Python side of scripts/bench_gpt.sh (see docs/BENCHMARKS.md). Two modes:

  bench_gpt_torch.py train --train-tokens 'DIR/x_train_*.bin' [model options]
      trains the GPT of tests/reference/gpt_parity.py (the same architecture as
      mpitrain's model.kind = gpt, imported from that file) with AdamW on
      llm.c token shards and times it like mpitrain's `time: ... ms/step`
      line: per step, gather the batch of windows from memory, forward, loss,
      backward, optimizer.step, zero_grad; the first 5 steps are excluded.
      Prints `ms/step X (...), Y tokens/s`.

  bench_gpt_torch.py sgemm --lib /path/libopenblas.so.0 --threads N
      loads that OpenBLAS with ctypes (torch is not imported) and times
      cblas_sgemm, best of several repetitions, on a square 1024 product and on
      every linear-layer product of one training step of the model (forward,
      input gradient and weight gradient of c_attn, attn.c_proj, mlp.c_fc,
      mlp.c_proj and the tied LM head, with N = batch * seq rows). Prints one
      `sgemm NAME M N K TA TB GFLOP/s` line each and `sgemm step-mix GFLOP/s`:
      the summed FLOPs of one step's products over their summed best times.

Token shards (docs/DATA.md): a 1024-byte header of 256 little-endian int32
(magic 20240520, version 1, token count), then uint16 tokens. Windows follow
mpitrain's (and llm.c's) loader: window i of a shard is tokens [i*T, i*T+T],
inputs the first T, targets the last T; a new seeded order every epoch. The
thread setting, the first line and the timed loop of train are
scripts/benchlib.py's, shared with bench_mnist_torch.py.
"""
import argparse
import ctypes
import glob
import os
import sys
import time

import numpy as np

import benchlib
from benchlib import TIMING_SKIP

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die(msg):
    sys.exit("bench_gpt_torch.py: error: " + msg)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    t = sub.add_parser("train", help="time PyTorch training steps of the GPT")
    t.add_argument("--train-tokens", required=True, help="token shard file or glob")
    t.add_argument("--steps", type=int, default=30)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--layers", type=int, default=4)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--embd", type=int, default=256)
    t.add_argument("--seq", type=int, default=128, help="T: block_size and sequence length")
    t.add_argument("--batch", type=int, default=8, help="B: sequences per step")
    t.add_argument("--vocab", type=int, default=256)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--seed", type=int, default=1234)
    s = sub.add_parser("sgemm", help="time cblas_sgemm of an OpenBLAS library")
    s.add_argument("--lib", required=True, help="libopenblas.so.0 to load")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--layers", type=int, default=4)
    s.add_argument("--embd", type=int, default=256)
    s.add_argument("--seq", type=int, default=128)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--vocab", type=int, default=256)
    s.add_argument("--reps", type=int, default=10, help="rounds over all shapes; best kept")
    a = p.parse_args()
    for k in ("steps", "threads", "layers", "heads", "embd", "seq", "batch", "vocab", "reps"):
        if getattr(a, k, 1) < 1:
            p.error("--%s must be >= 1" % k)
    return a


# ---- sgemm probe ----

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def sgemm_mode(a):
    try:
        lib = ctypes.CDLL(a.lib)
        gemm = lib.cblas_sgemm
    except (OSError, AttributeError) as err:
        die("cannot load cblas_sgemm from %s: %s" % (a.lib, err))
    lib.openblas_set_num_threads(ctypes.c_int(a.threads))
    lib.openblas_get_num_threads.restype = ctypes.c_int
    lib.openblas_get_config.restype = ctypes.c_char_p
    fp = ctypes.POINTER(ctypes.c_float)
    gemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, fp, ctypes.c_int, fp, ctypes.c_int,
                                          ctypes.c_float, fp, ctypes.c_int]
    gemm.restype = None
    print("sgemm lib %s | %s | threads %d"
          % (a.lib, lib.openblas_get_config().decode(), lib.openblas_get_num_threads()))
    rng = np.random.default_rng(1)

    def prepare(name, m, n, k, ta, tb):
        """C[m,n] = op(A) op(B), row-major; op(A) is m x k, op(B) is k x n."""
        A = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        B = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        C = np.zeros((m, n), dtype=np.float32)
        args = (ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, m, n, k, 1.0,
                A.ctypes.data_as(fp), A.shape[1], B.ctypes.data_as(fp), B.shape[1], 0.0,
                C.ctypes.data_as(fp), n)
        return {"name": name, "shape": (m, n, k, ta, tb), "args": args, "keep": (A, B, C),
                "flops": 2.0 * m * n * k, "best": float("inf")}

    N, C, V = a.batch * a.seq, a.embd, a.vocab
    cases = [prepare("square", 1024, 1024, 1024, False, False)]
    # (name, out features, in features, times per step): y[N,out] = x[N,in] W[out,in]^T
    linears = [("attn.c_attn", 3 * C, C, a.layers), ("attn.c_proj", C, C, a.layers),
               ("mlp.c_fc", 4 * C, C, a.layers), ("mlp.c_proj", C, 4 * C, a.layers),
               ("lm_head", V, C, 1)]
    times = [0]
    for name, out, inp, n_per_step in linears:
        for what, shape in (("fwd", (N, out, inp, False, True)),   # y = x W^T
                            ("dx", (N, inp, out, False, False)),   # dx = dy W
                            ("dW", (out, inp, N, True, False))):   # dW = dy^T x
            cases.append(prepare("%s.%s" % (name, what), *shape))
            times.append(n_per_step)
    for c in cases:  # warm-up: thread start, page faults
        gemm(*c["args"])
    # Rounds over all shapes rather than all repetitions of one shape in a row:
    # on this shared virtual machine a call is now and then delayed by a few
    # milliseconds for ~0.1 s at a time, which must not hit every try of a shape.
    for _ in range(a.reps):
        for c in cases:
            t0 = time.perf_counter()
            gemm(*c["args"])
            c["best"] = min(c["best"], time.perf_counter() - t0)
    tot_f = tot_t = 0.0
    for c, n_per_step in zip(cases, times):
        m, n, k, ta, tb = c["shape"]
        print("sgemm %-16s %5d %5d %5d %s%s %8.1f GFLOP/s (%.3f ms)"
              % (c["name"], m, n, k, "T" if ta else "N", "T" if tb else "N",
                 c["flops"] / c["best"] / 1e9, 1e3 * c["best"]))
        tot_f += n_per_step * c["flops"]
        tot_t += n_per_step * c["best"]
    print("sgemm step-mix %.1f GFLOP/s (%.2f GFLOP of linear-layer products per step in %.2f ms)"
          % (tot_f / tot_t / 1e9, tot_f / 1e9, 1e3 * tot_t))


# ---- PyTorch training ----

def read_shard(path):
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size < 1024:
        die("%s: %d bytes, less than the 1024-byte header" % (path, raw.size))
    head = raw[:1024].view("<i4")
    if head[0] != 20240520 or head[1] != 1:
        die("%s: magic %d version %d, not an llm.c uint16 token shard" % (path, head[0], head[1]))
    n = int(head[2])
    if raw.size != 1024 + 2 * n:
        die("%s: header says %d tokens, file has %d bytes" % (path, n, raw.size))
    return raw[1024:].view("<u2").astype(np.int64)


def train_mode(a):
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
    from gpt_parity import GPT  # the PyTorch definition of mpitrain's model

    blas = benchlib.set_threads(torch, a.threads)
    torch.manual_seed(a.seed)
    if a.embd % a.heads:
        die("--embd %d is not divisible by --heads %d" % (a.embd, a.heads))

    files = sorted(glob.glob(a.train_tokens))
    if not files:
        die("no token shard matches %s" % a.train_tokens)
    T = a.seq
    xs, ys = [], []
    for path in files:  # windows never cross a shard
        tok = read_shard(path)
        nw = (tok.size - 1) // T if tok.size > 0 else 0
        if nw > 0:
            idx = np.arange(nw)[:, None] * T + np.arange(T)[None, :]
            xs.append(tok[idx])
            ys.append(tok[idx + 1])
    if not xs:
        die("the shards hold no window of %d tokens" % T)
    x_all = torch.from_numpy(np.concatenate(xs))
    y_all = torch.from_numpy(np.concatenate(ys))
    n = x_all.shape[0]
    if int(x_all.max()) >= a.vocab:
        die("token id %d >= vocab %d" % (int(x_all.max()), a.vocab))
    steps_per_epoch = n // a.batch
    if steps_per_epoch < 1:
        die("batch %d > %d windows of %d tokens" % (a.batch, n, T))

    model = GPT(a.layers, a.heads, a.embd, T, a.vocab)
    params = dict(model.named_parameters())
    # mpitrain's initialisation (core/gpt.c): N(0, 0.02) matrices, the two output
    # projections of each block N(0, 0.02 / sqrt(2 L)), zero biases, unit LayerNorm
    with torch.no_grad():
        for name, p in params.items():
            if p.dim() == 2:
                std = 0.02 / (2 * a.layers) ** 0.5 if name.endswith("c_proj.weight") else 0.02
                p.normal_(0.0, std)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
    # weight decay on matrices (Linear weights, embeddings), not biases or LayerNorm: mpitrain's rule
    decay = [p for p in params.values() if p.dim() == 2]
    no_decay = [p for p in params.values() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(a.seed)

    print(benchlib.banner(torch, a.threads, blas))
    print("data: %s: %d windows of %d tokens" % (", ".join(files), n, T))
    print("model: gpt %d layers, %d heads, n_embd %d, block_size %d, vocab %d | %d parameters"
          " | optimizer adamw" % (a.layers, a.heads, a.embd, T, a.vocab,
                                  sum(p.numel() for p in params.values())))
    print("training: %d steps of %d sequences, %d steps per epoch" % (a.steps, a.batch,
                                                                     steps_per_epoch))
    sys.stdout.flush()

    def progress(step, loss):
        if step == 0 or (step + 1) % 10 == 0:
            print("step %d/%d | loss %.4f" % (step + 1, a.steps, loss.item()))

    model.train()
    ms, _ = benchlib.train_timed(torch, opt, n, a.batch, a.steps, gen,
                                 lambda idx: model(x_all[idx], y_all[idx]), progress)
    print("ms/step %.3f (%d steps, first %d excluded), %.0f tokens/s"
          % (ms, a.steps, TIMING_SKIP, 1e3 * a.batch * T / ms))


def main():
    a = parse_args()
    if a.mode == "sgemm":
        sgemm_mode(a)
    else:
        train_mode(a)


if __name__ == "__main__":
    main()
