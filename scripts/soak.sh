#!/usr/bin/env bash
# Soak: does a node stay flat when items keep flowing through it?
#
#   scripts/soak.sh [--items N] [--retention D] [--json FILE] [--clients N]
#                   [--max-duration D] [--keep]
#
# Builds swarmd and swarm-soak (release), starts a three-node cluster of its
# own (the end-to-end harness: free ports on 127.0.0.1, data dirs in a temp
# dir; a cluster-up.sh cluster is left alone), pushes N items (default
# 1,000,000) through submit -> claim -> complete at full speed, samples
# every node's RSS, current snapshot file (size, age) and log (the sled dir)
# every 2 s, then stops the whole cluster (SIGTERM, SIGKILL after 15 s),
# relaunches it on the same data dirs and times it back to healthy (one
# leader, three voters, every node at one applied index).
#
# Prints a markdown table and a summary on stdout (progress on stderr),
# writes the run as JSON (default target/soak/soak.json) and its curves
# against items processed as an SVG beside it (soak.svg).
#
# --retention D (default 30s; also SWARM_RETENTION) is given to swarmd as
# --retention when swarmd has that flag; otherwise the run says the retention
# is not in effect. --max-duration (default 60m) bounds the load.
# Every process started is stopped on exit, by recorded PID only; --keep
# keeps the cluster's data and logs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() {
    echo "usage: $0 [--items N] [--retention D] [--json FILE] [--clients N] [--max-duration D] [--keep]" >&2
    exit 2
}

invocation="scripts/soak.sh${*:+ $*}"
args=()
keep=0
json_out="$root/target/soak/soak.json"
while [[ $# -gt 0 ]]; do
    case "$1" in
    --items | --retention | --clients | --max-duration)
        [[ $# -ge 2 ]] || usage
        if [[ $1 == --items || $1 == --clients ]] && [[ ! "$2" =~ ^[1-9][0-9]*$ ]]; then
            echo "error: $1 wants a positive integer, not '$2'" >&2
            exit 2
        fi
        args+=("$1" "$2")
        shift
        ;;
    --json)
        [[ $# -ge 2 ]] || usage
        json_out="$2"
        shift
        ;;
    --keep)
        args+=(--keep)
        keep=1
        ;;
    -h | --help)
        sed -n '2,25p' "$0"
        exit 0
        ;;
    *) usage ;;
    esac
    shift
done

log() { echo "==> $*" >&2; }

log "building swarmd and swarm-soak (release)"
(cd "$root" && cargo build --release -p swarm-node --bin swarmd -p swarm-bench --bin swarm-soak >&2)
revision="$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"

work="$(mktemp -d /tmp/swarm-soak.XXXXXX)"
pid_file="$work/nodes.pid"
# The harness makes the cluster's temp dir (data dirs, node logs) in
# $TMPDIR: inside $work, it goes with $work even if swarm-soak is killed.
mkdir "$work/tmp"
soak_pid=""

# Stops what this script started, by recorded PID: swarm-soak first (on
# SIGTERM it stops its cluster itself), then any node it left behind (it
# writes `<node> <pid>` lines to $pid_file whenever the nodes start).
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local rc=$? node pid
    trap - EXIT INT TERM
    if [[ -n "$soak_pid" ]] && kill -0 "$soak_pid" 2>/dev/null; then
        kill -TERM "$soak_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$soak_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$soak_pid" 2>/dev/null || true
    fi
    if [[ -f "$pid_file" ]]; then
        while read -r node pid; do
            [[ "$pid" =~ ^[0-9]+$ ]] || continue
            # Only a live swarmd: the PID may have been recycled since.
            if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q swarmd; then
                echo "==> node $node (pid $pid) still running: SIGKILL" >&2
                kill -KILL "$pid" 2>/dev/null || true
            fi
        done <"$pid_file"
    fi
    if [[ $keep -eq 1 ]]; then
        echo "==> data and node logs kept in $work/tmp" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "soak: ${args[*]:-defaults}; JSON to $json_out"
# In the background so that a signal to this script reaches its trap at once.
TMPDIR="$work/tmp" SWARMD_BIN="$root/target/release/swarmd" "$root/target/release/swarm-soak" run \
    "${args[@]}" --json "$json_out" --pid-file "$pid_file" \
    --command "$invocation" --revision "$revision" &
soak_pid=$!
rc=0
wait "$soak_pid" || rc=$?
soak_pid=""
exit "$rc"
