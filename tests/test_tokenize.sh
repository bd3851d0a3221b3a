#!/usr/bin/env bash
# test_tokenize.sh - checks `mpitrain data tokenize --bytes` on small inputs
# made here: every shard is byte for byte what llm.c's write_datafile would
# write for the same tokens, train + val decode back to exactly the input,
# the split is val = floor(F * n) last tokens, shards hold at most
# --shard-tokens tokens; bad usage exits 2 and data problems exit 3 with one
# `mpitrain: error:` line; existing shards are never replaced.
#
# usage: tests/test_tokenize.sh PATH/TO/mpitrain
# Needs python3 with numpy; exits 77 (skip) without them.
set -euo pipefail

BIN=${1:?usage: test_tokenize.sh PATH/TO/mpitrain}
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
if ! "$PY" -c 'import numpy' >/dev/null 2>&1; then
    echo "SKIP: python3 with numpy not found (apt-get install python3-numpy)"
    exit 77
fi
[ -x "$BIN" ] || { echo "FAIL: mpitrain binary not found or not executable: $BIN" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/mt_tokenize_test.XXXXXX")
trap 'rm -rf "$T"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { echo "check: $*"; }

cat >"$T/helper.py" <<'PY'
import glob, math, os, sys
import numpy as np

def gen(path, n):
    # every byte value (NUL, non-UTF-8, newlines) in a fixed pseudo-random order
    rng = np.random.default_rng(1234)
    data = bytes(range(256)) + rng.integers(0, 256, n - 256, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        f.write(data)

def llmc_bytes(toks):
    # llm.c dev/data/data_common.py write_datafile, GPT-2 (version 1) branch
    header = np.zeros(256, dtype=np.int32)
    header[0] = 20240520
    header[1] = 1
    header[2] = len(toks)
    return header.tobytes() + np.array(toks, dtype=np.uint16).tobytes()

def verify(inp, out, name, frac, per):
    data = open(inp, "rb").read()
    n = len(data)
    nval = math.floor(frac * n)  # the same IEEE double product as the C code
    ntrain = n - nval
    parts = {"train": data[:ntrain], "val": data[ntrain:]}
    for split, part in parts.items():
        files = sorted(glob.glob(os.path.join(out, "%s_%s_%s.bin" % (name, split, "[0-9]" * 6))))
        want = [part[i:i + per] for i in range(0, len(part), per)]
        names = [os.path.join(out, "%s_%s_%06d.bin" % (name, split, k)) for k in range(len(want))]
        if files != names:
            sys.exit("%s: files %s, expected %s" % (split, files, names))
        for path, chunk in zip(files, want):
            raw = open(path, "rb").read()
            if len(raw) != 1024 + 2 * len(chunk):
                sys.exit("%s: %d bytes, expected %d" % (path, len(raw), 1024 + 2 * len(chunk)))
            h = np.frombuffer(raw[:1024], dtype="<i4")
            if (h[0], h[1], h[2]) != (20240520, 1, len(chunk)) or h[3:].any():
                sys.exit("%s: header %s, expected 20240520 1 %d and zeros"
                         % (path, h[:4].tolist(), len(chunk)))
            if raw != llmc_bytes(list(chunk)):
                sys.exit("%s differs from what llm.c's write_datafile writes" % path)
        got = b"".join(np.frombuffer(open(p, "rb").read()[1024:], dtype="<u2").astype(np.uint8)
                       .tobytes() for p in files)
        if got != part:
            sys.exit("%s tokens do not decode to the last/first bytes of the input" % split)
        print("  %s: %d tokens in %d shards of at most %d, decode to the input"
              % (split, len(part), len(files), per))
    print("  n=%d: train %d + val %d = floor(%g * %d)" % (n, ntrain, nval, frac, n))
    print("%d %d" % (ntrain, nval), file=sys.stderr)

cmd = sys.argv[1]
if cmd == "gen": gen(sys.argv[2], int(sys.argv[3]))
elif cmd == "verify": verify(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]),
                             int(sys.argv[6]))
else: sys.exit("helper: unknown command " + cmd)
PY
helper() { "$PY" "$T/helper.py" "$@"; }

# Runs a tokenize expected to succeed, checks its report lines and the shards.
tokenize_ok() { # IN OUT NAME FRAC PER ARGS...
    local in=$1 out=$2 name=$3 frac=$4 per=$5
    shift 5
    "$BIN" data tokenize "$@" >"$T/stdout" 2>"$T/stderr" ||
        fail "mpitrain data tokenize $* exited $?; stderr: $(cat "$T/stderr")"
    [ ! -s "$T/stderr" ] || fail "unexpected stderr: $(cat "$T/stderr")"
    helper verify "$in" "$out" "$name" "$frac" "$per" 2>"$T/split" ||
        fail "shards differ: $(cat "$T/split")"
    read -r ntrain nval <"$T/split"
    local n=$((ntrain + nval)) kt=$(((ntrain + per - 1) / per)) kv=$(((nval + per - 1) / per))
    local sh_t="shards" sh_v="shards"
    [ "$kt" = 1 ] && sh_t=shard
    [ "$kv" = 1 ] && sh_v=shard
    local last
    last=$(tail -n 1 "$T/stdout")
    [ "$last" = "mpitrain: tokenized $in ($n bytes, byte-level tokenizer, vocab 256): $ntrain train tokens in $kt $sh_t, $nval val tokens in $kv $sh_v" ] ||
        fail "unexpected summary line: '$last'"
    [ "$(grep -c '^mpitrain: wrote ' "$T/stdout")" = $((kt + kv)) ] ||
        fail "expected $((kt + kv)) 'wrote' lines: $(cat "$T/stdout")"
    grep -qF "mpitrain: wrote $out/${name}_train_000000.bin ($((ntrain < per ? ntrain : per)) tokens)" \
        "$T/stdout" || fail "no report line for the first train shard: $(cat "$T/stdout")"
    ls "$out"/*.tmp.* >/dev/null 2>&1 && fail "temporary file left in $out"
    echo "  -> $last"
}

# Runs a tokenize expected to fail with CODE and one error line holding TEXT.
tokenize_fails() { # CODE TEXT ARGS...
    local code=$1 text=$2 rc=0
    shift 2
    "$BIN" data tokenize "$@" >"$T/stdout" 2>"$T/stderr" || rc=$?
    [ "$rc" = "$code" ] || fail "tokenize $*: expected exit $code, got $rc; stderr: $(cat "$T/stderr")"
    [ "$(grep -c '^mpitrain: error: ' "$T/stderr")" = 1 ] ||
        fail "tokenize $*: expected one 'mpitrain: error:' line: $(cat "$T/stderr")"
    grep -q '^mpitrain: error: ' <<<"$(head -n 1 "$T/stderr")" ||
        fail "tokenize $*: stderr does not start with the error: $(cat "$T/stderr")"
    grep -v '^mpitrain: \(error\|hint\): ' "$T/stderr" && fail "tokenize $*: other stderr lines"
    grep -qF -- "$text" "$T/stderr" || fail "tokenize $*: error does not say '$text': $(cat "$T/stderr")"
    [ ! -s "$T/stdout" ] || fail "tokenize $*: unexpected stdout: $(cat "$T/stdout")"
    echo "  -> exit $rc: $(head -n 1 "$T/stderr")"
}

helper gen "$T/corpus.v1.txt" 1003

check "1003 bytes, --shard-tokens 100: train 903 in 10 shards, val 100 in 1; default NAME corpus.v1"
tokenize_ok "$T/corpus.v1.txt" "$T/out" corpus.v1 0.1 100 --bytes "$T/corpus.v1.txt" "$T/out" \
    --shard-tokens 100

check "--val-fraction 0.29 (floor(0.29 * 1003) = 290), --name, options before positionals, OUT_DIR created with parents"
tokenize_ok "$T/corpus.v1.txt" "$T/deep/er/out" c29 0.29 64 --val-fraction=0.29 --name c29 \
    --shard-tokens=64 --bytes "$T/corpus.v1.txt" "$T/deep/er/out/"

check "defaults: one train and one val shard"
tokenize_ok "$T/corpus.v1.txt" "$T/out" plain 0.1 100000000 --bytes "$T/corpus.v1.txt" "$T/out" \
    --name plain

check "--shard-tokens equal to the train split (502 of 1003 at F = 0.5): one full train shard"
tokenize_ok "$T/corpus.v1.txt" "$T/exact" exact 0.5 502 --bytes "$T/corpus.v1.txt" "$T/exact" \
    --name exact --val-fraction 0.5 --shard-tokens 502

check "--shard-tokens 1: one token per shard"
head -c 20 "$T/corpus.v1.txt" >"$T/tiny.txt"
tokenize_ok "$T/tiny.txt" "$T/tiny" tiny 0.1 1 --bytes "$T/tiny.txt" "$T/tiny" --shard-tokens 1

check "existing shards of NAME are not replaced (exit 2, names the file, files unchanged)"
sum_before=$(cat "$T"/out/corpus.v1_*.bin | md5sum)
touch -d '2001-01-01' "$T"/out/corpus.v1_*.bin
tokenize_fails 2 "$T/out/corpus.v1_train_000000.bin already exists" --bytes "$T/corpus.v1.txt" \
    "$T/out" --shard-tokens 100
[ "$(cat "$T"/out/corpus.v1_*.bin | md5sum)" = "$sum_before" ] || fail "existing shards changed"
[ -z "$(find "$T/out" -newermt '2001-01-02' -name 'corpus.v1_*')" ] || fail "existing shards touched"
check "only a val shard left over still blocks; another NAME in the same folder is fine"
mkdir "$T/partial"
cp "$T/out/corpus.v1_val_000000.bin" "$T/partial/"
tokenize_fails 2 "corpus.v1_val_000000.bin already exists" --bytes "$T/corpus.v1.txt" "$T/partial"
echo x >"$T/partial/corpus.v1_train_notes.bin" # not a shard name
rm "$T/partial/corpus.v1_val_000000.bin"
tokenize_ok "$T/corpus.v1.txt" "$T/partial" corpus.v1 0.1 100000000 --bytes "$T/corpus.v1.txt" \
    "$T/partial"

check "data problems: exit 3, one error line, nothing written"
tokenize_fails 3 "$T/missing.txt" --bytes "$T/missing.txt" "$T/none"
: >"$T/empty.txt"
tokenize_fails 3 "$T/empty.txt is empty" --bytes "$T/empty.txt" "$T/none"
printf 'abcde' >"$T/five.txt"
tokenize_fails 3 "has 5 bytes, too few" --bytes "$T/five.txt" "$T/none"
tokenize_fails 3 "not a regular file" --bytes "$T" "$T/none" --name dir
[ ! -e "$T/none" ] || fail "OUT_DIR was created by a failed run"

check "a shard that cannot be written (file size limit) fails with exit 2 and leaves no shard"
# train: 101 tokens (1226 bytes) fit under 2 KiB; val: 600 tokens (2224 bytes) do not
rc=0
(trap '' XFSZ; ulimit -f 2; exec "$BIN" data tokenize --bytes "$T/corpus.v1.txt" "$T/limited" \
    --val-fraction 0.9 --shard-tokens 600) >"$T/stdout" 2>"$T/stderr" || rc=$?
[ "$rc" = 2 ] || fail "expected exit 2 from a failed write, got $rc: $(cat "$T/stderr")"
grep -q "^mpitrain: error: cannot write token shard $T/limited/corpus.v1_val_000000.bin" \
    "$T/stderr" || fail "the write error does not name the shard: $(cat "$T/stderr")"
[ -z "$(ls -A "$T/limited")" ] || fail "shards left after a failed run: $(ls "$T/limited")"
echo "  -> exit $rc: $(cat "$T/stderr"); $T/limited is empty"

check "usage: exit 2, one error line"
tokenize_fails 2 "needs --bytes" "$T/corpus.v1.txt" "$T/u"
tokenize_fails 2 "needs IN and OUT_DIR" --bytes "$T/corpus.v1.txt"
tokenize_fails 2 "unexpected argument 'extra'" --bytes "$T/corpus.v1.txt" "$T/u" extra
tokenize_fails 2 "unknown argument '--bpe'" --bpe "$T/corpus.v1.txt" "$T/u"
tokenize_fails 2 "option --bytes given twice" --bytes --bytes "$T/corpus.v1.txt" "$T/u"
for f in 0 1 -0.5 1.5 abc 0.1x nan; do
    tokenize_fails 2 "--val-fraction must be" --bytes "$T/corpus.v1.txt" "$T/u" --val-fraction "$f"
done
for s in 0 -3 1.5 0x10 ' 5'; do
    tokenize_fails 2 "--shard-tokens must be" --bytes "$T/corpus.v1.txt" "$T/u" --shard-tokens "$s"
done
for s in 2147483648 99999999999999999999; do
    tokenize_fails 2 "--shard-tokens $s is too large: it must be" --bytes "$T/corpus.v1.txt" \
        "$T/u" --shard-tokens "$s"
done
tokenize_fails 2 "option --shard-tokens needs a value" --bytes "$T/corpus.v1.txt" "$T/u" --shard-tokens
tokenize_fails 2 "option --name given twice" --bytes "$T/corpus.v1.txt" "$T/u" --name a --name b
tokenize_fails 2 "is not a valid name" --bytes "$T/corpus.v1.txt" "$T/u" --name 'a/b'
cp "$T/five.txt" "$T/.hidden"
tokenize_fails 2 "cannot make a shard name" --bytes "$T/.hidden" "$T/u"
head -c 1200000 /dev/zero >"$T/big.txt"
tokenize_fails 2 "--shard-tokens 1 makes 1080000 shards of one split; at most 1000000" --bytes \
    "$T/big.txt" "$T/u" --shard-tokens 1
echo x >"$T/afile"
tokenize_fails 2 "$T/afile is not a folder" --bytes "$T/corpus.v1.txt" "$T/afile"
[ ! -e "$T/u" ] || fail "OUT_DIR was created by a usage error"

check "help: exit 0 and the usage text"
for h in --help -h; do
    "$BIN" data tokenize $h >"$T/stdout" 2>&1 || fail "tokenize $h exited $?"
    grep -q '^usage: mpitrain data tokenize --bytes IN.txt OUT_DIR' "$T/stdout" ||
        fail "tokenize $h printed no usage: $(cat "$T/stdout")"
done
grep -q 'llm.c' "$T/stdout" || fail "usage does not mention llm.c shards"
"$BIN" data --help >"$T/stdout" || fail "'mpitrain data --help' exited $?"
grep -q '^  tokenize ' "$T/stdout" || fail "'mpitrain data --help' does not list tokenize"

echo "PASS: test_tokenize.sh"
