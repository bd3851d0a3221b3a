#!/usr/bin/env bash
# test_ckpt_async.sh - asynchronous checkpoints (checkpoint.async;
# docs/CHECKPOINT_FORMAT.md, "Asynchronous checkpoints"), on a small MNIST
# MLP and a tiny GPT at -np 2.
#
# usage: test_ckpt_async.sh MPITRAIN H5CMP REPO DATA.h5
#
#   same_file    MLP, a checkpoint every 5 of 20 steps, sync and async (the
#                async run also under parallel.timeout, whose watchdog the
#                writer thread stays out of): every checkpoint, the model
#                file and every logged loss bitwise equal; run.json says
#                async; each async checkpoint verifies with its .sha256;
#                the registry's CHECKPOINT records (sync and async) carry
#                the loss of their own step
#   layouts      GPT, sync vs async, bitwise at every checkpoint under
#                dp 2 with zero=1 (ranged optimizer views), tp 2 (split
#                tensors), pp 2 (the tied embedding's mirror), and dp 2
#                zero=1 through the device-memory code paths
#                (MPITRAIN_TEST_STAGED=1: the host copy of the state is the
#                staging copy, as on a GPU)
#   resume       MLP stopped after 10 steps (exit_after_steps) with async,
#                resumed with async: the final checkpoint equals same_file's
#   kill         rank 0's writer stalls inside the write of step 10 (the
#                stall fault, after the tensors, before the rename) while
#                training goes on past step 12; then one rank is SIGKILLed:
#                `latest` names step 5, which verifies; no step 10 file is
#                in place; the resume ends bitwise equal to same_file's
#   usr1         the writer of step 10 sleeps 3 s; SIGUSR1 to rank 1 once
#                step 12 is logged: the run stops with exit 75 after
#                waiting for step 10's write; step 10 and the stop's
#                checkpoint both verify and are registered; `latest` names
#                the stop's; the resume ends bitwise equal
#   short_interval  a checkpoint every step while a write is held 0.5 s:
#                the wait is logged, the run completes, every checkpoint
#                verifies, the final one equals a sync run's
#   bad_dir      checkpoint.dir under a regular file: one error line,
#                the same non-zero status on both ranks, nothing trained;
#                and a checkpoint.dir on a read-only file system (a tmpfs
#                remounted read-only; skipped, saying why, without mount
#                rights): refused at start-up, exit 4, one line
#   timeout      checkpoint.timeout = 2 and the writers stalled for ever:
#                every rank exits 4 with the timeout's line; step 5 stays
#                `latest` and verifies
set -uo pipefail
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") H5CMP=$(realpath "$2") REPO=$(realpath "$3") DATA=$(realpath "$4")
N=20
MLP=(train --config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA"
    --set train.global_batch=500 --set train.steps="$N" --set run.log_every=1
    --set train.eval_every=0 --set optim.schedule=cosine --set optim.warmup_steps=3
    --set optim.lr=0.003 --set checkpoint.every_steps=5 --set checkpoint.keep_last=0)

ckdir() { echo "$TMP/$1/mnist_mlp/0001/checkpoints"; } # CASE
step_name() { printf 'step_%08d.h5' "$1"; }
run() { # run CASE [ARGS...]: the MLP at -np 2 in $TMP/CASE; status in RC
    local c=$1
    shift
    timeout 120 mpirun -np 2 "$MPITRAIN" "${MLP[@]}" --set run.dir="$TMP/$c" "$@" >"$TMP/$c.log" 2>&1
    RC=$?
}
verify() { # verify LABEL FILE...
    if "$MPITRAIN" ckpt verify "${@:2}" >"$TMP/verify.txt" 2>&1; then
        ok "$1 verifies"
    else
        bad "$1 does not verify"
        sed 's/^/   | /' "$TMP/verify.txt"
    fi
}
latest_is() { # latest_is LABEL DIR STEP
    local l
    l=$(cat "$2/latest" 2>/dev/null)
    [ "$l" = "$(step_name "$3")" ] && ok "$1: latest names step $3" || bad "$1: latest is '$l', not step $3"
}
one_error_line() { # one_error_line LABEL LOG
    local n
    n=$(grep -c '^mpitrain: error:' "$2")
    [ "$n" -ge 1 ] && ok "$1: error line: $(grep -m1 '^mpitrain: error:' "$2" | cut -c1-150)" ||
        { bad "$1: no 'mpitrain: error:' line"; tail -5 "$2" | sed 's/^/   | /'; }
}
await_steps() { # await_steps CASE K: until K steps are logged (60 s at most)
    local m=$TMP/$1/mnist_mlp/0001/metrics.jsonl
    for _ in $(seq 600); do
        [ -f "$m" ] && [ "$(wc -l <"$m")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
rank_pids() { # rank_pids CASE: the pids of that run's mpitrain ranks
    local p
    for p in $(pgrep -f "run.dir=$TMP/$1"); do
        [ "$(cat /proc/"$p"/comm 2>/dev/null)" = mpitrain ] && echo "$p"
    done
}

# ---- same_file: sync vs async, bitwise ----
run sync
must_succeed "sync reference" "$TMP/sync.log"
run async --set checkpoint.async=true --set parallel.timeout=60
must_succeed "async run" "$TMP/async.log"
for s in 5 10 15 20; do
    cmp_h5 "same_file: step $s async = sync" "$(ckdir sync)/$(step_name $s)" \
        "$(ckdir async)/$(step_name $s)" --bitwise
done
cmp_h5 "same_file: model.h5 async = sync" "$TMP/sync/mnist_mlp/0001/model.h5" \
    "$TMP/async/mnist_mlp/0001/model.h5" --bitwise
if [ "$(losses "$TMP/sync/mnist_mlp/0001/metrics.jsonl")" = "$(losses "$TMP/async/mnist_mlp/0001/metrics.jsonl")" ]; then
    ok "same_file: the $N logged losses are equal"
else
    bad "same_file: losses differ"
fi
mode=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["result"]["checkpoints"]["mode"])' \
    "$TMP/async/mnist_mlp/0001/run.json" 2>&1)
[ "$mode" = async ] && ok "same_file: run.json result.checkpoints.mode = async" || bad "same_file: mode '$mode'"
verify "same_file: the async checkpoints" "$(ckdir async)"/step_*.h5
latest_is same_file "$(ckdir async)" 20
# the registry's CHECKPOINT records carry their own step's metrics, though
# they are published a step or more later (by rank 0's job thread)
for m in sync async; do
    got=$($PY -c 'import json,sys
loss = {json.loads(l)["step"]: json.loads(l)["loss"] for l in open(sys.argv[2])}
ev = [json.loads(l) for l in open(sys.argv[1])]
ck = [e for e in ev if e["eventType"] == "CHECKPOINT"]
bad = [(e["model"]["step"], e["metrics"]["step"], e["metrics"]["loss"]) for e in ck
       if e["metrics"]["step"] != e["model"]["step"] or e["metrics"]["loss"] != loss[e["model"]["step"]]]
print(len(ck), bad)' "$TMP/$m/registry.jsonl" "$TMP/$m/mnist_mlp/0001/metrics.jsonl" 2>&1)
    [ "$got" = "4 []" ] && ok "same_file: $m: the 4 CHECKPOINT records carry their step's loss" ||
        bad "same_file: $m: CHECKPOINT records: $got"
done
REF=$(ckdir sync)/$(step_name $N)

# ---- layouts: GPT, sync vs async, bitwise ----
gpt_tokens
for lay in "zero --set parallel.zero=1" "tp2 --set parallel.tp=2" \
    "pp2 --set parallel.pp=2 --set parallel.microbatches=2" "staged --set parallel.zero=1"; do
    name=${lay%% *}
    read -ra extra <<<"${lay#* }"
    staged=0
    [ "$name" = staged ] && staged=1
    for m in false true; do
        MPITRAIN_TEST_STAGED=$staged timeout 120 mpirun -np 2 "$MPITRAIN" train \
            --config "$REPO/configs/mnist_mlp.ini" "${GPT_TINY[@]}" "${extra[@]}" --set train.steps=6 \
            --set checkpoint.every_steps=3 --set checkpoint.async=$m --set run.dir="$TMP/gpt_${name}_$m" \
            >"$TMP/gpt_${name}_$m.log" 2>&1
        RC=$?
        must_succeed "layouts: $name async=$m" "$TMP/gpt_${name}_$m.log"
    done
    for s in 3 6; do
        a=$(find "$TMP/gpt_${name}_true" -name "$(step_name $s)")
        b=$(find "$TMP/gpt_${name}_false" -name "$(step_name $s)")
        cmp_h5 "layouts: $name step $s async = sync" "$b" "$a" --bitwise
    done
done

# ---- resume from an async checkpoint ----
run resume --set checkpoint.async=true --set train.exit_after_steps=10
[ "$RC" = 0 ] && ok "resume: stopped after 10 steps" || bad "resume: first part exited $RC"
run resume --set checkpoint.async=true --set checkpoint.resume=auto
must_succeed "resume: second part" "$TMP/resume.log"
grep -q 'resum.*step_00000010.h5' "$TMP/resume.log" && ok "resume: continued from step 10" ||
    bad "resume: not from step 10 ($(grep -m1 -i resum "$TMP/resume.log"))"
cmp_h5 "resume: final checkpoint = uninterrupted sync run's" "$REF" \
    "$(find "$TMP/resume" -name "$(step_name $N)" | head -1)" --bitwise

# ---- kill: SIGKILL of a rank while a write is in flight ----
MPITRAIN_FAULT=stall:rank=0:step=10:during=checkpoint timeout 120 mpirun -np 2 "$MPITRAIN" "${MLP[@]}" \
    --set run.dir="$TMP/kill" --set checkpoint.async=true >"$TMP/kill.log" 2>&1 &
MPIRUN=$!
if await_steps kill 12; then
    ok "kill: training went on to step 12 while step 10's write was held"
    pids=$(rank_pids kill)
    victim=$(echo "$pids" | tail -1)
    [ -n "$victim" ] && kill -KILL "$victim"
else
    bad "kill: step 12 never logged"
    kill -KILL $MPIRUN
fi
wait $MPIRUN
RC=$?
[ "$RC" != 0 ] && ok "kill: mpirun exited $RC" || bad "kill: mpirun exited 0"
latest_is kill "$(ckdir kill)" 5
verify "kill: step 5" "$(ckdir kill)/$(step_name 5)"
[ ! -e "$(ckdir kill)/$(step_name 10)" ] && ok "kill: no step 10 file in place" ||
    bad "kill: step 10 is in place although its write never finished"
run kill --set checkpoint.async=true --set checkpoint.resume=auto
must_succeed "kill: resume" "$TMP/kill.log"
cmp_h5 "kill: resumed final checkpoint = uninterrupted run's" "$REF" \
    "$(find "$TMP/kill" -path '*0002*' -name "$(step_name $N)" | head -1)" --bitwise

# ---- usr1: a stop signal while a write is in flight ----
MPITRAIN_FAULT=stall:rank=0:step=10:seconds=3:during=checkpoint timeout 120 mpirun -np 2 "$MPITRAIN" \
    "${MLP[@]}" --set run.dir="$TMP/usr1" --set checkpoint.async=true >"$TMP/usr1.log" 2>&1 &
MPIRUN=$!
if await_steps usr1 12; then
    pids=$(rank_pids usr1)
    kill -USR1 "$(echo "$pids" | tail -1)"
else
    bad "usr1: step 12 never logged"
fi
wait $MPIRUN
RC=$?
[ "$RC" = 75 ] && ok "usr1: exit 75" || { bad "usr1: exited $RC"; tail -5 "$TMP/usr1.log" | sed 's/^/   | /'; }
stop=$(sed -n 's/^stopped at step \([0-9]*\) .*/\1/p' "$TMP/usr1.log")
if [ -n "$stop" ] && [ "$stop" -gt 10 ]; then
    ok "usr1: stopped at step $stop"
    grep -q "waited .* for the write of step 10" "$TMP/usr1.log" && ok "usr1: the stop waited for step 10's write" ||
        bad "usr1: no wait for step 10's write logged"
    verify "usr1: step 10 and step $stop" "$(ckdir usr1)/$(step_name 10)" "$(ckdir usr1)/$(step_name "$stop")"
    latest_is usr1 "$(ckdir usr1)" "$stop"
    reg=$($PY -c 'import json,sys
print(" ".join(str(json.loads(l)["model"]["step"]) for l in open(sys.argv[1]) if json.loads(l)["eventType"] == "CHECKPOINT"))' \
        "$TMP/usr1/registry.jsonl" 2>&1)
    case " $reg " in
        *" 10 "*) case " $reg " in
            *" $stop "*) ok "usr1: registry CHECKPOINT steps: $reg" ;;
            *) bad "usr1: registry CHECKPOINT steps '$reg' lack $stop" ;;
        esac ;;
        *) bad "usr1: registry CHECKPOINT steps '$reg' lack 10" ;;
    esac
    run usr1 --set checkpoint.async=true --set checkpoint.resume=auto
    must_succeed "usr1: resume" "$TMP/usr1.log"
    cmp_h5 "usr1: resumed final checkpoint = uninterrupted run's" "$REF" \
        "$(find "$TMP/usr1" -path '*0002*' -name "$(step_name $N)" | head -1)" --bitwise
else
    bad "usr1: no 'stopped at step' line after step 10 ('$stop')"
fi

# ---- short_interval: a checkpoint every step, a write held 0.5 s ----
MPITRAIN_FAULT=stall:rank=1:step=3:seconds=0.5:during=checkpoint run short --set checkpoint.async=true \
    --set checkpoint.every_steps=1 --set train.steps=8
must_succeed "short_interval" "$TMP/short.log"
grep -q '^checkpoint: step 4 waited .* for the write of step 3' "$TMP/short.log" &&
    ok "short_interval: $(grep -m1 '^checkpoint: step 4 waited' "$TMP/short.log" | cut -c1-90)" ||
    bad "short_interval: no wait logged for step 3's write"
verify "short_interval: all 8 checkpoints" "$(ckdir short)"/step_*.h5
run short_sync --set checkpoint.every_steps=1 --set train.steps=8
must_succeed "short_interval: sync" "$TMP/short_sync.log"
cmp_h5 "short_interval: step 8 async = sync" "$(ckdir short_sync)/$(step_name 8)" \
    "$(ckdir short)/$(step_name 8)" --bitwise

# ---- bad_dir: checkpoint.dir under a regular file ----
mkdir -p "$TMP/bad" && touch "$TMP/bad/file"
timeout 60 mpirun -np 2 bash -c "$WRAP" _ "$TMP/bad" "$MPITRAIN" "${MLP[@]}" --set run.dir="$TMP/bad/run" \
    --set checkpoint.async=true --set checkpoint.dir="$TMP/bad/file/ckpt" >"$TMP/bad/launcher" 2>&1
RC=$?
s0=$(cat "$TMP/bad/status.0" 2>/dev/null) s1=$(cat "$TMP/bad/status.1" 2>/dev/null)
[ "$RC" = 0 ] && [ -n "$s0" ] && [ "$s0" != 0 ] && [ "$s0" = "$s1" ] &&
    ok "bad_dir: both ranks exit $s0" || bad "bad_dir: statuses '$s0' '$s1' (mpirun $RC)"
one_error_line bad_dir "$TMP/bad/err.0"
[ "$(grep -c '^mpitrain: error:' "$TMP/bad/err.0")" = 1 ] && ok "bad_dir: exactly one error line" ||
    bad "bad_dir: $(grep -c '^mpitrain: error:' "$TMP/bad/err.0") error lines"
grep -q '^step ' "$TMP/bad/out.0" && bad "bad_dir: trained anyway" || ok "bad_dir: nothing trained"

# ---- bad_dir, read-only: a checkpoint.dir that exists but cannot be
# written (a read-only tmpfs; needs mount rights) is refused at start-up,
# not at the first background write
mkdir -p "$TMP/ro"
if mount -t tmpfs -o size=1m tmpfs "$TMP/ro" 2>"$TMP/mount.err" && mkdir "$TMP/ro/ck" &&
    mount -o remount,ro "$TMP/ro" 2>>"$TMP/mount.err"; then
    mkdir -p "$TMP/rob"
    timeout 60 mpirun -np 2 bash -c "$WRAP" _ "$TMP/rob" "$MPITRAIN" "${MLP[@]}" --set run.dir="$TMP/rob/run" \
        --set checkpoint.async=true --set checkpoint.dir="$TMP/ro/ck" >"$TMP/rob/launcher" 2>&1
    s0=$(cat "$TMP/rob/status.0" 2>/dev/null) s1=$(cat "$TMP/rob/status.1" 2>/dev/null)
    [ "$s0" = 4 ] && [ "$s1" = 4 ] && ok "bad_dir, read-only: both ranks exit 4" ||
        bad "bad_dir, read-only: statuses '$s0' '$s1'"
    [ "$(grep -c '^mpitrain: error:' "$TMP/rob/err.0")" = 1 ] &&
        grep -q "^mpitrain: error: checkpoint.dir $TMP/ro/ck is not writable: Read-only file system" "$TMP/rob/err.0" &&
        ok "bad_dir, read-only: one line: $(grep '^mpitrain: error:' "$TMP/rob/err.0" | cut -c1-120)" ||
        { bad "bad_dir, read-only: not one 'not writable' line"; sed 's/^/   | /' "$TMP/rob/err.0"; }
    grep -q '^step ' "$TMP/rob/out.0" && bad "bad_dir, read-only: trained anyway" ||
        ok "bad_dir, read-only: nothing trained"
    umount "$TMP/ro"
else
    umount "$TMP/ro" 2>/dev/null
    echo "skip - bad_dir, read-only: cannot mount a read-only tmpfs here ($(head -1 "$TMP/mount.err"))"
fi

# ---- timeout: a writer that never finishes ----
mkdir -p "$TMP/to"
# both writers stall, as in test_checkpoint.sh's synchronous case: with one,
# the other rank's alarm may come a moment later and mpirun kill it first
MPITRAIN_FAULT=stall:rank=0:step=10:during=checkpoint,stall:rank=1:step=10:during=checkpoint \
    timeout 120 mpirun -np 2 bash -c "$WRAP" _ "$TMP/to" \
    "$MPITRAIN" "${MLP[@]}" --set run.dir="$TMP/to/run" --set checkpoint.async=true \
    --set checkpoint.timeout=2 >"$TMP/to/launcher" 2>&1
s0=$(cat "$TMP/to/status.0" 2>/dev/null) s1=$(cat "$TMP/to/status.1" 2>/dev/null)
[ "$s0" = 4 ] && [ "$s1" = 4 ] && ok "timeout: both ranks exit 4" || bad "timeout: statuses '$s0' '$s1'"
grep -q '^mpitrain: error: the checkpoint write of step 10 did not finish within 2 s' "$TMP/to/err.0" &&
    ok "timeout: rank 0 names the write and checkpoint.timeout" ||
    { bad "timeout: no timeout line on rank 0"; tail -3 "$TMP/to/err.0" | sed 's/^/   | /'; }
CK=$TMP/to/run/mnist_mlp/0001/checkpoints
latest_is timeout "$CK" 5
verify "timeout: step 5" "$CK/$(step_name 5)"

exit $fail
