#!/usr/bin/env bash
# test.sh - set-up command (b): installs what is needed, builds mpitrain
# (Release, with CUDA where nvcc is installed; the CUDA program again without
# NCCL; a CPU-only Debug build: all warning-free), fetches MNIST and runs the
# whole test suite through ctest. .ci/run calls this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh --tests
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
# stay warning-free, and a machine without the toolkit builds this one.
cmake -S . -B build-debug -DCMAKE_BUILD_TYPE=Debug -DMPITRAIN_CUDA=OFF >/dev/null
cmake --build build-debug -j"$JOBS"
cd build
ctest --output-on-failure --timeout 900
# ---- the fuzz build (docs/FUZZING.md): clang with libFuzzer, ASan and
# UBSan, CPU only; each target runs its regression inputs, then fuzzes a few
# seconds from its seed corpus (ctest label fuzz; GPT-2's target skips,
# saying why, where npm cannot fetch the vocabulary).
cd .. # (from build/)
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Release -DMPITRAIN_CUDA=OFF \
    -DMPITRAIN_FUZZ=ON >/dev/null
cmake --build build-fuzz -j"$JOBS" --target fuzz
(cd build-fuzz && ctest -L fuzz --output-on-failure --timeout 300)
