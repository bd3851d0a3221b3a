#!/usr/bin/env bash
# bench_gpt_gpu.sh - GPT-2 124M training on one GPU: mpitrain against PyTorch,
# with the card's measured bf16 matmul peak for MFU. Runs on the lent GPU
# machine with the binaries of scripts/bundle.sh; builds nothing.
#
# Parts, in this order, each under a time limit, all inside --budget seconds:
#   (a) gemm_peak (bench/gemm_peak.c): median TFLOP/s of one 8192^3 cuBLAS
#       GEMM in bf16, fp32 inputs with CUBLAS_COMPUTE_32F_FAST_16BF
#       (mpitrain's bf16 mode), TF32 and pedantic fp32;
#   (b) mpitrain, one rank: model.kind = gpt, 12 layers, 12 heads, n_embd 768,
#       block_size = seq_len 1024, vocab 50257, dropout 0 (GPT-2 124M,
#       124,439,808 parameters), AdamW (lr 6e-4, betas 0.9/0.999, eps 1e-8,
#       weight decay 0.01 on matrices), global_batch B, train.device = cuda,
#       train.precision = bf16, no evaluation but 1 sequence at the end, no
#       checkpoints, no registry; --steps N timed steps after mpitrain's 5
#       untimed ones; ms/step from the run folder's run.json (result.ms_per_step:
#       the mean over the timed steps);
#   (c) scripts/bench_gpt_gpu.py, the same model and batch in PyTorch: bf16
#       autocast with fp32 weights and AdamW state, SDPA attention, fused
#       AdamW, 3 warm-up steps then N timed steps (ms/step: the median); once
#       eager, once with torch.compile (skipped when this torch lacks it).
# Both train on the same random tokens (scripts/make_tokens.py, llm.c shard).
# tokens/s = B T / (ms/step / 1000); MFU = 6 x parameters x tokens/s / peak,
# peak = gemm_peak's measured bf16 rate (and, for known cards, the data
# sheet's dense bf16 rate). A markdown table comes last; every part's log and
# a results.json are in the output folder.
#
# Exit status: 0 every part ran (or was skipped for a stated reason), 1 a
# part failed (the table still shows what ran), 2 bad arguments or set-up.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
BUNDLE=""
BATCH=8
STEPS=20
LAYERS=12 HEADS=12 EMBD=768 SEQ=1024 VOCAB=50257
declare -A SET=() # options given on the command line: they win over the mode's shape
MODE=gpu # gpu | quick | dry
DEVICE=cuda PRECISION=bf16
OUT=""
BUDGET=330
COMPILE=1
COMPILE_TIMEOUT=240
FUSED=default
THREADS=""
MPITRAIN="${MPITRAIN:-}"
GEMM_PEAK="${GEMM_PEAK:-}"
PY="${PYTHON:-}"
LAUNCH="${MT_LAUNCH-auto}"
DEVICE_KEYS="${MT_DEVICE_KEYS:-auto}"
GEMM_SIZE=8192 GEMM_ITERS=50 GEMM_GIVEN=0

usage() {
    cat <<EOF
usage: scripts/bench_gpt_gpu.sh [--bundle DIR] [--batch B] [--steps N] [--quick | --dry-run-cpu]
                                [more options]

GPT-2 124M (12 layers, 12 heads, n_embd 768, T 1024, vocab 50257) on one GPU:
mpitrain (1 rank, train.device=cuda, train.precision=bf16) against PyTorch
(bf16 autocast, eager and torch.compile), with MFU against the card's bf16
GEMM rate measured by gemm_peak. Ends with a markdown table.

  --bundle DIR       the bundle of scripts/bundle.sh (DIR.tar.xz is unpacked when DIR
                     is missing); \`source scripts/device_env.sh DIR\` when that file
                     exists, else DIR/bin goes on PATH and DIR/lib on LD_LIBRARY_PATH
                     (default: $ROOT/bundle when it exists, except with --dry-run-cpu;
                     'none': use this machine's PATH). Python runs with the
                     LD_LIBRARY_PATH from before (\$MT_SYSTEM_LD_LIBRARY_PATH), so the
                     bundle's libraries do not replace the system's under PyTorch
  --batch B          sequences per step for both tools (default $BATCH)
  --steps N          timed steps for both tools (default $STEPS): mpitrain runs N + 5
                     (its first 5 are untimed), PyTorch 3 warm-up steps + N
  --quick            a small shape for a dry run on the GPU: 2 layers, 4 heads,
                     n_embd 256, T 256, batch 4, 10 steps, gemm 4096^3 x 10
  --dry-run-cpu      the whole pipeline on this machine's CPU: tiny shape (2 layers,
                     2 heads, n_embd 64, T 64, vocab 512, batch 2, 5 steps), device cpu,
                     precision fp32, build/mpitrain and mpirun from PATH; no gemm_peak
  --layers/--heads/--embd/--seq/--vocab N   override the model shape
  --precision P      bf16 (default) or fp32 for both tools
  --fused F          mpitrain's train.fused: default (the config's default), true,
                     false, or both (two mpitrain runs: fused, then unfused)
  --no-compile       skip the torch.compile run
  --compile-timeout S   limit of the torch.compile run (default $COMPILE_TIMEOUT s)
  --budget S         all parts together (default $BUDGET s); a part gets at most what
                     is left, and is skipped when under 20 s is left
  --out DIR          logs, the mpitrain config and run.json, results.json (default: a
                     new folder under \${TMPDIR:-/tmp}, kept and printed); the token
                     shards and mpitrain's run folder go to a temporary folder,
                     removed at the end
  --threads N        CPU threads per tool (OMP_NUM_THREADS; run.threads; torch
                     set_num_threads) (default: nproc with --dry-run-cpu, else 8)
  --launch CMD       how to start mpitrain: 'mpirun' (mpirun -np 1 --bind-to none),
                     'direct' (no launcher), or a command prefix (default: \$MT_LAUNCH,
                     else mpirun when on PATH, else direct; an mpirun that failed
                     before mpitrain printed anything is retried direct)
  --mpitrain PATH    the binary (default: \$MPITRAIN, else mpitrain on PATH (the
                     bundle's), BUNDLE/bin, build/mpitrain; --dry-run-cpu without
                     --bundle: build/mpitrain first)
  --gemm-peak PATH   the gemm_peak binary (default: \$GEMM_PEAK, BUNDLE/bin, PATH,
                     build/bench/gemm_peak); with --dry-run-cpu it then runs too
                     (its exit 77, no GPU, counts as skipped there)
  --gemm-size N      M = N = K of gemm_peak (default 8192; --quick 4096)
  --gemm-iters N     timed calls per gemm_peak case (default 50; --quick 10)
  --python PATH      python3 with torch (default: \$PYTHON, else the first of python3,
                     /usr/bin/python3 that imports torch)
  -h, --help         this help
Environment: MT_DEVICE_KEYS=0|1|auto writes train.device / train.precision into the
config (auto: 1 on the GPU; with --dry-run-cpu only when the binary knows the keys).
EOF
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundle) need_arg "$@"; BUNDLE="$2"; shift 2 ;;
        --batch) need_arg "$@"; SET[BATCH]="$2"; shift 2 ;;
        --steps) need_arg "$@"; SET[STEPS]="$2"; shift 2 ;;
        --quick) MODE=quick; shift ;;
        --dry-run-cpu) MODE=dry; shift ;;
        --layers) need_arg "$@"; SET[LAYERS]="$2"; shift 2 ;;
        --heads) need_arg "$@"; SET[HEADS]="$2"; shift 2 ;;
        --embd) need_arg "$@"; SET[EMBD]="$2"; shift 2 ;;
        --seq) need_arg "$@"; SET[SEQ]="$2"; shift 2 ;;
        --vocab) need_arg "$@"; SET[VOCAB]="$2"; shift 2 ;;
        --precision) need_arg "$@"; SET[PRECISION]="$2"; shift 2 ;;
        --no-compile) COMPILE=0; shift ;;
        --fused) need_arg "$@"; FUSED="$2"; shift 2 ;;
        --compile-timeout) need_arg "$@"; COMPILE_TIMEOUT="$2"; shift 2 ;;
        --budget) need_arg "$@"; BUDGET="$2"; shift 2 ;;
        --out) need_arg "$@"; OUT="$2"; shift 2 ;;
        --threads) need_arg "$@"; THREADS="$2"; shift 2 ;;
        --launch) need_arg "$@"; LAUNCH="$2"; shift 2 ;;
        --mpitrain) need_arg "$@"; MPITRAIN="$2"; shift 2 ;;
        --gemm-peak) need_arg "$@"; GEMM_PEAK="$2"; GEMM_GIVEN=1; shift 2 ;;
        --gemm-size) need_arg "$@"; SET[GEMM_SIZE]="$2"; shift 2 ;;
        --gemm-iters) need_arg "$@"; SET[GEMM_ITERS]="$2"; shift 2 ;;
        --python) need_arg "$@"; PY="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

# ---- the mode's shape, then the options given ----
if [[ "$MODE" == quick ]]; then
    LAYERS=2 HEADS=4 EMBD=256 SEQ=256 BATCH=4 STEPS=10
    GEMM_SIZE=4096 GEMM_ITERS=10
elif [[ "$MODE" == dry ]]; then
    LAYERS=2 HEADS=2 EMBD=64 SEQ=64 VOCAB=512 BATCH=2 STEPS=5
    DEVICE=cpu PRECISION=fp32
fi
for v in "${!SET[@]}"; do printf -v "$v" '%s' "${SET[$v]}"; done
need_uints BATCH STEPS LAYERS HEADS EMBD SEQ VOCAB BUDGET COMPILE_TIMEOUT GEMM_SIZE GEMM_ITERS
[[ -z "$THREADS" ]] || is_uint "$THREADS" || die "--threads: positive integer expected"
case "$FUSED" in
    default | true) MT_KEYS=(mpitrain) ;;
    false) MT_KEYS=(mpitrain_unfused) ;;
    both) MT_KEYS=(mpitrain mpitrain_unfused) ;;
    *) die "--fused: default, true, false or both, got '$FUSED'" ;;
esac
[[ "$PRECISION" == bf16 || "$PRECISION" == fp32 ]] || die "--precision: bf16 or fp32, got '$PRECISION'"
[[ $((EMBD % HEADS)) -eq 0 ]] || die "--embd ($EMBD) must be divisible by --heads ($HEADS)"
[[ "$VOCAB" -le 65536 ]] || die "--vocab must be <= 65536 (uint16 token shards)"
NPROC=$(nproc_all)
if [[ -z "$THREADS" ]]; then
    if [[ "$MODE" == dry ]]; then THREADS=$NPROC; else THREADS=$((NPROC < 8 ? NPROC : 8)); fi
fi
T0=$(date +%s)

# ---- environment: the bundle ----
if [[ "$BUNDLE" == none ]]; then
    BUNDLE=""
elif [[ -z "$BUNDLE" && "$MODE" != dry && ( -d "$ROOT/bundle" || -f "$ROOT/bundle.tar.xz" ) ]]; then
    BUNDLE=$ROOT/bundle
fi
ENV_DESC="this machine's PATH"
if [[ -n "$BUNDLE" ]]; then
    b_dir=$(cd "$(dirname "$BUNDLE")" 2>/dev/null && pwd) || die "--bundle: no folder $(dirname "$BUNDLE")"
    BUNDLE=$b_dir/$(basename "$BUNDLE")
    if [[ ! -d "$BUNDLE" && -f "$BUNDLE.tar.xz" ]]; then
        tar -C "$(dirname "$BUNDLE")" -xJf "$BUNDLE.tar.xz" || die "cannot unpack $BUNDLE.tar.xz"
    fi
    [[ -d "$BUNDLE/bin" ]] || die "no bundle at $BUNDLE (run scripts/bundle.sh on the build machine)"
    export BUNDLE
    if [[ -f "$ROOT/scripts/device_env.sh" ]]; then
        set +u
        # shellcheck disable=SC1091
        source "$ROOT/scripts/device_env.sh" "$BUNDLE" || die "sourcing scripts/device_env.sh $BUNDLE failed"
        set -u
        ENV_DESC="source scripts/device_env.sh $BUNDLE"
    else
        export PATH="$BUNDLE/bin:$PATH"
        export LD_LIBRARY_PATH="$BUNDLE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        ENV_DESC="BUNDLE/bin on PATH, BUNDLE/lib on LD_LIBRARY_PATH (no scripts/device_env.sh)"
    fi
fi
mpi_env
export OMP_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS"

pyrun() { # pyrun ARGS...: python with the LD_LIBRARY_PATH from before the bundle's
    if [[ -z "${MT_SYSTEM_LD_LIBRARY_PATH+x}" ]]; then
        "$PY" "$@"
    elif [[ -n "$MT_SYSTEM_LD_LIBRARY_PATH" ]]; then
        LD_LIBRARY_PATH=$MT_SYSTEM_LD_LIBRARY_PATH "$PY" "$@"
    else
        env -u LD_LIBRARY_PATH "$PY" "$@"
    fi
}
first_exe() { # first_exe CANDIDATE...: the first that is an executable file
    local c
    for c in "$@"; do
        [[ -n "$c" && -x "$c" && -f "$c" ]] && { echo "$c"; return 0; }
    done
    return 1
}
if [[ -z "$MPITRAIN" ]]; then
    if [[ "$MODE" == dry && -z "$BUNDLE" ]]; then
        MPITRAIN=$(first_exe "$ROOT/build/mpitrain" "$(command -v mpitrain || true)") || true
    else
        MPITRAIN=$(first_exe "$(command -v mpitrain || true)" "${BUNDLE:+$BUNDLE/bin/mpitrain}" \
            "$ROOT/build/mpitrain") || true
    fi
fi
[[ -n "$MPITRAIN" && -x "$MPITRAIN" ]] || die "no mpitrain binary (pass --bundle DIR or --mpitrain PATH)"
if [[ -z "$GEMM_PEAK" ]]; then
    GEMM_PEAK=$(first_exe "${BUNDLE:+$BUNDLE/bin/gemm_peak}" "$(command -v gemm_peak || true)" \
        "$ROOT/build/bench/gemm_peak") || true
fi
TORCH_Q='import torch; print(torch.__version__, "CUDA", torch.version.cuda)'
TORCH_DESC=""
if [[ -z "$PY" ]]; then
    for c in "$(command -v python3 || true)" /usr/bin/python3; do
        [[ -n "$c" && -x "$c" ]] && TORCH_DESC=$(PY=$c pyrun -c "$TORCH_Q" 2>/dev/null) && { PY=$c; break; }
    done
    [[ -z "$PY" ]] && PY=$(command -v python3 || echo /usr/bin/python3)
fi
[[ -x "$PY" ]] || PY=$(command -v "$PY" || true)
[[ -n "$PY" ]] || die "no python3 (pass --python PATH)"
[[ -n "$TORCH_DESC" ]] || TORCH_DESC=$(pyrun -c "$TORCH_Q" 2>/dev/null) || TORCH_DESC="no torch"
case "$LAUNCH" in
    "") LAUNCH=direct ;;
    auto) if command -v mpirun >/dev/null; then LAUNCH=mpirun; else LAUNCH=direct; fi ;;
esac
launch_words() { # the launcher's words for mode $1 (mpirun | direct | a command prefix)
    case "$1" in
        mpirun) echo "mpirun -np 1 --bind-to none -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS" ;;
        direct) echo "" ;;
        *) echo "$1" ;;
    esac
}

if [[ -z "$OUT" ]]; then
    OUT=$(mktemp -d "${TMPDIR:-/tmp}/bench_gpt_gpu.XXXXXX") || die "cannot make a temporary folder"
else
    mkdir -p "$OUT" || die "cannot make $OUT"
    OUT=$(cd "$OUT" && pwd)
fi
# the token shards and mpitrain's run folder (its model.h5 is ~0.5 GB for 124M
# parameters): apart from the logs in OUT, and removed at the end
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench_gpt_gpu_work.XXXXXX") || die "cannot make a temporary folder"
trap 'rm -rf "$WORK"' EXIT

# ---- bookkeeping ----
FAILED=0
# shellcheck disable=SC2034 # MFU, MFU_SPEC: read through the nameref of cell()
declare -A ST MS TOKS MFU MFU_SPEC NOTE
left() { echo $((BUDGET - ($(date +%s) - T0))); }
limit() { # limit MAX: seconds a part may take now (0: skip it)
    local l
    l=$(left)
    ((l > $1)) && l=$1
    ((l < 20)) && l=0
    echo "$l"
}
show_fail() { # show_fail PART LOG WHY
    echo "bench_gpt_gpu.sh: $1 $3; last lines of $2:" >&2
    tail -n 25 "$2" >&2
}
json_get() { # json_get FILE KEY...: value at the path, '' when missing or null
    pyrun - "$@" <<'PYEOF' 2>/dev/null
import json, sys
path, keys = sys.argv[1], sys.argv[2:]
try:
    text = open(path).read()
    try:
        v = json.loads(text)
    except ValueError:  # a log: its last JSON line
        v = next(json.loads(l) for l in reversed(text.splitlines()) if l.startswith("{"))
    for k in keys:
        v = v[k]
except Exception:
    v = None
print("" if v is None else v)
PYEOF
}
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# exact parameter count of core/gpt.c: wte + wpe + L blocks + ln_f
PARAMS_EXPECT=$((VOCAB * EMBD + SEQ * EMBD + LAYERS * (12 * EMBD * EMBD + 13 * EMBD) + 2 * EMBD))
TOKENS_PER_STEP=$((BATCH * SEQ))

# ---- header ----
GPU_NAME=""
command -v nvidia-smi >/dev/null &&
    GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
echo "# bench_gpt_gpu.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  mode: $MODE"
echo "machine: $(uname -sr), nproc $NPROC${GPU_NAME:+, GPU: $GPU_NAME}"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null |
        sed 's/^/nvidia-smi: /'
fi
echo "environment: $ENV_DESC"
echo "mpitrain: $("$MPITRAIN" --version 2>/dev/null | head -n 1) ($MPITRAIN)"
echo "launcher: $LAUNCH ($(launch_words "$LAUNCH"))"
echo "gemm_peak: ${GEMM_PEAK:-not found}"
echo "torch: $TORCH_DESC ($PY)"
echo "model: gpt $LAYERS layers, $HEADS heads, n_embd $EMBD, T = block_size $SEQ, vocab $VOCAB," \
    "$PARAMS_EXPECT parameters; batch $BATCH x $SEQ = $TOKENS_PER_STEP tokens per step;" \
    "device $DEVICE, precision $PRECISION; $STEPS timed steps each"
echo "threads: $THREADS; budget ${BUDGET} s; output: $OUT"
echo

# ---- (a) gemm_peak ----
PEAK="" PEAK_F16BF="" PEAK_FP32="" PEAK_TF32="" GEMM_GPU=""
if [[ "$MODE" == dry && "$GEMM_GIVEN" -eq 0 ]]; then
    ST[gemm]="skipped: --dry-run-cpu (no GPU here)"
    echo "gemm_peak: skipped (--dry-run-cpu: no GPU on this machine; MFU is n/a)" >&2
elif [[ -z "$GEMM_PEAK" ]]; then
    ST[gemm]="FAILED: no gemm_peak binary (bundle it: BUNDLE/bin/gemm_peak)"
    FAILED=1
    echo "bench_gpt_gpu.sh: ${ST[gemm]}" >&2
else
    lim=$(limit 150)
    if ((lim == 0)); then
        ST[gemm]="skipped: time budget spent"
    else
        echo "gemm_peak: ${GEMM_SIZE}^3, $GEMM_ITERS calls per case (limit $lim s) ..." >&2
        timeout -k 10 "$lim" "$GEMM_PEAK" --m "$GEMM_SIZE" --n "$GEMM_SIZE" --k "$GEMM_SIZE" \
            --iters "$GEMM_ITERS" >"$OUT/gemm_peak.log" 2>&1
        rc=$?
        grep -v '^{' "$OUT/gemm_peak.log" | sed 's/^/  /' >&2
        PEAK=$(json_get "$OUT/gemm_peak.log" bf16_tflops)
        PEAK_F16BF=$(json_get "$OUT/gemm_peak.log" fp32in_fast16bf_tflops)
        PEAK_TF32=$(json_get "$OUT/gemm_peak.log" fp32in_tf32_tflops)
        PEAK_FP32=$(json_get "$OUT/gemm_peak.log" fp32_tflops)
        GEMM_GPU=$(json_get "$OUT/gemm_peak.log" gpu)
        if [[ $rc -eq 0 && -n "$PEAK" ]]; then
            ST[gemm]="ok"
        elif [[ $rc -eq 77 && "$MODE" == dry ]]; then
            ST[gemm]="skipped: $(grep -m1 'no usable CUDA device' "$OUT/gemm_peak.log")"
        elif [[ $rc -eq 77 ]]; then # on the GPU machine, no usable GPU is a failure
            ST[gemm]="FAILED: $(grep -m1 'no usable CUDA device' "$OUT/gemm_peak.log")"
            FAILED=1
        else
            ST[gemm]="FAILED (exit $rc$([[ $rc -eq 124 ]] && echo ", timed out after $lim s"))"
            FAILED=1
            show_fail gemm_peak "$OUT/gemm_peak.log" "${ST[gemm]}"
        fi
    fi
fi
[[ -n "$GEMM_GPU" ]] && GPU_NAME=$GEMM_GPU

# data-sheet dense bf16 tensor-core rate (TFLOP/s) of known cards, by name
SPEC=""
case "$GPU_NAME" in
    *H100*PCIe*) SPEC=756 ;;
    *H100*NVL*) SPEC=835 ;;
    *H200*NVL*) SPEC=836 ;;
    *H100* | *H200*) SPEC=989 ;; # GH200 too
    *A100*) SPEC=312 ;;
esac

mfu() { # mfu TOKENS_PER_S PEAK_TFLOPS PARAMS
    [[ -n "$1" && -n "$2" && -n "$3" ]] || { echo "n/a"; return; }
    [[ $(calc "%d" "($2 > 0) ? 1 : 0") == 1 ]] || { echo "n/a"; return; }
    calc "%.1f%%" "100 * 6 * $3 * $1 / ($2 * 1e12)"
}
record() { # record KEY MS PARAMS: fills MS TOKS MFU MFU_SPEC
    MS[$1]=$(calc "%.2f" "$2")
    TOKS[$1]=$(calc "%.0f" "1e3 * $TOKENS_PER_STEP / $2")
    MFU[$1]=$(mfu "${TOKS[$1]}" "$PEAK" "$3")
    # shellcheck disable=SC2034 # read through the nameref of cell()
    MFU_SPEC[$1]=$(mfu "${TOKS[$1]}" "$SPEC" "$3")
}

# ---- token shards (both tools) ----
N_TRAIN=$((BATCH * 32 * SEQ + 1))
N_VAL=$((4 * SEQ + 1))
if ! pyrun "$ROOT/scripts/make_tokens.py" --out "$WORK/train.bin" --tokens "$N_TRAIN" \
    --vocab "$VOCAB" --seed 1 >"$OUT/tokens.log" 2>&1 ||
    ! pyrun "$ROOT/scripts/make_tokens.py" --out "$WORK/val.bin" --tokens "$N_VAL" \
        --vocab "$VOCAB" --seed 2 >>"$OUT/tokens.log" 2>&1; then
    cat "$OUT/tokens.log" >&2
    die "scripts/make_tokens.py failed"
fi

# ---- (b) mpitrain ----
if [[ "$DEVICE_KEYS" == auto ]]; then
    if [[ "$MODE" == dry ]]; then
        keys=$("$MPITRAIN" train --help-config 2>/dev/null)
        if grep -Eq '^ +device +cpu\|cuda' <<<"$keys" && grep -Eq '^ +precision +fp32\|bf16' <<<"$keys"; then
            DEVICE_KEYS=1
        else
            DEVICE_KEYS=0
        fi
    else
        DEVICE_KEYS=1
    fi
fi
MT_STEPS=$((STEPS + 5)) # mpitrain leaves its first 5 steps out of ms/step (core/trainer.c)
CFG="$OUT/mpitrain.ini"
{
    echo "; written by scripts/bench_gpt_gpu.sh ($MODE)"
    echo "[run]"
    echo "name = gpt_bench"
    echo "dir = $WORK/runs"
    echo "seed = 1234"
    echo "log_every = 5"
    echo "threads = $THREADS"
    echo "[data]"
    echo "train_tokens = $WORK/train.bin"
    echo "val_tokens = $WORK/val.bin"
    echo "[model]"
    echo "kind = gpt"
    echo "n_layer = $LAYERS"
    echo "n_head = $HEADS"
    echo "n_embd = $EMBD"
    echo "block_size = $SEQ"
    echo "vocab_size = $VOCAB"
    echo "dropout = 0"
    echo "[optim]"
    echo "kind = adamw"
    echo "lr = 0.0006"
    echo "beta1 = 0.9"
    echo "beta2 = 0.999"
    echo "eps = 1e-8"
    echo "weight_decay = 0.01"
    echo "grad_clip = 0"
    echo "schedule = constant"
    echo "warmup_steps = 0"
    echo "[train]"
    echo "steps = $MT_STEPS"
    echo "global_batch = $BATCH"
    echo "seq_len = $SEQ"
    echo "eval_every = 0"
    echo "eval_windows = 1"
    echo "shuffle = true"
    if [[ "$DEVICE_KEYS" == 1 ]]; then
        echo "device = $DEVICE"
        echo "precision = $PRECISION"
    fi
    echo "[checkpoint]"
    echo "every_steps = 0"
    echo "every_seconds = 0"
    echo "save_final = false"
    echo "[registry]"
    echo "enabled = false"
} >"$CFG"
[[ "$DEVICE_KEYS" == 1 ]] || echo "note: train.device / train.precision left out of the config" \
    "(this mpitrain does not know them; MT_DEVICE_KEYS=1 forces them)" >&2

run_mpitrain() { # run_mpitrain LAUNCH LIMIT LOG
    local words
    words=$(launch_words "$1")
    rm -rf "$WORK/runs"
    # shellcheck disable=SC2086 # the launcher's words split on purpose
    timeout -k 15 "$2" $words "$MPITRAIN" train --config "$CFG" "${FUSED_SET[@]}" >"$3" 2>&1
}
MT_BACKEND="" MT_LAUNCH_USED=""
for key in "${MT_KEYS[@]}"; do
    FUSED_SET=()
    case $key in
        mpitrain) [[ "$FUSED" == default ]] || FUSED_SET=(--set train.fused=true) ;;
        mpitrain_unfused) FUSED_SET=(--set train.fused=false) ;;
    esac
    lim=$(limit 300)
    if ((lim == 0)); then
        ST[$key]="skipped: time budget spent"
    else
        echo "$key (${FUSED_SET[*]:-train.fused default}): $MT_STEPS steps ($STEPS timed), launcher $LAUNCH (limit $lim s) ..." >&2
        t_mt=$(date +%s)
        run_mpitrain "$LAUNCH" "$lim" "$OUT/$key.log"
        rc=$?
        MT_LAUNCH_USED=$LAUNCH
        # mpirun that could not start mpitrain (no line of mpitrain's own: its banner
        # "mpitrain X.Y.Z (...)" or an "mpitrain: error"): once more without it
        if [[ $rc -ne 0 && $rc -ne 124 && "$LAUNCH" == mpirun ]] && ! grep -q '^mpitrain' "$OUT/$key.log"; then
            echo "mpitrain: the mpirun start failed (exit $rc, mpitrain printed nothing); retrying without mpirun" >&2
            tail -n 8 "$OUT/$key.log" | sed 's/^/  mpirun: /' >&2
            mv "$OUT/$key.log" "$OUT/$key.mpirun.log"
            lim=$(limit 300)
            if ((lim > 0)); then
                run_mpitrain direct "$lim" "$OUT/$key.log"
                rc=$?
                MT_LAUNCH_USED=direct
            fi
        fi
        RUN_JSON=""
        for f in "$WORK"/runs/gpt_bench/*/run.json; do [[ -f "$f" ]] && RUN_JSON=$f; done
        MT_MS="" MT_PARAMS="" MT_STATUS=""
        if [[ -n "$RUN_JSON" ]]; then
            MT_MS=$(json_get "$RUN_JSON" result ms_per_step)
            MT_PARAMS=$(json_get "$RUN_JSON" parameters)
            MT_STATUS=$(json_get "$RUN_JSON" result status)
            cp "$RUN_JSON" "$OUT/$key.run.json"
            cp "$(dirname "$RUN_JSON")/metrics.jsonl" "$OUT/$key.metrics.jsonl" 2>/dev/null
        fi
        MT_BACKEND=$(sed -n 's/^layout: .*| backend \([^ |]*\).*/\1/p' "$OUT/$key.log" | head -n 1)
        grep -E '^(layout|model|time|device|cuda|gpu|backend|precision): |^step +[0-9]+/' "$OUT/$key.log" |
            sed 's/^/  /' >&2
        if [[ $rc -eq 0 && "$MT_STATUS" == completed && -n "$MT_MS" ]]; then
            ST[$key]="ok"
            record "$key" "$MT_MS" "${MT_PARAMS:-$PARAMS_EXPECT}"
            [[ "$MT_PARAMS" == "$PARAMS_EXPECT" ]] ||
                NOTE[$key]="parameters $MT_PARAMS, expected $PARAMS_EXPECT"
            if [[ "$DEVICE" == cuda && -n "$MT_BACKEND" && "$MT_BACKEND" != *cuda* ]]; then
                ST[$key]="FAILED: ran on backend '$MT_BACKEND', not cuda"
                FAILED=1
            fi
        else
            why="exit $rc"
            [[ $rc -eq 124 ]] && why="timed out after $lim s"
            [[ $rc -eq 0 ]] && why="no result.ms_per_step in ${RUN_JSON:+its run.json}${RUN_JSON:-run.json (none)}"
            ST[$key]="FAILED ($why)"
            FAILED=1
            show_fail "$key" "$OUT/$key.log" "${ST[$key]}"
            # a run cut short: its last progress line past step 5 (tokens/s since the line
            # before) still tells the speed; shown, marked as such
            last=$(sed -n 's/^step *\([0-9]*\)\/[0-9]* .*| \([0-9.]*\) tokens\/s .*/\1 \2/p' \
                "$OUT/$key.log" | tail -n 1)
            if [[ -n "$last" && ${last%% *} -gt 5 && ${last#* } != 0 ]]; then
                record "$key" "$(calc "%.4f" "1e3 * $TOKENS_PER_STEP / ${last#* }")" "$PARAMS_EXPECT"
                NOTE[$key]="ms/step from its progress line at step ${last%% *} (the run did not finish)"
            fi
        fi
        echo "$key: ${ST[$key]} in $(($(date +%s) - t_mt)) s" >&2
    fi
done

# ---- (c) PyTorch, eager then compiled ----
run_torch() { # run_torch KEY LIMIT EXTRA...
    local key=$1 lim=$2
    shift 2
    timeout -k 15 "$lim" env ${MT_SYSTEM_LD_LIBRARY_PATH+LD_LIBRARY_PATH="$MT_SYSTEM_LD_LIBRARY_PATH"} \
        "$PY" "$ROOT/scripts/bench_gpt_gpu.py" --device "$DEVICE" \
        --precision "$PRECISION" --layers "$LAYERS" --heads "$HEADS" --embd "$EMBD" --seq "$SEQ" \
        --vocab "$VOCAB" --batch "$BATCH" --steps "$STEPS" --warmup 3 --threads "$THREADS" \
        --tokens "$WORK/train.bin" --json-out "$OUT/$key.json" "$@" >"$OUT/$key.log" 2>&1
}
TORCH_ATTN="" TORCH_OPT=""
for key in torch_eager torch_compile; do
    extra=()
    if [[ "$key" == torch_compile ]]; then
        if [[ "$COMPILE" -eq 0 ]]; then
            ST[$key]="skipped: --no-compile"
            continue
        fi
        if [[ "${ST[torch_eager]}" == FAILED* ]]; then
            ST[$key]="skipped: the eager run failed"
            continue
        fi
        extra=(--compile)
        lim=$(limit "$COMPILE_TIMEOUT")
    else
        lim=$(limit 240)
    fi
    if ((lim == 0)); then
        ST[$key]="skipped: time budget spent"
        continue
    fi
    echo "PyTorch ${key#torch_}: 3 + $STEPS steps (limit $lim s) ..." >&2
    t_to=$(date +%s)
    rm -f "$OUT/$key.json"
    run_torch "$key" "$lim" "${extra[@]}"
    rc=$?
    grep -E '^(torch|precision|ms/step|warm-up:)' "$OUT/$key.log" | sed 's/^/  /' >&2
    ms=$(json_get "$OUT/$key.json" ms_per_step)
    if [[ $rc -eq 0 && -n "$ms" ]]; then
        ST[$key]="ok"
        p=$(json_get "$OUT/$key.json" params)
        record "$key" "$ms" "${p:-$PARAMS_EXPECT}"
        [[ "$p" == "$PARAMS_EXPECT" ]] || NOTE[$key]="parameters $p, expected $PARAMS_EXPECT"
        TORCH_ATTN=$(json_get "$OUT/$key.json" attention)
        TORCH_OPT=$(json_get "$OUT/$key.json" optimizer)
    elif [[ $rc -eq 3 ]]; then
        ST[$key]="skipped: torch.compile is not in this torch"
    elif [[ "$key" == torch_compile && ($rc -eq 124 || $rc -eq 137) && $lim -lt $COMPILE_TIMEOUT ]]; then
        # not a failure: the budget left was shorter than the compile's own limit
        ST[$key]="skipped: budget: not done in the $lim s left of the budget (its own limit $COMPILE_TIMEOUT s)"
        show_fail "PyTorch compile" "$OUT/$key.log" "${ST[$key]}"
    else
        why="exit $rc"
        [[ $rc -eq 124 ]] && why="timed out after $lim s"
        ST[$key]="FAILED ($why)"
        FAILED=1
        show_fail "PyTorch ${key#torch_}" "$OUT/$key.log" "${ST[$key]}"
    fi
    echo "PyTorch ${key#torch_}: ${ST[$key]} in $(($(date +%s) - t_to)) s" >&2
done

# ---- (d) the table ----
ms_ratio() { # ms_ratio KEY_A KEY_B: ms[A] / ms[B], or n/a
    [[ -n "${MS[$1]:-}" && -n "${MS[$2]:-}" ]] || { echo "n/a"; return; }
    calc "%.2f" "${MS[$1]} / ${MS[$2]}"
}
row() { printf '| %-44s | %-10s | %9s | %9s | %9s | %9s |\n' "$@"; }
cell() { # cell ARRAY KEY: the value, or '-'
    local -n arr=$1
    echo "${arr[$2]:--}"
}
short() { # the status column: ok, skipped, FAILED
    case "$1" in ok) echo ok ;; skipped*) echo skipped ;; *) echo FAILED ;; esac
}
MT_DESC="mpitrain, 1 rank, $DEVICE, $PRECISION"
[[ -n "$MT_BACKEND" ]] && MT_DESC+=" (backend $MT_BACKEND)"
PT_DESC="$PRECISION$([[ $PRECISION == bf16 ]] && echo " autocast"), ${TORCH_ATTN:-?} attn"
ELAPSED=$(($(date +%s) - T0))

echo
echo "## GPT $LAYERS layers x $EMBD ($PARAMS_EXPECT parameters), B $BATCH x T $SEQ," \
    "${GPU_NAME:-$(uname -m) CPU}"
echo
row "run" "status" "ms/step" "tokens/s" "MFU" "MFU spec"
row "--------------------------------------------" "----------" "--------:" "--------:" "--------:" "--------:"
for key in "${MT_KEYS[@]}" torch_eager torch_compile; do
    case $key in
        mpitrain) d="$MT_DESC$([[ $FUSED == default ]] || echo ", fused")" ;;
        mpitrain_unfused) d="$MT_DESC, unfused" ;;
        torch_eager) d="PyTorch eager, $PT_DESC" ;;
        torch_compile) d="PyTorch torch.compile, $PT_DESC" ;;
    esac
    row "$d" "$(short "${ST[$key]}")" "$(cell MS "$key")" "$(cell TOKS "$key")" "$(cell MFU "$key")" \
        "$(cell MFU_SPEC "$key")"
done
echo
echo "- card: ${GPU_NAME:-none (CPU)}; gemm_peak ${GEMM_SIZE}^3: bf16 ${PEAK:-n/a} TFLOP/s," \
    "fp32 inputs + FAST_16BF ${PEAK_F16BF:-n/a}, TF32 ${PEAK_TF32:-n/a}, fp32 pedantic" \
    "${PEAK_FP32:-n/a} (${ST[gemm]})"
echo "- MFU = 6 x parameters x tokens/s / peak; peak = gemm_peak's measured bf16 rate" \
    "(${PEAK:-n/a} TFLOP/s); MFU spec: against the data sheet's dense bf16 rate" \
    "(${SPEC:-unknown for this card}${SPEC:+ TFLOP/s}); attention FLOPs not counted"
echo "- ratio mpitrain / PyTorch step time: eager $(ms_ratio mpitrain torch_eager)," \
    "compiled $(ms_ratio mpitrain torch_compile) (goal <= 1.0)"
[[ "$FUSED" == both ]] && echo "- unfused / fused mpitrain step time: $(ms_ratio mpitrain_unfused mpitrain)"
echo "- ms/step: mpitrain the mean of $STEPS steps after 5 untimed (run.json result.ms_per_step);" \
    "PyTorch the median of $STEPS steps after 3 warm-up steps, each synchronized"
echo "- PyTorch: $TORCH_DESC, optimizer ${TORCH_OPT:-?}; mpitrain launcher ${MT_LAUNCH_USED:-none}"
for key in gemm "${MT_KEYS[@]}" torch_eager torch_compile; do
    [[ "${ST[$key]:-}" == ok ]] || echo "- $key: ${ST[$key]:-not run}"
    [[ -n "${NOTE[$key]:-}" ]] && echo "- $key: ${NOTE[$key]}"
done
echo "- total ${ELAPSED} s; logs: $OUT"

# ---- results.json (machine-readable) ----
{
    printf '{"mode":%s,"gpu":%s,"batch":%d,"seq":%d,"layers":%d,"heads":%d,"embd":%d,' \
        "$(jstr "$MODE")" "$(jstr "${GPU_NAME:-}")" "$BATCH" "$SEQ" "$LAYERS" "$HEADS" "$EMBD"
    printf '"vocab":%d,"params":%d,"precision":%s,"steps":%d,' "$VOCAB" "$PARAMS_EXPECT" \
        "$(jstr "$PRECISION")" "$STEPS"
    printf '"gemm_bf16_tflops":%s,"gemm_fp32in_fast16bf_tflops":%s,"gemm_fp32_tflops":%s,' \
        "$(jnum "$PEAK")" "$(jnum "$PEAK_F16BF")" "$(jnum "$PEAK_FP32")"
    printf '"spec_bf16_tflops":%s,"runs":{' "$(jnum "$SPEC")"
    sep=""
    for key in gemm "${MT_KEYS[@]}" torch_eager torch_compile; do
        printf '%s"%s":{"status":%s,"ms_per_step":%s,"tokens_per_s":%s,"mfu":%s}' "$sep" "$key" \
            "$(jstr "${ST[$key]:-not run}")" "$(jnum "${MS[$key]:-}")" "$(jnum "${TOKS[$key]:-}")" \
            "$(jstr "${MFU[$key]:-n/a}")"
        sep=","
    done
    printf '},"ratio_mpitrain_torch_eager":%s,"ratio_mpitrain_torch_compile":%s,"failed":%s}\n' \
        "$(r=$(ms_ratio mpitrain torch_eager); jnum "${r#n/a}")" \
        "$(r=$(ms_ratio mpitrain torch_compile); jnum "${r#n/a}")" \
        "$([[ $FAILED -eq 0 ]] && echo false || echo true)"
} >"$OUT/results.json"
exit "$FAILED"
