#!/usr/bin/env bash
# bench_gpt.sh - times a GPT training step of mpitrain against PyTorch, and
# mpitrain's FLOP rate against a bare OpenBLAS sgemm, in one run.
#
# The text (default: README.md and docs/*.md of the repository, concatenated)
# is made into byte-level token shards (vocab 256) with `mpitrain data tokenize
# --bytes`. On those shards, with the same model (default 4 layers, 4 heads,
# n_embd 256, block_size = sequence length 128), batch (8 sequences), AdamW and
# thread count:
#   - mpitrain: `mpirun -np 1 --bind-to none build/mpitrain train` with
#     model.kind=gpt, no evaluation during training, no checkpoints, no
#     registry; its own "time: X ms/step" line (first 5 steps excluded: batch
#     gather, forward, backward, gradient all-reduce, optimizer step); with
#     train.fused = true (the fused ops) and = false (the separate ops), and
#     with --bf16 also train.precision = bf16 (fused);
#   - PyTorch: scripts/bench_gpt_torch.py train, the GPT class of
#     tests/reference/gpt_parity.py, timed over the same scope and steps;
#   - sgemm: scripts/bench_gpt_torch.py sgemm calls cblas_sgemm through ctypes
#     in the libopenblas.so that mpitrain links (found with ldd), on a square
#     1024 product and on each linear-layer product of one training step
#     (forward, input and weight gradient), best of --sgemm-reps rounds.
# --runs times each tool, alternating; medians. Then, unless --no-passive, both
# tools again with OMP_WAIT_POLICY=PASSIVE: PyTorch runs an OpenMP pool and the
# pthread OpenBLAS side by side, and with OpenMP's default spin-waiting they
# fight for the cores (see docs/BENCHMARKS.md). mpirun runs with --bind-to none:
# Open MPI binds a rank to one core when it starts 2 or fewer, which would put
# all of mpitrain's threads on one core. mpitrain's GFLOP/s is tokens/s
# times the training FLOPs per token: 3 x forward, forward = 2 (12 L C^2 + V C)
# (the linear layers and the tied LM head) + 2 L T C (q.k and att.v with the
# causal average of T/2 keys per query; layer norms, GELU, softmax, embeddings
# and the optimizer not counted). Builds nothing; see docs/BENCHMARKS.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
BIN="${MPITRAIN:-$ROOT/build/mpitrain}"
PY="${PYTHON:-/usr/bin/python3}"
TEXT=""
THREADS=""
STEPS=30
RUNS=3
LAYERS=4
HEADS=4
EMBD=256
SEQ=128
BATCH=8
SGEMM_REPS=10
VOCAB=256
PASSIVE_ROWS=1
BF16_ROW=0

usage() {
    cat <<EOF
usage: scripts/bench_gpt.sh [--threads N] [--steps N] [--text FILE] [model options]

Times one GPT training step of mpitrain and of PyTorch (same model, batch, data,
AdamW, threads), measures a bare OpenBLAS sgemm with the same threads, and
prints ms/step, tokens/s, GFLOP/s and the ratios mpitrain/PyTorch (goal <= 0.9),
fused/unfused, and mpitrain GFLOP/s / sgemm GFLOP/s (goal >= 0.85 at 1 thread, 0.8 at 2).

  --threads N     compute threads for all three (default: nproc): run.threads=N
                  for mpitrain, torch.set_num_threads(N) for PyTorch,
                  openblas_set_num_threads(N) for both and the sgemm probe, and
                  OMP_NUM_THREADS=N OPENBLAS_NUM_THREADS=N in the environment
  --steps N       optimizer steps per run (default $STEPS; the first 5 are not timed)
  --runs N        timed runs of each tool, alternating (default $RUNS); medians shown
  --text FILE     text to train on, tokenized byte by byte (default: README.md
                  and docs/*.md of the repository, concatenated)
  --layers N      transformer blocks (default $LAYERS)
  --heads N       attention heads (default $HEADS)
  --embd N        channels, n_embd (default $EMBD)
  --seq N         sequence length T = block_size (default $SEQ)
  --batch N       sequences per step B (default $BATCH)
  --sgemm-reps N  rounds over the sgemm shapes; best of each kept (default $SGEMM_REPS)
  --bf16          one more mpitrain row: train.precision = bf16 (fused), and its
                  step time against fp32's
  --no-passive    skip the extra rows: both tools again with OMP_WAIT_POLICY=PASSIVE
                  (skipped anyway when OMP_WAIT_POLICY is set in the environment)
  --mpitrain PATH the binary (default: \$MPITRAIN or build/mpitrain)
  --python PATH   interpreter with torch, numpy and h5py (default: \$PYTHON or /usr/bin/python3)
  -h, --help      print this help
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --threads) need_arg "$@"; THREADS="$2"; shift 2 ;;
        --steps) need_arg "$@"; STEPS="$2"; shift 2 ;;
        --runs) need_arg "$@"; RUNS="$2"; shift 2 ;;
        --text) need_arg "$@"; TEXT="$2"; shift 2 ;;
        --layers) need_arg "$@"; LAYERS="$2"; shift 2 ;;
        --heads) need_arg "$@"; HEADS="$2"; shift 2 ;;
        --embd) need_arg "$@"; EMBD="$2"; shift 2 ;;
        --seq) need_arg "$@"; SEQ="$2"; shift 2 ;;
        --batch) need_arg "$@"; BATCH="$2"; shift 2 ;;
        --sgemm-reps) need_arg "$@"; SGEMM_REPS="$2"; shift 2 ;;
        --no-passive) PASSIVE_ROWS=0; shift ;;
        --bf16) BF16_ROW=1; shift ;;
        --mpitrain) need_arg "$@"; BIN="$2"; shift 2 ;;
        --python) need_arg "$@"; PY="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
# before OMP_NUM_THREADS is exported below: GNU nproc honours it
NPROC=$(nproc_all)
[[ -z "$THREADS" ]] && THREADS="$NPROC"
need_uints THREADS STEPS RUNS LAYERS HEADS EMBD SEQ BATCH SGEMM_REPS
[[ "$STEPS" -gt 5 ]] || die "--steps must be > 5 (the first 5 steps are not timed)"
[[ $((EMBD % HEADS)) -eq 0 ]] || die "--embd ($EMBD) must be divisible by --heads ($HEADS)"
need_mpitrain "$BIN"
command -v mpirun >/dev/null || die "mpirun not found"
[[ -x "$PY" ]] || die "no python interpreter at $PY (pass --python PATH)"
# h5py: tests/reference/gpt_parity.py, which holds the PyTorch model, imports it
"$PY" -c 'import torch, numpy, h5py' 2>/dev/null ||
    die "$PY cannot import torch, numpy and h5py (pass --python PATH)"
HELPER="$ROOT/scripts/bench_gpt_torch.py"
[[ -f "$HELPER" ]] || die "missing $HELPER"
[[ -f "$ROOT/tests/reference/gpt_parity.py" ]] || die "missing tests/reference/gpt_parity.py (the PyTorch model)"
if [[ -n "$TEXT" ]]; then
    [[ -f "$TEXT" ]] || die "--text: no file $TEXT"
fi
BLAS_LIB=$(ldd "$BIN" 2>/dev/null | sed -n 's/.*=> \([^ ]*\(openblas\|libblas\|libcblas\)[^ ]*\) .*/\1/p' | head -n 1)
[[ -n "$BLAS_LIB" && -f "$BLAS_LIB" ]] || die "cannot find the BLAS library $BIN links (ldd $BIN)"
BLAS_LIB=$(readlink -f "$BLAS_LIB")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench_gpt.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

mpi_env
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"
MPI_X=(-x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS)
# the environment's wait policy for the main rows; PASSIVE for the extra rows
WAIT_POLICY="${OMP_WAIT_POLICY:-}"
[[ -n "$WAIT_POLICY" ]] && PASSIVE_ROWS=0
[[ -n "${OPENBLAS_CORETYPE:-}" ]] && MPI_X+=(-x OPENBLAS_CORETYPE)

min() { printf '%s\n' "$@" | sort -g | head -n 1; }
tok_s() { awk -v ms="$1" -v n="$((BATCH * SEQ))" 'BEGIN {printf "%.0f", 1e3 * n / ms}'; }
gflops() { awk -v ms="$1" -v n="$((BATCH * SEQ))" -v f="$TRAIN_FLOPS" 'BEGIN {printf "%.1f", n * f / ms / 1e6}'; }

# training FLOPs per token: 3 x forward (see the comment at the top)
FWD_FLOPS=$(awk -v L="$LAYERS" -v C="$EMBD" -v V="$VOCAB" -v T="$SEQ" \
    'BEGIN {printf "%.0f", 2 * (12 * L * C * C + V * C) + 2 * L * T * C}')
TRAIN_FLOPS=$((3 * FWD_FLOPS))

# ---- token shards ----
text_shards "$TEXT" "$TMP" "$BIN"
N_TRAIN=$(sed -n 's/.*: \([0-9]*\) train tokens.*/\1/p' "$TMP/tokenize.log")
N_VAL=$(sed -n 's/.*, \([0-9]*\) val tokens.*/\1/p' "$TMP/tokenize.log")

# ---- header ----
MT_VERSION=$("$BIN" --version 2>/dev/null || true)
TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)
echo "# bench_gpt.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
host_line "$NPROC"
mpitrain_line "$MT_VERSION" "$BIN"
echo "torch: $TORCH_VERSION ($PY)"
echo "threads: $THREADS (OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS," \
    "OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}); mpitrain under mpirun -np 1 --bind-to none"
echo "model: gpt $LAYERS layers, $HEADS heads, n_embd $EMBD, T = block_size $SEQ, vocab $VOCAB;" \
    "batch $BATCH sequences = $((BATCH * SEQ)) tokens per step; AdamW lr 1e-3 wd 0.01, no dropout"
echo "data: $TEXT_DESC, byte-level: $N_TRAIN train tokens ($N_VAL val tokens, 1 val sequence at the end, untimed)"
echo "timing: $STEPS steps per run, first 5 excluded; $RUNS run(s) of each tool, alternating; medians"
[[ "$PASSIVE_ROWS" -eq 1 ]] &&
    echo "extra rows: both tools again with OMP_WAIT_POLICY=PASSIVE (OpenMP threads sleep at once when idle)"
echo "FLOPs per token: forward 2(12 L C^2 + V C) + 2 L T C = $FWD_FLOPS, training 3 x forward = $TRAIN_FLOPS"
echo

# ---- sgemm ----
echo "sgemm: $BLAS_LIB, best of $SGEMM_REPS rounds ..." >&2
"$PY" "$HELPER" sgemm --lib "$BLAS_LIB" --threads "$THREADS" --layers "$LAYERS" --embd "$EMBD" \
    --seq "$SEQ" --batch "$BATCH" --vocab "$VOCAB" --reps "$SGEMM_REPS" >"$TMP/sgemm.log" 2>&1 ||
    fail "the sgemm probe failed" "$TMP/sgemm.log"
SG_MIX=$(sed -n 's/^sgemm step-mix \([0-9.]*\) GFLOP.*/\1/p' "$TMP/sgemm.log")
SG_SQ=$(sed -n 's/^sgemm square .* \([0-9.]*\) GFLOP\/s.*/\1/p' "$TMP/sgemm.log")
[[ -n "$SG_MIX" && -n "$SG_SQ" ]] || fail "no sgemm rate in the probe's output" "$TMP/sgemm.log"

# ---- mpitrain and PyTorch, alternating ----
gpt_bench_sets
# run_mpitrain LOG POLICY [--set K=V...]: POLICY is OMP_WAIT_POLICY's value
# (empty: unset); fused unless the extra settings say otherwise
run_mpitrain() {
    local dir="$TMP/runs" x=("${MPI_X[@]}")
    [[ -n "$2" ]] && x+=(-x OMP_WAIT_POLICY)
    rm -rf "$dir"
    with_policy "$2" mpirun -np 1 --bind-to none "${x[@]}" "$BIN" train --config "$ROOT/configs/mnist_mlp.ini" \
        "${GPT_SETS[@]}" --set "optim.beta1=0.9" --set "optim.beta2=0.999" --set "optim.eps=1e-8" \
        --set "run.threads=$THREADS" --set "run.dir=$dir" --set "run.log_every=10" \
        --set train.fused=true "${@:3}" >"$1" 2>&1 || fail "the mpitrain run failed" "$1"
    rm -rf "$dir"
}
run_torch() { # run_torch LOG POLICY
    with_policy "$2" "$PY" "$HELPER" train --train-tokens "$TRAIN_GLOB" --steps "$STEPS" --threads "$THREADS" \
        --layers "$LAYERS" --heads "$HEADS" --embd "$EMBD" --seq "$SEQ" --batch "$BATCH" \
        --vocab "$VOCAB" --lr 0.001 --weight-decay 0.01 >"$1" 2>&1 || fail "the PyTorch run failed" "$1"
}
with_policy() { # with_policy POLICY COMMAND...: COMMAND with OMP_WAIT_POLICY=POLICY, or unset
    if [[ -n "$1" ]]; then
        OMP_WAIT_POLICY="$1" "${@:2}"
    else
        env -u OMP_WAIT_POLICY "${@:2}"
    fi
}
ms_of() { # ms_of mpitrain|torch LOG
    local v
    v=$(ms_per_step "$1" "$2")
    [[ -n "$v" ]] || fail "no ms/step in the $1 output" "$2"
    echo "$v"
}

MT_MS=() TO_MS=() MTP_MS=() TOP_MS=() MTU_MS=() MTB_MS=()
for ((i = 1; i <= RUNS; i++)); do
    run_mpitrain "$TMP/mt$i.log" "$WAIT_POLICY"
    MT_MS+=("$(ms_of mpitrain "$TMP/mt$i.log")")
    run_mpitrain "$TMP/mtu$i.log" "$WAIT_POLICY" --set train.fused=false
    MTU_MS+=("$(ms_of mpitrain "$TMP/mtu$i.log")")
    run_torch "$TMP/to$i.log" "$WAIT_POLICY"
    TO_MS+=("$(ms_of torch "$TMP/to$i.log")")
    msg="run $i/$RUNS: mpitrain ${MT_MS[-1]} ms/step (unfused ${MTU_MS[-1]}), torch ${TO_MS[-1]} ms/step"
    if [[ "$BF16_ROW" -eq 1 ]]; then
        run_mpitrain "$TMP/mtb$i.log" "$WAIT_POLICY" --set train.precision=bf16
        MTB_MS+=("$(ms_of mpitrain "$TMP/mtb$i.log")")
        msg+="; mpitrain bf16 ${MTB_MS[-1]}"
    fi
    if [[ "$PASSIVE_ROWS" -eq 1 ]]; then
        run_mpitrain "$TMP/mtp$i.log" PASSIVE
        MTP_MS+=("$(ms_of mpitrain "$TMP/mtp$i.log")")
        run_torch "$TMP/top$i.log" PASSIVE
        TOP_MS+=("$(ms_of torch "$TMP/top$i.log")")
        msg+="; PASSIVE: mpitrain ${MTP_MS[-1]}, torch ${TOP_MS[-1]}"
    fi
    echo "$msg" >&2
done
MT_MED=$(median "${MT_MS[@]}")
MTU_MED=$(median "${MTU_MS[@]}")
TO_MED=$(median "${TO_MS[@]}")
MT_PARAMS=$(sed -n 's/^model: gpt.* | \([0-9]*\) parameters.*/\1/p' "$TMP/mt1.log" | head -n 1)
TO_PARAMS=$(sed -n 's/^model: gpt.* | \([0-9]*\) parameters.*/\1/p' "$TMP/to1.log" | head -n 1)
MT_LAYOUT=$(sed -n 's/^layout: .* | \([0-9]* thread(s) per rank\) .*/\1/p' "$TMP/mt1.log" | head -n 1)
TO_BLAS=$(sed -n 's/.*| BLAS \(.*\)/\1/p' "$TMP/to1.log" | head -n 1)
MT_LOSS=$(sed -n 's/^step *[0-9]*\/[0-9]* .*| loss \([0-9.]*\) .*/\1/p' "$TMP/mt1.log" | tail -n 1)
TO_LOSS=$(sed -n 's/^step [0-9]*\/[0-9]* | loss \([0-9.]*\).*/\1/p' "$TMP/to1.log" | tail -n 1)
MT_GF=$(gflops "$MT_MED")
TO_GF=$(gflops "$TO_MED")

# ---- table ----
row() { printf '| %-30s | %9s | %8s | %8s | %-26s |\n' "$@"; }
row "tool" "ms/step" "tokens/s" "GFLOP/s" "all runs (ms/step)"
row "------------------------------" "--------:" "-------:" "-------:" "--------------------------"
row "mpitrain, 1 rank x $THREADS thread(s)" "$MT_MED" "$(tok_s "$MT_MED")" "$MT_GF" "${MT_MS[*]}"
row "mpitrain, train.fused=false" "$MTU_MED" "$(tok_s "$MTU_MED")" "$(gflops "$MTU_MED")" "${MTU_MS[*]}"
if [[ "$BF16_ROW" -eq 1 ]]; then
    MTB_MED=$(median "${MTB_MS[@]}")
    BF16_PATH=$(sed -n 's/^bf16 matmuls: //p' "$TMP/mtb1.log" | head -n 1)
    row "mpitrain, precision=bf16" "$MTB_MED" "$(tok_s "$MTB_MED")" "$(gflops "$MTB_MED")" "${MTB_MS[*]}"
fi
row "PyTorch, $THREADS thread(s)" "$TO_MED" "$(tok_s "$TO_MED")" "$TO_GF" "${TO_MS[*]}"
if [[ "$PASSIVE_ROWS" -eq 1 ]]; then
    MTP_MED=$(median "${MTP_MS[@]}")
    TOP_MED=$(median "${TOP_MS[@]}")
    row "mpitrain, PASSIVE" "$MTP_MED" "$(tok_s "$MTP_MED")" "$(gflops "$MTP_MED")" "${MTP_MS[*]}"
    row "PyTorch, PASSIVE" "$TOP_MED" "$(tok_s "$TOP_MED")" "$(gflops "$TOP_MED")" "${TOP_MS[*]}"
fi
echo
echo "sgemm, $THREADS thread(s), best of $SGEMM_REPS (M N K, row-major op(A) op(B)):"
awk '$1 == "sgemm" && $3 ~ /^[0-9]+$/ {printf "  %-16s %5s %5s %5s %s %7s GFLOP/s\n", $2, $3, $4, $5, $6, $7}' \
    "$TMP/sgemm.log"
echo "  step mix: $SG_MIX GFLOP/s (every linear-layer product of one step, summed FLOPs / summed best times)"
echo
echo "mpitrain rows: train.fused=true unless the row says otherwise"
echo "ratio mpitrain/PyTorch step time: $(ratio "$MT_MED" "$TO_MED" 3) (goal <= 0.9)"
echo "ratio fused/unfused step time: $(ratio "$MT_MED" "$MTU_MED")"
[[ "$BF16_ROW" -eq 1 ]] &&
    echo "ratio bf16/fp32 step time (both fused): $(ratio "$MTB_MED" "$MT_MED") (${BF16_PATH:-bf16 path not reported})"
[[ "$PASSIVE_ROWS" -eq 1 ]] &&
    echo "ratio mpitrain/PyTorch step time, both OMP_WAIT_POLICY=PASSIVE: $(ratio "$MTP_MED" "$TOP_MED");" \
        "best row of each: $(ratio "$(min "$MT_MED" "$MTP_MED")" "$(min "$TO_MED" "$TOP_MED")" 3)"
echo "mpitrain GFLOP/s / sgemm GFLOP/s: $(ratio "$MT_GF" "$SG_MIX" 3) (goal >= 0.85 at 1 thread, 0.8 at 2; sgemm at the model's" \
    "shapes, step mix; against square 1024 ($SG_SQ GFLOP/s): $(ratio "$MT_GF" "$SG_SQ"))"
echo "  (mpitrain's FLOPs include q.k and att.v, $((2 * LAYERS * SEQ * EMBD * 3)) a token; the step mix" \
    "counts the linear layers only: on its count the ratio is" \
    "$(awk -v r="$(ratio "$MT_GF" "$SG_MIX" 6)" -v t="$TRAIN_FLOPS" -v a="$((2 * LAYERS * SEQ * EMBD * 3))" 'BEGIN {printf "%.3f", r * (t - a) / t}'))"
echo
echo "details:"
echo "  parameters: mpitrain ${MT_PARAMS:-?}, PyTorch ${TO_PARAMS:-?}"
echo "  loss at step $STEPS (run 1): mpitrain ${MT_LOSS:-?}, PyTorch ${TO_LOSS:-?} (different initial draws and orders)"
echo "  mpitrain: ${MT_LAYOUT:-? thread(s) per rank}; BLAS $(sed -n 's/^BLAS: *//p' <<<"$MT_VERSION" | head -n 1)"
echo "  PyTorch BLAS: ${TO_BLAS:-unknown}"
echo "  sgemm probe: $(sed -n 's/^sgemm lib .* | \(.*\) | threads \([0-9]*\)/\1, threads \2/p' "$TMP/sgemm.log") ($BLAS_LIB)"
echo "  OPENBLAS_CORETYPE: ${OPENBLAS_CORETYPE:-unset (auto-detected)}"
