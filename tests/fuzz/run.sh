#!/usr/bin/env bash
# run.sh - runs one libFuzzer target of tests/fuzz (docs/FUZZING.md): every
# regression input of tests/fuzz/regress/TARGET once, then fuzzing for
# SECONDS from the seed corpus tests/fuzz/corpus/TARGET. The ctests
# `fuzz_<target>` and scripts/fuzz.sh (the long runs) both call it.
# usage: tests/fuzz/run.sh FUZZ_BINARY TARGET SECONDS [CORPUS_DIR] [-- LIBFUZZER-OPTIONS...]
#   CORPUS_DIR: where new inputs go and stay (default: a fresh temporary
#   folder); the seed corpus is only read. A crash leaves its input under
#   CORPUS_DIR/../artifacts-TARGET (temporary runs: printed, then kept in
#   $MT_FUZZ_ARTIFACTS or /tmp) with the line that makes it a regression input.
# Exits 0 when nothing crashed, 77 when the target cannot run here (the
# GPT-2 vocabulary cannot be fetched), 1 otherwise.
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
FUZZ=$(cd "$(dirname "$0")" && pwd)
BIN=${1:?usage: run.sh FUZZ_BINARY TARGET SECONDS [CORPUS_DIR] [-- OPTIONS]}
NAME=${2:?usage}
SECONDS_=${3:?usage}
shift 3
CORPUS=""
if [ $# -gt 0 ] && [ "$1" != "--" ]; then CORPUS=$1; shift; fi
[ "${1:-}" = "--" ] && shift
[ -x "$BIN" ] || { echo "FAIL - no fuzz target $BIN (build it: cmake --build BUILD --target fuzz)"; exit 1; }

# Sanitizers: huge allocations fail as malloc does (the loaders must then
# report it), libFuzzer's own limit on one allocation is lifted for the
# same reason (fuzz_h5.h keeps sizes either small or beyond any memory);
# Open MPI's and HDF5's own leaks at exit are suppressed, ours are not.
export ASAN_OPTIONS="allocator_may_return_null=1:detect_leaks=1:${ASAN_OPTIONS:-}"
export LSAN_OPTIONS="suppressions=$FUZZ/../sanitize/lsan.supp:print_suppressions=0:${LSAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
export HWLOC_COMPONENTS=-x86 # singleton MPI_Init: no CPUID probing under ASan (faster start)
# (-error_exitcode: libFuzzer's default, 77, is ctest's skip)
OPTS=(-rss_limit_mb=2048 -malloc_limit_mb=1048576 -timeout=10 -error_exitcode=1 -print_final_stats=1)

if [ "$NAME" = gpt2 ]; then
    # $MPITRAIN_GPT2_VOCAB (ctest: BUILD/gpt2_vocab, data_tokenize_gpt2's
    # cache), else gpt2_vocab in the build folder; fetched if missing
    export MPITRAIN_GPT2_VOCAB=${MPITRAIN_GPT2_VOCAB:-$(cd "$(dirname "$BIN")/.." && pwd)/gpt2_vocab}
    gpt2_vocab_or_skip "$MPITRAIN_GPT2_VOCAB"
fi

if [ -z "$CORPUS" ]; then
    CORPUS="$TMP/corpus"
    ART="${MT_FUZZ_ARTIFACTS:-/tmp}/mpitrain-fuzz-artifacts-$NAME-$$"
else
    ART="$(dirname "$CORPUS")/artifacts-$NAME"
fi
mkdir -p "$CORPUS" "$ART"

# run_target ARGS...: the target, then its LLVM OpenMP registration file
# removed (/dev/shm/__KMP_REGISTERED_LIB_<pid>_*: libFuzzer ends the process
# without the runtime's clean-up, which would remove it)
run_target() {
    "$BIN" "$@" &
    local pid=$! rc=0
    wait $pid || rc=$?
    rm -f /dev/shm/__KMP_REGISTERED_LIB_"${pid}"_*
    return $rc
}

# 1. every regression input once
shopt -s nullglob
REG=("$FUZZ/regress/$NAME"/*)
if [ ${#REG[@]} -gt 0 ]; then
    if run_target "${OPTS[@]}" "$@" "${REG[@]}" >"$TMP/regress.log" 2>&1; then
        ok "$NAME: ${#REG[@]} regression input(s) ran clean"
    else
        tail -n 40 "$TMP/regress.log"
        bad "$NAME: a regression input of tests/fuzz/regress/$NAME fails again (above)"
        exit 1
    fi
fi

# 2. fuzzing from the seeds
run_target "${OPTS[@]}" -max_total_time="$SECONDS_" -artifact_prefix="$ART/" "$@" \
    "$CORPUS" "$FUZZ/corpus/$NAME" >"$TMP/fuzz.log" 2>&1
rc=$?
grep -E "^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)" "$TMP/fuzz.log"
if [ $rc -eq 77 ]; then
    rmdir "$ART" 2>/dev/null
    grep "^skip" "$TMP/fuzz.log" || echo "skip - $NAME cannot run here"
    exit 77
fi
if [ $rc -ne 0 ]; then
    tail -n 60 "$TMP/fuzz.log"
    bad "$NAME: libFuzzer exit $rc; the input is in $ART/ - make it a regression input with:"
    for a in "$ART"/*; do echo "  cp $a $FUZZ/regress/$NAME/"; done
    exit 1
fi
rmdir "$ART" 2>/dev/null
ok "$NAME: fuzzed ${SECONDS_} s, no crash"
exit $fail
