#!/usr/bin/python3
"""scale_model.py - a scaling model of mpitrain's data-parallel step, checked
against what one machine measures (scripts/bench_scale.sh) and projected to
8 .. 1,024 GPUs.

usage: scale_model.py MEASURED.json [--png OUT.png] [options]

MEASURED.json (written by scripts/bench_scale.sh) holds this machine's
numbers: the one-rank step time of a GPT (weak scaling: the same batch per
rank), its gradient and checkpoint bytes, the time of a plain MPI_Allreduce
of a float and of the gradient at -np 2 and 4, mpitrain's step times at -np
2 and 4 (flat sum and buckets overlapped), and the checkpoint write and
SHA-256 times. Model (assumptions stated; docs/BENCHMARKS.md):

  all-reduce (ring)   T_ar(N, S) = 2 (N - 1) alpha + 2 (N - 1) / N * S / B
                      alpha: latency per message, B: bandwidth per rank; a
                      reduce-scatter or an all-gather is half of it each.
  step, flat          T = T_c + T_ar(N, G)
  step, overlap       T = T_c + max(T_ar(N, bucket), T_ar(N, G) - f_bwd T_c)
                      the sums of all buckets but the last hide behind the
                      backward (f_bwd of the compute), which assumes the
                      network progresses on its own (NCCL, a NIC): not true
                      of Open MPI's shared memory on this machine's cores.
  step, zero = 1      T = T_c - (1 - 1/N) T_opt + T_ar(N, G)   (reduce-
                      scatter + all-gather, after the backward; the
                      optimizer runs on 1/N of the parameters)
  checkpoint, sync    every I steps, all ranks wait C / W_fs (rank 0's
                      SHA-256, C / H_sha, runs beside training)
  checkpoint, async   every I steps, the ranks wait C / N / W_copy (their
                      share copied to host memory); the write and the hash
                      run beside training, and the steps they overlap,
                      min(I, (C / W_fs + C / H_sha) / T), run s times
                      slower (--async-slowdown, default 1)
  efficiency          T_c / (T + checkpoint cost per step)

On this machine (shared memory, 2 cores) alpha and B are fitted to the
floor at -np 2 and checked against -np 4; compute and the sums (CPU work
here) are slowed by oversubscription, x max(1, p / cores), and mpitrain's
own sum is the floor times a measured factor (its watched, non-blocking
path).
Plotting through matplotlib (Debian python3-matplotlib).
"""
import argparse
import json
import math
import sys


def t_ar(n, size, alpha, bw):
    """Ring all-reduce of size bytes over n ranks (s)."""
    if n <= 1:
        return 0.0
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * size / bw


def step(kind, n, tc, grad, alpha, bw, bucket, f_bwd, t_opt):
    full = t_ar(n, grad, alpha, bw)
    if kind == "flat":
        return tc + full
    if kind == "overlap":
        return tc + max(t_ar(n, bucket, alpha, bw), full - f_bwd * tc)
    if kind == "zero1":
        return tc - (1 - 1 / n) * t_opt + full
    raise ValueError(kind)


def ckpt_cost(mode, n, c_bytes, every, w_fs, h_sha, w_copy, t_step, slowdown):
    """Seconds per step that checkpoints cost the training."""
    if every <= 0:
        return 0.0
    if mode == "sync":  # the write stops every rank; the SHA-256 runs beside training
        return c_bytes / w_fs / every
    # async: the copy stops the ranks; the steps the write and the hash
    # overlap run slowdown x slower (the writer's share of the host)
    busy = c_bytes / w_fs + c_bytes / h_sha
    steps_busy = min(every, math.ceil(busy / t_step)) if t_step > 0 else every
    return (c_bytes / n / w_copy + (slowdown - 1.0) * t_step * steps_busy) / every


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("measured")
    ap.add_argument("--png")
    ap.add_argument("--gpu-step-ms", type=float, default=300.0,
                    help="compute of one step on one GPU (default 300: GPT-2 124M, 8 x 1024 "
                         "tokens, at ~40%% of an H100's bf16 peak; an assumption, not measured)")
    ap.add_argument("--params", type=float, default=124.4e6, help="parameters (default GPT-2 124M)")
    ap.add_argument("--grad-bytes", type=float, default=4, help="bytes per gradient element (4: fp32)")
    ap.add_argument("--bw-gbs", type=float, default=25.0,
                    help="network bandwidth per GPU, GB/s (default 25: 200 Gb/s InfiniBand)")
    ap.add_argument("--lat-us", type=float, default=5.0, help="latency per message, us (default 5)")
    ap.add_argument("--bucket-mb", type=float, default=25.0)
    ap.add_argument("--bwd-share", type=float, default=2 / 3,
                    help="the backward's share of the compute (default 2/3)")
    ap.add_argument("--opt-share", type=float, default=0.03,
                    help="the optimizer's share of the compute (default 0.03)")
    ap.add_argument("--ckpt-every", type=int, default=500, help="steps between checkpoints")
    ap.add_argument("--fs-gbs", type=float, default=5.0,
                    help="parallel file system write bandwidth for one checkpoint, GB/s")
    ap.add_argument("--sha-gbs", type=float, default=0.0,
                    help="SHA-256 rate, GB/s (default: this machine's measured rate)")
    ap.add_argument("--copy-gbs", type=float, default=20.0,
                    help="device -> pinned host copy per GPU, GB/s (async staging)")
    ap.add_argument("--async-slowdown", type=float, default=1.0,
                    help="step time while a background write runs / without one (default 1.0: "
                         "on a GPU node the writer uses host cores the training leaves idle; "
                         "bench_checkpoint.sh measures it on a CPU-only machine, where it is "
                         "larger)")
    a = ap.parse_args()
    m = json.load(open(a.measured))

    # ---- this machine: fit, then check ----
    cores = m["cores"]
    g_bytes = m["grad_bytes"]
    small2, small4 = m["floor_small_ms"]["2"] / 1e3, m["floor_small_ms"]["4"] / 1e3
    big2, big4 = m["floor_grad_ms"]["2"] / 1e3, m["floor_grad_ms"]["4"] / 1e3
    alpha = small2 / 2  # 2 (N-1) messages at N = 2
    bw = (2 * (2 - 1) / 2 * g_bytes) / max(big2 - 2 * alpha, 1e-9)
    print(f"this machine: {m['machine']}; {cores} cores; GPT {m['params']:.0f} parameters "
          f"({g_bytes / 1e6:.1f} MB of gradient), {m['per_rank_batch']} sequences per rank")
    print(f"fit at -np 2: alpha {alpha * 1e6:.1f} us, B {bw / 1e9:.2f} GB/s (shared memory)")
    over4 = max(1.0, 4 / cores)  # shared memory: the sum is CPU work on shared cores
    pred4 = t_ar(4, g_bytes, alpha, bw) * over4
    print(f"check at -np 4 ({4 / cores:g} ranks per core: the ring's copies and adds slowed "
          f"alike): MPI_Allreduce of the gradient {big4 * 1e3:.2f} ms measured, "
          f"{pred4 * 1e3:.2f} predicted ({pred4 / big4:.2f}); of one float {small4 * 1e6:.1f} us "
          f"measured, {t_ar(4, 4, alpha, bw) * over4 * 1e6:.1f} predicted")
    tc1 = m["step_ms"]["1"] / 1e3
    factor = m["sum_factor"]
    print(f"mpitrain's flat sum at -np 2 is {factor:.2f} x the floor (its watched non-blocking "
          f"path; used as a factor below)")
    print()
    print("| ranks | kind | measured ms/step | model ms/step | model / measured |")
    print("| ---: | --- | ---: | ---: | ---: |")
    checks = []
    for n in (1, 2, 4):
        tc = tc1 * max(1.0, n / cores)
        key = "1" if n == 1 else f"{n}_flat"
        if key not in m["step_ms"]:
            continue
        meas = m["step_ms"][key] / 1e3
        model = tc + factor * t_ar(n, g_bytes, alpha, bw) * max(1.0, n / cores)
        checks.append(model / meas)
        print(f"| {n} | flat | {meas * 1e3:.1f} | {model * 1e3:.1f} | {model / meas:.2f} |")
        if n > 1 and f"{n}_overlap" in m["step_ms"]:
            # here the sums progress only when tested between layers, on the
            # same cores: between no overlap (flat) and a perfect one (tc)
            ov = m["step_ms"][f"{n}_overlap"] / 1e3
            print(f"| {n} | overlap | {ov * 1e3:.1f} | {tc * 1e3:.1f} .. {model * 1e3:.1f} | "
                  f"{tc / ov:.2f} .. {model / ov:.2f} |")
    ck = m.get("ckpt")
    if ck:
        print()
        print(f"checkpoint here: {ck['bytes'] / 1e6:.1f} MB, write {ck['write_s']:.3f} s "
              f"({ck['bytes'] / ck['write_s'] / 1e9:.2f} GB/s), SHA-256 {ck['hash_s']:.3f} s "
              f"({ck['bytes'] / ck['hash_s'] / 1e9:.2f} GB/s)")
    sha_gbs = a.sha_gbs or (ck["bytes"] / ck["hash_s"] / 1e9 if ck else 0.5)

    # ---- projection ----
    tc = a.gpu_step_ms / 1e3
    grad = a.params * a.grad_bytes
    c_bytes = a.params * 12  # weights + AdamW m and v, fp32
    alpha_c, bw_c = a.lat_us * 1e-6, a.bw_gbs * 1e9
    bucket = a.bucket_mb * 1e6
    t_opt = a.opt_share * tc
    print()
    print(f"projection: {a.params / 1e6:.1f}M parameters ({grad / 1e6:.0f} MB gradient, "
          f"{c_bytes / 1e9:.2f} GB checkpoint), compute {a.gpu_step_ms:.0f} ms/step per GPU "
          f"(weak scaling), {a.bw_gbs:g} GB/s and {a.lat_us:g} us per GPU, buckets of "
          f"{a.bucket_mb:g} MB, a checkpoint every {a.ckpt_every} steps to {a.fs_gbs:g} GB/s, "
          f"SHA-256 at {sha_gbs:.2f} GB/s, staging copies at {a.copy_gbs:g} GB/s")
    kinds = [("flat", "sync"), ("overlap", "sync"), ("zero1", "sync"), ("overlap", "async"),
             ("zero1", "async")]
    ns = [8, 16, 32, 64, 128, 256, 512, 1024]
    print("| GPUs | " + " | ".join(f"{k} + {c} ckpt" for k, c in kinds) + " |")
    print("| ---: |" + " ---: |" * len(kinds))
    eff = {k: [] for k in kinds}
    for n in ns:
        row = []
        for k, c in kinds:
            t = step(k, n, tc, grad, alpha_c, bw_c, bucket, a.bwd_share, t_opt)
            t += ckpt_cost(c, n, c_bytes, a.ckpt_every, a.fs_gbs * 1e9, sha_gbs * 1e9,
                           a.copy_gbs * 1e9, t, a.async_slowdown)
            e = tc / t
            eff[(k, c)].append(e)
            row.append(f"{t * 1e3:.0f} ms, {100 * e:.0f} %")
        print(f"| {n} | " + " | ".join(row) + " |")
    if a.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for k, c in kinds:
            ax.plot(ns, [100 * x for x in eff[(k, c)]], marker="o", label=f"{k}, {c} checkpoints")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("GPUs (data parallel, weak scaling)")
        ax.set_ylabel("efficiency, % of compute")
        ax.set_ylim(0, 105)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"model: {a.params / 1e6:.0f}M parameters, {a.gpu_step_ms:.0f} ms compute, "
                     f"{a.bw_gbs:g} GB/s, {a.lat_us:g} us, ckpt every {a.ckpt_every}", fontsize=8)
        fig.tight_layout()
        fig.savefig(a.png, dpi=110)
        print(f"\nwrote {a.png}")
    worst = max(abs(math.log(x)) for x in checks) if checks else 0.0
    print(f"\nmodel against this machine: within a factor {math.exp(worst):.2f} at -np 1, 2, 4")


if __name__ == "__main__":
    sys.exit(main())
