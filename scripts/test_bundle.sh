#!/usr/bin/env bash
# test_bundle.sh - proves a bundle (scripts/bundle.sh) runs on a machine with
# none of this machine's MPI, HDF5 or OpenBLAS: builds a chroot holding only
# the packed bundle, the C/C++ runtime and shell tools any Ubuntu 22.04/24.04
# GPU image has, and a stand-in for the GPU machine's CUDA libraries; then in
# it, after `source scripts/device_env.sh` (which unpacks the .tar.xz):
#   mpitrain --version; a 2-step MNIST MLP training run as a singleton; the
#   same under `mpirun -np 2`; test_backend_cmp and scripts/device_check.sh
#   (no GPU here: both must exit 77 with a reason: a SKIPPED line, or
#   device_check.sh's preflight "error: no GPU ...").
# Needs root (chroot, mount, mknod; mounts live in a private mount namespace,
# gone when it ends). Not part of ctest; takes about 5-10 s (making the
# bundle, scripts/bundle.sh, about 1 min).
#
# usage: scripts/test_bundle.sh [--bundle DIR] [--data MNIST.h5] [--keep]
#   --bundle DIR  tests DIR.tar.xz (default: bundle, i.e. bundle.tar.xz)
#   --data FILE   MNIST in HDF5 (default: build/data/mnist.h5, else
#                 /tmp/mnist.h5; scripts/fetch_mnist.sh makes one)
#   --keep        leave the chroot folder (printed) for a look
# Exit status: 0 passed, 1 a check failed, 2 usage, 77 skipped (not root, no
# chroot/mount, no data).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
BUNDLE=$ROOT/bundle DATA="" KEEP=0
skip() { echo "SKIPPED: test_bundle.sh: $*"; exit 77; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bundle) [[ $# -ge 2 ]] || die "--bundle needs a folder"; BUNDLE=$2; shift 2 ;;
        --data) [[ $# -ge 2 ]] || die "--data needs a file"; DATA=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h | --help) header_help 2 21; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
BUNDLE=$(realpath -m "$BUNDLE")
TAR=$BUNDLE.tar.xz
[[ -f "$TAR" ]] || die "no $TAR (run scripts/bundle.sh --out $BUNDLE first)"
[[ $(id -u) = 0 ]] || skip "needs root (chroot, mount, mknod)"
for t in chroot unshare mount mknod; do command -v $t >/dev/null || skip "no $t"; done
if [[ -z "$DATA" ]]; then
    for f in "$ROOT/build/data/mnist.h5" /tmp/mnist.h5; do [[ -f "$f" ]] && { DATA=$f; break; }; done
fi
[[ -n "$DATA" && -f "$DATA" ]] || skip "no MNIST h5 (scripts/fetch_mnist.sh, or --data FILE)"
CUDA=/usr/local/cuda/lib64
for l in libcudart.so.13 libcublas.so.13 libcublasLt.so.13; do
    [[ -e "$CUDA/$l" ]] || skip "no $CUDA/$l to stand in for the GPU machine's CUDA"
done

T0=$(date +%s)
CH=$(mktemp -d /tmp/test_bundle.XXXXXX)
cleanup() {
    # The mounts were made in the namespace of `unshare -m`, gone with it;
    # still, never delete through a mount point.
    if grep -q " $CH/" /proc/mounts; then
        echo "test_bundle.sh: $CH still has mounts: left in place" >&2
    elif [[ $KEEP = 1 ]]; then
        echo "chroot kept: $CH"
    else
        rm -rf "$CH"
    fi
    rm -rf "$CH.probe"
}
trap cleanup EXIT

# put FILE [DEST]: FILE at the same path (or DEST) in the chroot. Hard links
# where possible (the CUDA libraries are 0.6 GB), copies otherwise.
put() {
    local src=$1 dst=$CH${2:-$1}
    mkdir -p "$(dirname "$dst")"
    ln -f "$src" "$dst" 2>/dev/null || cp -a "$src" "$dst"
}
# putlib PATH: the library at its resolved place, plus the name asked for
putlib() {
    local real
    real=$(readlink -f "$1")
    [[ -e "$CH$real" ]] || put "$real"
    [[ "$real" = "$1" || -e "$CH$1" || -L "$CH$1" ]] || { mkdir -p "$CH$(dirname "$1")"; ln -s "$real" "$CH$1"; }
}

mkdir -p "$CH"/{bin,sbin,lib,lib64,usr/bin,usr/sbin,usr/lib/x86_64-linux-gnu,etc,tmp,root,dev,proc,sys,opt/mt}
chmod 1777 "$CH/tmp"
# Debian/Ubuntu have a merged /usr: /bin, /sbin, /lib are links
rmdir "$CH/bin" "$CH/sbin" "$CH/lib"
ln -s usr/bin "$CH/bin"; ln -s usr/sbin "$CH/sbin"; ln -s usr/lib "$CH/lib"

# 1. From the system: what any Ubuntu 22.04/24.04 image (GPU or not) has.
#    Shell and tools the scripts use - bash, dash (sh), coreutils, sed, grep,
#    mawk, tar, xz, ldd/ldconfig/getconf (libc-bin) - and the libraries they
#    load; glibc (libc, libm, libpthread, libdl, librt, libresolv, the
#    loader), libgcc_s and libstdc++ (apt depends on it).
TOOLS=(bash dash cat dirname basename ls mkdir rm cp mv ln sort head tail tr cut wc
    mktemp date env id uname sleep readlink realpath chmod touch true false test stat
    timeout sed grep mawk tar xz gzip ldd ldconfig getconf)
LIBC=(libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2
    libgcc_s.so.1 libstdc++.so.6)
SYSLIBS=/usr/lib/x86_64-linux-gnu
for t in "${TOOLS[@]}"; do
    p=$(type -P "$t") || die "no $t on this machine"
    p=$(readlink -f "$p")
    put "$p" "/usr/${p#/usr/}"
    case "$t" in mawk) ln -sf mawk "$CH/usr/bin/awk" ;; dash) ln -sf dash "$CH/usr/bin/sh" ;; esac
done
libs=$(for t in "${TOOLS[@]}"; do ldd "$(readlink -f "$(type -P "$t")")" 2>/dev/null; done |
    awk '/=> \//{print $3}' | sort -u)
for l in $libs "${LIBC[@]/#/$SYSLIBS/}"; do
    putlib "$l"
done
copied=$(for l in $libs "${LIBC[@]}"; do basename "$l"; done | sort -u | tr '\n' ' ')
put "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$SYSLIBS/ld-linux-x86-64.so.2"
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$CH/lib64/ld-linux-x86-64.so.2"
mkdir -p "$CH/etc/ld.so.conf.d"
echo 'include /etc/ld.so.conf.d/*.conf' >"$CH/etc/ld.so.conf"
printf '/usr/local/lib\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n' \
    >"$CH/etc/ld.so.conf.d/x86_64-linux-gnu.conf"
echo 'root:x:0:0:root:/root:/bin/bash' >"$CH/etc/passwd"
echo 'root:x:0:' >"$CH/etc/group"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$(hostname)" >"$CH/etc/hosts"
cp /etc/nsswitch.conf "$CH/etc/" 2>/dev/null || true

# 2. The GPU machine's CUDA libraries (stand-in: this machine's), and NCCL
#    when the bundled programs link it.
for l in libcudart.so.13 libcublas.so.13 libcublasLt.so.13; do putlib "$CUDA/$l"; done
tar -xJOf "$TAR" --wildcards '*/bin/mpitrain' >"$CH/tmp/mpitrain.probe"
if [[ $(readelf -d "$CH/tmp/mpitrain.probe" | grep -c 'libnccl') -gt 0 ]]; then
    putlib "$CUDA/libnccl.so.2"
fi
rm -f "$CH/tmp/mpitrain.probe"

# 3. The project's part: the packed bundle, the scripts (device_check.sh
#    sources lib.sh), a config, data.
put "$TAR" /opt/mt/bundle.tar.xz
mkdir -p "$CH/opt/mt/scripts" "$CH/opt/mt/configs" "$CH/opt/mt/data"
cp "$ROOT/scripts/device_env.sh" "$ROOT/scripts/device_check.sh" "$ROOT/scripts/lib.sh" "$CH/opt/mt/scripts/"
cp "$ROOT/configs/mnist_mlp.ini" "$CH/opt/mt/configs/"
put "$(readlink -f "$DATA")" /opt/mt/data/mnist.h5

# glibc: the newest version any bundled file requires, read here with
# objdump (none in the chroot); Ubuntu 22.04 has 2.35.
GLIBC_MAX=2.35
mkdir -p "$CH.probe"
tar -C "$CH.probe" -xJf "$TAR"
glibc=$({ find "$CH.probe" -type f -exec objdump -T {} + 2>/dev/null || true; } |
    grep -o '(GLIBC_[0-9.]*)' | tr -d '()' | sort -uV | tail -1)
rm -rf "$CH.probe"
echo "chroot $CH: $(du -sh --exclude='*/libcublas*' --exclude='*/libnccl*' --exclude='*/libcudart*' --exclude='*/mnist.h5' "$CH" | cut -f1) besides CUDA and data"
echo "from the system: ${copied}ld-linux-x86-64.so.2; tools: ${TOOLS[*]}"
echo "CUDA stand-in: $(find "$CH/usr/local/cuda/lib64" -name '*.so*' -printf '%f ' 2>/dev/null)"

# 4. The checks, run inside with an empty environment.
cat >"$CH/opt/mt/checks.sh" <<'EOF'
set -euo pipefail
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }
# nothing of MPI, HDF5, OpenBLAS outside the bundle
for p in /usr/lib/x86_64-linux-gnu/openmpi /usr/share/openmpi /etc/openmpi /usr/bin/mpirun \
    /usr/bin/orted /usr/lib/x86_64-linux-gnu/libmpi.so.40 /usr/lib/x86_64-linux-gnu/libhdf5_openmpi.so.103 \
    /usr/lib/x86_64-linux-gnu/libopenblas.so.0 /usr/lib/x86_64-linux-gnu/pmix2; do
    [[ ! -e $p ]] || bad "$p exists in the chroot"
done
ldconfig
source /opt/mt/scripts/device_env.sh /opt/mt/bundle
[[ -x /opt/mt/bundle/bin/mpitrain ]] && ok "device_env.sh unpacked bundle.tar.xz" || bad "no unpacked bundle"
[[ $(command -v mpirun) = /opt/mt/bundle/bin/mpirun ]] && ok "mpirun is the bundle's" || bad "mpirun: $(command -v mpirun)"
# Open MPI noise that means a plugin, help text or library was not found
noise='WARNING|[Ee]rror|not found|unable to be opened|cannot open|No such file|help file|Sorry!'
run() { # run NAME CMD... : runs; fails on a nonzero exit or noise; shows the
    # log's end (all of it on failure)
    local name=$1 rc=0; shift
    echo "--- $name: $*"
    timeout 120 "$@" >/tmp/$name.log 2>&1 || rc=$?
    if [[ $rc != 0 ]]; then sed 's/^/    /' /tmp/$name.log; bad "$name exited $rc"; return 0; fi
    if grep -Eq "$noise" /tmp/$name.log; then
        sed 's/^/    /' /tmp/$name.log; bad "$name printed warnings"; return 0
    fi
    { grep -E '^layout:' /tmp/$name.log || true; } | cut -c1-60 | sed 's/^/    /'
    tail -3 /tmp/$name.log | sed 's/^/    /'
    ok "$name"
}
TRAIN=(train --config /opt/mt/configs/mnist_mlp.ini --set data.path=/opt/mt/data/mnist.h5
    --set train.steps=2 --set run.log_every=1 --set train.eval_every=0)
run version mpitrain --version
run singleton mpitrain "${TRAIN[@]}" --set run.dir=/tmp/runs1
run mpirun_np2 mpirun -np 2 mpitrain "${TRAIN[@]}" --set run.dir=/tmp/runs2
grep -q '^layout: world 1 ' /tmp/singleton.log && ok "singleton: world of 1" || bad "singleton: not a world of 1"
grep -q '^layout: world 2 ' /tmp/mpirun_np2.log && ok "mpirun -np 2: world of 2" || bad "mpirun -np 2: not a world of 2"
for r in runs1 runs2; do
    d=/tmp/$r/mnist_mlp/0001
    if [[ -s $d/model.h5 && $(wc -l <$d/metrics.jsonl) = 2 ]]; then
        ok "$r: model.h5 and 2 logged steps"
    else
        bad "$r: no model.h5 or not 2 logged steps in $d"; ls -la "$d" 2>&1 | sed 's/^/    /'
    fi
done
# glibc older than 2.36: arc4random* come from the bundle's shim
if [[ $(LD_DEBUG=bindings mpirun --version 2>&1 | grep -c "to /opt/mt/bundle/lib/libmt_glibc_compat.so .*arc4random") -gt 0 ]]; then
    ok "libevent's arc4random bound to libmt_glibc_compat.so (works on glibc < 2.36)"
else
    echo "note: libevent does not use libmt_glibc_compat.so (no arc4random need?)"
fi
for what in test_backend_cmp "bash /opt/mt/scripts/device_check.sh --bundle /opt/mt/bundle"; do
    rc=0
    echo "--- $what"
    $what >/tmp/out.log 2>&1 || rc=$?
    sed 's/^/    /' /tmp/out.log | tail -8
    if [[ $rc = 77 ]] && grep -Eq 'SKIPPED|error: no GPU' /tmp/out.log; then
        ok "$what: exit 77 with a reason (no GPU)"
    else
        bad "$what: exit $rc, expected 77 and a SKIPPED or 'no GPU' line"
    fi
done
exit $fail
EOF
echo "the bundle requires glibc ${glibc#GLIBC_} at most (objdump -T over all its files; Ubuntu 22.04 has $GLIBC_MAX)"
if [[ $(printf '%s\n%s\n' "${glibc#GLIBC_}" "$GLIBC_MAX" | sort -V | tail -1) != "$GLIBC_MAX" ]]; then
    echo "FAIL - the bundle needs $glibc, newer than Ubuntu 22.04's $GLIBC_MAX"
    glibc_bad=1
fi

rc=0
# shellcheck disable=SC2016 # (the script runs in the namespace: $1 is CH)
env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb \
    unshare -m --propagation private bash -c '
    set -e
    CH=$1
    mount -t proc proc "$CH/proc"
    mount -t sysfs sysfs "$CH/sys"
    mknod -m 666 "$CH/dev/null" c 1 3
    mknod -m 666 "$CH/dev/zero" c 1 5
    mknod -m 666 "$CH/dev/random" c 1 8
    mknod -m 666 "$CH/dev/urandom" c 1 9
    mknod -m 666 "$CH/dev/tty" c 5 0
    mkdir -m 1777 "$CH/dev/shm"
    mount -t tmpfs -o size=256m,mode=1777 tmpfs "$CH/dev/shm"
    ln -s /proc/self/fd "$CH/dev/fd"
    ln -s /proc/self/fd/0 "$CH/dev/stdin"
    ln -s /proc/self/fd/1 "$CH/dev/stdout"
    ln -s /proc/self/fd/2 "$CH/dev/stderr"
    cd /
    exec chroot "$CH" /bin/bash /opt/mt/checks.sh
' _ "$CH" || rc=$?
[[ -z "${glibc_bad:-}" ]] || rc=1
echo "test_bundle.sh: $([[ $rc = 0 ]] && echo passed || echo FAILED) in $(($(date +%s) - T0)) s"
[[ $rc = 0 ]] || exit 1
