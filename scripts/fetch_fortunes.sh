#!/usr/bin/env bash
# fetch_fortunes.sh - makes the demo text corpus: the fortune cookie files of
# Debian's packages fortunes-min and fortunes (/usr/share/games/fortunes/),
# joined into one text, then tokenized byte-level into llm.c token shards
# with `mpitrain data tokenize --bytes` (docs/DATA.md).
#
# The packages are installed with apt-get (through sudo when not root) when
# missing. Only their own files are used (listed by dpkg -L, in byte order):
# not the .dat index files, not the .u8 links, never the offensive fortunes
# (package fortunes-off, folder off/), nor files of other fortunes-* packages.
# Idempotent: when the shards are there it says so and exits 0.
set -euo pipefail

PACKAGES=(fortunes-min fortunes)
FORTUNE_DIR=/usr/share/games/fortunes
NAME=fortunes

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
MT_PROG=fetch_fortunes MT_DIE_STATUS=1
OUT="$ROOT/data/fortunes"
BIN="${MPITRAIN:-$ROOT/build/mpitrain}"
FORCE=0

usage() {
    cat <<EOF
usage: scripts/fetch_fortunes.sh [--out DIR] [--mpitrain PATH] [--force]

Makes the fortunes demo corpus (docs/DATA.md): DIR/$NAME.txt and the byte-level
token shards DIR/${NAME}_train_000000.bin, DIR/${NAME}_val_000000.bin.

  --out DIR        output folder (default: data/fortunes in the repository)
  --mpitrain PATH  the mpitrain binary (default: \$MPITRAIN or build/mpitrain)
  --force          remove existing $NAME shards in DIR and make them again
  -h, --help       print this help

Source: Debian packages ${PACKAGES[*]} (files under $FORTUNE_DIR),
installed with apt-get when missing. Licence: BSD (see docs/DATA.md).
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --out) need_arg "$@"; OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --mpitrain) need_arg "$@"; BIN=$2; shift 2 ;;
    --mpitrain=*) BIN=${1#*=}; shift ;;
    --force) FORCE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; echo >&2; die "unknown argument '$1'" ;;
    esac
done

shards() { compgen -G "$OUT/${NAME}_$1_[0-9][0-9][0-9][0-9][0-9][0-9].bin" || true; }

mapfile -t OLD < <(shards train; shards val)
if [ ${#OLD[@]} -gt 0 ]; then
    if [ "$FORCE" = 0 ]; then
        if [ -z "$(shards train)" ] || [ -z "$(shards val)" ]; then
            die "an incomplete set of $NAME shards is in $OUT (${OLD[*]}); use --force"
        fi
        echo "fetch_fortunes: the shards are already there:"
        printf '  %s\n' "${OLD[@]}"
        echo "fetch_fortunes: nothing to do (use --force to make them again)"
        exit 0
    fi
    echo "fetch_fortunes: --force: removing the existing $NAME shards in $OUT"
    rm -f -- "${OLD[@]}"
fi

[ -x "$BIN" ] || die "mpitrain binary not found at $BIN
fetch_fortunes: hint: build it (cmake -B build && cmake --build build) or pass --mpitrain PATH"

# ---- the packages ----
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
command -v dpkg-query >/dev/null 2>&1 ||
    die "dpkg-query not found: this script takes the corpus from Debian packages (Debian/Ubuntu)"
missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install ${missing[*]} first"
        SUDO=sudo
    fi
    echo "fetch_fortunes: apt-get install ${missing[*]}"
    if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${missing[@]}"; then
        echo "fetch_fortunes: apt-get update, then install again"
        $SUDO apt-get update || die "apt-get update failed (is a package mirror reachable?)"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
            "${missing[@]}" || die "apt-get install ${missing[*]} failed"
    fi
fi
for p in "${PACKAGES[@]}"; do
    installed "$p" || die "package $p is not installed"
    echo "fetch_fortunes: using $p $(dpkg-query -W -f='${Version}' "$p")"
done

# The packages' own fortune files: regular files, no .dat index, no links.
mapfile -t FILES < <(dpkg -L "${PACKAGES[@]}" | grep "^$FORTUNE_DIR/[^/]*\$" | LC_ALL=C sort -u |
    while IFS= read -r f; do
        [ -f "$f" ] && [ ! -L "$f" ] && [ "${f%.dat}" = "$f" ] && echo "$f"
    done)
[ ${#FILES[@]} -gt 0 ] || die "no fortune files found in $FORTUNE_DIR from ${PACKAGES[*]}"
echo "fetch_fortunes: ${#FILES[@]} fortune files: ${FILES[*]##*/}"

# ---- the text: fortunes in file order, one blank line between them ----
# A line holding only "%" ends a fortune; a file's end ends its last one.
BIN=$(abspath "$BIN")
OUT=$(abspath "$OUT")
mkdir -p "$OUT"
TXT="$OUT/$NAME.txt"
LC_ALL=C awk '
    function flush() { if (buf != "") { if (n++) printf "\n"; printf "%s", buf; buf = "" } }
    FNR == 1 { flush() }
    $0 == "%" { flush(); next }
    { buf = buf $0 "\n" }
    END { flush(); print n + 0 > "/dev/stderr" }' "${FILES[@]}" >"$TXT.tmp.$$" 2>"$TXT.count.$$" ||
    { rm -f "$TXT.tmp.$$" "$TXT.count.$$"; die "cannot write $TXT"; }
count=$(cat "$TXT.count.$$")
rm -f "$TXT.count.$$"
mv -f "$TXT.tmp.$$" "$TXT"
echo "fetch_fortunes: wrote $TXT ($count fortunes, $(wc -c <"$TXT") bytes)"

"$BIN" data tokenize --bytes "$TXT" "$OUT" --name "$NAME"
