#!/usr/bin/env bash
# test_device_check.sh - scripts/device_check.sh without a GPU:
#   1. --dry-run-cpu (every stage on the CPU, the build's binaries): exit 0
#      within 90 s; results.json has every stage with a valid status, a reason
#      for each not_available or skipped one; at most 8 files, at most two
#      folders deep, under --out; stdout ends with the table (one row per
#      stage, then the total);
#   2. the same with a planted broken test_backend_cmp (one FAIL line on the
#      small shapes, a hang on the GPT-2 shapes) and --deadline 50: exit 1,
#      ops_small failed with the planted line as its reason, ops_gpt2 timed
#      out (or skipped for the deadline), the stages after it skipped for the
#      deadline, and the whole run within the deadline + 6 s;
#      nothing the hanging stage started outlives it (no process left with
#      its token, DC_TOKEN=dc.PID.*, in its environment);
#   2b. --stages ops_small,trajectory: those pass, the others are skipped as
#      "not selected"; an unknown stage name: exit 2, one error line;
#   2c. planted hangs inside the trajectory runs (a stand-in mpirun and
#      python3 first on PATH: the unfused, bf16 and PyTorch runs hang deaf to
#      TERM, so that the stage's time runs out; the unfused one also leaves a
#      process in a session of its own that no timeout reaches): the stage
#      times out, the fused row done before the hangs is in results.json, and
#      nothing with the stage's token survives;
#   2d. TERM while a stage hangs: exit 1 within a few seconds, results.json
#      written ("killed by signal TERM", the stage failed), nothing left behind;
#   3. without --dry-run-cpu on this machine (no GPU): the preflight exits 77
#      with one "device_check.sh: error: no GPU ..." line, results.json still
#      written (every stage skipped, with that reason); skipped when this
#      machine has nvidia-smi;
#   4. a stand-in GPU machine (a fake nvidia-smi, a bundle of this build's
#      binaries): exit 2 for a bundle without the trajectory reference or
#      without bin/mpirun, 78 for a driver whose CUDA is older than the
#      binaries', 79 for a library the binaries need and the loader cannot
#      find; and the whole GPU-mode run (every stage's GPU branch, a
#      test_backend_cmp that aborts with a CUDA error line) to a results.json:
#      exit 1, the crash's error line in ops_small's reason,
#      MPITRAIN_CUDA_SYNC=1 for ops_small but not for op_times;
#   5. a bad argument: exit 2 with one error line.
# usage: tests/test_device_check.sh REPO BUILD_DIR
# shellcheck disable=SC2015 # "COND && ok ... || bad ...": ok only prints
set -uo pipefail
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
REPO=$1 BUILD=$2
DC=$REPO/scripts/device_check.sh

# check_out OUT STDOUT EXIT: the checks of 1. on one run's folder and output
check_out() {
    $PY - "$1" "$2" "$3" <<'EOF'
import json, os, sys
out, stdout, code = sys.argv[1], sys.argv[2], int(sys.argv[3])
stages = ["preflight", "sanitizer", "ops_small", "ops_gpt2", "trajectory", "benchmark",
          "op_times", "trajectory_parallel"]
valid = {"passed", "failed", "skipped", "not_available", "timeout"}
errs = []
r = json.load(open(os.path.join(out, "results.json")))
if r["exit_status"] != code:
    errs.append(f"results.json exit_status {r['exit_status']}, the script exited {code}")
names = [s["name"] for s in r["stages"]]
if names != stages:
    errs.append(f"stages {names}, expected {stages}")
for s in r["stages"]:
    if s["status"] not in valid:
        errs.append(f"{s['name']}: status {s['status']!r}")
    if s["status"] in ("not_available", "skipped", "failed", "timeout") and not s["reason"].strip():
        errs.append(f"{s['name']}: {s['status']} without a reason")
files = []
for d, _, fs in os.walk(out):
    depth = os.path.relpath(d, out).count(os.sep) + (d != out)
    if depth > 2:
        errs.append(f"{d}: more than two folders deep")
    files += fs
if len(files) > 8:
    errs.append(f"{len(files)} files under {out}: {files}")
lines = open(stdout).read().rstrip("\n").split("\n")
try:
    head = max(i for i, l in enumerate(lines) if l.startswith("| stage | status |"))
except ValueError:
    head = None
if head is None:
    errs.append("no table header in stdout")
else:
    rows = lines[head + 2:]
    if [l.split("|")[1].strip() for l in rows] != stages + ["total"] or any(not l.startswith("| ") for l in rows):
        errs.append(f"stdout does not end with the table: {rows[-3:]}")
for e in errs:
    print(e)
print("stages: " + ", ".join(f"{s['name']} {s['status']}" for s in r["stages"]))
sys.exit(1 if errs else 0)
EOF
}
status_of() { # status_of OUT STAGE: "status<TAB>reason<TAB>seconds<TAB>budget"
    $PY -c 'import json, sys
s = next(s for s in json.load(open(sys.argv[1] + "/results.json"))["stages"] if s["name"] == sys.argv[2])
print(s["status"], s["reason"], s["seconds"], s["budget_s"], sep="\t")' "$1" "$2"
}

# ---- 1. the dry run ----
t0=$(date +%s)
bash "$DC" --dry-run-cpu --build "$BUILD" --out "$TMP/dry" >"$TMP/dry.out" 2>"$TMP/dry.err"
rc=$? secs=$(($(date +%s) - t0))
if [[ $rc == 0 ]]; then ok "dry run exit 0 in $secs s"; else bad "dry run exit $rc"; tail -20 "$TMP/dry.out" "$TMP/dry.err"; fi
((secs < 90)) && ok "dry run under 90 s ($secs s)" || bad "dry run took $secs s (>= 90)"
if check_out "$TMP/dry" "$TMP/dry.out" "$rc" >"$TMP/check.txt"; then
    ok "results.json, the output folder and the table ($(tail -n 1 "$TMP/check.txt"))"
else
    bad "dry run output"
    sed 's/^/   | /' "$TMP/check.txt"
fi
IFS=$'\t' read -r st why _ <<<"$(status_of "$TMP/dry" sanitizer)"
[[ $st == not_available && $why == *"no GPU"* ]] && ok "sanitizer not_available: $why" ||
    bad "sanitizer: $st ($why), expected not_available for no GPU"
for s in ops_small ops_gpt2 trajectory benchmark op_times trajectory_parallel; do
    IFS=$'\t' read -r st why _ <<<"$(status_of "$TMP/dry" $s)"
    [[ $st == passed ]] && ok "$s passed: ${why:0:120}" || bad "$s: $st ($why)"
done
tail -n 10 "$TMP/dry.out" | sed 's/^/   /'

# ---- 2. a planted failure and a hang, under a short deadline ----
mkdir -p "$TMP/broken/tests"
ln -s "$BUILD/mpitrain" "$TMP/broken/mpitrain"
[[ -x "$BUILD/tests/test_backend_bf16" ]] && ln -s "$BUILD/tests/test_backend_bf16" "$TMP/broken/tests/"
cat >"$TMP/broken/tests/test_backend_cmp" <<'EOF'
#!/bin/bash
case " $* " in *" --shapes gpt2 "*) exec sleep 1000 ;; esac
echo "FAIL planted by test_device_check.sh: matmul ta0 tb0: normalized error 1.00e+00 > 1e-05"
echo "backend_cmp (self-check): 1 checks, 0 passed, 1 failed"
exit 1
EOF
chmod +x "$TMP/broken/tests/test_backend_cmp"
# token_left PID: the processes still alive with a stage token of device_check.sh PID
# (DC_TOKEN=dc.PID.STAGE.N in their environment), killed here once reported
token_left() {
    local pids
    pids=$(grep -lzF "DC_TOKEN=dc.$1." /proc/[0-9]*/environ 2>/dev/null | sed -n 's|^/proc/\([0-9]*\)/environ$|\1|p' | tr '\n' ' ')
    [[ -z "${pids// /}" ]] && return 1
    pids=${pids% }
    ps -o pid=,args= -p "${pids// /,}" 2>/dev/null | sed 's/^/   | left: /'
    # shellcheck disable=SC2086 # one word per pid
    kill -KILL $pids 2>/dev/null
    return 0
}
t0=$(date +%s)
bash "$DC" --dry-run-cpu --build "$TMP/broken" --deadline 50 --out "$TMP/broken_out" >"$TMP/broken.out" 2>&1 &
dcpid=$!
wait "$dcpid"
rc=$? secs=$(($(date +%s) - t0))
[[ $rc == 1 ]] && ok "planted failure: exit 1" || bad "planted failure: exit $rc, expected 1"
((secs <= 56)) && ok "--deadline 50 kept: $secs s" || bad "--deadline 50: took $secs s"
check_out "$TMP/broken_out" "$TMP/broken.out" "$rc" >"$TMP/check.txt" && ok "its output is complete" ||
    { bad "planted failure: output"; sed 's/^/   | /' "$TMP/check.txt"; }
IFS=$'\t' read -r st why _ <<<"$(status_of "$TMP/broken_out" ops_small)"
[[ $st == failed && $why == *"FAIL planted"* ]] && ok "ops_small failed: ${why:0:100}" ||
    bad "ops_small: $st ($why), expected failed with the planted line"
IFS=$'\t' read -r st why s2 lim <<<"$(status_of "$TMP/broken_out" ops_gpt2)"
if [[ $st == timeout ]] && ((s2 <= lim + 6)); then
    ok "ops_gpt2 (hangs) timed out after $s2 s (limit $lim s)"
elif [[ $st == skipped && $why == deadline* ]]; then
    ok "ops_gpt2 skipped: $why"
else
    bad "ops_gpt2: $st ($why, $s2 s, limit $lim), expected timeout or a deadline skip"
fi
IFS=$'\t' read -r st why _ <<<"$(status_of "$TMP/broken_out" trajectory_parallel)"
[[ $st == skipped && $why == deadline* ]] && ok "the last stage skipped: $why" ||
    bad "trajectory_parallel: $st ($why), expected skipped for the deadline"
token_left "$dcpid" && bad "processes of the hanging stage survived it" || ok "nothing of the hanging stage survived it"

# ---- 2b. --stages: a rerun of some stages only ----
bash "$DC" --dry-run-cpu --build "$BUILD" --stages ops_small,trajectory --out "$TMP/sel_out" \
    >"$TMP/sel.out" 2>"$TMP/sel.err"
rc=$?
sel_ok=1
for s in sanitizer ops_small ops_gpt2 trajectory benchmark op_times trajectory_parallel; do
    IFS=$'\t' read -r st why _ <<<"$(status_of "$TMP/sel_out" "$s")"
    case $s in
        ops_small | trajectory) [[ $st == passed ]] || sel_ok=0 ;;
        *) [[ $st == skipped && $why == "not selected"* ]] || sel_ok=0 ;;
    esac
done
[[ $rc == 0 && $sel_ok == 1 ]] && ok "--stages ops_small,trajectory: those two passed, the rest 'not selected'" ||
    { bad "--stages: exit $rc"; tail -12 "$TMP/sel.out"; }
bash "$DC" --dry-run-cpu --build "$BUILD" --stages bogus --out "$TMP/sel2" >/dev/null 2>"$TMP/sel2.err"
rc=$?
[[ $rc == 2 ]] && grep -q "^device_check.sh: error: --stages: unknown stage 'bogus'" "$TMP/sel2.err" &&
    ok "--stages bogus: exit 2, one error line" || bad "--stages bogus: exit $rc: $(cat "$TMP/sel2.err")"

# ---- 2c. a hang inside a trajectory run ----
mkdir -p "$TMP/hangbin"
cat >"$TMP/hangbin/mpirun" <<EOF
#!/bin/bash
# the unfused and bf16 runs hang, deaf to TERM (only their timeouts' KILL ends
# them); the unfused one leaves a process in a session of its own (out of reach
# of every timeout's process group: only the stage's token finds it)
case " \$* " in
    *train.fused=false*)
        setsid sleep 991 </dev/null >/dev/null 2>&1 &
        echo "\$!" >"$TMP/escaped.pid"
        trap '' TERM
        exec sleep 992 ;;
    *train.precision=bf16*)
        trap '' TERM
        exec sleep 993 ;;
esac
exec $(command -v mpirun) "\$@"
EOF
# PyTorch's run hangs too (deaf to TERM): three hung runs of at least 10 s
# each (5 s, the least timeout, then KILL 5 s later) outlast the stage
cat >"$TMP/hangbin/python3" <<EOF
#!/bin/bash
case " \$* " in *gpt_parity.py*) trap '' TERM; exec sleep 994 ;; esac
exec $PY "\$@"
EOF
chmod +x "$TMP/hangbin/mpirun" "$TMP/hangbin/python3"
PATH="$TMP/hangbin:$PATH" bash "$DC" --dry-run-cpu --build "$BUILD" --stages trajectory --deadline 40 \
    --out "$TMP/hang_out" >"$TMP/hang.out" 2>&1 &
dcpid=$!
wait "$dcpid"
rc=$?
IFS=$'\t' read -r st why s2 lim <<<"$(status_of "$TMP/hang_out" trajectory)"
[[ $rc == 1 && $st == timeout ]] && ok "hung trajectory runs: exit 1, $st in $s2 s (limit $lim): ${why:0:120}" ||
    { bad "a hung trajectory run: exit $rc, $st ($why)"; tail -15 "$TMP/hang.out"; }
rows=$($PY -c 'import json, sys
s = next(s for s in json.load(open(sys.argv[1] + "/results.json"))["stages"] if s["name"] == "trajectory")
n = s["numbers"]
print(n.get("trajectory fp32 fused: cpu vs CPU reference", "none")[:7], n.get("trajectory fp32 unfused: cpu vs CPU reference", "none")[:7])' "$TMP/hang_out")
[[ $rows == "passed: FAILED:" ]] && ok "the row done before the hang kept (fused passed, unfused FAILED)" ||
    bad "trajectory rows after a hang: '$rows', expected 'passed: FAILED:'"
if token_left "$dcpid"; then
    bad "processes of the trajectory stage survived it"
elif [[ -s "$TMP/escaped.pid" && "$(ps -o stat= -p "$(cat "$TMP/escaped.pid")")" != [^Z]* ]]; then
    # (gone, or a zombie its new parent has not reaped yet)
    ok "nothing with the stage's token survived (the escaped sleep $(cat "$TMP/escaped.pid") too)"
else
    bad "the planted escaped process did not start, or survived ($(cat "$TMP/escaped.pid" 2>/dev/null))"
fi

# ---- 2d. TERM while a stage hangs ----
bash "$DC" --dry-run-cpu --build "$TMP/broken" --stages ops_gpt2 --deadline 100 --out "$TMP/term_out" \
    >"$TMP/term.out" 2>&1 &
dcpid=$!
for _ in $(seq 100); do
    grep -q '^stage ops_gpt2: limit' "$TMP/term.out" && break
    sleep 0.2
done
sleep 1
t0=$(date +%s)
kill -TERM "$dcpid"
wait "$dcpid"
rc=$? secs=$(($(date +%s) - t0))
IFS=$'\t' read -r st why _ <<<"$(status_of "$TMP/term_out" ops_gpt2)"
if [[ $rc == 1 ]] && ((secs <= 5)) && [[ $st == failed && $why == "killed by signal TERM"* ]] &&
    grep -q '"reason":"killed by signal TERM"' "$TMP/term_out/results.json"; then
    ok "TERM: exit 1 in $secs s, results.json written, ops_gpt2: $why"
else
    bad "TERM: exit $rc in $secs s, ops_gpt2 $st ($why)"
    tail -5 "$TMP/term.out"
fi
token_left "$dcpid" && bad "processes of the stage killed by TERM survived it" || ok "nothing of the TERMed stage survived"

# ---- 3. the preflight without a GPU ----
if command -v nvidia-smi >/dev/null; then
    echo "skip - the no-GPU preflight: this machine has nvidia-smi"
else
    bash "$DC" --out "$TMP/nogpu" >"$TMP/nogpu.out" 2>"$TMP/nogpu.err"
    rc=$?
    [[ $rc == 77 ]] && ok "no GPU: exit 77" || bad "no GPU: exit $rc, expected 77"
    if [[ $(wc -l <"$TMP/nogpu.err") == 1 ]] && grep -q '^device_check.sh: error: no GPU' "$TMP/nogpu.err"; then
        ok "one reason line: $(cat "$TMP/nogpu.err")"
    else
        bad "no GPU: stderr is not one 'device_check.sh: error: no GPU' line"
        sed 's/^/   | /' "$TMP/nogpu.err"
    fi
    check_out "$TMP/nogpu" "$TMP/nogpu.out" "$rc" >"$TMP/check.txt" && ok "results.json and table still written" ||
        { bad "no GPU: output"; sed 's/^/   | /' "$TMP/check.txt"; }
    IFS=$'\t' read -r st why _ <<<"$(status_of "$TMP/nogpu" benchmark)"
    [[ $st == skipped && $why == *"no GPU"* ]] && ok "stages skipped: $why" || bad "benchmark: $st ($why)"
fi

# ---- 4. a stand-in GPU machine: a fake nvidia-smi first on PATH, a bundle of
# this build's binaries (no CUDA in them: every stage's GPU branch fails) ----
if command -v nvidia-smi >/dev/null; then
    echo "skip - the stand-in GPU machine: this machine has nvidia-smi"
else
    mkdir -p "$TMP/fake" "$TMP/fb/bin" "$TMP/fb/reference"
    cat >"$TMP/fake/nvidia-smi" <<'EOF2'
#!/bin/bash
if [[ "$*" == *--query-gpu* ]]; then echo "NVIDIA H200, 9.0, 140000, 143771, 580.159.03"; exit 0; fi
echo "| NVIDIA-SMI 580.159.03   Driver Version: 580.159.03   CUDA Version: ${FAKE_CUDA:-13.0}     |"
EOF2
    printf '#!/bin/sh\nexit 0\n' >"$TMP/fb/bin/orted"
    # the bundle's mpirun: this machine's, without the bundle's Open MPI paths (device_env.sh's)
    cat >"$TMP/fb/bin/mpirun" <<EOF2
#!/bin/bash
for v in \$(compgen -e | grep -E '^(OPAL_|PMIX_|OMPI_MCA_mca_base_component_path|OMPI_MCA_orte_launch_agent|OMPI_MCA_plm)'); do unset "\$v"; done
exec $(command -v mpirun) "\$@"
EOF2
    chmod +x "$TMP/fake/nvidia-smi" "$TMP/fb/bin/orted" "$TMP/fb/bin/mpirun"
    ln -s "$BUILD/mpitrain" "$TMP/fb/bin/mpitrain"
    ln -s "$BUILD/tests/test_backend_cmp" "$TMP/fb/bin/test_backend_cmp"
    echo 13.0 >"$TMP/fb/CUDA_RUNTIME"
    # expect_pre LABEL STATUS PATTERN ARGS...: device_check.sh's preflight exit and reason
    expect_pre() {
        local label=$1 want=$2 pat=$3 rc
        shift 3
        env PATH="$TMP/fake:$PATH" "$@" bash "$DC" --bundle "$TMP/fb" --out "$TMP/pre" >"$TMP/pre.out" 2>"$TMP/pre.err"
        rc=$?
        if [[ $rc == "$want" ]] && grep -q "^device_check.sh: error: $pat" "$TMP/pre.err"; then
            ok "$label: exit $rc, $(tail -n 1 "$TMP/pre.err" | cut -c1-150)"
        else
            bad "$label: exit $rc (expected $want and '$pat')"
            sed 's/^/   | /' "$TMP/pre.err"
        fi
    }
    expect_pre "no trajectory reference in the bundle" 2 "bad bundle: no trajectory reference"
    mv "$TMP/fb/bin/mpirun" "$TMP/mpirun.bundle"
    expect_pre "no mpirun in the bundle" 2 "bad bundle: no .*/bin/mpirun"
    mv "$TMP/mpirun.bundle" "$TMP/fb/bin/mpirun"
    bash "$REPO/scripts/device_trajectory.sh" reference "$BUILD/mpitrain" "$TMP/fb/reference" >"$TMP/fbref.log" 2>&1 ||
        { bad "the stand-in bundle's reference"; tail -5 "$TMP/fbref.log"; }
    expect_pre "driver CUDA 12.4, binaries built with 13.0" 78 "driver too old" FAKE_CUDA=12.4

    # the whole run in GPU mode: this build has no CUDA, so every GPU branch
    # meets a failure; a test_backend_cmp that aborts after a CUDA error line
    rm -f "$TMP/fb/bin/test_backend_cmp"
    cat >"$TMP/fb/bin/test_backend_cmp" <<EOF2
#!/bin/bash
echo "\$* sync=\${MPITRAIN_CUDA_SYNC:-unset}" >>"$TMP/cmp_calls.txt"
echo "backend_cmp: CUDA vs CPU (planted by test_device_check.sh)"
echo "mpitrain: error: CUDA error 700 (an illegal memory access) after planted_kernel" >&2
kill -ABRT \$\$
EOF2
    chmod +x "$TMP/fb/bin/test_backend_cmp"
    t0=$(date +%s)
    env PATH="$TMP/fake:$PATH" bash "$DC" --bundle "$TMP/fb" --deadline 150 --out "$TMP/gpu_out" \
        >"$TMP/gpu.out" 2>"$TMP/gpu.err"
    rc=$? secs=$(($(date +%s) - t0))
    if [[ $rc == 1 ]] && check_out "$TMP/gpu_out" "$TMP/gpu.out" "$rc" >"$TMP/check.txt"; then
        ok "GPU mode on the stand-in: exit 1 in $secs s, results.json complete ($(tail -n 1 "$TMP/check.txt"))"
    else
        bad "GPU mode on the stand-in: exit $rc"
        sed 's/^/   | /' "$TMP/check.txt"
        tail -12 "$TMP/gpu.out"
    fi
    IFS=$'\t' read -r st why _ <<<"$(status_of "$TMP/gpu_out" ops_small)"
    [[ $st == failed && $why == *"signal 6"*"mpitrain: error: CUDA error 700"* ]] &&
        ok "a crash's error line in the reason: ${why:0:120}" || bad "ops_small after a crash: $st ($why)"
    if grep -qx ' sync=1' "$TMP/cmp_calls.txt" && grep -q '^--time.* sync=unset$' "$TMP/cmp_calls.txt"; then
        ok "MPITRAIN_CUDA_SYNC=1 for ops_small, not for op_times"
    else
        bad "MPITRAIN_CUDA_SYNC in test_backend_cmp's calls:"
        sed 's/^/   | /' "$TMP/cmp_calls.txt"
    fi
    for s in trajectory benchmark trajectory_parallel; do
        IFS=$'\t' read -r st why _ <<<"$(status_of "$TMP/gpu_out" $s)"
        [[ $st == failed && -n "$why" ]] && ok "$s (no CUDA in this build): failed: ${why:0:100}" ||
            bad "$s in GPU mode: $st ($why), expected failed"
    done
    # a program that needs a library this machine does not have
    echo 'int mt_gone(void) { return 0; }' >"$TMP/gone.c"
    echo 'int mt_gone(void); int main(void) { return mt_gone(); }' >"$TMP/main.c"
    if cc -shared -fPIC -o "$TMP/libmt_gone.so" "$TMP/gone.c" &&
        cc -o "$TMP/needs_gone" "$TMP/main.c" -L"$TMP" -lmt_gone; then
        rm -f "$TMP/libmt_gone.so" "$TMP/fb/bin/test_backend_cmp"
        cp "$TMP/needs_gone" "$TMP/fb/bin/test_backend_cmp"
        expect_pre "a library missing" 79 "a library is missing: libmt_gone.so"
    else
        bad "cc could not build the program with a missing library"
    fi
fi

# ---- 5. a bad argument ----
bash "$DC" --deadline 5 >"$TMP/bad.out" 2>"$TMP/bad.err"
rc=$?
[[ $rc == 2 && $(wc -l <"$TMP/bad.err") == 1 ]] && grep -q '^device_check.sh: error: --deadline' "$TMP/bad.err" &&
    ok "bad argument: exit 2, $(cat "$TMP/bad.err")" || { bad "bad argument: exit $rc"; cat "$TMP/bad.err"; }
exit "$fail"
