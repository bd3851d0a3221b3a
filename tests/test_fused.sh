#!/usr/bin/env bash
# test_fused.sh - train.fused (the backend's fused ops: flash attention,
# residual + LayerNorm, bias + GELU, one-pass cross-entropy, one AdamW pass)
# against the unfused ops, through `mpitrain train`.
#
# usage: test_fused.sh MPITRAIN H5CMP REPO MNIST_H5
#
#   1. Fused against unfused, 10 steps, one rank: the MLP (MNIST, AdamW,
#      grad_clip so the clip factor goes through the AdamW pass) and the GPT
#      (tiny, dropout 0.1, 2 micro-batches), each in fp32 and bf16: every
#      per-step loss within 1e-4 relative in fp32, 1e-3 in bf16 (the
#      test_device.sh bound of bf16 against fp32), and not all equal (the
#      fused ops ran); final parameters ||a-b||/||b|| per tensor within 1e-4
#      in fp32 (the GPT's c_attn key-bias slice excepted, as
#      test_gpt_train.sh explains), and in bf16 within 3 x bf16's own noise:
#      the largest per-tensor difference between the unfused bf16 and fp32
#      runs. The fused ops round other intermediates to bf16 (flash
#      attention's unnormalised probabilities, for one), and AdamW turns a
#      2^-9 difference in a small gradient into a step; over these 10 steps
#      unfused bf16 lies up to 2.9e-2 per tensor from fp32 and fused bf16 up
#      to 3.5e-2 from unfused bf16 (one seed; another gave 6e-3: the noise,
#      not a fixed bound, sets the scale). The fused run names its ops on one start-up line, and
#      run.json's layout.fused lists them ("off" unfused).
#   2. The thread count changes no bits with the fused ops: a GPT whose
#      matmuls are tiled (n_embd 128, 32 sequences of 32, dropout 0.1) and the
#      MLP, 10 steps at run.threads 1 and 2: bitwise the same model.h5.
#   3. Fused across layouts: the GPT at -np 4 with tp 2 x pp 2 and at dp 2,
#      fused, against fused on one rank: losses within 1e-5 relative.
#   4. Fused stop at step 5 + resume to 10 = the uninterrupted fused run,
#      bitwise (losses and model.h5).
#   5. Memory: the start-up estimate of the GPT's activations at T 128 drops
#      with the fused ops (no T x T attention matrix, no probability matrix).
#   6. Flash attention over several tiles in the whole model: the GPT at
#      block_size 96 (two key tiles of 64), fused against unfused, within
#      1e-4 (losses and parameters).
#   7. ZeRO-1 with clipping folded into the one-pass AdamW: dp 2 with
#      parallel.zero = 1 is bitwise the dp 2 run without it (both
#      parallel.deterministic), and the clip acted (grad_norm above it on at
#      least 5 of the 10 steps). test_core checks the folded clip itself
#      against a double-precision reference.
#   8. The start-up line names what the run calls: the MLP with AdamW
#      "xent adamw_multi", with SGD "xent".
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") H5CMP=$(realpath "$2") REPO=$(realpath "$3") DATA=$(realpath "$4")

gpt_tokens
COMMON=(--config "$REPO/configs/mnist_mlp.ini" --set run.log_every=1 --set run.threads=1
    --set registry.enabled=false --set train.steps=10)
MLP=("${COMMON[@]}" --set data.path="$DATA" --set model.layers=784,64,10
    --set train.global_batch=32 --set optim.kind=adamw --set optim.lr=1e-3
    --set optim.grad_clip=0.5)
GPT=("${COMMON[@]}" "${GPT_TINY[@]}" --set model.dropout=0.1 --set parallel.microbatches=2
    --set optim.grad_clip=1.0)

RUN_TIMEOUT=180 # seconds a run may take (run_kind, lib.sh)
metrics() { ls "$1"/*/*/metrics.jsonl 2>/dev/null | head -1; }
model() { ls "$1"/*/*/model.h5 2>/dev/null | head -1; }
runjson() { ls "$1"/*/*/run.json 2>/dev/null | head -1; }

# close LABEL DIR_A DIR_B LOSS_TOL PARAM_TOL [ALLOW_EQUAL [REF_A REF_B]]:
# losses within LOSS_TOL relative (and, unless ALLOW_EQUAL is 1, not all
# equal), parameters within PARAM_TOL per tensor; with REF_A REF_B,
# PARAM_TOL is a factor of the largest per-tensor difference between those
# two runs (a noise level)
close() {
    local label=$1 a=$2 b=$3 lt=$4 pt=$5 eq=${6:-0} ra="" rb=""
    [ $# -ge 8 ] && ra=$(model "$7") rb=$(model "$8")
    if $PY - "$(metrics "$a")" "$(metrics "$b")" "$(model "$a")" "$(model "$b")" "$lt" "$pt" \
        "$eq" "$ra" "$rb" <<'PYEOF'; then
import json, sys, h5py, numpy as np
ma, mb, fa, fb, lt, pt, eq, ra, rb = sys.argv[1:10]
lt, pt = float(lt), float(pt)
def tensors(f):
    out = {}
    for name, d in h5py.File(f, "r")["model"].items():
        x = d[...].astype(np.float64)
        if name.endswith("attn.c_attn.bias"):  # the key slice: zero gradient, noise (see header)
            C = x.size // 3
            x = np.concatenate([x[:C], x[2 * C:]])
        out[name] = x
    return out
def rel(x, y):
    n = np.linalg.norm(x)
    return np.linalg.norm(x - y) / n if n else np.linalg.norm(y)
if ra:
    A, B = tensors(ra), tensors(rb)
    noise = max(rel(A[k], B[k]) for k in A)
    # capped: a regression of bf16 itself must not widen the bound past 0.1
    print(f"   noise level (reference runs): worst tensor {noise:.2e}; bound min({pt} x that, 0.1)")
    pt = min(pt * noise, 0.1)
la = [json.loads(l)["loss"] for l in open(ma)]
lb = [json.loads(l)["loss"] for l in open(mb)]
assert len(la) == len(lb) == 10, (len(la), len(lb))
worst = max(abs(x - y) / abs(x) for x, y in zip(la, lb))
assert worst <= lt, f"losses differ by {worst:.2e} > {lt}"
assert eq == "1" or la != lb, "every loss bitwise equal: the other ops did not run"
a, b = tensors(fa), tensors(fb)
pw = 0.0
for name in a:
    r = rel(a[name], b[name])
    pw = max(pw, r)
    assert r <= pt, f"{name}: ||a-b||/||b|| {r:.2e} > {pt:.2e}"
print(f"   losses: worst relative difference {worst:.2e}; parameters: worst {pw:.2e}")
PYEOF
        ok "$label"
    else
        bad "$label"
    fi
}

# ---- 1. fused against unfused, MLP and GPT, fp32 and bf16 ----
for kind in MLP GPT; do
    for pr in fp32 bf16; do
        must_run_kind 1 $kind "$TMP/u$kind$pr" "$TMP/u$kind$pr.log" --set train.precision=$pr \
            --set train.fused=false
        must_run_kind 1 $kind "$TMP/f$kind$pr" "$TMP/f$kind$pr.log" --set train.precision=$pr \
            --set train.fused=true
        if [ $pr = fp32 ]; then
            close "$kind fp32: fused within 1e-4 of unfused (losses and parameters)" \
                "$TMP/u${kind}fp32" "$TMP/f${kind}fp32" 1e-4 1e-4
        else
            close "$kind bf16: fused within 1e-3 of unfused (losses), parameters within 3 x bf16's own noise (unfused bf16 against fp32)" \
                "$TMP/u${kind}bf16" "$TMP/f${kind}bf16" 1e-3 3 0 "$TMP/u${kind}fp32" "$TMP/u${kind}bf16"
        fi
    done
done
all="flash_attention residual_layernorm bias_gelu xent adamw_multi"
# (the products with cuBLASLt epilogues are the CUDA backend's alone)
lacks="matmul_bias matmul_bias_gelu matmul_dgelu matmul_wgrad_bgrad"
if grep -qx "fused ops (train.fused = true): $all; the cpu backend lacks $lacks (the unfused ops run instead)" \
    "$TMP/fGPTfp32.log" &&
    ! grep -q "fused ops" "$TMP/uGPTfp32.log" &&
    $PY -c 'import json, sys
a, b = (json.load(open(f))["layout"]["fused"] for f in sys.argv[1:3])
assert (a, b) == (sys.argv[3], "off"), (a, b)' "$(runjson "$TMP/fGPTfp32")" \
        "$(runjson "$TMP/uGPTfp32")" "$all"; then
    ok "the fused run names its ops (start-up line, run.json layout.fused); unfused: off"
else
    bad "fused ops not reported"
    grep "fused" "$TMP/fGPTfp32.log"
fi
# bf16: the linear layers' products take bf16 operands (matmul_bf16), named
# with the rest; an fp32 run leaves it out (above: not applicable, not
# lacking), and a bf16 run leaves out matmul_wgrad_bgrad (its bias gradient
# is bias_grad's over the fp32 gradient then: not applicable either)
if grep -qx "fused ops (train.fused = true): ${all% adamw_multi} matmul_bf16 adamw_multi; the cpu backend lacks ${lacks% matmul_wgrad_bgrad} (the unfused ops run instead)" \
    "$TMP/fGPTbf16.log"; then
    ok "a bf16 run names matmul_bf16 among its fused ops"
else
    bad "a bf16 run does not name matmul_bf16"
    grep "fused" "$TMP/fGPTbf16.log"
fi

# ---- 2. thread count: bitwise with the fused ops ----
WIDE=(--set model.n_embd=128 --set model.n_head=4 --set train.global_batch=32
    --set parallel.microbatches=1)
for t in 1 2; do
    must_run_kind 1 GPT "$TMP/g$t" "$TMP/g$t.log" --set train.fused=true "${WIDE[@]}" \
        --set run.threads=$t
    must_run_kind 1 MLP "$TMP/m$t" "$TMP/m$t.log" --set train.fused=true --set run.threads=$t
done
for k in g m; do
    if "$H5CMP" "$(model "$TMP/${k}1")" "$(model "$TMP/${k}2")" --bitwise >"$TMP/h5$k.log" 2>&1 &&
        cmp -s <(losses "$(metrics "$TMP/${k}1")") <(losses "$(metrics "$TMP/${k}2")"); then
        ok "fused, $([ $k = g ] && echo "GPT (tiled matmuls)" || echo MLP): run.threads 1 and 2 give bitwise the same model.h5 and losses"
    else
        bad "fused, $k: run.threads 1 and 2 differ"
        tail -3 "$TMP/h5$k.log"
    fi
done

# ---- 3. fused across layouts ----
must_run_kind 4 GPT "$TMP/tp" "$TMP/tp.log" --set train.fused=true --set parallel.tp=2 \
    --set parallel.pp=2 --set model.n_layer=2
must_run_kind 2 GPT "$TMP/dp" "$TMP/dp.log" --set train.fused=true
for l in tp dp; do
    if $PY - "$(metrics "$TMP/fGPTfp32")" "$(metrics "$TMP/$l")" <<'PYEOF'; then
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
assert len(a) == len(b) == 10, (len(a), len(b))
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(f"   worst relative loss difference {worst:.2e}")
assert worst <= 1e-5
PYEOF
        ok "fused, $([ $l = tp ] && echo "tp 2 x pp 2" || echo "dp 2"): losses within 1e-5 of fused on one rank"
    else
        bad "fused, $l: losses differ from one rank"
    fi
done

# ---- 4. fused stop + resume = uninterrupted ----
must_run_kind 1 GPT "$TMP/r" "$TMP/r1.log" --set train.fused=true --set train.exit_after_steps=5 \
    --set checkpoint.every_steps=5
run_kind 1 GPT "$TMP/r" "$TMP/r2.log" --set train.fused=true --set checkpoint.resume=auto
last=$(ls "$TMP"/r/*/*/model.h5 2>/dev/null | tail -1)
if [ "$RC" = 0 ] && [ -n "$last" ] && "$H5CMP" "$last" "$(model "$TMP/fGPTfp32")" --bitwise \
    >"$TMP/h5r.log" 2>&1 &&
    cmp -s <(losses "$TMP"/r/*/*/metrics.jsonl) <(losses "$(metrics "$TMP/fGPTfp32")"); then
    ok "fused: stop at 5 + resume to 10 = uninterrupted, bitwise (losses, model.h5)"
else
    bad "fused resume (exit $RC) differs from the uninterrupted run"
    tail -3 "$TMP/r2.log" "$TMP/h5r.log"
fi

# ---- 5. the activation estimate drops ----
for f in false true; do
    must_run_kind 1 GPT "$TMP/mem$f" "$TMP/mem$f.log" --set train.fused=$f --set model.block_size=128 \
        --set train.steps=1 --set parallel.microbatches=1
done
mu=$(activation_mb "$TMP/memfalse.log") mf=$(activation_mb "$TMP/memtrue.log")
if [ -n "$mu" ] && [ -n "$mf" ] &&
    $PY -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(0 if b < 0.8 * a else 1)" "$mu" "$mf"; then
    ok "activations at T 128: estimate $mf MB fused against $mu MB unfused"
else
    bad "fused activation estimate '$mf' MB not below 0.8 x unfused '$mu' MB"
fi

# ---- 6. flash attention over several tiles ----
for f in false true; do
    must_run_kind 1 GPT "$TMP/t96$f" "$TMP/t96$f.log" --set train.fused=$f --set model.block_size=96
done
close "GPT at T 96 (several attention tiles): fused within 1e-4 of unfused" \
    "$TMP/t96false" "$TMP/t96true" 1e-4 1e-4

# ---- 7. ZeRO-1 + clipping in the one pass ----
for z in 0 1; do
    must_run_kind 2 GPT "$TMP/z$z" "$TMP/z$z.log" --set parallel.zero=$z \
        --set parallel.deterministic=true --set optim.grad_clip=0.05
done
if "$H5CMP" "$(model "$TMP/z0")" "$(model "$TMP/z1")" --bitwise >"$TMP/h5z.log" 2>&1 &&
    cmp -s <(losses "$(metrics "$TMP/z0")") <(losses "$(metrics "$TMP/z1")") &&
    $PY -c 'import json, sys
n = [json.loads(l)["grad_norm"] for l in open(sys.argv[1])]
assert sum(x > 0.05 for x in n) >= 5, n  # the clip (0.05) acted on most steps
print("   grad_norm above the clip (0.05) on", sum(x > 0.05 for x in n), "of", len(n), "steps")' \
        "$(metrics "$TMP/z1")"; then
    ok "fused, dp 2, clipping: parallel.zero = 1 is bitwise the run without it"
else
    bad "fused: ZeRO-1 with clipping differs from plain dp 2"
    tail -3 "$TMP/h5z.log"
fi

# ---- 8. what the start-up line names ----
must_run_kind 1 MLP "$TMP/sgd" "$TMP/sgd.log" --set optim.kind=sgd --set train.steps=2
if grep -qx "fused ops (train.fused = true): xent adamw_multi" "$TMP/fMLPfp32.log" &&
    grep -qx "fused ops (train.fused = true): xent" "$TMP/sgd.log"; then
    ok "the MLP's start-up line names the ops it calls (AdamW: xent adamw_multi; SGD: xent)"
else
    bad "the MLP's fused ops line"
    grep "fused ops" "$TMP/fMLPfp32.log" "$TMP/sgd.log"
fi

[ "$fail" = 0 ] && echo "test_fused: all passed" || echo "test_fused: FAILED"
exit $fail
