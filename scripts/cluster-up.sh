#!/usr/bin/env bash
# Builds swarmd and swarmctl (release), starts the three nodes of cluster/
# on 127.0.0.1, waits until they form one healthy cluster (a leader and three
# voters), and prints where everything is.
#
# State lives under $SWARM_CLUSTER_DIR (default: <repo>/.swarm-cluster):
#   nodeN.pid  the PID of node N     nodeN.log  its log (appended)
#   nodeN/     its data dir, kept by cluster-down.sh so the next start resumes
#
# Environment: SWARM_CLUSTER_DIR, SWARM_UP_TIMEOUT (seconds, default 60).
#
# --tls: TLS on every node's gRPC listener, mutual TLS between nodes, and
# bearer tokens. The certificates (`swarmctl cert`: a CA, node-1..3), a
# tokens file and an admin token (`swarmctl token create`) are made once
# under $SWARM_CLUSTER_DIR/tls/ and reused; the script prints the `export`
# lines that point swarmctl at the cluster. (The HTTP dashboard stays
# plaintext on 127.0.0.1.)
set -euo pipefail

tls=0
for arg in "$@"; do
    case "$arg" in
    --tls) tls=1 ;;
    *)
        echo "usage: $0 [--tls]" >&2
        exit 2
        ;;
    esac
done

script_started=$(date +%s.%N)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cluster_dir="${SWARM_CLUSTER_DIR:-$root/.swarm-cluster}"
timeout_s="${SWARM_UP_TIMEOUT:-60}"
nodes=(1 2 3)
swarmd="$root/target/release/swarmd"
swarmctl="$root/target/release/swarmctl"

# A key of node N's config file (empty when unset): listen_of N, http_of N.
config_of() {
    python3 - "$root/cluster/node$1.toml" "$2" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(tomllib.load(f).get(sys.argv[2], ""))
PY
}
listen_of() { config_of "$1" listen; }
peer_of() { config_of "$1" peer_listen; }
http_of() { config_of "$1" http_listen; }

# Whether the PID recorded for node N is a live swarmd. The command line check
# guards against a recycled PID that now belongs to something else.
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

elapsed_since() {
    python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.1f}s')" "$1"
}

print_log_tails() {
    local n
    for n in "${nodes[@]}"; do
        echo "---- $cluster_dir/node$n.log (last 40 lines)" >&2
        tail -n 40 "$cluster_dir/node$n.log" >&2 2>/dev/null || echo "(no log)" >&2
    done
}

# Prints the leader's id when the cluster is healthy: every node answers
# `cluster status` itself, all name the same leader, each sees three voters,
# and the leader reaches all of them. Asking every node matters: a node that
# was just restarted may name the leader of its persisted vote (itself
# included) until it hears from the current one.
cluster_leader() {
    local views=() n
    for n in "${nodes[@]}"; do
        views+=("$(timeout 5 "$swarmctl" --endpoints "${addrs[$n]}" cluster status -o json 2>/dev/null)") ||
            return 1
    done
    python3 - "${views[@]}" 2>/dev/null <<'PY'
import json, sys
views = [json.loads(v) for v in sys.argv[1:]]
leaders = {v.get("leader_id") for v in views}
if len(leaders) != 1 or not all(leaders):
    sys.exit(1)
leader = leaders.pop()
for v in views:
    voters = [m for m in v.get("members", []) if m.get("role") in ("leader", "follower")]
    if len(voters) != 3:
        sys.exit(1)
# views[i] is node i+1's own answer.
if not all(m.get("reachable") for m in views[leader - 1].get("members", [])):
    sys.exit(1)
print(leader)
PY
}

declare -A addrs=() peers=() https=()
endpoints=""
for n in "${nodes[@]}"; do
    addrs[$n]="$(listen_of "$n")"
    peers[$n]="$(peer_of "$n")"
    https[$n]="$(http_of "$n")"
    endpoints+="${endpoints:+,}${addrs[$n]}"
done
# swarmctl must talk to this cluster, whatever the caller's environment says.
export SWARM_ENDPOINTS="$endpoints"

echo "==> building swarmd and swarmctl (release)" >&2
(cd "$root" && cargo build --release -p swarm-node -p swarm-cli)

mkdir -p "$cluster_dir"

tls_flags=()
if ((tls)); then
    tls_dir="$cluster_dir/tls"
    if [[ ! -f "$tls_dir/ca.pem" ]]; then
        "$swarmctl" cert ca --dir "$tls_dir" >&2
    fi
    for n in "${nodes[@]}"; do
        if [[ ! -f "$tls_dir/node-$n.pem" ]]; then
            "$swarmctl" cert node --id "$n" --host 127.0.0.1,localhost --dir "$tls_dir" >&2
        fi
    done
    if [[ ! -f "$tls_dir/tokens" ]]; then
        # An admin token for the operator; the file holds only its hash.
        created="$("$swarmctl" token create --role admin -o json)"
        (umask 077 && python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$created" \
            >"$tls_dir/admin.token")
        python3 -c 'import json,sys; print("# admin, made by cluster-up.sh --tls\n" + json.loads(sys.argv[1])["line"])' \
            "$created" >"$tls_dir/tokens"
    fi
    # This script's own swarmctl calls check the nodes against the CA and
    # carry the admin token.
    export SWARM_CA="$tls_dir/ca.pem"
    SWARM_TOKEN="$(cat "$tls_dir/admin.token")"
    export SWARM_TOKEN
fi

running=0
for n in "${nodes[@]}"; do
    if node_pid "$n" >/dev/null; then
        running=$((running + 1))
    fi
done
if [[ $running -eq ${#nodes[@]} ]]; then
    echo "the Swarm cluster is already up (pids in $cluster_dir/node{1,2,3}.pid); endpoints: $endpoints"
    echo "stop it with: scripts/cluster-down.sh"
    exit 0
fi

launched=$(date +%s.%N)
for n in "${nodes[@]}"; do
    if pid="$(node_pid "$n")"; then
        echo "==> node $n already running (pid $pid)" >&2
        continue
    fi
    log="$cluster_dir/node$n.log"
    echo "---- cluster-up.sh: starting node $n at $(date -Is)" >>"$log"
    (
        cd "$root"
        # The node's configuration is its TOML file: SWARM_* settings in the
        # caller's environment would override it (env beats TOML), so drop
        # them, except the log filter.
        for var in $(compgen -e); do
            if [[ $var == SWARM_* && $var != SWARM_LOG ]]; then unset "$var"; fi
        done
        if ((tls)); then
            tls_flags=(--tls-cert "$tls_dir/node-$n.pem" --tls-key "$tls_dir/node-$n.key"
                --tls-ca "$tls_dir/ca.pem" --tokens-file "$tls_dir/tokens")
        fi
        NO_COLOR=1 nohup "$swarmd" --config "$root/cluster/node$n.toml" --data-dir "$cluster_dir/node$n" \
            "${tls_flags[@]}" </dev/null >>"$log" 2>&1 &
        echo $! >"$cluster_dir/node$n.pid"
    )
    echo "==> started node $n (pid $(cat "$cluster_dir/node$n.pid")), log $log" >&2
done

echo "==> waiting up to ${timeout_s}s for a leader and three voters" >&2
deadline=$(($(date +%s) + timeout_s))
# With tokens a node's certificate alone does not make it a member: the admin
# adds nodes 2 and 3 through node 1 (as etcd's `member add`), and their own
# --join then makes them voters. Adding a member again is a no-op.
members_added=$((1 - tls))
while :; do
    if ((!members_added)); then
        members_added=1
        for n in "${nodes[@]:1}"; do
            timeout 15 "$swarmctl" --endpoints "${addrs[1]}" node add "$n" "${addrs[$n]}" \
                ${peers[$n]:+--peer-addr "${peers[$n]}"} --learner >/dev/null 2>&1 || members_added=0
        done
    fi
    for n in "${nodes[@]}"; do
        if ! node_pid "$n" >/dev/null; then
            echo "error: node $n exited during start-up" >&2
            rm -f "$cluster_dir/node$n.pid"
            print_log_tails
            echo "stop the other nodes with scripts/cluster-down.sh" >&2
            exit 1
        fi
    done
    if leader="$(cluster_leader)"; then
        break
    fi
    if [[ $(date +%s) -ge $deadline ]]; then
        echo "error: the cluster did not become healthy within ${timeout_s}s" >&2
        for n in "${nodes[@]}"; do
            echo "node $n says: $(timeout 5 "$swarmctl" --endpoints "${addrs[$n]}" cluster status -o json 2>&1 | tr -s ' \n' ' ')" >&2
        done
        print_log_tails
        echo "the nodes are still running; stop them with scripts/cluster-down.sh" >&2
        exit 1
    fi
    sleep 0.2
done

cat <<EOF

Swarm cluster is up: leader node $leader, 3 voters.
  healthy $(elapsed_since "$launched") after launch, $(elapsed_since "$script_started") after cluster-up.sh started (build included)

  node  endpoint         dashboard and /metrics    pid      log
EOF
scheme=http
((tls)) && scheme=https
for n in "${nodes[@]}"; do
    printf '  %-4s  %-15s  %-24s  %-7s  %s\n' "$n" "${addrs[$n]}" \
        "${https[$n]:+$scheme://${https[$n]}/}" "$(cat "$cluster_dir/node$n.pid")" \
        "$cluster_dir/node$n.log"
done
sample="cluster/workflows/parallel-analysis.yaml"
echo
echo "==> running the sample workflow $sample"
echo "    (its analyses need node 2's 'analysis' capability and its aggregate node 3's 'gpu',"
echo "     so the run is handed from node to node; its journal in Raft carries it along)"
if ! (cd "$root" && "$swarmctl" workflow run "$sample" --input dataset=sales --wait --timeout 60s); then
    echo "error: the sample workflow did not succeed" >&2
    print_log_tails
    exit 1
fi

if ((tls)); then
    cat <<EOF

TLS is on: every node serves TLS, nodes reach each other over mutual TLS, and
every call needs a token (certificates, the tokens file and the admin token in
$tls_dir; more tokens: swarmctl token create, then SIGHUP the nodes).
Point swarmctl at it with:

export SWARM_CA=$tls_dir/ca.pem
export SWARM_TOKEN=\$(cat $tls_dir/admin.token)
export SWARM_ENDPOINTS=$endpoints
EOF
fi

cat <<EOF

  data:      $cluster_dir/node{1,2,3}/
  endpoints: SWARM_ENDPOINTS=$endpoints  (swarmctl's default)
  dashboard: ${https[1]:+$( ((tls)) && echo "https://${https[1]}/?token=\$SWARM_TOKEN" || echo "http://${https[1]}/")}  (every node serves one; /metrics for Prometheus)

Next, try:
  target/release/swarmctl workflow run cluster/workflows/aps-coordination.yaml \\
      --input process_file_path=cluster/workflows/samples/onboarding.aps --input agent_id=agent-7 --wait
  target/release/swarmctl work watch <ID> --from-start
  target/release/swarmctl claims list
  target/release/swarmctl cluster status
  target/release/swarmctl top                  # live view of the cluster and queues
  target/release/swarmctl work submit --type build --payload '{"repo":"swarm"}' -o json
  target/release/swarmctl work claim --agent me --type build --lease 30s -o json
  target/release/swarmctl work complete <ID> --token <TOKEN> --result '{"ok":true}'
  target/release/swarmctl work get <ID> -o json
  target/release/swarmctl work list
  scripts/cluster-down.sh      # stop; data is kept for the next cluster-up.sh
EOF
