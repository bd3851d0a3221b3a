#!/usr/bin/env bash
# test_gpt2_bpe.sh - the GPT-2 BPE tokenizer (io/gpt2_bpe.h) and
# `mpitrain data tokenize --gpt2`, against an independent implementation:
#   - parity: a >= 1 MB mixed valid-UTF-8 corpus, generated deterministically
#     from tests/data/gpt2_seed.txt (ASCII prose, code, numbers, whitespace
#     runs, Latin/Greek/Cyrillic/Arabic/Devanagari/Thai letters, CJK, emoji),
#     every token compared with npm gpt-3-encoder's own JavaScript encoder run
#     under node. The package's encoder keys merge pairs as "A,B" (JavaScript
#     array to string), so a pair such as ('",', '"') borrows the rank of the
#     merge ('"', ',"'); GPT-2's encoder.py (and this library) keys them as
#     pairs. The test runs the package's source a second time with only that
#     key changed to "A B" and requires: 100% equal to it, and every place
#     that differs from the unchanged package is one where the two JavaScript
#     runs differ (counted and printed).
#   - round trip: decode(encode(x)) == x on the corpus and on random and
#     corrupted (invalid UTF-8) byte strings; 1 and 2 threads give the same
#     tokens.
#   - the CLI: shards hold the encoder's tokens (train + val), <|endoftext|>
#     between documents (several files, --eot-separator); bad input (missing
#     vocabulary folder, corrupt vocabulary file, unreadable or empty input,
#     OUT_DIR a file): one `mpitrain: error:` line each, nothing written.
# usage: tests/test_gpt2_bpe.sh MPITRAIN GPT2_BPE_TOOL VOCAB_CACHE_DIR
# Exits 77 (skip) with the reason when node, npm or the npm registry is missing.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
TESTS=$(cd "$(dirname "$0")" && pwd) # (tests/gpt2_shards.py for the Python checks)
export TESTS
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:?usage: test_gpt2_bpe.sh MPITRAIN GPT2_BPE_TOOL VOCAB_CACHE_DIR}
TOOL=${2:?usage}
VOCAB=${3:?usage}

command -v node >/dev/null 2>&1 || { echo "skip - node not found (apt-get install nodejs): no JavaScript reference"; exit 77; }
command -v python3 >/dev/null 2>&1 || { echo "skip - python3 not found (the corpus generator)"; exit 77; }
gpt2_vocab_or_skip "$VOCAB" --keep-package

# ---- the corpus: >= 1 MB of valid UTF-8 from the seed text ----
python3 "$ROOT/tests/gpt2_corpus.py" "$ROOT/tests/data/gpt2_seed.txt" "$TMP/corpus.txt" 1200000 ||
    { bad "corpus generator failed"; exit 1; }
CORPUS_BYTES=$(stat -c %s "$TMP/corpus.txt")
[ "$CORPUS_BYTES" -ge 1000000 ] && ok "corpus: $CORPUS_BYTES bytes of valid UTF-8" ||
    bad "corpus has only $CORPUS_BYTES bytes"

# ---- the JavaScript reference: the package as shipped, and with "A B" pair keys ----
PKG="$VOCAB/package"
# The package reads encoder.json from its own folder: the patched copies sit
# beside it. Encoder_whole.js: the package with only its quadratic
# `bpe_tokens = bpe_tokens.concat(...)` made a push (the same tokens, so the
# whole corpus is encoded in one call, uncut: the chunking is checked too);
# Encoder_pairkeys.js: that and merge pairs keyed "A B".
if ! python3 - "$PKG/Encoder.js" "$PKG/Encoder_whole.js" "$PKG/Encoder_pairkeys.js" <<'PY'; then
import sys
src = open(sys.argv[1], encoding="utf-8").read()
def patch(src, edits):
    for old, new in edits:
        if src.count(old) != 1:
            sys.exit("Encoder.js changed: '%s' found %d times" % (old, src.count(old)))
        src = src.replace(old, new)
    return src
push = [("bpe_tokens = bpe_tokens.concat(new_tokens)",
         "for (const t of new_tokens) bpe_tokens.push(t)")]
keys = [("result[x[i]] = y[i]", "result[x[i].join(' ')] = y[i]"),
        ("const rank = bpe_ranks[pair]", "const rank = bpe_ranks[pair.join(' ')]"),
        ("if (!(bigram in bpe_ranks))", "if (!((bigram ? bigram.join(' ') : bigram) in bpe_ranks))")]
open(sys.argv[2], "w", encoding="utf-8").write(patch(src, push))
open(sys.argv[3], "w", encoding="utf-8").write(patch(src, push + keys))
PY
    bad "cannot make the patched copies of the package's Encoder.js"; exit 1
fi
cat >"$TMP/ref.js" <<'JS'
// Encodes the whole corpus with the package's encoder in one call (no
// cuts) and writes the tokens as little-endian uint16.
const fs = require('fs');
const [enc_path, in_path, out_path] = process.argv.slice(2);
const { encode } = require(enc_path);
const toks = encode(fs.readFileSync(in_path, 'utf8'));
const buf = Buffer.alloc(2 * toks.length);
toks.forEach((t, k) => buf.writeUInt16LE(t, 2 * k));
fs.writeFileSync(out_path, buf);
JS
t0=$(date +%s.%N)
node "$TMP/ref.js" "$PKG/Encoder_whole.js" "$TMP/corpus.txt" "$TMP/js.u16" 2>"$TMP/js.log" ||
    { bad "node reference failed: $(cat "$TMP/js.log")"; exit 1; }
node "$TMP/ref.js" "$PKG/Encoder_pairkeys.js" "$TMP/corpus.txt" "$TMP/jsfix.u16" 2>>"$TMP/js.log" ||
    { bad "node reference (pair keys) failed: $(cat "$TMP/js.log")"; exit 1; }
t1=$(date +%s.%N)
OMP_NUM_THREADS=1 "$TOOL" "$VOCAB" encode "$TMP/corpus.txt" "$TMP/c1.u16" ||
    { bad "gpt2_bpe_tool encode failed"; exit 1; }
t2=$(date +%s.%N)
echo "   | node (two runs) $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s, C one thread $(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.2f", b-a}') s"

# Compares token files: prints "equal N" or "differ N M first-index context".
cat >"$TMP/cmp.py" <<'PY'
import sys
def toks(p):
    b = open(p, "rb").read()
    return [int.from_bytes(b[i:i + 2], "little") for i in range(0, len(b), 2)]
a, b = toks(sys.argv[1]), toks(sys.argv[2])
if a == b:
    print("equal", len(a)); sys.exit(0)
i = next((k for k in range(min(len(a), len(b))) if a[k] != b[k]), min(len(a), len(b)))
print("differ", len(a), len(b), "at", i, a[max(0, i - 3):i + 4], b[max(0, i - 3):i + 4])
sys.exit(1)
PY
# Counts the runs where A differs from B, and checks C equals B on each (by
# aligning on the decoded text is not needed: A and B encode the same text
# and differ only inside pre-tokens, so a diff on token lists works).
cat >"$TMP/explain.py" <<'PY'
import difflib, sys
def toks(p):
    b = open(p, "rb").read()
    return [int.from_bytes(b[i:i + 2], "little") for i in range(0, len(b), 2)]
js, fix, ours = toks(sys.argv[1]), toks(sys.argv[2]), toks(sys.argv[3])
if fix != ours:
    sys.exit("ours differ from the pair-key reference")
ops = [o for o in difflib.SequenceMatcher(None, js, fix, autojunk=False).get_opcodes() if o[0] != "equal"]
print(len(ops), sum(o[2] - o[1] for o in ops), len(js))
PY
if python3 "$TMP/cmp.py" "$TMP/jsfix.u16" "$TMP/c1.u16" >"$TMP/cmp.txt"; then
    ok "parity: all $(cut -d' ' -f2 "$TMP/cmp.txt") tokens equal to the package's encoder with pair keys (the whole corpus in one call: our chunks cut nothing)"
else
    bad "tokens differ from the JavaScript reference (pair keys): $(cat "$TMP/cmp.txt")"
fi
if python3 "$TMP/cmp.py" "$TMP/js.u16" "$TMP/c1.u16" >"$TMP/cmp0.txt"; then
    ok "parity: all tokens equal to the unchanged package's encoder too"
else
    if read -r nd ntd ntot < <(python3 "$TMP/explain.py" "$TMP/js.u16" "$TMP/jsfix.u16" "$TMP/c1.u16"); then
        ok "the unchanged package differs in $nd places ($ntd of $ntot tokens), each one where its \"A,B\" pair keys collide; equal to ours with pair keys"
    else
        bad "differences from the unchanged package that its \"A,B\" pair keys do not explain: $(cat "$TMP/cmp0.txt")"
    fi
fi

# ---- long pre-tokens: the heap path of io/gpt2_merge.c (over 64 bytes) ----
# Words of 65 to 3000 characters (one pre-token each: letters, digits, runs
# of punctuation or of spaces), as separate documents, against the package.
cat >"$TMP/long.js" <<'JS'
const fs = require('fs');
const { encode } = require(process.argv[2]);
let x = 12345;
const rnd = k => (x = (x * 1103515245 + 12345) % 2147483648) % k;
const pick = (alpha, n) => Array.from({ length: n }, () => alpha[rnd(alpha.length)]).join('');
const lower = 'abcdefghijklmnopqrstuvwxyz', words = [];
for (const n of [65, 100, 257, 1000, 3000]) {
    words.push(pick(lower, n), pick('etaoin', n), 'a'.repeat(n), pick('0123456789', n),
               pick('.,;:!?-"\'()[]{}', n), ' ' + pick(lower + 'ÄÖÜßéèñ', n), ' '.repeat(n),
               pick('ぁあいうえおかがきぎ日本語中文', n));
}
fs.writeFileSync(process.argv[3], words.join('\x1e'));
fs.writeFileSync(process.argv[4], JSON.stringify(words.map(w => encode(w))));
JS
cat >"$TMP/long.py" <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["TESTS"])
from gpt2_shards import documents
ref = json.load(open(sys.argv[1]))
ours = documents(sys.argv[2:])
bad = [i for i in range(len(ref)) if i >= len(ours) or ours[i] != ref[i]]
if len(ours) != len(ref) or bad: sys.exit("words %s differ (of %d)" % (bad[:8], len(ref)))
print(len(ref), sum(len(r) for r in ref))
PY
if node "$TMP/long.js" "$PKG/Encoder.js" "$TMP/long.txt" "$TMP/long.json" &&
    "$BIN" data tokenize --gpt2 "$TMP/long.txt" "$TMP/long" --vocab-dir "$VOCAB" --eot-separator $'\x1e' \
        --val-fraction 0.01 >"$TMP/long.log" 2>&1 &&
    read -r nw nt < <(python3 "$TMP/long.py" "$TMP/long.json" "$TMP"/long/long_train_*.bin "$TMP"/long/long_val_*.bin 2>"$TMP/long.err"); then
    ok "long pre-tokens: $nw words of 65 to 3000 characters ($nt tokens) equal the package's"
else
    bad "long pre-tokens: $(cat "$TMP/long.log" "$TMP/long.err" 2>/dev/null | tail -n 3)"
fi

# ---- where the Unicode tables differ: \s ----
# PCRE2 (UCP) counts U+0085 and U+180E as \s, node's JavaScript does not, and
# JavaScript counts U+FEFF as \s, PCRE2 does not (docs/DATA.md). All strings
# of 1 to 4 characters over {space, a, !, 1, \n, \t, U+2028, U+0085, U+FEFF,
# U+180E} holding one of the last four: tokens must equal the package's
# except where a string holds U+0085, U+FEFF or U+180E (counted).
cat >"$TMP/ws.js" <<'JS'
const fs = require('fs');
const { encode } = require(process.argv[2]);
const A = [' ', 'a', '!', '1', '\n', '\t', '\u2028', '\u0085', '\ufeff', '\u180e'];
let strs = [''], all = [];
for (let L = 1; L <= 4; L++) {
    const nx = [];
    for (const s of strs) for (const c of A) nx.push(s + c);
    strs = nx, all = all.concat(strs);
}
all = all.filter(s => /[\u2028\u0085\ufeff\u180e]/.test(s));
fs.writeFileSync(process.argv[3], all.join('\x1e'));
fs.writeFileSync(process.argv[4], JSON.stringify({ all, toks: all.map(s => encode(s)) }));
JS
cat >"$TMP/ws.py" <<'PY'
import json, os, sys
sys.path.insert(0, os.environ["TESTS"])
from gpt2_shards import documents
ref = json.load(open(sys.argv[1]))
ours = documents(sys.argv[2:])
if len(ours) != len(ref["all"]): sys.exit("%d documents, expected %d" % (len(ours), len(ref["all"])))
odd = lambda s: any(c in s for c in "\u0085\ufeff\u180e")
diff = [i for i in range(len(ours)) if ours[i] != ref["toks"][i]]
unexplained = [ref["all"][i] for i in diff if not odd(ref["all"][i])]
if unexplained: sys.exit("differ without U+0085/U+FEFF/U+180E: %r" % unexplained[:5])
print(len(ref["all"]), sum(1 for s in ref["all"] if not odd(s)), len(diff), sum(1 for s in ref["all"] if odd(s)))
PY
if node "$TMP/ws.js" "$PKG/Encoder.js" "$TMP/ws.txt" "$TMP/ws.json" &&
    "$BIN" data tokenize --gpt2 "$TMP/ws.txt" "$TMP/ws" --vocab-dir "$VOCAB" --eot-separator $'\x1e' \
        --val-fraction 0.01 >"$TMP/ws.log" 2>&1 &&
    read -r nall nplain ndiff nodd < <(python3 "$TMP/ws.py" "$TMP/ws.json" "$TMP"/ws/ws_train_*.bin "$TMP"/ws/ws_val_*.bin 2>"$TMP/ws.err"); then
    ok "whitespace tables: $nplain of $nall strings without U+0085/U+FEFF/U+180E equal the package; $ndiff of the $nodd with them differ (documented)"
else
    bad "whitespace tables: $(cat "$TMP/ws.log" "$TMP/ws.err" 2>/dev/null | tail -n 3)"
fi

# ---- round trips and threads ----
OMP_NUM_THREADS=2 "$TOOL" "$VOCAB" encode "$TMP/corpus.txt" "$TMP/c2.u16" &&
    cmp -s "$TMP/c1.u16" "$TMP/c2.u16" && ok "corpus: 2 threads give the same tokens as 1" ||
    bad "corpus: 2 threads differ from 1"
"$TOOL" "$VOCAB" decode "$TMP/c1.u16" "$TMP/corpus.dec" && cmp -s "$TMP/corpus.txt" "$TMP/corpus.dec" &&
    ok "corpus: decode(encode(x)) == x" || bad "corpus: round trip differs"
python3 - "$TMP" <<'PY'
import random, sys
rng = random.Random(77)
d = sys.argv[1]
text = open(d + "/corpus.txt", "rb").read()[:400000]
bad_seqs = [b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80",
            b"\xf0\x80\x80\x80", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\xfe",
            b"\xe2\x82", b"\xf0\x9f\x98", b"\xc3", b"\x00"]
cases = {"random": bytes(rng.getrandbits(8) for _ in range(300000)),
         "corrupted": b"".join(text[i:i + rng.randint(1, 200)] + rng.choice(bad_seqs)
                               for i in range(0, len(text), 100)),
         "truncated": text[:1001] + text[1002:5003] + b"\xe6"}
for k in range(200):
    cases["short%03d" % k] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 12)))
for name, data in cases.items():
    open("%s/inv_%s.bin" % (d, name), "wb").write(data)
PY
OMP_NUM_THREADS=2 "$TOOL" "$VOCAB" roundtrip "$TMP"/inv_*.bin >"$TMP/rt.log" 2>&1 &&
    ok "invalid UTF-8: decode(encode(x)) == x on $(ls "$TMP"/inv_*.bin | wc -l) byte strings (300 kB random, corrupted corpus, 200 short)" ||
    bad "invalid UTF-8: $(cat "$TMP/rt.log")"
OMP_NUM_THREADS=2 "$TOOL" "$VOCAB" encode "$TMP/inv_corrupted.bin" "$TMP/inv_corrupted.bin.u16" ||
    bad "encode of the corrupted corpus failed"
OMP_NUM_THREADS=1 "$TOOL" "$VOCAB" encode "$TMP/inv_corrupted.bin" "$TMP/corr1.u16" &&
    cmp -s "$TMP/corr1.u16" "$TMP/inv_corrupted.bin.u16" && ok "invalid UTF-8: 1 and 2 threads agree" ||
    bad "invalid UTF-8: 1 and 2 threads differ"
printf 'a\xffb' >"$TMP/one.bin"
"$TOOL" "$VOCAB" encode "$TMP/one.bin" "$TMP/one.u16" &&
    [ "$(od -An -tu2 "$TMP/one.u16" | xargs)" = "64 187 65" ] &&
    ok "invalid byte 0xFF between a and b: its own token (a=64, 0xFF=187, b=65)" ||
    bad "a\\xffb encodes as $(od -An -tu2 "$TMP/one.u16" | xargs), expected 64 187 65"

# ---- the CLI ----
# cat_shards DIR NAME OUT: train then val tokens, headers dropped
cat_shards() {
    : >"$3"
    for f in "$1/$2"_train_*.bin "$1/$2"_val_*.bin; do tail -c +1025 "$f" >>"$3"; done
}
"$BIN" data tokenize --gpt2 "$TMP/corpus.txt" "$TMP/out" --vocab-dir "$VOCAB" --shard-tokens 100000 \
    >"$TMP/cli.log" 2>&1 && cat_shards "$TMP/out" corpus "$TMP/cli.u16" && cmp -s "$TMP/cli.u16" "$TMP/c1.u16" &&
    ok "tokenize --gpt2: shards hold the encoder's tokens: $(tail -n 1 "$TMP/cli.log")" ||
    bad "tokenize --gpt2 shards differ or it failed: $(tail -n 3 "$TMP/cli.log")"
printf 'first doc' >"$TMP/d1.txt"
printf ' second doc' >"$TMP/d2.txt"
printf 'first doc<SEP> second doc<SEP>third' >"$TMP/sep.txt"
"$BIN" data tokenize --gpt2 "$TMP/d1.txt" "$TMP/d2.txt" "$TMP/docs" --vocab-dir "$VOCAB" --name two \
    --val-fraction 0.2 >"$TMP/cli2.log" 2>&1 && cat_shards "$TMP/docs" two "$TMP/two.u16" &&
    [ "$(od -An -tu2 "$TMP/two.u16" | xargs)" = "11085 2205 50256 1218 2205" ] &&
    ok "two input files: first doc <|endoftext|> second doc = 11085 2205 50256 1218 2205" ||
    bad "two input files: $(od -An -tu2 "$TMP/two.u16" 2>/dev/null | xargs) $(tail -n 2 "$TMP/cli2.log")"
"$BIN" data tokenize --gpt2 "$TMP/sep.txt" "$TMP/docs" --vocab-dir "$VOCAB" --eot-separator '<SEP>' \
    --val-fraction 0.2 >"$TMP/cli3.log" 2>&1 && cat_shards "$TMP/docs" sep "$TMP/sep.u16" &&
    [ "$(od -An -tu2 "$TMP/sep.u16" | xargs)" = "11085 2205 50256 1218 2205 50256 17089" ] &&
    ok "--eot-separator '<SEP>': each separator is <|endoftext|> (50256)" ||
    bad "--eot-separator: $(od -An -tu2 "$TMP/sep.u16" 2>/dev/null | xargs) $(tail -n 2 "$TMP/cli3.log")"

# ---- bad input: one error line, exit status, nothing written ----
fails() { # CODE TEXT OUT_DIR ARGS...: tokenize fails with CODE and one error line holding TEXT
    local code=$1 text=$2 out=$3 rc=0
    shift 3
    "$BIN" data tokenize --gpt2 "$@" >"$TMP/f.out" 2>"$TMP/f.err" || rc=$?
    local n
    n=$(grep -c '^mpitrain: error: ' "$TMP/f.err")
    if [ "$rc" = "$code" ] && [ "$n" = 1 ] && grep -qF -- "$text" "$TMP/f.err" &&
        ! grep -qv '^mpitrain: \(error\|hint\): ' "$TMP/f.err" && [ ! -s "$TMP/f.out" ] &&
        { [ ! -e "$out" ] || [ -f "$out" ] || [ -z "$(ls -A "$out")" ]; }; then
        ok "exit $rc: $(head -n 1 "$TMP/f.err")"
    else
        bad "tokenize --gpt2 $*: exit $rc (want $code), stderr: $(cat "$TMP/f.err"), stdout: $(cat "$TMP/f.out")"
    fi
}
fails 3 "GPT-2 vocabulary folder $TMP/novocab not found" "$TMP/o1" "$TMP/d1.txt" "$TMP/o1" --vocab-dir "$TMP/novocab"
mkdir "$TMP/corrupt"
cp "$VOCAB/encoder.json" "$VOCAB/vocab.bpe" "$TMP/corrupt/"
printf 'X' | dd of="$TMP/corrupt/vocab.bpe" bs=1 seek=1000 conv=notrunc 2>/dev/null
fails 3 "GPT-2 vocabulary file $TMP/corrupt/vocab.bpe is corrupt" "$TMP/o2" "$TMP/d1.txt" "$TMP/o2" --vocab-dir "$TMP/corrupt"
cp "$VOCAB/vocab.bpe" "$TMP/corrupt/vocab.bpe"
head -c 100000 "$VOCAB/encoder.json" >"$TMP/corrupt/encoder.json"
fails 3 "GPT-2 vocabulary file $TMP/corrupt/encoder.json is corrupt" "$TMP/o2" "$TMP/d1.txt" "$TMP/o2" --vocab-dir "$TMP/corrupt"
rm "$TMP/corrupt/encoder.json"
fails 3 "$TMP/corrupt/encoder.json" "$TMP/o2" "$TMP/d1.txt" "$TMP/o2" --vocab-dir "$TMP/corrupt"
fails 3 "cannot read input text $TMP/missing.txt" "$TMP/o3" "$TMP/missing.txt" "$TMP/o3" --vocab-dir "$VOCAB"
fails 3 "input text $TMP is not a regular file" "$TMP/o3" "$TMP" "$TMP/o3" --vocab-dir "$VOCAB" --name dir
: >"$TMP/empty.txt"
fails 3 "input text $TMP/empty.txt is empty" "$TMP/o4" "$TMP/empty.txt" "$TMP/o4" --vocab-dir "$VOCAB"
fails 3 "input text $TMP/empty.txt is empty" "$TMP/o4" "$TMP/d1.txt" "$TMP/empty.txt" "$TMP/o4" --vocab-dir "$VOCAB"
echo x >"$TMP/afile"
fails 2 "output folder $TMP/afile is not a folder" "$TMP/afile" "$TMP/d1.txt" "$TMP/afile" --vocab-dir "$VOCAB"
[ "$(cat "$TMP/afile")" = x ] || bad "the file given as OUT_DIR changed"
printf 'a' >"$TMP/a.txt"
fails 3 "the input makes 1 GPT-2 tokens, too few" "$TMP/o5" "$TMP/a.txt" "$TMP/o5" --vocab-dir "$VOCAB"
"$BIN" data tokenize --bytes "$TMP/d1.txt" "$TMP/o6" --eot-separator x >"$TMP/f.out" 2>"$TMP/f.err"
[ $? = 2 ] && grep -q "^mpitrain: error: --eot-separator needs --gpt2" "$TMP/f.err" &&
    ok "--eot-separator with --bytes: usage error" || bad "--eot-separator with --bytes: $(cat "$TMP/f.err")"
"$BIN" data tokenize --gpt2 "$TMP/corpus.txt" "$TMP/out" --vocab-dir "$VOCAB" --shard-tokens 100000 >"$TMP/f.out" 2>"$TMP/f.err"
[ $? = 2 ] && grep -q "already exists" "$TMP/f.err" && ok "existing shards are not replaced" ||
    bad "existing shards: $(cat "$TMP/f.err")"
out_has -- '--gpt2 IN.txt' "$BIN" data tokenize --help && ok "--help shows --gpt2" || bad "--help lacks --gpt2"

# ---- the tokenizer recorded with the model: generate encodes and decodes by it ----
# a tiny GPT on the corpus's shards with data.tokenizer = gpt2 (3 steps, one
# process), then generate: the prompt text encoded with GPT-2's BPE and
# printed back as text, the sampled tokens as their bytes; without the
# vocabulary it stops (exit 3)
"$BIN" train --config "$ROOT/configs/mnist_mlp.ini" --set run.dir="$TMP/runs" --set run.threads=1 \
    --set registry.enabled=false --set model.kind=gpt --set data.tokenizer=gpt2 \
    --set data.train_tokens="$TMP/out/corpus_train_*.bin" --set data.val_tokens="$TMP/out/corpus_val_*.bin" \
    --set model.vocab_size=50257 --set model.n_layer=1 --set model.n_head=2 --set model.n_embd=32 \
    --set model.block_size=32 --set train.global_batch=4 --set train.steps=3 --set train.eval_windows=4 \
    >"$TMP/train.log" 2>&1 || { bad "training a gpt2 model failed: $(tail -n 3 "$TMP/train.log")"; exit 1; }
CKG=$(ls "$TMP"/runs/*/0001/checkpoints/step_00000003.h5)
PROMPT="Hello world, café"
"$BIN" generate --checkpoint "$CKG" --vocab-dir "$VOCAB" --prompt "$PROMPT" --tokens 6 --seed 2 \
    >"$TMP/gen.out" 2>"$TMP/gen.err"
rc=$?
if [ $rc = 0 ] && python3 - "$TMP/gen.out" "$PROMPT" <<'PY'; then
import sys
out, prompt = open(sys.argv[1], "rb").read(), sys.argv[2].encode()
assert out.startswith(prompt) and out.endswith(b"\n") and len(out) > len(prompt) + 1, out[:80]
PY
    ok "generate on a gpt2 model: the prompt back as text, 6 tokens' bytes after it"
else
    bad "generate on a gpt2 model: exit $rc, $(head -c 80 "$TMP/gen.out"), $(tail -n 2 "$TMP/gen.err")"
fi
"$BIN" generate --checkpoint "$CKG" --vocab-dir "$VOCAB" --tokens 3 >"$TMP/gen0.out" 2>"$TMP/gen0.err"
[ $? = 0 ] && grep -q "starting from token 50256 (<|endoftext|>)" "$TMP/gen0.err" &&
    ok "generate on a gpt2 model without a prompt starts from <|endoftext|>" ||
    bad "gpt2 model without a prompt: $(tail -n 2 "$TMP/gen0.err")"
"$BIN" generate --checkpoint "$CKG" --vocab-dir "$TMP/novocab" --prompt hi --tokens 3 \
    >"$TMP/gen1.out" 2>"$TMP/gen1.err"
rc=$?
[ $rc = 3 ] && [ "$(grep -c '^mpitrain: error:' "$TMP/gen1.err")" = 1 ] &&
    grep -q "GPT-2 vocabulary folder $TMP/novocab not found" "$TMP/gen1.err" && [ ! -s "$TMP/gen1.out" ] &&
    ok "generate on a gpt2 model without the vocabulary: exit 3, one error line" ||
    bad "gpt2 model without the vocabulary: exit $rc, $(cat "$TMP/gen1.err")"
exit $fail
