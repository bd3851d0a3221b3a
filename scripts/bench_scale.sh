#!/usr/bin/env bash
# bench_scale.sh - measures what the scaling model (scripts/scale_model.py)
# needs on this machine, checks the model against it at -np 1, 2 and 4, and
# projects the data-parallel step to 8 .. 1,024 GPUs (issue 18, part 3).
#
# Measured here (GPT: 4 layers, 8 heads, n_embd 256, T 128; weak scaling:
# --batch sequences per rank, 1 thread per rank, 1 micro-batch):
#   - mpitrain's ms/step at -np 1, and at -np 2 and 4 with the flat sum and
#     with buckets overlapped (-np 4 oversubscribes 2 cores: compute slows);
#   - the floor: bench/allreduce_floor, a plain MPI_Allreduce of one float and
#     of the gradient at -np 2 and 4 (the latency and bandwidth fit);
#   - mpitrain's flat sum on the critical path at -np 2 (run.json's
#     result.gradsync.exposed_tail_critical_ms) against the floor: a factor;
#   - one rank's checkpoint write and SHA-256 times (its "checkpoint:" lines).
# Then scale_model.py MEASURED.json prints the check and the projection
# (its --help has the model's parameters: pass them after --, e.g.
# `scripts/bench_scale.sh -- --bw-gbs 50 --gpu-step-ms 150`).
#
# usage: scripts/bench_scale.sh [--steps N] [--batch N] [--png FILE] [--keep DIR]
#                               [--bin PATH] [--floor PATH] [-- MODEL-OPTIONS]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
BIN="${MPITRAIN:-$ROOT/build/mpitrain}"
FLOOR=""
STEPS=15
BATCH=8
PNG=""
KEEP=""
LAYERS=4
HEADS=8
EMBD=256
SEQ=128
VOCAB=256
TEXT=""
MODEL_ARGS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --steps) need_arg "$@"; STEPS=$2; shift 2 ;;
        --batch) need_arg "$@"; BATCH=$2; shift 2 ;;
        --png) need_arg "$@"; PNG=$(abspath "$2"); shift 2 ;;
        --keep) need_arg "$@"; KEEP=$(abspath "$2"); shift 2 ;;
        --bin) need_arg "$@"; BIN=$2; shift 2 ;;
        --floor) need_arg "$@"; FLOOR=$2; shift 2 ;;
        --) shift; MODEL_ARGS=("$@"); break ;;
        -h | --help) header_help 2 22; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
need_uints STEPS BATCH
[[ "$STEPS" -gt 5 ]] || die "--steps must be > 5 (the first 5 steps are not timed)"
need_mpitrain "$BIN"
BIN=$(abspath "$BIN")
FLOOR=$(allreduce_floor_bin "$BIN" "$FLOOR")
command -v mpirun >/dev/null || die "mpirun not found"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench_scale.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
OUT=${KEEP:-$TMP}
mkdir -p "$OUT"
mpi_env_oversubscribe
export OMPI_MCA_mpi_yield_when_idle=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
text_shards "$TEXT" "$TMP" "$BIN"

run() { # run NAME NP [--set ...]: one training; leaves $OUT/NAME.log and its run folder
    local name=$1 np=$2
    shift 2
    echo "run $name ..." >&2
    # shellcheck disable=SC2034 # the global batch, read by gpt_bench_sets
    local BATCH=$((BATCH * np))
    gpt_bench_sets
    timeout 900 mpirun -np "$np" --bind-to none "$BIN" train --config "$ROOT/configs/mnist_mlp.ini" \
        "${GPT_SETS[@]}" --set run.dir="$OUT/runs/$name" --set run.threads=1 \
        --set parallel.microbatches=1 "$@" >"$OUT/$name.log" 2>&1 || fail "run $name failed" "$OUT/$name.log"
}
FLAT=(--set parallel.bucket_mb=65536 --set parallel.overlap=false)
OVER=(--set parallel.bucket_mb=2 --set parallel.overlap=true)
run np1 1
run np2_flat 2 "${FLAT[@]}"
run np2_overlap 2 "${OVER[@]}"
run np4_flat 4 "${FLAT[@]}"
run np4_overlap 4 "${OVER[@]}"
run ckpt 1 --set checkpoint.every_steps=5 --set checkpoint.keep_last=2
params=$(sed -n 's/^model: .* | \([0-9]*\) parameters | .*/\1/p' "$OUT/np1.log" | head -n 1)
[[ -n "$params" ]] || fail "no parameter count in the np1 run's header" "$OUT/np1.log"
floor() { allreduce_floor "$FLOOR" "$1" "$2" "$OUT/floor_$1_$2.log" median; } # floor NP FLOATS
ckpt_lines "$OUT/ckpt.log" >"$OUT/ckpt_lines.txt"
echo "run floor ..." >&2
f2s=$(floor 2 1) f4s=$(floor 4 1) f2g=$(floor 2 "$params") f4g=$(floor 4 "$params")
/usr/bin/python3 - "$OUT" "$params" "$BATCH" "$(nproc_all)" "$(host_line "$(nproc_all)")" \
    "$f2s" "$f4s" "$f2g" "$f4g" >"$OUT/measured.json" <<'PY'
import glob, json, re, statistics, sys
out, params, batch, cores, machine = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
f2s, f4s, f2g, f4g = map(float, sys.argv[6:10])
def ms(name):
    m = re.findall(r"^time: ([0-9.]+) ms/step", open(f"{out}/{name}.log").read(), re.M)
    if not m:
        sys.exit(f"bench_scale.sh: error: no 'time:' line in {out}/{name}.log")
    return float(m[-1])
def gradsync(name, key):
    f = glob.glob(f"{out}/runs/{name}/*/*/run.json")
    if not f:
        sys.exit(f"bench_scale.sh: error: no run.json of run {name}")
    return json.load(open(f[0]))["result"]["gradsync"].get(key)
# "STEP MB WRITE_S HASH_S STALL_S PATH" per checkpoint (lib.sh's ckpt_lines)
ck = [l.split(maxsplit=5) for l in open(f"{out}/ckpt_lines.txt") if l.strip()]
if not ck:
    sys.exit(f"bench_scale.sh: error: no checkpoint line in {out}/ckpt.log")
crit = gradsync("np2_flat", "exposed_tail_critical_ms")
json.dump({
    "machine": machine, "cores": cores, "params": params, "grad_bytes": 4 * params,
    "per_rank_batch": batch,
    "step_ms": {"1": ms("np1"), "2_flat": ms("np2_flat"), "2_overlap": ms("np2_overlap"),
                "4_flat": ms("np4_flat"), "4_overlap": ms("np4_overlap")},
    "floor_small_ms": {"2": f2s, "4": f4s}, "floor_grad_ms": {"2": f2g, "4": f4g},
    "sum_factor": (crit / f2g) if crit else 1.0,
    "ckpt": {"bytes": statistics.median(float(c[1]) for c in ck) * 1e6,
             "write_s": statistics.median(float(c[2]) for c in ck),
             "hash_s": statistics.median(float(c[3]) for c in ck)},
}, sys.stdout, indent=1)
PY
png=()
[[ -n "$PNG" ]] && png=(--png "$PNG")
mpitrain_line "$("$BIN" --version)" "$BIN"
/usr/bin/python3 "$ROOT/scripts/scale_model.py" "$OUT/measured.json" "${png[@]}" "${MODEL_ARGS[@]}"
