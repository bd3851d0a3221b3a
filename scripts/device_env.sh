#!/usr/bin/env bash
# device_env.sh - sourced on the GPU machine: makes the programs of a bundle
# (scripts/bundle.sh) runnable there without MPI, HDF5 or OpenBLAS installed,
# as a singleton (`mpitrain train ...`) and under the bundled mpirun
# (`mpirun -np 2 mpitrain train ...`, ranks on this one node).
#
# usage: source scripts/device_env.sh [BUNDLE_DIR]    (default: ROOT/bundle)
#        bash scripts/device_env.sh --help
#   BUNDLE_DIR.tar.xz is unpacked beside it first when the folder is missing.
#
# Sets: PATH (BUNDLE/bin first: mpitrain, mpirun, orted, ompi_info, ...);
# LD_LIBRARY_PATH (BUNDLE/lib, then the folders of this machine's CUDA
# libraries libcudart/libcublas/libcublasLt.so.13 and libnccl.so.2 the
# dynamic linker cannot find by itself: /usr/local/cuda*, else PyTorch's
# site-packages/nvidia/*/lib); OPAL_* and PMIX_* install folders pointing
# Open MPI and PMIx at the bundle (plugins, help texts, config); OMPI_MCA_*
# for one node (plm isolated: no ssh needed; vader without single-copy, which
# containers often forbid; oversubscription allowed); running as root
# allowed; OMP_NUM_THREADS (default 4). Also MT_BUNDLE, MT_CUDA_LIBS (the
# folders added) and MT_SYSTEM_LD_LIBRARY_PATH (the value before: run the
# machine's own Python/PyTorch with it, e.g.
# `LD_LIBRARY_PATH=$MT_SYSTEM_LD_LIBRARY_PATH python3 ...`, so that the
# bundle's OpenSSL/zlib/... do not replace the system's under it).
# Prints one line to stderr: what was found, and any library still missing.
# Returns (or exits, when run) 2 when the bundle is unusable.
#
# Sourced into the caller's shell: it changes no shell option (no set -e),
# and works under the caller's set -euo pipefail.

_mt_env_main() {
    local root bundle d lib found dirs py glibc_have glibc_need missing
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    case "${1:-}" in
        -h | --help) sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return 1 ;;
    esac
    bundle=${1:-$root/bundle}
    bundle=${bundle%/}
    if [[ ! -d "$bundle" && -f "$bundle.tar.xz" ]]; then
        # (the archive holds one top folder, whatever its name; without xz,
        # Python's tarfile unpacks it)
        mkdir -p "$bundle.tmp.$$"
        if ! { command -v xz >/dev/null &&
            tar -C "$bundle.tmp.$$" --strip-components=1 -xJf "$bundle.tar.xz"; } &&
            ! python3 -c 'import sys, tarfile
t = tarfile.open(sys.argv[1])
for m in t.getmembers():
    m.name = m.name.partition("/")[2]
t.extractall(sys.argv[2], [m for m in t.getmembers() if m.name])' "$bundle.tar.xz" "$bundle.tmp.$$"; then
            rm -rf "$bundle.tmp.$$"
            echo "device_env.sh: error: cannot unpack $bundle.tar.xz" >&2
            return 2
        fi
        mv "$bundle.tmp.$$" "$bundle"
    fi
    if [[ ! -x "$bundle/bin/mpitrain" || ! -x "$bundle/bin/orted" ]]; then
        echo "device_env.sh: error: no bundle at $bundle (run scripts/bundle.sh on the build machine)" >&2
        return 2
    fi
    bundle=$(cd "$bundle" && pwd)

    # This machine's CUDA libraries, where the dynamic linker would not find
    # them by itself: the toolkit's, else PyTorch's wheels (nvidia/*/lib).
    # Searched with the environment as it was (the bundle's libraries are not
    # on LD_LIBRARY_PATH yet, so python3 runs as usual).
    dirs=()
    for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libnccl.so.2; do
        found=""
        for d in ${LD_LIBRARY_PATH:+${LD_LIBRARY_PATH//:/ }} /usr/local/cuda/lib64 /usr/local/cuda/lib \
            /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64 \
            /usr/local/cuda-13*/targets/x86_64-linux/lib; do
            [[ -e "$d/$lib" ]] && { found=$d; break; }
        done
        if [[ -z "$found" ]]; then # in the system's library folders: nothing to add
            for d in $(ldconfig -p 2>/dev/null | awk -v l="$lib" '$1 == l {print $NF}'); do
                [[ -e "$d" ]] && { found=system; break; }
            done
            [[ "$found" = system ]] && continue
        fi
        if [[ -z "$found" ]] && command -v python3 >/dev/null; then
            [[ -n "${py+x}" ]] || py=$(python3 -c 'import glob, site, sys
paths = site.getsitepackages() + [site.getusersitepackages()] + sys.path
print("\n".join(d for p in dict.fromkeys(paths) for d in sorted(glob.glob(p + "/nvidia/*/lib"))))' 2>/dev/null || true)
            for d in $py; do
                [[ -e "$d/$lib" ]] && { found=$d; break; }
            done
        fi
        [[ -n "$found" ]] && dirs+=("$found")
    done
    MT_CUDA_LIBS=""
    for d in "${dirs[@]}"; do
        case ":$MT_CUDA_LIBS:" in *":$d:"*) ;; *) MT_CUDA_LIBS="${MT_CUDA_LIBS:+$MT_CUDA_LIBS:}$d" ;; esac
    done
    export MT_CUDA_LIBS MT_BUNDLE=$bundle

    # Set once: sourcing twice must not stack the bundle into the saved value.
    if [[ -z "${MT_SYSTEM_LD_LIBRARY_PATH+x}" ]]; then
        export MT_SYSTEM_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
    fi
    export LD_LIBRARY_PATH="$bundle/lib${MT_CUDA_LIBS:+:$MT_CUDA_LIBS}${MT_SYSTEM_LD_LIBRARY_PATH:+:$MT_SYSTEM_LD_LIBRARY_PATH}"
    case ":$PATH:" in *":$bundle/bin:"*) ;; *) export PATH="$bundle/bin:$PATH" ;; esac

    # Open MPI 4.1 and PMIx 4.2 find their plugins, help texts and config
    # through their install folders, overridable by these variables.
    export OPAL_PREFIX=$bundle OPAL_EXEC_PREFIX=$bundle OPAL_BINDIR=$bundle/bin \
        OPAL_LIBDIR=$bundle/lib OPAL_PKGLIBDIR=$bundle/lib/openmpi3 \
        OPAL_DATAROOTDIR=$bundle/share OPAL_DATADIR=$bundle/share \
        OPAL_PKGDATADIR=$bundle/share/openmpi OPAL_SYSCONFDIR=$bundle/etc
    export PMIX_PREFIX=$bundle PMIX_INSTALL_PREFIX=$bundle PMIX_EXEC_PREFIX=$bundle \
        PMIX_BINDIR=$bundle/bin PMIX_LIBDIR=$bundle/lib PMIX_PKGLIBDIR=$bundle/lib/pmix \
        PMIX_DATAROOTDIR=$bundle/share PMIX_DATADIR=$bundle/share \
        PMIX_PKGDATADIR=$bundle/share/pmix PMIX_SYSCONFDIR=$bundle/etc
    export OMPI_MCA_mca_base_component_path=$bundle/lib/openmpi3
    export PMIX_MCA_mca_base_component_path=$bundle/lib/pmix
    # orted: what a singleton MPI_Init forks (found in OPAL_BINDIR) and what
    # mpirun would start on other nodes
    export OMPI_MCA_orte_launch_agent=$bundle/bin/orted
    # One node: no ssh/rsh needed (plm rsh fails without one); shared memory
    # and self only; CMA single-copy needs ptrace rights a container may lack.
    export OMPI_MCA_plm=isolated OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none
    export OMPI_MCA_rmaps_base_oversubscribe=1
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

    # What the bundle needs of this machine.
    glibc_have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
    glibc_need=$(cat "$bundle/GLIBC_REQUIRED" 2>/dev/null || true)
    glibc_need=${glibc_need#GLIBC_}
    if [[ -n "$glibc_have" && -n "$glibc_need" &&
        $(printf '%s\n%s\n' "$glibc_need" "$glibc_have" | sort -V | head -1) != "$glibc_need" ]]; then
        echo "device_env.sh: warning: the bundle needs glibc >= $glibc_need, this machine has $glibc_have" >&2
    fi
    missing=$(for f in "$bundle"/bin/*; do ldd "$f" 2>/dev/null; done | awk '/not found/{print $1}' | sort -u | tr '\n' ' ')
    echo "device_env.sh: bundle $bundle; CUDA libraries from: ${MT_CUDA_LIBS:-the system library folders}; glibc ${glibc_have:-?} (needs ${glibc_need:-?})${missing:+; MISSING: $missing}" >&2
    return 0
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    # run, not sourced: only --help (and a check) make sense
    set -euo pipefail
    _mt_env_main "$@" || { rc=$?; [[ $rc == 1 ]] && exit 0; exit $rc; }
    echo "device_env.sh: note: run, not sourced: nothing changed in your shell (use: source $0 BUNDLE)" >&2
else
    _mt_env_main "$@"
    _mt_env_rc=$?
    unset -f _mt_env_main
    [[ $_mt_env_rc == 1 ]] && _mt_env_rc=0 # --help
    return $_mt_env_rc
fi
