#!/usr/bin/env bash
# test_deterministic.sh - parallel.deterministic (issue 17, part 3): the same
# bits at any data-parallel size, on real MNIST with the MLP.
#
# usage: test_deterministic.sh MPITRAIN H5CMP REPO DATA.h5
#
# 20 steps at global batch 64 (micro-batches of 16 rows), for SGD and AdamW:
#  - (dp, micro-batches) = (1, 4), (2, 2), (4, 1): model.h5 and the final
#    checkpoint (weights and optimizer state) bitwise identical to (1, 4)'s;
#  - the same for a tiny GPT (dropout 0.1, AdamW, cosine schedule, clipping),
#    8 steps at global batch 8 (micro-batches of 2 sequences), also with
#    tensor parallelism 2 and with pipeline parallelism 2 (-np 2, 4, 8);
#  - every logged training loss identical too (the micro-batches' losses
#    are summed in the same tree, and the replicas' by parallel/detsum);
#  - resume across data-parallel sizes: the (2, 2) run's checkpoint at half
#    time, resumed at (4, 1) and at (1, 4), ends with model.h5 and the final
#    checkpoint bitwise those of the uninterrupted (1, 4) run, and logs its
#    second half of losses (MLP AdamW; GPT; GPT pp 2);
#  - train.nan_policy = skip with a NaN at step 5: completes, skips it,
#    model.h5 finite, (2, 2) = (1, 4) bitwise;
#  - run.threads = 2 vs 1 (one rank, MLP): bitwise (the CPU matmul's tiles
#    do not depend on the thread count; a wider GPT in test_gpt_train.sh);
#  - deterministic off at (1, 4) vs (4, 1) is NOT bitwise identical (the
#    test would prove nothing if in-place accumulation already were);
#  - bad layouts: -np 3 and microbatches = 3 each give one error line on
#    every rank's behalf (exit 2, no training).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$1 H5CMP=$2 REPO=$3 DATA=$4

MODEL=(--set data.path="$DATA" --set train.steps=20) # the MLP; GPT below
STEPS=20
run() { # run NAME NP MICROBATCHES OPTIM DETERMINISTIC [--set KEY=VALUE...]
    local out=$TMP/$1 name=$1 np=$2 mb=$3 optim=$4 det=$5
    shift 5
    RC=0
    timeout 300 mpirun -np "$np" "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" \
        --set run.dir="$out" --set run.log_every=1 --set train.eval_every=0 \
        --set registry.enabled=false "${MODEL[@]}" --set optim.kind="$optim" \
        --set parallel.microbatches="$mb" --set parallel.deterministic="$det" "$@" \
        >"$TMP/$name.log" 2>&1 || RC=$?
    must_succeed "run $name" "$TMP/$name.log"
    echo "$out/mnist_mlp/0001"
}

TP=1     # ranks per replica (parallel.tp x parallel.pp, set in MODEL too)
RESUME=0 # 1: layouts also resume the (2, 2) run's midway checkpoint at (4, 1) and (1, 4)
layouts() { # layouts LABEL OPTIM: (2, 2) and (4, 1) against (1, 4)
    local ref got ck half=
    ck=checkpoints/step_$(printf %08d $STEPS).h5
    ref=$(run "$1_1x4" "$TP" 4 "$2" true)
    for layout in "2 2" "4 1"; do
        set -- "$1" "$2" $layout
        local extra=()
        [ "$RESUME" = 1 ] && [ "$3" = 2 ] && extra=(--set checkpoint.every_steps=$((STEPS / 2)))
        got=$(run "$1_${3}x$4" $(($3 * TP)) "$4" "$2" true "${extra[@]}")
        [ "${#extra[@]}" -gt 0 ] && half=$got/checkpoints/step_$(printf %08d $((STEPS / 2))).h5
        cmp_h5 "$1: dp $3 x mb $4 vs dp 1 x mb 4: model.h5 bitwise" \
            "$got/model.h5" "$ref/model.h5" --bitwise
        cmp_h5 "$1: dp $3 x mb $4 vs dp 1 x mb 4: final checkpoint bitwise" \
            "$got/$ck" "$ref/$ck" --bitwise
        if [ "$(losses "$got/metrics.jsonl")" = "$(losses "$ref/metrics.jsonl")" ]; then
            ok "$1: dp $3 x mb $4: every logged loss identical"
        else
            bad "$1: dp $3 x mb $4: logged losses differ from dp 1 x mb 4's"
        fi
    done
    [ -z "$half" ] || resumes "$1" "$2" "$ref" "$half"
}

# resumes LABEL OPTIM REF CHECKPOINT: the (2, 2) run's checkpoint at STEPS / 2
# resumed at (4, 1) and at (1, 4) ends bitwise where the uninterrupted (1, 4)
# run REF did, and logs REF's second half of losses
resumes() {
    local got ck log
    ck=checkpoints/step_$(printf %08d $STEPS).h5
    for layout in "4 1" "1 4"; do
        set -- "$1" "$2" "$3" "$4" $layout
        got=$(run "$1_resume_${5}x$6" $(($5 * TP)) "$6" "$2" true --set checkpoint.resume="$4")
        log=$TMP/$1_resume_${5}x$6.log
        if ! grep -q "resume: from $4 (step $((STEPS / 2))" "$log"; then
            bad "$1: dp 2 x mb 2 -> dp $5 x mb $6: no resume line"
            grep resume "$log" | sed 's/^/   | /'
        fi
        cmp_h5 "$1: dp 2 x mb 2's step $((STEPS / 2)) resumed at dp $5 x mb $6: model.h5 bitwise" \
            "$got/model.h5" "$3/model.h5" --bitwise
        cmp_h5 "$1: resumed at dp $5 x mb $6: final checkpoint bitwise" "$got/$ck" "$3/$ck" --bitwise
        if [ "$(losses "$got/metrics.jsonl")" = \
            "$(losses "$3/metrics.jsonl" | tail -n $((STEPS / 2)))" ]; then
            ok "$1: resumed at dp $5 x mb $6: its logged losses = the uninterrupted run's last $((STEPS / 2))"
        else
            bad "$1: resumed at dp $5 x mb $6: logged losses differ from the uninterrupted run's"
        fi
    done
}

layouts "mlp sgd" sgd
RESUME=1
layouts "mlp adamw" adamw

# thread counts: one rank at 2 threads against the (1, 4) run above at 1
# (OpenBLAS's own threaded sgemm changed bits with the thread count; the CPU
# backend's matmul tiles do not: kernels/cpu/backend_cpu.c).
ref="$TMP/mlp adamw_1x4/mnist_mlp/0001"
got=$(OMP_NUM_THREADS=2 run mlp_threads2 1 4 adamw true --set run.threads=2)
grep -q "| 2 thread(s) per rank |" "$TMP/mlp_threads2.log" || bad "threads: the run did not use 2 threads"
if "$H5CMP" "$got/model.h5" "$ref/model.h5" --bitwise >"$TMP/cmp.txt"; then
    ok "mlp adamw: 2 threads vs 1 (dp 1 x mb 4): model.h5 bitwise ($(tail -1 "$TMP/cmp.txt"))"
else
    bad "mlp adamw: 2 threads vs 1 (dp 1 x mb 4): model.h5 NOT bitwise"
    sed 's/^/   | /' "$TMP/cmp.txt"
fi

gpt_tokens
MODEL=("${GPT_TINY[@]}" --set model.dropout=0.1 --set train.steps=8 --set optim.schedule=cosine
    --set optim.warmup_steps=2 --set optim.min_lr=3e-4 --set optim.grad_clip=1)
STEPS=8
layouts "gpt adamw" adamw
MODEL+=(--set parallel.tp=2)
TP=2 RESUME=0
layouts "gpt tp2 adamw" adamw
MODEL+=(--set parallel.tp=1 --set parallel.pp=2) # 1F1B; the tied embedding's two copies
RESUME=1
layouts "gpt pp2 adamw" adamw
TP=1 RESUME=0
MODEL=(--set data.path="$DATA" --set train.steps=20)

# train.nan_policy = skip: a NaN loss and gradient at step 5 on every rank
# (MPITRAIN_FAULT) through the tree; the leaves are overwritten each step, so
# nothing of it may survive: the run completes, step 5 is skipped, model.h5
# is finite and (2, 2) and (1, 4) still agree bitwise
for layout in "2 2" "1 4"; do
    set -- $layout
    got=$(MPITRAIN_FAULT=nan:step=5 run "nan_${1}x$2" "$1" "$2" adamw true \
        --set train.nan_policy=skip)
    grep -q '^step  5/20 .* skipped: loss NaN' "$TMP/nan_${1}x$2.log" ||
        bad "nan skip: dp $1 x mb $2: no skip line for step 5"
    [ "$1" = 2 ] && nan_ref=$got
done
if $PY - "$got/model.h5" <<'PY'; then
import h5py, numpy, sys
bad = []
with h5py.File(sys.argv[1], "r") as f:
    f.visititems(lambda n, o: bad.append(n) if isinstance(o, h5py.Dataset)
                 and not numpy.isfinite(o[()]).all() else None)
sys.exit(1 if bad else 0)
PY
    ok "nan skip (deterministic): both runs complete, step 5 skipped, model.h5 finite"
else
    bad "nan skip (deterministic): model.h5 has non-finite values"
fi
cmp_h5 "nan skip (deterministic): dp 2 x mb 2 vs dp 1 x mb 4: model.h5 bitwise" \
    "$nan_ref/model.h5" "$got/model.h5" --bitwise

# the control: without the tree, the layouts round differently
a=$(run sgd_off_1x4 1 4 sgd false)
b=$(run sgd_off_4x1 4 1 sgd false)
RC=0
"$H5CMP" "$a/model.h5" "$b/model.h5" --bitwise >"$TMP/cmp.txt" || RC=$?
if [ "$RC" = 1 ]; then # 1: tensors differ (2: could not compare)
    ok "control: deterministic = false differs between dp 1 x 4 and dp 4 x 1, as expected"
else
    bad "control: h5cmp --bitwise of deterministic = false's dp 1 x 4 and dp 4 x 1 exited $RC"
fi

bad_layout() { # bad_layout LABEL NP MICROBATCHES BATCH
    RC=0
    timeout 60 mpirun -np "$2" "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" \
        --set data.path="$DATA" --set run.dir="$TMP/bad" --set train.steps=2 \
        --set train.global_batch="$4" --set parallel.microbatches="$3" \
        --set parallel.deterministic=true >"$TMP/bad.log" 2>&1 || RC=$?
    local n
    n=$(grep -c "error: parallel.deterministic needs a power of two" "$TMP/bad.log" || true)
    if [ "$RC" != 0 ] && [ "$n" = 1 ]; then
        ok "bad layout rejected: $1"
    else
        bad "bad layout $1: exit $RC, $n error lines"
        tail -5 "$TMP/bad.log" | sed 's/^/   | /'
    fi
}
bad_layout "-np 3" 3 1 48
bad_layout "microbatches = 3" 1 3 48
exit $fail
