#!/usr/bin/env bash
# test_cli.sh - the command line: --version, --help, --help-config, usage
# errors, and docs/CONFIG.md in step with the table of keys.
# usage: test_cli.sh MPITRAIN REPO
set -uo pipefail
. "$(dirname "$0")/lib.sh"
BIN=$1 REPO=$2

out=$("$BIN" --version) || bad "--version exits non-zero"
echo "$out" | sed 's/^/   /'
for what in "^mpitrain [0-9]+\.[0-9]+\.[0-9]+" "^commit: " "^MPI: +Open MPI" "^HDF5: +1\.[0-9.]+ \(parallel\)" \
            "^BLAS: +OpenBLAS" "^compiler: "; do
    grep -Eq "$what" <<<"$out" && ok "--version shows /$what/" || bad "--version lacks /$what/"
done
if head=$(git -C "$REPO" rev-parse HEAD 2>/dev/null); then
    grep -q "commit: *$head" <<<"$out" && ok "--version commit is the checkout's HEAD" \
        || bad "--version commit is not $head (a binary built before the last commit? rebuild)"
fi

out_has "train --config FILE" "$BIN" --help && ok "--help shows usage" || bad "--help"
"$BIN" bogus >/dev/null 2>&1; rc=$?
[ $rc = 2 ] && ok "unknown command exits 2" || bad "unknown command exits $rc"
"$BIN" >/dev/null 2>&1; rc=$?
[ $rc = 2 ] && ok "no command exits 2" || bad "no command exits $rc"

keys=$("$BIN" train --help-config)
n_text=$(echo "$keys" | grep -c '^  [a-z_0-9]* ')
n_md=$("$BIN" train --help-config --markdown | grep -c '^| `')
[ "$n_text" -ge 25 ] && [ "$n_text" = "$n_md" ] && ok "--help-config lists $n_text keys (markdown too)" \
    || bad "--help-config: $n_text text keys vs $n_md markdown keys"
for k in global_batch steps lr weight_decay grad_clip layers activation schedule warmup_steps threads; do
    grep -q "^  $k " <<<"$keys" && ok "--help-config has $k" || bad "--help-config lacks $k"
done
doc=$(sed -n '/<!-- BEGIN KEYS -->/,/<!-- END KEYS -->/p' "$REPO/docs/CONFIG.md" | sed '1d;$d')
if [ "$doc" = "$("$BIN" train --help-config --markdown)" ]; then
    ok "docs/CONFIG.md matches the table of keys"
else
    bad "docs/CONFIG.md is stale: run scripts/gen_config_docs.sh"
fi

# Usage errors of train: one error line, exit 2.
for args in "" "--config" "--bogus" "--config x.ini --set"; do
    err=$(timeout 60 "$BIN" train $args 2>&1 >/dev/null); rc=$?
    n=$(echo "$err" | grep -c '^mpitrain: error:')
    [ $rc = 2 ] && [ "$n" = 1 ] && ok "train $args: exit 2, one error line" \
        || bad "train $args: exit $rc, $n error lines: $err"
done
[ $fail = 0 ] && echo "cli: all checks passed" || echo "cli: FAILED"
exit $fail
