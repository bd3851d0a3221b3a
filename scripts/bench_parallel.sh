#!/usr/bin/env bash
# bench_parallel.sh - step time, per-rank memory and pipeline bubble of every
# way mpitrain can lay out 4 ranks: dp4, tp4, pp4, dp2.tp2, dp2.pp2, tp2.pp2
# (docs/PARALLEL.md), on one GPT model, in one run.
#
# Data: byte-level token shards (vocab 256). By default the fortunes corpus of
# scripts/fetch_fortunes.sh (data/fortunes/fortunes_{train,val}_*.bin) when it
# is there, otherwise README.md and docs/*.md of the repository, concatenated
# and tokenized with `mpitrain data tokenize --bytes`; --text FILE tokenizes a
# file of your choice. This script installs and fetches nothing.
#
# Model (default): GPT, 4 layers, 8 heads (so tp = 4 divides them), n_embd 256,
# block_size = sequence length 128, no dropout, global batch 16 sequences,
# AdamW, no evaluation during training, no checkpoints, no registry.
#
# Micro-batches: every layout runs micro-batches of the same size, --micro
# sequences (default 4, the share of one dp4 replica), so
#   microbatches = global_batch / (dp x micro):
#   dp4 1, tp4 4, pp4 4, dp2.tp2 2, dp2.pp2 2, tp2.pp2 4.
# Why: every rank then multiplies matrices of the same row count (micro x T
# tokens) in every layout, and holds activations of micro-batches of the same
# size, so the differences in time and memory come from how the layout splits
# the model, not from different GEMM shapes or batch shares. A pipeline needs
# microbatches >= pp to keep its bubble small, and this gives 4 for pp4; the
# price is that tp4 and dp2.tp2 accumulate gradients over 4 and 2 micro-batches
# (more, smaller tensor-parallel all-reduces), and dp2.pp2 gets only 2.
#
# The 4-rank runs: `mpirun -np 4 --oversubscribe --bind-to none`, run.threads=1
# (OMP_NUM_THREADS = OPENBLAS_NUM_THREADS = 1) and OMPI_MCA_mpi_yield_when_idle=1,
# because on a 2-core machine 4 ranks share 2 cores: a rank waiting in MPI
# yields its core instead of spinning on it. Each rank runs under
# `/usr/bin/time -f "%M %U %S"` (GNU time, Debian package "time"): its peak
# RSS and CPU time.
# Every configuration runs --runs times (default 2), all of them once, then all
# again, and the run with the lowest ms/step is shown: the machine may be
# shared, and each run's "other load" (CPU used by other processes during it,
# from /proc/stat minus the ranks' own user + system time) says whether it was.
# Per layout the script reports:
#   - ms/step: the run's own "time: X ms/step" (first 5 steps excluded);
#   - model MB/rank: the largest "total MB" of the run's "per rank" table
#     (mpitrain's estimate of weights + gradients + AdamW state + activations);
#   - RSS MB/rank: the largest peak RSS (VmHWM) of the 4 ranks, which also
#     counts the MPI, HDF5 and OpenBLAS libraries and buffers, the data shard
#     pages touched and MPI shared-memory segments;
#   - bubble: measured = 1 - mean over stages of run.json's
#     result.pipeline.busy_fraction (fraction of the timed loop a stage's
#     rank 0 spent in forward/backward compute, tensor-parallel all-reduces
#     included), so the "bubble" also holds waits for the neighbour stages'
#     messages, the data-parallel all-reduce, the tied-embedding sum, the
#     optimizer step and the batch gather; theory = (pp-1)/(m+pp-1).
#     Oversubscribed, a stage's compute is slowed by the ranks sharing its
#     core, which inflates busy_fraction; hence also the 2-rank series below.
# The bubble series: 2 ranks, pp 2 (one rank per core, `--bind-to core`),
# 1f1b, microbatches 1, 2, 4, 8 of the same global batch, plus a dp2 run
# (pp 1: no bubble) whose 1 - busy_fraction is the share of the step outside
# forward/backward on this machine, the floor of the measured bubble.
# A reference row: 1 rank x 2 threads, same micro-batches (whole model).
# The final loss of every run is printed: the layouts compute the same thing
# (docs/PARALLEL.md: within ~1e-5 relative), so a different one is a bug.
# About 3 minutes on a quiet 2-core machine with the defaults. Builds nothing;
# results and their reading are in docs/BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
BIN="${MPITRAIN:-$ROOT/build/mpitrain}"
TEXT=""
STEPS=15
RUNS=2
LAYERS=4
HEADS=8
EMBD=256
SEQ=128
BATCH=16
MICRO=4
VOCAB=256
NP=4
LAYOUTS="dp4 tp4 pp4 dp2.tp2 dp2.pp2 tp2.pp2"
BUBBLE_MS="1 2 4 8"
DO_BUBBLE=1
DO_REF=1
RUN_TIMEOUT=240

usage() {
    cat <<EOF
usage: scripts/bench_parallel.sh [--steps N] [--micro N] [--text FILE] [options]

Trains one GPT on 4 MPI ranks under every layout (dp4 tp4 pp4 dp2.tp2 dp2.pp2
tp2.pp2) and prints, per layout, ms/step, the ratio to dp4, the largest
per-rank memory (mpitrain's estimate and measured peak RSS) and the pipeline
bubble (measured and theoretical); then the bubble of a 2-rank, 2-stage
pipeline against (pp-1)/(m+pp-1) for m = $BUBBLE_MS micro-batches.

  --steps N       optimizer steps per run (default $STEPS; the first 5 are not timed)
  --runs N        runs of every configuration, interleaved (default $RUNS); the one
                  with the lowest ms/step is shown (the machine may be shared)
  --micro N       sequences per micro-batch in every 4-rank layout (default $MICRO);
                  microbatches = batch / (dp x N)
  --layouts LIST  layouts to run, quoted and space-separated, each dpA.tpB.ppC
                  with factors multiplying to 4, omitted ones 1 (default: all six)
  --bubble-m LIST micro-batch counts of the 2-rank pp 2 series (default "$BUBBLE_MS")
  --no-bubble     skip the 2-rank bubble series
  --no-reference  skip the 1 rank x 2 threads reference row
  --text FILE     text to train on, tokenized byte by byte (default: the fortunes
                  shards in data/fortunes if present, else README.md + docs/*.md)
  --layers N      transformer blocks (default $LAYERS)
  --heads N       attention heads (default $HEADS)
  --embd N        channels, n_embd (default $EMBD)
  --seq N         sequence length T = block_size (default $SEQ)
  --batch N       global batch in sequences (default $BATCH)
  --timeout S     seconds before one run is killed as hung (default $RUN_TIMEOUT)
  --mpitrain PATH the binary (default: \$MPITRAIN or build/mpitrain)
  -h, --help      print this help
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --steps) need_arg "$@"; STEPS="$2"; shift 2 ;;
        --runs) need_arg "$@"; RUNS="$2"; shift 2 ;;
        --micro) need_arg "$@"; MICRO="$2"; shift 2 ;;
        --layouts) need_arg "$@"; LAYOUTS="$2"; shift 2 ;;
        --bubble-m) need_arg "$@"; BUBBLE_MS="$2"; shift 2 ;;
        --no-bubble) DO_BUBBLE=0; shift ;;
        --no-reference) DO_REF=0; shift ;;
        --text) need_arg "$@"; TEXT="$2"; shift 2 ;;
        --layers) need_arg "$@"; LAYERS="$2"; shift 2 ;;
        --heads) need_arg "$@"; HEADS="$2"; shift 2 ;;
        --embd) need_arg "$@"; EMBD="$2"; shift 2 ;;
        --seq) need_arg "$@"; SEQ="$2"; shift 2 ;;
        --batch) need_arg "$@"; BATCH="$2"; shift 2 ;;
        --timeout) need_arg "$@"; RUN_TIMEOUT="$2"; shift 2 ;;
        --mpitrain) need_arg "$@"; BIN="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
NPROC=$(nproc_all)
need_uints STEPS RUNS MICRO LAYERS HEADS EMBD SEQ BATCH RUN_TIMEOUT
[[ "$STEPS" -gt 5 ]] || die "--steps must be > 5 (the first 5 steps are not timed)"
[[ $((EMBD % HEADS)) -eq 0 ]] || die "--embd ($EMBD) must be divisible by --heads ($HEADS)"
for m in $BUBBLE_MS; do
    is_uint "$m" || die "--bubble-m: positive integers expected, got '$m'"
    [[ $((BATCH % m)) -eq 0 ]] || die "--bubble-m: $m does not divide the batch ($BATCH)"
done
need_mpitrain "$BIN"
command -v mpirun >/dev/null || die "mpirun not found"
command -v jq >/dev/null || die "jq not found (it reads run.json and metrics.jsonl; apt package jq)"
if [[ -n "$TEXT" ]]; then
    [[ -f "$TEXT" ]] || die "--text: no file $TEXT"
fi
TIME_BIN=/usr/bin/time
HAVE_TIME=0
if [[ -x "$TIME_BIN" ]] && "$TIME_BIN" -f %M -o /dev/null true 2>/dev/null; then
    HAVE_TIME=1
fi

# layout name -> "dp tp pp"
parse_layout() {
    local dp=1 tp=1 pp=1 part
    local IFS=.
    for part in $1; do
        case "$part" in
            dp[1-9]*) dp=${part#dp} ;;
            tp[1-9]*) tp=${part#tp} ;;
            pp[1-9]*) pp=${part#pp} ;;
            *) return 1 ;;
        esac
    done
    is_uint "$dp" && is_uint "$tp" && is_uint "$pp" || return 1
    echo "$dp $tp $pp"
}
for L in $LAYOUTS; do
    read -r dp tp pp < <(parse_layout "$L") || die "--layouts: bad layout '$L' (e.g. dp2.tp2)"
    [[ $((dp * tp * pp)) -eq $NP ]] || die "--layouts: $L is not $NP ranks"
    [[ $((BATCH % (dp * MICRO))) -eq 0 ]] || die "$L: batch $BATCH is not a multiple of dp x micro = $((dp * MICRO))"
    [[ $((HEADS % tp)) -eq 0 ]] || die "$L: tp $tp does not divide the $HEADS heads"
    [[ "$pp" -le "$LAYERS" ]] || die "$L: pp $pp is more than the $LAYERS layers"
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench_parallel.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

mpi_env
export OMPI_MCA_mpi_yield_when_idle=1
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
unset OMP_WAIT_POLICY

# ---- token shards ----
if [[ -z "$TEXT" ]] && compgen -G "$ROOT/data/fortunes/fortunes_train_[0-9]*.bin" >/dev/null &&
    compgen -G "$ROOT/data/fortunes/fortunes_val_[0-9]*.bin" >/dev/null; then
    TRAIN_GLOB="$ROOT/data/fortunes/fortunes_train_*.bin"
    VAL_GLOB="$ROOT/data/fortunes/fortunes_val_*.bin"
    TEXT_DESC="fortunes (data/fortunes, scripts/fetch_fortunes.sh)"
else
    text_shards "$TEXT" "$TMP" "$BIN"
fi
gpt_bench_sets

# ---- one run ----
# run_one NAME NP TP PP MICROBATCHES THREADS BIND: trains, leaves NAME.log,
# runs/NAME/.../run.json and rss/NAME.<rank> (peak RSS in KB) in $TMP
run_one() {
    local name=$1 np=$2 tp=$3 pp=$4 mb=$5 threads=$6 bind=$7
    local log="$TMP/$name.log" wrap=()
    mkdir -p "$TMP/rss"
    if [[ "$HAVE_TIME" -eq 1 ]]; then
        # each rank: GNU time writes "peak-RSS-KB user-s system-s" to rss/NAME.<world rank>
        wrap=(sh -c 'exec '"$TIME_BIN"' -f "%M %U %S" -o "$0.${OMPI_COMM_WORLD_RANK:-${PMIX_RANK:-$$}}" "$@"'
            "$TMP/rss/$name")
    fi
    local over=()
    [[ "$np" -gt "$NPROC" ]] && over=(--oversubscribe)
    echo "run $name: $np rank(s), tp $tp, pp $pp, $mb micro-batch(es), $threads thread(s) per rank ..." >&2
    cpu_busy >"$TMP/$name.cpu0"
    OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
        timeout -k 10 "$RUN_TIMEOUT" mpirun -np "$np" "${over[@]}" --bind-to "$bind" \
        -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS -x OMPI_MCA_mpi_yield_when_idle \
        "${wrap[@]}" "$BIN" train --config "$ROOT/configs/mnist_mlp.ini" --set "run.name=bench_parallel" \
        "${GPT_SETS[@]}" --set "parallel.tp=$tp" --set "parallel.pp=$pp" --set "parallel.microbatches=$mb" \
        --set "parallel.schedule=1f1b" \
        --set "run.threads=$threads" --set "run.dir=$TMP/runs/$name" --set "run.log_every=10" \
        >"$log" 2>&1 || fail "the $name run failed (exit $?)" "$log"
    cpu_busy >"$TMP/$name.cpu1"
}
# "wall-s busy-cpu-s" of the whole machine now, from /proc/stat
cpu_busy() {
    awk -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" -v now="$(date +%s.%N)" \
        '$1 == "cpu" {printf "%s %.2f\n", now, ($2 + $3 + $4 + $7 + $8 + $9) / hz}' /proc/stat 2>/dev/null || echo "0 0"
}
# cores' worth of CPU that other processes used during run NAME: the machine's
# busy CPU seconds minus the ranks' own user + system time, over the wall time
others_load() {
    local own
    [[ "$HAVE_TIME" -eq 1 ]] || { echo "?"; return; }
    own=$(cat "$TMP/rss/$1".* 2>/dev/null | awk 'NF == 3 && $1 ~ /^[0-9]+$/ {t += $2 + $3} END {printf "%.2f", t}')
    read -r w0 b0 <"$TMP/$1.cpu0"
    read -r w1 b1 <"$TMP/$1.cpu1"
    awk -v w="$(awk -v a="$w0" -v b="$w1" 'BEGIN {print b - a}')" -v b="$(awk -v a="$b0" -v b="$b1" 'BEGIN {print b - a}')" \
        -v o="$own" 'BEGIN {x = w > 0 ? (b - o) / w : 0; if (x < 0) x = 0; printf "%.2f", x}'
}

# results of run NAME, each on stdout
ms_of() {
    local v
    v=$(ms_per_step mpitrain "$TMP/$1.log")
    [[ -n "$v" ]] || fail "no ms/step in the $1 output" "$TMP/$1.log"
    printf '%.1f' "$v"
}
# per-rank "total MB" column of the "per rank" table (columns weights+grad,
# optimizer, gradsync, activations, total): the largest, and all (as "total
# (weights+grad+optimizer+gradsync + activations)")
model_mb_max() {
    awk '/^per rank/ {t = 1; next} t && /^ *[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+(-[0-9]+)? +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ *$/ {
        if ($NF > m) m = $NF; n++} t && /^[a-z]/ {t = 0} END {if (n) printf "%.1f", m; else print "?"}' "$TMP/$1.log"
}
model_mb_all() {
    awk '/^per rank/ {t = 1; next} t && /^ *[0-9]+ +[0-9]+ +[0-9]+ +[0-9]+(-[0-9]+)? +[0-9]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ *$/ {
        printf "%s%s (%.2f+%s)", (n++ ? " " : ""), $NF, $(NF - 4) + $(NF - 3) + $(NF - 2), $(NF - 1)} t && /^[a-z]/ {t = 0}' "$TMP/$1.log"
}
rss_all() { # peak RSS in MB of each rank, in rank order
    local r=0 out=""
    [[ "$HAVE_TIME" -eq 1 ]] || { echo "n/a"; return; }
    while [[ -f "$TMP/rss/$1.$r" ]]; do
        out+="$(awk '$1 ~ /^[0-9]+$/ {printf "%.1f", $1 / 1024}' "$TMP/rss/$1.$r") "
        r=$((r + 1))
    done
    echo "${out% }"
}
rss_max() {
    local all
    all=$(rss_all "$1")
    [[ "$all" == n/a || -z "$all" ]] && { echo "n/a"; return; }
    tr ' ' '\n' <<<"$all" | sort -g | tail -n 1
}
run_json() { find "$TMP/runs/$1" -name run.json | head -n 1; }
metrics() { find "$TMP/runs/$1" -name metrics.jsonl | head -n 1; }
bubble_measured() { jq -r '.result.pipeline.busy_fraction | 1 - add / length | . * 1000 | round / 1000' "$(run_json "$1")"; }
bubble_theory() { jq -r '.result.pipeline.bubble_theory | . * 1000 | round / 1000' "$(run_json "$1")"; }
busy_all() { jq -r '[.result.pipeline.busy_fraction[] | . * 1000 | round / 1000] | map(tostring) | join(" ")' "$(run_json "$1")"; }
peak_held() { jq -r '.result.pipeline.peak_held | map(tostring) | join(" ")' "$(run_json "$1")"; }
final_loss() { jq -rs 'map(select(.loss != null)) | last | .loss' "$(metrics "$1")"; }
layout_line() { sed -n 's/^layout: \(.*\) | [0-9]* thread(s) per rank.*/\1/p' "$TMP/$1.log" | head -n 1; }

# ---- header ----
MT_VERSION=$("$BIN" --version 2>/dev/null || true)
echo "# bench_parallel.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
host_line "$NPROC"
mpitrain_line "$MT_VERSION" "$BIN"
echo "model: gpt $LAYERS layers, $HEADS heads, n_embd $EMBD, T = block_size $SEQ, vocab $VOCAB, no dropout;" \
    "global batch $BATCH sequences; AdamW lr 1e-3 wd 0.01"
echo "data: $TEXT_DESC, byte-level"
echo "ranks: $NP per layout under mpirun -np $NP$([[ $NP -gt $NPROC ]] && echo " --oversubscribe") --bind-to none," \
    "1 thread each (run.threads=1), OMPI_MCA_mpi_yield_when_idle=1"
if [[ "$NP" -gt "$NPROC" ]]; then
    echo "NOTE: $NP ranks share $NPROC cores: each rank gets about $NPROC/$NP of a core, and every wait for" \
        "another rank is also a wait for the CPU; times are not what $NP cores would give"
fi
echo "micro-batches: $MICRO sequences each in every layout (microbatches = $BATCH / (dp x $MICRO)), schedule 1f1b"
echo "timing: $STEPS steps per run, first 5 excluded; $RUNS run(s) of each configuration, interleaved, best shown"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
echo "load average before: $LOAD0 (the machine is shared; each run's \"other load\" below is the CPU, in cores,"
echo "        that processes other than its ranks used during it: above ~0.2 the run was disturbed)"
if [[ "$HAVE_TIME" -eq 1 ]]; then
    echo "RSS: peak resident set (GNU time %M) of each rank; includes MPI/HDF5/OpenBLAS and shared-memory pages"
else
    echo "RSS: not measured ($TIME_BIN missing: apt package 'time')"
fi
echo "bubble: measured = 1 - mean over stages of busy_fraction (forward/backward compute share of the timed loop;"
echo "        the rest includes message waits, gradient all-reduce, optimizer step); theory = (pp-1)/(m+pp-1)"
echo

# ---- the runs: every job once, then every job again (--runs), so that a
# disturbance by other work hits one run of a job, not all of them ----
# job: NAME NP TP PP MICROBATCHES THREADS BIND
JOBS=()
declare -A MBS
for L in $LAYOUTS; do
    read -r dp tp pp < <(parse_layout "$L")
    MBS[$L]=$((BATCH / (dp * MICRO)))
    JOBS+=("$L $NP $tp $pp ${MBS[$L]} 1 none")
done
REF=""
if [[ "$DO_REF" -eq 1 ]]; then
    REF="ref1x2"
    MBS[$REF]=$((BATCH / MICRO))
    JOBS+=("$REF 1 1 1 ${MBS[$REF]} 2 none")
fi
BUBBLE_RUNS=()
if [[ "$DO_BUBBLE" -eq 1 ]]; then
    MBS[b2_dp2]=$((BATCH / 2 / MICRO > 0 ? BATCH / 2 / MICRO : 1))
    JOBS+=("b2_dp2 2 1 1 ${MBS[b2_dp2]} 1 core")
    BUBBLE_RUNS=(b2_dp2)
    for m in $BUBBLE_MS; do
        MBS[b2_m$m]=$m
        JOBS+=("b2_m$m 2 1 2 $m 1 core")
        BUBBLE_RUNS+=("b2_m$m")
    done
fi
for ((i = 1; i <= RUNS; i++)); do
    for j in "${JOBS[@]}"; do
        read -r name np tp pp mb th bind <<<"$j"
        run_one "${name}_r$i" "$np" "$tp" "$pp" "$mb" "$th" "$bind"
        echo "  ${name} run $i/$RUNS: $(ms_of "${name}_r$i") ms/step, other load $(others_load "${name}_r$i") cores" >&2
    done
done
# BEST[NAME]: its run with the lowest ms/step; every number of NAME's rows comes from that run
declare -A BEST ALLMS
for j in "${JOBS[@]}"; do
    read -r name _ <<<"$j"
    best="" all=""
    for ((i = 1; i <= RUNS; i++)); do
        r="${name}_r$i"
        all+="$(ms_of "$r") "
        if [[ -z "$best" ]] || awk -v a="$(ms_of "$r")" -v b="$(ms_of "$best")" 'BEGIN {exit !(a < b)}'; then
            best=$r
        fi
    done
    BEST[$name]=$best
    ALLMS[$name]=${all% }
done

# ---- tables ----
BASE_NAME=$([[ " $LAYOUTS " == *" dp4 "* ]] && echo dp4 || echo "${LAYOUTS%% *}")
BASE=$(ms_of "${BEST[$BASE_NAME]}")
# ms/step of run R, with a "!" when other processes used more than 0.2 cores during it
ms_flag() {
    local l
    l=$(others_load "$1")
    if [[ "$l" != "?" ]] && awk -v l="$l" 'BEGIN {exit !(l > 0.2)}'; then
        echo "$(ms_of "$1")!"
    else
        ms_of "$1"
    fi
}

row() { printf '| %-8s | %3s | %8s | %6s | %17s | %15s | %15s | %13s |\n' "$@"; }
echo "$NP ranks on $NPROC cores, 1 thread per rank (best of $RUNS run(s) by ms/step; all runs under details):"
echo
row "layout" "m" "ms/step" "vs $BASE_NAME" "max model MB/rank" "max RSS MB/rank" "bubble measured" "bubble theory"
row "--------" "--:" "-------:" "-----:" "----------------:" "--------------:" "--------------:" "------------:"
for L in $LAYOUTS ${REF:-}; do
    r=${BEST[$L]}
    read -r _ _ _ pp _ <<<"$(for j in "${JOBS[@]}"; do [[ "${j%% *}" == "$L" ]] && echo "$j"; done)"
    if [[ "$pp" -gt 1 ]]; then
        bub=$(bubble_measured "$r") bth=$(bubble_theory "$r")
    else
        bub="-" bth="-"
    fi
    label=$L
    [[ "$L" == "$REF" ]] && label="1 rank*"
    row "$label" "${MBS[$L]}" "$(ms_flag "$r")" "$(ratio "$(ms_of "$r")" "$BASE")" "$(model_mb_max "$r")" \
        "$(rss_max "$r")" "$bub" "$bth"
done
[[ -n "$REF" ]] &&
    echo "* reference: 1 rank x 2 threads (--bind-to none), the whole model on one rank, same micro-batches"
echo "m: micro-batches per step of each replica ($MICRO sequences each); !: other processes used > 0.2 cores during the run"

if [[ "$DO_BUBBLE" -eq 1 ]]; then
    echo
    echo "pipeline bubble, 2 ranks (one per core, --bind-to core), pp 2, 1f1b, batch $BATCH (best of $RUNS by ms/step):"
    echo
    brow() { printf '| %-10s | %3s | %8s | %14s | %15s | %13s | %9s |\n' "$@"; }
    brow "run" "m" "ms/step" "busy per stage" "bubble measured" "bubble theory" "peak held"
    brow "----------" "--:" "-------:" "--------------" "--------------:" "------------:" "---------"
    for n in "${BUBBLE_RUNS[@]}"; do
        r=${BEST[$n]}
        if [[ "$n" == b2_dp2 ]]; then label="dp2 (pp 1)" th=0; else label="pp2" th=$(bubble_theory "$r"); fi
        brow "$label" "${MBS[$n]}" "$(ms_flag "$r")" "$(busy_all "$r")" "$(bubble_measured "$r")" "$th" "$(peak_held "$r")"
    done
    echo "dp2 (pp 1, no pipeline): its 1 - busy is the share of a step outside forward/backward (all-reduce,"
    echo "optimizer, batch gather), the floor under the pp 2 rows' measured bubble"
fi

echo
echo "details (per rank, in rank order; the run shown is the best one):"
for j in "${JOBS[@]}"; do
    read -r name _ _ pp _ <<<"$j"
    r=${BEST[$name]}
    loads=""
    for ((i = 1; i <= RUNS; i++)); do loads+="$(others_load "${name}_r$i") "; done
    printf '  %-8s %s\n' "$name" "$(layout_line "$r")"
    printf '  %-8s ms/step of each run: %s | other load (cores) of each run: %s\n' "" "${ALLMS[$name]}" "${loads% }"
    printf '  %-8s model MB (w+a): %s | RSS MB: %s | final loss %s' "" "$(model_mb_all "$r")" "$(rss_all "$r")" \
        "$(final_loss "$r")"
    [[ "$pp" -gt 1 ]] && printf ' | busy %s | peak held %s' "$(busy_all "$r")" "$(peak_held "$r")"
    echo
done
# every run computes the same function: the losses should agree closely
for j in "${JOBS[@]}"; do
    for ((i = 1; i <= RUNS; i++)); do final_loss "${j%% *}_r$i"; done
done | awk -v n="$STEPS" '
    {if (NR == 1 || $1 < lo) lo = $1; if (NR == 1 || $1 > hi) hi = $1}
    END {d = (hi - lo) / lo; printf "  loss at step %d over all %d runs: %.6f .. %.6f, spread %.1e relative%s\n",
        n, NR, lo, hi, d, (d > 1e-4 ? "  <-- MORE THAN 1e-4: the layouts disagree" : "")}'
echo "  load average after: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?") (before: $LOAD0)"
