#!/usr/bin/env bash
# test_slurm.sh - mpitrain under a real (single-node) Slurm: sbatch runs a
# batch script whose `srun --mpi=pmix -n 2` trains; the run records the
# Slurm job id; a bad config under srun exits 2 on both tasks.
#
# usage: test_slurm.sh MPITRAIN REPO DATA.h5
# Starts its own slurmctld and slurmd (auth/none, state in a temp folder,
# ports 6817/6818 on localhost) and stops them on exit. The test set-up
# (scripts/install_deps.sh --tests) installs slurmctld, slurmd, slurm-client.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BIN=$(realpath "$1") REPO=$(realpath "$2") DATA=$(realpath "$3")
for c in slurmctld slurmd sbatch srun sinfo; do
    command -v $c >/dev/null || { echo "FAIL - $c not found: run scripts/install_deps.sh --tests"; exit 1; }
done
S=$TMP
mkdir -p "$S/state" "$S/spool" "$S/log"
# the CPUs this test may use: nproc alone would obey OMP_NUM_THREADS (1, lib.sh)
# and give the node 1 CPU, on which the 2-task job below never starts
CPUS=$(env -u OMP_NUM_THREADS nproc)
cat >"$S/slurm.conf" <<CONF
ClusterName=mtest
SlurmctldHost=localhost
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
MailProg=/bin/true
CONF
export SLURM_CONF=$S/slurm.conf
stop() { # TERM, wait up to 5 s for the daemons to go, then KILL; removes $S (= $TMP)
    local pids=() p
    for p in "$S/slurmd.pid" "$S/slurmctld.pid"; do [ -s "$p" ] && pids+=("$(cat "$p")"); done
    [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null
    for _ in $(seq 50); do kill -0 "${pids[@]}" 2>/dev/null || break; sleep 0.1; done
    [ ${#pids[@]} -gt 0 ] && kill -KILL "${pids[@]}" 2>/dev/null
    rm -rf "$S"
}
trap stop EXIT
slurmctld -f "$SLURM_CONF" && slurmd -f "$SLURM_CONF" -N localhost \
    || { echo "FAIL - cannot start slurmctld/slurmd"; cat "$S"/log/*; exit 1; }
for _ in $(seq 50); do out_has idle sinfo -h -o %t 2>/dev/null && break; sleep 0.2; done
out_has idle sinfo -h -o %t || { echo "FAIL - the Slurm node never became idle"; cat "$S"/log/*; exit 1; }
echo "ok - single-node Slurm up ($(sinfo -h -o '%P %D %t'))"
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
