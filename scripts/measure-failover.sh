#!/usr/bin/env bash
# Leader failover as a client sees it: SIGKILL the leader of the local cluster
# (scripts/cluster-up.sh), then time until a submit is acknowledged; restart
# the killed node between trials. Usage: scripts/measure-failover.sh [TRIALS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
C=target/release/swarmctl
for trial in $(seq 1 "${1:-5}"); do
  L=$($C cluster status -o json | python3 -c "import json,sys; print(json.load(sys.stdin)['leader_id'])")
  t0=$(date +%s%N)
  kill -9 "$(cat .swarm-cluster/node$L.pid)"
  until $C work submit --type failover -o json >/dev/null 2>&1; do :; done
  t1=$(date +%s%N)
  echo "trial $trial: killed leader node $L, first acknowledged write after $(( (t1-t0)/1000000 )) ms"
  scripts/cluster-up.sh >/dev/null 2>&1 || true
  sleep 2
done
