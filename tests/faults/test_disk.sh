#!/usr/bin/env bash
# test_disk.sh - the file system fails under a run (docs/FAULTS.md): a full
# disk and I/O errors in the checkpoint write (the LD_PRELOAD shim
# libiofault.so, tests/faults/iofault.c), the registry on a full or
# read-only file system (a small tmpfs where one can be mounted, else the
# shim), and the checkpoint folder removed or moved away mid-run. Each case:
# the exit status of every rank and its one error line, that the shim
# fired, nothing lost (tests/faults/cases.sh, "intact"), and a resume once
# the fault is gone that ends bitwise equal to an uninterrupted run.
#
# usage: test_disk.sh MPITRAIN H5CMP LIBIOFAULT REPO DATA.h5
set -uo pipefail
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/../lib.sh"
# shellcheck source=tests/faults/cases.sh
. "$(dirname "$0")/cases.sh"
CK8='checkpoint [^ ]*/checkpoints/step_00000008\.h5'
TMP8=path=step_00000008.h5.tmp

# ---- the checkpoint of step 8 (step 4's is written and published)

# a full disk as rank 0 writes the file's layout alone (an image HDF5 made
# in memory): the write stops short after 20,000 bytes
c=ckpt_full_layout
fault_run $c "${SHIM[@]}" MT_IOFAULT=enospc:op=write:$TMP8:after=20000 --
ended $c "4 4" "^mpitrain: error: cannot write $CK8: No space left on device$"
fired $c "rank 0: enospc from write on .*step_00000008.h5.tmp"
intact $c step_00000004.h5
resumed $c 4

# a full disk on rank 1 inside the collective write (MPI-IO), early: HDF5's
# collective calls stay matched, the ranks agree on the error
c=ckpt_full_rank1
fault_run $c "${SHIM[@]}" MT_IOFAULT=enospc:op=write:$TMP8:after=100000:rank=1 --
ended $c "4 4" "^mpitrain: error: cannot write $CK8 \(tensor /model/fc1\.weight\) \[rank 1\]$"
fired $c "rank 1: enospc from pwrite on"
intact $c step_00000004.h5
resumed $c 4

# later in the collective write: the rank that failed leaves the others in
# an HDF5 collective call it never makes; it reports after a grace of
# checkpoint.timeout / 3 and exits 4, and mpirun ends the job with that
# status (run without the per-rank wrapper to see it)
c=ckpt_full_stuck
PLAIN=1 fault_run $c "${SHIM[@]}" MT_IOFAULT=enospc:op=write:$TMP8:after=1000000 --
ended $c "mpirun 4" "^mpitrain: error: cannot write $CK8 \(tensor [^ ]*\)( \[rank 1\])?$"
grep -q 'Exit code: *4$' "$(case_dir $c)/o/launcher" && ok "$c: mpirun names the rank's exit code 4" ||
    bad "$c: mpirun does not report exit code 4"
fired $c "enospc from pwrite on"
intact $c step_00000004.h5
resumed $c 4

# an I/O error as rank 0 writes the layout (HDF5 1.10 crashed at exit when
# it had written the file itself and failed to close it)
c=ckpt_eio_layout
fault_run $c "${SHIM[@]}" MT_IOFAULT=eio:op=write:$TMP8 --
ended $c "4 4" "^mpitrain: error: cannot write $CK8: Input/output error$"
fired $c "rank 0: eio from write on"
intact $c step_00000004.h5
resumed $c 4

# an I/O error from fsync after the data (every rank syncs its writes)
c=ckpt_eio_fsync
fault_run $c "${SHIM[@]}" MT_IOFAULT=eio:op=fsync:$TMP8 --
ended $c "4 4" "^mpitrain: error: cannot sync $CK8: Input/output error$"
fired $c "eio from fsync on .*step_00000008.h5.tmp"
intact $c step_00000004.h5
resumed $c 4

# a file system that stalls: the checkpoint's writes and the watchdog's own
# questions about the folder (access, unlink) never return. The watchdog's
# thread waits with them; at checkpoint.timeout the alarm's handler writes
# rank 0's line before it touches the file system, and rank 1 exits 4. Rank
# 0 then waits in the stalled unlink of its temporary (as a real stalled
# file system would hold it) until mpirun ends it: '-'. (The handler once
# asked the folder first, and hung there without a line.)
c=ckpt_fs_stalls
fault_run $c "${SHIM[@]}" MT_IOFAULT=hang:op=write+stat:$TMP8 -- --set checkpoint.timeout=3
ended $c "- 4" "^mpitrain: error: the checkpoint write of step 8 did not finish within 3 s .*"
fired $c "rank 0: hang from write on .*step_00000008.h5.tmp"
intact $c step_00000004.h5
resumed $c 4

# the same full disk under checkpoint.async: the background write fails,
# the error is agreed on at the next step boundary
c=ckpt_full_async
fault_run $c "${SHIM[@]}" MT_IOFAULT=enospc:op=write:$TMP8 -- --set checkpoint.async=true
ended $c "4 4" "^mpitrain: error: cannot write $CK8: No space left on device$"
fired $c "enospc from write on .*step_00000008.h5.tmp"
intact $c step_00000004.h5
resumed $c 4 --set checkpoint.async=true

# ---- the registry

# full: the START record goes in, the first CHECKPOINT record is cut short
# after 40 bytes (and cut off again by the writer)
c=registry_full
fault_run $c "${SHIM[@]}" MT_IOFAULT=enospc:op=write:path=$c/registry.jsonl:skip=1:after=40 --
ended $c "7 7" "^mpitrain: error: cannot append to registry [^ ]*/registry\.jsonl: No space left on device$"
fired $c "rank 0: enospc from write on .*registry.jsonl"
intact $c step_00000004.h5
[ "$(wc -l <"$(registry_of $c)")" = $(($(wc -l <"$(case_dir $c)/registry.before") + 1)) ] &&
    ok "$c: the registry holds the records before the run and this run's START, no torn line" ||
    bad "$c: the registry has $(wc -l <"$(registry_of $c)") lines"
resumed $c 4

# an I/O error from fsync: the record is cut off again, as if never written
c=registry_eio_fsync
fault_run $c "${SHIM[@]}" MT_IOFAULT=eio:op=fsync:path=$c/registry.jsonl:skip=1 --
ended $c "7 7" "^mpitrain: error: cannot sync registry [^ ]*/registry\.jsonl: Input/output error$"
fired $c "rank 0: eio from fsync on .*registry.jsonl"
intact $c step_00000004.h5
[ "$(wc -l <"$(registry_of $c)")" = $(($(wc -l <"$(case_dir $c)/registry.before") + 1)) ] &&
    ok "$c: the record whose fsync failed was cut off" ||
    bad "$c: the registry has $(wc -l <"$(registry_of $c)") lines"
resumed $c 4

# a read-only and a full file system, for real: a 1 MB tmpfs
MNT=$TMP/mnt
mkdir -p "$MNT"
if mount -t tmpfs -o size=1m tmpfs "$MNT" 2>"$TMP/mount.err"; then
    trap 'umount "$MNT" 2>/dev/null; rm -rf "$TMP"' EXIT
    # read-only from the start: refused before the run makes anything
    c=registry_readonly
    REGISTRY[$c]=$MNT/ro/registry.jsonl
    mkdir -p "$MNT/ro" && cp "$TMP/ref/runs/registry.jsonl" "$MNT/ro/"
    mount -o remount,ro "$MNT"
    fault_run $c --
    ended $c "7 7" "^mpitrain: error: cannot open registry $MNT/ro/registry\.jsonl for appending: Read-only file system$"
    [ ! -e "$(case_dir $c)/runs/mnist_mlp/0001" ] && ok "$c: no run folder made" || bad "$c: a run folder was made"
    intact $c ""
    mount -o remount,rw "$MNT"
    resumed $c 0

    # turned read-only mid-run (rank 0 stalls 2 s at step 3 meanwhile): the
    # CHECKPOINT record of step 4 cannot be appended
    c=registry_readonly_midrun
    REGISTRY[$c]=$MNT/mid/registry.jsonl
    mkdir -p "$MNT/mid" && cp "$TMP/ref/runs/registry.jsonl" "$MNT/mid/"
    BG=1 fault_run $c MPITRAIN_FAULT=stall:rank=0:step=3:seconds=2 --
    await_line $c '^step  2/12' && mount -o remount,ro "$MNT"
    wait "$BG_PID"
    ended $c "7 7" "^mpitrain: error: cannot open registry $MNT/mid/registry\.jsonl for appending: Read-only file system$"
    intact $c step_00000004.h5
    mount -o remount,rw "$MNT"
    resumed $c 4

    # full: a filler takes the last free byte; the START record finds no room
    c=registry_full_fs
    REGISTRY[$c]=$MNT/full/registry.jsonl
    mkdir -p "$MNT/full" && cp "$TMP/ref/runs/registry.jsonl" "$MNT/full/"
    dd if=/dev/zero of="$MNT/filler" bs=4k >/dev/null 2>&1
    fault_run $c --
    ended $c "7 7" "^mpitrain: error: cannot append to registry $MNT/full/registry\.jsonl: No space left on device$"
    intact $c ""
    rm -f "$MNT/filler"
    resumed $c 0
    umount "$MNT"

    # a real full disk inside the collective write: the checkpoint folder is
    # a 40 MB tmpfs, filled while rank 0 stalls 6 s after the first tensor;
    # OMPIO hands HDF5 a short count (the errno is lost) and the line says
    # the device is full (statvfs)
    c=ckpt_full_fs
    CK=$TMP/$c/checkpoints
    CKDIR[$c]=$CK
    mkdir -p "$CK"
    if mount -t tmpfs -o size=40m tmpfs "$CK"; then
        trap 'umount "$CK" 2>/dev/null; rm -rf "$TMP"' EXIT
        BG=1 fault_run $c MPITRAIN_FAULT=stall:rank=0:step=8:seconds=6:during=checkpoint_data --
        for _ in $(seq 300); do
            compgen -G "$CK/step_00000008.h5.tmp.*" >/dev/null && break
            sleep 0.1
        done
        dd if=/dev/zero of="$CK/filler" bs=64k >/dev/null 2>&1
        wait "$BG_PID"
        rm -f "$CK/filler"
        ended $c "4 4" "^mpitrain: error: cannot write $CK8 \(tensor [^ ]*\): no space left on the device( \[rank 1\])?$"
        intact $c step_00000004.h5
        resumed $c 4
        umount "$CK"
    else
        echo "skip - $c: cannot mount a tmpfs on the checkpoint folder"
    fi
else
    echo "skip - registry on a read-only / full tmpfs: cannot mount one here" \
        "($(head -1 "$TMP/mount.err")); the shim stands in"
    c=registry_readonly
    fault_run $c "${SHIM[@]}" MT_IOFAULT=erofs:op=open:path=$c/registry.jsonl --
    ended $c "7 7" "^mpitrain: error: cannot open registry [^ ]*/registry\.jsonl for appending: Read-only file system$"
    fired $c "erofs from open"
    intact $c ""
    resumed $c 0
fi

# ---- the checkpoint folder, changed while rank 0 stalls at step 6 (6 s: the
# folder is changed once step 5's line shows; 2 s once let a loaded machine
# reach step 8's checkpoint first)

# removed: nothing is left to resume from, the resume starts afresh
c=ckpt_dir_removed
BG=1 fault_run $c MPITRAIN_FAULT=stall:rank=0:step=6:seconds=6 --
await_line $c '^step  5/12' && rm -rf "$(ckpt_dir $c)"
wait "$BG_PID"
ended $c "4 4" "^mpitrain: error: cannot write $CK8: No such file or directory$"
grep -q "^mpitrain: hint: the checkpoint folder .* is gone" "$(case_dir $c)/o/err.0" &&
    ok "$c: the hint says the folder is gone" || bad "$c: no hint about the folder"
intact $c ""
resumed $c 0

# moved away, then put back: the resume continues from step 4
c=ckpt_dir_moved
BG=1 fault_run $c MPITRAIN_FAULT=stall:rank=0:step=6:seconds=6 --
await_line $c '^step  5/12' && mv "$(ckpt_dir $c)" "$(ckpt_dir $c).away"
wait "$BG_PID"
ended $c "4 4" "^mpitrain: error: cannot write $CK8: No such file or directory$"
mv "$(ckpt_dir $c).away" "$(ckpt_dir $c)"
intact $c step_00000004.h5
resumed $c 4

echo "the whole test: $(($(date +%s) - T_START)) s"
[ $fail = 0 ] && echo "all disk fault checks passed"
exit $fail
