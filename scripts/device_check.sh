#!/usr/bin/env bash
# device_check.sh - on a machine with a GPU: every check of the CUDA backend,
# with the binaries built on the Debian build machine (scripts/bundle.sh),
# and the GPT-2 124M benchmark; prints a short table last. Builds nothing.
#
# usage: scripts/device_check.sh [--bundle DIR] [--out DIR] [--no-bench]
#                                [--bench-args "ARGS"]
#   --bundle DIR   default: bundle (DIR.tar.xz is unpacked when DIR is missing)
#   --out DIR      logs and results (default: $OUT when set, else a temp folder)
#   --no-bench     skip the benchmark
#   --bench-args   extra arguments for scripts/bench_gpt_gpu.sh (e.g. --no-compile)
#
# Checks, in order:
#   1. test_backend_cmp: every CUDA op against the CPU op (fp32 within 1e-5,
#      then bf16 matmul and attention within 1e-2)
#   2. test_backend_bf16: the CPU's bf16 emulation (the reference of 1.)
#   3. scripts/device_trajectory.sh: a small GPT's 10-step losses on CUDA vs
#      the CPU (fp32 1e-4, bf16 2e-2), dp2 and tp2.pp2 on the one GPU, and a
#      CUDA checkpoint resumed on the CPU
#   4. scripts/bench_gpt_gpu.sh: GPT-2 124M shape, tokens/s and MFU of
#      mpitrain and PyTorch
# Exit status: 0 all passed, 1 a check failed, 77 no usable GPU.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
BUNDLE=$ROOT/bundle
OUTDIR=${OUT:-} BENCH=1 BENCH_ARGS=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundle) [[ $# -ge 2 ]] || die "--bundle needs a folder"; BUNDLE=$2; shift 2 ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a folder"; OUTDIR=$2; shift 2 ;;
        --no-bench) BENCH=0; shift ;;
        --bench-args) [[ $# -ge 2 ]] || die "--bench-args needs a value"; BENCH_ARGS=$2; shift 2 ;;
        -h | --help) header_help 2 23; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
# The bundle's programs, MPI and libraries, and this machine's CUDA
# libraries (unpacks BUNDLE.tar.xz when the folder is missing).
# shellcheck source=scripts/device_env.sh
source "$ROOT/scripts/device_env.sh" "$BUNDLE" || die "no usable bundle at $BUNDLE"
BUNDLE=$MT_BUNDLE
CUDA_LIBS=${MT_CUDA_LIBS:-the system library folders}
[[ -x "$BUNDLE/bin/test_backend_cmp" ]] || die "no $BUNDLE/bin/test_backend_cmp (run scripts/bundle.sh on the build machine)"

[[ -n "$OUTDIR" ]] || OUTDIR=$(mktemp -d)
mkdir -p "$OUTDIR"
echo "# device_check.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  (logs: $OUTDIR)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
echo "cuda libraries: $CUDA_LIBS"
ROWS=()
status=0
check_failed() { status=1; } # (lib.sh's fail would exit: here every check runs)

# 1. every CUDA op against the CPU
"$BUNDLE/bin/test_backend_cmp" >"$OUTDIR/backend_cmp.log" 2>&1
rc=$?
tail -15 "$OUTDIR/backend_cmp.log"
case $rc in
    0) ROWS+=("| backend comparison, fp32 1e-5 and bf16 1e-2 (every op, CUDA vs CPU) | passed: $(tail -1 "$OUTDIR/backend_cmp.log" | cut -c1-120) |") ;;
    77)
        echo "| backend comparison | skipped: $(grep -m1 SKIPPED "$OUTDIR/backend_cmp.log" | cut -c1-150) |"
        echo "device_check.sh: no usable GPU; nothing else to check"
        exit 77 ;;
    *) ROWS+=("| backend comparison | FAILED (exit $rc): $(grep -c '^FAIL' "$OUTDIR/backend_cmp.log") failed checks, e.g. $(grep -m1 '^FAIL' "$OUTDIR/backend_cmp.log" | cut -c1-100) |"); check_failed ;;
esac

# 2. the CPU's bf16 emulation (the reference of the bf16 comparison)
if [[ -x "$BUNDLE/bin/test_backend_bf16" ]]; then
    "$BUNDLE/bin/test_backend_bf16" >"$OUTDIR/backend_bf16.log" 2>&1
    rc=$?
    [[ $rc = 0 ]] && ROWS+=("| CPU bf16 emulation | passed: $(tail -1 "$OUTDIR/backend_bf16.log" | cut -c1-100) |") ||
        { ROWS+=("| CPU bf16 emulation | FAILED (exit $rc) |"); check_failed; }
fi

# 3. loss trajectories, multi-rank on one GPU, resume across devices
"$ROOT/scripts/device_trajectory.sh" "$BUNDLE/bin/mpitrain" "$OUTDIR/trajectory" \
    >"$OUTDIR/trajectory.log" 2>&1 || check_failed
grep -v '^|' "$OUTDIR/trajectory.log" | tail -20
while IFS= read -r line; do ROWS+=("$line"); done < <(grep '^|' "$OUTDIR/trajectory.log")

# 4. the benchmark (prints its own table; its log keeps it)
if [[ $BENCH = 1 ]]; then
    # shellcheck disable=SC2086  # BENCH_ARGS is a list of words
    "$ROOT/scripts/bench_gpt_gpu.sh" --bundle "$BUNDLE" --out "$OUTDIR/bench" $BENCH_ARGS \
        >"$OUTDIR/bench.log" 2>&1
    rc=$?
    [[ $rc = 0 ]] && ROWS+=("| GPT-2 124M benchmark | ran: table below |") ||
        { ROWS+=("| GPT-2 124M benchmark | FAILED or partial (exit $rc): table below |"); check_failed; }
fi

echo
echo "| check | result |"
echo "| --- | --- |"
printf '%s\n' "${ROWS[@]}"
if [[ $BENCH = 1 ]]; then
    echo
    sed -n '/^| /,$p' "$OUTDIR/bench.log" | tail -25
fi
exit $status
