#!/usr/bin/env bash
# test_checkpoint.sh - checkpoints and resume on real MNIST.
#
# usage: test_checkpoint.sh MODE MPITRAIN H5CMP REPO DATA.h5
#
# MODE is one of:
#   exact      2N steps in one run against N steps, stop (train.exit_after_steps),
#              resume, N more, at -np 2: the final weights AND optimizer state
#              are bitwise identical (h5cmp --bitwise, memcmp per tensor) and so
#              is every per-step loss (exact text of the metrics file); for SGD
#              (resume from an explicit path) and AdamW (resume = auto). The
#              runs cross epoch boundaries (8 steps per epoch) under a
#              warmup + cosine schedule, so the sample order and LR position
#              are restored too.
#   layout     the same with the second half at another -np (2 -> 1, 1 -> 4):
#              parameters within 1e-5 relative of the uninterrupted run
#              (SGD: max|a-b|/max|b|; AdamW: ||a-b||/||b||, see test_dp.sh)
#              and per-step losses within 1e-5 relative.
#   crash      (also: the write watchdog, checkpoint.timeout, and a full file
#              system, when a tmpfs can be mounted; else that case prints a skip)
#              a rank is SIGKILLed while the checkpoint of step 10 is being
#              written (the test hook MPITRAIN_TEST_STALL_CKPT stalls the
#              writer midway): `latest` still names step 5, which verifies;
#              resume = auto continues from it and ends bitwise equal to an
#              uninterrupted run; the dead writer's temporary is cleaned up.
#   signal     SIGUSR1 to mpirun (which forwards it), then SIGTERM to every rank
#              (what Slurm sends at a time limit or preemption): each time the
#              run writes a checkpoint at the end of the current step and every
#              rank exits 75; run.json says "stopped"; resume=auto twice ends
#              bitwise equal to an uninterrupted run.
#   corrupt    a truncated file, a flipped byte inside a weight (caught by the
#              SHA-256 file, and by Fletcher32 when the .sha256 is gone), a
#              wrong format version, a non-HDF5 file, a model.h5, a missing
#              file, and a checkpoint of another architecture: each is one
#              clear error with exit 4 on every rank, no run folder made and
#              the other checkpoints untouched; with resume = auto the newest
#              valid older checkpoint is used instead, and the run says so.
#   retention  every_steps=5, keep_last=2, keep_every=20 over 50 steps leaves
#              exactly steps 20, 40, 45, 50 (+ .sha256, latest) and no foreign
#              file is touched; every_seconds with a tiny interval writes a
#              checkpoint every step; a fresh run refuses a checkpoint.dir that
#              holds another run's checkpoints.
#   cli        `mpitrain ckpt inspect` shows step, config and every tensor with
#              shape and checksum; `ckpt verify` exits 0 / 4 / 2.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MODE=$1 MPITRAIN=$(realpath "$2") H5CMP=$(realpath "$3") REPO=$(realpath "$4") DATA=$(realpath "$5")

# train NP LOG ARGS... -> runs mpitrain; status in RC
train() {
    local np=$1 log=$2
    shift 2
    timeout -k 5 120 mpirun -np "$np" "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" \
        --set data.path="$DATA" --set train.global_batch=1000 --set train.steps=20 \
        --set run.log_every=1 --set train.eval_every=0 --set optim.schedule=cosine \
        --set optim.warmup_steps=3 --set optim.lr=0.003 "$@" >"$log" 2>&1
    RC=$?
}

# must_train NP LOG ARGS...: a run that must succeed
must_train() {
    train "$@"
    must_succeed "run $2" "$2"
}

same_losses() { # label A-files -- B-files
    local xs=() ys=() side=a
    for f in "${@:2}"; do
        if [ "$f" = -- ]; then side=b; continue; fi
        if [ $side = a ]; then xs+=("$f"); else ys+=("$f"); fi
    done
    if cmp -s <(losses "${xs[@]}") <(losses "${ys[@]}") && [ "$(losses "${xs[@]}" | wc -l)" = 20 ]; then
        ok "$1: all 20 per-step losses identical"
    else
        bad "$1: per-step losses differ"
        paste <(losses "${xs[@]}") <(losses "${ys[@]}") | head -25 | sed 's/^/   | /'
    fi
}

close_losses() { # label A-files -- B-files  (within 1e-5 relative)
    local xs=() ys=() side=a
    for f in "${@:2}"; do
        if [ "$f" = -- ]; then side=b; continue; fi
        if [ $side = a ]; then xs+=("$f"); else ys+=("$f"); fi
    done
    if $PY - <(losses "${xs[@]}") <(losses "${ys[@]}") <<'PY'; then ok "$1: losses within 1e-5"; else bad "$1: losses"; fi
import sys
a = [float(x) for x in open(sys.argv[1])]
b = [float(x) for x in open(sys.argv[2])]
assert len(a) == len(b) == 20, f"expected 20 losses, got {len(a)} and {len(b)}"
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
print(f"   per-step loss: worst relative difference {worst:.2e}")
sys.exit(0 if worst <= 1e-5 else 1)
PY
}

run_of() { echo "$1/mnist_mlp/$2"; } # RUN_DIR NNNN

# ---------------------------------------------------------------- exact
if [ "$MODE" = exact ]; then
    for opt in sgd adamw; do
        A=$TMP/$opt.A B=$TMP/$opt.B
        must_train 2 "$TMP/$opt.A.log" --set run.dir="$A" --set optim.kind=$opt
        must_train 2 "$TMP/$opt.B1.log" --set run.dir="$B" --set optim.kind=$opt \
            --set train.exit_after_steps=10
        grep -q "stopped at step 10 of 20" "$TMP/$opt.B1.log" || bad "$opt: first half did not report its stop"
        ck=$(run_of "$B" 0001)/checkpoints/step_00000010.h5
        [ -f "$ck" ] || { bad "$opt: no checkpoint at step 10"; continue; }
        if [ $opt = sgd ]; then resume=$ck; else resume=auto; fi
        must_train 2 "$TMP/$opt.B2.log" --set run.dir="$B" --set optim.kind=$opt \
            --set checkpoint.resume="$resume"
        if grep -q "resume: from $ck (step 10" "$TMP/$opt.B2.log"; then
            ok "$opt: second half resumed from step 10 (checkpoint.resume=$resume)"
        else
            bad "$opt: second half did not resume from $ck"
            grep resume "$TMP/$opt.B2.log" | sed 's/^/   | /'
        fi
        a=$(run_of "$A" 0001) b=$(run_of "$B" 0002)
        cmp_h5 "$opt: weights + optimizer state at step 20 bitwise identical" \
            "$a/checkpoints/step_00000020.h5" "$b/checkpoints/step_00000020.h5" --bitwise
        cmp_h5 "$opt: model.h5 bitwise identical" "$a/model.h5" "$b/model.h5" --bitwise
        same_losses "$opt" "$a/metrics.jsonl" -- "$(run_of "$B" 0001)/metrics.jsonl" "$b/metrics.jsonl"
        # lineage: the resumed run names its parent
        if $PY - "$b/run.json" "$ck" <<'PY'; then ok "$opt: run.json names the parent checkpoint"; else bad "$opt: run.json parent"; fi
import json, sys
r = json.load(open(sys.argv[1]))
assert r["parent"]["checkpoint"] == sys.argv[2] and r["parent"]["step"] == 10, r.get("parent")
PY
    done
fi

# ---------------------------------------------------------------- layout
if [ "$MODE" = layout ]; then
    for opt in sgd adamw; do
        tol=--rtol
        [ $opt = adamw ] && tol=--nrtol
        for pair in 2:1 1:4; do
            np1=${pair%:*} np2=${pair#*:}
            A=$TMP/$opt.$np1.A B=$TMP/$opt.$np1.B
            must_train "$np1" "$TMP/$opt.$np1.A.log" --set run.dir="$A" --set optim.kind=$opt
            must_train "$np1" "$TMP/$opt.$np1.B1.log" --set run.dir="$B" --set optim.kind=$opt \
                --set train.exit_after_steps=10
            must_train "$np2" "$TMP/$opt.$np1.B2.log" --set run.dir="$B" --set optim.kind=$opt \
                --set checkpoint.resume=auto
            grep -q "resume: from .*step_00000010.h5" "$TMP/$opt.$np1.B2.log" ||
                bad "$opt -np $np1 -> $np2: no resume line"
            a=$(run_of "$A" 0001) b=$(run_of "$B" 0002)
            cmp_h5 "$opt: -np $np1 -> -np $np2 resume vs uninterrupted -np $np1 ($tol 1e-5)" \
                "$a/checkpoints/step_00000020.h5" "$b/checkpoints/step_00000020.h5" $tol 1e-5
            close_losses "$opt: -np $np1 -> -np $np2" "$a/metrics.jsonl" -- \
                "$(run_of "$B" 0001)/metrics.jsonl" "$b/metrics.jsonl"
        done
    done
fi

# ---------------------------------------------------------------- crash
if [ "$MODE" = crash ]; then
    CK=$TMP/ck
    must_train 2 "$TMP/ref.log" --set run.dir="$TMP/ref" --set checkpoint.every_steps=5
    log=$TMP/crash.log
    MPITRAIN_TEST_STALL_CKPT=10 timeout -k 5 120 mpirun -np 2 "$MPITRAIN" train \
        --config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA" \
        --set train.global_batch=1000 --set train.steps=20 --set run.log_every=1 \
        --set train.eval_every=0 --set optim.schedule=cosine --set optim.warmup_steps=3 \
        --set optim.lr=0.003 --set run.dir="$TMP/crash" --set checkpoint.dir="$CK" \
        --set checkpoint.every_steps=5 >"$log" 2>&1 &
    launcher=$!
    for _ in $(seq 600); do grep -q "test hook: stalling" "$log" && break; sleep 0.1; done
    if ! grep -q "test hook: stalling the checkpoint write of step 10" "$log"; then
        bad "crash: the writer never reached the stall hook"
        cat "$log"
        kill -KILL $launcher 2>/dev/null
        exit 1
    fi
    victim=""
    for pid in $(pgrep -f "run.dir=$TMP/crash"); do
        [ "$(cat /proc/$pid/comm 2>/dev/null)" = mpitrain ] && { victim=$pid; break; }
    done
    [ -n "$victim" ] || { bad "crash: no rank process found"; exit 1; }
    out_has '^step_00000010\.h5\.tmp\.' ls "$CK" && ok "crash: step 10 was mid-write (temporary present)" ||
        bad "crash: no temporary of step 10 while stalled"
    kill -KILL "$victim"
    wait $launcher
    rc=$?
    [ $rc != 0 ] && [ $rc != 124 ] && ok "crash: rank $victim SIGKILLed, mpirun ended ($rc)" ||
        bad "crash: mpirun exit $rc after the kill"
    [ "$(cat "$CK/latest")" = step_00000005.h5 ] && ok "crash: latest still names step_00000005.h5" ||
        bad "crash: latest is '$(cat "$CK/latest")'"
    [ ! -e "$CK/step_00000010.h5" ] && ok "crash: no step_00000010.h5 committed" || bad "crash: step 10 exists"
    "$MPITRAIN" ckpt verify "$CK/step_00000005.h5" >"$TMP/v.txt" 2>&1 &&
        ok "crash: step 5 verifies ($(cat "$TMP/v.txt"))" || { bad "crash: step 5 does not verify"; cat "$TMP/v.txt"; }
    must_train 2 "$TMP/resume.log" --set run.dir="$TMP/crash" --set checkpoint.dir="$CK" \
        --set checkpoint.every_steps=5 --set checkpoint.resume=auto
    grep -q "resume: from $CK/step_00000005.h5 (step 5" "$TMP/resume.log" &&
        ok "crash: resume=auto continued from step 5" || bad "crash: resume line missing"
    cmp_h5 "crash: resumed run ends bitwise equal to the uninterrupted one" \
        "$(run_of "$TMP/ref" 0001)/checkpoints/step_00000020.h5" "$CK/step_00000020.h5" --bitwise
    if out_has '\.tmp\.' ls "$CK"; then bad "crash: stale temporary left: $(ls "$CK")"; else
        ok "crash: the dead writer's temporary was removed"; fi
fi

# The checkpoint watchdog: a write that stalls past checkpoint.timeout ends
# every rank with exit 4 (collective I/O cannot recover from a rank that
# failed inside it), removing the temporary and leaving `latest` intact.
if [ "$MODE" = crash ]; then
    W=$TMP/wd
    mkdir -p "$W/o"
    MPITRAIN_TEST_STALL_CKPT=10 timeout -k 5 120 mpirun -np 2 bash -c "$WRAP" _ "$W/o" "$MPITRAIN" \
        train --config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA" \
        --set train.global_batch=1000 --set train.steps=20 --set run.dir="$W/runs" \
        --set checkpoint.every_steps=5 --set checkpoint.timeout=2 >"$W/launcher" 2>&1
    ck=$(run_of "$W/runs" 0001)/checkpoints
    if [ "$(cat "$W"/o/status.* | tr '\n' ' ')" = "4 4 " ] &&
        grep -q "^mpitrain: error: the checkpoint write of step 10 did not finish within 2 s" "$W/o/err.0" &&
        [ "$(cat "$ck/latest")" = step_00000005.h5 ] && ! out_has tmp ls "$ck"; then
        ok "watchdog: a stalled write ends every rank with exit 4, temporary removed, latest = step 5"
    else
        bad "watchdog: statuses $(cat "$W"/o/status.* | tr '\n' ' '), files: $(ls "$ck" | tr '\n' ' ')"
        cat "$W"/o/err.0 | sed 's/^/   | /'
    fi
    # A full file system is seen before writing: a small tmpfs (needs mount rights).
    mkdir -p "$TMP/small"
    if mount -t tmpfs -o size=5m tmpfs "$TMP/small" 2>"$TMP/mount.err"; then
        train 2 "$TMP/full.log" --set run.dir="$TMP/full" --set checkpoint.dir="$TMP/small/ck" \
            --set checkpoint.every_steps=5 --set checkpoint.keep_last=0
        if [ "$RC" = 4 ] && grep -q "^mpitrain: error: no room for checkpoint $TMP/small/ck/step_00000010.h5" "$TMP/full.log" &&
            [ "$(cat "$TMP/small/ck/latest")" = step_00000005.h5 ] &&
            "$MPITRAIN" ckpt verify "$TMP/small/ck/step_00000005.h5" >/dev/null; then
            ok "full file system: exit 4 naming the folder before writing; step 5 intact"
        else
            bad "full file system: exit $RC"
            grep -E "error|checkpoint:" "$TMP/full.log" | sed 's/^/   | /'
        fi
        umount "$TMP/small"
    else
        echo "skip - full file system case: cannot mount a 5 MB tmpfs here ($(head -1 "$TMP/mount.err"))"
    fi
fi

# ---------------------------------------------------------------- signal
if [ "$MODE" = signal ]; then
    S=(--set train.steps=120 --set checkpoint.keep_last=0)
    must_train 2 "$TMP/ref.log" --set run.dir="$TMP/ref" "${S[@]}"
    # stop_with N SIGNAL TARGET: run N of $TMP/sig, signalled once step 5 of it is done
    stop_with() {
        local log=$TMP/sig$1.log resume=none pid
        [ "$1" -gt 1 ] && resume=auto
        timeout -k 5 120 mpirun -np 2 "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" \
            --set data.path="$DATA" --set train.global_batch=1000 --set run.log_every=1 \
            --set train.eval_every=0 --set optim.schedule=cosine --set optim.warmup_steps=3 \
            --set optim.lr=0.003 --set run.dir="$TMP/sig" "${S[@]}" \
            --set checkpoint.resume=$resume >"$log" 2>&1 &
        local bg=$! seen=0
        for _ in $(seq 1200); do
            if [ "$(grep -c '^step ' "$log")" -ge 5 ]; then seen=1; break; fi
            sleep 0.05
        done
        for pid in $(pgrep -f "run.dir=$TMP/sig"); do
            case "$(cat /proc/$pid/comm 2>/dev/null)" in
                mpirun) [ $3 = mpirun ] && kill -"$2" "$pid" ;;
                mpitrain) [ $3 = ranks ] && kill -"$2" "$pid" ;;
            esac
        done
        wait $bg
        local rc=$? dir
        dir=$(run_of "$TMP/sig" "$(printf %04d "$1")")
        if [ $seen = 1 ] && [ $rc = 75 ] && grep -q "stopped at step .* of 120 (signal SIG$2)" "$log" &&
            grep -q "^mpitrain: error: stopped by signal SIG$2 at step" "$log" &&
            $PY -c 'import json,sys; r=json.load(open(sys.argv[1]))["result"]; assert r["status"]=="stopped", r' "$dir/run.json"; then
            ok "SIG$2 to $3: exit 75 after a checkpoint ($(grep -o 'stopped at step [0-9]*' "$log")), run.json status stopped"
        else
            bad "SIG$2 to $3: no clean stop (exit $rc)"
            grep -vE '^step |^$' "$log" | tail -12 | sed 's/^/   | /'
        fi
    }
    stop_with 1 USR1 mpirun
    stop_with 2 TERM ranks
    must_train 2 "$TMP/sig3.log" --set run.dir="$TMP/sig" "${S[@]}" --set checkpoint.resume=auto
    cmp_h5 "two signalled stops + resumes end bitwise equal to the uninterrupted run" \
        "$(run_of "$TMP/ref" 0001)/checkpoints/step_00000120.h5" \
        "$(run_of "$TMP/sig" 0003)/checkpoints/step_00000120.h5" --bitwise
    same=$(cat "$(run_of "$TMP/sig" 0001)/metrics.jsonl" "$(run_of "$TMP/sig" 0002)/metrics.jsonl" \
        "$(run_of "$TMP/sig" 0003)/metrics.jsonl" | $PY -c 'import sys,json; print(len({json.loads(l)["step"] for l in sys.stdin}))')
    [ "$same" = 120 ] && ok "the three runs logged steps 1..120 between them" || bad "steps logged: $same"
    # the registry: each stopped run ends with ABORT (exit code 75), the last with COMPLETE
    $PY - "$TMP/sig/registry.jsonl" <<'EOF2' && ok "registry: ABORT (75) for each signalled run, then COMPLETE" || bad "registry events of the signalled runs"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ends = [(r["eventType"], r["result"]["exit_code"]) for r in recs if r["eventType"] in ("ABORT", "COMPLETE", "FAIL")]
assert ends == [("ABORT", 75), ("ABORT", 75), ("COMPLETE", 0)], ends
EOF2
fi

# ---------------------------------------------------------------- corrupt
if [ "$MODE" = corrupt ]; then
    CK=$TMP/ck
    must_train 2 "$TMP/base.log" --set run.dir="$TMP/base" --set checkpoint.dir="$CK" \
        --set checkpoint.every_steps=5 --set train.steps=10 --set checkpoint.keep_last=0
    must_train 1 "$TMP/other.log" --set run.dir="$TMP/other" --set model.layers=784,64,10 \
        --set train.steps=4
    OTHER=$(run_of "$TMP/other" 0001)/checkpoints/step_00000004.h5
    n=0
    # expect_error NAME PATTERN DIR RESUME [ARGS...]: fresh copy of the checkpoint folder
    # (after SETUP ran on it), then -np 2 must fail with exit 4 on both ranks.
    expect_error() {
        local name=$1 pat=$2 dir=$3 resume=$4
        shift 4
        n=$((n + 1))
        local o=$TMP/e$n rd=$TMP/e$n.runs
        mkdir -p "$o"
        (cd "$o" && timeout -k 5 60 mpirun -np 2 bash -c "$WRAP" _ "$o" "$MPITRAIN" train \
            --config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA" \
            --set train.global_batch=1000 --set train.steps=20 --set run.dir="$rd" \
            --set checkpoint.dir="$dir" --set checkpoint.resume="$resume" "$@") >"$o/launcher" 2>&1
        local why=() errs
        [ "$(cat "$o"/status.0 2>/dev/null)" = 4 ] && [ "$(cat "$o"/status.1 2>/dev/null)" = 4 ] ||
            why+=("exit status per rank: $(cat "$o"/status.* 2>/dev/null | tr '\n' ' ')")
        errs=$(cat "$o"/err.* | grep -c '^mpitrain: error:')
        [ "$errs" = 1 ] || why+=("$errs error lines")
        grep -qiE "$pat" "$o/err.0" || why+=("error does not match '$pat'")
        [ ! -e "$rd" ] || why+=("a run folder was made")
        if [ ${#why[@]} = 0 ]; then ok "$name: $(grep '^mpitrain: error:' "$o/err.0" | cut -c1-150)"; else
            bad "$name: ${why[*]}"; sed 's/^/   | /' "$o"/err.0; fi
    }
    fresh() { rm -rf "$TMP/c$1" && cp -r "$CK" "$TMP/c$1" && echo "$TMP/c$1"; }
    flip() { # FILE DATASET: flips one byte inside the dataset's first chunk
        $PY - "$1" "$2" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    off = f[sys.argv[2]].id.get_chunk_info(0).byte_offset + 1001
with open(sys.argv[1], "r+b") as g:
    g.seek(off); b = g.read(1); g.seek(off); g.write(bytes([b[0] ^ 0x10]))
PY
    }
    resumes_from() { # NAME DIR EXPECTED-STEP-FILE
        must_train 2 "$TMP/$1.log" --set run.dir="$TMP/$1.runs" --set checkpoint.dir="$2" \
            --set checkpoint.resume=auto
        if grep -q "resume: falling back to the newest valid checkpoint, $2/$3" "$TMP/$1.log" &&
            grep -q "^warning: skipping unusable checkpoint" "$TMP/$1.log" &&
            grep -q "resume: from $2/$3" "$TMP/$1.log"; then
            ok "$1: resume=auto fell back to $3 and said so"
        else
            bad "$1: resume=auto did not fall back to $3"
            grep -E "resume|warning" "$TMP/$1.log" | sed 's/^/   | /'
        fi
    }
    keep=$TMP/keep.sha
    (cd "$CK" && sha256sum step_00000005.h5) >"$keep"

    d=$(fresh 1) && truncate -s 1500000 "$d/step_00000010.h5"
    expect_error "truncated file" "step_00000010.h5 is corrupt: its SHA-256" "$d" "$d/step_00000010.h5"
    (cd "$d" && sha256sum -c --quiet "$keep") && ok "truncated file: step 5 untouched" || bad "step 5 changed"
    rm "$d/step_00000010.h5.sha256"
    expect_error "truncated file, no .sha256" "truncated|damaged|checksum" "$d" "$d/step_00000010.h5"
    resumes_from truncated "$d" step_00000005.h5

    d=$(fresh 2) && flip "$d/step_00000010.h5" /model/fc1.weight
    expect_error "flipped byte in a weight" "corrupt: its SHA-256" "$d" "$d/step_00000010.h5"
    rm "$d/step_00000010.h5.sha256"
    expect_error "flipped byte, no .sha256 (Fletcher32)" "/model/fc1.weight fails its checksum" "$d" \
        "$d/step_00000010.h5"
    if "$MPITRAIN" ckpt verify "$d/step_00000010.h5" >"$TMP/v.txt" 2>&1; then bad "verify passed a flipped byte"; else
        [ $? = 4 ] && ok "ckpt verify: flipped byte -> exit 4" || bad "ckpt verify: wrong status"; fi
    resumes_from flipped "$d" step_00000005.h5

    d=$(fresh 3)
    $PY -c 'import h5py,sys; f=h5py.File(sys.argv[1],"r+"); f.attrs["format_version"]=2; f.close()' \
        "$d/step_00000010.h5"
    (cd "$d" && sha256sum step_00000010.h5 >step_00000010.h5.sha256)
    expect_error "wrong format version" "format version 2, newer than" "$d" "$d/step_00000010.h5"
    resumes_from version "$d" step_00000005.h5

    # A file whose .sha256 matches but whose counters no mpitrain writes (a
    # negative step once indexed the sample order backwards: SIGSEGV).
    d=$(fresh 6)
    $PY -c 'import h5py,sys; f=h5py.File(sys.argv[1],"r+"); f.attrs["step"]=-7; f.close()' \
        "$d/step_00000010.h5"
    (cd "$d" && sha256sum step_00000010.h5 >step_00000010.h5.sha256)
    expect_error "negative step" "attribute step = -7 is below 0" "$d" "$d/step_00000010.h5"

    d=$(fresh 4)
    head -c 4000 /dev/urandom >"$d/step_00000015.h5" && echo step_00000015.h5 >"$d/latest"
    expect_error "not an HDF5 file" "not an HDF5 file" "$d" "$d/step_00000015.h5"
    resumes_from garbage "$d" step_00000010.h5

    d=$(fresh 5)
    expect_error "missing file" "cannot read checkpoint .*/nope.h5" "$d" "$d/nope.h5"
    expect_error "a model.h5" "not an mpitrain checkpoint" "$d" "$(run_of "$TMP/base" 0001)/model.h5"
    expect_error "another architecture" "model.layers is 784,64,10 in the checkpoint but 784,256,128,10" \
        "$d" "$OTHER"
    expect_error "another optimizer" "optim.kind is adamw in the checkpoint but sgd" "$d" \
        "$d/step_00000010.h5" --set optim.kind=sgd
fi

# ---------------------------------------------------------------- retention
if [ "$MODE" = retention ]; then
    CK=$TMP/ck
    mkdir -p "$CK"
    for f in notes.txt step_7.h5 step_00000003.h5.bak; do echo keep >"$CK/$f"; done
    must_train 2 "$TMP/r.log" --set run.dir="$TMP/r" --set checkpoint.dir="$CK" \
        --set train.steps=50 --set checkpoint.every_steps=5 --set checkpoint.keep_last=2 \
        --set checkpoint.keep_every=20 --set train.global_batch=200
    want="latest notes.txt step_00000003.h5.bak step_00000020.h5 step_00000020.h5.sha256
step_00000040.h5 step_00000040.h5.sha256 step_00000045.h5 step_00000045.h5.sha256
step_00000050.h5 step_00000050.h5.sha256 step_7.h5"
    got=$(ls "$CK" | sort | tr '\n' ' ')
    if [ "$got" = "$(echo $want | tr ' ' '\n' | sort | tr '\n' ' ')" ]; then
        ok "retention: exactly steps 20, 40, 45, 50 kept; foreign files untouched"
    else
        bad "retention: got $got"
    fi
    [ "$(grep -c '^checkpoint: step [0-9]* -> ' "$TMP/r.log")" = 10 ] && ok "retention: 10 checkpoints written" ||
        bad "retention: $(grep -c '^checkpoint: step [0-9]* -> ' "$TMP/r.log") checkpoints written"
    [ "$(cat "$CK/latest")" = step_00000050.h5 ] && ok "retention: latest = step 50" || bad "latest"
    (cd "$CK" && sha256sum -c --quiet step_*.h5.sha256) && ok "retention: kept files match their .sha256" ||
        bad "retention: sha256 mismatch"

    must_train 2 "$TMP/s.log" --set run.dir="$TMP/s" --set train.steps=10 \
        --set checkpoint.every_seconds=0.000001 --set checkpoint.keep_last=0
    n=$(ls "$(run_of "$TMP/s" 0001)/checkpoints" | grep -c '^step_.*\.h5$')
    [ "$n" = 10 ] && ok "every_seconds=1e-6: a checkpoint after each of the 10 steps" ||
        bad "every_seconds: $n checkpoints"
    must_train 2 "$TMP/s2.log" --set run.dir="$TMP/s2" --set train.steps=10 \
        --set checkpoint.every_seconds=3600 --set checkpoint.save_final=false
    [ ! -e "$(run_of "$TMP/s2" 0001)/checkpoints/latest" ] &&
        ok "every_seconds=3600 over a short run: no checkpoint" || bad "every_seconds=3600 wrote one"

    train 2 "$TMP/refuse.log" --set run.dir="$TMP/r2" --set checkpoint.dir="$CK" --set train.steps=5
    if [ "$RC" = 2 ] && grep -q "checkpoint.dir $CK already holds 4 checkpoint(s)" "$TMP/refuse.log" &&
        [ ! -e "$TMP/r2" ]; then
        ok "a fresh run refuses a checkpoint.dir holding another run's checkpoints"
    else
        bad "fresh run into a used checkpoint.dir: exit $RC"
        tail -3 "$TMP/refuse.log"
    fi
fi

# ---------------------------------------------------------------- cli
if [ "$MODE" = cli ]; then
    must_train 1 "$TMP/t.log" --set run.dir="$TMP/t" --set train.steps=3
    f=$(run_of "$TMP/t" 0001)/checkpoints/step_00000003.h5
    "$MPITRAIN" ckpt inspect "$f" >"$TMP/i.txt" 2>&1 || bad "inspect exited $?"
    for pat in "^step: 3 \| epoch 0" "^format: mpitrain-checkpoint version 1" "matches .*sha256" \
        "^  layers = 784,256,128,10" \
        "^  /model/fc1.weight +\[256, 784\] +sha256 [0-9a-f]{64}" \
        "^  /optim/v/fc3.bias +\[10\] +sha256 [0-9a-f]{64}" "^tensors \(18, float32\)"; do
        grep -qE "$pat" "$TMP/i.txt" && ok "inspect shows /$pat/" || bad "inspect lacks /$pat/"
    done
    # the tensor checksum is the SHA-256 of the float32 data
    want=$($PY -c 'import h5py,hashlib,sys; print(hashlib.sha256(h5py.File(sys.argv[1])["/model/fc2.weight"][()].astype("<f4").tobytes()).hexdigest())' "$f")
    grep -q "/model/fc2.weight .*sha256 $want" "$TMP/i.txt" && ok "inspect checksum = sha256 of the data" ||
        bad "inspect checksum differs from h5py's"
    "$MPITRAIN" ckpt verify "$f" >/dev/null && ok "verify: intact -> 0" || bad "verify intact"
    "$MPITRAIN" ckpt verify "$(run_of "$TMP/t" 0001)/model.h5" >/dev/null
    [ $? = 4 ] && ok "verify: model.h5 -> 4" || bad "verify model.h5"
    "$MPITRAIN" ckpt verify >/dev/null 2>&1
    [ $? = 2 ] && ok "verify without FILE -> 2" || bad "verify usage"
    "$MPITRAIN" ckpt inspect "$f" extra >/dev/null 2>&1
    [ $? = 2 ] && ok "inspect with two files -> 2" || bad "inspect usage"
fi

[ $fail = 0 ] && echo "all $MODE checks passed"
exit $fail
