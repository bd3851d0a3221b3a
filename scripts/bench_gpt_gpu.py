#!/usr/bin/env python3
"""bench_gpt_gpu.py - PyTorch's training step of mpitrain's GPT on a GPU: the rival.

usage: bench_gpt_gpu.py [--device cuda|cpu] [--precision bf16|fp32] [--compile]
                        [--batch B] [--steps N] [--warmup N] [shape options]
                        [--tokens FILE] [--json-out FILE]

The model is mpitrain's model.kind = gpt (core/gpt.h), defined here on its own
so it runs on any device: GPT-2 architecture, token and learned position
embeddings, n_layer pre-LayerNorm blocks (LayerNorm eps 1e-5, biases
everywhere), causal self-attention with the fused c_attn (q|k|v rows, (3C, C))
and c_proj, an MLP of width 4C with GELU (tanh approximation), a final
LayerNorm and the LM head tied to wte; no dropout. Parameter names and shapes
are mpitrain's (PyTorch's Linear convention), and so is the initialisation:
N(0, 0.02) for matrices and embeddings, N(0, 0.02 / sqrt(2 L)) for the two
c_proj weights of each block, zero biases, unit LayerNorm weights. Default
shape: GPT-2 124M (12 layers, 12 heads, n_embd 768, T = block_size 1024,
vocab 50257; 124,439,808 parameters).

Training: mean cross-entropy over the B x T targets; AdamW with decoupled
weight decay on the 2-D parameters only (matrices and embeddings, mpitrain's
rule), betas 0.9 / 0.999, eps 1e-8 (mpitrain's defaults, core/config_keys.c),
lr 6e-4, weight decay 0.01, no gradient clipping, constant learning rate.
Precision bf16 (default on cuda): torch.autocast(bfloat16) around forward and
loss, fp32 master weights, fp32 gradients and fp32 AdamW state (fused=True
where this torch has it). fp32: no autocast (TF32 matmuls off).
Attention: torch.nn.functional.scaled_dot_product_attention(is_causal=True)
when this torch has it (2.0 and later), else an explicit causal softmax(q k^T)
v (printed as "attention: manual").

Data: random tokens below the vocabulary from --seed, or windows of an llm.c
token shard (--tokens, see scripts/make_tokens.py); every batch is on the
device before timing starts. Timing: --warmup steps (default 3; with
--compile they include the compilation), then --steps steps, each timed alone
between two torch.cuda.synchronize() calls (step = forward, loss, backward,
optimizer.step, zero_grad). Prints ms/step (median and mean), tokens/s,
parameters and, last, one JSON line with everything. Exit status: 0 done,
1 an error, 3 --compile asked but torch.compile is missing in this torch.
"""
import argparse
import array
import json
import math
import platform
import statistics
import struct
import sys
import time

EXIT_NO_COMPILE = 3


def die(msg, code=1):
    print("bench_gpt_gpu.py: error: " + msg, file=sys.stderr)
    sys.exit(code)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--precision", choices=("bf16", "fp32"), default=None,
                   help="bf16 autocast (default on cuda) or fp32 (default on cpu)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--embd", type=int, default=768)
    p.add_argument("--seq", type=int, default=1024, help="T: block_size and sequence length")
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--batch", type=int, default=8, help="B: sequences per step")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--lr", type=float, default=6e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--tokens", help="llm.c token shard to take windows from (default: random)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--json-out", help="also write the final JSON record to this file")
    a = p.parse_args()
    for k in ("layers", "heads", "embd", "seq", "vocab", "batch", "steps"):
        if getattr(a, k) < 1:
            p.error("--%s must be >= 1" % k)
    if a.warmup < 0 or a.threads < 0:
        p.error("--warmup and --threads must be >= 0")
    if a.embd % a.heads:
        p.error("--embd %d is not divisible by --heads %d" % (a.embd, a.heads))
    if a.vocab > 65536 and a.tokens:
        p.error("--vocab > 65536 cannot come from a uint16 token shard")
    return a


def read_shard(path, vocab):
    """The uint16 tokens of an llm.c shard (io/tokens.h), as an array.array('H')."""
    try:
        with open(path, "rb") as f:
            head = f.read(1024)
            body = f.read()
    except OSError as err:
        die("cannot read %s: %s" % (path, err))
    if len(head) < 1024:
        die("%s: shorter than the 1024-byte header" % path)
    magic, version, n = struct.unpack("<3i", head[:12])
    if magic != 20240520 or version != 1:
        die("%s: magic %d version %d, not an llm.c uint16 token shard" % (path, magic, version))
    if len(body) != 2 * n:
        die("%s: header says %d tokens, file has %d bytes of tokens" % (path, n, len(body)))
    tok = array.array("H")
    tok.frombytes(body)
    if sys.byteorder != "little":
        tok.byteswap()
    if n and max(tok) >= vocab:
        die("%s: token id %d >= vocab %d" % (path, max(tok), vocab))
    return tok


def make_gpt(L, NH, C, T, V, use_sdpa):
    """mpitrain's GPT (core/gpt.h) as a torch.nn.Module; forward(idx, targets) is the mean
    cross-entropy. Parameter names are mpitrain's (and tests/reference/gpt_parity.py's)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    has_sdpa = use_sdpa and hasattr(F, "scaled_dot_product_attention")

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.c_attn(x).split(c, dim=2)
            hs = c // NH
            q, k, v = (u.view(b, t, NH, hs).transpose(1, 2) for u in (q, k, v))
            if has_sdpa:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))
                mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
                att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
                y = att @ v
            return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc = nn.Linear(C, 4 * C)
            self.c_proj = nn.Linear(4 * C, C)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C, eps=1e-5)
            self.attn = Attention()
            self.ln_2 = nn.LayerNorm(C, eps=1e-5)
            self.mlp = MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(T, C)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C, eps=1e-5)
            self.register_buffer("pos", torch.arange(T), persistent=False)

        def forward(self, idx, targets):
            t = idx.shape[1]
            x = self.wte(idx) + self.wpe(self.pos[:t])
            for block in self.h:
                x = block(x)
            logits = F.linear(self.ln_f(x), self.wte.weight)  # the LM head is tied to wte
            return F.cross_entropy(logits.view(-1, logits.shape[-1]).float(), targets.reshape(-1))

    return GPT()


def main():
    a = parse_args()
    import torch
    import torch.nn.functional as F

    dev = torch.device(a.device)
    on_cuda = dev.type == "cuda"
    if on_cuda and not torch.cuda.is_available():
        die("--device %s but torch %s sees no usable CUDA device (torch.version.cuda %s)"
            % (a.device, torch.__version__, torch.version.cuda))
    prec = a.precision or ("bf16" if on_cuda else "fp32")
    if a.compile and not hasattr(torch, "compile"):
        print("bench_gpt_gpu.py: torch.compile is not in torch %s (it came with 2.0)"
              % torch.__version__, file=sys.stderr)
        sys.exit(EXIT_NO_COMPILE)
    if a.threads:
        torch.set_num_threads(a.threads)
    if on_cuda:
        torch.cuda.set_device(dev)
    # fp32 means fp32 (no TF32), as mpitrain's fp32 mode (CUBLAS_PEDANTIC_MATH); bf16
    # autocast runs its matmuls in bf16 whatever this says
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(a.seed)

    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    attention_path = "sdpa" if has_sdpa else "manual"
    L, NH, C, T, V, B = a.layers, a.heads, a.embd, a.seq, a.vocab, a.batch

    model = make_gpt(L, NH, C, T, V, has_sdpa)
    params = dict(model.named_parameters())
    with torch.no_grad():  # mpitrain's initialisation (core/gpt.c)
        for name, p in params.items():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("c_proj.weight") else 0.02
                p.normal_(0.0, std)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
    n_params = sum(p.numel() for p in params.values())
    model.to(dev)
    model.train()

    # AdamW: decay on matrices (2-D), not biases or LayerNorm: mpitrain's rule
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() != 2]
    groups = [{"params": decay, "weight_decay": a.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kw = dict(lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    opt, opt_kind = None, "AdamW"
    # fused (one kernel for all tensors) where this torch has it for CUDA (2.0 and later),
    # else foreach (batched kernels), else the loop over tensors
    for extra, kind in (({"fused": True}, "AdamW fused"), ({"foreach": True}, "AdamW foreach")):
        if opt is not None or not on_cuda:
            break
        try:
            opt, opt_kind = torch.optim.AdamW(groups, **extra, **kw), kind
        except (RuntimeError, TypeError, ValueError) as err:
            print("note: torch.optim.AdamW(%s=True) refused: %s" % (list(extra)[0], err))
    if opt is None:
        opt = torch.optim.AdamW(groups, **kw)

    step_model = model
    if a.compile:
        step_model = torch.compile(model)

    # data: every batch on the device before timing
    total = a.warmup + a.steps
    gen = torch.Generator().manual_seed(a.seed)
    if a.tokens:
        tok = read_shard(a.tokens, V)
        nw = (len(tok) - 1) // T if len(tok) > 0 else 0
        if nw < 1:
            die("%s: %d tokens, not one window of %d + 1" % (a.tokens, len(tok), T))
        wide = array.array("q", tok[: nw * T + 1])
        flat = torch.frombuffer(wide, dtype=torch.int64).clone()
        starts = torch.randint(0, nw, (total, B), generator=gen) * T
        idx = starts[..., None] + torch.arange(T + 1)
        data = flat[idx]  # (total, B, T+1)
        data_desc = "%s: %d windows of %d tokens, %d batches drawn from seed %d" % (
            a.tokens, nw, T, total, a.seed)
    else:
        data = torch.randint(0, V, (total, B, T + 1), generator=gen)
        data_desc = "random tokens < %d from seed %d" % (V, a.seed)
    xs = data[:, :, :T].contiguous().to(dev)  # inputs (total, B, T)
    ys = data[:, :, 1:].contiguous().to(dev)  # targets, shifted by one

    if on_cuda:
        props = torch.cuda.get_device_properties(dev)
        gpu = props.name
        dev_desc = "%s (%s, %.1f GB)" % (a.device, props.name, props.total_memory / 1e9)
    else:
        gpu = None
        dev_desc = "cpu (%s, %d threads)" % (platform.processor() or platform.machine(),
                                              torch.get_num_threads())
    print("torch %s (CUDA %s) | python %s | device %s"
          % (torch.__version__, torch.version.cuda, platform.python_version(), dev_desc))
    print("model: gpt %d layers, %d heads, n_embd %d, block_size %d, vocab %d | %d parameters"
          % (L, NH, C, T, V, n_params))
    print("precision: %s | attention: %s | optimizer: %s (lr %g, betas 0.9/0.999, eps 1e-8, "
          "weight decay %g on matrices) | compile: %s"
          % ("bf16 autocast, fp32 weights and AdamW state" if prec == "bf16" else "fp32",
             "scaled_dot_product_attention(is_causal=True)" if has_sdpa
             else "manual (softmax(q k^T) v, no scaled_dot_product_attention in this torch)",
             opt_kind, a.lr, a.weight_decay, "torch.compile" if a.compile else "no (eager)"))
    print("data: %s | batch %d x %d = %d tokens per step | %d warm-up + %d timed steps"
          % (data_desc, B, T, B * T, a.warmup, a.steps))
    sys.stdout.flush()

    if prec == "bf16":
        autocast = lambda: torch.autocast(device_type=dev.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        import contextlib
        autocast = contextlib.nullcontext

    def sync():
        if on_cuda:
            torch.cuda.synchronize(dev)

    def train_step(i):
        with autocast():
            loss = step_model(xs[i], ys[i])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    losses = []
    t_warm = time.perf_counter()
    for i in range(a.warmup):
        loss = train_step(i)
        sync()
        losses.append(loss.item())
        print("warm-up step %d/%d | loss %.4f | %.1f s" % (i + 1, a.warmup, losses[-1],
                                                          time.perf_counter() - t_warm))
        sys.stdout.flush()
    warm_s = time.perf_counter() - t_warm
    if on_cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    sync()
    for i in range(a.warmup, total):
        t0 = time.perf_counter()
        loss = train_step(i)
        sync()
        times.append(time.perf_counter() - t0)
        j = i - a.warmup + 1
        if j == 1 or j % 10 == 0 or j == a.steps:
            losses.append(loss.item())
            print("step %d/%d | loss %.4f | %.2f ms" % (j, a.steps, losses[-1], 1e3 * times[-1]))
            sys.stdout.flush()
    ms_med = 1e3 * statistics.median(times)
    ms_mean = 1e3 * statistics.mean(times)
    tok_s = 1e3 * B * T / ms_med
    peak_gb = torch.cuda.max_memory_allocated(dev) / 1e9 if on_cuda else None
    print("ms/step %.3f median (mean %.3f, min %.3f, max %.3f over %d steps), %.0f tokens/s"
          % (ms_med, ms_mean, 1e3 * min(times), 1e3 * max(times), len(times), tok_s))
    print("warm-up: %.1f s for %d steps%s%s" % (
        warm_s, a.warmup, " (including torch.compile)" if a.compile else "",
        " | peak memory %.2f GB" % peak_gb if peak_gb is not None else ""))
    rec = {
        "tool": "pytorch", "torch": torch.__version__, "cuda": torch.version.cuda,
        "device": a.device, "gpu": gpu, "precision": prec, "compile": bool(a.compile),
        "attention": attention_path, "optimizer": opt_kind, "params": n_params,
        "n_layer": L, "n_head": NH, "n_embd": C, "seq_len": T, "vocab": V, "batch": B,
        "steps": a.steps, "warmup": a.warmup, "warmup_s": round(warm_s, 3),
        "ms_per_step": round(ms_med, 4), "ms_per_step_mean": round(ms_mean, 4),
        "ms_per_step_min": round(1e3 * min(times), 4), "tokens_per_s": round(tok_s, 1),
        "loss_first": losses[0], "loss_last": losses[-1],
        "peak_mem_gb": round(peak_gb, 3) if peak_gb is not None else None,
    }
    line = json.dumps(rec, sort_keys=False)
    if a.json_out:
        with open(a.json_out, "w") as f:
            f.write(line + "\n")
    print(line)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
