#!/usr/bin/env bash
# test_zero.sh - ZeRO-1 (parallel.zero = 1, issue 17 part 2): each
# data-parallel rank keeps and updates only its shard of the optimizer state.
#
# usage: test_zero.sh MPITRAIN H5CMP REPO DATA.h5
#
#  - MLP, AdamW, -np 2: zero = 1 gives bitwise zero = 0's model.h5 and final
#    checkpoint (optimizer state written by each shard's holder); SGD with
#    momentum at -np 4 within 1e-6 (the ring sums in another order);
#  - tiny GPT (clipping on) at -np 2, and with tp 2 and with pp 2 (1F1B,
#    the tied embedding) at -np 4 (dp 2): within 1e-6 of zero = 0;
#  - with parallel.deterministic: (dp, micro-batches) = (2, 2) and (4, 1)
#    at zero = 1 bitwise equal to (1, 4) at zero = 0, for the MLP and for the
#    GPT with pp 2;
#  - resume across layouts, bitwise (deterministic): a zero = 1 checkpoint
#    of dp 2 resumed at dp 1 with zero = 0 and at dp 4 with zero = 1, and a
#    zero = 0 checkpoint of dp 2 resumed at dp 4 with zero = 1, end equal to
#    the uninterrupted run;
#  - the device-memory paths (MPITRAIN_TEST_STAGED=1: the CPU backend
#    posing as a device, docs/CUDA.md): GPT pp 2 zero 1 bitwise as on the
#    host; deterministic GPT pp 2 (tied
#    embedding, clipping): zero 0 at dp 2 and zero 1 at dp 2 and dp 1 end
#    bitwise where the host paths end (the exact norm once read a stale or
#    device buffer there);
#  - the memory table: optimizer state per rank at -np 4 about 1/4 of
#    zero = 0's;
#  - parallel.zero = 2, parallel.bucket_mb = 0 and -1: one error line, exit 2
#    (deterministic's layouts: test_deterministic.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$1 H5CMP=$2 REPO=$3 DATA=$4

MODEL=(--set data.path="$DATA" --set train.steps=20) # the MLP; GPT below
STEPS=20
run() { # run NAME NP [--set ...]: trains; echoes its run folder
    local name=$1 np=$2
    shift 2
    RC=0
    timeout 300 mpirun -np "$np" "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" \
        --set run.dir="$TMP/$name" --set run.log_every=1 --set train.eval_every=0 \
        --set registry.enabled=false --set checkpoint.every_steps=10 "${MODEL[@]}" "$@" \
        >"$TMP/$name.log" 2>&1 || RC=$?
    must_succeed "run $name" "$TMP/$name.log"
    echo "$TMP/$name/mnist_mlp/0001"
}
final() { # final RUNDIR: its last checkpoint
    echo "$1/checkpoints/step_$(printf %08d $STEPS).h5"
}
same() { # same LABEL A B H5CMP-OPTIONS...: model.h5 and the final checkpoint
    local label=$1 a=$2 b=$3
    shift 3
    cmp_h5 "$label: model.h5 ($*)" "$a/model.h5" "$b/model.h5" "$@"
    cmp_h5 "$label: final checkpoint ($*)" "$(final "$a")" "$(final "$b")" "$@"
}

a=$(run mlp_z0 2 --set optim.kind=adamw)
b=$(run mlp_z1 2 --set optim.kind=adamw --set parallel.zero=1)
same "mlp adamw -np 2: zero 1 vs 0" "$b" "$a" --bitwise
a=$(run sgd_z0 4 --set optim.kind=sgd --set optim.momentum=0.9)
b=$(run sgd_z1 4 --set optim.kind=sgd --set optim.momentum=0.9 --set parallel.zero=1)
same "mlp sgd -np 4: zero 1 vs 0" "$b" "$a" --rtol 1e-6

# the optimizer column of the memory table (rank 0's row)
optim_mb() { awk '/^ +rank +stage/ { getline; getline; print $7; exit }' "$1"; }
z0=$(optim_mb "$TMP/sgd_z0.log") z1=$(optim_mb "$TMP/sgd_z1.log")
if awk -v a="$z0" -v b="$z1" 'BEGIN { exit !(b > 0 && a / b > 3.5 && a / b < 4.5) }'; then
    ok "memory table at -np 4: optimizer $z0 MB per rank at zero = 0, $z1 MB at zero = 1"
else
    bad "memory table at -np 4: optimizer '$z0' MB at zero = 0 vs '$z1' MB at zero = 1 (want 1/4)"
fi

gpt_tokens
MLP=("${MODEL[@]}")
MODEL=("${GPT_TINY[@]}" --set model.dropout=0.1 --set train.steps=8 --set optim.schedule=cosine
    --set optim.warmup_steps=2 --set optim.min_lr=3e-4 --set optim.grad_clip=1
    --set checkpoint.every_steps=4)
STEPS=8
for layout in "2 tp=1" "4 tp=2" "4 pp=2"; do
    set -- $layout
    a=$(run "gpt_${2}_z0" "$1" --set parallel."$2")
    b=$(run "gpt_${2}_z1" "$1" --set parallel."$2" --set parallel.zero=1)
    same "gpt $2 -np $1: zero 1 vs 0" "$b" "$a" --rtol 1e-6
done
# ZeRO-1 through the device-memory paths (host copy, MPI) ends where the host path does
a=$(MPITRAIN_TEST_STAGED=1 run gpt_pp2_z1_staged 4 --set parallel.pp=2 --set parallel.zero=1)
same "gpt pp=2 -np 4 zero 1: device-memory paths vs host" "$a" "$b" --bitwise

det() { # det NAME TP: (1, 4) at zero 0 against (2, 2) and (4, 1) at zero 1
    local ref got
    ref=$(run "$1_1x4" "$2" "${DET[@]}" --set parallel.microbatches=4)
    for layout in "2 2" "4 1"; do
        set -- "$1" "$2" $layout
        got=$(run "$1_${3}x$4" $(($3 * $2)) "${DET[@]}" --set parallel.microbatches="$4" \
            --set parallel.zero=1)
        same "deterministic $1: dp $3 x mb $4 zero 1 vs dp 1 x mb 4 zero 0" "$got" "$ref" --bitwise
    done
}
DET=(--set parallel.deterministic=true --set parallel.pp=2)
det gpt_pp2 2
# the same through the device-memory paths: host copies, staged norms
staged() { # staged NAME NP MICROBATCHES ZERO: against gpt_pp2_1x4
    local got
    got=$(MPITRAIN_TEST_STAGED=1 run "$1" "$2" "${DET[@]}" --set parallel.microbatches="$3" \
        --set parallel.zero="$4")
    same "deterministic gpt_pp2, device-memory paths: dp $(($2 / 2)) x mb $3 zero $4 vs host" \
        "$got" "$TMP/gpt_pp2_1x4/mnist_mlp/0001" --bitwise
}
staged staged_z0 4 2 0
staged staged_z1 4 2 1
staged staged_z1_dp1 2 4 1
MODEL=("${MLP[@]}")
STEPS=20
DET=(--set parallel.deterministic=true --set optim.kind=adamw --set optim.grad_clip=0.5)
det mlp 1

# resume across layouts: stop dp 2 runs at step 10, go on under others
ref=$TMP/mlp_1x4/mnist_mlp/0001
stop() { # stop NAME ZERO: dp 2 x mb 2 to step 10; echoes its checkpoint
    local dir
    dir=$(run "$1" 2 "${DET[@]}" --set parallel.microbatches=2 --set parallel.zero="$2" \
        --set train.exit_after_steps=10)
    echo "$dir/checkpoints/step_00000010.h5"
}
resume() { # resume NAME CKPT NP MICROBATCHES ZERO
    local got
    got=$(run "$1" "$3" "${DET[@]}" --set parallel.microbatches="$4" --set parallel.zero="$5" \
        --set checkpoint.resume="$2")
    same "deterministic mlp: $(basename "$(dirname "$(dirname "$(dirname "$(dirname "$2")")")")") \
checkpoint (dp 2) resumed at dp $3 zero $5 vs uninterrupted" "$got" "$ref" --bitwise
}
c1=$(stop stop_z1 1)
resume resume_z1_dp1 "$c1" 1 4 0
resume resume_z1_dp4 "$c1" 4 1 1
c0=$(stop stop_z0 0)
resume resume_z0_dp4 "$c0" 4 1 1

bad_key() { # bad_key SETTING MESSAGE: one error line naming it, exit 2, at -np 2
    RC=0
    timeout 60 mpirun -np 2 "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" \
        --set data.path="$DATA" --set run.dir="$TMP/bad" --set "$1" >"$TMP/bad.log" 2>&1 || RC=$?
    local n
    n=$(grep -c "error: $2" "$TMP/bad.log" || true)
    if [ "$RC" = 2 ] && [ "$n" = 1 ]; then
        ok "$1: one error line, exit 2"
    else
        bad "$1: exit $RC, $n error lines"
        tail -5 "$TMP/bad.log" | sed 's/^/   | /'
    fi
}
bad_key parallel.zero=2 "parallel.zero = 2 is too large"
bad_key parallel.bucket_mb=0 "parallel.bucket_mb = 0 is out of range"
bad_key parallel.bucket_mb=-1 "parallel.bucket_mb = -1 is out of range"
exit $fail
