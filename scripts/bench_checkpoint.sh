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
# writes exactly as many bytes --repeats times before the mpitrain run and
# --repeats times after it, timed from start to exit.
#
# Both writers keep the same files: mpitrain runs with checkpoint.keep_last=K
# (--keep, default 2) and dd writes a new file each time, deleting the one K
# runs back. This matters on a virtual machine whose memory is lent by the
# host page by page: page cache that was never used before (or was handed
# back) costs a host fault per page, and writing into it runs at a fraction of
# the speed of writing into page cache just freed by a deleted file. dd
# overwriting one file would always get the fast case, mpitrain keeping every
# checkpoint always the slow one. --keep 0 keeps every file for both.
# Prints the medians and the ratio mpitrain/dd (goal >= 0.7).
# Builds nothing; fetches MNIST only if the data file is missing. See
# docs/BENCHMARKS.md for results.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
BIN="${MPITRAIN:-$ROOT/build/mpitrain}"
DATA="$ROOT/build/data/mnist.h5"
DIR=""
LAYERS=784,8192,2048,10
REPEATS=10
KEEP=2
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
  --repeats N     checkpoints written by mpitrain, and dd runs before and
                  after it (default $REPEATS each); medians shown
  --keep K        files each writer keeps: checkpoint.keep_last=K for
                  mpitrain, dd deletes its file of K runs back (default $KEEP;
                  0 keeps all). "steady" medians leave out each writer's
                  first K + 1 runs, which must fill page cache never used
                  before (with --keep 0 every run does, and none is left out)
  --np N          MPI ranks (default $NP; global batch is 32 x N)
  --mpitrain PATH the binary (default: \$MPITRAIN or build/mpitrain)
  -h, --help      print this help

Environment passed to the ranks as set: HDF5_USE_FILE_LOCKING, OMPI_MCA_io
(e.g. romio321 or ompio) and other OMPI_MCA_* variables.
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --data) need_arg "$@"; DATA="$2"; shift 2 ;;
        --dir) need_arg "$@"; DIR="$2"; shift 2 ;;
        --layers) need_arg "$@"; LAYERS="$2"; shift 2 ;;
        --repeats) need_arg "$@"; REPEATS="$2"; shift 2 ;;
        --keep) need_arg "$@"; KEEP="$2"; shift 2 ;;
        --np) need_arg "$@"; NP="$2"; shift 2 ;;
        --mpitrain) need_arg "$@"; BIN="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
need_uints REPEATS
[[ "$KEEP" =~ ^[0-9]+$ ]] || die "--keep: non-negative integer expected, got '$KEEP'"
WARM=0 # runs that fill never-used page cache: the first KEEP + 1 (none left out with --keep 0)
[[ "$KEEP" -gt 0 ]] && WARM=$((KEEP + 1))
[[ "$REPEATS" -gt "$WARM" ]] || die "--repeats must be more than --keep + 1 ($WARM)"
need_uints NP
[[ "$LAYERS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)+$ ]] || die "--layers: comma-separated widths expected, got '$LAYERS'"
need_mpitrain "$BIN"
command -v mpirun >/dev/null || die "mpirun not found"
command -v dd >/dev/null || die "dd not found"
[[ -z "$DIR" ]] && DIR="$ROOT/build"
[[ -d "$DIR" ]] || die "--dir: no directory $DIR"
ensure_mnist "$DATA" "$BIN"
DATA=$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")

# before OMP_NUM_THREADS=1 is exported below: GNU nproc honours it
NPROC=$(nproc_all)
WORK=$(mktemp -d "$DIR/bench_checkpoint.XXXXXX")
WORK=$(cd "$WORK" && pwd)
trap 'rm -rf "$WORK"' EXIT

mpi_env_oversubscribe
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
MPI_X=(-x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS)
[[ -n "${HDF5_USE_FILE_LOCKING:-}" ]] && MPI_X+=(-x HDF5_USE_FILE_LOCKING)

mbps() { awk -v b="$1" -v s="$2" 'BEGIN {printf "%.1f", b / 1e6 / s}'; }

# ---- header ----
FSTYPE=$(stat -f -c %T "$WORK")
echo "# bench_checkpoint.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
host_line "$NPROC"
mpitrain_line "$("$BIN" --version 2>/dev/null)" "$BIN"
echo "mpi: $(mpirun --version 2>/dev/null | head -n 1), io component: ${OMPI_MCA_io:-default}," \
    "HDF5_USE_FILE_LOCKING: ${HDF5_USE_FILE_LOCKING:-unset}"
echo "dir: $WORK ($FSTYPE, $(df -h --output=avail "$WORK" | tail -n 1 | tr -d ' ') free)"
echo "workload: mpirun -np $NP, MLP $LAYERS, AdamW, global batch $((32 * NP)), 1 thread per rank," \
    "checkpoint every step x $REPEATS; dd bs=4M conv=fsync x $REPEATS before and after;" \
    "each keeps its last $KEEP files (0: all); medians"
echo

# ---- mpitrain runs ----
LOG="$WORK/mpitrain.log"
RUNDIR="$WORK/runs"
# run_mpitrain STEPS KEEP: checkpoint every step
run_mpitrain() {
    rm -rf "$RUNDIR"
    mpirun -np "$NP" "${MPI_X[@]}" "$BIN" train --config "$ROOT/configs/mnist_mlp.ini" \
        --set "data.path=$DATA" --set "run.dir=$RUNDIR" --set "run.threads=1" \
        --set "run.log_every=1000000" --set "model.layers=$LAYERS" --set "optim.kind=adamw" \
        --set "train.steps=$1" --set "train.global_batch=$((32 * NP))" --set "train.eval_every=0" \
        --set "checkpoint.dir=" --set "checkpoint.every_steps=1" --set "checkpoint.every_seconds=0" \
        --set "checkpoint.keep_last=$2" --set "checkpoint.keep_every=0" --set "checkpoint.save_final=false" \
        --set "checkpoint.resume=none" >"$LOG" 2>&1 || fail "the mpitrain run failed" "$LOG"
}
abs_path() { if [[ "$1" == /* ]]; then echo "$1"; else echo "$ROOT/$1"; fi; }

# a one-checkpoint run for the file size dd must match (not timed)
echo "mpitrain: one checkpoint for its size ..." >&2
run_mpitrain 1 0
read -r _ _ _ _ _ path < <(ckpt_lines "$LOG")
path=$(abs_path "${path:-}")
[[ -f "$path" ]] || fail "no checkpoint file in the sizing run" "$LOG"
BYTES=$(stat -c %s "$path")
rm -rf "$RUNDIR"
[[ "$BYTES" -ge "$MIN_BYTES" ]] ||
    echo "note: checkpoint is $BYTES bytes, below the 200 MB the benchmark asks for (--layers)" >&2

# ---- dd, same bytes, same directory, same files kept ----
# dd_phase NAME: REPEATS timed dd runs, appending seconds to DD_S
DD_S=()
dd_phase() {
    local i old t0 t1
    for ((i = 1; i <= REPEATS; i++)); do
        echo "dd ($1): run $i/$REPEATS ..." >&2
        t0=$(now_ns)
        dd if=/dev/zero of="$WORK/dd_$i.bin" bs=4M count="$BYTES" iflag=count_bytes conv=fsync \
            2>"$WORK/dd.log" || fail "dd failed" "$WORK/dd.log"
        t1=$(now_ns)
        [[ $(stat -c %s "$WORK/dd_$i.bin") -eq "$BYTES" ]] || fail "dd wrote a different size" "$WORK/dd.log"
        old=$((i - KEEP))
        if [[ "$KEEP" -gt 0 && "$old" -ge 1 ]]; then rm -f "$WORK/dd_$old.bin"; fi
        DD_S+=("$(secs_between "$t0" "$t1")")
    done
    rm -f "$WORK"/dd_*.bin
}

# ---- dd, mpitrain, dd ----
dd_phase before
echo "mpitrain: writing $REPEATS checkpoints ..." >&2
run_mpitrain "$REPEATS" "$KEEP"
mapfile -t CK < <(ckpt_lines "$LOG")
[[ "${#CK[@]}" -eq "$REPEATS" ]] || fail "expected $REPEATS checkpoint lines, found ${#CK[@]}" "$LOG"
W_S=() WH_S=()
for line in "${CK[@]}"; do
    read -r _ _ ws hs _ path <<<"$line"
    path=$(abs_path "$path")
    if [[ -f "$path" ]]; then # the last KEEP are still there
        b=$(stat -c %s "$path")
        [[ "$b" -eq "$BYTES" ]] || echo "note: checkpoint sizes differ ($BYTES, $b)" >&2
    fi
    W_S+=("$ws")
    WH_S+=("$(awk -v a="$ws" -v b="$hs" 'BEGIN {printf "%.3f", a + b}')")
done
rm -rf "$RUNDIR"
dd_phase after

# ---- table ----
# Steady state: each writer's runs after its first WARM, the ones that had to
# fill page cache never used before (all files still kept); the same rule for
# mpitrain and for each dd phase.
steady() { # steady ARRAY_NAME FROM COUNT: elements FROM+WARM .. FROM+COUNT-1
    local -n arr=$1
    printf '%s\n' "${arr[@]:$(($2 + WARM)):$(($3 - WARM))}"
}
mapfile -t W_ST < <(steady W_S 0 "$REPEATS")
mapfile -t WH_ST < <(steady WH_S 0 "$REPEATS")
mapfile -t DD_ST < <(steady DD_S 0 "$REPEATS"; steady DD_S "$REPEATS" "$REPEATS")
row() { printf '| %-33s | %9s | %8s | %9s | %8s |\n' "$@"; }
stats() { # stats LABEL ALL_ARRAY STEADY_ARRAY
    local -n all=$2 st=$3
    local ma ms
    ma=$(median "${all[@]}")
    ms=$(median "${st[@]}")
    row "$1" "$ma" "$(mbps "$BYTES" "$ma")" "$ms" "$(mbps "$BYTES" "$ms")"
}
row "writer ($BYTES bytes)" "all: s" "MB/s" "steady: s" "MB/s"
row "---------------------------------" "--------:" "-------:" "--------:" "-------:"
stats "mpitrain -np $NP, write" W_S W_ST
stats "mpitrain -np $NP, write + sha256" WH_S WH_ST
stats "dd bs=4M conv=fsync" DD_S DD_ST
echo
echo "runs (s), in order:"
echo "  mpitrain write:     ${W_S[*]}"
echo "  mpitrain + sha256:  ${WH_S[*]}"
echo "  dd before:          ${DD_S[*]:0:$REPEATS}"
echo "  dd after:           ${DD_S[*]:$REPEATS}"
echo
r_all=$(ratio "$(median "${DD_S[@]}")" "$(median "${W_S[@]}")")
r_st=$(ratio "$(median "${DD_ST[@]}")" "$(median "${W_ST[@]}")")
r_sth=$(ratio "$(median "${DD_ST[@]}")" "$(median "${WH_ST[@]}")")
echo "ratio mpitrain/dd throughput, write, steady state: $r_st (goal >= $GOAL)"
echo "ratio mpitrain/dd throughput, write, all runs:     $r_all"
echo "ratio mpitrain/dd throughput, write + sha256, steady state: $r_sth"
echo "(medians; MB = 10^6 bytes; mpitrain times from its checkpoint lines, dd timed start to"
echo " exit; steady state leaves out each writer's first $WARM runs, see --help)"
