#!/usr/bin/env bash
# test_buckets.sh - the data-parallel sum in buckets overlapped with the
# backward (parallel.bucket_mb, parallel.overlap; docs/PARALLEL.md, "Buckets
# and overlap").
#
# usage: test_buckets.sh MPITRAIN H5CMP REPO DATA.h5
#
# 8 steps each, small buckets (0.01 MB: tens of them) against the flat sum
# (bucket_mb 1000, overlap false):
#  - the MLP on MNIST at -np 2 (overlap true and false) and -np 4;
#  - a tiny GPT at -np 2, tp2 x dp2, pp2 x dp2 (1F1B, 2 micro-batches, the
#    tied embedding's bucket after the tied sum) and -np 4;
#  model.h5 bitwise at two replicas (one float add per element, whatever
#  the cut), within 1e-6 relative at four;
#  - the traces (MPITRAIN_GRADSYNC_TRACE): with overlap a bucket starts
#    before the backward's last layer ends on rank 0; without, none does;
#  - run.json's result.gradsync and the header line; parallel.deterministic
#    keeps its tree; a NaN step (MPITRAIN_FAULT) skipped with buckets.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$1 H5CMP=$2 REPO=$3 DATA=$4

FLAT=(--set parallel.bucket_mb=1000 --set parallel.overlap=false)
SMALL=(--set parallel.bucket_mb=0.01 --set parallel.overlap=true)
SMALL_OFF=(--set parallel.bucket_mb=0.01 --set parallel.overlap=false)
MODEL=(--set data.path="$DATA")
run() { # run NAME NP OPTIONS...: the run's folder on stdout
    local name=$1 np=$2 out=$TMP/$1
    shift 2
    RC=0
    MPITRAIN_GRADSYNC_TRACE=$TMP/trace_$name timeout 120 mpirun -np "$np" "$MPITRAIN" train \
        --config "$REPO/configs/mnist_mlp.ini" --set run.dir="$out" --set train.steps=8 \
        --set train.eval_every=0 --set registry.enabled=false "${MODEL[@]}" "$@" \
        >"$TMP/$name.log" 2>&1 || RC=$?
    must_succeed "run $name" "$TMP/$name.log" >&2
    echo "$out"/*/0001
}

# trace_check NAME WANT: WANT 1: on rank 0, in every traced step, a bucket
# starts before the step's last layer ends; 0: on no rank, in no step
trace_check() {
    if $PY - "$2" "$TMP/trace_$1".* >"$TMP/trace.txt" <<'EOF'; then
import json, sys
want, files = int(sys.argv[1]), sys.argv[2:]
early = {}  # (file, step): a bucket started before the last layer ended
for f in files:
    steps = {}
    for line in open(f):
        e = json.loads(line)
        steps.setdefault(e["step"], []).append(e)
    for s, ev in steps.items():
        last = max(e["t"] for e in ev if e["event"] == "layer")
        starts = [e["t"] for e in ev if e["event"] == "bucket_start"]
        early[(f, s)] = min(starts) < last
rank0 = [v for (f, s), v in early.items() if f.endswith(".0")]
print(f"{len(early)} traced steps, {sum(early.values())} with an early bucket")
ok = (len(rank0) == 3 and all(rank0)) if want else (early and not any(early.values()))
sys.exit(0 if ok else 1)
EOF
        ok "$1: trace $(cat "$TMP/trace.txt")"
    else
        bad "$1: trace (want early buckets: $2): $(cat "$TMP/trace.txt")"
    fi
}

# record_check NAME DIR PATH OVERLAP: result.gradsync's path and overlap
record_check() {
    if $PY - "$2/run.json" "$3" "$4" >"$TMP/rec.txt" <<'EOF'; then
import json, sys
g = json.load(open(sys.argv[1]))["result"]["gradsync"]
print(json.dumps(g))
assert g["path"] == sys.argv[2], g
assert g["overlap"] == (sys.argv[3] == "true"), g
if g["path"] != "deterministic":
    assert g["exposed_tail_ms"] >= 0 and g["sync_ms"] >= g["exposed_tail_ms"] - 1e-9, g
    assert (g["buckets"] > 1) == (g["path"] == "buckets"), g
EOF
        ok "$1: result.gradsync $(cat "$TMP/rec.txt")"
    else
        bad "$1: result.gradsync"
        sed 's/^/   | /' "$TMP/rec.txt"
    fi
}

# compare LABEL NP MODE OPTIONS...: buckets with and without overlap against the flat sum
compare() {
    local label=$1 np=$2 mode=$3 flat b boff
    shift 3
    flat=$(run "${label}_flat" "$np" "$@" "${FLAT[@]}")
    b=$(run "${label}_b" "$np" "$@" "${SMALL[@]}")
    cmp_h5 "$label: small buckets, overlap vs flat: model.h5 $mode" "$b/model.h5" \
        "$flat/model.h5" $mode
    trace_check "${label}_b" 1
    record_check "${label}_b" "$b" buckets true
    record_check "${label}_flat" "$flat" flat false
    if [ "$np" = 2 ]; then
        boff=$(run "${label}_boff" "$np" "$@" "${SMALL_OFF[@]}")
        cmp_h5 "$label: small buckets, no overlap vs flat: model.h5 $mode" "$boff/model.h5" \
            "$flat/model.h5" $mode
        trace_check "${label}_boff" 0
    fi
}

compare mlp_np2 2 --bitwise
if grep -q "gradient sum over dp 2: [0-9]* buckets of ~0.01 MB, overlapped" "$TMP/mlp_np2_b.log"; then
    ok "header: the buckets' line"
else
    bad "header: no buckets line"
    grep "gradient sum" "$TMP/mlp_np2_b.log" | sed 's/^/   | /'
fi
compare mlp_np4 4 "--rtol 1e-6"

gpt_tokens
MODEL=("${GPT_TINY[@]}")
compare gpt_np2 2 --bitwise
compare gpt_tp2 4 --bitwise --set parallel.tp=2
compare gpt_pp2 4 --bitwise --set parallel.pp=2 --set parallel.microbatches=2
compare gpt_np4 4 "--rtol 1e-6"

# parallel.deterministic keeps its tree (overlap has no effect)
d=$(run det 2 "${SMALL[@]}" --set parallel.deterministic=true)
record_check det "$d" deterministic false
grep -q "deterministic tree after the backward" "$TMP/det.log" &&
    ok "deterministic: header says the tree" || bad "deterministic: no header line"

# a NaN step with buckets: their sums wait for the injected NaN (skipped)
RC=0
MPITRAIN_FAULT=nan:step=3:rank=1 timeout 120 mpirun -np 2 "$MPITRAIN" train \
    --config "$REPO/configs/mnist_mlp.ini" --set run.dir="$TMP/nan" --set train.steps=5 \
    --set train.eval_every=0 --set registry.enabled=false "${MODEL[@]}" "${SMALL[@]}" \
    --set train.nan_policy=skip >"$TMP/nan.log" 2>&1 || RC=$?
if [ "$RC" = 0 ] && $PY -c 'import json, sys
assert json.load(open(sys.argv[1]))["result"]["nan_skips"] == 1' "$TMP"/nan/*/0001/run.json; then
    ok "NaN on one rank with buckets: skipped on every rank"
else
    bad "NaN with buckets: exit $RC"
    tail -5 "$TMP/nan.log" | sed 's/^/   | /'
fi
exit $fail
