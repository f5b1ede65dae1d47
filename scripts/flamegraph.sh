#!/usr/bin/env bash
# Where a Swarm node's CPU goes under the bench's claim workload: a flame
# graph of the leader (and, with --all, of all three nodes).
#
#   scripts/flamegraph.sh [--clients N] [--seconds S] [--all] [--out FILE.svg]
#
# Starts a three-node cluster (scripts/cluster-up.sh) in a temp dir, drives
# N clients of submit → claim → complete (swarm-vs-etcd claims, default 64),
# samples the leader with `perf record` (DWARF call graphs, 499 Hz) for S
# seconds (default 10) and folds the samples into an SVG with inferno
# (installed with `cargo install inferno` when missing). Default output:
# docs/flamegraph-leader-64.svg. Everything it started is stopped on exit, by
# recorded PID only.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
clients=64 seconds=10 all=0 out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --clients) clients="$2"; shift ;;
    --seconds) seconds="$2"; shift ;;
    --all) all=1 ;;
    --out) out="$2"; shift ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "usage: $0 [--clients N] [--seconds S] [--all] [--out FILE.svg]" >&2; exit 2 ;;
    esac
    shift
done
[[ -n "$out" ]] || out="$root/docs/flamegraph-$([[ $all == 1 ]] && echo cluster || echo leader)-$clients.svg"

log() { echo "==> $*" >&2; }

command -v perf >/dev/null || { log "installing perf (apt-get)"; apt-get install -y linux-perf >&2; }
if ! command -v inferno-flamegraph >/dev/null; then
    log "installing inferno (cargo install)"
    cargo install --locked inferno >&2
fi
export PATH="$HOME/.cargo/bin:$PATH"

log "building swarmd, swarmctl and swarm-vs-etcd (release)"
(cd "$root" && cargo build --release -p swarm-node -p swarm-cli -p swarm-bench --bin swarmd --bin swarmctl --bin swarm-vs-etcd >&2)

work="$(mktemp -d /tmp/swarm-flame.XXXXXX)"
export SWARM_CLUSTER_DIR="$work/cluster"
teardown() {
    "$root/scripts/cluster-down.sh" >&2 2>/dev/null || true
    rm -rf "$work"
}
trap teardown EXIT

"$root/scripts/cluster-up.sh" >&2
leader="$(SWARM_ENDPOINTS=127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 \
    "$root/target/release/swarmctl" cluster status -o json |
    python3 -c "import json,sys; print(json.load(sys.stdin)['leader_id'])")"
[[ "$leader" =~ ^[1-3]$ ]] || { echo "error: no leader" >&2; exit 1; }
pids="$(cat "$SWARM_CLUSTER_DIR/node$leader.pid")"
if [[ $all == 1 ]]; then
    pids="$(cat "$SWARM_CLUSTER_DIR"/node{1,2,3}.pid | paste -sd,)"
fi

log "load: $clients clients for $((seconds + 4)) s; sampling pid(s) $pids (leader is node $leader)"
"$root/target/release/swarm-vs-etcd" claims --system swarm --clients "$clients" \
    --duration "$((seconds + 4))s" >"$work/claims.json" &
load=$!
sleep 2
perf record -F 499 -g --call-graph dwarf,32768 -p "$pids" -o "$work/perf.data" -- sleep "$seconds" 2>"$work/perf.log" >&2
wait "$load"
log "claims during the profile: $(cat "$work/claims.json")"

perf script -i "$work/perf.data" 2>/dev/null |
    inferno-collapse-perf >"$work/folded"
title="swarmd $([[ $all == 1 ]] && echo "all nodes" || echo leader), $clients clients submit→claim→complete ($(date -u +%F))"
# Frames under 0.2 % of the width are left out: the SVG stays small enough
# to commit and open, and what they held is still in their parents' widths.
inferno-flamegraph --title "$title" --width 1600 --minwidth 0.2 <"$work/folded" >"$out"
# Where the samples went, by layer (first match from the leaf's side).
python3 - "$work/folded" >&2 <<'PY'
import sys
layers = [
    ("state machine (swarm_claims: apply, reads)", ("swarm_claims::",)),
    ("disk (raft log, sled, fdatasync)", ("sled::", "fdatasync", "sync_file_range", "SledStore", "storage::wal", "pwrite", "pread")),
    ("Raft (openraft)", ("openraft::",)),
    ("HTTP/2 and gRPC (h2, hyper, tonic)", ("h2::", "hyper::", "hyper_util::", "tonic::", "tower::")),
    ("encoding (prost, bincode, serde)", ("prost::", "bincode::", "serde_json::", "serde::")),
    ("tokio runtime (scheduling, timers)", ("tokio::",)),
    ("kernel (network, scheduler)", ("tcp_", "sock_", "schedule", "finish_task_switch", "futex", "epoll")),
]
totals, total = {name: 0 for name, _ in layers}, 0
other = 0
for line in open(sys.argv[1]):
    stack, n = line.rsplit(" ", 1)
    n = int(n); total += n
    frames = stack.split(";")[::-1]
    for f in frames:
        hit = next((name for name, keys in layers if any(k in f for k in keys)), None)
        if hit:
            totals[hit] += n
            break
    else:
        other += n
print("==> samples by layer (the innermost frame that names one):")
for name, _ in layers:
    print(f"    {totals[name] / total * 100:5.1f}%  {name}")
print(f"    {other / total * 100:5.1f}%  other")
PY
log "wrote $out"
