#!/usr/bin/env bash
# device_check.sh - on a machine with a GPU: runs the CUDA backend's checks
# with the binaries built on the Debian build machine (scripts/bundle.sh) and
# prints a short table last. Builds nothing.
#
# usage: scripts/device_check.sh [--bundle DIR]   (default: bundle; DIR.tar.xz
#        is unpacked first when DIR is missing)
#
# Today: the backend comparison (every CUDA op against the CPU op, fp32,
# tests/test_backend_cmp.c). The GPT loss-trajectory comparison and the
# GPT-2 124M benchmark join it when the trainer runs on the CUDA backend.
# Exit status: 0 all passed, 1 a check failed, 77 no usable GPU.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUNDLE=$ROOT/bundle
die() { echo "device_check.sh: error: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundle) [[ $# -ge 2 ]] || die "--bundle needs a folder"; BUNDLE=$2; shift 2 ;;
        -h | --help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
if [[ ! -d "$BUNDLE" && -f "$BUNDLE.tar.xz" ]]; then
    tar -C "$(dirname "$BUNDLE")" -xJf "$BUNDLE.tar.xz" || die "cannot unpack $BUNDLE.tar.xz"
fi
[[ -x "$BUNDLE/bin/test_backend_cmp" ]] || die "no bundle at $BUNDLE (run scripts/bundle.sh on the build machine)"

# The GPU machine's CUDA libraries: the toolkit's, else PyTorch's wheels.
CUDA_LIBS=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [[ -e "$d/libcublas.so.13" ]] && CUDA_LIBS="$CUDA_LIBS:$d"
done
if [[ -z "$CUDA_LIBS" ]] && command -v python3 >/dev/null; then
    for d in $(python3 -c 'import glob, site; print(" ".join(glob.glob(site.getsitepackages()[0] + "/nvidia/*/lib")))' 2>/dev/null); do
        CUDA_LIBS="$CUDA_LIBS:$d"
    done
fi
export LD_LIBRARY_PATH="$BUNDLE/lib$CUDA_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

echo "# device_check.sh  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
echo "cuda libraries: ${CUDA_LIBS#:}"
LOG=$(mktemp)
"$BUNDLE/bin/test_backend_cmp" >"$LOG" 2>&1
rc=$?
cat "$LOG"
echo
echo "| check | result |"
echo "| --- | --- |"
case $rc in
    0) echo "| backend comparison, fp32 (every op, CUDA vs CPU) | passed: $(tail -1 "$LOG") |" ;;
    77) echo "| backend comparison | skipped: $(grep -m1 SKIPPED "$LOG" | cut -c1-150) |" ;;
    *) echo "| backend comparison | FAILED (exit $rc): $(grep -c '^FAIL' "$LOG") failed checks |" ;;
esac
rm -f "$LOG"
exit $rc
