#!/usr/bin/env bash
# bundle.sh - collects the binaries built here and the shared libraries a
# bare GPU machine lacks (Open MPI, HDF5, OpenBLAS, inih, cJSON, OpenSSL and
# what they pull in) into one folder, so scripts/device_check.sh can run them
# there without installing anything.
#
# usage: scripts/bundle.sh [--build DIR] [--out DIR]
#   --build DIR  the CMake build folder (default: build)
#   --out DIR    the bundle (default: bundle): DIR/bin, DIR/lib, and the same
#                packed as DIR.tar.xz (what to carry to the GPU machine: the
#                folder is ~65 MB, over a device session's 64 MiB carry limit;
#                device_check.sh unpacks it when the folder is missing)
#
# Left out, because a GPU machine has them (and they are large: cuBLAS alone
# is ~0.6 GB): the CUDA runtime and libraries (libcudart, libcublas,
# libcublasLt) and the driver (libcuda), and the C library itself (libc,
# libm, libpthread, libdl, librt, ld-linux). device_check.sh finds the GPU
# machine's CUDA libraries at run time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/build OUT=$ROOT/bundle
die() { echo "bundle.sh: error: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --build) [[ $# -ge 2 ]] || die "--build needs a folder"; BUILD=$2; shift 2 ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a folder"; OUT=$2; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
BINS=("$BUILD/mpitrain" "$BUILD/tests/test_backend_cmp")
for b in "${BINS[@]}"; do [[ -x "$b" ]] || die "no $b: build first (cmake --build $BUILD)"; done
# (grep -c reads all of nm's output: grep -q would end the pipe early)
[[ $(nm "$BUILD/tests/test_backend_cmp" | grep -c mt_backend_cuda) -gt 0 ]] ||
    die "$BUILD was built without the CUDA backend (configure with -DMPITRAIN_CUDA=ON)"

rm -rf "$OUT"
mkdir -p "$OUT/bin" "$OUT/lib"
cp "${BINS[@]}" "$OUT/bin/"
skip='^(libc|libm|libpthread|libdl|librt|ld-linux-x86-64|libcuda|libcudart|libcublas|libcublasLt|libnvidia.*)\.so'
n=0
for b in "${BINS[@]}"; do
    ldd "$b" | awk '/=> \//{print $1, $3}'
done | sort -u | while read -r name path; do
    [[ "$name" =~ $skip ]] && continue
    cp -L "$path" "$OUT/lib/$name"
    n=$((n + 1))
done
tar -C "$(dirname "$OUT")" -cf - "$(basename "$OUT")" | xz -T0 -6 >"$OUT.tar.xz"
echo "bundle: $OUT: $(ls "$OUT/bin" | wc -l) binaries, $(ls "$OUT/lib" | wc -l) libraries," \
    "$(du -sh "$OUT" | cut -f1) in all (CUDA libraries and libc left to the GPU machine);" \
    "packed: $OUT.tar.xz, $(du -sh "$OUT.tar.xz" | cut -f1)"
