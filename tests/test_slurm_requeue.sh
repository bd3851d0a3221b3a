#!/usr/bin/env bash
# test_slurm_requeue.sh - scripts/slurm/mpitrain.sbatch under a real
# (single-node) Slurm: a tiny GPT at 2 tasks stopped mid-run, requeued, resumed.
#
# usage: test_slurm_requeue.sh MPITRAIN H5CMP REPO
#
#   A. train.time_limit = auto under an allocation of 10 minutes: the header
#      shows the job's time left, the run is not stopped (and is the
#      uninterrupted reference of B and C).
#   B. The warning: `scancel --batch --signal=USR1` (what --signal=B:USR1@T
#      sends) to the batch shell mid-run (rank 0 stalls 2 s at step 300, the
#      signal is sent at step 250); the template forwards it to srun:
#      a checkpoint, exit 75, a registry ABORT (reason "preempted", exit code
#      75), `scontrol requeue`; the requeued job (Restarts=1,
#      SLURM_RESTART_COUNT 1 in its log lines) resumes from that step, appends
#      to the same output file and registry, and ends bitwise equal to A.
#   C. train.time_limit = 8 s, with rank 0 stalling 8 s at step 500: the run
#      stops itself mid-run (ABORT reason "time_limit"), is requeued
#      (as often as it takes: each incarnation gets the same budget), resumes
#      and ends bitwise equal to A.
#   D. A plain `scancel` mid-run (SIGTERM to every task): a checkpoint, exit
#      75, and the template does not requeue a cancelled job.
# slurm.conf here sets AuthInfo=cred_expire=5 (the least Slurm 22.05 accepts)
# so a requeued job waits 6 s, not 121, and sched_interval=1 so it starts
# as soon as it may. B and C overlap: C runs while B waits to restart.
set -uo pipefail
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") H5CMP=$(realpath "$2") REPO=$(realpath "$3")
SBATCH=$REPO/scripts/slurm/mpitrain.sbatch
export MPITRAIN
[ -x "$H5CMP" ] || { bad "no h5cmp at $H5CMP"; exit 1; }
slurm_up "AuthInfo=cred_expire=5" "SchedulerParameters=sched_interval=1"
gpt_tokens
STEPS=1000
GPT=("${GPT_TINY[@]}" --set run.name=tiny --set train.steps="$STEPS" --set run.log_every=50
    --set train.eval_every=0 --set checkpoint.keep_last=0 --set run.threads=1)

# submit NAME SBATCH-OPTIONS... -- TRAIN-OPTIONS...: the template with the
# tiny GPT, run.dir $TMP/NAME, output $TMP/NAME.out, MPITRAIN_FAULT=$FAULT
# (sbatch passes the environment on, to every incarnation); the job id in
# JOB_NAME
submit() {
    local name=$1 opts=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    local id
    id=$(cd "$TMP" && MPITRAIN_FAULT=${FAULT:-} sbatch --parsable -J "$name" -o "$TMP/$name.out" --ntasks-per-node=2 \
        --time=10 "${opts[@]}" "$SBATCH" "$REPO/configs/mnist_mlp.ini" "$TMP/$name" \
        "${GPT[@]}" "$@") || { bad "sbatch of $name failed"; exit 1; }
    printf -v "JOB_$name" %s "$id"
}
job_field() { # JOBID FIELD: that field of `scontrol show job`
    scontrol -o show job "$1" 2>/dev/null | grep -o "\b$2=[^ ]*" | cut -d= -f2
}
# wait_job JOBID SECONDS: until the job has ended for good (not requeued)
wait_job() {
    local s
    for _ in $(seq $(($2 * 5))); do
        s=$(job_field "$1" JobState)
        case $s in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) return 0 ;; esac
        sleep 0.2
    done
    bad "job $1 still $s after $2 s"
    return 1
}
# wait_step NAME S: until run 0001 of job NAME has logged step S (S a
# multiple of run.log_every, 50), at most 60 s
wait_step() {
    local m n=$(($2 / 50 + 1))
    m=$(run_of "$1" 0001)/metrics.jsonl
    for _ in $(seq 600); do
        [ -f "$m" ] && [ "$(wc -l <"$m")" -ge $n ] && return 0
        sleep 0.1
    done
    bad "job $1 never logged step $2"
}
show_log() { grep -vE '^(step |  |\[|$)' "$1" | tail -"${2:-25}" | sed 's/^/   | /'; }
run_of() { echo "$TMP/$1/tiny/$2"; } # NAME NNNN
final_ck() { printf "%s/checkpoints/step_%08d.h5" "$(run_of "$1" "$2")" $STEPS; }
# registry_ends NAME REASON: the ABORT records of $TMP/NAME/registry.jsonl
# have result.reason REASON and exit code 75, the last record is COMPLETE,
# and the restart counts of the incarnations run 0, 1, ...
registry_ends() {
    $PY - "$TMP/$1/registry.jsonl" "$2" <<'EOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ends = [r for r in recs if r["eventType"] in ("ABORT", "COMPLETE", "FAIL")]
kinds = [r["eventType"] for r in ends]
assert kinds[-1] == "COMPLETE" and set(kinds[:-1]) == {"ABORT"}, kinds
for r in ends[:-1]:
    res = r["result"]
    assert res.get("reason") == sys.argv[2] and res["exit_code"] == 75, res
counts = [r["lineage"]["scheduler"]["restart_count"] for r in recs if r["eventType"] == "START"]
assert counts == list(range(len(ends))), counts
print(f"{len(ends) - 1} ABORT, then COMPLETE; restart counts {counts}")
EOF
}

# ---- A: time_limit = auto, not stopping; the reference ----
t0=$(date +%s)
submit A -- --set train.time_limit=auto
wait_job "$JOB_A" 90
t_a=$(($(date +%s) - t0))
if [ "$(job_field "$JOB_A" ExitCode)" = 0:0 ] && [ -f "$(final_ck A 0001)" ]; then
    ok "A: the template's job completed ($(grep -o 'time: .* ms/step' "$TMP/A.out"), $t_a s in all)"
else
    bad "A: job $JOB_A ended $(job_field "$JOB_A" JobState) $(job_field "$JOB_A" ExitCode)"
    show_log "$TMP/A.out"
    exit 1
fi
# the header line of train.time_limit = auto: the job's time left (10 minutes
# at most), from squeue
hdr=$(grep -E "^time limit: [0-9]+ s \(auto: the Slurm job's time left\)" "$TMP/A.out")
left=$(echo "$hdr" | grep -oE '^time limit: [0-9]+' | grep -oE '[0-9]+$')
if [ -n "$left" ] && [ "$left" -le 600 ] && [ "$left" -ge 480 ]; then
    ok "A: time_limit = auto read the allocation's time left: ${hdr%%;*}"
else
    bad "A: no header line 'time limit: N s (auto: ...)' with N in 480..600 (the job has --time=10)"
    show_log "$TMP/A.out"
fi
grep -q "stopped at step" "$TMP/A.out" && bad "A: time_limit = auto stopped a short run"

# ---- B: SIGUSR1 to the batch shell mid-run ----
# Rank 0 stalls 2 s at the start of step 300 (MPITRAIN_FAULT), so a signal
# sent once step 250 is logged arrives mid-run on a machine of any speed.
FAULT=stall:rank=0:step=300:seconds=2 submit B --
wait_step B 250
scancel --batch --signal=USR1 "$JOB_B"
t_sig=$(date +%s)
# ---- C: train.time_limit = 8 s, while B waits to be requeued ----
# Rank 0 stalls 8 s at the start of step 500: the budget is spent there, the
# first incarnation stops at step 500, the second has 500 steps left and 6 s
# (margin 1 s, the checkpoint estimate 1 s) for them. On a slow day
# another incarnation finishes; that is fine, each must resume bitwise.
LIMIT=8
FAULT=stall:rank=0:step=500:seconds=$LIMIT submit C -- --set train.time_limit=$LIMIT \
    --set train.time_margin=1
wait_job "$JOB_B" 90
t_b=$(($(date +%s) - t_sig))
wait_job "$JOB_C" 120

# B's log: the warning forwarded, a stop at step S, the requeue, the resume from S
S=$(grep -o 'stopped at step [0-9]* of [0-9]* (signal SIGUSR1)' "$TMP/B.out" | grep -o '[0-9]*' | head -1)
if grep -q "^mpitrain.sbatch: job $JOB_B restart 0: SIGUSR1: asking the step" "$TMP/B.out" && [ -n "$S" ] &&
    [ "$S" -lt $STEPS ] && [ -f "$(run_of B 0001)/checkpoints/step_$(printf %08d "$S").h5" ]; then
    ok "B: SIGUSR1 to the batch shell reached the ranks: stopped at step $S of $STEPS with a checkpoint"
else
    bad "B: no stop with a checkpoint after SIGUSR1 (job $JOB_B)"
    show_log "$TMP/B.out"
fi
if grep -q "^mpitrain: error: stopped by signal SIGUSR1 at step $S .*(exit status 75" "$TMP/B.out" &&
    grep -q "^mpitrain.sbatch: job $JOB_B restart 0: .* stopped after a checkpoint (exit 75): requeueing" "$TMP/B.out"; then
    ok "B: exit 75, the template requeued the job"
else
    bad "B: no exit 75 + requeue in the log"
fi
if [ "$(job_field "$JOB_B" Restarts)" = 1 ] && [ "$(job_field "$JOB_B" ExitCode)" = 0:0 ] &&
    grep -q "^mpitrain.sbatch: job $JOB_B restart 1: .* mpitrain completed" "$TMP/B.out"; then
    ok "B: requeued once (Restarts=1, SLURM_RESTART_COUNT 1 in the log), completed ${t_b} s after the signal"
else
    bad "B: Restarts=$(job_field "$JOB_B" Restarts) ExitCode=$(job_field "$JOB_B" ExitCode) $(job_field "$JOB_B" JobState)"
    show_log "$TMP/B.out"
fi
if grep -q "^resume: from $(run_of B 0001)/checkpoints/step_$(printf %08d "$S").h5 (step $S of run" "$TMP/B.out"; then
    ok "B: the requeued job resumed from step $S (same output file, appended)"
else
    bad "B: no 'resume: from ... (step $S' line"
fi
if out=$(registry_ends B preempted); then ok "B: registry: $out"; else
    bad "B: registry records"
    echo "$out" | tail -3 | sed 's/^/   | /'
fi
cmp_h5 "B: stopped + requeued + resumed ends bitwise equal to A" "$(final_ck A 0001)" \
    "$(final_ck B 0002)" --bitwise

# C's log: stopped by its own time limit at least once, requeued, completed
n=$(grep -c "stopped at step [0-9]* of $STEPS (train.time_limit = " "$TMP/C.out")
restarts=$(job_field "$JOB_C" Restarts)
if [ "$n" -ge 1 ] && [ "$restarts" = "$n" ] && [ "$(job_field "$JOB_C" ExitCode)" = 0:0 ]; then
    ok "C: train.time_limit = $LIMIT s stopped $n time(s) mid-run ($(grep -o 'stopped at step [0-9]*' "$TMP/C.out" | tr '\n' ' ')), requeued $restarts, completed"
else
    bad "C: $n time-limit stops, Restarts=$restarts, $(job_field "$JOB_C" JobState) $(job_field "$JOB_C" ExitCode)"
    show_log "$TMP/C.out"
fi
if out=$(registry_ends C time_limit); then ok "C: registry: $out"; else
    bad "C: registry records"
    echo "$out" | tail -3 | sed 's/^/   | /'
fi
cmp_h5 "C: stopped by its time limit + resumed ends bitwise equal to A" "$(final_ck A 0001)" \
    "$(final_ck C "$(printf %04d $((restarts + 1)))")" --bitwise

# ---- D: plain scancel mid-run: a checkpoint, and no requeue ----
FAULT=stall:rank=0:step=300:seconds=2 submit D --
wait_step D 250
scancel "$JOB_D"
for _ in $(seq 300); do
    grep -qE "^mpitrain.sbatch: job $JOB_D restart 0: .*requeueing" "$TMP/D.out" && break
    sleep 0.2
done
sleep 1 # a wrong requeue would show by now
S=$(grep -o 'stopped at step [0-9]* of [0-9]* (signal SIGTERM)' "$TMP/D.out" | grep -o '[0-9]*' | head -1)
if [ -n "$S" ] && [ -f "$(run_of D 0001)/checkpoints/step_$(printf %08d "$S").h5" ] &&
    grep -q "^mpitrain.sbatch: job $JOB_D restart 0: .* not requeueing" "$TMP/D.out" &&
    [ "$(job_field "$JOB_D" Restarts)" = 0 ] && [ "$(job_field "$JOB_D" JobState)" = CANCELLED ]; then
    ok "D: scancel: stopped at step $S with a checkpoint, job CANCELLED, not requeued"
else
    bad "D: scancel: Restarts=$(job_field "$JOB_D" Restarts) $(job_field "$JOB_D" JobState), stop step '$S'"
    show_log "$TMP/D.out"
fi

[ $fail = 0 ] && echo "slurm_requeue: all checks passed" || echo "slurm_requeue: FAILED"
exit $fail
