#!/usr/bin/env bash
# test_parallel.sh - tensor (tp), pipeline (pp) and data (dp) parallelism
# combined on one MPI world (docs/PARALLEL.md), for the MLP on real MNIST and
# for a tiny GPT on byte tokens of tests/data/gpt_corpus.txt.
#
# usage: test_parallel.sh MPITRAIN REPO MNIST.h5
#
#   1. Layout equivalence: every layout with dp, tp, pp in {1, 2} and
#      dp*tp*pp <= 4 (dp.tp.pp = 111 211 121 112 221 212 122; world = the
#      product), parallel.microbatches = 2 everywhere (the one-rank reference
#      included), 10 steps: the per-step losses and gradient norms are within
#      1e-5 relative of the one-rank run and so is the final test/validation
#      loss in run.json, the initial weights (a step-0 checkpoint) are
#      bitwise the one-rank run's, run.json's layout is the one asked for, and model.h5
#      (gathered onto rank 0) matches the one-rank weights per tensor
#      (||a-b||/||b|| <= 1e-5; for GPT the key slice of c_attn.bias, whose
#      gradient is zero in exact arithmetic, must stay ~0 instead, as in
#      tests/test_gpt_train.sh). MLP 784-32-32-10 (tp splits the hidden
#      widths; two stages need >= 2 layers), AdamW; GPT n_layer 2, n_head 2,
#      n_embd 32, dropout 0.1 (masks must follow the sequence, not the rank).
#      Control: another run.seed on one rank is far outside the tolerance.
#   2. Cross-layout resume (MLP and GPT): 15 steps on one rank against
#      5 steps at dp2.tp2 (train.exit_after_steps) -> resume = auto at
#      dp2.pp2 for 5 more -> resume = auto on one rank to step 15: each resume
#      names the right checkpoint, all 15 losses are within 1e-5 relative of
#      the uninterrupted run and the final weights match (as in 1).
#   3. Pipeline schedules: pp 2 with 4 micro-batches (MLP at 2 ranks, GPT at
#      dp2.pp2 = 4 ranks): GPipe and 1F1B give the same losses (1e-5; whether
#      they are bitwise identical is printed), run.json's result.pipeline has
#      peak_held GPipe [4,4] and 1F1B [2,1] (1F1B's stage 0 below GPipe's),
#      bubble_theory (pp-1)/(m+pp-1) = 0.2, and a busy_fraction per stage.
#      Stages by hand: the MLP cut inside a column/row pair at tp2.pp2, a
#      3-block GPT cut 2 + 1; losses as in 1.
#   4. Gradient accumulation without a pipeline: one rank, 1 vs 4
#      micro-batches: losses within 1e-5, weights as in 1.
#   5. Bad layouts: GPT heads not divisible by tp, an MLP hidden width not
#      divisible by tp, pp larger than the layer count, a world size not a
#      multiple of tp*pp, parallel.stage_layers not summing to the layers, a
#      batch not divisible into the micro-batches: exit 2 on every rank and
#      from mpirun, exactly one "mpitrain: error:" line over all ranks, naming
#      the key, no hang (timeout) and no run folder.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") REPO=$(realpath "$2") DATA=$(realpath "$3")
T0=$SECONDS

# ---- GPT data: tests/data/gpt_corpus.txt as bytes (lib.sh, gpt_tokens) ----
gpt_tokens

COMMON=(--config "$REPO/configs/mnist_mlp.ini" --set run.log_every=1 --set run.threads=1
    --set parallel.microbatches=2)
MLP=("${COMMON[@]}" --set data.path="$DATA" --set model.layers=784,32,32,10
    --set train.global_batch=32 --set optim.kind=adamw --set optim.lr=1e-3)
GPT=("${COMMON[@]}" "${GPT_TINY[@]}" --set model.dropout=0.1)

# train KIND LAYOUT DIR LOG ARGS...: LAYOUT = dp.tp.pp digits (e.g. 212);
# status in RC
train() {
    local kind=$1 lay=$2 dir=$3 log=$4 dp tp pp np
    shift 4
    dp=${lay:0:1} tp=${lay:1:1} pp=${lay:2:1}
    np=$((dp * tp * pp))
    local -n base=$kind
    timeout -k 5 120 mpirun -np "$np" "$MPITRAIN" train "${base[@]}" --set run.dir="$dir" \
        --set parallel.tp="$tp" --set parallel.pp="$pp" "$@" >"$log" 2>&1
    RC=$?
}
must_train() {
    train "$@"
    must_succeed "$1 layout $2 (run $4)" "$4"
}

# cmp_losses LABEL STEPS REF_METRICS -- METRICS...: per-step loss and
# grad_norm of the concatenated METRICS against REF_METRICS, 1e-5 relative
cmp_losses() {
    local label=$1 n=$2 ref=$3
    shift 4
    if $PY - "$n" "$ref" "$@" <<'EOF'; then
import json, sys
n, ref, got = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def recs(files):
    out = {}
    for f in files:
        for l in open(f):
            r = json.loads(l)
            if "loss" in r:
                assert r["step"] not in out, f"step {r['step']} logged twice"
                out[r["step"]] = r
    return out
a, b = recs([ref]), recs(got)
assert sorted(a) == sorted(b) == list(range(1, n + 1)), (sorted(a), sorted(b))
wl = max(abs(a[s]["loss"] - b[s]["loss"]) / abs(a[s]["loss"]) for s in a)
wg = max(abs(a[s]["grad_norm"] - b[s]["grad_norm"]) / abs(a[s]["grad_norm"]) for s in a)
same = all(a[s]["loss"] == b[s]["loss"] for s in a)
print(f"   {n} steps: loss worst rel diff {wl:.1e}, grad_norm {wg:.1e}"
      + (" (losses bitwise identical)" if same else ""))
sys.exit(0 if wl <= 1e-5 and wg <= 1e-5 else 1)
EOF
        ok "$label: losses and grad norms within 1e-5"
    else
        bad "$label: losses or grad norms differ"
    fi
}

# cmp_params LABEL KIND REF.h5 GOT.h5: per tensor ||a-b||/||b|| <= 1e-5
cmp_params() {
    if $PY - "$2" "$3" "$4" 32 <<'EOF'; then
import sys, h5py, numpy as np
kind, C = sys.argv[1], int(sys.argv[4])
a, b = h5py.File(sys.argv[2], "r")["model"], h5py.File(sys.argv[3], "r")["model"]
assert sorted(a) == sorted(b), (sorted(a), sorted(b))
worst, wname = 0.0, ""
for name in a:
    x, y = a[name][...].astype(np.float64), b[name][...].astype(np.float64)
    assert x.shape == y.shape, (name, x.shape, y.shape)
    if kind == "GPT" and name.endswith("attn.c_attn.bias"):
        for v in (x, y):
            assert np.abs(v[C:2 * C]).max() <= 0.01 * np.abs(v[:C]).max(), (name, "key slice moved")
        x, y = np.concatenate([x[:C], x[2 * C:]]), np.concatenate([y[:C], y[2 * C:]])
    rel = np.linalg.norm(x - y) / np.linalg.norm(x)
    if rel >= worst:
        worst, wname = rel, name
print(f"   parameters: worst ||a-b||/||b|| {worst:.1e} ({wname}) over {len(a)} tensors")
sys.exit(0 if worst <= 1e-5 else 1)
EOF
        ok "$1: final weights match"
    else
        bad "$1: final weights differ"
    fi
}

# runjson RUN EXPR: evaluate a python expression over j = run.json
runjson() { $PY -c 'import json,sys; j=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1/run.json" "$2"; }
run_of() { echo "$1/mnist_mlp/${2:-0001}"; }

LAYOUTS="211 121 112 221 212 122"

# ---- 1. layout equivalence ----
for kind in MLP GPT; do
    must_train $kind 111 "$TMP/$kind.111" "$TMP/$kind.111.log" --set train.steps=10 \
        --set checkpoint.save_initial=true
    ref=$(run_of "$TMP/$kind.111")
    for lay in $LAYOUTS; do
        must_train $kind "$lay" "$TMP/$kind.$lay" "$TMP/$kind.$lay.log" --set train.steps=10 \
            --set checkpoint.save_initial=true
        got=$(run_of "$TMP/$kind.$lay")
        name="$kind dp${lay:0:1}.tp${lay:1:1}.pp${lay:2:1} (np $((${lay:0:1} * ${lay:1:1} * ${lay:2:1})))"
        l=$(runjson "$got" '"%d%d%d" % (j["layout"]["dp"], j["layout"]["tp"], j["layout"]["pp"])' 2>&1)
        [ "$l" = "$lay" ] && ok "$name: run.json layout is dp.tp.pp $lay" ||
            bad "$name: run.json layout is '$l', want $lay"
        # the step-0 checkpoint: every weight bitwise the one-rank run's (init is a
        # function of the global element index, not of the layout)
        if $PY - "$ref/checkpoints/step_00000000.h5" "$got/checkpoints/step_00000000.h5" <<'EOF'; then
import sys, h5py, numpy as np
a, b = (h5py.File(f, "r")["model"] for f in sys.argv[1:])
assert sorted(a) == sorted(b)
diff = [n for n in a if not np.array_equal(a[n][...], b[n][...])]
print(f"   initial weights: {len(a) - len(diff)} of {len(a)} tensors bitwise equal")
sys.exit(1 if diff else 0)
EOF
            ok "$name: initial weights bitwise equal to the one-rank run's"
        else
            bad "$name: initial weights differ from the one-rank run's"
        fi
        cmp_losses "$name vs 1 rank" 10 "$ref/metrics.jsonl" -- "$got/metrics.jsonl"
        if $PY - "$ref/run.json" "$got/run.json" <<'EOF'; then
import json, sys
a, b = (json.load(open(f))["result"]["test_loss"] for f in sys.argv[1:])
print(f"   final test/val loss {a!r} vs {b!r}: rel diff {abs(a - b) / abs(a):.1e}")
sys.exit(0 if abs(a - b) <= 1e-5 * abs(a) else 1)
EOF
            ok "$name: final test/val loss in run.json within 1e-5"
        else
            bad "$name: final test/val loss in run.json differs"
        fi
        cmp_params "$name vs 1 rank" $kind "$ref/model.h5" "$got/model.h5"
    done
done

# The comparison must be able to fail: another seed, same layout, differs.
must_train MLP 111 "$TMP/seed7" "$TMP/seed7.log" --set train.steps=10 --set run.seed=7
if $PY - "$(run_of "$TMP/MLP.111")/metrics.jsonl" "$(run_of "$TMP/seed7")/metrics.jsonl" <<'EOF2'; then
import json, sys
a, b = ([json.loads(l)["loss"] for l in open(f)] for f in sys.argv[1:])
worst = max(abs(x - y) / abs(x) for x, y in zip(a, b))
print(f"   run.seed 7 vs 1234: worst rel loss diff {worst:.1e}")
sys.exit(0 if worst > 1e-3 else 1)
EOF2
    ok "control: another seed gives losses far outside 1e-5"
else
    bad "control: another seed gives the same losses"
fi

# ---- 2. cross-layout resume: dp2.tp2 -> dp2.pp2 -> one rank ----
for kind in MLP GPT; do
    A=$TMP/$kind.resA B=$TMP/$kind.resB
    must_train $kind 111 "$A" "$A.log" --set train.steps=15
    must_train $kind 221 "$B" "$B.1.log" --set train.steps=15 --set train.exit_after_steps=5
    must_train $kind 212 "$B" "$B.2.log" --set train.steps=15 --set train.exit_after_steps=5 \
        --set checkpoint.resume=auto
    must_train $kind 111 "$B" "$B.3.log" --set train.steps=15 --set checkpoint.resume=auto
    st=""
    for i in 1 2 3; do st="$st $(runjson "$(run_of "$B" 000$i)" 'j["result"]["status"]' 2>&1)"; done
    [ "$st" = " stopped stopped completed" ] && ok "$kind resume: run.json statuses$st" ||
        bad "$kind resume: run.json statuses$st, want stopped stopped completed"
    if grep -q "resume: from .*step_00000005.h5" "$B.2.log" &&
        grep -q "resume: from .*step_00000010.h5" "$B.3.log"; then
        ok "$kind resume: dp2.pp2 resumed from step 5 (written at dp2.tp2), one rank from step 10"
    else
        bad "$kind resume: no or wrong 'resume: from' lines"
        grep -h "resume" "$B.2.log" "$B.3.log" | sed 's/^/   | /'
    fi
    cmp_losses "$kind dp2.tp2 (1-5) -> dp2.pp2 (6-10) -> 1 rank (11-15) vs 15 steps on 1 rank" 15 \
        "$(run_of "$A")/metrics.jsonl" -- "$(run_of "$B" 0001)/metrics.jsonl" \
        "$(run_of "$B" 0002)/metrics.jsonl" "$(run_of "$B" 0003)/metrics.jsonl"
    cmp_params "$kind resumed across layouts vs uninterrupted" $kind "$(run_of "$A")/model.h5" \
        "$(run_of "$B" 0003)/model.h5"
done

# ---- 3. GPipe vs 1F1B ----
for case in MLP:112 GPT:212; do
    kind=${case%:*} lay=${case#*:}
    for s in gpipe 1f1b; do
        must_train $kind "$lay" "$TMP/$kind.$s" "$TMP/$kind.$s.log" --set train.steps=10 \
            --set parallel.microbatches=4 --set parallel.schedule=$s
    done
    g=$(run_of "$TMP/$kind.gpipe") f=$(run_of "$TMP/$kind.1f1b")
    cmp_losses "$kind dp${lay:0:1}.pp2, 4 micro-batches: 1F1B vs GPipe" 10 "$g/metrics.jsonl" -- \
        "$f/metrics.jsonl"
    if $PY - "$g/run.json" "$f/run.json" <<'EOF'; then
import json, sys
g, f = (json.load(open(x))["result"]["pipeline"] for x in sys.argv[1:])
print(f"   gpipe: {json.dumps(g)}\n   1f1b:  {json.dumps(f)}")
assert g["schedule"] == "gpipe" and f["schedule"] == "1f1b", "schedule names"
assert g["peak_held"] == [4, 4], f"gpipe peak_held {g['peak_held']}, want [4, 4]"
assert f["peak_held"] == [2, 1], f"1f1b peak_held {f['peak_held']}, want [2, 1]"
assert f["peak_held"][0] < g["peak_held"][0]
for p in (g, f):
    assert abs(p["bubble_theory"] - 0.2) < 1e-12, f"bubble_theory {p['bubble_theory']}, want 0.2"
    assert len(p["busy_fraction"]) == 2 and all(0 < x <= 1 for x in p["busy_fraction"]), \
        f"busy_fraction {p['busy_fraction']}"
print(f"   stage 0 held at most {f['peak_held'][0]} micro-batches under 1F1B, {g['peak_held'][0]} under GPipe")
EOF
        ok "$kind: result.pipeline: peak_held GPipe [4,4] > 1F1B [2,1], bubble 0.2"
    else
        bad "$kind: result.pipeline of GPipe / 1F1B"
    fi
done

# ---- 3b. stages set by hand: the MLP cut inside its column/row pair (each
# tensor-parallel rank sends its slice of the hidden layer to the next
# stage), and a 3-block GPT cut 2 + 1 ----
must_train MLP 122 "$TMP/MLP.cut" "$TMP/MLP.cut.log" --set train.steps=10 \
    --set parallel.stage_layers=1,2
cmp_losses "MLP tp2.pp2 with stage_layers = 1,2 vs 1 rank" 10 \
    "$(run_of "$TMP/MLP.111")/metrics.jsonl" -- "$(run_of "$TMP/MLP.cut")/metrics.jsonl"
for lay in 111 112; do
    must_train GPT $lay "$TMP/GPT3.$lay" "$TMP/GPT3.$lay.log" --set train.steps=10 \
        --set model.n_layer=3 --set parallel.stage_layers=$([ $lay = 111 ] && echo 0 || echo 2,1)
done
grep -q "     1     1   0       2-2" "$TMP/GPT3.112.log" &&
    ok "GPT 3 blocks, stage_layers = 2,1: stage 1 holds block 2 (the per-rank table)" ||
    bad "GPT 3 blocks, stage_layers = 2,1: the per-rank table does not show block 2 on stage 1"
cmp_losses "GPT 3 blocks on pp2 (2 + 1) vs 1 rank" 10 \
    "$(run_of "$TMP/GPT3.111")/metrics.jsonl" -- "$(run_of "$TMP/GPT3.112")/metrics.jsonl"

# ---- 4. gradient accumulation without a pipeline: one rank, the global batch
# in 1 or 4 micro-batches, gives the same steps (GPT without dropout here: its
# masks are covered in 1; with them, one wte element whose first gradient is
# at AdamW's eps makes this tiny model differ by up to ~2e-5, as 1 vs 2 ranks
# do, see docs/TRAINING.md) ----
for kind in MLP GPT; do
    for m in 1 4; do
        must_train $kind 111 "$TMP/$kind.acc$m" "$TMP/$kind.acc$m.log" --set train.steps=10 \
            --set parallel.microbatches=$m --set model.dropout=0
    done
    cmp_losses "$kind one rank: 4 accumulated micro-batches vs 1 batch" 10 \
        "$(run_of "$TMP/$kind.acc1")/metrics.jsonl" -- "$(run_of "$TMP/$kind.acc4")/metrics.jsonl"
    cmp_params "$kind gradient accumulation" $kind "$(run_of "$TMP/$kind.acc1")/model.h5" \
        "$(run_of "$TMP/$kind.acc4")/model.h5"
done

# ---- 5. bad layouts ----
# Run twice: once under WRAP (lib.sh), which keeps each rank's stdout, stderr
# and status in files, and once plainly, for mpirun's own exit status and its
# merged stderr.
# expect_error NAME NP PATTERN KIND ARGS...: every rank and mpirun exit 2,
# exactly one "mpitrain: error:" line over all ranks, matching PATTERN; no
# hang, no run folder
expect_error() {
    local name=$1 np=$2 pat=$3 kind=$4 o=$TMP/err_$1 st lines want i mrc mlines
    shift 4
    local -n base=$kind
    mkdir -p "$o"
    timeout -k 5 60 mpirun -np "$np" bash -c "$WRAP" _ "$o" "$MPITRAIN" train "${base[@]}" \
        --set run.dir="$o/runs" --set train.steps=5 "$@" >"$o/wrapped.log" 2>&1
    local wrc=$?
    timeout -k 5 60 mpirun -np "$np" "$MPITRAIN" train "${base[@]}" \
        --set run.dir="$o/runs" --set train.steps=5 "$@" >"$o/mpirun.out" 2>"$o/mpirun.err"
    mrc=$?
    st=$(for ((i = 0; i < np; i++)); do echo -n "$(cat "$o/status.$i" 2>/dev/null || echo none) "; done)
    want=$(for ((i = 0; i < np; i++)); do echo -n "2 "; done)
    lines=$(cat "$o"/err.* 2>/dev/null | grep -c '^mpitrain: error:')
    mlines=$(grep -c '^mpitrain: error:' "$o/mpirun.err")
    if [ "$st" = "$want" ] && [ "$wrc" = 0 ] && [ "$mrc" = 2 ] && [ "$lines" = 1 ] &&
        [ "$mlines" = 1 ] && out_has -E "$pat" grep -h '^mpitrain: error:' "$o"/err.* &&
        [ ! -e "$o/runs" ]; then
        ok "$name: -np $np, exit 2 on every rank and from mpirun, one error: $(grep -h '^mpitrain: error:' "$o"/err.* | cut -c1-140)"
    else
        bad "$name: -np $np: rank statuses [$st], mpirun $mrc (wrapped $wrc), error lines $lines per rank files / $mlines from mpirun (want one matching /$pat/), run folder $([ -e "$o/runs" ] && echo made || echo none)"
        grep -h 'error' "$o"/err.* "$o/mpirun.err" 2>/dev/null | head -8 | sed 's/^/   | /'
    fi
}
expect_error gpt_heads_tp4 4 "parallel\.tp|model\.n_head" GPT --set parallel.tp=4
expect_error mlp_width_tp4 4 "parallel\.tp" MLP --set model.layers=784,30,10 --set parallel.tp=4
expect_error gpt_pp3_2layers 3 "parallel\.pp" GPT --set parallel.pp=3
expect_error mlp_pp3_2layers 3 "parallel\.pp" MLP --set model.layers=784,32,10 --set parallel.pp=3
expect_error world3_tp2 3 "parallel\.tp" MLP --set parallel.tp=2
expect_error stage_layers 2 "parallel\.stage_layers" GPT --set parallel.pp=2 \
    --set parallel.stage_layers=1,2
expect_error microbatches 2 "parallel\.microbatches|train\.global_batch" GPT \
    --set parallel.microbatches=3

echo "parallel: $((SECONDS - T0)) s"
[ $fail = 0 ] && echo "parallel: all checks passed" || echo "parallel: FAILED"
exit $fail
