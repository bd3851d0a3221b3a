#!/usr/bin/env bash
# lib.sh - the shell helpers the scripts in scripts/ share, one copy each.
# Sourced, never run: a script sets ROOT (the repository) and then
#     source "$ROOT/scripts/lib.sh"
# It holds:
#   errors and options  die, fail, need_arg, is_uint, need_uints,
#                       need_mpitrain, header_help
#   paths and data      abspath, ensure_mnist, text_shards
#   statistics          median, ratio
#   the machine, MPI    nproc_all, host_line, mpitrain_line, mpi_env,
#                       mpi_env_oversubscribe
#   timing              now_ns, secs_between, ms_per_step
#   checkpoints         ckpt_lines
#   JSON                jstr, jnum
#   GPT benchmarks      gpt_bench_sets
#   the all-reduce floor allreduce_floor_bin, allreduce_floor
# It defines functions and sets MT_PROG, MT_DIE_STATUS and MT_MPI_ROOT_ENV,
# nothing else: no shell option changes (it works under the caller's
# set -euo pipefail as under set -uo pipefail), no output, no exports until
# a function is called. The GPU machine gets scripts/ with the repository
# copy (not in the bundle of scripts/bundle.sh); scripts/test_bundle.sh puts
# this file into its chroot beside device_check.sh.

# shellcheck disable=SC2034 # TEXT_DESC, GPT_SETS, ...: set here for the script that sources this
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    echo "lib.sh: source it from a script (source \"\$ROOT/scripts/lib.sh\"), do not run it" >&2
    exit 2
fi

# The name error messages start with (default: the script's file name) and
# the exit status of die (default 2, a usage or set-up error). A script that
# wants others sets them after sourcing this file.
MT_PROG=${0##*/}
MT_DIE_STATUS=2
# What lets Open MPI's mpirun start ranks as root (it refuses unless told).
MT_MPI_ROOT_ENV="OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"

# ---- errors and options ----

die() { # die MESSAGE: "PROG: error: MESSAGE" on stderr, exit MT_DIE_STATUS
    echo "$MT_PROG: error: $*" >&2
    exit "$MT_DIE_STATUS"
}
fail() { # fail MESSAGE LOG: a step failed; its log's last 30 lines, exit 1
    echo "$MT_PROG: error: $1; output:" >&2
    tail -n 30 "$2" >&2
    exit 1
}
# need_arg "$@": in an option loop, the option in $1 must have a non-empty value in $2
need_arg() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }
is_uint() { [[ "$1" =~ ^[1-9][0-9]*$ ]]; } # a positive integer
need_uints() { # need_uints VAR...: each variable holds a positive integer (option --var)
    local v
    for v in "$@"; do
        is_uint "${!v}" || die "--$(tr 'A-Z_' 'a-z-' <<<"$v"): positive integer expected, got '${!v}'"
    done
}
need_mpitrain() { # need_mpitrain BIN: the binary is there
    [[ -x "$1" ]] || die "no mpitrain binary at $1 (build it: cmake -S . -B build && cmake --build build)"
}
# header_help FIRST LAST: lines FIRST..LAST of the running script, its header
# comment, without the "# " (the --help of scripts documented only there)
header_help() { sed -n "$1,$2p" "$0" | sed 's/^# \{0,1\}//'; }

# ---- paths and data ----

abspath() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
# ensure_mnist FILE BIN: makes the MNIST dataset FILE with scripts/fetch_mnist.sh
# (and BIN) when it is missing
ensure_mnist() {
    [[ -f "$1" ]] && return 0
    echo "$MT_PROG: no dataset at $1; making it with scripts/fetch_mnist.sh" >&2
    mkdir -p "$(dirname "$1")"
    "$ROOT/scripts/fetch_mnist.sh" --out "$1" --mpitrain "$2" >&2 ||
        die "scripts/fetch_mnist.sh failed (pass --data FILE)"
}
# text_shards TEXT DIR BIN: byte-level token shards in DIR/tok of TEXT (a file;
# empty: README.md and docs/*.md of the repository, concatenated), made with
# `BIN data tokenize --bytes` (log: DIR/tokenize.log). Sets TEXT_DESC,
# TRAIN_GLOB and VAL_GLOB.
text_shards() {
    local corpus="$2/corpus.txt"
    if [[ -n "$1" ]]; then
        cp "$1" "$corpus"
        TEXT_DESC="$1"
    else
        cat "$ROOT/README.md" "$ROOT"/docs/*.md >"$corpus"
        TEXT_DESC="README.md + docs/*.md"
    fi
    "$3" data tokenize --bytes "$corpus" "$2/tok" --name corpus >"$2/tokenize.log" 2>&1 ||
        fail "mpitrain data tokenize failed" "$2/tokenize.log"
    TRAIN_GLOB="$2/tok/corpus_train_*.bin"
    VAL_GLOB="$2/tok/corpus_val_*.bin"
}

# ---- statistics ----

# median X...: the middle value, or the mean of the two middle ones
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m=int((NR+1)/2); print (NR%2) ? v[m] : (v[m]+v[m+1])/2}'; }
# ratio A B [DIGITS]: A / B with DIGITS decimals (default 2)
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN {printf "%." d "f", a / b}'; }

# ---- the machine and MPI ----

# the machine's cores; GNU nproc would answer OMP_NUM_THREADS when it is set
nproc_all() { env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc; }
host_line() { # host_line NPROC: "machine: CPU model, nproc N, kernel" (a benchmark's header)
    local cpu
    cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
    echo "machine: ${cpu:-unknown CPU}, nproc $1, $(uname -sr)"
}
# mpitrain_line VERSION_TEXT BIN: "mpitrain: " and the first two lines of
# `BIN --version` (given), then (BIN)
mpitrain_line() { echo "mpitrain: $(head -n 2 <<<"$1" | tr -s ' \n' ' ')($2)"; }
mpi_env() { # exports what lets mpirun run as root
    local kv
    for kv in $MT_MPI_ROOT_ENV; do export "${kv?}"; done
}
# mpi_env_oversubscribe: mpi_env, and mpirun may start more ranks than there are cores
mpi_env_oversubscribe() { mpi_env && export OMPI_MCA_rmaps_base_oversubscribe=1; }

# ---- timing ----

now_ns() { date +%s%N; }
secs_between() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b - a) / 1e9}'; } # T0_NS T1_NS
# ms_per_step mpitrain|torch LOG: the last ms/step the tool printed: mpitrain's
# "time: X ms/step" line, the PyTorch helpers' "ms/step X"; empty when none
ms_per_step() {
    if [[ "$1" == mpitrain ]]; then
        sed -n 's/^time: \([0-9.]*\) ms\/step.*/\1/p' "$2" | tail -n 1
    else
        sed -n 's/^ms\/step \([0-9.]*\).*/\1/p' "$2" | tail -n 1
    fi
}

# ---- checkpoints ----

# ckpt_lines LOG: one line per checkpoint rank 0 published in LOG (mpitrain's
#   checkpoint: step S -> PATH (X MB in T s = R MB/s; sha256 H s; training stalled S2 s)
# ), as "S X T H S2 PATH": the path last, so that `read -r s x t h s2 path`
# keeps one with spaces whole. A line of a binary before checkpoint.async
# (it ended "; sha256 H s)") gives "-" for S2. The other "checkpoint:" lines
# (a wait for the write in flight, a removal) give nothing.
ckpt_lines() {
    local head='^checkpoint: step ([0-9]+) -> (.*) \(([0-9.]+) MB in ([0-9.]+) s = [0-9.]+ MB/s; sha256 ([0-9.]+) s'
    sed -n -E -e "s|$head; training stalled ([0-9.]+) s\)\$|\1 \3 \4 \5 \6 \2|p" \
        -e "s|$head\)\$|\1 \3 \4 \5 - \2|p" "$1"
}

# ---- JSON ----

jstr() { # jstr TEXT: TEXT as a JSON string (control characters become spaces)
    local t=${1//\\/\\\\}
    t=${t//\"/\\\"}
    printf '"%s"' "${t//[[:cntrl:]]/ }"
}
jnum() { if [[ -n "$1" ]]; then printf '%s' "$1"; else printf 'null'; fi; } # jnum NUMBER: it, or null

# ---- the GPT benchmarks ----

# gpt_bench_sets: fills the array GPT_SETS with the --set options that
# bench_gpt.sh and bench_parallel.sh train their GPT with, from LAYERS HEADS
# EMBD SEQ VOCAB BATCH STEPS TRAIN_GLOB VAL_GLOB: no dropout, a new sample
# order each epoch, no evaluation during training (one window at the end),
# AdamW lr 1e-3 weight decay 0.01 at a constant rate without clipping, no
# checkpoints, no registry
gpt_bench_sets() {
    GPT_SETS=(--set "model.kind=gpt" --set "data.train_tokens=$TRAIN_GLOB" --set "data.val_tokens=$VAL_GLOB"
        --set "model.n_layer=$LAYERS" --set "model.n_head=$HEADS" --set "model.n_embd=$EMBD"
        --set "model.block_size=$SEQ" --set "model.vocab_size=$VOCAB" --set "model.dropout=0"
        --set "train.seq_len=$SEQ" --set "train.global_batch=$BATCH" --set "train.steps=$STEPS"
        --set "train.shuffle=true" --set "train.eval_every=0" --set "train.eval_windows=1"
        --set "optim.kind=adamw" --set "optim.lr=0.001" --set "optim.weight_decay=0.01"
        --set "optim.grad_clip=0" --set "optim.schedule=constant" --set "optim.warmup_steps=0"
        --set "checkpoint.save_final=false" --set "checkpoint.every_steps=0"
        --set "checkpoint.every_seconds=0" --set "registry.enabled=false")
}

# ---- the all-reduce floor (bench/allreduce_floor) ----

# allreduce_floor_bin BIN [PATH]: PATH, or bench/allreduce_floor beside the
# mpitrain binary BIN; dies when it is not there
allreduce_floor_bin() {
    local f=${2:-$(dirname "$1")/bench/allreduce_floor}
    [[ -x "$f" ]] || die "no allreduce_floor at $f (it is built with mpitrain: build/bench/allreduce_floor)"
    echo "$f"
}
# allreduce_floor FLOOR NP FLOATS LOG STAT: a plain MPI_Allreduce of FLOATS
# floats at -np NP, 50 repetitions after 5 warm-up ones, its output in LOG;
# prints the STAT (median or min) in ms; fails (with the log) when it does
allreduce_floor() {
    mpirun -np "$2" --bind-to none "$1" --floats "$3" --reps 50 --warmup 5 >"$4" 2>&1 ||
        fail "allreduce_floor -np $2 --floats $3 failed" "$4"
    sed -n "s/.*$5_ms=\([0-9.]*\).*/\1/p" "$4"
}
