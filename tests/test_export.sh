#!/usr/bin/env bash
# test_export.sh - `mpitrain export --format safetensors | llmc` (docs/EXPORT.md).
#
# usage: test_export.sh MPITRAIN REPO MNIST_H5
#
#   1. The tiny GPT of the tests (tests/lib.sh) trained 20 steps on 2 ranks,
#      its final checkpoint exported; tests/reference/export_check.py then
#      (a) reads the file with its own reader (json + numpy over the bytes)
#      and finds every tensor bitwise equal to the checkpoint's after the
#      documented transposes, under GPT2LMHeadModel's names, with config.json
#      beside it; (b) loads it into a PyTorch GPT-2 of Hugging Face's layout
#      and gets mpitrain's final validation loss (run.json) within 1e-5.
#      The run's model.h5 exports the same tensors. --format llmc: llm.c's
#      gpt2_124M.bin layout, checked the same two ways.
#   2. A GPT with model.vocab_size = 300 held padded (model.vocab_pad = 64):
#      transformer.wte.weight has 300 rows, bitwise the checkpoint's; llm.c's
#      file pads them to 384 with zero rows.
#   3. The MLP on MNIST: its tensors under their own names, bitwise; no
#      config.json; --format llmc refuses it.
#   4. An existing OUT or config.json is not replaced (exit 2, unchanged)
#      unless --force; with --force the files are replaced by the new export.
#   5. Bad input: a missing file, a file that is no checkpoint, a corrupt
#      checkpoint (SHA-256 and Fletcher32) and model file, a model file
#      whose .sha256 beside it does not match (checked before HDF5 reads it),
#      a model file without one of its model's tensors, an unknown --format,
#      a missing argument, an output folder that does not exist or an OUT
#      that is a folder: one "mpitrain: error:" line on stderr, the
#      exit status of DESIGN.md (2 usage, 4 checkpoint), nothing on stdout
#      and nothing left in the output folder.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") REPO=$(realpath "$2") MNIST=${3:-}
CHECK=$REPO/tests/reference/export_check.py

# train NAME ARGS...: a 2-rank run in $TMP/NAME; its folder in $RUN
train() {
    local name=$1
    shift
    must_run_kind 2 GPT_TINY "$TMP/$name" "$TMP/$name.log" --set checkpoint.save_final=true "$@"
    RUN=$TMP/$name/mnist_mlp/0001
}
# export NAME ARGS...: mpitrain export; stdout in $TMP/NAME.out, stderr in .err, status in RC
export_() {
    local name=$1
    shift
    timeout -k 5 60 "$MPITRAIN" export "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" </dev/null
    RC=$?
}
# check LABEL ARGS...: export_check.py ARGS, its lines shown
check() {
    local label=$1
    shift
    if $PY "$CHECK" "$@" >"$TMP/check.txt" 2>&1; then
        sed 's/^ok - /ok - '"$label"': /' "$TMP/check.txt"
    else
        bad "$label"
        sed 's/^/   | /' "$TMP/check.txt"
    fi
}

# ---- 1. the GPT ----
gpt_tokens
GPT_TINY=(--config "$REPO/configs/mnist_mlp.ini" "${GPT_TINY[@]}" --set train.steps=20
    --set train.eval_every=0)
train gpt
CK=$RUN/checkpoints/step_00000020.h5
mkdir -p "$TMP/hf"
export_ gpt --format safetensors "$CK" "$TMP/hf/model.safetensors"
if [ "$RC" = 0 ] && [ -s "$TMP/hf/model.safetensors" ] && [ -s "$TMP/hf/config.json" ]; then
    ok "GPT exported: $(cat "$TMP/gpt.out")"
else
    bad "GPT export exited $RC"
    sed 's/^/   | /' "$TMP/gpt.err"
    exit 1
fi
check "GPT" gpt "$TMP/hf/model.safetensors" "$CK" "$RUN"
mkdir -p "$TMP/hf_model"
export_ gpt_modelfile --format=safetensors "$RUN/model.h5" "$TMP/hf_model/model.safetensors"
[ "$RC" = 0 ] || { bad "export of model.h5 exited $RC"; cat "$TMP/gpt_modelfile.err"; }
check "model.h5" same "$TMP/hf/model.safetensors" "$TMP/hf_model/model.safetensors"
cmp -s "$TMP/hf/config.json" "$TMP/hf_model/config.json" &&
    ok "model.h5 gives the same config.json" || bad "config.json of model.h5 differs"

# llm.c's model file of the same checkpoint
export_ llmc --format llmc "$CK" "$TMP/gpt.bin"
[ "$RC" = 0 ] || { bad "--format llmc exited $RC"; cat "$TMP/llmc.err"; }
check "llmc" llmc "$TMP/gpt.bin" "$CK" "$RUN"

# ---- 2. a padded vocabulary ----
train pad --set train.steps=2 --set model.vocab_size=300 --set model.vocab_pad=64
mkdir -p "$TMP/pad"
export_ pad --format safetensors "$RUN/checkpoints/step_00000002.h5" "$TMP/pad/model.safetensors"
[ "$RC" = 0 ] || { bad "export of the padded run exited $RC"; cat "$TMP/pad.err"; }
check "vocab_pad" gpt "$TMP/pad/model.safetensors" "$RUN/checkpoints/step_00000002.h5" "$RUN"
export_ pad_llmc --format llmc "$RUN/checkpoints/step_00000002.h5" "$TMP/pad/gpt.bin"
[ "$RC" = 0 ] || { bad "--format llmc of the padded run exited $RC"; cat "$TMP/pad_llmc.err"; }
check "vocab_pad llmc" llmc "$TMP/pad/gpt.bin" "$RUN/checkpoints/step_00000002.h5" "$RUN"

# ---- 3. the MLP ----
if [ -n "$MNIST" ] && [ -f "$MNIST" ]; then
    # shellcheck disable=SC2034 # used by name: must_run_kind 2 MLP
    MLP=(--config "$REPO/configs/mnist_mlp.ini" --set data.path="$MNIST" --set train.steps=5)
    must_run_kind 2 MLP "$TMP/mlp" "$TMP/mlp.log"
    MCK=$TMP/mlp/mnist_mlp/0001/checkpoints/step_00000005.h5
    mkdir -p "$TMP/mlp_out"
    export_ mlp --format safetensors "$MCK" "$TMP/mlp_out/mlp.safetensors"
    [ "$RC" = 0 ] || { bad "MLP export exited $RC"; cat "$TMP/mlp.err"; }
    check "MLP" mlp "$TMP/mlp_out/mlp.safetensors" "$MCK"
    [ ! -e "$TMP/mlp_out/config.json" ] && ok "the MLP writes no config.json" ||
        bad "the MLP wrote a config.json"
    export_ mlp_llmc --format llmc "$MCK" "$TMP/mlp_out/mlp.bin"
    [ "$RC" = 2 ] && grep -q "^mpitrain: error: .*model.kind = mlp model; --format llmc" \
        "$TMP/mlp_llmc.err" && [ ! -e "$TMP/mlp_out/mlp.bin" ] &&
        ok "--format llmc refuses the MLP (exit 2)" || bad "--format llmc of the MLP: exit $RC"
else
    bad "no MNIST file (${MNIST:-none}): the ctest fixture mnist_fetch makes it"
fi

# ---- 4. overwriting ----
sum_hf() { sha256sum "$TMP/hf/model.safetensors" "$TMP/hf/config.json"; }
before=$(sum_hf)
CK1=$TMP/gpt/mnist_mlp/0001/checkpoints/step_00000020.h5
# another model to export over the first: the padded run's
CKP=$TMP/pad/mnist_mlp/0001/checkpoints/step_00000002.h5
export_ again --format safetensors "$CKP" "$TMP/hf/model.safetensors"
[ "$RC" = 2 ] && grep -q "^mpitrain: error: .*model.safetensors exists: not replaced" "$TMP/again.err" &&
    [ "$(sum_hf)" = "$before" ] && ok "an existing OUT is refused (exit 2), both files unchanged" ||
    bad "existing OUT: exit $RC, $(cat "$TMP/again.err")"
mkdir -p "$TMP/cfg_only" && echo '{}' >"$TMP/cfg_only/config.json"
export_ cfg_exists --format safetensors "$CK1" "$TMP/cfg_only/model.safetensors"
[ "$RC" = 2 ] && grep -q "config.json exists" "$TMP/cfg_exists.err" &&
    [ "$(ls "$TMP/cfg_only")" = config.json ] && [ "$(cat "$TMP/cfg_only/config.json")" = "{}" ] &&
    ok "an existing config.json is refused (exit 2), nothing written" ||
    bad "existing config.json: exit $RC, $(ls "$TMP/cfg_only"), $(cat "$TMP/cfg_exists.err")"
export_ force --format safetensors "$CKP" "$TMP/hf/model.safetensors" --force
[ "$RC" = 0 ] && [ "$(sum_hf)" != "$before" ] &&
    grep -q '"vocab_size":.*300' "$TMP/hf/config.json" && ok "--force replaces OUT and config.json" ||
    bad "--force: exit $RC, $(cat "$TMP/force.err")"
check "--force's file" same "$TMP/hf/model.safetensors" "$TMP/pad/model.safetensors"

# ---- 5. bad input ----
OUTD=$TMP/out_bad
mkdir -p "$OUTD"
# expect NAME STATUS PATTERN ARGS...: export fails with STATUS, one error line
# matching PATTERN, nothing on stdout, nothing in $OUTD
expect() {
    local name=$1 status=$2 pat=$3
    shift 3
    export_ "$name" "$@"
    local lines
    lines=$(grep -c "^mpitrain: error: " "$TMP/$name.err")
    if [ "$RC" = "$status" ] && [ "$lines" = 1 ] && grep -q -e "$pat" "$TMP/$name.err" &&
        [ ! -s "$TMP/$name.out" ] && [ -z "$(ls -A "$OUTD")" ]; then
        ok "$name: exit $status, $(grep "^mpitrain: error: " "$TMP/$name.err")"
    else
        bad "$name: exit $RC (want $status), $lines error lines, left: $(ls -A "$OUTD")"
        sed 's/^/   | /' "$TMP/$name.err" "$TMP/$name.out"
    fi
}
O=$OUTD/model.safetensors
expect missing 4 "cannot read checkpoint" --format safetensors "$TMP/nope.h5" "$O"
expect not_ckpt 4 "not an HDF5 file" --format safetensors "$TMP/text.txt" "$O"
# an HDF5 file of another kind: the MNIST data set
[ -n "$MNIST" ] && [ -f "$MNIST" ] &&
    expect not_mpitrain 4 "not an mpitrain checkpoint" --format safetensors "$MNIST" "$O"
# a byte flipped inside /model/wte.weight's data: with the .sha256 beside it
# the SHA-256 catches it, without it (and in model.h5) the Fletcher32 checksum
mkdir -p "$TMP/bad1" "$TMP/bad2" "$TMP/bad3"
cp "$CK1" "$CK1.sha256" "$TMP/bad1/"
cp "$CK1" "$TMP/bad2/"
cp "$TMP/gpt/mnist_mlp/0001/model.h5" "$TMP/bad3/"
for f in "$TMP/bad1/step_00000020.h5" "$TMP/bad2/step_00000020.h5" "$TMP/bad3/model.h5"; do
    corrupt_chunk "$f" || bad "cannot corrupt $f"
done
expect corrupt_sha 4 "SHA-256" --format safetensors "$TMP/bad1/step_00000020.h5" "$O"
expect corrupt_fletcher 4 "wte.weight fails its checksum" --format safetensors \
    "$TMP/bad2/step_00000020.h5" "$O"
expect corrupt_model 4 "wte.weight fails its checksum" --format safetensors \
    "$TMP/bad3/model.h5" "$O"
# a .sha256 beside any input is checked before HDF5 reads the file (libhdf5
# can crash on damaged bytes, docs/FUZZING.md): a model file's too, when it
# has one; with the right one it exports
mkdir -p "$TMP/side" "$TMP/side_ok"
cp "$TMP/gpt/mnist_mlp/0001/model.h5" "$TMP/side/"
echo "0000000000000000000000000000000000000000000000000000000000000000  model.h5" \
    >"$TMP/side/model.h5.sha256"
expect sidecar_model 4 "SHA-256" --format safetensors "$TMP/side/model.h5" "$O"
(cd "$TMP/side" && sha256sum model.h5 >model.h5.sha256)
export_ sidecar_model_ok --format safetensors "$TMP/side/model.h5" "$TMP/side_ok/m.safetensors"
[ "$RC" = 0 ] && [ -s "$TMP/side_ok/m.safetensors" ] &&
    ok "a model file with its right .sha256 exports" ||
    { bad "model file with its right .sha256: exit $RC"; cat "$TMP/sidecar_model_ok.err"; }
# a model file without one of its model's tensors (h5py deletes it)
mkdir -p "$TMP/bad4"
cp "$TMP/gpt/mnist_mlp/0001/model.h5" "$TMP/bad4/"
$PY -c 'import sys, h5py; del h5py.File(sys.argv[1], "r+")["/model/h.1.mlp.c_fc.bias"]' \
    "$TMP/bad4/model.h5" || bad "cannot edit $TMP/bad4/model.h5"
expect missing_tensor 4 "no tensor h.1.mlp.c_fc.bias of the shape" --format safetensors \
    "$TMP/bad4/model.h5" "$O"
expect format 2 "unknown export format 'onnx'" --format onnx "$CK1" "$O"
expect no_format 2 "needs --format" "$CK1" "$O"
expect one_arg 2 "needs CKPT and OUT" --format safetensors "$CK1"
expect option 2 "unknown option '--forse'" --format safetensors "$CK1" "$O" --forse
expect no_folder 2 "does not exist" --format safetensors "$CK1" "$OUTD/no/such/model.safetensors"
mkdir "$OUTD/dir.safetensors"
export_ is_dir --format safetensors "$CK1" "$OUTD/dir.safetensors" --force
rmdir "$OUTD/dir.safetensors"
[ "$RC" = 2 ] && grep -q "is a folder, not a regular file" "$TMP/is_dir.err" && [ -z "$(ls -A "$OUTD")" ] &&
    ok "an OUT that is a folder: exit 2 even with --force" || bad "OUT a folder: exit $RC"
# a FIFO at OUT is not replaced (rename would), nor the checkpoint read
mkfifo "$OUTD/fifo.bin"
export_ fifo --format llmc "$CK1" "$OUTD/fifo.bin" --force
[ "$RC" = 2 ] && grep -q "is a FIFO, not a regular file" "$TMP/fifo.err" && [ -p "$OUTD/fifo.bin" ] &&
    ok "an OUT that is a FIFO: exit 2 even with --force, the FIFO left as it was" ||
    bad "OUT a FIFO: exit $RC: $(head -2 "$TMP/fifo.err")"
rm -f "$OUTD/fifo.bin"
cp "$CK1" "$OUTD/self.h5"
sum0=$(sha256sum <"$OUTD/self.h5")
export_ self --format llmc "$OUTD/self.h5" "$OUTD/self.h5" --force
[ "$RC" = 2 ] && grep -q "would replace the file read" "$TMP/self.err" &&
    [ "$(sha256sum <"$OUTD/self.h5")" = "$sum0" ] &&
    ok "OUT the checkpoint itself: exit 2, the checkpoint untouched" ||
    bad "OUT = CKPT: exit $RC: $(head -2 "$TMP/self.err")"
rm -f "$OUTD/self.h5"

"$MPITRAIN" export --help >"$TMP/help.out" 2>&1 && grep -q "^usage: mpitrain export" "$TMP/help.out" &&
    ok "--help prints the usage, exit 0" || bad "--help"
out_has -F -- "  export --format safetensors|llmc CKPT OUT" "$MPITRAIN" --help &&
    ok "mpitrain --help lists export" || bad "mpitrain --help does not list export"

[ $fail = 0 ] && echo "export: all checks passed" || echo "export: FAILED"
exit $fail
