#!/usr/bin/env bash
# test.sh - set-up command (b): installs what is needed, builds mpitrain
# (Release, with CUDA where nvcc is installed; the CUDA program again without
# NCCL; a CPU-only Debug build with AddressSanitizer and UndefinedBehavior-
# Sanitizer: all warning-free), fetches MNIST and runs the whole test suite
# through ctest, then the sanitizer pass (docs/SANITIZERS.md) in the Debug
# build. .ci/run calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
# phase NAME: prints how long the part of this script since the last phase
# took (what each part of a CI run costs, docs/SANITIZERS.md)
last=$SECONDS
phase() {
    echo "test.sh: $1 took $(((SECONDS - last) / 60)) min $(((SECONDS - last) % 60)) s"
    last=$SECONDS
}
bash scripts/install_deps.sh --tests
phase "installing dependencies"
JOBS=$(nproc)
# Where the CUDA toolkit is installed, its sources must compile (ON fails the
# build instead of quietly leaving the backend out).
CUDA=AUTO
[ -x /usr/local/cuda/bin/nvcc ] && CUDA=ON
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DMPITRAIN_CUDA=$CUDA >/dev/null
cmake --build build -j"$JOBS"
# The CUDA backend without NCCL (device-buffer sums through MPI via the host)
# must build warning-free too: the program only (parallel/xcomm.c's other
# branch; no tests run from this build).
if [ "$CUDA" = ON ]; then
    cmake -S . -B build-nonccl -DCMAKE_BUILD_TYPE=Release -DMPITRAIN_CUDA=ON \
        -DMPITRAIN_NCCL=OFF >/dev/null
    cmake --build build-nonccl -j"$JOBS" --target mpitrain
fi
# The Debug build is the CPU-only configuration (no CUDA, no NCCL): both must
# stay warning-free, and a machine without the toolkit builds this one. It
# is also the sanitizer build (ASan + UBSan, docs/SANITIZERS.md); its tests
# read the MNIST file the Release build's tests fetch (not fetched twice).
cmake -S . -B build-debug -DCMAKE_BUILD_TYPE=Debug -DMPITRAIN_CUDA=OFF \
    -DMPITRAIN_SANITIZE=address,undefined -DMPITRAIN_TEST_MNIST="$PWD/build/data/mnist.h5" >/dev/null
cmake --build build-debug -j"$JOBS"
phase "the builds"
cd build
ctest --output-on-failure --timeout 900
cd ..
# The sanitizer pass: the tests labelled `sanitize` (tests/sanitize/tests.cmake)
# in the sanitizer build; every program they start, each mpirun rank too,
# stops on a memory error, undefined behaviour or a leak of mpitrain's own.
phase "the main ctest pass"
echo "==== sanitizer pass (AddressSanitizer + UndefinedBehaviorSanitizer): ctest -L sanitize in build-debug ===="
(cd build-debug && ctest -L sanitize -j"$JOBS" --output-on-failure --timeout 900)
phase "the sanitizer pass"
# ---- the fuzz build (docs/FUZZING.md): clang with libFuzzer, ASan and
# UBSan, CPU only; each target runs its regression inputs, then fuzzes a few
# seconds from its seed corpus (ctest label fuzz; GPT-2's target skips,
# saying why, where npm cannot fetch the vocabulary).
echo "==== fuzz pass (libFuzzer): ctest -L fuzz in build-fuzz ===="
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DMPITRAIN_CUDA=OFF \
    -DMPITRAIN_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$JOBS" --target fuzz
(cd build-fuzz && ctest -L fuzz --output-on-failure --timeout 300)
phase "the fuzz build and pass"
echo "test.sh: all passes done in $((SECONDS / 60)) min $((SECONDS % 60)) s"
