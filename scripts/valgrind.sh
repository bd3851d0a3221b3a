#!/usr/bin/env bash
# valgrind.sh - valgrind memcheck over a chosen subset of mpitrain
# (docs/SANITIZERS.md): every command below runs under memcheck, and an
# invalid read or write, a use of uninitialised memory in a branch or a
# system call, or a definite leak of mpitrain's own fails the script.
#
#   train1    one process without mpirun: the MNIST MLP, 4 steps and a stop
#             at step 2 with a checkpoint, then resumed to step 4
#             (checkpoint.resume=auto): data loading, the trainer, AdamW,
#             the checkpoint's write, verify and load, run files, registry
#   train2    the same on 2 ranks under mpirun, each rank under valgrind
#             (the gradient all-reduce, the parallel HDF5 checkpoint)
#   ckpt      mpitrain ckpt verify and ckpt inspect of train2's checkpoint
#   registry  mpitrain registry list, show, lineage, alias set and verify
#             on the registry both trainings wrote
#
# usage: scripts/valgrind.sh [--build DIR] [--data FILE] [--keep]
#   --build DIR   the build with the mpitrain to check (default build/: the
#                 Release build; a plain Debug build gives line numbers; not
#                 a sanitizer build, which valgrind cannot run)
#   --data FILE   the MNIST dataset (default DIR/data/mnist.h5, made with
#                 scripts/fetch_mnist.sh when missing)
#   --keep        keep the work folder (its path is printed)
# Exit status: 0 clean; 1 a command failed or valgrind found an error (its
# log is shown); 2 usage.
#
# Options as docs/SANITIZERS.md explains: --error-exitcode=99 (no mpitrain
# status is 99), --leak-check=full with definite leaks as errors, Open MPI's
# suppressions (/usr/share/openmpi/openmpi-valgrind.supp) and the
# repository's (tests/sanitize/valgrind.supp: library internals only, each
# entry says why); HWLOC_COMPONENTS=-x86 keeps hwloc from its CPUID probing,
# which valgrind runs very slowly.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
MT_PROG=valgrind.sh

BUILD=$ROOT/build
DATA=""
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
    --build) need_arg "$@"; BUILD=$2; shift 2 ;;
    --data) need_arg "$@"; DATA=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h | --help) header_help 2 30; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
BUILD=$(abspath "$BUILD")
BIN=$BUILD/mpitrain
need_mpitrain "$BIN"
command -v valgrind >/dev/null || die "valgrind not found (scripts/install_deps.sh --valgrind)"
grep -q '^MPITRAIN_SANITIZE:STRING=.\+' "$BUILD/CMakeCache.txt" 2>/dev/null &&
    die "$BUILD is a sanitizer build; valgrind needs one without (pass --build)"
DATA=$(abspath "${DATA:-$BUILD/data/mnist.h5}")
ensure_mnist "$DATA" "$BIN"

mpi_env_oversubscribe
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 HWLOC_COMPONENTS=-x86
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mt_valgrind.XXXXXX")
if [ "$KEEP" = 1 ]; then echo "work folder: $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
VG=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --keep-debuginfo=yes --num-callers=30
    --suppressions=/usr/share/openmpi/openmpi-valgrind.supp
    --suppressions="$ROOT/tests/sanitize/valgrind.supp")
TRAIN=(train --config "$ROOT/configs/mnist_mlp.ini" --set data.path="$DATA"
    --set run.dir="$WORK/runs" --set registry.path="$WORK/runs/registry.jsonl"
    --set train.steps=4 --set train.global_batch=64 --set run.log_every=1
    --set train.eval_every=0 --set checkpoint.every_steps=2)

failed=0
# vg NAME NP ARGS...: mpitrain ARGS under valgrind (NP 0: without mpirun),
# the log in $WORK/NAME.log; a failure shows the log and is counted
vg() {
    local name=$1 np=$2 t0 rc=0
    shift 2
    local cmd=("${VG[@]}" --log-file="$WORK/$name.vg.%p" "$BIN" "$@")
    [ "$np" = 0 ] || cmd=(mpirun -np "$np" "${cmd[@]}")
    t0=$(now_ns)
    "${cmd[@]}" >"$WORK/$name.log" 2>&1 || rc=$?
    cat "$WORK/$name".vg.* >>"$WORK/$name.log" 2>/dev/null || true
    if [ "$rc" = 0 ] && ! grep -q '^==[0-9]*== ' "$WORK/$name".vg.* 2>/dev/null; then
        printf 'ok   %-22s %6.1f s\n' "$name" "$(secs_between "$t0" "$(now_ns)")"
    else
        printf 'FAIL %-22s exit %s; its output and valgrind log:\n' "$name" "$rc"
        sed 's/^/   | /' "$WORK/$name.log" | tail -n 80
        failed=$((failed + 1))
    fi
}

echo "valgrind memcheck: $BIN ($(valgrind --version))"
vg train1_stop 0 "${TRAIN[@]}" --set run.name=one --set train.exit_after_steps=2
vg train1_resume 0 "${TRAIN[@]}" --set run.name=one --set checkpoint.resume=auto
vg train2_stop 2 "${TRAIN[@]}" --set run.name=two --set train.exit_after_steps=2
vg train2_resume 2 "${TRAIN[@]}" --set run.name=two --set checkpoint.resume=auto
CK=$(ls "$WORK"/runs/two/0002/checkpoints/step_*.h5 2>/dev/null | tail -n 1 || true)
if [ -n "$CK" ]; then
    vg ckpt_verify 0 ckpt verify "$CK"
    vg ckpt_inspect 0 ckpt inspect "$CK"
else
    echo "FAIL ckpt: no checkpoint in $WORK/runs/two/0002/checkpoints"
    failed=$((failed + 1))
fi
REG=(registry --registry "$WORK/runs/registry.jsonl")
vg registry_list 0 "${REG[@]}" list
vg registry_show 0 "${REG[@]}" show two
vg registry_lineage 0 "${REG[@]}" lineage two
vg registry_alias 0 "${REG[@]}" alias set two production
vg registry_verify 0 "${REG[@]}" verify
if [ "$failed" = 0 ]; then
    echo "valgrind: all clean"
else
    echo "valgrind: $failed command(s) failed"
    exit 1
fi
