#!/usr/bin/env bash
# test_nan_policy.sh - train.nan_policy and train.nan_max_skips, with NaN
# losses injected through MPITRAIN_FAULT (base/fault.h):
#   - skip: the run goes on and counts the skip (progress line, metrics,
#     run.json); the skipped step leaves every parameter and optimizer
#     tensor bitwise unchanged on every rank (checkpoints before and after
#     it, tp 2 x dp 2, the NaN on one rank only); AdamW's step count and the
#     learning-rate schedule do not advance; non-consecutive skips reset the
#     count;
#   - stop (the default): exit 6 on every rank, a FAIL event, the last good
#     checkpoint kept and valid;
#   - more than nan_max_skips consecutive: exit 6, likewise.
# Every failing run's merged output (2>&1) has a line starting with
# `mpitrain: error:`.
#   - on a pipelined GPT, a NaN through the whole backward is cleared from
#     the model's buffers: the next step trains.
# usage: test_nan_policy.sh MPITRAIN REPO DATA.h5
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") REPO=$(realpath "$2") DATA=$(realpath "$3")

# train NP LOG FAULT ARGS... -> RC; per-rank statuses in $LOG.d/status.R
train() {
    local np=$1 log=$2 fault=$3
    shift 3
    mkdir -p "$log.d"
    MPITRAIN_FAULT=$fault timeout -k 5 120 mpirun -np "$np" bash -c "$WRAP" _ "$log.d" \
        "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA" \
        --set train.global_batch=64 --set train.steps=8 --set run.log_every=1 \
        --set train.eval_every=0 --set optim.schedule=cosine --set optim.lr=0.003 \
        --set checkpoint.every_steps=1 --set checkpoint.keep_last=0 "$@" >"$log" 2>&1
    # one status per rank, all alike, or RC names what came back
    RC=$(cat "$log.d"/status.* 2>/dev/null | sort -u | tr '\n' ' ' | sed 's/ $//')
    local got
    got=$(find "$log.d" -name 'status.*' | wc -l)
    [ "$got" = "$np" ] || RC="$got of $np ranks reported: [$RC]"
    cat "$log.d"/out.0 "$log.d"/err.0 >>"$log" 2>/dev/null
}
run_of() { echo "$1/mnist_mlp/0001"; }

# ---- skip: one NaN at step 3 on rank 3 of tp 2 x dp 2 (its gradient; its loss is not the
# one reported, so the step's loss stays finite and its gradient norm is NaN)
train 4 "$TMP/skip.log" nan:step=3:rank=3 --set parallel.tp=2 --set run.dir="$TMP/skip" \
    --set train.nan_policy=skip
[ "$RC" = 0 ] && ok "nan_policy = skip: a NaN at step 3 (rank 3 of 4) and the run completes" ||
    { bad "nan_policy = skip exited [$RC]"; tail -5 "$TMP/skip.log"; }
grep -q '^step 3/8 .* skipped: loss [0-9.]*, gradient norm NaN (train.nan_policy = skip: 1 in a row, 1 in all)' \
    "$TMP/skip.log" && ok "the skip is logged" || bad "no skip line in the log"
train 4 "$TMP/ref.log" "" --set parallel.tp=2 --set run.dir="$TMP/ref"
[ "$RC" = 0 ] || bad "reference run exited [$RC]"
$PY - "$(run_of "$TMP/skip")" "$(run_of "$TMP/ref")" <<'PY' && ok "skipped step: every parameter and optimizer tensor bitwise unchanged (steps 2 -> 3), AdamW step count 2 -> 2 -> 3, lr after the skip = the lr the reference used at step 3, skip counted in metrics.jsonl and run.json" || bad "the skipped step changed the state, or was not counted"
import h5py, json, sys
run, ref = sys.argv[1], sys.argv[2]
def state(step):
    out = {}
    with h5py.File("%s/checkpoints/step_%08d.h5" % (run, step), "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()].tobytes())
                     if isinstance(o, h5py.Dataset) and n.split("/")[0] in ("model", "optim") else None)
        out["step_count"] = int(f["optim"].attrs["step_count"])
    return out
s2, s3, s4 = state(2), state(3), state(4)
assert len(s2) > 4, sorted(s2)
diff = [k for k in s2 if s2[k] != s3[k]]
assert not diff, "changed by the skipped step: %s" % diff
assert (s2["step_count"], s3["step_count"], s4["step_count"]) == (2, 2, 3), (s2["step_count"], s3["step_count"], s4["step_count"])
assert any(s3[k] != s4[k] for k in s3 if k != "step_count"), "step 4 changed nothing"
m = {r["step"]: r for r in map(json.loads, open(run + "/metrics.jsonl"))}
mr = {r["step"]: r for r in map(json.loads, open(ref + "/metrics.jsonl"))}
# rank 3 does not report the loss (tp rank 1): the loss stays finite, the norm is NaN
assert m[3].get("skipped") is True and m[3]["grad_norm"] is None, m[3]
assert m[4]["lr"] == mr[3]["lr"] and m[4]["lr"] != mr[4]["lr"], (m[4]["lr"], mr[3]["lr"], mr[4]["lr"])
assert m[8]["nan_skips"] == 1 and "skipped" not in m[8], m[8]
assert "nan_skips" not in mr[8]
res = json.load(open(run + "/run.json"))["result"]
assert res["status"] == "completed" and res["nan_skips"] == 1, res
PY

# ---- skip on the GPT, pipelined (pp 2): a NaN that runs through the whole
# backward (the loss's gradient on the last stage, then the pipeline's
# messages) leaves no NaN behind in the model's own gradient buffers: only
# step 3 is skipped, and the state is unchanged across it
gpt_tokens
MPITRAIN_FAULT=nan:step=3 timeout -k 5 120 mpirun -np 2 "$MPITRAIN" train \
    --config "$REPO/configs/mnist_mlp.ini" "${GPT_TINY[@]}" --set parallel.pp=2 \
    --set train.steps=6 --set run.log_every=1 --set train.nan_policy=skip \
    --set checkpoint.every_steps=1 --set checkpoint.keep_last=0 --set run.dir="$TMP/gpt" \
    >"$TMP/gpt.log" 2>&1
rc=$?
nskip=$(grep -c ' skipped: ' "$TMP/gpt.log")
if [ $rc = 0 ] && [ "$nskip" = 1 ] && $PY - "$(run_of "$TMP/gpt")" <<'PY'; then
import h5py, sys
def state(step):
    out = {}
    with h5py.File("%s/checkpoints/step_%08d.h5" % (sys.argv[1], step), "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()].tobytes())
                     if isinstance(o, h5py.Dataset) and n.split("/")[0] in ("model", "optim") else None)
    return out
s2, s3, s4 = state(2), state(3), state(4)
assert len(s2) > 10 and s2 == s3 and s3 != s4, "state across the skipped step"
PY
    ok "gpt pp 2: a NaN through the whole backward at step 3 is skipped, step 4 trains (1 skip), state unchanged across it"
else
    bad "gpt pp 2 with a NaN at step 3: exit $rc, $nskip skipped step(s) (want 0 and 1)"
    grep -E 'skipped|error' "$TMP/gpt.log" | head -5 | sed 's/^/   | /'
fi

# ---- skip, twice but not in a row, with at most 1 in a row: completes
train 2 "$TMP/apart.log" nan:step=3,nan:step=5 --set run.dir="$TMP/apart" \
    --set train.nan_policy=skip --set train.nan_max_skips=1
[ "$RC" = 0 ] && grep -q 'skip: 1 in a row, 2 in all' "$TMP/apart.log" &&
    ok "two skips not in a row pass train.nan_max_skips = 1" || bad "skips at steps 3 and 5 with nan_max_skips = 1: exit [$RC]"

# expect_stop NAME LOG PATTERN GOOD_STEP: exit 6 on every rank, the error
# line in the merged output, a FAIL event, the checkpoint of GOOD_STEP valid
expect_stop() {
    local name=$1 log=$2 pat=$3 good=$4 dir
    dir=$(run_of "${log%.log}")
    if [ "$RC" = 6 ] && grep -q "^mpitrain: error: $pat" "$log" &&
        "$MPITRAIN" ckpt verify "$dir/checkpoints/step_$(printf %08d "$good").h5" >/dev/null 2>&1 &&
        $PY -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]; assert r["eventType"]=="FAIL" and r["result"]["exit_code"]==6, r' \
            "${log%.log}/registry.jsonl"; then
        ok "$name: exit 6 on every rank, a FAIL event, the checkpoint of step $good valid"
    else
        bad "$name: exit [$RC]"
        grep -E 'error|hint' "$log" | head -4 | sed 's/^/   | /'
    fi
}
train 2 "$TMP/stop.log" nan:step=4:rank=1 --set run.dir="$TMP/stop"
expect_stop "nan_policy = stop" "$TMP/stop.log" "loss is NaN at step 4$" 3
train 2 "$TMP/many.log" nan:step=3,nan:step=4,nan:step=5 --set run.dir="$TMP/many" \
    --set train.nan_policy=skip --set train.nan_max_skips=2
expect_stop "3 NaN steps in a row, nan_max_skips = 2" "$TMP/many.log" \
    "loss is NaN at step 5: 3 steps in a row with a NaN or infinite value, more than train.nan_max_skips = 2$" 4
exit $fail
