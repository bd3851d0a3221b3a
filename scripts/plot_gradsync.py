#!/usr/bin/python3
"""plot_gradsync.py - the timeline of one traced step of the gradient sync.

usage: plot_gradsync.py OUT.png TRACE.<rank>... [--step N] [--title TEXT]

Reads the JSON lines mpitrain writes with MPITRAIN_GRADSYNC_TRACE
(docs/PARALLEL.md, "Buckets and overlap") and draws one step (the last
traced one unless --step), one panel per trace file (rank): each bucket's
reduction as a bar from its start to its end, the backward's layer events as
ticks, and the end of the backward as a line, in ms since that rank's step
began. Bars that begin left of that line are reductions that overlapped the
backward; a bar that ends long after it on one rank waits for another rank
still in its backward. Plotting through matplotlib (Debian
python3-matplotlib); prints one summary line per rank.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    events = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if line:
                    events.append(json.loads(line))
    except OSError as e:
        sys.exit(f"plot_gradsync: error: cannot read {path}: {e.strerror}")
    except json.JSONDecodeError:
        sys.exit(f"plot_gradsync: error: {path} line {n} is not a JSON object (a cut trace?)")
    return events


def panel(ax, path, ev, step):
    layers = [1e3 * e["t"] for e in ev if e["event"] == "layer"]
    bwd = [1e3 * e["t"] for e in ev if e["event"] == "backward_end"]
    starts = {e["bucket"]: 1e3 * e["t"] for e in ev if e["event"] == "bucket_start"}
    ends = {e["bucket"]: 1e3 * e["t"] for e in ev if e["event"] == "bucket_end"}
    buckets = sorted(starts, reverse=True)  # started from the buffer's end
    for row, b in enumerate(buckets):
        s, t = starts[b], ends.get(b, starts[b])
        early = bwd and s < bwd[0]
        ax.barh(row, max(t - s, 0.01), left=s, height=0.6,
                color="tab:green" if early else "tab:orange")
    for x in layers:
        ax.axvline(x, color="0.6", lw=0.8, ls=":")
    if bwd:
        ax.axvline(bwd[0], color="tab:red", lw=1.5, label="backward ends")
    ax.set_yticks(range(len(buckets)))
    ax.set_yticklabels([f"bucket {b}" for b in buckets], fontsize=7)
    ax.invert_yaxis()
    rank = ev[0].get("rank", "?")
    ax.set_ylabel(f"rank {rank}", fontsize=8)
    ax.legend(loc="lower right", fontsize=7)
    n_early = sum(1 for b in buckets if bwd and starts[b] < bwd[0])
    last = max(ends.values()) if ends else float("nan")
    print(f"plot_gradsync: {path}, step {step}: {len(buckets)} buckets, {n_early} started "
          f"before the backward ended ({bwd[0] if bwd else float('nan'):.2f} ms), last done "
          f"at {last:.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--step", type=int)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    runs = [(p, load(p)) for p in a.traces]
    steps = sorted(set.intersection(*[{e["step"] for e in ev} for _, ev in runs]))
    if not steps:
        sys.exit(f"plot_gradsync: error: no step traced in every one of {a.traces}")
    step = a.step if a.step is not None else steps[-1]
    if step not in steps:
        sys.exit(f"plot_gradsync: error: step {step} is not traced in every file (they share {steps})")
    height = sum(0.3 * len({e["bucket"] for e in ev if e["event"] == "bucket_start"}) + 0.8
                 for _, ev in runs) + 1.2
    fig, axes = plt.subplots(len(runs), 1, figsize=(9, height), sharex=True, squeeze=False)
    for ax, (path, ev) in zip(axes[:, 0], runs):
        panel(ax, path, [e for e in ev if e["step"] == step], step)
    axes[-1, 0].set_xlabel("ms since the rank's step began (dotted: a layer's gradients final)")
    axes[0, 0].set_title(a.title or f"gradient buckets, step {step}", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"plot_gradsync: wrote {a.out}")


if __name__ == "__main__":
    main()
