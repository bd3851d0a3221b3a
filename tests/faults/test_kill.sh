#!/usr/bin/env bash
# test_kill.sh - a rank killed (SIGKILL, MPITRAIN_FAULT's kill) at points of
# a step (docs/FAULTS.md): as the step begins, in the backward, inside the
# gradient's all-reduce (parallel.bucket_mb = 0.25: several buckets, the
# rest in flight), inside the collective write of the checkpoint of step 8
# (after its first tensor), and after that write, before the rename. Which
# rank, and for the training points which step (5..11), come from a seed
# printed first (pinned: 22): MT_FAULT_SEED=N makes other choices.
#
# mpirun --enable-recovery lets the surviving rank run on, so its own end
# shows: one error line and exit 5 (the parallel.timeout watchdog naming the
# dead rank as the rank behind) or 4 (the checkpoint.timeout watchdog); the
# killed rank's status is 137 (128 + SIGKILL). Plain mpirun instead ends the
# job when the rank dies: mpirun's own status is 137 and its line names the
# rank and the signal (one more case, at a point of the seed's choosing).
# Each case: nothing lost, and resume=auto ends bitwise equal to an
# uninterrupted run.
#
# usage: test_kill.sh MPITRAIN H5CMP LIBIOFAULT REPO DATA.h5
set -uo pipefail
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=tests/faults/cases.sh
. "$(dirname "$0")/cases.sh"
# a pinned seed, so that ctest runs the same choices each time: 22 kills
# rank 1 in checkpoint_data and rank 0 in checkpoint (where a later rank
# reports; kill_checkpoint_data_np4 below kills rank 0 in checkpoint_data),
# and both ranks among the training points; MT_FAULT_SEED=N picks others
SEED=${MT_FAULT_SEED:-22}
echo "seed $SEED (MT_FAULT_SEED=$SEED $0 ... repeats these choices)"
RANDOM=$SEED
BUCKETS=(--set parallel.bucket_mb=0.25 --set parallel.timeout=3)
POINTS=(begin backward gradsync checkpoint_data checkpoint)

# spec_of POINT: sets RANK, STEP and SPEC, the MPITRAIN_FAULT of a kill there
spec_of() {
    RANK=$((RANDOM % 2))
    case $1 in
        checkpoint*) STEP=8 ;;
        *) STEP=$((5 + RANDOM % 7)) ;;
    esac
    SPEC=kill:rank=$RANK:step=$STEP
    [ "$1" = begin ] || SPEC+=:during=$1
}

MPIRUN_OPTS=(--enable-recovery)
for p in "${POINTS[@]}"; do
    spec_of "$p"
    c=kill_$p
    echo "# $c: MPITRAIN_FAULT=$SPEC"
    fault_run $c MPITRAIN_FAULT="$SPEC" -- "${BUCKETS[@]}"
    if [ "$p" = checkpoint ] || [ "$p" = checkpoint_data ]; then
        [ $RANK = 0 ] && want="137 4"
        [ $RANK = 1 ] && want="4 137"
        gone=""
        [ $RANK = 0 ] && gone=" \(rank 0 is gone; this is a later rank\)"
        ended $c "$want" "^mpitrain: error: the checkpoint write of step 8 did not finish within 9 s \(checkpoint\.timeout\).*intact$gone$"
        intact $c step_00000004.h5
    else
        [ $RANK = 0 ] && want="137 5"
        [ $RANK = 1 ] && want="5 137"
        ended $c "$want" "^mpitrain: error: communication timeout at step $STEP \(training\): rank $RANK is behind"
        # step 4's checkpoint is published (latest, .sha256, registry) once
        # its SHA-256 is taken in the background: a kill before that leaves
        # it without `latest`, and resume=auto finds it all the same
        intact $c "*"
    fi
    resumed $c "*" "${BUCKETS[@]}"
done

# -np 4, rank 0 killed inside the collective write: ranks 1-3 run on rank 0's
# host, and only the lowest of them (rank 1) reports: one line in all
c=kill_checkpoint_data_np4
echo "# $c: MPITRAIN_FAULT=kill:rank=0:step=8:during=checkpoint_data, -np 4"
NP=4 fault_run $c MPITRAIN_FAULT=kill:rank=0:step=8:during=checkpoint_data --
NP=4 ended $c "137 4 4 4" "^mpitrain: error: the checkpoint write of step 8 did not finish within 9 s \(checkpoint\.timeout\).* \(rank 0 is gone; this is a later rank\)$"
grep -q '^mpitrain: error:' "$(case_dir $c)/o/err.1" && ok "$c: rank 1 reports" || bad "$c: rank 1 does not report"
intact $c step_00000004.h5

# a full disk on rank 1 inside the collective write while rank 0 stalls
# there 12 s (checkpoint.timeout 60): rank 1 reports after its grace (10 s)
# and exits 4; rank 0, which the launcher lets run on, finds the temporary
# gone and exits 4 without a second line, long before its 60 s
c=ckpt_full_recovery
echo "# $c: rank 1's disk full, rank 0 stalls 12 s in the write"
fault_run $c "${SHIM[@]}" MT_IOFAULT=enospc:op=write:path=step_00000008.h5.tmp:after=100000:rank=1 \
    MPITRAIN_FAULT=stall:rank=0:step=8:seconds=12:during=checkpoint_data -- --set checkpoint.timeout=60
ended $c "4 4" "^mpitrain: error: cannot write checkpoint [^ ]*/step_00000008\.h5 \(tensor [^ ]*\)(: No space left on the device)? \[rank 1\]$"
fired $c "rank 1: enospc from pwrite on"
intact $c step_00000004.h5
resumed $c 4

# plain mpirun: the job ends with the rank; mpirun's status and line
MPIRUN_OPTS=()
p=${POINTS[$((RANDOM % ${#POINTS[@]}))]}
spec_of "$p"
c=kill_plain_$p
echo "# $c: MPITRAIN_FAULT=$SPEC (plain mpirun)"
PLAIN=1 fault_run $c MPITRAIN_FAULT="$SPEC" -- "${BUCKETS[@]}"
log=$(case_dir $c)/o/launcher
if [ "$(cat "$(case_dir $c)/o/mpirun.status")" = 137 ] &&
    grep -q "^mpirun noticed that process rank $RANK with PID .* exited on signal 9 (Killed)\.$" "$log" &&
    ! grep -q '^mpitrain: error:' "$log"; then
    ok "$c: mpirun exits 137 and says: $(grep -m1 '^mpirun noticed' "$log")"
else
    bad "$c: mpirun exited $(cat "$(case_dir $c)/o/mpirun.status"):"
    grep -v '^step ' "$log" | tail -8 | sed 's/^/   | /'
fi
intact $c "*"
resumed $c "*" "${BUCKETS[@]}"

echo "the whole test: $(($(date +%s) - T_START)) s"
[ $fail = 0 ] && echo "all kill fault checks passed (seed $SEED)"
exit $fail
