#!/usr/bin/env bash
# test_learning.sh - mpitrain learns MNIST for real, and leaves its files.
#
# usage: test_learning.sh MPITRAIN REPO DATA.h5 (smoke|demo) H5CMP
#   smoke: 150 steps as one process started without mpirun (a singleton
#          MPI world); test accuracy >= 85%; the run's files are complete;
#          the default thread count is the CPUs this process may use; and
#          20 steps at run.threads 1, 2 and 3 give bitwise the same model.h5
#          (3 threads on 2 cores oversubscribe: fine for the bits).
#   demo:  configs/mnist_mlp.ini unchanged (10 epochs) with mpirun -np 2 and
#          no thread settings: test accuracy >= 94% on the 2,000 held-out
#          digits; each rank runs nproc/2 threads.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$1 REPO=$2 DATA=$3 MODE=$4 H5CMP=$5
# the default threads per rank is checked: no thread count from outside
unset OMP_NUM_THREADS OPENBLAS_NUM_THREADS
check() { if eval "$2"; then echo "ok - $1"; else echo "FAIL - $1"; fail=1; fi; }

if [ "$MODE" = smoke ]; then
    need=85
    timeout 300 "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA" \
        --set run.dir="$TMP/runs" --set train.steps=150 --set run.log_every=50 >"$TMP/out" 2>&1 \
        || { cat "$TMP/out"; echo "FAIL - smoke run exited non-zero"; exit 1; }
    cpus=$($PY -c 'import os; print(len(os.sched_getaffinity(0)))')
    threads=$cpus
else
    need=94
    timeout 500 mpirun -np 2 "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" \
        --set data.path="$DATA" --set run.dir="$TMP/runs" >"$TMP/out" 2>&1 \
        || { cat "$TMP/out"; echo "FAIL - demo run exited non-zero"; exit 1; }
    threads=$(( $(nproc) / 2 )); [ $threads -ge 1 ] || threads=1
fi
cat "$TMP/out"
acc=$(sed -n 's/^final test accuracy: \([0-9.]*\)%.*/\1/p' "$TMP/out")
check "final accuracy line printed ($acc%)" '[ -n "$acc" ]'
check "test accuracy $acc% >= $need%" "$PY -c 'import sys; sys.exit(0 if float(\"${acc:-0}\") >= $need else 1)'"
check "default threads per rank = $threads" "grep -q '| $threads thread(s) per rank' $TMP/out"
run=$(sed -n 's/^run files: \([^ ]*\) .*/\1/p' "$TMP/out")
check "run folder printed and made ($run)" '[ -n "$run" ] && [ -d "$run" ]'
for f in config.ini run.json metrics.jsonl model.h5; do check "run folder has $f" "[ -s '$run/$f' ]"; done
check "metrics.jsonl: one valid record per logged step, losses finite and falling, steps rising" \
    "$PY - '$run' <<'PY'
import json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1] + '/metrics.jsonl')]
steps = [r['step'] for r in recs]
assert steps == sorted(steps) and len(set(steps)) == len(steps), steps
for r in recs:
    for k in ('run_id', 'step', 'epoch', 'samples', 'loss', 'lr', 'grad_norm', 'samples_per_s'):
        assert k in r, (k, r)
    assert math.isfinite(r['loss'])
assert recs[-1]['loss'] < recs[0]['loss'] * 0.5, (recs[0]['loss'], recs[-1]['loss'])
assert 'test_acc' in recs[-1]
print('   ', len(recs), 'records; loss', recs[0]['loss'], '->', recs[-1]['loss'])
PY"
check "run.json records result, data sha256 and layout" \
    "$PY - '$run' '$acc' <<'PY'
import json, sys
r = json.load(open(sys.argv[1] + '/run.json'))
assert abs(r['result']['test_accuracy'] * 100 - float(sys.argv[2])) < 0.01
assert len(r['data']['sha256']) == 64 and r['layout']['world'] >= 1
PY"
check "config.ini is the resolved config and parses again" \
    "'$MPITRAIN' train --help-config >/dev/null && grep -q '^global_batch = 64' '$run/config.ini'"
check "model.h5 holds the 6 tensors at full shape" \
    "out_has 'fc1.weight *Dataset {256, 784}' h5ls -r '$run/model.h5' && [ \$(h5ls -r '$run/model.h5' | grep -c Dataset) = 6 ]"
if [ "$MODE" = smoke ]; then
    # Images stored (N, 28, 28) feed the 784-input model: trailing dims flatten.
    $PY -c 'import h5py, sys
f = h5py.File(sys.argv[1]); g = h5py.File(sys.argv[2], "w")
for s in ("train", "test"):
    g[s + "/images"] = f[s + "/images"][...].reshape(-1, 28, 28); g[s + "/labels"] = f[s + "/labels"][...]' \
        "$DATA" "$TMP/mnist3d.h5"
    # The thread count changes no bits (backend_cpu.c's invariant).
    for t in 1 2 3; do
        "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA" \
            --set run.dir="$TMP/thr$t" --set train.steps=20 --set train.eval_every=0 \
            --set registry.enabled=false --set run.threads=$t >"$TMP/thr$t.log" 2>&1 ||
            { cat "$TMP/thr$t.log"; echo "FAIL - run at run.threads=$t exited non-zero"; fail=1; }
    done
    for t in 2 3; do
        check "model.h5 at run.threads $t = 1, bitwise" \
            "'$H5CMP' '$TMP/thr1/mnist_mlp/0001/model.h5' '$TMP/thr$t/mnist_mlp/0001/model.h5' --bitwise >'$TMP/cmp$t' || { cat '$TMP/cmp$t'; false; }"
    done
    check "(N, 28, 28) images train a 784-input model" \
        "'$MPITRAIN' train --config '$REPO/configs/mnist_mlp.ini' --set data.path='$TMP/mnist3d.h5' \
         --set run.dir='$TMP/runs3d' --set train.steps=20 >/dev/null 2>&1"
fi
[ $fail = 0 ] && echo "learning ($MODE): all checks passed" || echo "learning ($MODE): FAILED"
exit $fail
