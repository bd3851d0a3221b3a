#!/usr/bin/env bash
# test_device.sh - train.device and train.precision (docs/CUDA.md), on the
# CPU: what can be checked without a GPU, and the GPU code paths of the
# trainer, pipeline and comms run on the CPU.
#
# usage: test_device.sh MPITRAIN REPO MNIST.h5
#
#   1. train.device = cuda on a machine without a usable GPU: exit 2 on every
#      rank and from mpirun (2 ranks), exactly one "mpitrain: error:" line,
#      naming train.device, no run folder. (Skipped, saying so, where a GPU
#      is usable.)
#   1b. MPITRAIN_CPU_SBGEMM (the CPU's bf16 matmul path) with a bad value:
#      exit 2 from mpirun (2 ranks), exactly one "mpitrain: error:" line,
#      naming the variable and its values, no run folder; an fp32 run ignores it.
#   2. train.device = auto without a GPU: one line saying it falls back to the
#      CPU, then the same losses as device = cpu, bitwise.
#   3. The device paths on the CPU (MPITRAIN_TEST_STAGED=1: the CPU backend
#      with its memory treated as a device's, so parameters, optimizer state,
#      batches, pipeline messages and every sum go through host copies as
#      they do on a GPU): MLP at dp2 and GPT at dp2, tp2.pp2, pp2 (GPipe)
#      and pp4 with 3 and 5 micro-batches (1F1B with and without a steady
#      phase); each bitwise the same losses and checkpoint tensors as plain
#      CPU runs.
#      Staged runs report their host synchronisations per step (run.json
#      result.host_syncs_per_step and one line; a plain run none): on one
#      rank with 2 micro-batches exactly 1 (the step's read of its losses
#      and norm parts); at dp2 that read plus the gradient's sum through
#      the host (1 copy out, 1 back: no NCCL on the CPU), no value
#      returned, no synchronize.
#      A staged run stopped at step 5 (train.exit_after_steps) and resumed
#      matches the uninterrupted run bitwise (the checkpoint copies the
#      device state out; the resume copies it back in).
#   4. train.precision = bf16 (matmuls emulated on the CPU, activations kept
#      for the backward in bfloat16): GPT losses within 1e-3 relative of
#      fp32 over 10 steps but not equal to them (bf16 changes something;
#      1e-3, not the 2e-2 CUDA is allowed: a backward that skips unpacking
#      one block stays within 2e-2), at tp 8 with bf16 products (C/2-wide
#      MLP slices), also at tp2.pp2 with two micro-batches
#      in flight (staged; 1e-4 of bf16 on one rank); the
#      start-up estimate of the activations drops below 0.8 x fp32's; run.json
#      and the registry record the precision; a bf16 checkpoint (always fp32
#      tensors) resumes under fp32.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") REPO=$(realpath "$2") DATA=$(realpath "$3")
unset MPITRAIN_TEST_STAGED

gpt_tokens
COMMON=(--config "$REPO/configs/mnist_mlp.ini" --set run.log_every=1 --set run.threads=1
    --set registry.enabled=false)
MLP=("${COMMON[@]}" --set data.path="$DATA" --set model.layers=784,32,32,10
    --set train.global_batch=32 --set optim.kind=adamw --set optim.lr=1e-3 --set train.steps=10)
GPT=("${COMMON[@]}" "${GPT_TINY[@]}" --set model.dropout=0.1 --set train.steps=10
    --set parallel.microbatches=2)

# same_run LABEL DIR_A DIR_B: bitwise equal losses and checkpoint tensors
same_run() {
    if $PY - "$2" "$3" <<'PYEOF'; then
import glob, json, sys, h5py, numpy as np
def losses(d):
    out = {}
    for f in sorted(glob.glob(d + "/*/*/metrics.jsonl")):
        for l in open(f):
            r = json.loads(l)
            if "loss" in r:
                out[r["step"]] = (r["loss"], r["grad_norm"], r.get("test_loss"))
    return out
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert a and sorted(a) == sorted(b), (sorted(a), sorted(b))
diff = [s for s in a if a[s] != b[s]]
assert not diff, f"steps {diff} differ: {a[diff[0]]} vs {b[diff[0]]}"
def last_ckpt(d):
    c = sorted(glob.glob(d + "/*/*/checkpoints/step_*.h5"))
    return h5py.File(c[-1], "r")
fa, fb = last_ckpt(sys.argv[1]), last_ckpt(sys.argv[2])
n = 0
for grp in ("model", "optim"):
    def visit(name, obj):
        global n
        if isinstance(obj, h5py.Dataset):
            x, y = obj[...], fb[grp + "/" + name][...]
            assert np.array_equal(x, y), f"{grp}/{name} differs"
            n += 1
    fa[grp].visititems(visit)
print(f"   {len(a)} steps bitwise equal; {n} checkpoint tensors equal")
PYEOF
        ok "$1"
    else
        bad "$1"
    fi
}

# ---- 1. device = cuda without a GPU ----
run_kind 1 MLP "$TMP/auto0" "$TMP/auto0.log" --set train.device=auto --set train.steps=2
if grep -q "training on the CPU" "$TMP/auto0.log"; then
    run_kind 2 MLP "$TMP/cuda" "$TMP/cuda.log" --set train.device=cuda
    nerr=$(grep -c "^mpitrain: error:" "$TMP/cuda.log")
    if [ "$RC" = 2 ] && [ "$nerr" = 1 ] && grep -q "^mpitrain: error: train.device = cuda" "$TMP/cuda.log" &&
        [ ! -e "$TMP/cuda" ]; then
        ok "device = cuda without a GPU: exit 2, one error line: $(grep '^mpitrain: error' "$TMP/cuda.log" | cut -c1-110)"
    else
        bad "device = cuda without a GPU: exit $RC, $nerr error lines"
        sed 's/^/   | /' "$TMP/cuda.log" | head
    fi
else
    echo "skip - device = cuda error without a GPU: this machine has a usable GPU"
fi

# ---- 1b. a bad MPITRAIN_CPU_SBGEMM ----
MPITRAIN_CPU_SBGEMM=fast run_kind 2 GPT "$TMP/sbg" "$TMP/sbg.log" --set train.precision=bf16
nerr=$(grep -c "^mpitrain: error:" "$TMP/sbg.log")
if [ "$RC" = 2 ] && [ "$nerr" = 1 ] && [ ! -e "$TMP/sbg" ] &&
    grep -q "^mpitrain: error: MPITRAIN_CPU_SBGEMM = 'fast' .*(auto, on or off)" "$TMP/sbg.log"; then
    ok "MPITRAIN_CPU_SBGEMM=fast: exit 2, one error line: $(grep '^mpitrain: error' "$TMP/sbg.log" | cut -c1-110)"
else
    bad "MPITRAIN_CPU_SBGEMM=fast: exit $RC, $nerr error lines"
    sed 's/^/   | /' "$TMP/sbg.log" | head
fi
# an fp32 run has no bf16 matmul: the variable does not concern it
MPITRAIN_CPU_SBGEMM=fast run_kind 2 GPT "$TMP/sbg32" "$TMP/sbg32.log" --set train.steps=2
if [ "$RC" = 0 ] && ! grep -q "^mpitrain: error" "$TMP/sbg32.log"; then
    ok "MPITRAIN_CPU_SBGEMM=fast with train.precision = fp32: the run goes on (the variable concerns bf16 only)"
else
    bad "MPITRAIN_CPU_SBGEMM=fast stopped an fp32 run: exit $RC"
    sed 's/^/   | /' "$TMP/sbg32.log" | head
fi

# ---- 2. device = auto falls back ----
if grep -q "training on the CPU" "$TMP/auto0.log"; then
    must_run_kind 2 MLP "$TMP/a_cpu" "$TMP/a_cpu.log" --set checkpoint.save_final=true
    must_run_kind 2 MLP "$TMP/a_auto" "$TMP/a_auto.log" --set checkpoint.save_final=true \
        --set train.device=auto
    n=$(grep -c "train.device = auto: rank 0 cannot use a GPU (.*); training on the CPU" "$TMP/a_auto.log")
    [ "$n" = 1 ] && ok "device = auto says once that it falls back to the CPU" ||
        bad "device = auto: $n fallback lines"
    same_run "device = auto without a GPU trains as device = cpu" "$TMP/a_cpu" "$TMP/a_auto"
else
    echo "skip - device = auto fallback: this machine has a usable GPU"
fi

# ---- 3. the device paths, staged on the CPU ----
staged() { MPITRAIN_TEST_STAGED=1 "$@"; }
CK=(--set checkpoint.save_final=true)
for case in "MLP 2 dp2" "GPT 2 dp2" "GPT 4 tp2.pp2" "GPT 2 pp2.gpipe" "GPT 4 pp4.m3" "GPT 4 pp4.m5"; do
    read -r kind np name <<<"$case"
    extra=()
    case $name in
        tp2.pp2) extra=(--set parallel.tp=2 --set parallel.pp=2) ;;
        pp2.gpipe) extra=(--set parallel.pp=2 --set parallel.schedule=gpipe) ;;
        pp4.m*) extra=(--set parallel.pp=4 --set model.n_layer=4 --set train.global_batch=30
            --set parallel.microbatches="${name#pp4.m}") ;;
    esac
    must_run_kind "$np" "$kind" "$TMP/p_$kind$name" "$TMP/p_$kind$name.log" "${CK[@]}" "${extra[@]}"
    export MPITRAIN_TEST_STAGED=1
    must_run_kind "$np" "$kind" "$TMP/s_$kind$name" "$TMP/s_$kind$name.log" "${CK[@]}" "${extra[@]}"
    unset MPITRAIN_TEST_STAGED
    grep -q "device: cpu-staged" "$TMP/s_$kind$name.log" || bad "$kind $name: not staged"
    same_run "staged device paths, $kind $name: same as the CPU" "$TMP/p_$kind$name" "$TMP/s_$kind$name"
done
# the host synchronisations a step would make on a GPU (docs/CUDA.md, "Host
# synchronisations"): counted by the staged backend, in run.json and one line.
# One rank, fused, 2 micro-batches: the step's one read (losses and the
# norm's parts) and nothing else.
export MPITRAIN_TEST_STAGED=1
must_run_kind 1 GPT "$TMP/s_GPT1" "$TMP/s_GPT1.log"
unset MPITRAIN_TEST_STAGED
if out=$($PY - "$TMP/s_GPTdp2" "$TMP/p_GPTdp2" "$TMP/s_GPT1" <<'PYEOF'
import glob, json, sys
def result(d):
    return json.load(open(glob.glob(d + "/*/*/run.json")[0]))["result"]
h = result(sys.argv[1])["host_syncs_per_step"]
assert "host_syncs_per_step" not in result(sys.argv[2]), "a plain CPU run counts no syncs"
parts = h["to_host"] + h["to_device"] + h["synchronize"] + h["values"]
assert abs(h["all"] - parts) < 1e-9, h
# one rank: the step's one read of its statistics; no value returned, no
# synchronize (the pipeline times the device with marks), the batch queued
# from pinned memory (no wait)
one = result(sys.argv[3])["host_syncs_per_step"]
assert one["all"] == 1 and one["to_host"] == 1, one
# dp2, fused, 2 micro-batches: the read, and the gradient's sum through the
# host (the staged backend has no NCCL: one copy out, one back; with NCCL
# on GPUs the sum stays on the device)
assert h["values"] == 0 and h["synchronize"] == 0, h
assert h["to_host"] == 1 + 1 and h["to_device"] == 1, h
print("1 rank", one, "dp2", h)
PYEOF
) && grep -q "host synchronisations per training step on rank 0" "$TMP/s_GPTdp2.log"; then
    ok "staged GPT: host synchronisations per step counted: $out"
else
    bad "staged GPT: host synchronisation count: $out"
fi
# stop at 5, resume to 10, staged, against the plain uninterrupted dp2 GPT run
export MPITRAIN_TEST_STAGED=1
must_run_kind 2 GPT "$TMP/r" "$TMP/r1.log" "${CK[@]}" --set train.exit_after_steps=5
run_kind 2 GPT "$TMP/r" "$TMP/r2.log" "${CK[@]}" --set checkpoint.resume=auto
unset MPITRAIN_TEST_STAGED
if [ "$RC" = 0 ] && grep -q "resum" "$TMP/r2.log"; then
    same_run "staged stop at 5 + resume to 10 = uninterrupted (dp2 GPT)" "$TMP/p_GPTdp2" "$TMP/r"
else
    bad "staged resume exited $RC"
    tail -5 "$TMP/r2.log"
fi

# ---- 4. bf16 (emulated on the CPU) ----
must_run_kind 1 GPT "$TMP/f32" "$TMP/f32.log" "${CK[@]}"
must_run_kind 1 GPT "$TMP/b16" "$TMP/b16.log" "${CK[@]}" --set train.precision=bf16 \
    --set registry.enabled=true
if $PY - "$TMP/f32" "$TMP/b16" <<'PYEOF'; then
import glob, json, sys
def losses(d):
    f = glob.glob(d + "/*/*/metrics.jsonl")[0]
    return {r["step"]: r["loss"] for r in map(json.loads, open(f)) if "loss" in r}
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(a) == sorted(b) == list(range(1, 11)), (sorted(a), sorted(b))
rel = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"   bf16 vs fp32 over 10 steps: worst relative loss difference {rel:.2e}")
# 2e-2 is the issue's bound for CUDA bf16 against the CPU; on the CPU,
# emulated bf16 against fp32 stays near 3e-5 here, and a backward that
# misses one block's unpacking reaches 2.6e-3: 1e-3 tells them apart
assert 1e-7 < rel <= 1e-3, rel
run = json.load(open(glob.glob(sys.argv[2] + "/*/*/run.json")[0]))
assert run["layout"]["precision"] == "bf16", run["layout"]
reg = [json.loads(l) for l in open(glob.glob(sys.argv[2] + "/registry.jsonl")[0])]
assert all(r["lineage"]["layout"]["precision"] == "bf16" for r in reg if "lineage" in r), reg[0]
PYEOF
    ok "precision = bf16: losses within 1e-3 of fp32 and not equal; recorded in run.json and the registry"
else
    bad "precision = bf16 against fp32"
fi
# bf16 activation storage through the pipeline, tensor parallelism and the
# device paths: tp2.pp2, staged, GPipe with 2 micro-batches in flight (one
# activation slot each, sharing the fp32 working copy)
export MPITRAIN_TEST_STAGED=1
must_run_kind 4 GPT "$TMP/b16pp" "$TMP/b16pp.log" --set train.precision=bf16 --set parallel.tp=2 \
    --set parallel.pp=2 --set parallel.schedule=gpipe
unset MPITRAIN_TEST_STAGED
if $PY - "$TMP/f32" "$TMP/b16" "$TMP/b16pp" <<'PYEOF'; then
import glob, json, sys
def losses(d):
    f = glob.glob(d + "/*/*/metrics.jsonl")[0]
    return {r["step"]: r["loss"] for r in map(json.loads, open(f)) if "loss" in r}
a, b, c = (losses(d) for d in sys.argv[1:4])
rf = max(abs(a[s] - c[s]) / abs(a[s]) for s in a)
rb = max(abs(b[s] - c[s]) / abs(b[s]) for s in b)
print(f"   bf16 tp2.pp2 (staged) vs fp32 one rank: {rf:.2e}; vs bf16 one rank: {rb:.2e}")
# observed 3e-5 and 2e-6; a missed unpack gives 5e-4 and 3e-3
assert rf <= 1e-3 and rb <= 1e-4, (rf, rb)
PYEOF
    ok "bf16 activations through tp2.pp2 (staged): within 1e-3 of fp32 and 1e-4 of bf16 on one rank"
else
    bad "bf16 at tp2.pp2"
fi
# bf16 products at tensor parallelism 8 (8 heads of 8 channels): each rank's
# MLP is 4C/8 = C/2 wide, so the widest gradient a product reads is a
# row-parallel output's (N, C), not dfch (N, 4C/tp); 3 steps, within 1e-4 of
# the same model on one rank (a buffer sized for dfch overflowed here)
W8=(--set train.precision=bf16 --set model.n_head=8 --set model.n_embd=64 --set train.steps=3)
must_run_kind 1 GPT "$TMP/b16w1" "$TMP/b16w1.log" "${W8[@]}"
must_run_kind 8 GPT "$TMP/b16tp8" "$TMP/b16tp8.log" "${W8[@]}" --set parallel.tp=8
if grep -q "matmul_bf16" "$TMP/b16tp8.log" && $PY - "$TMP/b16w1" "$TMP/b16tp8" <<'PYEOF'; then
import glob, json, sys
def losses(d):
    f = glob.glob(d + "/*/*/metrics.jsonl")[0]
    return {r["step"]: r["loss"] for r in map(json.loads, open(f)) if "loss" in r}
a, b = (losses(d) for d in sys.argv[1:3])
assert sorted(a) == sorted(b) == [1, 2, 3], (a, b)
r = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
print(f"   bf16 products tp8 vs one rank: {r:.2e}")
assert r <= 1e-4, r
PYEOF
    ok "bf16 products at tp 8: within 1e-4 of one rank"
else
    bad "bf16 products at tp 8"
fi
# bf16 activation storage halves the stored activations: the start-up
# estimate of a 4-block GPT with 2 micro-batches (2 slots under GPipe)
for pr in fp32 bf16; do
    must_run_kind 1 GPT "$TMP/m$pr" "$TMP/m$pr.log" --set train.precision=$pr --set model.n_layer=4 \
        --set train.steps=1 --set parallel.schedule=gpipe
done
m32=$(activation_mb "$TMP/mfp32.log") m16=$(activation_mb "$TMP/mbf16.log")
if [ -n "$m32" ] && [ -n "$m16" ] &&
    $PY -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(0 if b < 0.8 * a else 1)" "$m32" "$m16"; then
    ok "bf16 activations: estimate $m16 MB against $m32 MB in fp32 (4 blocks, 2 slots)"
else
    bad "bf16 activation estimate '$m16' MB not below 0.8 x fp32's '$m32' MB"
fi
ck=$(ls "$TMP"/b16/*/*/checkpoints/step_00000010.h5 2>/dev/null | head -1)
if [ -n "$ck" ] && $PY -c "import h5py,sys; f=h5py.File(sys.argv[1]); bad=[k for k in f['model'] if f['model'][k].dtype != 'float32']; sys.exit(1 if bad else 0)" "$ck"; then
    run_kind 1 GPT "$TMP/b16r" "$TMP/b16r.log" --set checkpoint.resume="$ck" --set train.steps=12
    [ "$RC" = 0 ] && ok "a bf16 checkpoint (fp32 tensors) resumes under fp32" ||
        { bad "bf16 checkpoint resume under fp32 exited $RC"; tail -5 "$TMP/b16r.log"; }
else
    bad "bf16 checkpoint missing or not float32: $ck"
fi

[ "$fail" = 0 ] && echo "test_device: all passed" || echo "test_device: FAILED"
exit $fail
