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
#   2b. --stages ops_small,trajectory: those pass, the others are skipped as
#      "not selected"; an unknown stage name: exit 2, one error line;
#   3. without --dry-run-cpu on this machine (no GPU): the preflight exits 77
#      with one "device_check.sh: error: no GPU ..." line, results.json still
#      written (every stage skipped, with that reason); skipped when this
#      machine has nvidia-smi;
#   4. the preflight on a stand-in GPU machine (a fake nvidia-smi, a bundle of
#      this build's binaries): exit 2 for a bundle without the trajectory
#      reference, 78 for a driver whose CUDA is older than the binaries', 79
#      for a library the binaries need and the loader cannot find;
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
t0=$(date +%s)
bash "$DC" --dry-run-cpu --build "$TMP/broken" --deadline 50 --out "$TMP/broken_out" >"$TMP/broken.out" 2>&1
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
sleep 1
pgrep -f "sleep 1000" >/dev/null && bad "the hanging stage's sleep survived its timeout"

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

# ---- 4. the preflight on a stand-in GPU machine: a fake nvidia-smi first on
# PATH, a bundle of this build's binaries (no CUDA in them: the stages are
# not reached) ----
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
    chmod +x "$TMP/fake/nvidia-smi" "$TMP/fb/bin/orted"
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
    touch "$TMP/fb/reference/metrics.jsonl"
    expect_pre "driver CUDA 12.4, binaries built with 13.0" 78 "driver too old" FAKE_CUDA=12.4
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
