#!/usr/bin/env bash
# test_readme_path.sh - the README's "whole path with GPT-2's tokenizer"
# block, run as it is written: its commands are read from README.md (the
# fenced block after that heading; a line ending in a backslash continues),
# and run one by one in a scratch folder laid out like the repository
# (scripts/, configs/, tests/ linked, build/mpitrain the binary under
# test). Each must exit 0; then the files each step makes are there, and
# the last step (the PyTorch GPT-2 loading the export) says the loss
# matched. Skipped, saying why, where npm cannot fetch GPT-2's vocabulary or
# /usr/share/common-licenses is missing.
#
# usage: test_readme_path.sh MPITRAIN REPO
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") REPO=$(realpath "$2")

[ -d /usr/share/common-licenses ] || { echo "skip - /usr/share/common-licenses is missing (the README's text)"; exit 77; }
W=$TMP/w
mkdir -p "$W/build"
ln -s "$REPO/scripts" "$REPO/configs" "$REPO/tests" "$W/"
ln -s "$MPITRAIN" "$W/build/mpitrain"
# the block: from the line after the heading's fence to the closing fence
$PY - "$REPO/README.md" >"$TMP/cmds.txt" <<'PYEOF' || { bad "no whole-path block in README.md"; exit 1; }
import sys
text = open(sys.argv[1]).read().split("\n")
at = next(i for i, l in enumerate(text) if l.startswith("**The whole path with GPT-2's tokenizer**"))
start = next(i for i in range(at, len(text)) if text[i].startswith("```sh")) + 1
end = next(i for i in range(start, len(text)) if text[i].startswith("```"))
cmd = ""
for line in text[start:end]:
    if line.endswith("\\"):
        cmd += line[:-1]
        continue
    print(cmd + line)
    cmd = ""
PYEOF
n=$(grep -c . "$TMP/cmds.txt")
[ "$n" -ge 6 ] || { bad "the README's block has $n commands"; exit 1; }
cd "$W" || exit 1
i=0
while IFS= read -r cmd; do
    i=$((i + 1))
    if ! timeout -k 5 300 bash -c "$cmd" >"$TMP/step$i.out" 2>&1 </dev/null; then
        if [ "$i" = 1 ] && grep -q "npm" "$TMP/step1.out"; then
            echo "skip - the README's first step cannot fetch GPT-2's vocabulary: $(tail -n 1 "$TMP/step1.out")"
            exit 77
        fi
        bad "README step $i failed: ${cmd:0:100}"
        tail -5 "$TMP/step$i.out" | sed 's/^/   | /'
        exit 1
    fi
    ok "README step $i: ${cmd:0:90}"
done <"$TMP/cmds.txt"
for f in data/gpt2/gpt2_train_000000.bin runs/gpt2_124m/0001/model.h5 run.png hf/model.safetensors hf/config.json; do
    [ -s "$f" ] || bad "the path made no $f"
done
grep -q "^ok - PyTorch GPT-2 from the export" "$TMP/step$i.out" &&
    ok "the last step: $(grep '^ok - PyTorch' "$TMP/step$i.out" | cut -c1-120)" ||
    bad "the last step did not match the loss: $(tail -3 "$TMP/step$i.out")"
exit $fail
