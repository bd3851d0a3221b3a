#!/usr/bin/env bash
# test_long_paths.sh - nothing may depend on how long a path is.
#
# usage: test_long_paths.sh MPITRAIN REPO MNIST.h5
#
# Cluster scratch paths are long. Under a folder whose path is about 3,000
# characters (15 nested names of 200), with a config file whose data.path
# line is that long:
#  - the MNIST MLP at -np 2 trains, writes checkpoints and stops
#    (train.exit_after_steps), then continues with checkpoint.resume = auto
#    to the end, and its registry, model file and checkpoints verify;
#  - the GPT reads token shards from that folder at pp 2, checkpoints,
#    and resumes;
#  - a value of PATH_MAX - 1 characters passes through --set into the stored
#    config (the run then fails, cleanly, because no such file exists), and
#    one character more is a usage error (exit 2) naming the key.
set -euo pipefail
MPITRAIN=$1 REPO=$2 MNIST=$3
. "$(dirname "$0")/lib.sh"

LONG=$TMP
for i in $(seq 1 15); do LONG=$LONG/$(printf 'd%02d_%0196d' "$i" 0); done
mkdir -p "$LONG"
echo "test folder: ${#LONG} characters"
ln -s "$(readlink -f "$MNIST")" "$LONG/mnist.h5"
sed "s#^path *=.*#path = $LONG/mnist.h5#" "$REPO/configs/mnist_mlp.ini" >"$LONG/mlp.ini"
longest=$(awk '{ if (length($0) > n) n = length($0) } END { print n }' "$LONG/mlp.ini")
echo "config file: longest line $longest characters"

mlp() { # mlp LOG [--set ...]
    local log=$1
    shift
    timeout 300 mpirun -np 2 "$MPITRAIN" train --config "$LONG/mlp.ini" --set run.dir="$LONG/runs" \
        --set train.steps=12 --set checkpoint.every_steps=4 --set run.log_every=4 \
        --set train.eval_every=0 "$@" >"$log" 2>&1
}

if mlp "$TMP/mlp1.log" --set train.exit_after_steps=8; then
    ok "MLP under a ${#LONG}-character path trained 8 steps and checkpointed"
else
    bad "MLP stop run failed (exit $?):"
    tail -5 "$TMP/mlp1.log" | cut -c1-300
fi
if mlp "$TMP/mlp2.log" --set checkpoint.resume=auto; then
    ok "MLP resumed from its checkpoint (checkpoint.resume = auto)"
else
    bad "MLP resume failed (exit $?):"
    tail -5 "$TMP/mlp2.log" | cut -c1-300
fi
grep -c "^data: $LONG/mnist.h5: .* (sha256 [0-9a-f]*\.\.\.)$" "$TMP/mlp1.log" >/dev/null &&
    ok "the header's data line holds the whole path" || bad "the header's data line is cut"
grep -c "^resume: from $LONG/runs/mnist_mlp/0001/checkpoints/step_00000008.h5" "$TMP/mlp2.log" \
    >/dev/null && ok "the resume took step 8's checkpoint" || bad "the resume did not start at step 8"
run2=$LONG/runs/mnist_mlp/0002
if [ -s "$run2/model.h5" ] && "$MPITRAIN" ckpt verify "$run2"/checkpoints/step_*.h5 \
    >"$TMP/verify.log" 2>&1; then
    ok "model.h5 written; every checkpoint of the resumed run verifies"
else
    bad "model.h5 missing or a checkpoint does not verify:"
    tail -3 "$TMP/verify.log" | cut -c1-300
fi
if "$MPITRAIN" registry --registry "$LONG/runs/registry.jsonl" verify >"$TMP/reg.log" 2>&1; then
    ok "the registry under the long path verifies"
else
    bad "registry verify failed:"
    tail -3 "$TMP/reg.log" | cut -c1-300
fi

# The GPT on token shards in the long folder, split into 2 pipeline stages.
"$MPITRAIN" data tokenize --bytes "$REPO/tests/data/gpt_corpus.txt" "$LONG/tok" >"$TMP/tok.log" 2>&1 ||
    bad "tokenize into the long folder failed"
gpt() { # gpt LOG [--set ...]
    local log=$1
    shift
    timeout 300 mpirun -np 2 "$MPITRAIN" train --config "$REPO/configs/fortunes_gpt.ini" \
        --set run.dir="$LONG/gptruns" --set data.train_tokens="$LONG/tok/*_train_*.bin" \
        --set data.val_tokens="$LONG/tok/*_val_*.bin" --set model.n_layer=2 \
        --set model.n_embd=32 --set model.n_head=2 --set model.block_size=32 \
        --set train.global_batch=4 --set train.steps=6 --set train.eval_windows=8 \
        --set train.eval_every=0 --set checkpoint.every_steps=3 --set parallel.pp=2 \
        --set run.log_every=3 "$@" >"$log" 2>&1
}
if gpt "$TMP/gpt1.log" --set train.exit_after_steps=3 &&
    gpt "$TMP/gpt2.log" --set checkpoint.resume=auto &&
    grep -c "^resume: from $LONG/gptruns/.*/step_00000003.h5" "$TMP/gpt2.log" >/dev/null; then
    ok "GPT at pp 2 on shards under the long path: stopped at step 3, resumed to step 6"
else
    bad "GPT run or resume failed:"
    tail -5 "$TMP/gpt1.log" "$TMP/gpt2.log" | cut -c1-300
fi

# The longest value a config string holds, and one character more.
max=$(getconf PATH_MAX /)
v=/$(printf 'p%.0s' $(seq 2 $((max - 1))))
set +e
"$MPITRAIN" train --config "$LONG/mlp.ini" --set run.dir="$TMP/r" --set data.path="$v" \
    >"$TMP/max.log" 2>&1
rc=$?
"$MPITRAIN" train --config "$LONG/mlp.ini" --set run.dir="$TMP/r" --set data.path="${v}p" \
    >"$TMP/over.log" 2>&1
rc2=$?
set -e
if [ $rc -ne 0 ] && ! grep -c "longer than\|does not read back" "$TMP/max.log" >/dev/null; then
    ok "a $((max - 1))-character data.path is accepted (exit $rc: the file does not exist)"
else
    bad "a $((max - 1))-character data.path (exit $rc):"
    tail -2 "$TMP/max.log" | cut -c1-300
fi
if [ $rc2 -eq 2 ] && grep -c "^mpitrain: error: data.path is longer than $((max - 1)) characters" \
    "$TMP/over.log" >/dev/null; then
    ok "a $max-character data.path is a usage error naming the key"
else
    bad "a $max-character data.path gave exit $rc2:"
    tail -2 "$TMP/over.log" | cut -c1-300
fi
exit $fail
