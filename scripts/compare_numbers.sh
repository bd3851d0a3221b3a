#!/usr/bin/env bash
# compare_numbers.sh - proves that a change (a refactor) changes no number:
# builds OLD_COMMIT and this working tree, trains the same small configs
# with both binaries, and compares what the runs wrote, bit for bit.
#
# usage: scripts/compare_numbers.sh [--keep] [--jobs N] [--data FILE]
#                                   [--configs "LIST"] OLD_COMMIT
#   OLD_COMMIT   what to compare against: a hash, tag, branch or HEAD~N.
#                The other side is always this checkout's working tree as it
#                is, uncommitted changes and untracked files included: the
#                question before a commit is "does my change keep every
#                number?" (to compare two commits, check out the newer one).
#   --keep       keep the work folder (both builds, every run folder, logs,
#                the list of every difference) and print its path
#   --jobs N     parallel compile jobs of each build (default: nproc)
#   --data FILE  MNIST in mpitrain's HDF5 layout (default: data/mnist.h5,
#                else build/data/mnist.h5, else scripts/fetch_mnist.sh makes
#                data/mnist.h5)
#   --configs "LIST"  a subset of the configs below (default: all)
#   -h, --help   this text
#
# Builds: OLD_COMMIT in a temporary git worktree (git worktree add --detach,
# removed at the end, --keep or not; after a kill -9, `git worktree prune`)
# and the working tree, each in a build folder of its own under the work
# folder: CPU only, Release (-DMPITRAIN_CUDA=OFF), the mpitrain target only.
# Runs, with each binary, one thread per rank (OMP_NUM_THREADS=1,
# run.threads=1), mpirun oversubscribed, configs/mnist_mlp.ini of this tree:
#   mlp_np1, mlp_np2    MNIST MLP, 20 steps, evaluation and a checkpoint
#                       every 10, at -np 1 and -np 2
#   mlp_np2_resume      the same at -np 2, stopped after 10 steps by
#                       train.exit_after_steps, continued with
#                       checkpoint.resume=auto
#   gpt_dp2             GPT (2 layers, 2 heads, n_embd 32, T 32, dropout
#                       0.1, batch 8, AdamW, cosine lr with warmup, gradient
#                       clipping) on the bytes of tests/data/gpt_corpus.txt,
#                       8 steps, evaluation and a checkpoint every 4, -np 2
#   gpt_tp2, gpt_pp2_1f1b   the same as tensor parallel 2, and as pipeline 2
#                       with 1F1B and 4 micro-batches
#   gpt_dp2_bf16        gpt_dp2 with train.precision=bf16
#   gpt_dp2_resume      gpt_dp2 stopped after 4 steps, then resumed
#
# What it compares, and why. Per config, every run folder (a resumed config
# has two), with scripts/compare_numbers.py (h5py): model.h5 and every
# checkpoint file kept, every dataset (weights, AdamW m and v, /config) and
# every attribute (step and optimizer counters, the last metrics in /train)
# by dtype, shape and raw bytes; and every line of metrics.jsonl, every key
# (loss, grad_norm, lr, train_acc, test_loss, test_acc, epoch, samples) by
# its float64 bit pattern. Anything present on one side only is a
# difference. Bitwise, not within a tolerance: moving code must not reorder
# a single floating-point sum, and a reordering shows only as last-bit
# differences, which the tests' tolerances (1e-5) hide and which training
# then grows. Left out, as they differ between any two runs of one binary:
# the attributes code_commit, code_dirty, created_utc, run_id,
# mpitrain_version; the metric keys run_id, time_s, *_per_s; run.json.
# Same inputs on both sides: both binaries run with the same run.dir path
# (the run folders are moved aside after each config), since /config and
# model.h5's config attribute record it; the same MNIST file, config file
# and token shards (made by both binaries and compared too: the line under
# the table). h5py rather than tests/h5cmp.c: h5cmp --bitwise compares
# float32 tensors only, by element count rather than shape, and neither
# attributes nor other datasets, and prints no size of a difference.
#
# Prints a table (config | model.h5 | checkpoint | metrics: identical, or
# DIFFERENT with the first difference and its max abs diff) and the first
# differences of each differing config. About 1-2 minutes on 2 cores, most
# of it the two builds. Needs git, cmake, a compiler, mpirun, and
# /usr/bin/python3 (or $PYTHON) with h5py and numpy. Not part of ctest (it
# builds another commit): a tool for refactors.
# Exit status: 0 every config identical; 1 a difference, or a build or run
# failed (nothing proven); 2 usage or set-up error.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
PY="${PYTHON:-/usr/bin/python3}"
ALL_CONFIGS="mlp_np1 mlp_np2 mlp_np2_resume gpt_dp2 gpt_tp2 gpt_pp2_1f1b gpt_dp2_bf16 gpt_dp2_resume"
CONFIGS=$ALL_CONFIGS
KEEP=0 JOBS="" DATA="" OLD=""
HELP_LINES=70 # the header above, to "Exit status"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --keep) KEEP=1; shift ;;
        --jobs) need_arg "$@"; JOBS="$2"; shift 2 ;;
        --data) need_arg "$@"; DATA="$2"; shift 2 ;;
        --configs) need_arg "$@"; CONFIGS="$2"; shift 2 ;;
        -h | --help) header_help 2 "$HELP_LINES"; exit 0 ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *)
            [[ -z "$OLD" ]] || die "one OLD_COMMIT expected, got '$OLD' and '$1' (see --help)"
            OLD="$1"
            shift
            ;;
    esac
done
[[ -n "$OLD" ]] || die "OLD_COMMIT missing (usage: scripts/compare_numbers.sh [options] OLD_COMMIT; see --help)"
[[ -n "$JOBS" ]] || JOBS=$(nproc_all)
need_uints JOBS
read -r -a CFGS <<<"$CONFIGS"
[[ ${#CFGS[@]} -gt 0 ]] || die "--configs: no config given (known: $ALL_CONFIGS)"
for c in "${CFGS[@]}"; do
    [[ " $ALL_CONFIGS " == *" $c "* ]] || die "--configs: unknown config '$c' (known: $ALL_CONFIGS)"
done
for t in git cmake mpirun timeout; do command -v "$t" >/dev/null || die "$t not found"; done
[[ -x "$PY" ]] || die "no python interpreter at $PY (set PYTHON)"
"$PY" -c 'import h5py, numpy' 2>/dev/null ||
    die "$PY cannot import h5py and numpy (scripts/install_deps.sh --tests, or set PYTHON)"
git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1 || die "$ROOT is not a git checkout"
OLD_SHA=$(git -C "$ROOT" rev-parse --verify --quiet "$OLD^{commit}") || die "no commit '$OLD' in $ROOT"
CORPUS="$ROOT/tests/data/gpt_corpus.txt"
[[ -f "$CORPUS" ]] || die "no $CORPUS (the GPT configs' text)"
if [[ -n "$DATA" ]]; then
    [[ -f "$DATA" ]] || die "--data: no file $DATA"
else
    for f in "$ROOT/data/mnist.h5" "$ROOT/build/data/mnist.h5"; do
        [[ -f "$f" ]] && { DATA=$f; break; }
    done
fi
[[ -z "$DATA" ]] || DATA=$(abspath "$DATA")

T0=$(now_ns)
W=$(mktemp -d "${TMPDIR:-/tmp}/compare_numbers.XXXXXX")
W=$(cd "$W" && pwd -P)
# shellcheck disable=SC2317 # (called by the EXIT trap)
cleanup() {
    if [[ -d "$W/old-src" ]]; then
        git -C "$ROOT" worktree remove --force "$W/old-src" >/dev/null 2>&1 ||
            echo "compare_numbers.sh: could not remove the worktree $W/old-src (git worktree prune)" >&2
    fi
    if [[ "$KEEP" -eq 1 ]]; then echo "work folder kept: $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$W/logs" "$W/old" "$W/new"

# ---- the two builds ----
# build SIDE SRC: mpitrain of the tree SRC, CPU only, Release, in W/build-SIDE
build() {
    local t0 log="$W/logs/build-$1.log"
    t0=$(now_ns)
    echo "building $1 ($2), -j $JOBS ..." >&2
    { cmake -S "$2" -B "$W/build-$1" -DCMAKE_BUILD_TYPE=Release -DMPITRAIN_CUDA=OFF &&
        cmake --build "$W/build-$1" -j "$JOBS" --target mpitrain; } >"$log" 2>&1 ||
        fail "the $1 build failed" "$log"
    [[ -x "$W/build-$1/mpitrain" ]] || fail "the $1 build made no mpitrain" "$log"
    echo "built $1 in $(secs_between "$t0" "$(now_ns)") s" >&2
}
git -C "$ROOT" worktree add --detach "$W/old-src" "$OLD_SHA" >"$W/logs/worktree.log" 2>&1 ||
    fail "git worktree add of $OLD_SHA failed" "$W/logs/worktree.log"
build old "$W/old-src"
build new "$ROOT"
T_BUILT=$(now_ns)
ensure_mnist "${DATA:=$ROOT/data/mnist.h5}" "$W/build-new/mpitrain"

# ---- inputs: token shards from both binaries (compared), one copy used ----
for side in old new; do
    "$W/build-$side/mpitrain" data tokenize --bytes "$CORPUS" "$W/tok-$side" --name docs \
        >"$W/logs/tokenize-$side.log" 2>&1 || fail "the $side binary's data tokenize failed" "$W/logs/tokenize-$side.log"
done
TOK="identical"
if ! d=$(cd "$W" && diff -rq tok-old tok-new 2>&1); then
    TOK="DIFFERENT: $(head -n 1 <<<"$d")"
fi

# ---- the runs ----
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
unset MPITRAIN_TEST_STAGED # (tests' switch to the device-memory code paths)
mpi_env_oversubscribe
COMMON=(--config "$ROOT/configs/mnist_mlp.ini" --set "run.dir=$W/run" --set run.log_every=1
    --set run.threads=1 --set registry.enabled=false)
MLP=(--set "data.path=$DATA" --set train.steps=20 --set train.eval_every=10
    --set checkpoint.every_steps=10)
GPT=(--set model.kind=gpt --set "data.train_tokens=$W/tok-new/docs_train_000000.bin"
    --set "data.val_tokens=$W/tok-new/docs_val_000000.bin" --set model.n_layer=2 --set model.n_head=2
    --set model.n_embd=32 --set model.block_size=32 --set model.dropout=0.1 --set train.global_batch=8
    --set train.steps=8 --set train.eval_every=4 --set train.eval_windows=8 --set optim.lr=3e-3
    --set optim.schedule=cosine --set optim.warmup_steps=2 --set optim.min_lr=3e-4
    --set optim.grad_clip=1 --set checkpoint.every_steps=4)
NRUN=0
# train SIDE CONFIG NP ARGS...: one run; on failure says so and returns 1
train() {
    local side=$1 cfg=$2 np=$3 log rc=0
    shift 3
    NRUN=$((NRUN + 1))
    log="$W/logs/$side.$cfg.$NRUN.log"
    (cd "$W" && timeout -k 5 300 mpirun -np "$np" -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS \
        "$W/build-$side/mpitrain" train "${COMMON[@]}" "$@") >"$log" 2>&1 || rc=$?
    [[ $rc -eq 0 ]] && return 0
    FAILED_WHY+="${FAILED_WHY:+; }the $side binary's run exited $rc"
    echo "compare_numbers.sh: $cfg: the $side binary's run exited $rc; from its log ($log, kept with --keep):" >&2
    { grep -m 3 'error' "$log" || tail -n 8 "$log"; } | sed 's/^/  | /' >&2
    return 1
}
# runs SIDE CONFIG: every run of CONFIG with the SIDE binary
runs() {
    local s=$1 c=$2
    case "$c" in
        mlp_np1) train "$s" "$c" 1 "${MLP[@]}" ;;
        mlp_np2) train "$s" "$c" 2 "${MLP[@]}" ;;
        mlp_np2_resume)
            train "$s" "$c" 2 "${MLP[@]}" --set train.exit_after_steps=10 &&
                train "$s" "$c" 2 "${MLP[@]}" --set checkpoint.resume=auto
            ;;
        gpt_dp2) train "$s" "$c" 2 "${GPT[@]}" ;;
        gpt_tp2) train "$s" "$c" 2 "${GPT[@]}" --set parallel.tp=2 ;;
        gpt_pp2_1f1b)
            train "$s" "$c" 2 "${GPT[@]}" --set parallel.pp=2 --set parallel.microbatches=4 \
                --set parallel.schedule=1f1b
            ;;
        gpt_dp2_bf16) train "$s" "$c" 2 "${GPT[@]}" --set train.precision=bf16 ;;
        gpt_dp2_resume)
            train "$s" "$c" 2 "${GPT[@]}" --set train.exit_after_steps=4 &&
                train "$s" "$c" 2 "${GPT[@]}" --set checkpoint.resume=auto
            ;;
    esac
}

declare -A CELL_M CELL_C CELL_X
ANY=0
for cfg in "${CFGS[@]}"; do
    FAILED_WHY=""
    for side in old new; do
        rm -rf "$W/run"
        echo "$cfg: $side ..." >&2
        runs "$side" "$cfg" || true
        if [[ -d "$W/run" ]]; then mv "$W/run" "$W/$side/$cfg"; else mkdir -p "$W/$side/$cfg"; fi
    done
    if [[ -n "$FAILED_WHY" ]]; then
        CELL_M[$cfg]="FAILED: $FAILED_WHY" CELL_C[$cfg]="-" CELL_X[$cfg]="-"
        ANY=1
        continue
    fi
    rc=0
    out=$("$PY" "$ROOT/scripts/compare_numbers.py" "$W/old/$cfg" "$W/new/$cfg" \
        --details "$W/logs/differences.$cfg.txt") || rc=$?
    [[ $rc -le 1 ]] || die "scripts/compare_numbers.py failed on $cfg (exit $rc)"
    [[ $rc -eq 0 ]] || ANY=1
    CELL_M[$cfg]=$(awk -F'\t' '$1 == "model.h5" {print $2}' <<<"$out")
    CELL_C[$cfg]=$(awk -F'\t' '$1 == "checkpoint" {print $2}' <<<"$out")
    CELL_X[$cfg]=$(awk -F'\t' '$1 == "metrics" {print $2}' <<<"$out")
    [[ -n "${CELL_M[$cfg]}" && -n "${CELL_C[$cfg]}" && -n "${CELL_X[$cfg]}" ]] ||
        die "scripts/compare_numbers.py printed no verdict for $cfg: $out"
    echo "$cfg: $([[ $rc -eq 0 ]] && echo identical || echo DIFFERENT)" >&2
done
[[ "$TOK" == identical ]] || ANY=1

# ---- the table ----
NEW_DESC="$(git -C "$ROOT" rev-parse --short HEAD)"
[[ -z "$(git -C "$ROOT" status --porcelain --untracked-files=no)" ]] || NEW_DESC+=" + uncommitted changes"
echo
echo "# compare_numbers.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "old: $(git -C "$ROOT" log -1 --format='%h %s' "$OLD_SHA" | cut -c1-100)"
echo "new: the working tree ($NEW_DESC)"
echo "runs: CPU-only Release builds, 1 thread per rank, mpirun oversubscribed; data $DATA"
echo
row() { printf '| %-14s | %s | %s | %s |\n' "$@"; }
row "config" "model.h5" "checkpoint" "metrics"
row "--------------" "---" "---" "---"
for cfg in "${CFGS[@]}"; do
    row "$cfg" "${CELL_M[$cfg]}" "${CELL_C[$cfg]}" "${CELL_X[$cfg]}"
done
echo
echo "token shards (mpitrain data tokenize --bytes tests/data/gpt_corpus.txt): $TOK"
for cfg in "${CFGS[@]}"; do
    f="$W/logs/differences.$cfg.txt"
    if [[ -s "$f" ]]; then
        echo
        echo "$cfg: $(wc -l <"$f") difference(s), the first ones:"
        head -n 8 "$f" | sed 's/^/  /'
    fi
done
T1=$(now_ns)
echo
echo "time: builds $(secs_between "$T0" "$T_BUILT") s, runs and comparisons $(secs_between "$T_BUILT" "$T1") s," \
    "total $(secs_between "$T0" "$T1") s"
if [[ "$ANY" -eq 0 ]]; then
    echo "IDENTICAL: every number of the ${#CFGS[@]} config(s) is bitwise the same"
else
    echo "DIFFERENT: see the table"
fi
exit "$ANY"
