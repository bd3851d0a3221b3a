#!/usr/bin/env bash
# test_runtime_errors.sh - failures after start-up end the job cleanly.
#
# usage: test_runtime_errors.sh MPITRAIN REPO DATA.h5
#  - divergence (SGD at lr 1000): every rank exits 6 at the same step, one
#    error line naming the step; the run folder keeps the metrics lines
#    logged before the failure and run.json records the failure;
#  - an unwritable run.dir: exit 2 on every rank, one error line;
#  - a rank killed with SIGKILL mid-training: the job ends (mpirun exits
#    non-zero) instead of hanging, well inside the time limit.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BIN=$1 REPO=$2 DATA=$3
# As lib.sh's WRAP (each rank's output and status in $TMP/<case>/), and the
# rank's pid in pid.<rank>, for the case that kills one.
PIDWRAP='o=$1; shift; "$@" 2>"$o/err.${OMPI_COMM_WORLD_RANK:-0}" >"$o/out.${OMPI_COMM_WORLD_RANK:-0}" &
echo $! >"$o/pid.${OMPI_COMM_WORLD_RANK:-0}"; wait $!; echo $? >"$o/status.${OMPI_COMM_WORLD_RANK:-0}"'
statuses() { cat "$1"/status.* 2>/dev/null | tr '\n' ' ' | sed 's/ $//'; }
base=(train --config "$REPO/configs/mnist_mlp.ini" --set "data.path=$DATA")

# 1. divergence
o=$TMP/nan; mkdir -p "$o"
timeout 120 mpirun -np 2 bash -c "$PIDWRAP" _ "$o" "$BIN" "${base[@]}" --set "run.dir=$o/runs" \
    --set optim.kind=sgd --set optim.lr=1000 --set train.steps=200 --set run.log_every=1
[ "$(statuses "$o")" = "6 6" ] && ok "divergence: exit 6 on both ranks" \
    || bad "divergence: statuses [$(statuses "$o")], want [6 6]"
line=$(cat "$o"/err.* | grep '^mpitrain: error:')
echo "   $line"
[ "$(echo "$line" | grep -c .)" = 1 ] && grep -Eq '(NaN|infinite) at step [0-9]+' <<<"$line" \
    && ok "divergence: one error line naming the step" || bad "divergence: error lines: $line"
run=$(ls -d "$o"/runs/mnist_mlp/0001 2>/dev/null)
step=$(echo "$line" | sed -n 's/.* at step \([0-9]*\).*/\1/p')
n=$(wc -l <"$run/metrics.jsonl" 2>/dev/null || echo 0)
[ -n "$step" ] && [ "$n" = $((step - 1)) ] && ok "divergence: metrics keep the $n steps before the failure" \
    || bad "divergence: metrics.jsonl has $n lines, failure at step $step"
$PY -c 'import json,sys; r=json.load(open(sys.argv[1]))["result"]; assert r["status"]=="failed" and r["exit_code"]==6, r' \
    "$run/run.json" && ok "divergence: run.json records the failure" || bad "divergence: run.json lacks the failure"

# 2. unwritable run.dir
o=$TMP/dir; mkdir -p "$o"
timeout 120 mpirun -np 2 bash -c "$PIDWRAP" _ "$o" "$BIN" "${base[@]}" --set run.dir=/proc/mpitrain_cannot
line=$(cat "$o"/err.* | grep '^mpitrain: error:')
[ "$(statuses "$o")" = "2 2" ] && [ "$(echo "$line" | grep -c 'cannot create folder')" = 1 ] \
    && ok "unwritable run.dir: exit 2 on both ranks, one error line" \
    || bad "unwritable run.dir: statuses [$(statuses "$o")], error: $line"

# 3. a rank dies
o=$TMP/kill; mkdir -p "$o"
start=$SECONDS
timeout 120 mpirun -np 2 bash -c "$PIDWRAP" _ "$o" "$BIN" "${base[@]}" --set "run.dir=$o/runs" \
    --set train.steps=1000000 --set run.log_every=1000 &
launcher=$!
for _ in $(seq 100); do [ -s "$o/out.0" ] && [ -s "$o/pid.1" ] && break; sleep 0.1; done
sleep 1
kill -KILL "$(cat "$o/pid.1")"
wait $launcher; rc=$?
took=$((SECONDS - start))
[ $rc != 0 ] && [ $rc != 124 ] && [ $took -lt 60 ] && ok "killed rank: job ended (mpirun exit $rc) after ${took}s" \
    || bad "killed rank: mpirun exit $rc after ${took}s (124 = hang)"
pkill -KILL -f "$o/runs" 2>/dev/null
[ $fail = 0 ] && echo "runtime errors: all checks passed" || echo "runtime errors: FAILED"
exit $fail
