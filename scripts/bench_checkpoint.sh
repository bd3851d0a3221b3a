#!/usr/bin/env bash
# bench_checkpoint.sh - what a checkpoint costs: mpitrain's write throughput
# against dd writing the same number of bytes to the same directory, and how
# long the training stands still for it, with checkpoint.async = false and
# = true side by side (issue 18's acceptance figures).
#
# Two mpitrain runs under `mpirun -np N` (default 2) train a large MLP (default
# 784,8192,2048,10: 23.2M parameters, a ~290 MB checkpoint of weights + AdamW
# m and v) with the same checkpoints: one every --interval steps (default 20),
# --repeats of them, and --interval - 1 steps after the last, so that every
# write, the last too, runs beside training:
#   sync   checkpoint.async = false: each write stops the training; rank 0
#          hashes the file in a background thread while it trains on;
#   async  checkpoint.async = true: each rank copies the rows it writes to a
#          staging buffer (the training's stall) and a thread writes the same
#          file while the training goes on; rank 0 then hashes it.
# Both runs are made by every invocation, not one behind an option: each
# acceptance figure is a ratio of one run to the other or of both to the same
# dd runs, and comparing figures of separate invocations on a shared machine
# would compare its load as well.
# The interval leaves each write and hash time to finish before the next is
# due (here a ~290 MB write beside training took ~10 steps); a checkpoint
# that had to wait for the one in flight is counted, and a note asks for a
# longer --interval.
#
# The script parses rank 0's "checkpoint:" lines (scripts/lib.sh, ckpt_lines):
# "in T s" is file create to durable rename (collective parallel HDF5 write,
# fsync on every rank, rename by rank 0), "sha256 H s" is rank 0 hashing the
# finished file afterwards, "training stalled S s" how long the training stood
# still for it (sync: the write; async: the staging copy). Each run's run.json
# (result.checkpoints) gives the mean step time with a checkpoint job in
# flight (write or hash) and without one. Then, in the same directory,
# `dd if=/dev/zero conv=fsync` writes exactly as many bytes --repeats times
# before the two mpitrain runs and --repeats times after them, back to back,
# timed from start to exit; and --repeats times more after a pause before
# each, as long as the sync run's --interval steps (see below).
#
# All writers keep the same files: mpitrain runs with checkpoint.keep_last=K
# (--keep, default 2) and dd writes a new file each time, deleting the one K
# runs back. This matters on a virtual machine whose memory is lent by the
# host page by page: page cache that was never used before (or was handed
# back) costs a host fault per page, and writing into it runs at a fraction of
# the speed of writing into page cache just freed by a deleted file. dd
# overwriting one file would always get the fast case, mpitrain keeping every
# checkpoint always the slow one. --keep 0 keeps every file for all.
# Pages freed are handed back within a second or two too: writes with pauses
# between them, as checkpoints every --interval steps have, run at the slow
# speed again (279 MB files, dd with 3 s pauses: 0.7-1.1 s each; back to back: 0.2 s).
# So mpitrain's throughput is set against the dd runs with the same pauses;
# the ratio against dd back to back is printed too (the figure of the
# earlier version of this script, whose checkpoints came back to back:
# --interval 1 measures that again, the async run then waiting each time).
#
# Prints the medians and these ratios (goals of issue 18; printed, never
# asserted: on a small shared machine the writer threads take cores from the
# training, and the numbers say how much):
#   stall       async stall per checkpoint / (sync write + sha256)  <= 0.05
#   step time   async run, step with a write in flight / without    <= 1.10
#   throughput  mpitrain/dd (with pauses), sync write >= 0.7; async no lower
# Stall medians leave out the first checkpoint (it allocates and faults in
# the staging buffer); write medians ("steady") the first K + 1 (see --keep).
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
INTERVAL=20
KEEP=2
NP=2
GOAL=0.7
GOAL_STALL=0.05
GOAL_STEP=1.10
MIN_BYTES=200000000

usage() {
    cat <<EOF
usage: scripts/bench_checkpoint.sh [--np N] [--repeats N] [--interval N] [--layers L] [--dir DIR] [options]

Measures what mpitrain's checkpoints cost (mpirun -np N, parallel HDF5), with
checkpoint.async = false and = true in one invocation: the write throughput
against dd writing the same number of bytes to the same directory, and the
training's stall and step time. Prints, never asserts, the ratios:
  async stall / (sync write + sha256)      goal <= $GOAL_STALL
  async step time, write in flight / none  goal <= $GOAL_STEP
  mpitrain/dd write throughput             goal >= $GOAL (sync), async no lower
(dd once back to back, before and after the mpitrain runs, and once with the
pauses checkpoints have between them: on a VM that hands freed page cache
back to the host, pauses make writes slower; see the script's header)

  --data FILE     HDF5 MNIST dataset (default: build/data/mnist.h5; if missing,
                  made with scripts/fetch_mnist.sh --out FILE)
  --dir DIR       where the checkpoints and dd's file go: a fresh folder
                  bench_checkpoint.XXXXXX is made inside DIR and removed at the
                  end (default DIR: build/ in the repository, so the repository's
                  filesystem is measured, not a possibly RAM-backed \$TMPDIR)
  --layers L      MLP widths (default $LAYERS, ~290 MB per checkpoint;
                  a checkpoint holds 3 x 4 bytes per parameter)
  --repeats N     checkpoints written by each mpitrain run (sync, async), and
                  dd runs before and after them (default $REPEATS each, at least
                  2); medians shown
  --interval N    steps between checkpoints, both runs (default $INTERVAL): long
                  enough for one write and hash to end before the next is due
                  (a checkpoint that waited is counted and noted); each run
                  trains repeats x interval + interval - 1 steps; dd's last
                  phase pauses interval x the sync run's ms/step before each
                  run. --interval 1: checkpoints back to back, as dd's first
                  phases (the async run then waits each time)
  --keep K        files each writer keeps: checkpoint.keep_last=K for
                  mpitrain, dd deletes its file of K runs back (default $KEEP;
                  0 keeps all). "steady" medians leave out each writer's
                  first K + 1 runs, which must fill page cache never used
                  before (with --keep 0 every run does, and none is left out);
                  stall medians leave out the first checkpoint (the staging
                  buffer's allocation)
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
        --interval) need_arg "$@"; INTERVAL="$2"; shift 2 ;;
        --keep) need_arg "$@"; KEEP="$2"; shift 2 ;;
        --np) need_arg "$@"; NP="$2"; shift 2 ;;
        --mpitrain) need_arg "$@"; BIN="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
need_uints REPEATS INTERVAL
[[ "$KEEP" =~ ^[0-9]+$ ]] || die "--keep: non-negative integer expected, got '$KEEP'"
WARM=0 # runs that fill never-used page cache: the first KEEP + 1 (none left out with --keep 0)
[[ "$KEEP" -gt 0 ]] && WARM=$((KEEP + 1))
[[ "$REPEATS" -gt "$WARM" ]] || die "--repeats must be more than --keep + 1 ($WARM)"
[[ "$REPEATS" -ge 2 ]] || die "--repeats must be at least 2 (stall medians leave out the first)"
need_uints NP
[[ "$LAYERS" =~ ^[1-9][0-9]*(,[1-9][0-9]*)+$ ]] || die "--layers: comma-separated widths expected, got '$LAYERS'"
need_mpitrain "$BIN"
command -v mpirun >/dev/null || die "mpirun not found"
command -v dd >/dev/null || die "dd not found"
[[ -x /usr/bin/python3 ]] || die "/usr/bin/python3 not found (it reads run.json)"
[[ -z "$DIR" ]] && DIR="$ROOT/build"
[[ -d "$DIR" ]] || die "--dir: no directory $DIR"
ensure_mnist "$DATA" "$BIN"
DATA=$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")
STEPS=$((REPEATS * INTERVAL + INTERVAL - 1)) # the last write runs beside training too

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
add() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a + b}'; }

# ---- header ----
FSTYPE=$(stat -f -c %T "$WORK")
echo "# bench_checkpoint.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
host_line "$NPROC"
mpitrain_line "$("$BIN" --version 2>/dev/null)" "$BIN"
echo "mpi: $(mpirun --version 2>/dev/null | head -n 1), io component: ${OMPI_MCA_io:-default}," \
    "HDF5_USE_FILE_LOCKING: ${HDF5_USE_FILE_LOCKING:-unset}"
echo "dir: $WORK ($FSTYPE, $(df -h --output=avail "$WORK" | tail -n 1 | tr -d ' ') free)"
echo "workload: mpirun -np $NP, MLP $LAYERS, AdamW, global batch $((32 * NP)), 1 thread per rank," \
    "$STEPS steps, a checkpoint every $INTERVAL x $REPEATS, checkpoint.async false then true;" \
    "dd bs=4M conv=fsync x $REPEATS before and after; each keeps its last $KEEP files (0: all); medians"
echo

# ---- mpitrain runs ----
LOG="$WORK/mpitrain.log"
RUNDIR="$WORK/runs"
# run_mpitrain ASYNC STEPS EVERY KEEP: checkpoint.async=ASYNC, one checkpoint every EVERY steps
run_mpitrain() {
    rm -rf "$RUNDIR"
    mpirun -np "$NP" "${MPI_X[@]}" "$BIN" train --config "$ROOT/configs/mnist_mlp.ini" \
        --set "data.path=$DATA" --set "run.dir=$RUNDIR" --set "run.threads=1" \
        --set "run.log_every=1000000" --set "model.layers=$LAYERS" --set "optim.kind=adamw" \
        --set "train.steps=$2" --set "train.global_batch=$((32 * NP))" --set "train.eval_every=0" \
        --set "checkpoint.dir=" --set "checkpoint.every_steps=$3" --set "checkpoint.every_seconds=0" \
        --set "checkpoint.keep_last=$4" --set "checkpoint.keep_every=0" --set "checkpoint.save_final=false" \
        --set "checkpoint.resume=none" --set "checkpoint.async=$1" >"$LOG" 2>&1 || fail "the mpitrain run failed" "$LOG"
}
abs_path() { if [[ "$1" == /* ]]; then echo "$1"; else echo "$ROOT/$1"; fi; }
# ck_record: the run's result.checkpoints (run.json) as "waits wait_s
# step_ms_idle step_ms_writing steps_writing staging_mb"
ck_record() {
    /usr/bin/python3 -c 'import glob, json, sys
f = glob.glob(sys.argv[1] + "/*/*/run.json")
if not f:
    sys.exit("bench_checkpoint.sh: error: no run.json under " + sys.argv[1])
c = json.load(open(f[0]))["result"]["checkpoints"]
print("%d %.3f %.1f %.1f %d %.1f" % (c["waits"], c["wait_s"], c["step_ms_idle"],
      c["step_ms_writing"], c["steps_writing"], c["staging_mb"]))' "$RUNDIR"
}

# a one-checkpoint run for the file size dd must match (not timed)
echo "mpitrain: one checkpoint for its size ..." >&2
run_mpitrain false 1 1 0
read -r _ _ _ _ _ path < <(ckpt_lines "$LOG")
path=$(abs_path "${path:-}")
[[ -f "$path" ]] || fail "no checkpoint file in the sizing run" "$LOG"
BYTES=$(stat -c %s "$path")
rm -rf "$RUNDIR"
[[ "$BYTES" -ge "$MIN_BYTES" ]] ||
    echo "note: checkpoint is $BYTES bytes, below the 200 MB the benchmark asks for (--layers)" >&2

# ---- dd, same bytes, same directory, same files kept ----
# dd_phase NAME ARRAY PAUSE: REPEATS timed dd runs, each after a pause of
# PAUSE seconds (0: back to back), appending seconds to ARRAY
DD_S=() DD_P=()
dd_phase() {
    local -n out=$2
    local i old t0 t1
    for ((i = 1; i <= REPEATS; i++)); do
        echo "dd ($1): run $i/$REPEATS ..." >&2
        [[ "$3" == 0 ]] || sleep "$3"
        t0=$(now_ns)
        dd if=/dev/zero of="$WORK/dd_$i.bin" bs=4M count="$BYTES" iflag=count_bytes conv=fsync \
            2>"$WORK/dd.log" || fail "dd failed" "$WORK/dd.log"
        t1=$(now_ns)
        [[ $(stat -c %s "$WORK/dd_$i.bin") -eq "$BYTES" ]] || fail "dd wrote a different size" "$WORK/dd.log"
        old=$((i - KEEP))
        if [[ "$KEEP" -gt 0 && "$old" -ge 1 ]]; then rm -f "$WORK/dd_$old.bin"; fi
        out+=("$(secs_between "$t0" "$t1")")
    done
    rm -f "$WORK"/dd_*.bin
}

# mpitrain_phase ASYNC: the run with checkpoint.async = ASYNC; its seconds
# per checkpoint in PH_W (write), PH_WH (write + sha256) and PH_ST (training
# stalled), its result.checkpoints (ck_record) in PH_REC
mpitrain_phase() {
    local line ws hs ss path b
    run_mpitrain "$1" "$STEPS" "$INTERVAL" "$KEEP"
    mapfile -t CK < <(ckpt_lines "$LOG")
    [[ "${#CK[@]}" -eq "$REPEATS" ]] ||
        fail "checkpoint.async=$1: expected $REPEATS checkpoint lines, found ${#CK[@]}" "$LOG"
    PH_W=() PH_WH=() PH_ST=()
    for line in "${CK[@]}"; do
        read -r _ _ ws hs ss path <<<"$line"
        [[ "$ss" != - ]] || fail "no 'training stalled' in the checkpoint lines (a binary before checkpoint.async?)" "$LOG"
        path=$(abs_path "$path")
        if [[ -f "$path" ]]; then # the last KEEP are still there
            b=$(stat -c %s "$path")
            [[ "$b" -eq "$BYTES" ]] || echo "note: checkpoint sizes differ ($BYTES, $b)" >&2
        fi
        PH_W+=("$ws") PH_WH+=("$(add "$ws" "$hs")") PH_ST+=("$ss")
    done
    PH_REC=$(ck_record)
    rm -rf "$RUNDIR"
}

# ---- dd, mpitrain sync, mpitrain async, dd, dd with pauses ----
dd_phase before DD_S 0
echo "mpitrain (sync): $STEPS steps, $REPEATS checkpoints ..." >&2
mpitrain_phase false
SYNC_W=("${PH_W[@]}") SYNC_WH=("${PH_WH[@]}") SYNC_ST=("${PH_ST[@]}") SYNC_REC=$PH_REC
echo "mpitrain (async): $STEPS steps, $REPEATS checkpoints ..." >&2
mpitrain_phase true
ASYNC_W=("${PH_W[@]}") ASYNC_WH=("${PH_WH[@]}") ASYNC_ST=("${PH_ST[@]}") ASYNC_REC=$PH_REC
dd_phase after DD_S 0
read -r S_WAITS S_WAIT_S S_IDLE S_BUSY S_NBUSY _ <<<"$SYNC_REC"
read -r A_WAITS A_WAIT_S A_IDLE A_BUSY A_NBUSY A_STAGING <<<"$ASYNC_REC"
# dd again with the pause the checkpoints have between them: --interval
# steps of the sync run (a write into page cache freed a second or more
# before may find it handed back to the host, see above)
PAUSE=$(awk -v n="$INTERVAL" -v ms="$S_IDLE" 'BEGIN {printf "%.1f", n * ms / 1e3}')
if [[ "$PAUSE" != 0.0 ]]; then dd_phase "$PAUSE s apart" DD_P "$PAUSE"; fi

# ---- tables ----
# Steady state: each writer's runs after its first WARM, the ones that had to
# fill page cache never used before (all files still kept); the same rule for
# mpitrain and for each dd phase.
steady() { # steady ARRAY_NAME FROM COUNT: elements FROM+WARM .. FROM+COUNT-1
    local -n arr=$1
    printf '%s\n' "${arr[@]:$(($2 + WARM)):$(($3 - WARM))}"
}
mapfile -t SYNC_W_STEADY < <(steady SYNC_W 0 "$REPEATS")
mapfile -t SYNC_WH_STEADY < <(steady SYNC_WH 0 "$REPEATS")
mapfile -t ASYNC_W_STEADY < <(steady ASYNC_W 0 "$REPEATS")
mapfile -t ASYNC_WH_STEADY < <(steady ASYNC_WH 0 "$REPEATS")
# shellcheck disable=SC2034 # DD_ST and DD_P_ST: read through vs's name reference
{
    mapfile -t DD_ST < <(steady DD_S 0 "$REPEATS"; steady DD_S "$REPEATS" "$REPEATS")
    DD_P_ST=()
    if [[ "${#DD_P[@]}" -gt 0 ]]; then mapfile -t DD_P_ST < <(steady DD_P 0 "$REPEATS"); fi
}
row() { printf '| %-36s | %9s | %8s | %9s | %8s |\n' "$@"; }
stats() { # stats LABEL ALL_ARRAY STEADY_ARRAY
    local -n all=$2 part=$3
    local ma ms
    ma=$(median "${all[@]}")
    ms=$(median "${part[@]}")
    row "$1" "$ma" "$(mbps "$BYTES" "$ma")" "$ms" "$(mbps "$BYTES" "$ms")"
}
row "writer ($BYTES bytes)" "all: s" "MB/s" "steady: s" "MB/s"
row "------------------------------------" "--------:" "-------:" "--------:" "-------:"
stats "mpitrain -np $NP sync, write" SYNC_W SYNC_W_STEADY
stats "mpitrain -np $NP sync, write + sha256" SYNC_WH SYNC_WH_STEADY
stats "mpitrain -np $NP async, write" ASYNC_W ASYNC_W_STEADY
stats "mpitrain -np $NP async, write + sha256" ASYNC_WH ASYNC_WH_STEADY
stats "dd bs=4M conv=fsync, back to back" DD_S DD_ST
[[ "${#DD_P[@]}" -gt 0 ]] && stats "dd bs=4M conv=fsync, $PAUSE s apart" DD_P DD_P_ST
echo

# The training's side: the stall per checkpoint (median, the first left out)
# and run.json's waits and step times.
SYNC_STALL=$(median "${SYNC_ST[@]:1}")
ASYNC_STALL=$(median "${ASYNC_ST[@]:1}")
# step_ratio BUSY IDLE: BUSY / IDLE, or n/a when a run had no step of one kind (0 ms)
step_ratio() { if awk -v a="$1" -v b="$2" 'BEGIN {exit !(a > 0 && b > 0)}'; then ratio "$1" "$2"; else echo n/a; fi; }
S_STEP=$(step_ratio "$S_BUSY" "$S_IDLE")
A_STEP=$(step_ratio "$A_BUSY" "$A_IDLE")
trow() { printf '| %-5s | %8s | %5s | %7s | %8s | %12s | %13s | %8s |\n' "$@"; }
trow "run" "stall: s" "waits" "wait: s" "ms/step," "ms/step, job" "steps with a" "in flight"
trow "" "" "" "" "no job" "in flight" "job in flight" "/ none"
trow "-----" "-------:" "----:" "------:" "-------:" "-----------:" "------------:" "-------:"
trow sync "$SYNC_STALL" "$S_WAITS" "$S_WAIT_S" "$S_IDLE" "$S_BUSY" "$S_NBUSY" "$S_STEP"
trow async "$ASYNC_STALL" "$A_WAITS" "$A_WAIT_S" "$A_IDLE" "$A_BUSY" "$A_NBUSY" "$A_STEP"
echo "(a job in flight: sync, rank 0's sha256; async, the write, then the sha256; ms/step:"
echo " run.json's means over the steps after the first 5, checkpoint stalls left out)"
echo
echo "runs (s), in order:"
runs() { printf '  %-17s %s\n' "$1:" "$2"; } # runs LABEL VALUES
runs "sync write" "${SYNC_W[*]}"
runs "sync + sha256" "${SYNC_WH[*]}"
runs "sync stall" "${SYNC_ST[*]}"
runs "async write" "${ASYNC_W[*]}"
runs "async + sha256" "${ASYNC_WH[*]}"
runs "async stall" "${ASYNC_ST[*]}"
runs "dd before" "${DD_S[*]:0:$REPEATS}"
runs "dd after" "${DD_S[*]:$REPEATS}"
runs "dd $PAUSE s apart" "${DD_P[*]:-(not run: no pause)}"
echo

# throughput ratios: dd's time / mpitrain's (medians); DD ARRAY, mpitrain's times
vs() {
    local -n d=$1
    if [[ "${#d[@]}" -gt 0 ]]; then ratio "$(median "${d[@]}")" "$(median "${@:2}")"; else echo n/a; fi
}
echo "issue 18's figures (printed, not asserted):"
echo "  stall: async stall / (sync write + sha256), steady: $(ratio "$ASYNC_STALL" "$(median "${SYNC_WH_STEADY[@]}")" 3) (goal <= $GOAL_STALL)"
echo "  step time: async run, write in flight / none:       $A_STEP (goal <= $GOAL_STEP)"
echo "  throughput mpitrain/dd, write, steady, dd $PAUSE s apart as the checkpoints are:" \
    "sync $(vs DD_P_ST "${SYNC_W_STEADY[@]}") (goal >= $GOAL), async $(vs DD_P_ST "${ASYNC_W_STEADY[@]}") (goal: no lower than sync's)"
echo "  the same, dd back to back (as before checkpoint.async, with checkpoints back to back too):" \
    "sync $(vs DD_ST "${SYNC_W_STEADY[@]}"), async $(vs DD_ST "${ASYNC_W_STEADY[@]}")"
echo "more:"
echo "  step time: sync run, sha256 in flight / none:       $S_STEP"
echo "  throughput mpitrain/dd, write, all runs, dd $PAUSE s apart: sync $(vs DD_P "${SYNC_W[@]}")," \
    "async $(vs DD_P "${ASYNC_W[@]}")"
echo "  throughput mpitrain/dd, write + sha256, steady, dd $PAUSE s apart: sync $(vs DD_P_ST "${SYNC_WH_STEADY[@]}")," \
    "async $(vs DD_P_ST "${ASYNC_WH_STEADY[@]}")"
echo "  async staging buffer: $A_STAGING MB on rank 0"
echo "(medians; MB = 10^6 bytes; mpitrain times from its checkpoint lines, dd timed start to"
echo " exit; steady state leaves out each writer's first $WARM runs, stall medians the first"
echo " checkpoint, see --help)"
if [[ "$A_WAITS" -gt 0 ]]; then
    echo "note: $A_WAITS async checkpoint(s) waited for the one in flight, $A_WAIT_S s in all, a stop" \
        "of the training that the stall figures leave out; raise --interval (now $INTERVAL)"
fi
