#!/usr/bin/env bash
# test_signals.sh - stopping a run by signal, every way one arrives
# (docs/SIGNALS.md), on a small MNIST MLP at -np 2.
#
# usage: test_signals.sh MPITRAIN H5CMP REPO DATA.h5
#
# One uninterrupted reference run of N steps; then each case starts the same
# run, signals it, checks how it ended, resumes it with checkpoint.resume=auto
# and compares the final checkpoint with the reference's bitwise (h5cmp
# --bitwise: every tensor, optimizer state included):
#   usr2_rank       SIGUSR2 to rank 1 only: every rank stops after the step
#                   with a checkpoint; exit 75
#   int_ranks       SIGINT to both ranks (a first one): the same
#   term_mpirun_T3  SIGTERM to mpirun with OMPI_MCA_odls_base_sigkill_timeout=3:
#                   mpirun sends the ranks SIGCONT now and SIGTERM 3 s later;
#                   they stop with a checkpoint (75) but mpirun exits 1
#   term_mpirun     the same with the default timeout (1 s; a SIGKILL follows
#                   1 s after the SIGTERM): mpirun exits 1
#   term_launcher   SIGTERM to scripts/mpitrain-local --cpu 2: it sends
#                   mpirun SIGUSR1; exit 75
#   during_ckpt     MPITRAIN_FAULT raises SIGTERM on rank 1 inside the
#                   checkpoint write of step 20: that write completes and the
#                   run stops with it (latest = step 20); exit 75
#   second_fault    two faults: SIGTERM at step 13, and again inside the
#                   checkpoint write that stop begins: rank 0 exits 143 at
#                   once; step 10's checkpoint stays the newest and verifies
#   second_launcher SIGTERM twice to the launcher while rank 0 stalls (the
#                   stall fault): the second reaches the ranks as SIGTERM;
#                   exit 143
# and, without running anything, the launcher's exit 2 without a GPU and
# its --dry-run lines for --cpu 2 and three GPUs.
# The cases whose signal must outlast a wait (mpirun's timeout, the second
# signal) hold rank 0 in a stall fault at a known step, so the test does not
# depend on the machine's speed. Every stopped or failed run's output
# (stdout and stderr together) must hold a line starting "mpitrain: error:".
# For each case the test prints the delay from the signal to the exit of
# what was started (wall seconds; steps run after the signal); no timing is
# asserted. The table is in docs/SIGNALS.md.
set -uo pipefail
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") H5CMP=$(realpath "$2") REPO=$(realpath "$3") DATA=$(realpath "$4")
LAUNCHER=$REPO/scripts/mpitrain-local
N=40
FINAL=step_$(printf %08d $N).h5
TRAIN=(train --config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA"
    --set train.global_batch=500 --set train.steps="$N" --set run.log_every=1
    --set train.eval_every=0 --set optim.schedule=cosine --set optim.warmup_steps=3
    --set optim.lr=0.003 --set checkpoint.every_steps=10 --set checkpoint.keep_last=0)
TABLE=()
T0=$(date +%s%N) AT=0 STOP="" STOP_RC=""

run_of() { echo "$1/mnist_mlp/$2"; } # RUN_DIR NNNN
steps_done() { # steps_done CASE: lines of the first run's metrics so far
    local m
    m=$(run_of "$TMP/$1" 0001)/metrics.jsonl
    if [ -f "$m" ]; then wc -l <"$m"; else echo 0; fi
}
await_steps() { # await_steps CASE K: until K steps are logged (20 s at most)
    for _ in $(seq 1000); do
        [ "$(steps_done "$1")" -ge "$2" ] && return 0
        kill -0 "$BG" 2>/dev/null || break
        sleep 0.02
    done
    bad "$1: step $2 never came"
    tail -5 "$TMP/$1.log" | sed 's/^/   | /'
    return 1
}
child() { pgrep -P "$1" | head -1; } # the process a wrapper started
rank_pid() {                         # rank_pid MPIRUN_PID R: the rank's process
    local p
    for p in $(pgrep -P "$1"); do
        tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && {
            echo "$p"
            return
        }
    done
}

# start CASE [ENV=VALUE...] -- CMD...: CMD in the background (timeout 60 s),
# output in $TMP/CASE.log; BG is the timeout's pid
start() {
    local name=$1 envs=()
    shift
    while [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    env ${envs[@]+"${envs[@]}"} timeout -k 5 60 "$@" >"$TMP/$name.log" 2>&1 &
    BG=$!
}
# mark: the signal is being sent now (time, steps done)
mark() { T0=$(date +%s%N) AT=$(steps_done "$1"); }
# finish CASE: waits; RC, and the delay DT (seconds) since mark
finish() {
    wait "$BG"
    RC=$?
    STOP_RC=$RC
    DT=$(awk -v a="$T0" -v b="$(date +%s%N)" 'BEGIN {printf "%.2f", (b - a) / 1e9}')
}
# error_line CASE PATTERN: the output (2>&1) holds "mpitrain: error: PATTERN"
# starting a line (stdout is line-buffered: a progress line is written whole,
# so mpirun's relay cannot cut one and glue the error line to it).
error_line() {
    local log=$TMP/$1.log
    if grep -aq "^mpitrain: error: $2" "$log"; then
        ok "$1: error line: $(grep -a -m1 "^mpitrain: error: $2" "$log" | cut -c1-110)..."
    else
        bad "$1: no line 'mpitrain: error: $2' in the output"
        grep -av '^step ' "$log" | tail -12 | sed 's/^/   | /'
    fi
}
# stopped CASE WANT-RC SIGNAME [STEP]: the run ended with WANT-RC after a clean
# stop by SIGNAME (at STEP when given) with a checkpoint that verifies; the
# delay row for the table; STOP is the step it stopped at
stopped() {
    local name=$1 want=$2 sig=$3 step=${4:-[0-9]*} ck dir
    STOP=$(grep -ao "stopped at step [0-9]* of $N (signal $sig)" "$TMP/$name.log" | grep -o '[0-9]*' | head -1)
    [ "$RC" = "$want" ] && ok "$name: exit status $RC" || bad "$name: exit status $RC, not $want"
    if [ -n "$STOP" ] && grep -aq "^stopped at step $step of $N (signal $sig); checkpoint" "$TMP/$name.log"; then
        ok "$name: stopped at step $STOP (signal $sig)"
    else
        bad "$name: no 'stopped at step $step of $N (signal $sig)' line"
        grep -av '^step ' "$TMP/$name.log" | tail -12 | sed 's/^/   | /'
        return 1
    fi
    error_line "$name" "stopped by signal $sig at step $STOP after writing checkpoint"
    dir=$(run_of "$TMP/$name" 0001)
    ck=$dir/checkpoints/step_$(printf %08d "$STOP").h5
    if "$MPITRAIN" ckpt verify "$ck" >"$TMP/v.txt" 2>&1 && [ "$(cat "$dir/checkpoints/latest")" = "${ck##*/}" ]; then
        ok "$name: latest = ${ck##*/}, which verifies"
    else
        bad "$name: checkpoint ${ck##*/}: $(cat "$TMP/v.txt"), latest $(cat "$dir/checkpoints/latest")"
    fi
    $PY - "$dir/run.json" "$TMP/$name/registry.jsonl" "$sig" <<'PY' && ok "$name: run.json and registry ABORT say preempted, 75" || bad "$name: run.json / registry"
import json, sys
r = json.load(open(sys.argv[1]))["result"]
assert r["status"] == "stopped" and r["reason"] == "preempted" and r["by"] == "signal " + sys.argv[3], r
ends = [json.loads(l) for l in open(sys.argv[2])]
ends = [e for e in ends if e["eventType"] in ("ABORT", "COMPLETE", "FAIL")]
assert len(ends) == 1 and ends[0]["eventType"] == "ABORT" and ends[0]["result"]["exit_code"] == 75, ends
PY
}
# resumed CASE: resume=auto to the end, bitwise equal to the reference
resumed() {
    local name=$1 log=$TMP/$1.resume.log
    timeout -k 5 60 mpirun -np 2 "$MPITRAIN" "${TRAIN[@]}" --set run.dir="$TMP/$name" \
        --set checkpoint.resume=auto >"$log" 2>&1
    RC=$?
    [ "$RC" = 0 ] || { bad "$name: resume exited $RC"; tail -5 "$log" | sed 's/^/   | /'; return; }
    grep -q "^resume: from .*step_$(printf %08d "${2:-$STOP}").h5" "$log" ||
        bad "$name: did not resume from step ${2:-$STOP}: $(grep -a '^resume' "$log")"
    cmp_h5 "$name: resumed to step $N, bitwise equal to the uninterrupted run" \
        "$(run_of "$TMP/ref" 0001)/checkpoints/$FINAL" "$(run_of "$TMP/$name" 0002)/checkpoints/$FINAL" --bitwise
}
# row CASE TARGET: one line of the delay table
row() { TABLE+=("$(printf '%-16s %-40s %4s %6s s %5s' "$1" "$2" "$STOP_RC" "$DT" "$((${STOP:-$AT} - AT))")"); }

mpirun_cmd=(mpirun -np 2 "$MPITRAIN" "${TRAIN[@]}")
t_all=$(date +%s)

# ---- the reference
timeout -k 5 60 mpirun -np 2 "$MPITRAIN" "${TRAIN[@]}" --set run.dir="$TMP/ref" >"$TMP/ref.log" 2>&1
RC=$?
must_succeed "reference run" "$TMP/ref.log"

# ---- usr2_rank: SIGUSR2 to rank 1 only
c=usr2_rank
start $c -- "${mpirun_cmd[@]}" --set run.dir="$TMP/$c"
if await_steps $c 5; then
    mark $c
    kill -USR2 "$(rank_pid "$(child $BG)" 1)"
fi
finish
stopped $c 75 SIGUSR2 && resumed $c
row $c "SIGUSR2 to rank 1"

# ---- int_ranks: SIGINT to both ranks
c=int_ranks
start $c -- "${mpirun_cmd[@]}" --set run.dir="$TMP/$c"
if await_steps $c 5; then
    mark $c
    kill -INT $(pgrep -P "$(child $BG)")
fi
finish
stopped $c 75 SIGINT && resumed $c
row $c "SIGINT to both ranks"

# ---- term_mpirun_T3 / term_mpirun: SIGTERM to mpirun, which passes it on T s
# later and sends SIGKILL T s after that. Rank 0 stalls at step 8 (4 s for
# T = 3, 1.5 s for T = 1) so that the run is still there when the SIGTERM
# comes (T s after the signal, which follows the stall's start by less than
# the 0.05 s polling) and has stopped before the SIGKILL (2T s).
for T in 3 1; do
    c=term_mpirun$([ $T = 3 ] && echo _T3)
    # the stall ends after the SIGTERM and before the SIGKILL (T s later)
    envs=(MPITRAIN_FAULT=stall:rank=0:step=8:seconds=1.5)
    [ $T = 3 ] && envs=(MPITRAIN_FAULT=stall:rank=0:step=8:seconds=4 OMPI_MCA_odls_base_sigkill_timeout=3)
    start $c "${envs[@]}" -- "${mpirun_cmd[@]}" --set run.dir="$TMP/$c"
    if await_steps $c 7; then
        mark $c
        kill -TERM "$(child $BG)"
    fi
    finish
    # the ranks stop cleanly (75), mpirun reports its own status: 1
    if [ $T = 3 ]; then
        stopped $c 1 SIGTERM && resumed $c
    else
        # With T = 1 the ranks have the half second between the stall's end
        # and the SIGKILL (2T) to finish the step and write the checkpoint:
        # whether they make it depends on the machine's load (docs/SIGNALS.md
        # says so), so only what is certain is checked: mpirun's own status,
        # and that whatever `latest` names verifies.
        [ "$RC" = 1 ] && ok "$c: exit status 1 (mpirun's own)" || bad "$c: exit status $RC, not 1"
        dir=$(run_of "$TMP/$c" 0001)
        if [ -s "$dir/checkpoints/latest" ]; then
            ck=$dir/checkpoints/$(cat "$dir/checkpoints/latest")
            "$MPITRAIN" ckpt verify "$ck" >/dev/null 2>&1 && ok "$c: latest (${ck##*/}) verifies" ||
                bad "$c: latest (${ck##*/}) does not verify"
        else
            ok "$c: no checkpoint before the SIGKILL this time (the stop did not fit in 2T)"
        fi
        STOP=$(grep -ao "stopped at step [0-9]* of $N" "$TMP/$c.log" | grep -o '[0-9]*' | head -1)
    fi
    row $c "SIGTERM to mpirun (timeout $T s)"
done

# ---- term_launcher: SIGTERM to scripts/mpitrain-local
c=term_launcher
start $c -- "$LAUNCHER" --cpu 2 --bin "$MPITRAIN" "${TRAIN[@]}" --set run.dir="$TMP/$c"
if await_steps $c 5; then
    mark $c
    kill -TERM "$(child $BG)"
fi
finish
stopped $c 75 SIGUSR1 && resumed $c
grep -q "^mpitrain-local: SIGTERM: asking every rank to stop" "$TMP/$c.log" &&
    ok "$c: the launcher said what it did" || bad "$c: no launcher line"
grep -q "^device = cpu" "$TMP/$c.log" && ok "$c: --cpu 2 trained with train.device = cpu" ||
    bad "$c: train.device is not cpu"
row $c "SIGTERM to mpitrain-local --cpu 2"

# ---- during_ckpt: SIGTERM on rank 1 inside the checkpoint write of step 20
c=during_ckpt
start $c MPITRAIN_FAULT=signal:rank=1:step=20:sig=TERM:during=checkpoint -- \
    "${mpirun_cmd[@]}" --set run.dir="$TMP/$c"
await_steps $c 19 && mark $c
finish
stopped $c 75 SIGTERM 20 && resumed $c
d=$(run_of "$TMP/$c" 0001)/checkpoints
[ ! -e "$d/step_00000021.h5" ] && ! compgen -G "$d/*.tmp.*" >/dev/null &&
    ok "$c: no checkpoint after step 20, no temporary left" || bad "$c: files $(ls "$d" | tr '\n' ' ')"
AT=20 row $c "SIGTERM in a checkpoint write (fault)"

# ---- second_fault: SIGTERM at step 13, and again inside the checkpoint write
# of the stop it causes
c=second_fault
start $c MPITRAIN_FAULT=signal:rank=0:step=13:sig=TERM,signal:rank=0:step=13:sig=TERM:during=checkpoint \
    -- "${mpirun_cmd[@]}" --set run.dir="$TMP/$c"
await_steps $c 12 && mark $c
finish
STOP=""
second_signal() { # CASE RANK: exit 143, the line, step 10's checkpoint kept; resume
    local name=$1 d
    d=$(run_of "$TMP/$name" 0001)/checkpoints
    [ "$RC" = 143 ] && ok "$name: exit status 143" || bad "$name: exit status $RC, not 143"
    grep -aA1 "Process name: \[\[[0-9]*,1\],$2\]" "$TMP/$name.log" | grep -q "Exit code: *143" &&
        ok "$name: mpirun names rank $2 as the first to exit, with 143" ||
        bad "$name: mpirun does not name rank $2 with exit code 143"
    error_line "$name" "second SIGTERM: exiting at once without a checkpoint"
    if [ "$(cat "$d/latest")" = step_00000010.h5 ] && [ ! -e "$d/step_00000013.h5" ] &&
        "$MPITRAIN" ckpt verify "$d/step_00000010.h5" >"$TMP/v.txt" 2>&1; then
        ok "$name: latest is still step_00000010.h5, which verifies; no step 13"
    else
        bad "$name: checkpoints: $(ls "$d" | tr '\n' ' '), latest $(cat "$d/latest")"
    fi
    resumed "$name" 10
}
second_signal $c 0
AT=12 STOP=13 row $c "2nd SIGTERM in the stop's write (faults)"

# ---- second_launcher: SIGTERM twice to the launcher while rank 0 stalls in step 13
c=second_launcher
start $c MPITRAIN_FAULT=stall:rank=0:step=13:seconds=30 -- \
    "$LAUNCHER" --cpu 2 --bin "$MPITRAIN" "${TRAIN[@]}" --set run.dir="$TMP/$c"
if await_steps $c 12; then
    mark $c
    kill -TERM "$(child $BG)"
    for _ in $(seq 250); do grep -q "^mpitrain-local: SIGTERM: asking" "$TMP/$c.log" && break; sleep 0.02; done
    kill -TERM "$(child $BG)"
fi
finish
grep -q "^mpitrain-local: second SIGTERM: SIGTERM to the ranks" "$TMP/$c.log" &&
    ok "$c: the launcher passed the second SIGTERM to the ranks" || bad "$c: no launcher line for the second SIGTERM"
STOP=""
second_signal $c '[01]'
STOP=$AT row $c "SIGTERM twice to mpitrain-local"

# ---- the launcher's choices, without running anything
out=$(CUDA_VISIBLE_DEVICES='' "$LAUNCHER" --bin "$MPITRAIN" train --config x.ini 2>&1)
rc=$?
[ $rc = 2 ] && [ "$(echo "$out" | wc -l)" = 1 ] && [[ "$out" == "mpitrain-local: error: no GPU found"* ]] &&
    ok "launcher: no GPU and no --cpu: exit 2, one line: $out" || bad "launcher without a GPU: exit $rc: $out"
out=$("$LAUNCHER" --cpu 2 --bin "$MPITRAIN" --dry-run train --config x.ini 2>&1)
[[ "$out" == *"mpirun -np 2 --"*" -x OMP_NUM_THREADS="*" $MPITRAIN train --config x.ini --set train.device=cpu" ]] &&
    ok "launcher --cpu 2 --dry-run: ${out##*$'\n'}" || bad "launcher --dry-run: $out"
out=$(CUDA_VISIBLE_DEVICES=0,1,2 "$LAUNCHER" --bin "$MPITRAIN" --dry-run train --config x.ini 2>&1)
[[ "$out" == *"mpirun -np 3 "*" train --set train.device=cuda --config x.ini" ]] &&
    ok "launcher, CUDA_VISIBLE_DEVICES=0,1,2: 3 ranks, train.device=cuda" || bad "launcher with 3 GPUs: $out"

echo
echo "delays from the signal to the exit ($(env -u OMP_NUM_THREADS nproc) CPUs, $(date +%F)):"
printf '%-16s %-40s %4s %8s %5s\n' case signal exit wall steps
printf '%s\n' "${TABLE[@]}"
echo "the whole test: $(($(date +%s) - t_all)) s"
[ $fail = 0 ] && echo "all signal checks passed"
exit $fail
