#!/usr/bin/python3
"""bench_mnist_torch.py - the mpitrain MNIST MLP in PyTorch, timed the same way.

The PyTorch side of scripts/bench_mnist.sh (see docs/BENCHMARKS.md). It trains
the model of configs/mnist_mlp.ini: an MLP (default 784-256-128-10, ReLU after
each hidden layer), softmax cross-entropy averaged over the batch, AdamW
(lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01 on the weight matrices
and 0 on the biases), batch 64, a new shuffled sample order every epoch.

The HDF5 file is read once with h5py into tensors. The timed scope matches
mpitrain's `time: ... ms/step` line: per step, index the batch out of the
in-memory tensors, forward, loss, backward, optimizer.step, zero_grad; the first
5 steps are excluded; the evaluation on the test split at the end is not timed.

Prints `ms/step X` and `final test accuracy: Y%` (plus a few informative lines).
Run it with /usr/bin/python3 (the interpreter that has torch and h5py here).
The thread setting, the first line and the timed loop are scripts/benchlib.py's,
shared with bench_gpt_torch.py.
"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch

import benchlib
from benchlib import TIMING_SKIP


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="data/mnist.h5", help="HDF5 dataset (docs/DATA.md)")
    p.add_argument("--steps", type=int, default=1250, help="optimizer steps (default 1250)")
    p.add_argument("--batch", type=int, default=64, help="samples per step (default 64)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--layers", default="784,256,128,10", help="MLP widths (default 784,256,128,10)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args()
    try:
        a.layers = [int(v) for v in a.layers.split(",")]
    except ValueError:
        p.error("--layers: comma-separated integers expected, got %r" % a.layers)
    if len(a.layers) < 2 or min(a.layers) < 1:
        p.error("--layers: at least two positive widths expected")
    if a.steps < 1 or a.batch < 1 or a.threads < 1:
        p.error("--steps, --batch and --threads must be >= 1")
    return a


def load(path):
    with h5py.File(path, "r") as f:
        def get(name):
            if name not in f:
                sys.exit("bench_mnist_torch.py: error: %s has no dataset %s" % (path, name))
            return f[name][()]
        xtr, ytr = get("/train/images"), get("/train/labels")
        xte, yte = get("/test/images"), get("/test/labels")
    t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    l = lambda y: torch.from_numpy(np.asarray(y, dtype=np.int64))
    return t(xtr), l(ytr), t(xte), l(yte)


def main():
    a = parse_args()
    blas = benchlib.set_threads(torch, a.threads)
    torch.manual_seed(a.seed)

    if not os.path.isfile(a.data):
        sys.exit("bench_mnist_torch.py: error: no data file %s" % a.data)
    xtr, ytr, xte, yte = load(a.data)
    n, dim = xtr.shape
    if dim != a.layers[0]:
        sys.exit("bench_mnist_torch.py: error: data has %d inputs, --layers starts with %d"
                 % (dim, a.layers[0]))
    steps_per_epoch = n // a.batch
    if steps_per_epoch < 1:
        sys.exit("bench_mnist_torch.py: error: batch %d > %d training samples" % (a.batch, n))

    mods = []
    for i in range(len(a.layers) - 1):
        mods.append(torch.nn.Linear(a.layers[i], a.layers[i + 1]))
        if i < len(a.layers) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    decay = [p for name, p in model.named_parameters() if name.endswith("weight")]
    no_decay = [p for name, p in model.named_parameters() if name.endswith("bias")]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": a.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss()  # mean over the batch
    gen = torch.Generator().manual_seed(a.seed)

    print(benchlib.banner(torch, a.threads, blas))
    print("data: %s: %d train, %d test samples of %d inputs" % (a.data, n, xte.shape[0], dim))
    print("model: mlp %s relu | %d parameters | optimizer adamw"
          % ("-".join(map(str, a.layers)), sum(p.numel() for p in model.parameters())))
    print("training: %d steps of %d samples, %d steps per epoch" % (a.steps, a.batch, steps_per_epoch))
    sys.stdout.flush()

    model.train()
    ms, loss = benchlib.train_timed(torch, opt, n, a.batch, a.steps, gen,
                                    lambda idx: loss_fn(model(xtr[idx]), ytr[idx]))

    model.eval()
    with torch.no_grad():
        logits = model(xte)
        test_loss = loss_fn(logits, yte).item()
        correct = int((logits.argmax(dim=1) == yte).sum())
    print("last train loss %.4f" % loss.item())
    print("ms/step %.3f (%d steps, first %d excluded), %.0f samples/s"
          % (ms, a.steps, TIMING_SKIP, 1e3 * a.batch / ms))
    print("final test accuracy: %.2f%% (%d/%d), test loss %.4f"
          % (100.0 * correct / yte.shape[0], correct, yte.shape[0], test_loss))


if __name__ == "__main__":
    main()
