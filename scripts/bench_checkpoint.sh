#!/usr/bin/env bash
# bench_checkpoint.sh - checkpoint write throughput of mpitrain against dd
# writing the same number of bytes to the same directory.
#
# One mpitrain run under `mpirun -np N` (default 2) trains a large MLP (default
# 784,8192,2048,10: 23.2M parameters, a ~290 MB checkpoint of weights + AdamW
# m and v) for --repeats steps with checkpoint.every_steps=1, so it writes
# --repeats checkpoints. The script parses rank 0's "checkpoint:" lines: "in X s"
# is file create to durable rename (collective parallel HDF5 write, fsync on
# every rank, rename by rank 0), "sha256 Y s" is rank 0 hashing the finished
# file afterwards. Then, in the same directory, `dd if=/dev/zero conv=fsync`
# writes exactly as many bytes --repeats times, timed from start to exit.
# Prints the medians and the ratio mpitrain/dd (goal >= 0.7).
# Builds nothing; fetches MNIST only if the data file is missing. See
# docs/BENCHMARKS.md for results.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN="${MPITRAIN:-$ROOT/build/mpitrain}"
DATA="$ROOT/build/data/mnist.h5"
DIR=""
LAYERS=784,8192,2048,10
REPEATS=3
NP=2
GOAL=0.7
MIN_BYTES=200000000

usage() {
    cat <<EOF
usage: scripts/bench_checkpoint.sh [--np N] [--repeats N] [--layers L] [--dir DIR] [options]

Measures mpitrain's checkpoint write throughput (mpirun -np N, parallel HDF5)
against dd writing the same number of bytes to the same directory, in one run,
and prints the ratio mpitrain/dd (goal >= $GOAL).

  --data FILE     HDF5 MNIST dataset (default: build/data/mnist.h5; if missing,
                  made with scripts/fetch_mnist.sh --out FILE)
  --dir DIR       where the checkpoints and dd's file go: a fresh folder
                  bench_checkpoint.XXXXXX is made inside DIR and removed at the
                  end (default DIR: build/ in the repository, so the repository's
                  filesystem is measured, not a possibly RAM-backed \$TMPDIR)
  --layers L      MLP widths (default $LAYERS, ~290 MB per checkpoint;
                  a checkpoint holds 3 x 4 bytes per parameter)
  --repeats N     checkpoints written by mpitrain and dd runs (default $REPEATS);
                  medians shown
  --np N          MPI ranks (default $NP; global batch is 32 x N)
  --mpitrain PATH the binary (default: \$MPITRAIN or build/mpitrain)
  -h, --help      print this help

Environment passed to the ranks as set: HDF5_USE_FILE_LOCKING, OMPI_MCA_io
(e.g. romio321 or ompio) and other OMPI_MCA_* variables.
EOF
}

die() { echo "bench_checkpoint.sh: error: $*" >&2; exit 2; }
need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
is_uint() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) need_arg "$@"; DATA="$2"; shift 2 ;;
        --dir) need_arg "$@"; DIR="$2"; shift 2 ;;
        --layers) need_arg "$@"; LAYERS="$2"; shift 2 ;;
        --repeats) need_arg "$@"; REPEATS="$2"; shift 2 ;;
        --np) need_arg "$@"; NP="$2"; shift 2 ;;
        --mpitrain) need_arg "$@"; BIN="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
is_uint "$REPEATS" || die "--repeats: positive integer expected, got '$REPEATS'"
is_uint "$NP" || die "--np: positive integer expected, got '$NP'"
[[ "$LAYERS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)+$ ]] || die "--layers: comma-separated widths expected, got '$LAYERS'"
[[ -x "$BIN" ]] || die "no mpitrain binary at $BIN (build it: cmake -S . -B build && cmake --build build)"
command -v mpirun >/dev/null || die "mpirun not found"
command -v dd >/dev/null || die "dd not found"
[[ -z "$DIR" ]] && DIR="$ROOT/build"
[[ -d "$DIR" ]] || die "--dir: no directory $DIR"
if [[ ! -f "$DATA" ]]; then
    echo "bench_checkpoint.sh: no dataset at $DATA; making it with scripts/fetch_mnist.sh" >&2
    mkdir -p "$(dirname "$DATA")"
    "$ROOT/scripts/fetch_mnist.sh" --out "$DATA" --mpitrain "$BIN" >&2 ||
        die "scripts/fetch_mnist.sh failed (pass --data FILE)"
fi
DATA=$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")

# before OMP_NUM_THREADS=1 is exported below: GNU nproc honours it
NPROC=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
WORK=$(mktemp -d "$DIR/bench_checkpoint.XXXXXX")
WORK=$(cd "$WORK" && pwd)
trap 'rm -rf "$WORK"' EXIT

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MPI_X=(-x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS)
[[ -n "${HDF5_USE_FILE_LOCKING:-}" ]] && MPI_X+=(-x HDF5_USE_FILE_LOCKING)

fail() {
    echo "bench_checkpoint.sh: error: $1; output:" >&2
    tail -n 30 "$2" >&2
    exit 1
}
now_ns() { date +%s%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m=int((NR+1)/2); print (NR%2) ? v[m] : (v[m]+v[m+1])/2}'; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.1f", b / 1e6 / s}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# ---- header ----
CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
FSTYPE=$(stat -f -c %T "$WORK")
echo "# bench_checkpoint.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "machine: ${CPU:-unknown CPU}, nproc $NPROC, $(uname -sr)"
echo "mpitrain: $("$BIN" --version 2>/dev/null | head -n 2 | tr -s ' \n' ' ')($BIN)"
echo "mpi: $(mpirun --version 2>/dev/null | head -n 1), io component: ${OMPI_MCA_io:-default}," \
    "HDF5_USE_FILE_LOCKING: ${HDF5_USE_FILE_LOCKING:-unset}"
echo "dir: $WORK ($FSTYPE, $(df -h --output=avail "$WORK" | tail -n 1 | tr -d ' ') free)"
echo "workload: mpirun -np $NP, MLP $LAYERS, AdamW, global batch $((32 * NP)), 1 thread per rank," \
    "checkpoint every step x $REPEATS; dd bs=4M conv=fsync x $REPEATS; medians"
echo

# ---- mpitrain ----
LOG="$WORK/mpitrain.log"
RUNDIR="$WORK/runs"
echo "mpitrain: writing $REPEATS checkpoints ..." >&2
mpirun -np "$NP" "${MPI_X[@]}" "$BIN" train --config "$ROOT/configs/mnist_mlp.ini" \
    --set "data.path=$DATA" --set "run.dir=$RUNDIR" --set "run.threads=1" \
    --set "run.log_every=1000000" --set "model.layers=$LAYERS" --set "optim.kind=adamw" \
    --set "train.steps=$REPEATS" --set "train.global_batch=$((32 * NP))" --set "train.eval_every=0" \
    --set "checkpoint.dir=" --set "checkpoint.every_steps=1" --set "checkpoint.every_seconds=0" \
    --set "checkpoint.keep_last=0" --set "checkpoint.keep_every=0" --set "checkpoint.save_final=false" \
    --set "checkpoint.resume=none" >"$LOG" 2>&1 || fail "the mpitrain run failed" "$LOG"

# checkpoint: step S -> PATH (X MB in T s = R MB/s; sha256 H s)
mapfile -t CK < <(sed -n 's/^checkpoint: step [0-9]* -> \(.*\) ([0-9.]* [kMG]*B in \([0-9.]*\) s = .*; sha256 \([0-9.]*\) s)$/\1 \2 \3/p' "$LOG")
[[ "${#CK[@]}" -eq "$REPEATS" ]] || fail "expected $REPEATS checkpoint lines, found ${#CK[@]}" "$LOG"
W_S=() WH_S=() BYTES=""
for line in "${CK[@]}"; do
    read -r path ws hs <<<"$line"
    [[ "$path" == /* ]] || path="$ROOT/$path"
    [[ -f "$path" ]] || fail "checkpoint file $path not found" "$LOG"
    b=$(stat -c %s "$path")
    [[ -z "$BYTES" || "$b" -eq "$BYTES" ]] || echo "note: checkpoint sizes differ ($BYTES, $b)" >&2
    BYTES=$b
    W_S+=("$ws")
    WH_S+=("$(awk -v a="$ws" -v b="$hs" 'BEGIN {printf "%.3f", a + b}')")
done
rm -rf "$RUNDIR"
[[ "$BYTES" -ge "$MIN_BYTES" ]] ||
    echo "note: checkpoint is $BYTES bytes, below the 200 MB the benchmark asks for (--layers)" >&2

# ---- dd, same bytes, same directory ----
DD_S=()
for ((i = 1; i <= REPEATS; i++)); do
    echo "dd: run $i/$REPEATS ..." >&2
    t0=$(now_ns)
    dd if=/dev/zero of="$WORK/dd.bin" bs=4M count="$BYTES" iflag=count_bytes conv=fsync \
        2>"$WORK/dd.log" || fail "dd failed" "$WORK/dd.log"
    t1=$(now_ns)
    [[ $(stat -c %s "$WORK/dd.bin") -eq "$BYTES" ]] || fail "dd wrote a different size" "$WORK/dd.log"
    rm -f "$WORK/dd.bin"
    DD_S+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')")
done

# ---- table ----
W_MED=$(median "${W_S[@]}")
WH_MED=$(median "${WH_S[@]}")
DD_MED=$(median "${DD_S[@]}")
W_MBPS=$(mbps "$BYTES" "$W_MED")
WH_MBPS=$(mbps "$BYTES" "$WH_MED")
DD_MBPS=$(mbps "$BYTES" "$DD_MED")
row() { printf '| %-33s | %9s | %8s | %-23s |\n' "$@"; }
row "writer ($BYTES bytes)" "s (med)" "MB/s" "all runs (s)"
row "---------------------------------" "--------:" "-------:" "-----------------------"
row "mpitrain -np $NP, write" "$W_MED" "$W_MBPS" "${W_S[*]}"
row "mpitrain -np $NP, write + sha256" "$WH_MED" "$WH_MBPS" "${WH_S[*]}"
row "dd bs=4M conv=fsync" "$DD_MED" "$DD_MBPS" "${DD_S[*]}"
echo
echo "ratio mpitrain/dd, write:          $(ratio "$W_MBPS" "$DD_MBPS") (goal >= $GOAL)"
echo "ratio mpitrain/dd, write + sha256: $(ratio "$WH_MBPS" "$DD_MBPS")"
echo "(MB = 10^6 bytes; mpitrain times from its checkpoint lines, dd timed start to exit)"
