#!/usr/bin/env bash
# bench_mnist.sh - times mpitrain against PyTorch on the MNIST MLP of
# configs/mnist_mlp.ini: same data file, model, optimizer, batch and threads.
#
# Runs mpitrain and scripts/bench_mnist_torch.py alternately (mpitrain, torch,
# mpitrain, torch, ...) --runs times each and prints the median ms/step of each,
# every run's ms/step, the final test accuracy and the ratio mpitrain/torch.
# Then extra single runs on 2 cores: mpitrain under `mpirun -np 2` (1 thread
# per rank), mpitrain as 1 rank with 2 threads, and torch with 2 threads.
# Both tools time the same scope per step (batch gather from memory, forward, loss, backward, gradient all-reduce for mpitrain,
# optimizer step), skip the first 5 steps and exclude evaluation.
# Builds and fetches nothing; see docs/BENCHMARKS.md for results.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
BIN="${MPITRAIN:-$ROOT/build/mpitrain}"
PY="${PYTHON:-/usr/bin/python3}"
DATA="$ROOT/data/mnist.h5"
THREADS=1
STEPS=1250
BATCH=64
RUNS=3
LAYERS=784,256,128,10
PASSIVE=0
EXTRA=1

usage() {
    cat <<EOF
usage: scripts/bench_mnist.sh [--threads N] [--steps N] [--data FILE] [options]

Times mpitrain and PyTorch (scripts/bench_mnist_torch.py) on the same MNIST MLP
($LAYERS, AdamW, batch $BATCH) and prints a table of ms/step.

  --threads N     compute threads for both tools (default 1): run.threads=N for
                  mpitrain, torch.set_num_threads(N) for torch, and
                  OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N for both
  --steps N       optimizer steps per run (default 1250 = 10 epochs of 8,000)
  --batch N       samples per step (default 64)
  --runs N        timed runs of each tool, alternating (default 3); median shown
  --data FILE     HDF5 dataset (default: data/mnist.h5 in the repository;
                  make it with scripts/fetch_mnist.sh)
  --mpitrain PATH the binary (default: \$MPITRAIN or build/mpitrain)
  --python PATH   interpreter with torch and h5py (default: \$PYTHON or /usr/bin/python3)
  --passive       also set OMP_WAIT_POLICY=PASSIVE, for both tools
  --no-extra      skip the extra rows (mpitrain mpirun -np 2, torch 2 threads)
  -h, --help      print this help
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --threads) need_arg "$@"; THREADS="$2"; shift 2 ;;
        --steps) need_arg "$@"; STEPS="$2"; shift 2 ;;
        --batch) need_arg "$@"; BATCH="$2"; shift 2 ;;
        --runs) need_arg "$@"; RUNS="$2"; shift 2 ;;
        --data) need_arg "$@"; DATA="$2"; shift 2 ;;
        --mpitrain) need_arg "$@"; BIN="$2"; shift 2 ;;
        --python) need_arg "$@"; PY="$2"; shift 2 ;;
        --passive) PASSIVE=1; shift ;;
        --no-extra) EXTRA=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
need_uints THREADS STEPS BATCH RUNS
[[ "$STEPS" -gt 5 ]] || die "--steps must be > 5 (the first 5 steps are not timed)"
need_mpitrain "$BIN"
[[ -f "$DATA" ]] || die "no dataset at $DATA (make it: scripts/fetch_mnist.sh, or pass --data FILE)"
DATA=$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")
[[ -x "$PY" ]] || die "no python interpreter at $PY (pass --python PATH)"
"$PY" -c 'import torch, h5py, numpy' 2>/dev/null ||
    die "$PY cannot import torch, h5py and numpy (pass --python PATH)"
TORCH_SCRIPT="$ROOT/scripts/bench_mnist_torch.py"
[[ -f "$TORCH_SCRIPT" ]] || die "missing $TORCH_SCRIPT"
if [[ "$EXTRA" -eq 1 ]]; then
    command -v mpirun >/dev/null || die "mpirun not found (or pass --no-extra)"
    [[ $((BATCH % 2)) -eq 0 ]] || die "--batch must be even for the mpirun -np 2 row (or pass --no-extra)"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench_mnist.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# env_for N: the environment both tools run with at N threads.
env_for() {
    local s="OMP_NUM_THREADS=$1 OPENBLAS_NUM_THREADS=$1"
    [[ "$PASSIVE" -eq 1 ]] && s+=" OMP_WAIT_POLICY=PASSIVE"
    [[ -n "${OPENBLAS_CORETYPE:-}" ]] && s+=" OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE"
    echo "$s"
}

MPI_ENV="$MT_MPI_ROOT_ENV"
MPI_X_EXTRA=""
[[ "$PASSIVE" -eq 1 ]] && MPI_X_EXTRA+=" -x OMP_WAIT_POLICY"
[[ -n "${OPENBLAS_CORETYPE:-}" ]] && MPI_X_EXTRA+=" -x OPENBLAS_CORETYPE"
NPROC=$(nproc)
[[ "$NPROC" -lt 2 ]] && MPI_ENV+=" OMPI_MCA_rmaps_base_oversubscribe=1"

# Keys passed explicitly so that a change to configs/mnist_mlp.ini cannot make
# the two sides differ silently; they match bench_mnist_torch.py's defaults.
MT_SETS=(--set "data.path=$DATA" --set "train.steps=$STEPS" --set "train.global_batch=$BATCH"
    --set "model.kind=mlp" --set "model.layers=$LAYERS" --set "model.activation=relu"
    --set "optim.kind=adamw" --set "optim.lr=0.001" --set "optim.beta1=0.9"
    --set "optim.beta2=0.999" --set "optim.eps=1e-8" --set "optim.weight_decay=0.01"
    --set "optim.grad_clip=0" --set "optim.schedule=constant" --set "optim.warmup_steps=0"
    --set "train.shuffle=true" --set "train.eval_every=0" --set "run.log_every=1000000")

RUN_N=0
# run_mpitrain THREADS NP LOG: one mpitrain run (NP ranks via mpirun when NP > 1).
run_mpitrain() {
    local t="$1" np="$2" log="$3" dir
    RUN_N=$((RUN_N + 1))
    dir="$TMP/runs$RUN_N"
    local cmd=("$BIN" train --config "$ROOT/configs/mnist_mlp.ini" "${MT_SETS[@]}"
        --set "run.dir=$dir" --set "run.threads=$t")
    if [[ "$np" -gt 1 ]]; then
        # shellcheck disable=SC2046,SC2086
        env $(env_for "$t") $MPI_ENV mpirun -np "$np" \
            -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS ${MPI_X_EXTRA} \
            "${cmd[@]}" >"$log" 2>&1 || run_failed mpitrain "$log"
    else
        # shellcheck disable=SC2046,SC2086
        env $(env_for "$t") "${cmd[@]}" >"$log" 2>&1 || run_failed mpitrain "$log"
    fi
    rm -rf "$dir"
}

# run_torch THREADS LOG
run_torch() {
    local t="$1" log="$2"
    # shellcheck disable=SC2046,SC2086
    env $(env_for "$t") "$PY" "$TORCH_SCRIPT" --data "$DATA" --steps "$STEPS" --batch "$BATCH" \
        --threads "$t" --layers "$LAYERS" >"$log" 2>&1 || run_failed torch "$log"
}

run_failed() { fail "the $1 run failed" "$2"; } # run_failed TOOL LOG

# ms_of TOOL LOG / acc_of TOOL LOG: the numbers each tool prints at the end.
ms_of() {
    local v
    v=$(ms_per_step "$1" "$2")
    [[ -n "$v" ]] || run_failed "$1" "$2"
    echo "$v"
}
acc_of() {
    local v
    v=$(sed -n 's/^final test accuracy: \([0-9.]*%\).*/\1/p' "$2" | tail -n 1)
    [[ -n "$v" ]] || run_failed "$1" "$2"
    echo "$v"
}

# ---- header ----
echo "# bench_mnist.sh  $(date '+%Y-%m-%d %H:%M:%S %Z')"
host_line "$NPROC"
MT_VERSION=$("$BIN" --version 2>/dev/null || true)
MT_BLAS=$(sed -n 's/^BLAS: *//p' <<<"$MT_VERSION" | head -n 1)
mpitrain_line "$MT_VERSION" "$BIN"
echo "torch: $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null) ($PY)"
echo "data: $DATA"
echo "workload: MLP $LAYERS relu, AdamW lr 1e-3 wd 0.01 (weights only), batch $BATCH," \
    "$STEPS steps, ms/step excludes the first 5 steps and evaluation"
echo "runs: $RUNS of each, alternating mpitrain/torch; median reported"
echo

# ---- main comparison ----
MT_MS=() TO_MS=() MT_ACC="" TO_ACC=""
for ((i = 1; i <= RUNS; i++)); do
    run_mpitrain "$THREADS" 1 "$TMP/mt$i.log"
    v=$(ms_of mpitrain "$TMP/mt$i.log")
    MT_MS+=("$v")
    MT_ACC=$(acc_of mpitrain "$TMP/mt$i.log")
    run_torch "$THREADS" "$TMP/to$i.log"
    v=$(ms_of torch "$TMP/to$i.log")
    TO_MS+=("$v")
    TO_ACC=$(acc_of torch "$TMP/to$i.log")
    echo "run $i/$RUNS: mpitrain ${MT_MS[-1]} ms/step, torch ${TO_MS[-1]} ms/step" >&2
done
MT_MED=$(median "${MT_MS[@]}")
TO_MED=$(median "${TO_MS[@]}")
TO_BLAS=$(sed -n 's/.*| BLAS \(.*\)/\1/p' "$TMP/to1.log" | head -n 1)

if [[ "$EXTRA" -eq 1 ]]; then
    run_mpitrain 1 2 "$TMP/mt_np2.log"
    X_MT_MS=$(ms_of mpitrain "$TMP/mt_np2.log")
    X_MT_ACC=$(acc_of mpitrain "$TMP/mt_np2.log")
    run_mpitrain 2 1 "$TMP/mt_t2.log"
    X_MT2_MS=$(ms_of mpitrain "$TMP/mt_t2.log")
    X_MT2_ACC=$(acc_of mpitrain "$TMP/mt_t2.log")
    run_torch 2 "$TMP/to_t2.log"
    X_TO_MS=$(ms_of torch "$TMP/to_t2.log")
    X_TO_ACC=$(acc_of torch "$TMP/to_t2.log")
fi

# ---- table ----
row() { printf '| %-34s | %9s | %-26s | %13s |\n' "$@"; }
row "tool" "ms/step" "all runs (ms/step)" "test accuracy"
row "----------------------------------" "--------:" "--------------------------" "------------:"
row "mpitrain, 1 rank x $THREADS thread(s)" "$MT_MED" "${MT_MS[*]}" "$MT_ACC"
row "torch, $THREADS thread(s)" "$TO_MED" "${TO_MS[*]}" "$TO_ACC"
if [[ "$EXTRA" -eq 1 ]]; then
    row "mpitrain, mpirun -np 2 x 1 thread" "$X_MT_MS" "$X_MT_MS (1 run)" "$X_MT_ACC"
    row "mpitrain, 1 rank x 2 threads" "$X_MT2_MS" "$X_MT2_MS (1 run)" "$X_MT2_ACC"
    row "torch, 2 threads" "$X_TO_MS" "$X_TO_MS (1 run)" "$X_TO_ACC"
fi
echo
echo "ratio mpitrain/torch at $THREADS thread(s): $(ratio "$MT_MED" "$TO_MED") (medians; goal <= 1.0)"
[[ "$EXTRA" -eq 1 ]] &&
    echo "ratio mpitrain (-np 2 x 1 thread) / torch (2 threads): $(ratio "$X_MT_MS" "$X_TO_MS") (single runs)" &&
    echo "ratio mpitrain (1 rank x 2 threads) / torch (2 threads): $(ratio "$X_MT2_MS" "$X_TO_MS") (single runs)"
echo
echo "environment:"
echo "  mpitrain, $THREADS thread(s): $(env_for "$THREADS"), --set run.threads=$THREADS"
echo "  torch, $THREADS thread(s):    $(env_for "$THREADS"), torch.set_num_threads($THREADS) + openblas_set_num_threads($THREADS)"
if [[ "$EXTRA" -eq 1 ]]; then
    echo "  mpitrain -np 2:       $(env_for 1) $MPI_ENV (exported to ranks with -x), --set run.threads=1; mpirun's default binding"
    echo "  mpitrain, 2 threads:  $(env_for 2), --set run.threads=2"
    echo "  torch, 2 threads:     $(env_for 2), torch.set_num_threads(2) + openblas_set_num_threads(2)"
fi
echo "  OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE:-unset (auto-detected)}"
echo "  BLAS, mpitrain: ${MT_BLAS:-unknown} ($(ldd "$BIN" 2>/dev/null | sed -n 's/.*=> \([^ ]*openblas[^ ]*\).*/\1/p' | head -n 1))"
echo "  BLAS, torch:    ${TO_BLAS:-unknown}"
