#!/usr/bin/env bash
# device_trajectory.sh - on a machine with a GPU: a small GPT's 10-step loss
# trajectory on CUDA against the CPU, and the multi-rank and resume paths on
# the GPU. Called by scripts/device_check.sh (which sets up the bundle's
# environment); prints one table row per check, "| check | result |".
#
# usage: scripts/device_trajectory.sh MPITRAIN WORKDIR
#
# Checks (GPT: 2 layers, 4 heads, n_embd 64, T 64, batch 8, dropout 0,
# AdamW lr 3e-3, on the bytes of tests/data/gpt_corpus.txt):
#   fp32   CUDA vs CPU, per-step loss within 1e-4 relative
#   bf16   CUDA bf16 vs CPU fp32, within 2e-2 (and CPU-emulated bf16 vs CUDA
#          bf16, printed)
#   dp2    2 ranks sharing the one GPU (sums through MPI via the host) vs
#          CUDA on one rank, 1e-5
#   tp2.pp2  4 ranks on the one GPU vs CUDA on one rank, 1e-5
#   resume  5 steps on CUDA, then steps 6-10 on the CPU from its checkpoint,
#          vs 10 steps on CUDA, 1e-4
# Exit status: 0 all passed, 1 a check failed.
# Dry run without a GPU: DEVICE=cpu MPITRAIN_TEST_STAGED=1 runs the "CUDA"
# runs on the CPU with device-memory paths (the table logic, not the GPU).
set -uo pipefail
MPITRAIN=$1 WORK=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$WORK"
DEVICE=${DEVICE:-cuda}
fail=0
row() { echo "| $1 | $2 |"; }
"$MPITRAIN" data tokenize --bytes "$ROOT/tests/data/gpt_corpus.txt" "$WORK/tok" --name docs \
    >"$WORK/tok.log" 2>&1 || { row "trajectory: tokenize" "FAILED: $(tail -1 "$WORK/tok.log")"; exit 1; }
GPT=(--set model.kind=gpt --set data.train_tokens="$WORK/tok/docs_train_000000.bin"
    --set data.val_tokens="$WORK/tok/docs_val_000000.bin" --set model.n_layer=2
    --set model.n_head=4 --set model.n_embd=64 --set model.block_size=64
    --set train.global_batch=8 --set optim.lr=3e-3 --set train.eval_windows=16
    --set model.dropout=0 --set train.steps=10 --set run.log_every=1 --set registry.enabled=false
    --set run.threads=4)

# run NAME NP ARGS...: trains into $WORK/NAME; status in RC
run() {
    local name=$1 np=$2
    shift 2
    timeout -k 5 300 mpirun -np "$np" "$MPITRAIN" train --config "$ROOT/configs/mnist_mlp.ini" \
        "${GPT[@]}" --set run.dir="$WORK/$name" "$@" >"$WORK/$name.log" 2>&1
    RC=$?
    if [ "$RC" != 0 ]; then
        echo "--- $name exited $RC:"
        tail -8 "$WORK/$name.log"
    fi
}
# compare LABEL TOL REF GOT: per-step loss of run GOT against run REF
compare() {
    local out
    out=$(LD_LIBRARY_PATH=${MT_SYSTEM_LD_LIBRARY_PATH-${LD_LIBRARY_PATH:-}} python3 - "$2" "$WORK/$3" "$WORK/$4" <<'PYEOF'
import glob, json, sys
tol = float(sys.argv[1])
def losses(d):
    out = {}
    for f in sorted(glob.glob(d + "/*/*/metrics.jsonl")):
        for l in open(f):
            r = json.loads(l)
            if "loss" in r:
                out[r["step"]] = r["loss"]
    return out
a, b = losses(sys.argv[2]), losses(sys.argv[3])
if sorted(a) != sorted(b) or len(a) != 10:
    print(f"steps differ: {sorted(a)} vs {sorted(b)}")
    sys.exit(1)
rel = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"worst rel diff {rel:.2e} (tol {tol:g}); step 10 loss {a[10]:.5f} vs {b[10]:.5f}")
sys.exit(0 if rel <= tol else 1)
PYEOF
    )
    if [ $? = 0 ]; then row "$1" "passed: $out"; else row "$1" "FAILED: $out"; fail=1; fi
}

MPITRAIN_TEST_STAGED= run cpu 1 --set train.device=cpu
run cuda 1 --set train.device=$DEVICE
grep -m1 '^device: rank 0' "$WORK/cuda.log" | sed 's/^/   /'
run cuda_bf16 1 --set train.device=$DEVICE --set train.precision=bf16
MPITRAIN_TEST_STAGED= run cpu_bf16 1 --set train.device=cpu --set train.precision=bf16
run cuda_dp2 2 --set train.device=$DEVICE
grep -m1 '^comms:' "$WORK/cuda_dp2.log" | sed 's/^/   /'
run cuda_tp2pp2 4 --set train.device=$DEVICE --set parallel.tp=2 --set parallel.pp=2 \
    --set parallel.microbatches=2
run cuda_stop 1 --set train.device=$DEVICE --set train.exit_after_steps=5
MPITRAIN_TEST_STAGED= run cuda_stop 1 --set train.device=cpu --set checkpoint.resume=auto

compare "trajectory fp32: CUDA vs CPU, 10 steps" 1e-4 cpu cuda
compare "trajectory bf16: CUDA bf16 vs CPU fp32" 2e-2 cpu cuda_bf16
compare "bf16: CUDA vs CPU-emulated bf16 (for information)" 2e-2 cpu_bf16 cuda_bf16
compare "dp2 on one GPU (MPI via host) vs one rank" 1e-5 cuda cuda_dp2
compare "tp2.pp2 on one GPU vs one rank" 1e-5 cuda cuda_tp2pp2
compare "stop at 5 on CUDA, resume on CPU to 10" 1e-4 cuda cuda_stop
exit $fail
