#!/usr/bin/env bash
# test_registry.sh - the model registry written by training runs, and the
# `mpitrain registry` commands, on real MNIST.
#
# usage: test_registry.sh MPITRAIN REPO DATA.h5
#
#   1. A run at -np 2 with a checkpoint every 5 of 15 steps writes START, three
#      CHECKPOINTs (versions 1, 2, 3) and COMPLETE; every record validates
#      against docs/registry.schema.json (tests/registry_check.py), and a
#      record with a field removed does not (the check can fail).
#   2. A run resumed from version 2's checkpoint records that checkpoint (path,
#      SHA-256, run, step) as its parent; its versions continue at 4; `registry
#      lineage` prints the chain back to the first run with data and code.
#   3. list, show (NAME, NAME:VERSION, NAME@ALIAS, --json), alias set / rm as
#      appended events; bad specs and unknown models are errors (exit 2 / 7).
#   4. verify: all OK, then a modified and a deleted checkpoint are reported
#      MODIFIED and MISSING with exit 4.
#   5. A garbage line in the middle and a torn last line: list still works and
#      warns naming both lines; the next run appends after them on a new line.
#   6. ABORT (train.exit_after_steps) and FAIL (a NaN loss, exit 6) records;
#      a registry that cannot be written stops the run before training (exit 7).
#   7. export --openlineage: one OpenLineage RunEvent per run event.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") REPO=$(realpath "$2") DATA=$(realpath "$3")
SCHEMA=$REPO/docs/registry.schema.json
CHECK=$REPO/tests/registry_check.py
REG=$TMP/runs/registry.jsonl

if ! $PY -c 'import jsonschema' 2>/dev/null; then
    echo "FAIL - python3-jsonschema is not installed (scripts/install_deps.sh --tests installs it)"
    exit 1
fi

# train NP LOG ARGS... -> status in RC
train() {
    local np=$1 log=$2
    shift 2
    timeout -k 5 120 mpirun -np "$np" "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" \
        --set data.path="$DATA" --set run.dir="$TMP/runs" --set model.layers=784,32,10 \
        --set train.global_batch=200 --set train.steps=15 --set run.log_every=5 \
        --set train.eval_every=0 --set checkpoint.every_steps=5 --set checkpoint.keep_last=0 \
        "$@" >"$log" 2>&1
    RC=$?
}
must_train() {
    train "$@"
    must_succeed "run $2" "$2"
}
reg() { "$MPITRAIN" registry --registry "$REG" "$@"; }
field() { # field LINE EXPR: a Python expression on record r of line LINE
    $PY -c 'import json,sys
r = json.loads(open(sys.argv[1]).readlines()[int(sys.argv[2]) - 1])
print(eval(sys.argv[3]))' "$REG" "$1" "$2"
}

# ---- 1. a run with checkpoints ----
must_train 2 "$TMP/a.log"
if $PY "$CHECK" "$SCHEMA" "$REG" START CHECKPOINT CHECKPOINT CHECKPOINT COMPLETE >"$TMP/check.log"; then
    ok "START, 3 x CHECKPOINT, COMPLETE; every record valid against the schema"
else
    bad "schema check of the first run"
    sed 's/^/   | /' "$TMP/check.log"
fi
[ "$(field 2 'r["model"]["version"]')$(field 3 'r["model"]["version"]')$(field 4 'r["model"]["version"]')" = 123 ] &&
    ok "versions 1, 2, 3" || bad "versions of the first run"
[ "$(field 4 'r["model"]["source"] == r["outputs"][0]["name"] and r["model"]["step"] == 15 and r["metrics"]["step"] == 15')" = True ] &&
    ok "CHECKPOINT names its artifact and step" || bad "artifact fields"
[ "$(field 1 'r["lineage"]["layout"]["world"], r["lineage"]["layout"]["dp"], r["inputs"][0]["splits"]["train"]["samples"] > 0, len(r["lineage"]["hyperparameters"]["config_ini"]) > 0')" = "(2, 2, True, True)" ] &&
    ok "layout, data splits and config recorded" || bad "layout/data/config fields"
SHA4=$(sha256sum "$(field 4 'r["model"]["source"]')" | cut -d' ' -f1)
[ "$(field 4 'r["model"]["sha256"]')" = "$SHA4" ] && ok "artifact SHA-256 matches the file" ||
    bad "artifact SHA-256"
# the check can fail: a record without its code commit, or with a bad version
$PY - "$REG" "$TMP/mut.jsonl" <<'EOF'
import json, sys
lines = open(sys.argv[1]).readlines()
r = json.loads(lines[1]); del r["lineage"]["code"]["commit"]
s = json.loads(lines[2]); s["model"]["version"] = 0
open(sys.argv[2], "w").write(json.dumps(r) + "\n" + json.dumps(s) + "\n")
EOF
if $PY "$CHECK" "$SCHEMA" "$TMP/mut.jsonl" >"$TMP/mut.log"; then
    bad "the schema accepted records with a missing commit and version 0"
else
    [ "$(grep -c invalid "$TMP/mut.log")" = 2 ] && ok "the schema rejects a missing commit and version 0" ||
        bad "mutated records: $(cat "$TMP/mut.log")"
fi

# ---- 2. resume: parent and lineage ----
V2=$(field 3 'r["model"]["source"]')
SHA2=$(sha256sum "$V2" | cut -d' ' -f1)
RUN1=$(field 1 'r["run"]["runId"]')
APPTAINER_CONTAINER=/images/train.sif must_train 1 "$TMP/b.log" --set train.steps=25 --set checkpoint.resume="$V2"
$PY "$CHECK" "$SCHEMA" "$REG" START CHECKPOINT CHECKPOINT CHECKPOINT COMPLETE \
    START CHECKPOINT CHECKPOINT CHECKPOINT COMPLETE >"$TMP/check2.log" &&
    ok "the resumed run's records are valid" || { bad "resumed run records"; cat "$TMP/check2.log"; }
[ "$($PY -c 'import json,sys
r = json.loads(open(sys.argv[1]).readlines()[5]); p = r["lineage"]["parent"]
print(p["checkpoint"] == sys.argv[2] and p["checkpoint_sha256"] == sys.argv[3] and p["run_id"] == sys.argv[4] and p["step"] == 10)' "$REG" "$V2" "$SHA2" "$RUN1")" = True ] &&
    ok "the resumed run's parent is version 2's checkpoint (path, SHA-256, run, step)" ||
    bad "parent of the resumed run"
[ "$(field 1 'r["lineage"]["environment"]["container"]')/$(field 6 'r["lineage"]["environment"]["container"], r["lineage"]["environment"]["container_runtime"]')" = "None/('/images/train.sif', 'apptainer')" ] &&
    ok "environment image: none, then the Apptainer container" || bad "container fields"
[ "$(field 9 'r["model"]["version"], r["model"]["step"]')" = "(6, 25)" ] &&
    ok "versions continue at 4..6 across runs" || bad "versions of the resumed run: $(field 9 'r["model"]')"
reg lineage mnist_mlp:6 >"$TMP/lineage.log" 2>&1
if grep -q "^mnist_mlp:6 " "$TMP/lineage.log" && grep -q "^mnist_mlp:2 " "$TMP/lineage.log" &&
    grep -q "resumed from" "$TMP/lineage.log" && grep -q "first run" "$TMP/lineage.log" &&
    [ "$(grep -c '    data ' "$TMP/lineage.log")" = 2 ] && [ "$(grep -c '    code ' "$TMP/lineage.log")" = 2 ]; then
    ok "registry lineage mnist_mlp:6 -> mnist_mlp:2 -> first run, with data and code"
else
    bad "lineage output"
    sed 's/^/   | /' "$TMP/lineage.log"
fi

# a checkpoint without its .sha256: the parent is still named by its SHA-256
mkdir -p "$TMP/lone" && cp "$(field 4 'r["model"]["source"]')" "$TMP/lone/step_00000015.h5"
LONE_SHA=$(sha256sum "$TMP/lone/step_00000015.h5" | cut -d' ' -f1)
must_train 1 "$TMP/lone.log" --set train.steps=20 --set checkpoint.resume="$TMP/lone/step_00000015.h5" \
    --set registry.path="$TMP/lone/registry.jsonl"
$PY "$CHECK" "$SCHEMA" "$TMP/lone/registry.jsonl" START CHECKPOINT COMPLETE >"$TMP/check5.log" &&
    [ "$($PY -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["lineage"]["parent"]["checkpoint_sha256"])' "$TMP/lone/registry.jsonl")" = "$LONE_SHA" ] &&
    ok "a parent checkpoint without .sha256 is still named by its SHA-256" ||
    { bad "parent without .sha256"; cat "$TMP/check5.log"; }

# ---- 3. list, show, alias ----
reg list >"$TMP/list.log" 2>&1 && [ "$(grep -c '^mnist_mlp ' "$TMP/list.log")" = 6 ] &&
    ok "list shows 6 versions" || { bad "list"; cat "$TMP/list.log"; }
reg show mnist_mlp:2 >"$TMP/show.log" 2>&1 && grep -q "model mnist_mlp version 2" "$TMP/show.log" &&
    grep -q "$SHA2" "$TMP/show.log" && ok "show NAME:VERSION" || { bad "show"; cat "$TMP/show.log"; }
out_has "version 6" reg show mnist_mlp && ok "show NAME is the newest version" || bad "show NAME"
reg alias set mnist_mlp production 2 >/dev/null && reg alias set mnist_mlp staging >/dev/null &&
    out_has "version 2" reg show mnist_mlp@production && out_has "version 6" reg show mnist_mlp@staging &&
    ok "alias set, show NAME@ALIAS" || bad "alias set"
reg alias set mnist_mlp production 5 >/dev/null && reg show --json mnist_mlp:5 >"$TMP/show5.json" &&
    [ "$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"]["aliases"])' "$TMP/show5.json")" = "['production']" ] &&
    ok "an alias moves; show --json lists the current aliases" || bad "alias move / --json"
reg alias rm mnist_mlp staging >/dev/null && ! reg show mnist_mlp@staging >/dev/null 2>&1 &&
    ok "alias rm" || bad "alias rm"
[ "$(grep -c '"eventType":"ALIAS"' "$REG")" = 4 ] && ok "aliases are appended events (4 lines)" ||
    bad "alias events"
reg show nosuch >/dev/null 2>&1; rc=$?
reg show mnist_mlp:99 >/dev/null 2>&1; rc2=$?
reg show 'mnist_mlp:x' >/dev/null 2>&1; rc3=$?
reg alias set mnist_mlp 12 >/dev/null 2>&1; rc4=$?
reg show 'mnist_mlp:99999999999999999999' >"$TMP/huge.log" 2>&1; rc5=$?
[ "$rc$rc2$rc3$rc4$rc5" = 77222 ] && grep -q "after ':' is too large" "$TMP/huge.log" &&
    ok "unknown model/version exit 7, bad spec, numeric alias and too large a version exit 2" ||
    bad "error statuses $rc $rc2 $rc3 $rc4 $rc5: $(cat "$TMP/huge.log")"
# An ALIAS record whose version is not a whole number >= 1 (hand-edited or
# damaged) is an error, not the newest version.
cp "$REG" "$TMP/badalias.jsonl"
$PY - "$TMP/badalias.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
a = dict(next(r for r in recs if r["eventType"] == "ALIAS"))
a["alias"] = dict(a["alias"], alias="broken", version=1e300, action="set")
open(sys.argv[1], "a").write(json.dumps(a) + "\n")
PY
"$MPITRAIN" registry --registry "$TMP/badalias.jsonl" show mnist_mlp@broken >"$TMP/ba.log" 2>&1; rc=$?
[ "$rc" = 7 ] && grep -q "alias 'broken' of model mnist_mlp points at no valid version" "$TMP/ba.log" &&
    ok "an alias with a damaged version: exit 7, not the newest version" ||
    bad "damaged alias version: exit $rc: $(cat "$TMP/ba.log")"
"$MPITRAIN" registry --registry "$TMP/none.jsonl" list >/dev/null 2>&1; rc=$?
[ "$rc" = 7 ] && ok "a missing registry file: exit 7" || bad "missing registry exit $rc"

# ---- 4. verify ----
reg verify >"$TMP/v1.log" 2>&1 && grep -q "6 OK, 0 deleted on purpose, 0 failing" "$TMP/v1.log" && ok "verify: 6 OK" ||
    { bad "verify clean"; cat "$TMP/v1.log"; }
V1=$(field 2 'r["model"]["source"]') V3=$(field 4 'r["model"]["source"]')
printf 'X' | dd of="$V1" bs=1 seek=5000 conv=notrunc status=none
rm -f "$V3"
reg verify >"$TMP/v2.log" 2>&1; rc=$?
if [ "$rc" = 4 ] && grep -q "^MODIFIED mnist_mlp:1 " "$TMP/v2.log" && grep -q "^MISSING  mnist_mlp:3 " "$TMP/v2.log" &&
    grep -q "4 OK, 0 deleted on purpose, 2 failing" "$TMP/v2.log"; then
    ok "verify: MODIFIED and MISSING reported, exit 4"
else
    bad "verify after damage (exit $rc)"
    sed 's/^/   | /' "$TMP/v2.log"
fi

# retention: deleted checkpoints are recorded, and verify tells them apart
REG2=$TMP/ret/registry.jsonl
must_train 2 "$TMP/r.log" --set registry.path="$REG2" --set checkpoint.keep_last=1
"$MPITRAIN" registry --registry "$REG2" verify >"$TMP/v3.log" 2>&1; rc=$?
if [ "$rc" = 0 ] && grep -q "^DELETED  mnist_mlp:1 " "$TMP/v3.log" && grep -q "^DELETED  mnist_mlp:2 " "$TMP/v3.log" &&
    grep -q "1 OK, 2 deleted on purpose, 0 failing" "$TMP/v3.log" && [ "$(grep -c '"eventType":"DELETE"' "$REG2")" = 2 ] &&
    out_has "(deleted) .*step_00000005.h5" "$MPITRAIN" registry --registry "$REG2" list &&
    $PY "$CHECK" "$SCHEMA" "$REG2" START CHECKPOINT CHECKPOINT DELETE CHECKPOINT DELETE COMPLETE >"$TMP/check4.log"; then
    ok "retention (keep_last=1): DELETE records; verify says DELETED, not failing (exit 0); list marks them"
else
    bad "retention deletions (exit $rc)"
    sed 's/^/   | /' "$TMP/v3.log" "$TMP/check4.log"
fi

# ---- 5. torn and garbage lines ----
cp "$REG" "$TMP/reg.bak"
$PY - "$REG" <<'EOF'
import sys
lines = open(sys.argv[1]).readlines()
lines.insert(3, "garbage {not json\n")
open(sys.argv[1], "w").write("".join(lines) + '{"eventType":"CHECKPOINT","model":{"na')
EOF
NL=$(wc -l <"$REG")
reg list >"$TMP/torn.log" 2>"$TMP/torn.err"; rc=$?
if [ "$rc" = 0 ] && [ "$(grep -c '^mnist_mlp ' "$TMP/torn.log")" = 6 ] && grep -q "line 4:" "$TMP/torn.err" &&
    grep -q "line $((NL + 1)):.*torn" "$TMP/torn.err"; then
    ok "a garbage line and a torn last line: list works, warns naming lines 4 and $((NL + 1))"
else
    bad "torn/garbage registry (exit $rc)"
    sed 's/^/   | /' "$TMP/torn.err" "$TMP/torn.log"
fi

# ---- 6. ABORT, FAIL, an unwritable registry ----
must_train 2 "$TMP/c.log" --set train.exit_after_steps=5
out_has '"eventType":"ABORT"' tail -n 1 "$REG" && ok "exit_after_steps: ABORT recorded" || bad "ABORT"
$PY -c 'import json,sys
lines = open(sys.argv[1]).readlines()
json.loads(lines[-1]); json.loads(lines[-2]); json.loads(lines[-3])' "$REG" 2>/dev/null &&
    ok "the next run's records start on their own line after the torn one" || bad "records after a torn line"
train 2 "$TMP/d.log" --set optim.kind=sgd --set optim.lr=1000 --set train.steps=200 --set checkpoint.every_steps=0 \
    --set checkpoint.save_final=false
if [ "$RC" = 6 ] && out_has '"eventType":"FAIL"' tail -n 1 "$REG" && out_has '"exit_code":6' tail -n 1 "$REG"; then
    ok "a NaN loss (exit 6): FAIL recorded with its exit code"
else
    bad "FAIL record (exit $RC)"
fi
grep -v '^garbage' "$REG" | $PY -c 'import sys
lines = [l for l in sys.stdin if l.endswith("}\n")]
open(sys.argv[1], "w").write("".join(lines))' "$TMP/clean.jsonl"
$PY "$CHECK" "$SCHEMA" "$TMP/clean.jsonl" >"$TMP/check3.log" && ok "ABORT, FAIL and ALIAS records are valid" ||
    { bad "schema of later records"; grep -v valid "$TMP/check3.log"; }
mkdir -p "$TMP/ro" && touch "$TMP/ro/registry.jsonl" && chmod 0444 "$TMP/ro/registry.jsonl"
if [ "$(id -u)" = 0 ]; then
    # root may write a read-only file: make the path a folder instead
    rm -f "$TMP/ro/registry.jsonl" && mkdir "$TMP/ro/registry.jsonl"
fi
train 2 "$TMP/e.log" --set registry.path="$TMP/ro/registry.jsonl"
if [ "$RC" = 7 ] && grep -q "registry" "$TMP/e.log" && [ "$(grep -c 'mpitrain: error' "$TMP/e.log")" = 1 ] &&
    ! grep -q "^step" "$TMP/e.log"; then
    ok "an unwritable registry: one error, exit 7, before any step"
else
    bad "unwritable registry (exit $RC)"
    tail -5 "$TMP/e.log"
fi

# a full file system: the failed append leaves no partial line behind
FULL=$TMP/full
mkdir -p "$FULL"
if mount -t tmpfs -o size=8k tmpfs "$FULL" 2>/dev/null; then
    # a CHECKPOINT record and a blank line up to 100 bytes short of the 8 KiB:
    # the next record can only be written in part
    $PY - "$TMP/clean.jsonl" "$FULL/registry.jsonl" <<'EOF2'
import sys
rec = open(sys.argv[1]).readlines()[1]
open(sys.argv[2], "w").write(rec + " " * (8192 - 100 - len(rec) - 1) + "\n")
EOF2
    before=$(sha256sum <"$FULL/registry.jsonl")
    "$MPITRAIN" registry --registry "$FULL/registry.jsonl" alias set mnist_mlp prod >"$TMP/full.log" 2>&1
    rc=$?
    after=$(sha256sum <"$FULL/registry.jsonl")
    if [ "$rc" = 7 ] && grep -q "cannot append to registry" "$TMP/full.log" && [ "$before" = "$after" ]; then
        ok "a full file system: exit 7, the registry is as it was (no partial line)"
    else
        bad "full file system: exit $rc, unchanged: $([ "$before" = "$after" ] && echo yes || echo no)"
        cat "$TMP/full.log"
    fi
    umount "$FULL"
else
    echo "skip - full file system case: cannot mount a tmpfs here (needs root)"
fi

# ---- 7. OpenLineage export ----
reg export --openlineage >"$TMP/ol.jsonl" 2>"$TMP/ol.err"
if $PY - "$TMP/ol.jsonl" "$TMP/clean.jsonl" <<'EOF'; then
import json, sys
ol = [json.loads(l) for l in open(sys.argv[1])]
src = [json.loads(l) for l in open(sys.argv[2])]
runs = [r for r in src if r["eventType"] != "ALIAS"]
assert len(ol) == len(runs), (len(ol), len(runs))
for o, r in zip(ol, runs):
    assert o["eventType"] in ("START", "RUNNING", "COMPLETE", "FAIL", "ABORT"), o["eventType"]
    assert o["eventType"] == ("RUNNING" if r["eventType"] == "CHECKPOINT" else r["eventType"])
    assert o["run"]["runId"] == r["run"]["runId"] and o["job"]["name"] == r["job"]["name"]
    assert o["producer"].startswith("urn:mpitrain:") and o["schemaURL"].startswith("https://openlineage.io/")
    assert o["run"]["facets"]["mpitrain_lineage"]["_producer"]
    for d in o["inputs"] + o["outputs"]:
        assert d["facets"]["version"]["datasetVersion"]
print("export ok:", len(ol), "events")
EOF
    ok "export --openlineage: one RunEvent per run event"
else
    bad "export --openlineage"
fi

exit $fail
