#!/usr/bin/env bash
# test_multihost.sh - training across two hosts for real: two network
# namespaces joined by a veth pair, each a host with its own address, host
# name, /etc/hosts, /tmp and /dev/shm; mpirun starts on host A and reaches
# host B over TCP through an rsh agent that enters B's namespaces as ssh would
# log in (docs/MULTIHOST.md).
#
# usage: test_multihost.sh MPITRAIN H5CMP REPO
#
#   1. dp2 with one rank per host, then dp2.tp2 (tp partners on different
#      hosts) and dp2.pp2 (pp partners on different hosts) with two ranks per
#      host: each rank's host name is recorded, the partners are checked
#      against the layout rule of parallel/comm.c, MPI traffic crosses the veth.
#   2. Each run's losses (metrics.jsonl, exact text) and final checkpoint
#      (every tensor, bitwise) equal those of the same run on one host (plain
#      mpirun -np N outside the namespaces).
#   3. run.json (`hosts`) and the registry's records
#      (lineage.environment.hosts) name both hosts; run.json's `host` is
#      rank 0's, host A.
#   4. Nothing the test made outlives it: namespaces, veth, mounts, processes.
#
# Skips (exit 77, saying why) where the hosts cannot be made: not root,
# no `ip`/`unshare`/`nsenter`, or the kernel refuses namespaces, a tmpfs or
# a veth pair (tried first in throwaway namespaces). Needs iproute2 and
# util-linux (scripts/install_deps.sh --tests).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
MPITRAIN=$(realpath "$1") H5CMP=$(realpath "$2") REPO=$(realpath "$3")

skip() {
    echo "skip - multihost: $*"
    exit 77
}
[ "$(id -u)" = 0 ] || skip "network, UTS and mount namespaces need root (uid $(id -u))"
for c in ip unshare nsenter; do
    command -v $c >/dev/null || skip "no $c: install iproute2 and util-linux (scripts/install_deps.sh --tests)"
done
# what a host needs, tried once in throwaway namespaces (gone when sh ends):
# a refusal here is the machine's (no privilege in a container, no veth
# driver), so a skip; a failure later is the test's, so a FAIL
unshare --net --uts --mount --propagation private sh -c 'hostname mt-probe &&
    mount -t tmpfs tmpfs /dev/shm && ip link add mt0 type veth peer name mt1' 2>"$TMP/probe.log" ||
    skip "cannot make a host (namespaces, tmpfs, veth): $(head -1 "$TMP/probe.log")"

# The two hosts. The subnet is a private test range only these namespaces
# hold: their sole interfaces are lo and the veth, so no packet can leave them.
NET=10.213.0.0/24
NAMES=(mt-host-a mt-host-b) ADDRS=(10.213.0.1 10.213.0.2)
KEEPER=() UNSHARE=() UNSHARE_IN=() NS_IDS=()

# hosts_down: kills every process inside the test's namespaces (found by
# their network or mount namespace, so nothing else is touched), which ends
# the namespaces and with them the veth, the tmpfs mounts and the binds.
# `unshare` itself, also inside, is spared at first: it reaps its keeper and
# exits, rather than leave it a zombie for init. Fails if a process remains.
hosts_down() {
    [ ${#NS_IDS[@]} -gt 0 ] || return 0
    local spare=" ${UNSHARE_IN[*]} " left
    for _ in $(seq 50); do
        left=$(ns_procs "$spare")
        if [ -z "$left" ]; then
            [ -z "$spare" ] && break
            sleep 0.1 # the keepers are gone: unshare reaps its own and exits
            spare=
            continue
        fi
        # shellcheck disable=SC2086 # one PID a word
        kill -KILL $left 2>/dev/null
        sleep 0.1
    done
    for p in "${UNSHARE[@]}"; do wait "$p" 2>/dev/null; done
    NS_IDS=()
    [ -z "$left" ]
}
# ns_procs SPARE: the PIDs of the processes in the test's namespaces, except
# those in SPARE (" PID PID ")
ns_procs() {
    local p id ns
    for p in /proc/[0-9]*; do
        [[ "$1" == *" ${p#/proc/} "* ]] && continue
        ns=" $(readlink "$p/ns/net" 2>/dev/null) $(readlink "$p/ns/mnt" 2>/dev/null) "
        for id in "${NS_IDS[@]}"; do
            [[ "$ns" == *" $id "* ]] && echo "${p#/proc/}" && break
        done
    done
}
JOB=
trap '[ -n "$JOB" ] && kill -TERM "$JOB" 2>/dev/null && wait "$JOB"; hosts_down; rm -rf "$TMP"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

printf '127.0.0.1 localhost\n%s %s\n%s %s\n' "${ADDRS[0]}" "${NAMES[0]}" "${ADDRS[1]}" "${NAMES[1]}" \
    >"$TMP/hosts"
# What a host's keeper runs inside its new namespaces: its host name, its own
# /etc/hosts, /sys (whose class/net shows the namespace that mounts it),
# /dev/shm and /tmp (Open MPI names shared-memory segments and
# session folders by node name, and one machine's hosts would share them);
# the paths the runs need and that lie under /tmp (this test's folder, the
# build tree) are bound into the new /tmp at the same place. The new /tmp is
# built aside, in the test's folder, and moved over /tmp in one step.
# shellcheck disable=SC2016 # expanded by the keeper
KEEP='set -e
name=$1 dir=$2 hosts=$3 test_pid=$4; shift 4
hostname "$name"
mount --bind "$hosts" /etc/hosts
mount -t tmpfs -o size=256m tmpfs /dev/shm
mkdir "$dir/newtmp"
mount -t tmpfs -o size=256m,mode=1777 tmpfs "$dir/newtmp"
for p in "$@"; do
    case $p in /tmp/*) mkdir -p "$dir/newtmp${p#/tmp}"; mount --bind "$p" "$dir/newtmp${p#/tmp}" ;; esac
done
mount --move "$dir/newtmp" /tmp
mount -t sysfs sysfs /sys
ip link set lo up
echo $$ >"$dir/ready" # the keeper: this shell, for as long as the test lives
set +e
# ends on its own when the test is gone, even SIGKILLed: nothing outlives it
while kill -0 "$test_pid" 2>/dev/null; do sleep 1; done'

# host_up I: starts host I's keeper (a sleep holding its namespaces).
host_up() {
    local i=$1 d=$TMP/host$1 k='' u=''
    mkdir -p "$d"
    # in a subshell whose stderr is the log: the shell's "Killed" line for
    # unshare at the end goes there, not into the test's output
    (unshare --net --uts --mount --fork --propagation private bash -c "$KEEP" _ "${NAMES[$i]}" "$d" \
        "$TMP/hosts" $$ "$TMP" "$(dirname "$MPITRAIN")" "$(dirname "$H5CMP")" "$REPO"
    echo "keeper ended: $?" >&2) 2>"$d/keeper.log" &
    UNSHARE+=($!)
    for _ in $(seq 100); do
        [ -s "$d/ready" ] && k=$(cat "$d/ready") && u=$(ps -o ppid= -p "$k") && break
        sleep 0.05
    done
    [ -n "$k" ] || { bad "host ${NAMES[$i]}: namespaces not ready"; cat "$d/keeper.log"; exit 1; }
    UNSHARE_IN+=("${u// /}")
    KEEPER+=("$k")
    local net mnt
    net=$(readlink "/proc/$k/ns/net") mnt=$(readlink "/proc/$k/ns/mnt")
    [ -n "$net" ] && [ -n "$mnt" ] || { bad "host ${NAMES[$i]}: its namespaces cannot be read"; exit 1; }
    NS_IDS+=("$net" "$mnt")
}
# on I CMD...: runs CMD on host I (its network, host name and files)
on() {
    local k=${KEEPER[$1]}
    shift
    nsenter -t "$k" --net --uts --mount -- "$@"
}
host_up 0
host_up 1
# the veth pair is made inside host A with its peer moved straight into B: it
# never exists outside the namespaces, and goes with them
on 0 ip link add mt0 type veth peer name mt1 netns "${KEEPER[1]}" || { bad "cannot make the veth pair"; exit 1; }
on 0 ip addr add "${ADDRS[0]}/24" dev mt0 && on 0 ip link set mt0 up &&
    on 1 ip addr add "${ADDRS[1]}/24" dev mt1 && on 1 ip link set mt1 up ||
    { bad "cannot address the veth pair"; exit 1; }
if [ "$(on 0 hostname)" = "${NAMES[0]}" ] && [ "$(on 1 hostname)" = "${NAMES[1]}" ] &&
    [ "$(hostname)" != "${NAMES[0]}" ] && [ "$(on 0 getent hosts "${NAMES[1]}")" = "${ADDRS[1]}      ${NAMES[1]}" ] &&
    [ -z "$(on 0 ls -A /dev/shm)" ] && on 0 touch /tmp/only_on_a && ! on 1 test -e /tmp/only_on_a &&
    on 1 test -x "$MPITRAIN"; then
    ok "two hosts: ${NAMES[0]} (${ADDRS[0]}) and ${NAMES[1]} (${ADDRS[1]}) over a veth; own host names, /tmp, /dev/shm"
else
    bad "the two hosts are not set up as planned"
    exit 1
fi

# The rsh agent: what `ssh HOST CMD...` does, with namespaces for the login:
# enter HOST's namespaces and run the words as one shell command line, in a
# login's bare environment (so whatever the ranks need must come through
# mpirun's -x, as across real machines). No PID namespaces: a process in one
# cannot enter a sibling's, so the agent, running on host A, could not reach
# B; the hosts share the PID space, and hosts_down finds their processes by
# network and mount namespace instead.
cat >"$TMP/rsh_agent" <<AGENT
#!/bin/sh
host=\$1
shift
case \$host in
    ${NAMES[0]} | ${ADDRS[0]}) pid=${KEEPER[0]} ;;
    ${NAMES[1]} | ${ADDRS[1]}) pid=${KEEPER[1]} ;;
    *) echo "rsh_agent: unknown host \$host" >&2; exit 255 ;;
esac
exec nsenter -t \$pid --net --uts --mount -- env -i HOME=/root \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin sh -c "\$*"
AGENT
chmod +x "$TMP/rsh_agent"
printf '%s slots=2\n%s slots=2\n' "${NAMES[0]}" "${NAMES[1]}" >"$TMP/hostfile"
# Traffic stays on the veth's subnet (MPI messages over TCP between hosts,
# shared memory within one, the daemons' own channel too). Each host believes
# it has 2 cores, so Open MPI would busy-poll 4 ranks on this machine's 2
# without mpi_yield_when_idle (tp2: 13 s instead of 3).
# shellcheck disable=SC2054 # the commas are Open MPI's
MPI_2HOST=(--hostfile "$TMP/hostfile" --mca plm_rsh_agent "$TMP/rsh_agent" --mca plm_rsh_no_tree_spawn 1
    --mca btl tcp,self,vader --mca pml ob1 --mca btl_tcp_if_include "$NET"
    --mca oob_tcp_if_include "$NET" --bind-to none --mca mpi_yield_when_idle 1
    -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x OMP_NUM_THREADS=1
    -x OPENBLAS_NUM_THREADS=1)

gpt_tokens
GPT=("${GPT_TINY[@]}" --set train.steps=8 --set train.eval_every=4 --set run.log_every=1
    --set run.threads=1 --set checkpoint.save_final=true)
# HOSTNAME_OF: a rank's wrapper that writes its host name to DIR/host.RANK
# shellcheck disable=SC2016 # expanded by the rank's shell
HOSTNAME_OF='hostname >"$0/host.$OMPI_COMM_WORLD_RANK" && exec "$@"'

# run_pair NAME NP MAP ARGS...: the run on two hosts (mpirun on A, MAP the
# --map-by policy) and the same run on one host; status in RC2 and RC1
run_pair() {
    local name=$1 np=$2 map=$3 t0
    shift 3
    mkdir -p "$TMP/$name.map"
    t0=$(date +%s%N)
    on 0 timeout -k 5 120 mpirun -np "$np" --map-by "$map" "${MPI_2HOST[@]}" \
        sh -c "$HOSTNAME_OF" "$TMP/$name.map" "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" \
        "${GPT[@]}" --set run.dir="$TMP/$name.two" "$@" >"$TMP/$name.two.log" 2>&1 &
    wait_job
    RC2=$RC
    T2=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    timeout -k 5 120 mpirun -np "$np" "$MPITRAIN" train --config "$REPO/configs/mnist_mlp.ini" \
        "${GPT[@]}" --set run.dir="$TMP/$name.one" "$@" >"$TMP/$name.one.log" 2>&1 &
    wait_job
    RC1=$RC
}
# wait_job: waits for the last background job, status in RC. A run is waited
# for in the background so that a signal to the test ends it at once (the
# traps run; a foreground child would delay them to its end); JOB names the
# run for the EXIT trap, which ends it (timeout passes TERM on to mpirun).
wait_job() {
    JOB=$!
    wait "$JOB"
    RC=$?
    JOB=
}
# hosts_of NAME NP: the ranks' host names in rank order, space-separated
hosts_of() {
    local r out=
    for ((r = 0; r < $2; r++)); do out+="$(cat "$TMP/$1.map/host.$r" 2>/dev/null || echo '?') "; done
    echo "${out% }"
}
veth_bytes() { on 0 cat /sys/class/net/mt0/statistics/tx_bytes /sys/class/net/mt0/statistics/rx_bytes | awk '{ s += $1 } END { print s }'; }

# check NAME NP MAP LAYOUT PARTNER-STRIDE ARGS...: runs the pair and checks
# it; PARTNER-STRIDE: ranks r and r+STRIDE (r < STRIDE) are the partners that
# must sit on different hosts (1: tp, tp_rank = rank % tp; 2 at dp2.pp2:
# pp_rank = rank / (tp*dp), parallel/comm.c)
check() {
    local name=$1 np=$2 map=$3 layout=$4 stride=$5 b0 moved
    shift 5
    b0=$(veth_bytes)
    run_pair "$name" "$np" "$map" "$@"
    moved=$(($(veth_bytes) - b0))
    RC=$RC2
    must_succeed "$name on two hosts" "$TMP/$name.two.log"
    RC=$RC1
    must_succeed "$name on one host" "$TMP/$name.one.log"
    local hosts pairs="" r ok_pairs=1
    read -ra hosts <<<"$(hosts_of "$name" "$np")"
    for ((r = 0; r < np; r++)); do
        [ $((r % (2 * stride))) -lt "$stride" ] || continue
        pairs+=" $r-$((r + stride))"
        [ "${hosts[$r]}" != "${hosts[$((r + stride))]}" ] || ok_pairs=0
    done
    if [ "$ok_pairs" = 1 ] && [ "$(printf '%s\n' "${hosts[@]}" | sort -u | wc -l)" = 2 ] &&
        grep -q "layout: world $np = $layout" "$TMP/$name.two.log" && [ "$moved" -gt 100000 ]; then
        ok "$name on two hosts in ${T2}s: ranks 0..$((np - 1)) on ${hosts[*]}; partners$pairs on different hosts; $moved bytes over the veth"
    else
        bad "$name: ranks on ${hosts[*]} (partners$pairs must differ), $moved bytes over the veth, layout:"
        grep 'layout:' "$TMP/$name.two.log"
    fi
    local m2 m1
    m2=$(ls -d "$TMP/$name.two"/*/0001) m1=$(ls -d "$TMP/$name.one"/*/0001)
    if [ "$(losses "$m2/metrics.jsonl")" = "$(losses "$m1/metrics.jsonl")" ] &&
        [ "$(losses "$m2/metrics.jsonl" | wc -l)" = 8 ]; then
        ok "$name: the 8 losses on two hosts are the one-host run's, as text (last $(losses "$m2/metrics.jsonl" | tail -1))"
    else
        bad "$name: losses differ from the one-host run"
        paste <(losses "$m2/metrics.jsonl") <(losses "$m1/metrics.jsonl") | sed 's/^/   | /'
    fi
    cmp_h5 "$name: final checkpoint written from two hosts equals the one-host one" \
        "$m2/checkpoints/step_00000008.h5" "$m1/checkpoints/step_00000008.h5" --bitwise
    if $PY - "$m2/run.json" "$TMP/$name.two/registry.jsonl" "${NAMES[@]}" <<'EOF'; then
import json, sys
run, reg, a, b = sys.argv[1:]
rj = json.load(open(run))
assert rj["host"] == a, "run.json host is not rank 0's"
assert sorted(rj["hosts"]) == sorted([a, b]), "run.json hosts: %s" % rj["hosts"]
recs = [json.loads(l) for l in open(reg)]
assert [r["eventType"] for r in recs] == ["START", "CHECKPOINT", "COMPLETE"], recs
for r in recs:
    h = r["lineage"]["environment"]["hosts"]
    assert sorted(h) == sorted([a, b]), h
EOF
        ok "$name: run.json and the registry records name both hosts; run.json's host is ${NAMES[0]} (rank 0)"
    else
        bad "$name: host names in run.json / registry"
    fi
}

check dp2 2 node "dp 2 x tp 1 x pp 1" 1
check tp2 4 node "dp 2 x tp 2 x pp 1" 1 --set parallel.tp=2
check pp2 4 slot "dp 2 x tp 1 x pp 2" 2 --set parallel.pp=2

# ---- nothing left behind ----
hosts_down
down=$?
alive=0
for p in "${KEEPER[@]}" "${UNSHARE_IN[@]}" "${UNSHARE[@]}"; do
    [ -e "/proc/$p" ] && alive=1 && echo "   left: $p $(tr '\0' ' ' <"/proc/$p/cmdline") $(grep State "/proc/$p/status")"
done
if [ $down = 0 ] && [ $alive = 0 ] && ! ip link show mt0 >/dev/null 2>&1 && ! ip link show mt1 >/dev/null 2>&1 &&
    [ ! -e /tmp/only_on_a ] && ! findmnt -rn -o TARGET | grep -qF "$TMP"; then
    ok "cleanup: namespaces' processes gone, no veth, no mount left"
else
    bad "cleanup left something behind"
fi

[ $fail = 0 ] && echo "multihost: all checks passed" || echo "multihost: FAILED"
exit $fail
