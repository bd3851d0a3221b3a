#!/usr/bin/env bash
# device_check.sh - ONE command for a lent GPU machine: every check of the CUDA
# backend and the GPT-2 124M benchmark, with the binaries of scripts/bundle.sh,
# inside a deadline, ending with one compact table. Builds nothing.
#
# usage: scripts/device_check.sh [--deadline S] [--bundle DIR] [--out DIR]
#        scripts/device_check.sh --dry-run-cpu [--build DIR] [--deadline S] [--out DIR]
#   --deadline S   the whole script ends within S seconds (+ a few), default 480:
#                  each stage runs under `timeout -k` with its own budget, cut
#                  to the time left; a stage that no longer fits is skipped
#                  with the reason "deadline"
#   --bundle DIR   default: ROOT/bundle (DIR.tar.xz is unpacked when DIR is missing)
#   --out DIR      results (default: $OUT when set, else a new temporary folder):
#                  results.json, logs.tar.gz (every stage's logs), table.md
#   --stages LIST  only these stages (comma-separated names from the list
#                  below, run in the list's order; the others are reported
#                  skipped, "not selected"): a rerun after a fix, e.g.
#                  --stages ops_small,trajectory --deadline 200
#   --dry-run-cpu  every stage on this machine's CPU with the build folder's
#                  binaries (--build DIR, default ROOT/build; no bundle):
#                  test_backend_cmp as MT_BACKEND_CMP_SELF=1, the GPT-2 shapes
#                  scaled down (B 1, T 128, vocab 4000), the trajectory against
#                  a reference made here the way bundle.sh makes it, the
#                  benchmark at a tiny shape; what needs a GPU is not_available
#
# Preflight first: the GPU (nvidia-smi: name, compute capability, memory free,
# driver and its CUDA version), the CUDA runtime the binaries need
# (BUNDLE/CUDA_RUNTIME, libcudart's soname) against the driver's, a tiny
# gemm_peak through the bundle, the libraries the binaries resolve (libcudart,
# libcublas, libcublasLt, libnccl: scripts/device_env.sh finds them),
# compute-sanitizer, python3 and its torch (version, CUDA, torch.compile).
# Stages, in order (each in results.json: status passed | failed | skipped |
# not_available | timeout, seconds, budget, reason, key numbers):
#   sanitizer            compute-sanitizer memcheck on test_backend_cmp (small)
#   ops_small            test_backend_cmp: every CUDA op vs the CPU, small shapes
#                        (fp32 1e-5, bf16 1e-2), and test_backend_bf16
#   ops_gpt2             test_backend_cmp --shapes gpt2: B 4, T 1024, C 768, 12
#                        heads, V 50257 and 50304
#   trajectory           scripts/device_trajectory.sh main: 10 steps vs the CPU
#                        reference carried in the bundle (fp32 fused and
#                        unfused 1e-4, bf16 2e-2, PyTorch on the GPU 1e-4)
#   benchmark            scripts/bench_gpt_gpu.sh --fused both: GPT-2 124M, B 8,
#                        T 1024, mpitrain fused/unfused, PyTorch eager/compile,
#                        tokens/s, MFU vs gemm_peak's bf16 and the data sheet
#   op_times             test_backend_cmp --time: median ms per op, GPU and CPU
#   trajectory_parallel  scripts/device_trajectory.sh parallel: dp2, tp2.pp2 on
#                        the one GPU, a CUDA checkpoint resumed on the CPU
#
# Exit status: 0 every stage passed (or was skipped / not available, with its
# reason), 1 a stage failed or timed out, 2 bad arguments or a bad bundle,
# 77 no GPU, 78 the driver too old for the binaries' CUDA runtime, 79 a CUDA
# library missing. A preflight failure prints its reason as one line
# ("device_check.sh: error: ...") after the table, and still writes
# results.json (every stage skipped, with the reason).
# Every process a stage starts carries DC_TOKEN=dc.PID.STAGE.N in its
# environment; what is left of them when the stage ends (an inner timeout's
# mpirun and ranks) is killed. TERM or INT: the stage in flight killed so,
# results.json and the table still written, exit 1. ops_small and trajectory
# run with MPITRAIN_CUDA_SYNC=1 (a faulting kernel named).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
MT_PROG=device_check.sh
STAGES=(sanitizer ops_small ops_gpt2 trajectory benchmark op_times trajectory_parallel)
# budget and least useful time of each stage, seconds
declare -A BUDGET=([sanitizer]=90 [ops_small]=40 [ops_gpt2]=120 [trajectory]=90 [benchmark]=200
    [op_times]=60 [trajectory_parallel]=45)
declare -A MIN=([sanitizer]=20 [ops_small]=10 [ops_gpt2]=30 [trajectory]=20 [benchmark]=60
    [op_times]=15 [trajectory_parallel]=20)
RESERVE=10 # seconds kept for the archive, results.json and the table
DRY_SHAPES=(--batch 1 --seq 128 --vocab 4000)
DC_WHO="CUDA vs CPU"
[[ "${DC_DRY:-0}" == 1 ]] && DC_WHO="CPU vs itself (dry run)"

# ======================= one stage (run as `$0 --stage NAME`) ================
# Runs in a child under timeout, with the DC_* variables the parent exported;
# writes "key<TAB>value" lines to $DC_RES/NAME: status, reason, numbers.
short_text() { local t=$1; ((${#t} > $2)) && t="${t:0:$(($2 - 3))}..."; echo "$t"; }
put() { printf '%s\t%s\n' "$1" "${2//[$'\t\n']/ }" >>"$DC_RES/$DC_STAGE"; }
result() { put status "$1"; put reason "$2"; }
pyrun() { # the machine's python3, with the LD_LIBRARY_PATH from before the bundle's
    if [[ -n "${MT_SYSTEM_LD_LIBRARY_PATH+x}" ]]; then
        LD_LIBRARY_PATH=$MT_SYSTEM_LD_LIBRARY_PATH "$DC_PY" "$@"
    else
        "$DC_PY" "$@"
    fi
}
cmp_run() { # test_backend_cmp ARGS: the GPU's, or the CPU against itself in the dry run
    if [[ $DC_DRY == 1 ]]; then
        MT_BACKEND_CMP_SELF=1 "$DC_BIN/test_backend_cmp" "$@"
    else
        "$DC_BIN/test_backend_cmp" "$@"
    fi
}
# cmp_numbers LOG: checks, passed, failed, the worst normalized errors (fp32 pass, bf16 pass)
cmp_numbers() {
    local last
    last=$(tail -n 1 "$1")
    if [[ "$last" =~ ([0-9]+)\ checks,\ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
        put checks "${BASH_REMATCH[1]}"
        put passed "${BASH_REMATCH[2]}"
        put failed "${BASH_REMATCH[3]}"
    fi
    awk '/, fp32: tolerance/ {p = "fp32"} /, bf16 matmuls/ {p = "bf16"} /, fp32 restored/ {p = ""}
        p != "" && /normalized error/ { for (i = 1; i < NF; i++) if ($i == "error") { v = $(i + 1) + 0; if (v > w[p]) { w[p] = v; o[p] = $1 " " $2 } } }
        END { for (k in w) printf "worst_%s_nerr\t%.2e (%s)\n", k, w[k], o[k] }' "$1" >>"$DC_RES/$DC_STAGE"
}
# crash_why RC: "exit RC", with its signal when it has one
crash_why() { echo "exit $1$( (($1 > 128)) && echo " (signal $(($1 - 128)))")"; }
# crash_line LOG: its first "error:" line, else its last line
crash_line() {
    local l
    l=$(grep -m1 'error:' "$1" | cut -c1-200)
    [[ -n "$l" ]] || l="last line: $(tail -n 1 "$1" | cut -c1-160)"
    echo "$l"
}
stage_sanitizer() {
    if [[ $DC_DRY == 1 ]]; then
        result not_available "no GPU (dry run): compute-sanitizer checks CUDA kernels on a device"
        return
    fi
    if [[ -z "$DC_SANITIZER" ]]; then
        result not_available "compute-sanitizer not found (PATH, /usr/local/cuda*/bin)"
        return
    fi
    "$DC_SANITIZER" --tool memcheck --leak-check no --error-exitcode 9 --print-limit 20 \
        "$DC_BIN/test_backend_cmp" >"$DC_LOGS/sanitizer.log" 2>&1
    local rc=$? errs
    errs=$(sed -n 's/^========= ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$DC_LOGS/sanitizer.log" | tail -n 1)
    put memcheck_errors "${errs:-?}"
    cmp_numbers "$DC_LOGS/sanitizer.log"
    if grep -q 'Device not supported' "$DC_LOGS/sanitizer.log"; then
        result not_available "compute-sanitizer: Device not supported (this machine's runtime refuses it)"
    elif [[ $rc == 0 && "${errs:-0}" == 0 ]]; then
        result passed "memcheck: 0 errors on test_backend_cmp (small shapes)"
    elif [[ $rc == 77 ]]; then
        result failed "the CUDA backend is not usable, though the preflight found a GPU: $(grep -m1 SKIPPED "$DC_LOGS/sanitizer.log")"
    else
        result failed "memcheck exit $rc, ${errs:-?} errors; first: $(grep -m1 -E '^========= (Invalid|Program hit|Error)|^FAIL' "$DC_LOGS/sanitizer.log" | cut -c1-160)"
    fi
}
# stage_ops LABEL ARGS...: test_backend_cmp ARGS
stage_ops() {
    local label=$1 log=$DC_LOGS/$DC_STAGE.log rc
    shift
    cmp_run "$@" >"$log" 2>&1
    rc=$?
    cmp_numbers "$log"
    [[ $DC_DRY == 1 && $DC_STAGE == ops_gpt2 ]] &&
        put note "dry run: the GPT-2 shapes scaled down to ${DRY_SHAPES[*]} (the CPU against itself)"
    local why=""
    if [[ $DC_STAGE == ops_small && -x "$DC_BIN/test_backend_bf16" ]]; then
        "$DC_BIN/test_backend_bf16" >"$DC_LOGS/backend_bf16.log" 2>&1
        local rb=$?
        put cpu_bf16_emulation "exit $rb: $(tail -n 1 "$DC_LOGS/backend_bf16.log" | cut -c1-100)"
        [[ $rb == 0 ]] || why="; test_backend_bf16 (the CPU's bf16 emulation, the reference) exit $rb"
    fi
    local nums
    nums=$(awk -F'\t' '$1 == "checks" {c = $2} $1 == "failed" {f = $2} $1 ~ /^worst_/ {w = w ", " substr($1, 7, 4) " " $2}
        END {printf "%s checks, %s failed; worst normalized error%s", c, f, w}' "$DC_RES/$DC_STAGE")
    case $rc in
        0) if [[ -z "$why" ]]; then result passed "$label: $nums"; else result failed "${why#; }"; fi ;;
        77) result failed "the CUDA backend is not usable, though the preflight found a GPU: $(grep -m1 SKIPPED "$log" | cut -c1-200)" ;;
        *)
            local first
            first=$(grep -m1 '^FAIL' "$log" | cut -c1-160)
            if [[ -n "$first" ]]; then
                result failed "exit $rc: $(grep -c '^FAIL' "$log") failed checks, first: $first$why"
            else # a crash (134: an abort after a CUDA error)
                result failed "$(crash_why "$rc"), no FAIL line: $(crash_line "$log")$why"
            fi
            ;;
    esac
}
# stage_traj MODE: scripts/device_trajectory.sh MODE, one number per table row
stage_traj() {
    local log=$DC_LOGS/$DC_STAGE.log rc label res first="" short summary="" staged=""
    # the dry run: the "device" runs on the CPU through the device-memory paths
    # (device_trajectory.sh clears it for the reference and the CPU resume)
    [[ $DC_DRY == 1 ]] && staged=1
    # the runs share the stage's limit less a margin (TRAJ_BUDGET: each run gets
    # the time left over the runs left, so one hung run leaves the others theirs);
    # the script itself under a timeout that ends before the stage's, so that the
    # rows of the runs done are read below even when a run hangs
    DEVICE=$DC_DEVICE TORCH_DEVICE=$DC_DEVICE PY=$DC_PY TRAJ_BUDGET=$((DC_LIMIT - 8)) \
        MPITRAIN_TEST_STAGED=$staged timeout -k 2 $((DC_LIMIT - 4)) \
        "$ROOT/scripts/device_trajectory.sh" "$1" "$DC_BIN/mpitrain" "$DC_REF" "$DC_WORK/$DC_STAGE" \
        >"$log" 2>&1
    rc=$?
    while IFS='|' read -r _ label res _; do
        label=${label# } label=${label% } res=${res# } res=${res% }
        put "$label" "$res"
        [[ -z "$first" && "$res" == FAILED* ]] && first="$label: $res"
        short=${label#trajectory: } short=${short#trajectory } short=${short%%:*} short=${short%% vs *}
        short=${short%% on one device*}
        if [[ "$res" =~ worst\ rel\ diff\ ([^ ]+) ]]; then
            summary+="; $short ${BASH_REMATCH[1]}"
        else
            summary+="; $short ${res%%:*}"
        fi
    done < <(grep '^| ' "$log")
    [[ $DC_DRY == 1 ]] && put note "dry run: train.device = cpu with MPITRAIN_TEST_STAGED=1 (device-memory paths), PyTorch on the CPU; reference made here"
    case $rc in
        0) result passed "worst per-step loss rel diffs: ${summary#; }" ;;
        124 | 137) result timeout "device_trajectory.sh over $((DC_LIMIT - 4)) s${first:+; $first}; rows done: ${summary#; }" ;;
        *) result failed "${first:-exit $rc (see its log)}" ;;
    esac
}
stage_benchmark() {
    local log=$DC_LOGS/benchmark.log rc args budget=$((DC_LIMIT - 10))
    if [[ $DC_DRY == 1 ]]; then
        args=(--dry-run-cpu --mpitrain "$DC_BIN/mpitrain")
        put note "dry run: tiny GPT (2 layers, n_embd 64, T 64) on the CPU, no gemm_peak"
    else
        args=(--bundle "$DC_BUNDLE" --batch 8 --seq 1024)
    fi
    "$ROOT/scripts/bench_gpt_gpu.sh" "${args[@]}" --fused both --budget "$budget" --python "$DC_PY" \
        --out "$DC_WORK/bench" >"$log" 2>&1
    rc=$?
    cp "$DC_WORK/bench/results.json" "$DC_LOGS/benchmark_results.json" 2>/dev/null
    if [[ -n "$DC_PY" && -f "$DC_WORK/bench/results.json" ]]; then
        pyrun - "$DC_WORK/bench/results.json" >>"$DC_RES/$DC_STAGE" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"shape\t{r['layers']} layers, n_embd {r['embd']}, B {r['batch']}, T {r['seq']}, {r['params']} parameters, {r['precision']}")
na = lambda v: "n/a" if v is None else v
print(f"peak_bf16_measured_tflops\t{na(r['gemm_bf16_tflops'])}")
print(f"peak_bf16_datasheet_tflops\t{na(r['spec_bf16_tflops'])}")
for k, v in r["runs"].items():
    if k == "gemm":
        print(f"gemm_peak\t{v['status']}")
        continue
    text = v["status"]
    if v["ms_per_step"] is not None:
        text = f"{v['tokens_per_s']:.0f} tokens/s, {v['ms_per_step']} ms/step, MFU {v['mfu']} ({v['status']})"
    if k == "torch_compile" and "not in this torch" in v["status"]:
        text = "not_available: " + v["status"].split(": ", 1)[-1]
    print(f"{k}\t{text}")
PYEOF
    fi
    # the numbers, whether the stage passed or not (a failed PyTorch run keeps mpitrain's)
    local k v text=""
    while IFS=$'\t' read -r k v; do
        case $k in
            mpitrain | mpitrain_unfused | torch_eager | torch_compile)
                if [[ "$v" == *MFU* ]]; then text+="; $k ${v%%,*}, MFU${v##*MFU}"; else text+="; $k $(short_text "$v" 90)"; fi ;;
            peak_bf16_measured_tflops) text+="; peak bf16: measured $v" ;;
            peak_bf16_datasheet_tflops) text+=", data sheet $v TFLOP/s" ;;
        esac
    done <"$DC_RES/$DC_STAGE"
    case $rc in
        0) result passed "${text#; }" ;;
        *)
            local bad
            bad=$(grep -E '^- [a-z_]+: FAILED' "$log" | head -n 3 | tr '\n' ';' | cut -c1-200)
            result failed "exit $rc: ${bad:-$(tail -n 1 "$log" | cut -c1-160)}${text:+ | numbers: ${text#; }}" ;;
    esac
}
stage_op_times() {
    local log=$DC_LOGS/op_times.log rc args=()
    [[ $DC_DRY == 1 ]] && { args=("${DRY_SHAPES[@]}"); put note "dry run: the CPU only, shapes ${DRY_SHAPES[*]}"; }
    cmp_run --time "${args[@]}" >"$log" 2>&1
    rc=$?
    sed -n 's/^time \(.\{22\}\) *\(.*\)$/\1\t\2/p' "$log" | sed 's/ *\t/\t/; s/  */ /g' >>"$DC_RES/$DC_STAGE"
    case $rc in
        0) result passed "$(grep -c '^time ' "$log") ops; $(grep -m1 '^time matmul lm_head fwd' "$log" | cut -c6- | tr -s ' ')" ;;
        77) result failed "the CUDA backend is not usable, though the preflight found a GPU: $(grep -m1 SKIPPED "$log" | cut -c1-200)" ;;
        *) result failed "$(crash_why "$rc"): $(crash_line "$log")" ;;
    esac
}
if [[ "${1:-}" == --stage ]]; then
    DC_STAGE=$2
    case $DC_STAGE in
        sanitizer) stage_sanitizer ;;
        ops_small)
            # a launch error names its kernel (kernels/cuda: a sync after every launch); cheap here
            export MPITRAIN_CUDA_SYNC=1
            put note_sync "MPITRAIN_CUDA_SYNC=1 (a synchronisation after every kernel launch)"
            stage_ops "every op, small shapes, $DC_WHO" ;;
        ops_gpt2)
            args=(--shapes gpt2)
            [[ $DC_DRY == 1 ]] && args+=("${DRY_SHAPES[@]}")
            stage_ops "GPT-2 shapes, $DC_WHO" "${args[@]}" ;;
        trajectory)
            export MPITRAIN_CUDA_SYNC=1
            put note_sync "MPITRAIN_CUDA_SYNC=1 (a synchronisation after every kernel launch)"
            stage_traj main ;;
        benchmark) stage_benchmark ;;
        op_times) stage_op_times ;;
        trajectory_parallel) stage_traj parallel ;;
        *) die "unknown stage '$DC_STAGE'" ;;
    esac
    exit 0
fi

# ================================ the driver ================================
T0=$(date +%s)
DEADLINE=480 BUNDLE=$ROOT/bundle BUILD=$ROOT/build OUTDIR=${OUT:-} DRY=0 BUILD_GIVEN=0 SELECT=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --deadline) need_arg "$@"; DEADLINE=$2; shift 2 ;;
        --bundle) need_arg "$@"; BUNDLE=$2; shift 2 ;;
        --build) need_arg "$@"; BUILD=$2; BUILD_GIVEN=1; shift 2 ;;
        --out) need_arg "$@"; OUTDIR=$2; shift 2 ;;
        --dry-run-cpu) DRY=1; shift ;;
        --stages) need_arg "$@"; SELECT=$2; shift 2 ;;
        -h | --help) header_help 2 59; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
{ is_uint "$DEADLINE" && ((DEADLINE >= 30)); } || die "--deadline: seconds >= 30 expected, got '$DEADLINE'"
[[ $BUILD_GIVEN == 0 || $DRY == 1 ]] || die "--build goes with --dry-run-cpu (on the GPU: --bundle)"
declare -A CHOSEN=()
if [[ -n "$SELECT" ]]; then
    IFS=',' read -ra SEL <<<"$SELECT"
    for s in "${SEL[@]}"; do
        [[ " ${STAGES[*]} " == *" $s "* ]] || die "--stages: unknown stage '$s' (${STAGES[*]})"
        CHOSEN[$s]=1
    done
else
    for s in "${STAGES[@]}"; do CHOSEN[$s]=1; done
fi
if [[ -z "$OUTDIR" ]]; then
    OUTDIR=$(mktemp -d "${TMPDIR:-/tmp}/device_check.XXXXXX") || die "cannot make a temporary folder"
fi
mkdir -p "$OUTDIR" || die "cannot make $OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
rm -f "$OUTDIR/results.json" "$OUTDIR/logs.tar.gz" "$OUTDIR/table.md"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/device_check_work.XXXXXX") || die "cannot make a temporary folder"
# kill_token TOKEN: every process of ours with DC_TOKEN=TOKEN in its environment:
# what a stage started and its timeout did not end (GNU timeout puts itself in a
# process group of its own, so a stage's timeout misses an inner timeout and its
# mpirun, ranks or python; mpirun hands its environment to the local ranks). The
# token is only ever in a stage's environment, never this script's.
kill_token() {
    local pids
    for _ in 1 2 3 4 5; do
        pids=$(grep -lzxF "DC_TOKEN=$1" /proc/[0-9]*/environ 2>/dev/null | sed -n 's|^/proc/\([0-9]*\)/environ$|\1|p')
        [[ -n "$pids" ]] || return 0
        # shellcheck disable=SC2086 # one word per pid
        kill -KILL $pids 2>/dev/null
        sleep 0.3
    done
    echo "$MT_PROG: warning: processes of stage token $1 still alive: $pids" >&2
}
INFLIGHT="" INFLIGHT_TOKEN="" INFLIGHT_PID="" # the stage running now
trap '[[ -z "$INFLIGHT_TOKEN" ]] || kill_token "$INFLIGHT_TOKEN"; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/res" "$WORK/logs"
export DC_WORK=$WORK DC_RES=$WORK/res DC_LOGS=$WORK/logs DC_DRY=$DRY
export DC_BIN="" DC_BUNDLE="" DC_REF="" DC_SANITIZER="" DC_PY="" DC_DEVICE=cuda DC_LIMIT=0
declare -A PRE=() # preflight facts
PRE_KEYS=()
fact() { PRE[$1]=$2; PRE_KEYS+=("$1"); }
left() { echo $((DEADLINE - RESERVE - ($(date +%s) - T0))); }

# ---- the results: results.json, table.md, the archive, the table last ----
short() { local t=${1//[$'\t\n']/ }; ((${#t} > $2)) && t="${t:0:$(($2 - 3))}..."; echo "$t"; }
finish() { # finish EXIT_STATUS [REASON]
    local code=$1 why=${2:-} s status reason secs first sep k v
    local total=$(($(date +%s) - T0))
    {
        printf '{"script":"device_check.sh","mode":%s,"started":%s,"deadline_s":%d,"elapsed_s":%d,"exit_status":%d,"reason":%s,' \
            "$(jstr "$([[ $DRY == 1 ]] && echo dry-run-cpu || echo gpu)")" "$(jstr "$STARTED")" \
            "$DEADLINE" "$total" "$code" "$(jstr "$why")"
        printf '"stages":['
        first=1
        for s in preflight "${STAGES[@]}"; do
            [[ $first == 1 ]] || printf ','
            first=0
            printf '{"name":%s,"status":%s,"seconds":%s,"budget_s":%s,"reason":%s,"numbers":{' "$(jstr "$s")" \
                "$(jstr "${ST[$s]:-skipped}")" "$(jnum "${SECS[$s]:-}")" "$(jnum "${LIM[$s]:-}")" \
                "$(jstr "${WHY[$s]:-$why}")"
            sep=""
            if [[ $s == preflight ]]; then
                for k in "${PRE_KEYS[@]}"; do
                    printf '%s%s:%s' "$sep" "$(jstr "$k")" "$(jstr "${PRE[$k]}")"
                    sep=","
                done
            elif [[ -f "$WORK/res/$s" ]]; then
                while IFS=$'\t' read -r k v; do
                    [[ $k == status || $k == reason ]] && continue
                    if [[ "$v" =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then
                        printf '%s%s:%s' "$sep" "$(jstr "$k")" "$v"
                    else
                        printf '%s%s:%s' "$sep" "$(jstr "$k")" "$(jstr "$v")"
                    fi
                    sep=","
                done <"$WORK/res/$s"
            fi
            printf '}}'
        done
        printf ']}\n'
    } >"$OUTDIR/results.json"
    {
        echo "| stage | status | s | result |"
        echo "| --- | --- | ---: | --- |"
        for s in preflight "${STAGES[@]}"; do
            status=${ST[$s]:-skipped} reason=${WHY[$s]:-$why} secs=${SECS[$s]:--}
            echo "| $s | $status | $secs | $(short "$reason" 150) |"
        done
        echo "| total | exit $code | $total | deadline $DEADLINE s; $OUTDIR: results.json, logs.tar.gz |"
    } >"$OUTDIR/table.md"
    cp "$OUTDIR/results.json" "$WORK/logs/" 2>/dev/null
    # every log, the stages' work folders less checkpoints and token shards
    local parts=(logs res)
    for s in "${STAGES[@]}" bench ref; do [[ -d "$WORK/$s" ]] && parts+=("$s"); done
    tar -C "$WORK" --exclude='*.h5' --exclude='*.bin' -czf "$OUTDIR/logs.tar.gz" "${parts[@]}" 2>/dev/null
    echo
    cat "$OUTDIR/table.md"
    [[ -z "$why" || $code == 0 ]] || echo "$MT_PROG: error: $why" >&2
    exit "$code"
}
declare -A ST=() SECS=() LIM=() WHY=()
STARTED=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
# preflight_fail STATUS REASON: every stage skipped with the reason
preflight_fail() {
    ST[preflight]=failed WHY[preflight]=$2 SECS[preflight]=$(($(date +%s) - T0))
    local s
    for s in "${STAGES[@]}"; do ST[$s]=skipped WHY[$s]="preflight failed: $2"; done
    finish "$1" "$2"
}
echo "# device_check.sh  $STARTED  mode: $([[ $DRY == 1 ]] && echo 'dry run on the CPU' || echo GPU)  deadline ${DEADLINE} s  out: $OUTDIR"

# ================================ preflight =================================
# python3 and torch (both modes): the machine's own python3
for c in "$(command -v python3 || true)" /usr/bin/python3; do # the first with torch, else the first
    [[ -n "$c" && -x "$c" ]] || continue
    [[ -z "$DC_PY" ]] && DC_PY=$c
    if timeout -k 5 30 env ${MT_SYSTEM_LD_LIBRARY_PATH+LD_LIBRARY_PATH="$MT_SYSTEM_LD_LIBRARY_PATH"} \
        "$c" -c 'import torch' 2>/dev/null; then
        DC_PY=$c
        break
    fi
done
torch_facts() {
    local q
    if [[ -z "$DC_PY" ]]; then
        fact python3 "not found"
        return
    fi
    fact python3 "$DC_PY ($("$DC_PY" --version 2>&1))"
    q=$(timeout -k 5 30 env ${MT_SYSTEM_LD_LIBRARY_PATH+LD_LIBRARY_PATH="$MT_SYSTEM_LD_LIBRARY_PATH"} "$DC_PY" -c '
import torch
print(torch.__version__, "cuda", torch.version.cuda, "available" if torch.cuda.is_available() else "not-available",
      "compile" if hasattr(torch, "compile") else "no-compile")' 2>&1 | tail -n 1)
    fact torch "$q"
}

if [[ $DRY == 1 ]]; then
    DC_DEVICE=cpu
    BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || preflight_fail 2 "bad arguments: no build folder $BUILD (--build DIR)"
    [[ -x "$BUILD/mpitrain" && -x "$BUILD/tests/test_backend_cmp" ]] ||
        preflight_fail 2 "bad build: no $BUILD/mpitrain or $BUILD/tests/test_backend_cmp (cmake --build $BUILD)"
    command -v mpirun >/dev/null || preflight_fail 2 "no mpirun on PATH (the dry run uses this machine's MPI)"
    # the bundle's layout: test_backend_bf16 beside the others
    mkdir -p "$WORK/bin"
    for b in mpitrain tests/test_backend_cmp tests/test_backend_bf16; do
        [[ -x "$BUILD/$b" ]] && ln -s "$BUILD/$b" "$WORK/bin/$(basename "$b")"
    done
    DC_BIN=$WORK/bin
    fact gpu "none used (dry run on the CPU)"
    fact build "$BUILD"
    fact mpitrain "$("$BUILD/mpitrain" --version 2>&1 | head -n 1)"
    fact compute_sanitizer "$(command -v compute-sanitizer || echo 'not found') (not used: no GPU)"
    torch_facts
    # the reference, made here the way scripts/bundle.sh makes it
    "$ROOT/scripts/device_trajectory.sh" reference "$BUILD/mpitrain" "$WORK/ref" >"$WORK/logs/reference.log" 2>&1 ||
        preflight_fail 1 "the trajectory reference could not be made: $(tail -n 1 "$WORK/logs/reference.log")"
    DC_REF=$WORK/ref
    fact reference "made here: $(tail -n 1 "$WORK/logs/reference.log")"
else
    # 77: no GPU
    SMI=$(command -v nvidia-smi || true)
    if [[ -z "$SMI" ]]; then
        compgen -G '/dev/nvidia[0-9]*' >/dev/null &&
            preflight_fail 77 "no GPU usable: /dev/nvidia* exists but nvidia-smi is missing (no driver tools)"
        preflight_fail 77 "no GPU: nvidia-smi not found and no /dev/nvidia* device on this machine"
    fi
    q=$(timeout -k 5 30 "$SMI" --query-gpu=name,compute_cap,memory.free,memory.total,driver_version \
        --format=csv,noheader,nounits 2>&1)
    rc=$?
    [[ $rc == 0 && -n "$q" ]] || preflight_fail 77 "no GPU: nvidia-smi failed (exit $rc): $(head -n 1 <<<"$q")"
    IFS=',' read -r g_name g_cc g_free g_total g_driver <<<"$(head -n 1 <<<"$q")"
    fact gpu "${g_name# }"
    fact compute_capability "${g_cc# }"
    fact memory_free_mib "${g_free# }"
    fact memory_total_mib "${g_total# }"
    fact driver "${g_driver# }"
    DRV_CUDA=$(timeout -k 5 30 "$SMI" 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n 1)
    fact driver_cuda "${DRV_CUDA:-unknown}"
    # 2: the bundle (device_env.sh unpacks BUNDLE.tar.xz, sets the paths)
    # shellcheck source=scripts/device_env.sh
    source "$ROOT/scripts/device_env.sh" "$BUNDLE" 2>"$WORK/logs/device_env.log" ||
        preflight_fail 2 "bad bundle: $(grep -m1 error "$WORK/logs/device_env.log")"
    fact device_env "$(tail -n 1 "$WORK/logs/device_env.log")"
    DC_BUNDLE=$MT_BUNDLE DC_BIN=$MT_BUNDLE/bin DC_REF=$MT_BUNDLE/reference
    for b in mpitrain test_backend_cmp mpirun orted; do
        [[ -x "$DC_BIN/$b" ]] || preflight_fail 2 "bad bundle: no $DC_BIN/$b (run scripts/bundle.sh)"
    done
    [[ -f "$DC_REF/metrics.jsonl" ]] ||
        preflight_fail 2 "bad bundle: no trajectory reference $DC_REF (scripts/bundle.sh makes it)"
    # 79: a CUDA library the binaries need and the loader does not find
    missing=$(for b in "$DC_BIN"/mpitrain "$DC_BIN"/test_backend_cmp; do ldd "$b" 2>/dev/null; done |
        awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')
    for lib in libcudart libcublas libcublasLt libnccl; do
        where=$(ldd "$DC_BIN/mpitrain" 2>/dev/null | awk -v l="$lib.so" 'index($1, l) == 1 {print $3; exit}')
        fact "$lib" "${where:-not linked}"
    done
    [[ -z "$missing" ]] || preflight_fail 79 "a library is missing: ${missing% } (not in the bundle, the CUDA install or PyTorch's nvidia/*/lib)"
    # 78: the driver's CUDA against the runtime the binaries were built with
    RT=$(cat "$DC_BUNDLE/CUDA_RUNTIME" 2>/dev/null || true)
    [[ -n "$RT" ]] || RT=$(ldd "$DC_BIN/mpitrain" | sed -n 's/.*libcudart\.so\.\([0-9]*\).*/\1.0/p' | head -n 1)
    fact cuda_runtime_needed "${RT:-unknown}"
    if [[ -n "$RT" && -n "$DRV_CUDA" && ${DRV_CUDA%%.*} -lt ${RT%%.*} ]]; then
        preflight_fail 78 "driver too old: its CUDA $DRV_CUDA < the runtime $RT the binaries need (driver ${g_driver# })"
    fi
    # the driver's own library (the runtime loads it; a container may lack it)
    libcuda=$({
        ldconfig -p 2>/dev/null | awk '$1 == "libcuda.so.1" {print $NF}'
        for d in ${LD_LIBRARY_PATH//:/ }; do [[ -e "$d/libcuda.so.1" ]] && echo "$d/libcuda.so.1"; done
    } | head -n 1)
    fact libcuda "${libcuda:-not found (ldconfig -p, LD_LIBRARY_PATH)}"
    if [[ -x "$DC_BIN/gemm_peak" ]]; then # a tiny GEMM through the bundle's runtime
        probe=$(timeout -k 5 60 "$DC_BIN/gemm_peak" --m 256 --n 256 --k 256 --iters 1 --warmup 1 2>&1)
        rc=$?
        fact cuda_probe "gemm_peak 256^3 exit $rc: $(grep -m1 -E 'no usable|bf16|error' <<<"$probe" | cut -c1-120)"
        if [[ $rc == 77 && -z "$libcuda" ]] && grep -qi 'insufficient' <<<"$probe"; then
            preflight_fail 79 "a library is missing: libcuda.so.1, the driver's (ldconfig -p, LD_LIBRARY_PATH): $(grep -m1 'no usable' <<<"$probe")"
        elif [[ $rc == 77 ]] && grep -qi 'insufficient' <<<"$probe"; then
            preflight_fail 78 "driver too old for the runtime: $(grep -m1 'no usable' <<<"$probe")"
        elif [[ $rc == 77 ]]; then
            preflight_fail 77 "no GPU usable by CUDA: $(grep -m1 'no usable' <<<"$probe")"
        fi
    fi
    DC_SANITIZER=$(command -v compute-sanitizer || true)
    for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda*/bin/compute-sanitizer \
        /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
        [[ -z "$DC_SANITIZER" && -x "$c" ]] && DC_SANITIZER=$c
    done
    fact compute_sanitizer "${DC_SANITIZER:-not found}"
    torch_facts
    export OMP_NUM_THREADS
    OMP_NUM_THREADS=$(nproc_all)
fi
fact threads "${OMP_NUM_THREADS:-unset}"
ST[preflight]=passed SECS[preflight]=$(($(date +%s) - T0))
WHY[preflight]="${PRE[gpu]}; torch ${PRE[torch]:-?}"
for k in "${PRE_KEYS[@]}"; do echo "preflight: $k: ${PRE[$k]}"; done

# ================================= stages ===================================
# TERM or INT (the machine's session ending, ^C): the stage in flight and all it
# started ended, its status "failed", results.json and the table still written
# shellcheck disable=SC2317 # called by the traps below
on_signal() {
    trap - TERM INT
    if [[ -n "$INFLIGHT" ]]; then
        kill -KILL "$INFLIGHT_PID" 2>/dev/null
        kill_token "$INFLIGHT_TOKEN"
        ST[$INFLIGHT]=failed SECS[$INFLIGHT]=$(($(date +%s) - t))
        WHY[$INFLIGHT]="killed by signal $1 while running (limit ${LIM[$INFLIGHT]} s)"
        INFLIGHT_TOKEN=""
    fi
    finish 1 "killed by signal $1"
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT
export DC_BIN DC_BUNDLE DC_REF DC_SANITIZER DC_PY DC_DEVICE
for s in "${STAGES[@]}"; do
    if [[ -z "${CHOSEN[$s]:-}" ]]; then
        ST[$s]=skipped WHY[$s]="not selected (--stages $SELECT)"
        continue
    fi
    l=$(left)
    lim=${BUDGET[$s]}
    ((lim > l)) && lim=$l
    if ((lim < MIN[$s])); then
        ST[$s]=skipped WHY[$s]="deadline: $l s left, the stage needs at least ${MIN[$s]} s"
        echo "stage $s: skipped (${WHY[$s]})"
        continue
    fi
    LIM[$s]=$lim
    t=$(date +%s)
    echo "stage $s: limit $lim s ..."
    # in the background and waited for, so that a TERM or INT runs its trap at once
    INFLIGHT=$s INFLIGHT_TOKEN=dc.$$.$s.$RANDOM$RANDOM
    DC_TOKEN=$INFLIGHT_TOKEN DC_LIMIT=$lim timeout -k 5 "$lim" \
        bash "$ROOT/scripts/device_check.sh" --stage "$s" >"$WORK/logs/$s.stage.log" 2>&1 </dev/null &
    INFLIGHT_PID=$!
    wait "$INFLIGHT_PID"
    rc=$?
    kill_token "$INFLIGHT_TOKEN" # whatever of the stage outlived it (a hung run under an inner timeout)
    INFLIGHT="" INFLIGHT_TOKEN="" INFLIGHT_PID=""
    SECS[$s]=$(($(date +%s) - t))
    st=$(awk -F'\t' '$1 == "status" {v = $2} END {print v}' "$WORK/res/$s" 2>/dev/null)
    why=$(awk -F'\t' '$1 == "reason" {v = $2} END {print v}' "$WORK/res/$s" 2>/dev/null)
    if [[ $rc == 124 || $rc == 137 ]]; then
        st=timeout why="over its limit of $lim s${why:+ ($why)}"
    elif [[ -z "$st" ]]; then
        st=failed why="exit $rc without a result: $(tail -n 1 "$WORK/logs/$s.stage.log")"
    fi
    ST[$s]=$st WHY[$s]=$why
    echo "stage $s: $st in ${SECS[$s]} s: $(short "$why" 200)"
done

code=0
for s in "${STAGES[@]}"; do
    [[ ${ST[$s]} == failed || ${ST[$s]} == timeout ]] && code=1
done
finish "$code"
