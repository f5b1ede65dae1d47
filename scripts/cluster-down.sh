#!/usr/bin/env bash
# Stops the local cluster started by cluster-up.sh: SIGTERM to every recorded
# PID (a leader hands leadership over before it exits), SIGKILL to any that
# is still running after ~10 s. Data dirs and logs are kept, so the next
# cluster-up.sh resumes on the same data. Processes are only ever signalled by
# the PID recorded in $SWARM_CLUSTER_DIR/nodeN.pid, never by name.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cluster_dir="${SWARM_CLUSTER_DIR:-$root/.swarm-cluster}"
grace_s="${SWARM_DOWN_GRACE:-10}"
nodes=(1 2 3)

# The live swarmd PID recorded for node N. The command line check guards
# against a recycled PID that now belongs to something else.
node_pid() {
    local pidfile="$cluster_dir/node$1.pid" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q swarmd; then
        return 1
    fi
    echo "$pid"
}

declare -A pids=()
for n in "${nodes[@]}"; do
    if pid="$(node_pid "$n")"; then
        pids[$n]=$pid
        kill -TERM "$pid" 2>/dev/null || true
        echo "==> node $n: SIGTERM sent to pid $pid" >&2
    elif [[ -f "$cluster_dir/node$n.pid" ]]; then
        echo "==> node $n: not running (stale pid file)" >&2
    fi
done

deadline=$(($(date +%s) + grace_s))
while :; do
    left=0
    for n in "${!pids[@]}"; do
        if kill -0 "${pids[$n]}" 2>/dev/null; then
            left=$((left + 1))
        fi
    done
    [[ $left -eq 0 || $(date +%s) -ge $deadline ]] && break
    sleep 0.1
done

for n in "${!pids[@]}"; do
    if kill -0 "${pids[$n]}" 2>/dev/null; then
        echo "==> node $n: still running after ${grace_s}s, SIGKILL to pid ${pids[$n]}" >&2
        kill -KILL "${pids[$n]}" 2>/dev/null || true
    fi
done

for n in "${nodes[@]}"; do
    rm -f "$cluster_dir/node$n.pid"
done
if [[ ${#pids[@]} -eq 0 ]]; then
    echo "no Swarm node was running (state in $cluster_dir)"
else
    echo "Swarm cluster stopped; logs and data kept in $cluster_dir"
fi
