#!/usr/bin/env bash
# test_error_lines.sh - every way a run ends in error, read the way Slurm
# logs it: stdout and stderr of mpirun -np 2 in one file (2>&1). Each case
# must exit with its documented status and leave a line that STARTS with
# `mpitrain: error:` (no message glued to the end of another line, no
# unterminated line before it).
# usage: test_error_lines.sh MPITRAIN REPO DATA.h5
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") REPO=$(realpath "$2") DATA=$(realpath "$3")
BASE=(--config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA" --set train.global_batch=64
    --set train.steps=6 --set run.log_every=1 --set train.eval_every=0)
n=0

# case NAME STATUS [VAR=VALUE...] -- ARGS...: mpirun -np 2 mpitrain train ARGS, 2>&1 into one log
case_() {
    local name=$1 want=$2 envs=()
    shift 2
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    n=$((n + 1))
    local log=$TMP/case$n.log t0=$SECONDS
    env "${envs[@]}" timeout -k 5 60 mpirun -np 2 "$MPITRAIN" train "${BASE[@]}" \
        --set run.dir="$TMP/runs$n" "$@" >"$log" 2>&1 </dev/null
    local rc=$? glued t=$((SECONDS - t0))
    glued=$(grep -c '.mpitrain: error:' "$log")
    if [ "$rc" = "$want" ] && grep -q '^mpitrain: error: ' "$log" && [ "$glued" = 0 ]; then
        ok "$name (${t} s): exit $rc, $(grep -m1 '^mpitrain: error: ' "$log" | cut -c1-100)"
    else
        bad "$name: exit $rc (want $want), $glued error text(s) inside another line"
        tail -6 "$log" | sed 's/^/   | /'
    fi
}

case_ "unknown config key" 2 -- --set train.nope=1
case_ "missing data file" 3 -- --set data.path="$TMP/none.h5"
case_ "bad MPITRAIN_FAULT" 2 MPITRAIN_FAULT=kill:step=2 --
case_ "train.time_limit = auto without Slurm" 2 -u SLURM_JOB_ID -- --set train.time_limit=auto
case_ "registry path is a folder" 7 -- --set registry.path="$TMP"
# a checkpoint to resume from, then a resume the config refuses: the
# "resume: changed since the checkpoint" notice on stdout comes just before
must_train() { timeout -k 5 60 mpirun -np 2 "$MPITRAIN" train "${BASE[@]}" "$@" >"$TMP/base.log" 2>&1; }
must_train --set run.dir="$TMP/base" || bad "the run to resume from failed"
CK=$TMP/base/mnist_mlp/0001/checkpoints/step_00000006.h5
case_ "resume refused (another model, changed keys listed first)" 4 -- \
    --set checkpoint.resume="$CK" --set model.layers=784,64,10 --set train.steps=8 --set optim.lr=0.01
head -c 100000 "$CK" >"$TMP/cut.h5"
case_ "resume from a truncated checkpoint" 4 -- --set checkpoint.resume="$TMP/cut.h5"
case_ "NaN loss, train.nan_policy = stop" 6 MPITRAIN_FAULT=nan:step=2 --
case_ "NaN loss past train.nan_max_skips" 6 MPITRAIN_FAULT=nan:step=2,nan:step=3 -- \
    --set train.nan_policy=skip --set train.nan_max_skips=1
case_ "stop signal (USR1 on rank 1)" 75 MPITRAIN_FAULT=signal:rank=1:step=3:sig=USR1 --
case_ "train.time_limit reached" 75 -- --set train.time_limit=1 --set train.time_margin=1
case_ "second SIGTERM during the checkpoint write" 143 \
    MPITRAIN_FAULT=signal:rank=0:step=2:sig=TERM,signal:rank=0:step=2:sig=TERM:during=checkpoint -- \
    --set checkpoint.every_steps=2

# A rank killed outright (MPITRAIN_FAULT kill) prints nothing itself: the
# launcher ends the job and says which rank died (a stalled rank is named by
# the watchdog: tests/test_watchdog.sh); no hang, and the checkpoint before it stays.
log=$TMP/kill.log
MPITRAIN_FAULT=kill:rank=1:step=4 timeout -k 5 60 mpirun -np 2 "$MPITRAIN" train "${BASE[@]}" \
    --set run.dir="$TMP/kill" --set checkpoint.every_steps=2 >"$log" 2>&1 </dev/null
rc=$?
if [ $rc != 0 ] && [ $rc != 124 ] && grep -q 'exited on signal 9' "$log" &&
    "$MPITRAIN" ckpt verify "$TMP/kill/mnist_mlp/0001/checkpoints/step_00000002.h5" >/dev/null 2>&1; then
    ok "rank 1 killed at step 4: mpirun exits $rc and names it; the checkpoint of step 2 verifies"
else
    bad "rank 1 killed at step 4: exit $rc"
    tail -6 "$log" | sed 's/^/   | /'
fi
exit $fail
