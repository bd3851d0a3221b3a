#!/usr/bin/env bash
# device_trajectory.sh - a small GPT's 10-step loss trajectory: the CPU
# reference (made on the build machine, carried in the bundle) and its checks
# on the GPU. Called by scripts/bundle.sh (reference) and
# scripts/device_check.sh (main, parallel), which set up the environment.
#
# usage: scripts/device_trajectory.sh reference MPITRAIN REFDIR
#        scripts/device_trajectory.sh main|parallel MPITRAIN REFDIR WORKDIR
#
# The GPT: 2 layers, 4 heads, n_embd 64, block 64, batch 8, dropout 0, AdamW
# lr 3e-3 (constant, no clipping), 10 steps, train.shuffle = false, on the
# bytes of tests/data/gpt_corpus.txt.
#   reference  the CPU run in fp32 (train.device = cpu, run.threads 4), into
#              REFDIR: tok/ (the token shards), config.ini, metrics.jsonl
#              (the per-step losses), checkpoints/step_00000000.h5 (the
#              initial parameters: checkpoint.save_initial), sets.txt (the
#              options) and about.txt (who made it); REFDIR is a run folder
#              for tests/reference/gpt_parity.py --run --losses-only
#   main       on DEVICE (default cuda), each run resumed from the reference's
#              initial checkpoint: fp32 with train.fused = true and false vs
#              the reference, per-step loss within 1e-4 relative; bf16 vs the
#              reference within 2e-2; PyTorch (gpt_parity.py on TORCH_DEVICE,
#              default DEVICE) from the same initial weights within 1e-4
#   parallel   on DEVICE: dp2 (2 ranks sharing the one GPU) and tp2.pp2 (4
#              ranks) vs one rank, 1e-5; 5 steps on DEVICE, then steps 6-10 on
#              the CPU from its checkpoint, vs 10 steps on DEVICE, 1e-4
# Prints one table row per check, "| check | result |" (result "passed: ...",
# "FAILED: ..." or "not_available: ..."), each right after its runs, so that
# the rows done survive a later hang. Exit status: 0 all passed (or not
# available), 1 a check failed, 2 bad arguments.
# Environment: DEVICE (cuda | cpu), TORCH_DEVICE, PY (python3 with torch),
# TRAJ_BUDGET (seconds for all the runs together: each run's timeout is the
# time left over the runs left, at least 5 s), RUN_TIMEOUT (the most one run
# may take, default 120), MT_SYSTEM_LD_LIBRARY_PATH (from
# device_env.sh: python runs with it). Dry run without a GPU: DEVICE=cpu
# MPITRAIN_TEST_STAGED=1 runs the "CUDA" runs on the CPU with device-memory
# paths (the plumbing, not the GPU).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
MODE=${1:-}
case "$MODE" in
    reference) [[ $# == 3 ]] || die "usage: $0 reference MPITRAIN REFDIR" ;;
    main | parallel) [[ $# == 4 ]] || die "usage: $0 main|parallel MPITRAIN REFDIR WORKDIR" ;;
    -h | --help) header_help 2 34; exit 0 ;;
    *) die "unknown mode '$MODE' (reference, main or parallel; see --help)" ;;
esac
MPITRAIN=$2 REF=$(abspath "$3")
need_mpitrain "$MPITRAIN"
mpi_env_oversubscribe
DEVICE=${DEVICE:-cuda}
TORCH_DEVICE=${TORCH_DEVICE:-$DEVICE}
PY=${PY:-python3}
fail=0
T_START=$(date +%s) RUNS_LEFT=1 # RUNS_LEFT: set per mode below
# run_limit: LIM, the next run's timeout in seconds (the time left over the runs left)
run_limit() {
    LIM=${RUN_TIMEOUT:-120}
    if [[ -n "${TRAJ_BUDGET:-}" ]]; then
        local l=$(((TRAJ_BUDGET - ($(date +%s) - T_START)) / (RUNS_LEFT > 0 ? RUNS_LEFT : 1)))
        ((l < LIM)) && LIM=$l
        ((LIM < 5)) && LIM=5
    fi
    RUNS_LEFT=$((RUNS_LEFT - 1))
}
row() { echo "| $1 | $2 |"; }
pyrun() { # python with the LD_LIBRARY_PATH from before the bundle's
    if [[ -n "${MT_SYSTEM_LD_LIBRARY_PATH+x}" ]]; then
        LD_LIBRARY_PATH=$MT_SYSTEM_LD_LIBRARY_PATH "$PY" "$@"
    else
        "$PY" "$@"
    fi
}
GPT=(--set run.name=traj --set model.kind=gpt --set model.n_layer=2 --set model.n_head=4
    --set model.n_embd=64 --set model.block_size=64 --set model.dropout=0
    --set train.global_batch=8 --set train.steps=10 --set train.shuffle=false
    --set train.eval_every=0 --set train.eval_windows=16 --set optim.kind=adamw --set optim.lr=3e-3
    --set optim.schedule=constant --set optim.warmup_steps=0 --set optim.grad_clip=0
    --set run.log_every=1 --set registry.enabled=false --set run.threads=4)
DATA=(--set data.train_tokens="$REF/tok/docs_train_000000.bin"
    --set data.val_tokens="$REF/tok/docs_val_000000.bin")

# run DIR NP ARGS...: trains into DIR (run folder DIR/traj/0001); status in RC
run() {
    local dir=$1 np=$2
    shift 2
    rm -rf "$dir"
    run_limit
    local lim=$LIM
    timeout -k 5 "$lim" mpirun -np "$np" "$MPITRAIN" train \
        --config "$ROOT/configs/mnist_mlp.ini" "${GPT[@]}" "${DATA[@]}" --set run.dir="$dir" "$@" \
        >"$dir.log" 2>&1
    RC=$?
    if [[ "$RC" != 0 ]]; then
        echo "--- $(basename "$dir") exited $RC$([[ $RC == 124 || $RC == 137 ]] && echo " (over its $lim s)"):"
        tail -8 "$dir.log"
    fi
}

if [[ "$MODE" == reference ]]; then
    rm -rf "$REF"
    mkdir -p "$REF/tok" "$REF/checkpoints"
    "$MPITRAIN" data tokenize --bytes "$ROOT/tests/data/gpt_corpus.txt" "$REF/tok" --name docs \
        >"$REF/tokenize.log" 2>&1 || fail "mpitrain data tokenize failed" "$REF/tokenize.log"
    work=$(mktemp -d "${TMPDIR:-/tmp}/mt_traj_ref.XXXXXX")
    trap 'rm -rf "$work"' EXIT
    MPITRAIN_TEST_STAGED='' run "$work/ref" 1 --set train.device=cpu --set train.precision=fp32 \
        --set checkpoint.save_initial=true --set checkpoint.save_final=false
    [[ "$RC" == 0 ]] || fail "the reference run failed" "$work/ref.log"
    d=$work/ref/traj/0001
    cp "$d/config.ini" "$d/metrics.jsonl" "$REF/" || die "no config.ini/metrics.jsonl in $d"
    cp "$d/checkpoints/step_00000000.h5" "$REF/checkpoints/" || die "no initial checkpoint in $d"
    printf '%s\n' "${GPT[@]}" --set train.device=cpu --set train.precision=fp32 >"$REF/sets.txt"
    {
        mpitrain_line "$("$MPITRAIN" --version 2>&1)" "$MPITRAIN"
        host_line "$(nproc_all)"
        echo "made: $(date -u '+%Y-%m-%d %H:%M:%S UTC') by scripts/device_trajectory.sh reference"
    } >"$REF/about.txt"
    rm -f "$REF/tokenize.log"
    echo "reference: $REF: $(wc -l <"$REF/metrics.jsonl") steps, step 10 loss" \
        "$(tail -n 1 "$REF/metrics.jsonl" | sed -n 's/.*"loss": *\([0-9.e+-]*\).*/\1/p')"
    exit 0
fi

WORK=$(abspath "$4")
mkdir -p "$WORK"
for f in config.ini metrics.jsonl checkpoints/step_00000000.h5 tok/docs_train_000000.bin; do
    [[ -f "$REF/$f" ]] || die "no $REF/$f: not a reference of scripts/device_trajectory.sh reference"
done
INIT=(--set checkpoint.resume="$REF/checkpoints/step_00000000.h5")

# compare LABEL TOL REF_DIR GOT_DIR: per-step loss of GOT against REF (a
# folder with metrics.jsonl, or a run.dir: its runs' metrics.jsonl together)
compare() {
    local out rc
    out=$(pyrun - "$2" "$3" "$4" <<'PYEOF'
import glob, json, os, sys
tol = float(sys.argv[1])
def losses(d):
    files = [d + "/metrics.jsonl"] if os.path.exists(d + "/metrics.jsonl") else sorted(glob.glob(d + "/*/*/metrics.jsonl"))
    return {r["step"]: r["loss"] for f in files for r in map(json.loads, open(f)) if "loss" in r}
a, b = losses(sys.argv[2]), losses(sys.argv[3])
if sorted(a) != sorted(b) or len(a) != 10:
    print(f"steps differ: {sorted(a)} vs {sorted(b)} (a run failed? see its log)")
    sys.exit(1)
rel = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"worst rel diff {rel:.2e} (tol {tol:g}); step 10 loss {a[10]:.5f} vs {b[10]:.5f}")
sys.exit(0 if rel <= tol else 1)
PYEOF
    )
    rc=$?
    if [[ $rc == 0 ]]; then
        row "$1" "passed: $out"
    else
        # a run that failed: its error line
        row "$1" "FAILED: $out$(cat "$3.log" "$4.log" 2>/dev/null | grep -m1 'error:' | cut -c1-200 | sed 's/^/; /')"
        fail=1
    fi
}
DEV=$DEVICE
[[ "$DEVICE" == cuda ]] && DEV=CUDA

if [[ "$MODE" == main ]]; then
    RUNS_LEFT=4
    run "$WORK/fused" 1 --set train.device="$DEVICE" --set train.fused=true "${INIT[@]}"
    grep -m1 '^device: rank 0' "$WORK/fused.log" | sed 's/^/   /'
    compare "trajectory fp32 fused: $DEV vs CPU reference" 1e-4 "$REF" "$WORK/fused"
    run "$WORK/unfused" 1 --set train.device="$DEVICE" --set train.fused=false "${INIT[@]}"
    compare "trajectory fp32 unfused: $DEV vs CPU reference" 1e-4 "$REF" "$WORK/unfused"
    run "$WORK/bf16" 1 --set train.device="$DEVICE" --set train.precision=bf16 "${INIT[@]}"
    compare "trajectory bf16: $DEV bf16 vs CPU fp32 reference" 2e-2 "$REF" "$WORK/bf16"
    # PyTorch from the same initial checkpoint, on the same batches
    run_limit
    lim=$LIM
    timeout -k 5 "$lim" env ${MT_SYSTEM_LD_LIBRARY_PATH+LD_LIBRARY_PATH="$MT_SYSTEM_LD_LIBRARY_PATH"} \
        "$PY" "$ROOT/tests/reference/gpt_parity.py" --run "$REF" --losses-only --device "$TORCH_DEVICE" \
        --tokens "$REF/tok/docs_train_000000.bin" >"$WORK/torch.log" 2>&1
    rc=$?
    worst=$(sed -n 's/^losses: worst rel diff \([^ ]*\).*/\1/p' "$WORK/torch.log")
    label="trajectory: PyTorch on $TORCH_DEVICE vs CPU reference"
    case $rc in
        0) row "$label" "passed: worst rel diff $worst (tol 1e-4)" ;;
        77) # torch, h5py or numpy missing: not available; torch without CUDA on a GPU machine: a failure
            if [[ "$TORCH_DEVICE" == cuda* ]] && grep -q 'sees no CUDA' "$WORK/torch.log"; then
                row "$label" "FAILED (exit 77: PyTorch sees no CUDA, though the GPU is there): $(head -n 1 "$WORK/torch.log")"
                fail=1
            else
                row "$label" "not_available: $(head -n 1 "$WORK/torch.log")"
            fi
            ;;
        *)
            row "$label" "FAILED (exit $rc$([[ $rc == 124 || $rc == 137 ]] && echo ", over its $lim s")): ${worst:+worst rel diff $worst; }$(tail -n 1 "$WORK/torch.log")"
            tail -n 15 "$WORK/torch.log"
            fail=1
            ;;
    esac
else
    RUNS_LEFT=5
    run "$WORK/one" 1 --set train.device="$DEVICE"
    run "$WORK/dp2" 2 --set train.device="$DEVICE"
    grep -m1 '^comms:' "$WORK/dp2.log" | sed 's/^/   /'
    compare "dp2 on one device (MPI via host) vs one rank" 1e-5 "$WORK/one" "$WORK/dp2"
    run "$WORK/tp2pp2" 4 --set train.device="$DEVICE" --set parallel.tp=2 --set parallel.pp=2 \
        --set parallel.microbatches=2
    compare "tp2.pp2 on one device vs one rank" 1e-5 "$WORK/one" "$WORK/tp2pp2"
    run "$WORK/stop" 1 --set train.device="$DEVICE" --set train.exit_after_steps=5
    # (run() would remove the folder: the resume goes into the same one)
    run_limit
    lim=$LIM
    timeout -k 5 "$lim" env MPITRAIN_TEST_STAGED='' mpirun -np 1 "$MPITRAIN" train \
        --config "$ROOT/configs/mnist_mlp.ini" "${GPT[@]}" "${DATA[@]}" --set run.dir="$WORK/stop" \
        --set train.device=cpu --set checkpoint.resume=auto >"$WORK/resume.log" 2>&1 ||
        { echo "--- resume exited $?:"; tail -8 "$WORK/resume.log"; }
    compare "stop at 5 on $DEV, resume on CPU to 10" 1e-4 "$WORK/one" "$WORK/stop"
fi
exit $fail
