#!/usr/bin/env bash
# bundle.sh - collects the binaries built here and everything a bare GPU
# machine (no MPI, HDF5, OpenBLAS; no package registry) lacks to run them,
# singleton or under mpirun, into one relocatable folder.
#
# usage: scripts/bundle.sh [--build DIR] [--out DIR] [--nccl]
#   --build DIR  the CMake build folder (default: build), configured with
#                -DMPITRAIN_CUDA=ON
#   --out DIR    the bundle (default: bundle), also packed as DIR.tar.xz: the
#                file to carry to the GPU machine (device_check.sh and
#                device_env.sh unpack it when the folder is missing)
#   --nccl       also bundle libnccl.so.2 when the binaries link it. Off by
#                default: this machine's NCCL 2.28 is 218 MB, 187 MB packed,
#                far over a device session's 64 MiB carry limit; the GPU
#                machine's own (PyTorch's site-packages/nvidia/nccl/lib, or
#                its CUDA install) is used instead.
#
# Layout (DIR is an Open MPI install prefix; scripts/device_env.sh points
# Open MPI and PMIx at it with OPAL_* / PMIX_* variables):
#   bin/        mpitrain, test_backend_cmp, gemm_peak and test_backend_bf16
#               (when built), mpirun
#               (-> orterun), orterun, orted, ompi_info
#   lib/        every shared library these need, flat
#   lib/openmpi3/  Open MPI's MCA components (plugins), less the ones for
#               InfiniBand/UCX/libfabric/PSM and OpenSHMEM, which need large
#               libraries a single GPU node does not use
#   lib/pmix/   PMIx's plugins
#   share/openmpi, share/pmix  help texts;  etc/  openmpi-mca-params.conf
#   reference/  the 10-step loss trajectory of scripts/device_trajectory.sh's
#               small GPT, computed here on the CPU in fp32 with this build's
#               mpitrain (losses, config, initial checkpoint, token shards,
#               ~2 MB): scripts/device_check.sh compares the GPU against it
#   CUDA_RUNTIME  the CUDA version the binaries were compiled with (nvcc's
#               major.minor): device_check.sh's preflight holds the driver to it
#
# Left out, because every GPU machine has them: the CUDA runtime and
# libraries (libcudart, libcublas, libcublasLt; cuBLAS alone is ~0.6 GB),
# the driver (libcuda, libnvidia-*), NCCL (see --nccl), and the C and C++
# runtime (glibc: libc, libm, libpthread, libdl, librt, libresolv, libutil,
# ld-linux; libgcc_s, libstdc++ - the binaries need GLIBCXX_3.4.21 at most).
# glibc: the bundle is made to need at most 2.35 (Ubuntu 22.04; Debian 12's
# libevent wants 2.36: see below), which needs patchelf (apt) and cc; the
# version it needs is written to DIR/GLIBC_REQUIRED and checked by
# device_env.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
BUILD=$ROOT/build OUT=$ROOT/bundle NCCL=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --build) [[ $# -ge 2 ]] || die "--build needs a folder"; BUILD=$2; shift 2 ;;
        --out) [[ $# -ge 2 ]] || die "--out needs a folder"; OUT=$2; shift 2 ;;
        --nccl) NCCL=1; shift ;;
        -h | --help) header_help 2 44; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
BUILD_ABS=$(cd "$BUILD" 2>/dev/null && pwd) || die "no build folder $BUILD"
BUILD=$BUILD_ABS
OUT=$(realpath -m "$OUT")
[[ "$OUT" != / && "$OUT" != "$ROOT" && "$OUT" != "$BUILD" ]] || die "refusing --out $OUT"

BINS=("$BUILD/mpitrain" "$BUILD/tests/test_backend_cmp")
for b in "${BINS[@]}"; do [[ -x "$b" ]] || die "no $b: build first (cmake --build $BUILD)"; done
for b in bench/gemm_peak tests/test_backend_bf16; do # when built
    [[ -x "$BUILD/$b" ]] && BINS+=("$BUILD/$b")
done
# (grep -c reads all of nm's output: grep -q would end the pipe early)
[[ $(nm "$BUILD/tests/test_backend_cmp" | grep -c mt_backend_cuda) -gt 0 ]] ||
    die "$BUILD was built without the CUDA backend (configure with -DMPITRAIN_CUDA=ON)"

# Open MPI 4.1 as Debian 12 installs it (openmpi-bin, libopenmpi3, libpmix2)
MPI_BIN=/usr/bin
MPI_PKGLIB=/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3
PMIX_PLUGINS=/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix
MPI_HELP=/usr/share/openmpi
PMIX_HELP=/usr/lib/x86_64-linux-gnu/pmix2/share/pmix
MPI_CONF=/etc/openmpi
for d in "$MPI_PKGLIB" "$PMIX_PLUGINS" "$MPI_HELP" "$PMIX_HELP" "$MPI_CONF"; do
    [[ -d "$d" ]] || die "no $d: is Open MPI installed (scripts/install_deps.sh)?"
done
ORTERUN=$(readlink -f "$MPI_BIN/orterun") ORTED=$(readlink -f "$MPI_BIN/orted")
[[ -x "$ORTERUN" && -x "$ORTED" ]] || die "no orterun/orted in $MPI_BIN"

# Provided by the GPU machine (see above): matched against the soname.
skip='libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libanl|libnsl|ld-linux-x86-64|libgcc_s|libstdc\+\+'
skip="$skip|libcuda|libcudart|libcublas|libcublasLt|libnvidia-.*|libnvrtc.*|libcudnn.*"
[[ $NCCL = 1 ]] || skip="$skip|libnccl"
skip="^($skip)\.so"
# MCA components that need InfiniBand/UCX/libfabric/PSM (MBs of libraries
# and their own plugins; useless on one node: shared memory does it) or
# OpenSHMEM (liboshmem; mpitrain is MPI only). Debian's
# openmpi-mca-params.conf turns most of these off anyway.
heavy='^(libfabric|libucp|libucs|libuct|libucm|libibverbs|librdmacm|libpsm2|libpsm_infinipath|libinfinipath|liboshmem|libmca_common_ucx|libmca_common_ofi|libmca_common_verbs)\.so'

rm -rf "$OUT" "$OUT.tar.xz"
mkdir -p "$OUT/bin" "$OUT/lib/openmpi3" "$OUT/lib/pmix" "$OUT/share" "$OUT/etc"

# deps ELF... -> "soname path" for each library the dynamic linker resolves
# (ldd follows the whole tree), or "soname MISSING"
deps() {
    local f
    for f in "$@"; do
        ldd "$f" | awk '/=> \//{print $1, $3} /=> not found/{print $1, "MISSING"}'
    done | sort -u
}

cp "${BINS[@]}" "$OUT/bin/"
cp "$ORTERUN" "$OUT/bin/orterun"
cp "$ORTED" "$OUT/bin/orted"
ln -s orterun "$OUT/bin/mpirun"
ompi_info=$(readlink -f "$MPI_BIN/ompi_info" 2>/dev/null || true)
[[ -x "$ompi_info" ]] && cp "$ompi_info" "$OUT/bin/ompi_info"

ncomp=0 nskip=0 skipped=()
for c in "$MPI_PKGLIB"/*.so; do
    if [[ $(deps "$c" | awk '{print $1}' | grep -Ec "$heavy") -gt 0 ]]; then
        skipped+=("$(basename "$c" .so)"); nskip=$((nskip + 1)); continue
    fi
    cp "$c" "$OUT/lib/openmpi3/"; ncomp=$((ncomp + 1))
done
cp "$PMIX_PLUGINS"/*.so "$OUT/lib/pmix/"

# Every library the binaries and the plugins pull in, flat in lib/.
missing=""
while read -r name path; do
    [[ "$name" =~ $skip ]] && continue
    [[ "$path" = MISSING ]] && { missing="$missing $name"; continue; }
    cp -L "$path" "$OUT/lib/$name"
done < <(deps "$OUT"/bin/* "$OUT"/lib/openmpi3/*.so "$OUT"/lib/pmix/*.so)
[[ -z "$missing" ]] || die "libraries not found here:$missing"

# The CPU reference of the GPU's loss trajectory, and the CUDA version built with.
"$ROOT/scripts/device_trajectory.sh" reference "$BUILD/mpitrain" "$OUT/reference" ||
    die "the trajectory reference failed (scripts/device_trajectory.sh reference)"
cuda_ver=$(sed -n 's/^set(CMAKE_CUDA_COMPILER_VERSION "\([0-9]*\.[0-9]*\).*/\1/p' \
    "$BUILD"/CMakeFiles/*/CMakeCUDACompiler.cmake 2>/dev/null | head -n 1 || true) # (set -e: the die below says why)
[[ -n "$cuda_ver" ]] || die "no CMAKE_CUDA_COMPILER_VERSION under $BUILD/CMakeFiles"
echo "$cuda_ver" >"$OUT/CUDA_RUNTIME"

mkdir -p "$OUT/share/openmpi" "$OUT/share/pmix"
cp "$MPI_HELP"/help-*.txt "$OUT/share/openmpi/"
[[ -d "$MPI_HELP/amca-param-sets" ]] && cp -r "$MPI_HELP/amca-param-sets" "$OUT/share/openmpi/"
cp "$PMIX_HELP"/*.txt "$OUT/share/pmix/"
cp "$MPI_CONF/openmpi-mca-params.conf" "$MPI_CONF/openmpi-default-hostfile" "$OUT/etc/"

# glibc. Debian 12 has 2.36; Ubuntu 22.04, a likely GPU image, 2.35. Only
# libevent_core needs 2.36 (for arc4random and arc4random_buf, new in 2.36),
# which would stop Open MPI from loading at all there. For such a library:
# its requirement of GLIBC_2.36 becomes one of GLIBC_2.2.5 (which every
# glibc has, and no arc4random), and it gets libmt_glibc_compat.so, those
# functions on getrandom(2), as a dependency: the loader binds them there on
# any glibc. (Marking the requirement weak instead would keep glibc's own on
# 2.36, but an older loader prints a warning for it at every start.) Needs
# patchelf and cc.
GLIBC_TARGET=2.35
ELFVER=$(mktemp)
trap 'rm -f "$ELFVER" "$ELFVER.c"' EXIT
cat >"$ELFVER" <<'PY'
"""elfver.py retarget FILE VERSION... | elfver.py need FILE...
retarget: FILE's requirements of libc.so.6's VERSIONs become requirements
of GLIBC_2.2.5 (in place; FILE must already require GLIBC_2.2.5).
need: prints the newest GLIBC_x.y any FILE requires, weak ones left out."""
import struct, sys

def verneeds(path):
    """yields (file offset of the Vernaux, library, version, flags)"""
    b = open(path, "rb").read()
    if b[:4] != b"\x7fELF" or b[4] != 2:
        return
    phoff, = struct.unpack_from("<Q", b, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", b, 0x36)
    loads, dyn = [], None
    for i in range(phnum):
        t, _, off, vaddr, _, filesz, _, _ = struct.unpack_from("<IIQQQQQQ", b, phoff + i * phentsize)
        if t == 1:
            loads.append((vaddr, off, filesz))
        elif t == 2:
            dyn = (off, filesz)
    if dyn is None:
        return
    def fo(addr):
        for vaddr, off, size in loads:
            if vaddr <= addr < vaddr + size:
                return addr - vaddr + off
        raise ValueError(f"{path}: address {addr:#x} outside the file")
    d = {}
    for i in range(dyn[1] // 16):
        tag, val = struct.unpack_from("<qQ", b, dyn[0] + 16 * i)
        if tag == 0:
            break
        d.setdefault(tag, val)
    if 0x6FFFFFFE not in d:
        return
    strtab = fo(d[5])
    name = lambda o: b[strtab + o:b.index(b"\0", strtab + o)].decode()
    vn = fo(d[0x6FFFFFFE])
    for _ in range(d[0x6FFFFFFF]):
        _, cnt, file_, aux, nxt = struct.unpack_from("<HHIII", b, vn)
        a = vn + aux
        for _ in range(cnt):
            _, flags, _, vname, anext = struct.unpack_from("<IHHII", b, a)
            yield a, name(file_), name(vname), flags, vname
            a += anext
        if not nxt:
            break
        vn += nxt

def key(v):
    return tuple(int(x) for x in v.split("_")[1].split("."))

def elfhash(s):
    h = 0
    for c in s.encode():
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        h = (h ^ (g >> 24)) & ~g & 0xFFFFFFFF
    return h

if sys.argv[1] == "retarget":
    path, versions = sys.argv[2], set(sys.argv[3:])
    entries = [e for e in verneeds(path) if e[1] == "libc.so.6"]
    base = [e[4] for e in entries if e[2] == "GLIBC_2.2.5"]
    hits = [e for e in entries if e[2] in versions]
    if not base or len(hits) != len(versions):
        sys.exit(1)
    with open(path, "r+b") as fh:
        for a, _, _, _, _ in hits:
            fh.seek(a)
            fh.write(struct.pack("<I", elfhash("GLIBC_2.2.5")))  # vna_hash
            fh.seek(a + 8)
            fh.write(struct.pack("<I", base[0]))  # vna_name
else:
    need = {v for p in sys.argv[2:] for _, lib, v, f, _ in verneeds(p)
            if v.startswith("GLIBC_2") and not f & 2}
    print(max(need, key=key) if need else "")
PY
cat >"$ELFVER.c" <<'C'
/* arc4random and arc4random_buf (glibc >= 2.36) for an older glibc */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
void arc4random_buf(void *buf, size_t n) {
    unsigned char *p = buf;
    while (n > 0) {
        long r = syscall(SYS_getrandom, p, n, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            abort();
        }
        p += r;
        n -= (size_t)r;
    }
}
uint32_t arc4random(void) {
    uint32_t v;
    arc4random_buf(&v, sizeof v);
    return v;
}
uint32_t arc4random_uniform(uint32_t upper) {
    uint32_t v, min;
    if (upper < 2) return 0;
    min = -upper % upper; /* rejection sampling: no modulo bias */
    do v = arc4random(); while (v < min);
    return v % upper;
}
C
too_new() { # FILE -> "VERSION SYMBOL" per libc symbol newer than GLIBC_TARGET
    objdump -T "$1" 2>/dev/null | awk -v t="$GLIBC_TARGET" '
        match($0, /\(GLIBC_[0-9.]+\)/) {
            v = substr($0, RSTART + 7, RLENGTH - 8); split(v, a, "."); split(t, b, ".")
            if (a[1] > b[1] || (a[1] == b[1] && a[2] > b[2])) print "GLIBC_" v, $NF }'
}
compat=""
for f in "$OUT"/bin/* "$OUT"/lib/*.so* "$OUT"/lib/*/*.so; do
    [[ -L "$f" ]] && continue
    new=$(too_new "$f")
    [[ -n "$new" ]] || continue
    syms=$(awk '{print $2}' <<<"$new" | sort -u | paste -sd' ')
    if [[ -n $(awk '{print $2}' <<<"$new" | grep -Ev '^arc4random(_buf|_uniform)?$' || true) ]]; then
        echo "bundle.sh: note: $(basename "$f") needs glibc symbols newer than $GLIBC_TARGET: $syms" >&2
        continue
    fi
    if ! command -v patchelf >/dev/null || ! command -v cc >/dev/null; then
        echo "bundle.sh: warning: $(basename "$f") needs glibc > $GLIBC_TARGET ($syms);" \
            "install patchelf (apt-get install patchelf) to make the bundle run on glibc $GLIBC_TARGET" >&2
        continue
    fi
    if [[ ! -e "$OUT/lib/libmt_glibc_compat.so" ]]; then
        cc -O2 -shared -fPIC -Wall -Werror -o "$OUT/lib/libmt_glibc_compat.so" "$ELFVER.c"
    fi
    patchelf --add-needed libmt_glibc_compat.so "$f"
    mapfile -t vers < <(awk '{print $1}' <<<"$new" | sort -u)
    python3 "$ELFVER" retarget "$f" "${vers[@]}" ||
        die "could not lower the glibc versions $f requires"
    compat="$compat $(basename "$f") ($syms)"
done
[[ -z "$compat" ]] || echo "bundle.sh: for glibc $GLIBC_TARGET: libmt_glibc_compat.so provides:$compat"

# The newest glibc version anything in the bundle requires (weak ones aside).
glibc=$(find "$OUT/bin" "$OUT/lib" -type f -print0 | xargs -0 python3 "$ELFVER" need)
echo "$glibc" >"$OUT/GLIBC_REQUIRED"

tar -C "$(dirname "$OUT")" -cf - "$(basename "$OUT")" | xz -T0 -6 >"$OUT.tar.xz"
nccl_note="NCCL left to the GPU machine"
[[ -e "$OUT/lib/libnccl.so.2" ]] && nccl_note="NCCL bundled"
echo "bundle: $OUT: $(find "$OUT/bin" -type f | wc -l) programs, $(find "$OUT/lib" -maxdepth 1 -name '*.so*' | wc -l) libraries," \
    "$ncomp Open MPI components ($nskip left out: ${skipped[*]:-none}), $(find "$OUT/lib/pmix" -name '*.so' | wc -l) PMIx plugins;" \
    "$(du -sh "$OUT" | cut -f1) in all (CUDA, libc, libstdc++ left to the GPU machine; $nccl_note);" \
    "needs glibc >= ${glibc#GLIBC_}"
echo "packed: $OUT.tar.xz, $(du -h "$OUT.tar.xz" | cut -f1) ($(stat -c %s "$OUT.tar.xz") bytes)"
