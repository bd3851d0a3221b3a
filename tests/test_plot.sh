#!/usr/bin/env bash
# test_plot.sh - `mpitrain plot`: pictures of runs.
#
# usage: test_plot.sh MPITRAIN REPO
#
#   1. Two short runs of the tiny GPT (tests/lib.sh) on 2 ranks, with other
#      learning rates and schedules, 40 steps logged at step 1 and every 2,
#      evaluating every 10.
#   2. One run and the two runs plotted: each PNG is checked by
#      tests/png_check.py, a decoder of its own (zlib + numpy): signature,
#      chunk CRCs, IHDR 1280x960, the image data whole; hundreds of colours
#      (anti-aliased lines and text), ink on more than 2% of the pixels; the
#      first run's colour (#0072b2) in both, the second's (#d55e00) only in
#      the two-run picture: the runs are drawn apart. --title reaches the
#      picture (it changes the pixels). `registry show` of the second run's
#      model version prints a plot command line for its folder, which works.
#   3. A metrics file with a corrupt line and a last line cut short: one
#      warning for each, naming the file and the line; the PNG is written.
#   4. Errors, each one "mpitrain: error:" line (and at most a hint), the
#      exit status of DESIGN.md, no file at --out and no temporary left
#      beside it; an --out that existed keeps its old bytes: no run given,
#      a missing folder, a folder without metrics, metrics without a usable
#      line, an --out in a missing folder, an --out that is a folder, an
#      unknown option, and no gnuplot on PATH (the error names the package).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") REPO=$(realpath "$2")
CHECK=("$PY" "$REPO/tests/png_check.py")
command -v gnuplot >/dev/null ||
    { bad "gnuplot not found: run scripts/install_deps.sh (Debian gnuplot-nox)"; exit 1; }

# ---- 1. two runs ----
gpt_tokens
GPT=(--config "$REPO/configs/mnist_mlp.ini" --set run.threads=1 "${GPT_TINY[@]}"
    --set train.steps=40 --set run.log_every=2 --set train.eval_every=10)
must_run_kind 2 GPT "$TMP/runs" "$TMP/a.log" --set run.name=gpt_a \
    --set optim.schedule=cosine --set optim.warmup_steps=8
must_run_kind 2 GPT "$TMP/runs" "$TMP/b.log" --set run.name=gpt_b --set optim.lr=1e-3
A=$TMP/runs/gpt_a/0001 B=$TMP/runs/gpt_b/0001
ok "two runs: $(wc -l <"$A/metrics.jsonl") and $(wc -l <"$B/metrics.jsonl") metrics lines"

# plot NAME ARGS...: mpitrain plot ARGS (with PATH=$PLOT_PATH when set), stdout in
# $TMP/NAME.out, stderr in .err, status in RC
plot() {
    local name=$1
    shift
    timeout -k 5 60 env PATH="${PLOT_PATH:-$PATH}" "$MPITRAIN" plot "$@" >"$TMP/$name.out" \
        2>"$TMP/$name.err" </dev/null
    RC=$?
}
# field JSON KEY: a value of png_check's line
field() { "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# check_png LABEL FILE: the checks every picture passes; png_check's line in INFO
check_png() {
    if ! INFO=$("${CHECK[@]}" "$2" '#0072b2' '#d55e00'); then
        bad "$1: $INFO"
        return 1
    fi
    local w h c ink
    w=$(field "$INFO" width) h=$(field "$INFO" height) c=$(field "$INFO" colours)
    ink=$(field "$INFO" ink)
    if [ "$w" = 1280 ] && [ "$h" = 960 ] && [ "$c" -gt 200 ] &&
        "$PY" -c 'import sys; sys.exit(not float(sys.argv[1]) > 0.02)' "$ink"; then
        ok "$1: PNG ${w}x${h}, $c colours, ink on $(printf %.1f "$("$PY" -c "print(100*$ink)")")% of the pixels"
    else
        bad "$1: $INFO (want 1280x960, > 200 colours, > 2% ink)"
    fi
}

# ---- 2. one run, two runs ----
plot one "$A" --out "$TMP/one.png"
if [ "$RC" = 0 ] && [ ! -s "$TMP/one.err" ] && grep -q "wrote $TMP/one.png" "$TMP/one.out"; then
    ok "one run plotted: $(head -1 "$TMP/one.out")"
else
    bad "one run: exit $RC"; cat "$TMP/one.err" "$TMP/one.out"
fi
check_png "one run" "$TMP/one.png"
ONE=$INFO
plot two "$A" "$B/" --out "$TMP/two.png"
[ "$RC" = 0 ] && [ ! -s "$TMP/two.err" ] && ok "two runs plotted" ||
    { bad "two runs: exit $RC"; cat "$TMP/two.err"; }
check_png "two runs" "$TMP/two.png"
TWO=$INFO
a1=$(field "$ONE" '#0072b2') b1=$(field "$ONE" '#d55e00')
a2=$(field "$TWO" '#0072b2') b2=$(field "$TWO" '#d55e00')
if [ "$a1" -gt 1000 ] && [ "$b1" -lt 50 ] && [ "$a2" -gt 1000 ] && [ "$b2" -gt 1000 ]; then
    ok "runs drawn apart: first run's colour $a1 px alone, $a2 px beside the second's $b2 px (alone: $b1)"
else
    bad "run colours: one-run picture #0072b2 $a1 px, #d55e00 $b1 px; two-run $a2 and $b2 px"
fi
cmp -s "$TMP/one.png" "$TMP/two.png" && bad "the one-run and two-run pictures are the same bytes"
grep -q "gpt_a/0001: 21 logged steps (1 to 40), 4 with test_loss, run [0-9a-f-]\{36\}" "$TMP/two.out" &&
    grep -q "gpt_b/0001: 21 logged steps" "$TMP/two.out" && ok "summary lines name both runs" ||
    { bad "summary lines"; cat "$TMP/two.out"; }
plot title "$A" --out "$TMP/title.png" --title "another title"
[ "$RC" = 0 ] && ! cmp -s "$TMP/one.png" "$TMP/title.png" && ok "--title changes the picture" ||
    bad "--title: exit $RC or the same picture"
# the same folder twice: told apart by the paths given, still a picture
plot twice "$A" "$TMP/runs/gpt_a/0001/" --out "$TMP/twice.png"
[ "$RC" = 0 ] && ok "the same run twice is plotted" || { bad "same run twice: exit $RC"; cat "$TMP/twice.err"; }

# quotes in every path gnuplot is given: the data folder ($TMPDIR) and --out
mkdir -p "$TMP/it's"
TMPDIR="$TMP/it's" plot quote "$A" --out "$TMP/it's \"q\".png"
[ "$RC" = 0 ] && "${CHECK[@]}" "$TMP/it's \"q\".png" >/dev/null && [ -z "$(ls "$TMP/it's")" ] &&
    ok "quotes in TMPDIR and --out" || { bad "quotes in paths: exit $RC"; cat "$TMP/quote.err"; }

# `registry show` names the command for the version's run folder, and it works
"$MPITRAIN" registry --registry "$TMP/runs/registry.jsonl" show gpt_b >"$TMP/show.txt" 2>&1
cmd=$(sed -n "s/^  plot  *mpitrain plot '\\(.*\\)' --out FILE.png\$/\\1/p" "$TMP/show.txt")
plot show "$cmd" --out "$TMP/show.png"
[ "$(realpath "$cmd" 2>/dev/null)" = "$(realpath "$B")" ] && [ "$RC" = 0 ] &&
    ok "registry show: plot line names $cmd, which plots" ||
    { bad "registry show's plot line: '$cmd', exit $RC"; cat "$TMP/show.txt"; }

# ---- 3. corrupt lines ----
C=$TMP/corrupt/r/0001
mkdir -p "$C"
{
    sed -n 1,5p "$A/metrics.jsonl"
    echo '{"step": 12, "loss": 3.'
    sed -n 6,10p "$A/metrics.jsonl"
    printf '\x00\xff not json\n'
    sed -n 11,15p "$A/metrics.jsonl"
    printf '{"step":32,"loss":4.1,"lr":0.00'
} >"$C/metrics.jsonl"
plot corrupt "$C" --out "$TMP/corrupt.png"
nwarn=$(grep -c "^mpitrain: warning: $C/metrics.jsonl line [0-9]*: .*(skipped)$" "$TMP/corrupt.err")
if [ "$RC" = 0 ] && [ "$nwarn" = 3 ] && [ "$(wc -l <"$TMP/corrupt.err")" = 3 ] &&
    grep -q "line 6:" "$TMP/corrupt.err" && grep -q "line 12:" "$TMP/corrupt.err" &&
    grep -q "line 18: .*cut short" "$TMP/corrupt.err" &&
    grep -q "r/0001: 15 logged steps" "$TMP/corrupt.out"; then
    ok "corrupt metrics: 3 warnings (lines 6, 12, 18), 15 lines plotted"
else
    bad "corrupt metrics: exit $RC, $nwarn warnings"; cat "$TMP/corrupt.err" "$TMP/corrupt.out"
fi
check_png "corrupt metrics" "$TMP/corrupt.png"

# ---- 4. errors ----
mkdir -p "$TMP/nometrics" "$TMP/empty"
: >"$TMP/empty/metrics.jsonl"
echo "old bytes" >"$TMP/old.png"
# error NAME STATUS PATTERN OUT ARGS...: plot fails with STATUS, one error line
# matching PATTERN (and at most a hint), nothing at OUT but what was there
error() {
    local name=$1 want=$2 pat=$3 out=$4
    shift 4
    local before=absent
    [ -f "$out" ] && before=$(cat "$out")
    plot "$name" "$@"
    local lines errs left
    lines=$(grep -vc '^mpitrain: hint: ' "$TMP/$name.err")
    errs=$(grep -c "^mpitrain: error: .*$pat" "$TMP/$name.err")
    left=$(find "$(dirname "$out")" -maxdepth 1 -name "$(basename "$out").tmp.*" 2>/dev/null | wc -l)
    local after=absent
    [ -f "$out" ] && after=$(cat "$out")
    if [ "$RC" = "$want" ] && [ "$lines" = 1 ] && [ "$errs" = 1 ] && [ "$left" = 0 ] &&
        [ "$before" = "$after" ]; then
        ok "$name: exit $RC, $(grep '^mpitrain: error' "$TMP/$name.err")"
    else
        bad "$name: exit $RC (want $want), $lines lines, $left temporaries left, --out ${before:0:20} -> ${after:0:20}"
        sed 's/^/   | /' "$TMP/$name.err"
    fi
}
error no_runs 2 "at least one run folder" "$TMP/x.png" --out "$TMP/x.png"
error no_out 2 "needs --out" "$TMP/x.png" "$A"
error missing_dir 2 "run folder $TMP/nope: No such file" "$TMP/old.png" "$TMP/nope" --out "$TMP/old.png"
error no_metrics 3 "has no metrics file" "$TMP/old.png" "$A" "$TMP/nometrics" --out "$TMP/old.png"
error empty_metrics 3 "no usable metrics line" "$TMP/old.png" "$TMP/empty" --out "$TMP/old.png"
error out_missing_dir 2 "cannot write $TMP/nodir/x.png" "$TMP/nodir/x.png" "$A" --out "$TMP/nodir/x.png"
error out_is_dir 2 "is a folder" "$TMP/runs" "$A" --out "$TMP/runs"
error bad_option 2 "unknown option '--colour'" "$TMP/x.png" "$A" --out "$TMP/x.png" --colour red
mkfifo "$TMP/fifo.png"
error out_fifo 2 "is a FIFO, not a regular file" "$TMP/fifo.png" "$A" --out "$TMP/fifo.png"
[ -p "$TMP/fifo.png" ] && ok "a FIFO at --out is left as it was" || bad "the FIFO at --out was replaced"
error out_newline 2 "control character" "$TMP/x.png" "$A" --out "$TMP/a
b.png"
[ -z "$(find "$TMP" -maxdepth 1 -name 'a*b.png*')" ] && ok "nothing written for a newline in --out" ||
    bad "a file was left for a newline in --out"
# a PNG cut short (a file size limit: gnuplot still exits 0): refused, the
# old --out kept
(
    trap '' XFSZ
    ulimit -f 40
    error truncated 2 "incomplete PNG" "$TMP/old.png" "$A" --out "$TMP/old.png"
    exit $fail
) || fail=1 # (the subshell's bad)
mkdir -p "$TMP/nognuplot"
PLOT_PATH=$TMP/nognuplot error no_gnuplot 2 "needs gnuplot.*gnuplot-nox" "$TMP/old.png" "$A" \
    --out "$TMP/old.png"
[ -z "$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'mpitrain-plot.*' -newer "$TMP/old.png" 2>/dev/null)" ] &&
    ok "no temporary data folder left" || bad "temporary data folders left in ${TMPDIR:-/tmp}"
out_has -F "usage: mpitrain plot RUN_DIR... --out FILE.png" "$MPITRAIN" plot --help &&
    out_has -F "plot RUN_DIR... --out FILE.png" "$MPITRAIN" --help && ok "--help texts" ||
    bad "--help texts"
exit $fail
