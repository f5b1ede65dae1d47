#!/usr/bin/env bash
# Long chaos runs: starts a three-node cluster of real swarmd processes (with a
# TCP proxy on every peer link), drives it with concurrent clients and
# workflows while nemeses kill, pause and partition nodes, then heals it and
# checks the recorded history and every replica. Prints a report; exits
# non-zero when any anomaly is found.
#
# Usage: scripts/chaos.sh [--duration 10m] [--seed S] [--nemesis kill,pause,partition,...]
#                         [--json FILE] [--clients N] [--release]
# Nemeses: all (default), kill, pause, partition, delay, drop, restart, or
# exact kinds: kill_leader kill_follower kill_random pause_leader pause_agent
# partition_leader restart_cluster.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

profile=()
args=()
for a in "$@"; do
  if [[ "$a" == "--release" ]]; then profile=(--release); else args+=("$a"); fi
done

cargo build -q "${profile[@]}" -p swarm-node --bin swarmd
cargo build -q "${profile[@]}" -p swarm-tests --bin swarm-chaos
dir=target/debug
[[ ${#profile[@]} -gt 0 ]] && dir=target/release
SWARMD_BIN="$PWD/$dir/swarmd" exec "$dir/swarm-chaos" "${args[@]}"
