#!/usr/bin/env bash
# test_gpt2_preset.sh - configs/gpt2_124m.ini as it is (12 layers, 12
# heads, 768 channels, vocab 50257, block 1024), run for 2 steps on tiny
# shards at a small batch: 2 ranks (dp2), 1 sequence each of 64 tokens
# (train.seq_len), evaluation of 2 windows, no checkpoint. Checks:
#   - the run completes, and the start-up line names the model as the preset
#     says (124,439,808 parameters: GPT-2 small's count, wpe's 1024
#     positions included);
#   - both steps log a finite loss near ln(50257) = 10.82 (initial weights
#     predict close to uniformly: within 1.0 of it);
#   - the preset's keys are what the docs say (layers, heads, width, vocab,
#     context), read back from the run folder's resolved config.ini.
# The data are byte-level shards (ids < 256, valid under vocab 50257) made
# from tests/data/gpt_corpus.txt: the shape of the model is what is tested,
# not its tokenizer.
#
# usage: test_gpt2_preset.sh MPITRAIN REPO
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") REPO=$(realpath "$2")

gpt_tokens # $TMP/tok/docs_{train,val}_000000.bin
RUN=(--config "$REPO/configs/gpt2_124m.ini" --set run.dir="$TMP/runs" --set run.threads=1
    --set run.log_every=1 --set registry.enabled=false
    --set data.train_tokens="$TMP/tok/docs_train_000000.bin"
    --set data.val_tokens="$TMP/tok/docs_val_000000.bin"
    --set train.steps=2 --set train.seq_len=64 --set train.global_batch=2
    --set parallel.microbatches=1 --set train.eval_every=0 --set train.eval_windows=2
    --set checkpoint.every_steps=0 --set checkpoint.save_final=false)
t0=$(date +%s)
timeout 300 mpirun -np 2 "$MPITRAIN" train "${RUN[@]}" >"$TMP/run.log" 2>&1
RC=$?
must_succeed "gpt2_124m for 2 steps" "$TMP/run.log"
echo "   2 steps of the GPT-2 124M preset on 2 ranks: $(($(date +%s) - t0)) s"
grep -E "^model:|parameters|memory" "$TMP/run.log" | head -5 | sed 's/^/   | /'
if grep -q "gpt 12 layers, 12 heads, n_embd 768, block_size 1024, vocab 50257" "$TMP/run.log" &&
    grep -q "124,439,808\|124439808" "$TMP/run.log"; then
    ok "the preset builds GPT-2 small: 12 layers, 12 heads, 768 wide, context 1024, vocab 50257, 124,439,808 parameters"
else
    bad "the start-up lines do not show GPT-2 small"
fi
if $PY - "$TMP/runs" <<'PYEOF'; then
import glob, json, math, sys
d = sys.argv[1]
m = glob.glob(d + "/*/*/metrics.jsonl")
assert len(m) == 1, m
rows = [json.loads(l) for l in open(m[0])]
loss = {r["step"]: r["loss"] for r in rows if "loss" in r}
assert sorted(loss) == [1, 2], loss
for s, l in loss.items():
    assert math.isfinite(l) and abs(l - math.log(50257)) < 1.0, (s, l)
import configparser
ini = configparser.ConfigParser()
ini.read(glob.glob(d + "/*/*/config.ini")[0])
want = {"n_layer": "12", "n_head": "12", "n_embd": "768", "block_size": "1024",
        "vocab_size": "50257"}
got = {k: ini["model"][k] for k in want}
assert got == want, got
print("   losses", loss)
PYEOF
    ok "two steps log finite losses near ln(50257); the resolved config holds the preset's model keys"
else
    bad "losses or run.json of the preset run"
fi
exit $fail
