#!/usr/bin/env bash
# test_data.sh - the data file changes under a run (docs/FAULTS.md): one
# pixel of the training images is changed while the run trains (rank 0
# stalls 1 s at step 5 meanwhile; the run holds the data in memory and
# finishes its 6 steps, train.exit_after_steps). The resume then finds the
# data's SHA-256 different from the checkpoint's: exit 3 on every rank, one
# error line naming the file, no run folder made, nothing lost. With
# checkpoint.allow_data_change = true it warns and trains on; with the data
# restored it resumes from step 6 and ends bitwise equal to an uninterrupted
# run.
#
# usage: test_data.sh MPITRAIN H5CMP LIBIOFAULT REPO DATA.h5
set -uo pipefail
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=tests/faults/cases.sh
. "$(dirname "$0")/cases.sh"

c=data_changed
MINE=$TMP/data.h5
cp "$DATA" "$MINE"
BG=1 fault_run $c MPITRAIN_FAULT=stall:rank=0:step=5:seconds=1 -- --set data.path="$MINE" \
    --set train.exit_after_steps=6
if await_line $c '^step  4/12'; then
    $PY - "$MINE" <<'EOF' && ok "$c: changed one training pixel of $MINE mid-run"
import sys, h5py
with h5py.File(sys.argv[1], "r+") as h:
    x = h["/train/images"]
    x[0, 400] = 1.0 - x[0, 400]
EOF
fi
wait "$BG_PID"
[ "$(rank_statuses "$(case_dir $c)/o" 2)" = "0 0" ] && ok "$c: the run itself ended normally at step 6" ||
    bad "$c: the run exited $(rank_statuses "$(case_dir $c)/o" 2)"
intact $c step_00000006.h5

# the resume: refused
cp "$(registry_of $c)" "$TMP/registry.kept"
rm -rf "$(case_dir $c)/o"
fault_run $c -- --set data.path="$MINE" --set checkpoint.resume=auto
ended $c "3 3" "^mpitrain: error: the data changed since checkpoint [^ ]*/step_00000006\.h5 was written: $MINE has SHA-256 [0-9a-f]{16}\.\.\. now, [0-9a-f]{16}\.\.\. then$"
grep -q "^mpitrain: hint: resume with the data the run was trained on, or set checkpoint.allow_data_change = true" \
    "$(case_dir $c)/o/err.0" && ok "$c: the hint names checkpoint.allow_data_change" || bad "$c: no hint"
[ ! -e "$(case_dir $c)/runs/mnist_mlp/0002" ] && ok "$c: no run folder made" || bad "$c: a run folder was made"
cmp -s "$(registry_of $c)" "$TMP/registry.kept" && ok "$c: the registry is unchanged" ||
    bad "$c: the refused resume wrote to the registry"
intact $c step_00000006.h5

# the documented override, on a copy of the run: a warning, and it trains on
o=$c.allowed
cp -r "$(case_dir $c)" "$(case_dir $o)"
rm -rf "$(case_dir $o)/o"
fault_run $o -- --set data.path="$MINE" --set checkpoint.resume=auto \
    --set checkpoint.allow_data_change=true
if [ "$(rank_statuses "$(case_dir $o)/o" 2)" = "0 0" ] &&
    grep -q "^warning: the data file differs from the one the checkpoint was trained on" \
        "$(case_dir $o)/o/out.0"; then
    ok "$o: checkpoint.allow_data_change = true: a warning, and the run went on to step 12"
else
    bad "$o: exit $(rank_statuses "$(case_dir $o)/o" 2), no warning"
fi

# the data restored: the resume goes on from step 6, bitwise
cp "$DATA" "$MINE"
resumed $c 6 --set data.path="$MINE"

echo "the whole test: $(($(date +%s) - T_START)) s"
[ $fail = 0 ] && echo "all data fault checks passed"
exit $fail
