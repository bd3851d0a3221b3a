#!/usr/bin/env bash
# test_bad_input.sh - every bad input to `mpitrain train` fails cleanly on
# every rank (DESIGN.md decision 6: errors never hang a job).
#
# usage: tests/test_bad_input.sh PATH/TO/mpitrain REPO_ROOT
#
# Makes tiny HDF5 datasets (64 train / 32 test samples of 16 inputs, labels
# < 4, model 16-8-4) with /usr/bin/python3 + h5py, then runs each bad-input
# case under `mpirun -np 2` (some also under -np 4 and without mpirun) and
# checks:
#   (a) every rank exits with the expected status (2 usage/config, 3 data);
#       each rank runs through a wrapper that records its own exit status;
#   (b) stderr (all ranks together) holds exactly one `mpitrain: error:` line,
#       written by rank 0, naming the key or the problem (a case-specific
#       pattern), followed by at most one `mpitrain: hint:` line;
#   (b') every rank's stdout and stderr end their last line (merged with
#       2>&1, as a Slurm log is, nothing is glued to the error line);
#   (c) no hang: every run is wrapped in `timeout` (60 s; MT_CASE_TIMEOUT);
#   (d) nothing is written: the run.dir given does not exist afterwards and
#       the (fresh, empty) working directory of the run stays empty.
# A positive control (same tiny setup, valid) must train: exit 0 on every
# rank and a run folder made -- so the test cannot pass by everything failing.
# MT_BAD_INPUT_MODES (a comma list of np2, np4, direct; default all three)
# runs only those modes of each case: the sanitizer pass runs np2 alone
# (tests/sanitize/tests.cmake).
#
# Prints `ok - <case>` / `FAIL - <case>: <what differed>` per case, a
# summary, and exits 1 on any failure. h5py missing is a failure, not a skip.
set -uo pipefail

BIN=${1:?usage: test_bad_input.sh PATH/TO/mpitrain REPO_ROOT}
ROOT=${2:?usage: test_bad_input.sh PATH/TO/mpitrain REPO_ROOT}
PY=/usr/bin/python3
TMO=${MT_CASE_TIMEOUT:-60}
MODES=${MT_BAD_INPUT_MODES:-np2,np4,direct}
wanted() { [[ ",$MODES," == *",$1,"* ]]; } # wanted MODE: MODE is one to run

die() { echo "FAIL - setup: $*"; echo "# 0 passed, 1 failed"; exit 1; }

[ -x "$BIN" ] || die "mpitrain binary not found or not executable: $BIN"
[ -d "$ROOT" ] || die "repo root not found: $ROOT"
# Each run starts in its own empty folder, so make the paths absolute.
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
ROOT="$(cd "$ROOT" && pwd)"
BASECFG="$ROOT/configs/mnist_mlp.ini"
[ -f "$BASECFG" ] || die "demo config not found: $BASECFG"
command -v mpirun >/dev/null 2>&1 || die "mpirun not found (apt-get install openmpi-bin)"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) not found"
[ -x "$PY" ] || die "$PY not found (apt-get install python3-h5py python3-numpy)"
if ! err=$("$PY" -c 'import h5py, numpy' 2>&1); then
    die "$PY cannot import h5py/numpy (apt-get install python3-h5py python3-numpy): ${err##*$'\n'}"
fi

# Runnable outside ctest too (ctest sets these through ENVIRONMENT).
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=${OMPI_ALLOW_RUN_AS_ROOT:-1}
    export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=${OMPI_ALLOW_RUN_AS_ROOT_CONFIRM:-1}
fi
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

T=$(mktemp -d "${TMPDIR:-/tmp}/mt_bad_input.XXXXXX") || die "mktemp failed"
trap 'rm -rf "$T"' EXIT
D="$T/data"
mkdir -p "$D"

# ---- datasets ----
"$PY" - "$D" <<'PY' || die "making the HDF5 test datasets failed"
import os, sys
import h5py, numpy as np

d = sys.argv[1]
NTR, NTE, NIN, NCLS = 64, 32, 16, 4

def images(n, nin=NIN, seed=0):
    return np.random.default_rng(seed).random((n, nin), dtype=np.float32)

def labels(n):
    return (np.arange(n) % NCLS).astype(np.uint8)

def write(name, tri=None, trl=None, tei=None, tel=None, tri_name="/train/images"):
    with h5py.File(os.path.join(d, name), "w") as f:
        f[tri_name] = images(NTR, seed=1) if tri is None else tri
        f["/train/labels"] = labels(NTR) if trl is None else trl
        f["/test/images"] = images(NTE, seed=2) if tei is None else tei
        f["/test/labels"] = labels(NTE) if tel is None else tel

write("ok.h5")
# Bad values sit in the last samples, which only the last rank's shard holds
# when the data is split: the other ranks must still learn of the failure.
l = labels(NTR); l[NTR - 1] = NCLS;            write("label_train.h5", trl=l)
l = labels(NTE); l[NTE - 1] = 200;             write("label_test.h5", tel=l)
x = images(NTR, seed=1); x[NTR - 1, 5] = np.nan;   write("nan_train.h5", tri=x)
x = images(NTE, seed=2); x[NTE - 1, 0] = np.nan;   write("nan_test.h5", tei=x)
x = images(NTR, seed=1); x[NTR // 2 + 1, 3] = np.inf; write("inf_train.h5", tri=x)
x = images(NTR, seed=1); x[NTR - 2, 7] = -np.inf;  write("neginf_train.h5", tri=x)
write("count.h5", trl=labels(NTR - 1))
write("test_width.h5", tei=images(NTE, nin=NIN - 1, seed=2))
with open(os.path.join(d, "not_hdf5.h5"), "w") as f:
    f.write("this is not an HDF5 file\n")
PY

# ---- config files ----
C="$T/cfg"
mkdir -p "$C"
cp "$BASECFG" "$C/malformed.ini" && printf 'this line is neither key = value nor a section\n' >>"$C/malformed.ini"
cp "$BASECFG" "$C/open_section.ini" && printf '[train\nsteps = 5\n' >>"$C/open_section.ini"
cp "$BASECFG" "$C/unknown_key.ini" && printf 'bogus_file_key = 1\n' >>"$C/unknown_key.ini"
cp "$BASECFG" "$C/unknown_section.ini" && printf '[bogus_file_section]\nx = 1\n' >>"$C/unknown_section.ini"
mkdir -p "$C/dir_config.ini"

# ---- running one case ----
# Each rank runs through this wrapper: its stdout, stderr and exit status go
# to out.R, err.R and status.R in the case's folder (R = world rank). The
# wrapper itself exits 0, so mpirun does not kill the other ranks when one
# fails and every rank's own status is seen. The rank's pid goes to pid.R so
# that, after a hang, processes that outlived mpirun are killed by id.
# shellcheck disable=SC2016  # expanded by the wrapper's bash, not here
WRAP='o=$1; shift; r=${OMPI_COMM_WORLD_RANK:-0}
"$@" >"$o/out.$r" 2>"$o/err.$r" </dev/null &
echo $! >"$o/pid.$r"; wait $!; echo $? >"$o/status.$r"'

# kill_leftovers OUTDIR: after a timeout, SIGKILL any rank process still alive
# (only pids this script's wrapper recorded, and only if still running $BIN).
kill_leftovers() {
    local f pid
    for f in "$1"/pid.*; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        case "$(ps -o args= -p "$pid" 2>/dev/null)" in
            *"$BIN"*) kill -KILL "$pid" 2>/dev/null ;;
        esac
    done
}

PASS=0 FAILN=0 NCASE=0
FAILED=()

# run_mt MODE OUTDIR CWD ARGS... -> sets RC (timeout's status)
run_mt() {
    local mode=$1 out=$2 cwd=$3
    shift 3
    mkdir -p "$out" "$cwd"
    if [ "$mode" = direct ]; then
        (cd "$cwd" && exec timeout -k 10 "$TMO" bash -c "$WRAP" _ "$out" "$BIN" "$@") \
            >"$out/launcher.out" 2>"$out/launcher.err" </dev/null
    else
        (cd "$cwd" && exec timeout -k 10 "$TMO" mpirun -np "${mode#np}" bash -c "$WRAP" _ "$out" "$BIN" "$@") \
            >"$out/launcher.out" 2>"$out/launcher.err" </dev/null
    fi
    RC=$?
    if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then kill_leftovers "$out"; fi
}

nranks() { if [ "$1" = direct ]; then echo 1; else echo "${1#np}"; fi; }
label() { if [ "$1" = direct ]; then echo "no mpirun"; else echo "mpirun -np ${1#np}"; fi; }

report() { # name why...
    local name=$1
    shift
    NCASE=$((NCASE + 1))
    if [ $# -eq 0 ]; then
        PASS=$((PASS + 1))
        echo "ok - $name"
    else
        FAILN=$((FAILN + 1))
        FAILED+=("$name")
        local msg=$1
        shift
        while [ $# -gt 0 ]; do msg+="; $1"; shift; done
        echo "FAIL - $name: $msg"
    fi
}

# show stderr of a failed case, indented (helps when reading ctest output)
show_err() {
    local out=$1 f
    for f in "$out"/err.* "$out/launcher.err"; do
        [ -s "$f" ] || continue
        sed -n '1,6s/^/    | '"${f##*/}"': /p' "$f"
    done
}

# bad CODE PATTERN MODES NAME CONFIG [EXTRA ARGS...]
#   CODE: expected exit status on every rank; PATTERN: ERE (case-insensitive)
#   the error line must match; MODES: comma list of np2, np4, direct.
bad() {
    local code=$1 pat=$2 modes=$3 name=$4 cfg=$5
    shift 5
    local mode
    for mode in ${modes//,/ }; do
        wanted "$mode" || continue
        local id n
        id=$(printf 'c%02d_%s' "$NCASE" "$mode")
        n=$(nranks "$mode")
        local out="$T/out/$id" cwd="$T/cwd/$id" rd="$T/runs_$id"
        local why=()
        run_mt "$mode" "$out" "$cwd" train --config "$cfg" \
            --set "data.path=$D/ok.h5" --set model.layers=16,8,4 \
            --set train.steps=4 --set train.global_batch=8 --set train.eval_every=0 \
            --set run.log_every=1 --set run.name=bad_input --set "run.dir=$rd" "$@"
        # (c) no hang
        if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then
            why+=("hang: no exit within ${TMO} s (timeout status $RC)")
        elif [ "$RC" != 0 ]; then
            why+=("launcher exited $RC (a rank aborted or was killed?)")
        fi
        # (a) exit status on every rank
        local r st got=""
        for ((r = 0; r < n; r++)); do
            if [ -f "$out/status.$r" ]; then
                st=$(cat "$out/status.$r")
            else
                st=none
            fi
            got+="${got:+ }$st"
        done
        local want=""
        for ((r = 0; r < n; r++)); do want+="${want:+ }$code"; done
        [ "$got" = "$want" ] || why+=("exit status per rank [$got], want [$want]")
        # (b) exactly one error line, from rank 0, naming the problem
        local nerr nerr0 errline next
        nerr=$(cat "$out"/err.* 2>/dev/null | grep -c '^mpitrain: error:')
        nerr0=$(grep -c '^mpitrain: error:' "$out/err.0" 2>/dev/null)
        if [ "$nerr" != 1 ]; then
            why+=("$nerr 'mpitrain: error:' lines on stderr, want 1")
        elif [ "$nerr0" != 1 ]; then
            why+=("the error line did not come from rank 0")
        else
            errline=$(grep '^mpitrain: error:' "$out/err.0")
            grep -Eqi -- "$pat" <<<"$errline" ||
                why+=("error line does not match /$pat/: $errline")
            local nh
            nh=$(cat "$out"/err.* | grep -c '^mpitrain: hint:')
            if [ "$nh" -gt 1 ]; then
                why+=("$nh hint lines, want at most 1")
            elif [ "$nh" = 1 ] && ! { next=$(grep -A1 '^mpitrain: error:' "$out/err.0" | tail -n 1) &&
                grep -q '^mpitrain: hint:' <<<"$next"; }; then
                why+=("hint line does not directly follow the error line on rank 0")
            fi
        fi
        # (b') every stream ends its last line: merged (2>&1, as Slurm logs
        # them), an unterminated stdout line would swallow the error line
        local f
        for f in "$out"/out.* "$out"/err.*; do
            [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ] && why+=("${f##*/} does not end its last line")
        done
        # (d) no partial output
        if [ -e "$rd" ]; then
            why+=("run.dir $rd was created ($(find "$rd" | wc -l) entries: $(find "$rd" -mindepth 1 | sed "s|^$rd/||" | head -n 4 | tr '\n' ' '))")
        fi
        if [ -n "$(ls -A "$cwd")" ]; then
            why+=("files left in the working directory: $(ls -A "$cwd" | head -n 4 | tr '\n' ' ')")
        fi
        report "$name ($(label "$mode"))" "${why[@]}"
        [ ${#why[@]} -eq 0 ] || show_err "$out"
    done
}

# good MODES: the positive control
good() {
    local modes=$1 mode
    for mode in ${modes//,/ }; do
        wanted "$mode" || continue
        local id n
        id=$(printf 'c%02d_%s' "$NCASE" "$mode")
        n=$(nranks "$mode")
        local out="$T/out/$id" cwd="$T/cwd/$id" rd="$T/runs_$id"
        local why=()
        run_mt "$mode" "$out" "$cwd" train --config "$BASECFG" \
            --set "data.path=$D/ok.h5" --set model.layers=16,8,4 \
            --set train.steps=4 --set train.global_batch=8 --set train.eval_every=0 \
            --set run.log_every=1 --set run.name=bad_input --set "run.dir=$rd"
        if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then
            why+=("hang: no exit within ${TMO} s")
        elif [ "$RC" != 0 ]; then
            why+=("launcher exited $RC")
        fi
        local r got="" want=""
        for ((r = 0; r < n; r++)); do
            got+="${got:+ }$(cat "$out/status.$r" 2>/dev/null || echo none)"
            want+="${want:+ }0"
        done
        [ "$got" = "$want" ] || why+=("exit status per rank [$got], want [$want]")
        local nerr
        nerr=$(cat "$out"/err.* 2>/dev/null | grep -c '^mpitrain: error:')
        [ "$nerr" = 0 ] || why+=("$nerr error lines on stderr")
        local runf
        runf=$(find "$rd/bad_input" -mindepth 1 -maxdepth 1 -type d -name '[0-9][0-9][0-9][0-9]' 2>/dev/null | head -n 1)
        if [ -z "$runf" ]; then
            why+=("no run folder $rd/bad_input/NNNN made")
        elif [ -z "$(ls -A "$runf")" ]; then
            why+=("run folder $runf is empty")
        fi
        report "positive control: valid tiny setup trains ($(label "$mode"))" "${why[@]}"
        [ ${#why[@]} -eq 0 ] || show_err "$out"
    done
}

START=$SECONDS
echo "# mpitrain bad-input checks ($BIN), modes $MODES, temp dir $T"

good np2,np4,direct

# data (exit 3)
bad 3 'missing\.h5' np2,np4,direct "missing data file" "$BASECFG" \
    --set "data.path=$D/missing.h5"
bad 3 'not_hdf5\.h5' np2 "data file is not HDF5" "$BASECFG" \
    --set "data.path=$D/not_hdf5.h5"
bad 3 '/train/imgs' np2,np4 "wrong dataset name" "$BASECFG" \
    --set data.train_images=/train/imgs
bad 3 '/test/lbls' np2 "wrong test dataset name" "$BASECFG" \
    --set data.test_labels=/test/lbls
bad 3 'inputs|model\.layers' np2,np4,direct "shape mismatch: inputs per sample != first layer" "$BASECFG" \
    --set model.layers=20,8,4
bad 3 'inputs|15|/test/images' np2 "test inputs per sample != train inputs" "$BASECFG" \
    --set "data.path=$D/test_width.h5"
bad 3 'label' np2,np4,direct "train label out of range" "$BASECFG" \
    --set "data.path=$D/label_train.h5"
bad 3 'label' np2 "test label out of range" "$BASECFG" \
    --set "data.path=$D/label_test.h5"
bad 3 '(^|[^a-z])nan([^a-z]|$)|not a number|not finite|non-finite' np2,np4,direct "NaN in the train images" "$BASECFG" \
    --set "data.path=$D/nan_train.h5"
bad 3 '(^|[^a-z])nan([^a-z]|$)|not a number|not finite|non-finite' np2 "NaN in the test images" "$BASECFG" \
    --set "data.path=$D/nan_test.h5"
bad 3 '(^|[^a-z])inf([^a-z]|$)|infinit|not finite|non-finite' np2,np4 "Inf in the train images" "$BASECFG" \
    --set "data.path=$D/inf_train.h5"
bad 3 '(^|[^a-z])inf([^a-z]|$)|infinit|not finite|non-finite' np2 "-Inf in the train images" "$BASECFG" \
    --set "data.path=$D/neginf_train.h5"
bad 3 'label.*63|63.*label' np2,np4 "labels count != images count" "$BASECFG" \
    --set "data.path=$D/count.h5"

# configuration and usage (exit 2)
bad 2 'bogus_key' np2,np4,direct "unknown config key (--set)" "$BASECFG" \
    --set train.bogus_key=1
bad 2 'bogus_file_key' np2 "unknown config key (in the file)" "$C/unknown_key.ini"
bad 2 'bogus_section' np2 "unknown section (--set)" "$BASECFG" \
    --set bogus_section.x=1
bad 2 'bogus_file_section' np2,np4 "unknown section (in the file)" "$C/unknown_section.ini"
bad 2 'optim\.lr|(^|[^a-z])lr([^a-z]|$)' np2,np4,direct "malformed number (optim.lr=abc)" "$BASECFG" \
    --set optim.lr=abc
bad 2 'train\.steps|steps' np2 "malformed integer (train.steps=1.5)" "$BASECFG" \
    --set train.steps=1.5
bad 2 'divisible' np2 "global batch not divisible by ranks (7 on 2)" "$BASECFG" \
    --set train.global_batch=7
bad 2 'divisible' np4 "global batch not divisible by ranks (6 on 4)" "$BASECFG" \
    --set train.global_batch=6
bad 2 'optim\.lr|(^|[^a-z])lr([^a-z]|$)' np2,direct "negative learning rate" "$BASECFG" \
    --set optim.lr=-0.1
bad 2 'steps' np2,np4,direct "zero steps" "$BASECFG" \
    --set train.steps=0
bad 2 'malformed|line [0-9]' np2,np4,direct "malformed INI line" "$C/malformed.ini"
bad 2 'malformed|line [0-9]|section' np2 "unterminated [section header" "$C/open_section.ini"
bad 2 'nope\.ini' np2,np4,direct "missing config file" "$T/cfg/nope.ini"
bad 2 'dir_config\.ini' np2,np4,direct "config file is a directory" "$C/dir_config.ini"
bad 2 'train\.steps|section\.key=value' np2,np4,direct "--set without '='" "$BASECFG" \
    --set train.steps

ELAPSED=$((SECONDS - START))
echo "# $PASS passed, $FAILN failed, $NCASE checks in ${ELAPSED} s"
if [ "$FAILN" -gt 0 ]; then
    printf '# failed: %s\n' "${FAILED[@]}"
    exit 1
fi
exit 0
