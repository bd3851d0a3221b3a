#!/usr/bin/env bash
# fuzz.sh - a long run of one libFuzzer target (docs/FUZZING.md): builds
# build-fuzz (clang, -DMPITRAIN_FUZZ=ON, CPU only) if needed, then fuzzes
# TARGET for SECONDS at the lowest priority through tests/fuzz/run.sh
# (regression inputs first, then the seeds). New inputs are kept in
# build-fuzz/fuzz-corpus/TARGET and reused by the next run; a crash leaves
# its input in build-fuzz/fuzz-corpus/artifacts-TARGET with the command that
# makes it a regression input. libFuzzer's final statistics (executions,
# coverage) end the output.
#
# usage: scripts/fuzz.sh TARGET SECONDS [-- LIBFUZZER-OPTIONS...]
#   TARGET: config | tokens | registry | gpt2 | dataset | checkpoint | all
#   (all: each in turn, SECONDS each)
# e.g.   scripts/fuzz.sh checkpoint 600
#        scripts/fuzz.sh tokens 3600 -- -jobs=2 -workers=2
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
TARGETS="config tokens registry gpt2 dataset checkpoint"
case "${1:-}" in -h | --help) header_help 2 16; exit 0 ;; esac
[ $# -ge 2 ] || die "usage: scripts/fuzz.sh TARGET SECONDS [-- LIBFUZZER-OPTIONS...] (see --help)"
TARGET=$1 SECS=$2
shift 2
[ "${1:-}" = "--" ] && shift
is_uint "$SECS" || die "SECONDS must be a positive integer, not '$SECS'"
[ "$TARGET" = all ] || [[ " $TARGETS " == *" $TARGET "* ]] ||
    die "unknown target '$TARGET' (one of: $TARGETS, all)"
command -v clang >/dev/null || die "clang not found (scripts/install_deps.sh --tests installs it)"
B="$ROOT/build-fuzz"
if [ ! -f "$B/CMakeCache.txt" ]; then
    CC=clang cmake -S "$ROOT" -B "$B" -DCMAKE_BUILD_TYPE=Release -DMPITRAIN_CUDA=OFF \
        -DMPITRAIN_FUZZ=ON >/dev/null
fi
cmake --build "$B" -j"$(nproc)" --target fuzz >/dev/null
[ "$TARGET" = all ] && TARGETS_RUN=$TARGETS || TARGETS_RUN=$TARGET
rc=0
for t in $TARGETS_RUN; do
    echo "== fuzz_$t, $SECS s"
    MPITRAIN_GPT2_VOCAB=${MPITRAIN_GPT2_VOCAB:-$B/gpt2_vocab} nice -n 19 \
        bash "$ROOT/tests/fuzz/run.sh" "$B/tests/fuzz_$t" "$t" "$SECS" "$B/fuzz-corpus/$t" -- "$@" ||
        rc=$?
done
exit $rc
