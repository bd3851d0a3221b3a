#!/usr/bin/env bash
# quickstart.sh - set-up command (a): installs what is needed, builds
# mpitrain, fetches MNIST and trains the demo MLP with data parallelism on
# 2 ranks. It ends with the final test accuracy and the run's folder.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
bash scripts/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
bash scripts/fetch_mnist.sh --out data/mnist.h5
mpi_env # Open MPI refuses root unless told
MPIFLAGS=()
[ "$(nproc)" -ge 2 ] || MPIFLAGS+=(--oversubscribe)
mpirun "${MPIFLAGS[@]}" -np 2 build/mpitrain train --config configs/mnist_mlp.ini
