#!/usr/bin/env bash
# gen_config_docs.sh - rewrites the key table in docs/CONFIG.md from the one
# table of keys (mpitrain train --help-config --markdown). The test
# config_docs fails when the file is out of date.
#   usage: scripts/gen_config_docs.sh [MPITRAIN]   (default build/mpitrain)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/mpitrain}
DOC=docs/CONFIG.md
table=$("$BIN" train --help-config --markdown)
/usr/bin/python3 - "$DOC" "$table" <<'PY'
import sys
path, table = sys.argv[1], sys.argv[2]
text = open(path).read()
begin, end = "<!-- BEGIN KEYS -->", "<!-- END KEYS -->"
i, j = text.index(begin) + len(begin), text.index(end)
open(path, "w").write(text[:i] + "\n" + table + "\n" + text[j:])
PY
echo "updated $DOC"
