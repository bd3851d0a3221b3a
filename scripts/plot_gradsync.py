#!/usr/bin/python3
"""plot_gradsync.py - the timeline of one traced step of the gradient sync.

usage: plot_gradsync.py TRACE.<rank> OUT.png [--step N] [--title TEXT]

Reads the JSON lines mpitrain writes with MPITRAIN_GRADSYNC_TRACE
(docs/PARALLEL.md, "Buckets and overlap") for one rank and draws one step
(the last traced one unless --step): each bucket's reduction as a bar from
its start to its end, the backward's layer events as ticks, and the end of
the backward as a line. Bars that begin left of that line are reductions
that overlapped the backward. Plotting through matplotlib (Debian
python3-matplotlib); prints one summary line.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--step", type=int)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    events = []
    with open(a.trace) as f:
        for line in f:
            line = line.strip()
            if line:
                events.append(json.loads(line))
    steps = sorted({e["step"] for e in events})
    if not steps:
        sys.exit(f"plot_gradsync: error: no events in {a.trace}")
    step = a.step if a.step is not None else steps[-1]
    ev = [e for e in events if e["step"] == step]
    if not ev:
        sys.exit(f"plot_gradsync: error: step {step} is not in {a.trace} (it has {steps})")
    layers = [1e3 * e["t"] for e in ev if e["event"] == "layer"]
    bwd = [1e3 * e["t"] for e in ev if e["event"] == "backward_end"]
    starts = {e["bucket"]: 1e3 * e["t"] for e in ev if e["event"] == "bucket_start"}
    ends = {e["bucket"]: 1e3 * e["t"] for e in ev if e["event"] == "bucket_end"}
    buckets = sorted(starts, reverse=True)  # started from the buffer's end
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(buckets) + 2.2))
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
    ax.set_xlabel("ms since the step began (dotted: a layer's gradients final)")
    ax.set_title(a.title or f"gradient buckets, step {step}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    n_early = sum(1 for b in buckets if bwd and starts[b] < bwd[0])
    last = max(ends.values()) if ends else float("nan")
    print(f"plot_gradsync: step {step}: {len(buckets)} buckets, {n_early} started before the "
          f"backward ended ({bwd[0] if bwd else float('nan'):.2f} ms), last done at {last:.2f} ms;"
          f" wrote {a.out}")


if __name__ == "__main__":
    main()
