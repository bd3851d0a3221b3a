#!/usr/bin/env bash
# test_slurm.sh - mpitrain under a real (single-node) Slurm: sbatch runs a
# batch script whose `srun --mpi=pmix -n 2` trains; the run records the
# Slurm job id; a bad config under srun exits 2 on both tasks.
#
# usage: test_slurm.sh MPITRAIN REPO DATA.h5
# Starts its own slurmctld and slurmd (tests/lib.sh, slurm_up: auth/none, state
# in a temp folder, ports 6817/6818 on localhost) and stops them on exit. The
# test set-up (scripts/install_deps.sh --tests) installs slurmctld, slurmd,
# slurm-client.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BIN=$(realpath "$1") REPO=$(realpath "$2") DATA=$(realpath "$3")
S=$TMP
slurm_up
cat >"$S/job.sh" <<JOB
#!/bin/bash
#SBATCH -n 2
#SBATCH -o $S/job.out
srun --mpi=pmix "$BIN" train --config "$REPO/configs/mnist_mlp.ini" --set "data.path=$DATA" \
    --set "run.dir=$S/runs" --set train.steps=200 --set run.log_every=100
JOB
(cd "$S" && timeout 300 sbatch --wait "$S/job.sh" >/dev/null); rc=$?
cat "$S/job.out" 2>/dev/null | grep -E 'layout|final|run files|error' | sed 's/^/   /'
[ $rc = 0 ] && grep -q '^final test accuracy' "$S/job.out" && grep -q 'world 2 = dp 2' "$S/job.out" \
    && ok=1 || ok=0
[ $ok = 1 ] && echo "ok - sbatch + srun -n 2 trains (2 ranks)" || { echo "FAIL - sbatch job exited $rc"; fail=1; }
$PY - "$S/runs/mnist_mlp/0001/run.json" <<'PY' && echo "ok - run.json records the Slurm job id" || { echo "FAIL - run.json lacks scheduler.SLURM_JOB_ID"; fail=1; }
import json, sys
r = json.load(open(sys.argv[1]))
assert r["scheduler"]["SLURM_JOB_ID"].isdigit(), r.get("scheduler")
PY
$PY - "$S/runs/registry.jsonl" <<'PY' && echo "ok - registry records carry the Slurm job (id, restart count) and the host" || { echo "FAIL - registry records lack the Slurm context"; fail=1; }
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert [r["eventType"] for r in recs] == ["START", "CHECKPOINT", "COMPLETE"], [r["eventType"] for r in recs]
for r in recs:
    s = r["lineage"]["scheduler"]
    assert s["name"] == "slurm" and s["job_id"].isdigit() and s["restart_count"] == 0, s
    assert r["lineage"]["environment"]["hosts"], r["lineage"]["environment"]
PY
out=$(cd "$S" && timeout 120 srun --mpi=pmix -n 2 "$BIN" train --config "$REPO/configs/mnist_mlp.ini" \
    --set "data.path=$DATA" --set train.global_batch=63 2>&1); rc=$?
n=$(echo "$out" | grep -c '^mpitrain: error:.*not divisible')
[ $rc = 2 ] && [ "$n" = 1 ] && echo "ok - bad config under srun: exit 2, one error line" \
    || { echo "FAIL - bad config under srun: exit $rc, $n error lines: $out"; fail=1; }
[ "$n" = 1 ] && grep -q 'tasks 0-1: Exited with exit code 2' <<<"$out" && echo "ok - both tasks exited 2" \
    || { echo "FAIL - srun did not report both tasks exiting 2"; fail=1; }
[ $fail = 0 ] && echo "slurm: all checks passed" || echo "slurm: FAILED"
exit $fail
