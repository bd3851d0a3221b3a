# cases.sh - what every fault case of tests/faults checks (docs/FAULTS.md),
# sourced by the scripts there after tests/lib.sh, with the scripts'
# arguments: MPITRAIN H5CMP IOFAULT REPO DATA.h5. It runs the reference (an
# uninterrupted run) and gives:
#   TRAIN           the run every case starts: a 784-256-128-10 MLP on MNIST,
#                   12 steps of 500 at -np 2, a checkpoint every 4 steps (all
#                   kept), checkpoint.timeout 9 s (the kill cases wait for it)
#   fault_run CASE [VAR=VALUE...] -- [ARGS...]
#                   TRAIN (+ ARGS) on NP ranks (default 2) through run_wrapped with the
#                   environment given (MT_IOFAULT, MPITRAIN_FAULT, ...), run.dir
#                   $TMP/CASE/runs, registry $TMP/CASE/registry.jsonl (seeded
#                   with the reference's records), outputs in $TMP/CASE/o, the
#                   shim's log in $TMP/CASE/iofault.log; in the background when
#                   BG=1 (its pid in BG_PID)
#   SHIM            VAR=VALUE words that load the shim (add MT_IOFAULT=...)
#                   With PLAIN=1, mpirun runs the ranks itself (no WRAP): its
#                   status is kept, its stderr (the ranks' and its own) is in
#                   $TMP/CASE/o/launcher, its stdout in launcher.out
#   ended CASE STATUSES PATTERN
#                   each of NP ranks (default 2) exited with STATUSES ("4 4"; "-" for a rank its
#                   launcher ended; "mpirun 4": mpirun's status after
#                   PLAIN=1) and the output holds exactly one
#                   "mpitrain: error:" line, which matches PATTERN (grep -E),
#                   no "mpitrain: warning:" line and no other stray line on
#                   stderr (tests/lib.sh stray_lines)
#   fired CASE PATTERN
#                   the shim logged an injection matching PATTERN
#   CKDIR[CASE]     the case's checkpoint.dir, when not the run's own folder
#   intact CASE LATEST
#                   nothing lost: every checkpoint file left verifies
#                   (mpitrain ckpt verify), `latest` names LATEST ("" = no
#                   `latest`; "*" = any file that is there, or none), the registry still begins with every byte it
#                   held before the run and every line of it is a valid record
#   resumed CASE FROM [ARGS...]
#                   the fault gone, checkpoint.resume=auto (+ ARGS) continues
#                   from step FROM (0: starts afresh; "*": from whichever
#                   checkpoint it finds) to step 12, and that final
#                   checkpoint equals the reference's bitwise (h5cmp)
# shellcheck shell=bash disable=SC2034  # TRAIN, SHIM: for the scripts
MPITRAIN=$(realpath "$1") H5CMP=$(realpath "$2") IOFAULT=$(realpath "$3") REPO=$(realpath "$4")
DATA=$(realpath "$5")
TRAIN=(train --config "$REPO/configs/mnist_mlp.ini" --set data.path="$DATA"
    --set train.global_batch=500 --set train.steps=12 --set train.eval_every=0
    --set run.log_every=1 --set checkpoint.every_steps=4 --set checkpoint.keep_last=0
    --set checkpoint.timeout=9)
SHIM=(LD_PRELOAD="$IOFAULT")
T_START=$(date +%s)
MPIRUN_OPTS=() # mpirun options of the fault runs (test_kill.sh: --enable-recovery)

case_dir() { echo "$TMP/$1"; }
# the case's registry: $TMP/CASE/registry.jsonl, or REGISTRY[CASE]
declare -A REGISTRY
registry_of() { echo "${REGISTRY[$1]:-$TMP/$1/registry.jsonl}"; }
# its checkpoint folder: the run's own, or CKDIR[CASE] (checkpoint.dir)
declare -A CKDIR
ckpt_dir() { echo "${CKDIR[$1]:-$TMP/$1/runs/mnist_mlp/0001/checkpoints}"; }
ckdir_args() { [ -z "${CKDIR[$1]:-}" ] || echo "--set checkpoint.dir=${CKDIR[$1]}"; }

fault_run() {
    local c=$1 envs=() d
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    [ $# -gt 0 ] && shift
    d=$(case_dir "$c")
    mkdir -p "$d"
    local reg
    reg=$(registry_of "$c")
    [ -f "$reg" ] || cp "$TMP/ref/runs/registry.jsonl" "$reg"
    cp "$reg" "$d/registry.before"
    local args=("${TRAIN[@]}" --set run.dir="$d/runs" --set registry.path="$reg" "$@")
    # shellcheck disable=SC2207 # no spaces in the test's paths
    args+=($(ckdir_args "$c"))
    # a subshell: the environment given is the run's only
    if [ "${BG:-0}" = 1 ]; then
        (
            export MT_IOFAULT_LOG="$d/iofault.log" ${envs[@]+"${envs[@]}"}
            run_wrapped "${NP:-2}" "$d/o" "${args[@]}"
        ) &
        BG_PID=$!
    elif [ "${PLAIN:-0}" = 1 ]; then # no wrapper: mpirun's own status and output
        mkdir -p "$d/o"
        (
            export MT_IOFAULT_LOG="$d/iofault.log" ${envs[@]+"${envs[@]}"}
            timeout -k 5 120 mpirun ${MPIRUN_OPTS[@]+"${MPIRUN_OPTS[@]}"} -np 2 "$MPITRAIN" \
                "${args[@]}" >"$d/o/launcher.out" 2>"$d/o/launcher" </dev/null
        )
        echo $? >"$d/o/mpirun.status"
    else
        (
            export MT_IOFAULT_LOG="$d/iofault.log" ${envs[@]+"${envs[@]}"}
            run_wrapped "${NP:-2}" "$d/o" "${args[@]}"
            exit "$RC"
        )
        RC=$?
    fi
}

# await_line CASE PATTERN: until rank 0's stdout has a line matching PATTERN
# (30 s at most)
await_line() {
    local f
    f=$(case_dir "$1")/o/out.0
    for _ in $(seq 300); do
        grep -aq -- "$2" "$f" 2>/dev/null && return 0
        sleep 0.1
    done
    bad "$1: no line '$2' in 30 s"
    return 1
}

ended() {
    local c=$1 want=$2 pat=$3 o got lines stray
    o=$(case_dir "$c")/o
    got=$(rank_statuses "$o" "${NP:-2}")
    [ -f "$o/mpirun.status" ] && got="mpirun $(cat "$o/mpirun.status")"
    lines=$(error_lines "$o")
    # a warning beside the error (a second report of the same failure) is noise too
    lines+=$(cat "$o"/out.* "$o"/err.* "$o/launcher" 2>/dev/null | grep -a '^mpitrain: warning:' |
        sed 's/^/\n/')
    stray=$(stray_lines "$o")
    if [ "$got" = "$want" ] && [ "$(printf '%s\n' "$lines" | grep -c .)" = 1 ] &&
        printf '%s\n' "$lines" | grep -Eq -- "$pat" && [ -z "$stray" ]; then
        ok "$c: exit status $got; one error line: $(printf '%s' "$lines" | cut -c1-150)"
    else
        bad "$c: exit statuses '$got' (want '$want'), error lines (want one matching '$pat'):"
        printf '%s\n' "$lines" | sed 's/^/   | /'
        [ -z "$stray" ] || echo "   other output on stderr (tests/lib.sh STRAY_OK):"
        printf '%s\n' "$stray" | grep . | head -8 | sed 's/^/   | /'
    fi
}

fired() {
    local log
    log=$(case_dir "$1")/iofault.log
    if grep -Eq -- "$2" "$log" 2>/dev/null; then
        ok "$1: the shim injected it: $(grep -E -m1 -- "$2" "$log" | sed "s|$TMP/||")"
    else
        bad "$1: the shim logged no '$2' (log: $(cat "$log" 2>/dev/null))"
    fi
}

intact() {
    local c=$1 want=$2 d k why=() latest="" n=0
    d=$(ckpt_dir "$c")
    for k in "$d"/step_*.h5; do
        [ -e "$k" ] || continue
        n=$((n + 1))
        "$MPITRAIN" ckpt verify "$k" >/dev/null 2>&1 || why+=("${k##*/} does not verify")
    done
    [ -f "$d/latest" ] && latest=$(cat "$d/latest")
    if [ "$want" = "*" ]; then
        [ -z "$latest" ] || [ -f "$d/$latest" ] || why+=("latest names $latest, which is not there")
    else
        [ "$latest" = "$want" ] || why+=("latest is '$latest', not '$want'")
    fi
    starts_with "$(registry_of "$c")" "$(case_dir "$c")/registry.before" ||
        why+=("the registry lost bytes it held before the run")
    $PY "$REPO/tests/registry_check.py" "$REPO/docs/registry.schema.json" \
        "$(registry_of "$c")" >"$TMP/regcheck.txt" 2>&1 ||
        why+=("the registry has an invalid line: $(grep -E '^line [0-9]+.*:' "$TMP/regcheck.txt" | head -2)")
    if [ ${#why[@]} = 0 ]; then
        ok "$c: nothing lost (checkpoints: $n verify," \
            "latest '${latest}', registry kept its $(wc -l <"$(case_dir "$c")/registry.before") lines)"
    else
        bad "$c: ${why[*]}"
    fi
}

resumed() {
    local c=$1 from=$2 o d
    d=$(case_dir "$c")
    o=$d/resume
    rm -rf "$o"
    # shellcheck disable=SC2046 # no spaces in the test's paths
    run_wrapped 2 "$o" "${TRAIN[@]}" --set run.dir="$d/runs" \
        --set registry.path="$(registry_of "$c")" --set checkpoint.resume=auto "${@:3}" $(ckdir_args "$c")
    local got
    got=$(rank_statuses "$o" 2)
    if [ "$got" != "0 0" ]; then
        bad "$c: the resume exited $got"
        cat "$o/err.0" | sed 's/^/   | /'
        return
    fi
    if [ "$from" = "*" ]; then
        from=$(grep -ao '^resume: from .*step_[0-9]*\.h5' "$o/out.0" | grep -o '[0-9]*\.h5' | sed 's/^0*//; s/\.h5//')
        from=${from:-0}
    elif [ "$from" = 0 ]; then
        grep -q '^resume: from' "$o/out.0" && bad "$c: resumed, though nothing was left to resume from"
    else
        grep -q "^resume: from .*step_$(printf %08d "$from").h5" "$o/out.0" ||
            bad "$c: did not resume from step $from: $(grep -a '^resume' "$o/out.0")"
    fi
    local last
    last=$(ls -d "$d"/runs/mnist_mlp/[0-9]* | tail -1)/checkpoints
    [ -z "${CKDIR[$c]:-}" ] || last=${CKDIR[$c]}
    cmp_h5 "$c: resumed from step $from to 12, bitwise equal to the uninterrupted run" \
        "$TMP/ref/runs/mnist_mlp/0001/checkpoints/step_00000012.h5" \
        "$last/step_00000012.h5" --bitwise
}

# the reference
run_wrapped 2 "$TMP/ref/o" "${TRAIN[@]}" --set run.dir="$TMP/ref/runs"
[ "$(rank_statuses "$TMP/ref/o" 2)" = "0 0" ] || {
    bad "the reference run exited $(rank_statuses "$TMP/ref/o" 2)"
    tail -5 "$TMP/ref/o/err.0"
    exit 1
}
