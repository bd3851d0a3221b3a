#!/usr/bin/env bash
# test_watchdog.sh - parallel.timeout (docs/PARALLEL.md, "Watchdog"): a rank
# stalled by MPITRAIN_FAULT at step 5 ends the job with exit 5 within 20 s of
# the stall, with one `mpitrain: error:` line in the merged (2>&1) log naming
# rank 1 as the rank behind, the operation, the communicator and the step:
# at -np 2 (dp 2) and at -np 4 (tp 2 x pp 2, where the waits cascade: ranks
# wait on a rank that waits on the stalled one). Without the fault the same
# runs pass; long legitimate waits (rank 0 slow before the first step, a
# checkpoint write longer than the timeout) do not trip it.
# usage: test_watchdog.sh MPITRAIN REPO DATA.h5
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") REPO=$(realpath "$2") DATA=$(realpath "$3")
BASE=(--config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA" --set train.global_batch=64
    --set run.log_every=1 --set train.eval_every=0 --set parallel.timeout=10)
TP2PP2=(--set parallel.tp=2 --set parallel.pp=2 --set parallel.microbatches=2)
n=0

# run NP [VAR=VALUE...] -- ARGS...: mpirun -np NP mpitrain train, 2>&1 into
# $TMP/runN.log; sets RC, LOG, T (seconds in all) and T4 (seconds from the
# progress line of step 4, just before step 5 begins, to the end; -1: none)
run() {
    local np=$1 envs=()
    shift
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    n=$((n + 1))
    LOG=$TMP/run$n.log
    local t0 t4=""
    t0=$(date +%s.%N)
    env "${envs[@]}" timeout -k 5 90 mpirun -np "$np" "$MPITRAIN" train "${BASE[@]}" \
        --set run.dir="$TMP/runs$n" "$@" >"$LOG" 2>&1 </dev/null &
    local pid=$!
    while kill -0 $pid 2>/dev/null; do
        [ -z "$t4" ] && grep -q '^step  *4/' "$LOG" && t4=$(date +%s.%N)
        sleep 0.1
    done
    wait $pid
    RC=$?
    local t1
    t1=$(date +%s.%N)
    T=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
    T4=$([ -n "$t4" ] && awk -v a="$t4" -v b="$t1" 'BEGIN {printf "%.1f", b - a}' || echo -1)
}

# stall NAME NP COMM ARGS...: rank 1 stalls at step 5 for ever
stall() {
    local name=$1 np=$2 comm=$3
    shift 3
    run "$np" MPITRAIN_FAULT=stall:rank=1:step=5 -- --set train.steps=20 "$@"
    local errs line
    errs=$(grep -c 'mpitrain: error:' "$LOG")
    line=$(grep -m1 '^mpitrain: error: ' "$LOG")
    echo "   $name: exit $RC after ${T} s (${T4} s after step 4's line): $line"
    if [ "$RC" != 5 ]; then
        bad "$name: exit $RC, want 5"
    elif [ "$errs" != 1 ]; then
        bad "$name: $errs lines with 'mpitrain: error:', want 1"
    elif ! echo "$line" | grep -q 'at step 5 (training): rank 1 is behind'; then
        bad "$name: the error line does not name rank 1 as behind at step 5"
    elif ! echo "$line" | grep -Eq "(allreduce|recv|send|send/recv)( with rank [0-9]+)? over $comm"; then
        bad "$name: the error line names no operation over $comm"
    elif ! awk -v t="$T4" 'BEGIN {exit !(t >= 0 && t <= 20)}'; then
        bad "$name: the job took $T4 s after the stall, want at most 20"
    else
        ok "$name: exit 5, one error line naming rank 1, ${T4} s after the stall"
    fi
    [ "$fail" = 0 ] || tail -8 "$LOG" | sed 's/^/   | /'
}

# clean NAME NP ARGS...: no fault, the run must pass
clean() {
    local name=$1 np=$2
    shift 2
    run "$np" -- --set train.steps=8 "$@"
    if [ "$RC" = 0 ] && ! grep -q 'mpitrain: error:' "$LOG"; then
        ok "$name without the fault: passes (${T} s)"
    else
        bad "$name without the fault: exit $RC"
        tail -8 "$LOG" | sed 's/^/   | /'
    fi
}

stall "dp2 (-np 2)" 2 dp
stall "tp2.pp2 (-np 4)" 4 '(tp|pp)' "${TP2PP2[@]}"
clean "dp2 (-np 2)" 2
clean "tp2.pp2 (-np 4)" 4 "${TP2PP2[@]}"

# Long legitimate waits with parallel.timeout = 3: rank 0 stalls 8 s as the
# first step begins (the first step runs without the deadline: set-up's
# skew) and 8 s inside the checkpoint write of step 4 (no deadline during a
# checkpoint: checkpoint.timeout's); rank 1 waits for it both times.
run 2 MPITRAIN_FAULT=stall:rank=0:step=1:seconds=8,stall:rank=0:step=4:seconds=8:during=checkpoint \
    -- --set train.steps=6 --set parallel.timeout=3 --set checkpoint.every_steps=4
if [ "$RC" = 0 ] && ! grep -q 'mpitrain: error:' "$LOG" && grep -q 'checkpoint: step 4 ' "$LOG"; then
    ok "8 s waits for rank 0 before step 1 and in a checkpoint write, parallel.timeout = 3: passes (${T} s)"
else
    bad "a long legitimate wait tripped the watchdog: exit $RC"
    tail -8 "$LOG" | sed 's/^/   | /'
fi
exit $fail
