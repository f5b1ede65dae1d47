#!/usr/bin/env bash
# Swarm against etcd on one machine, and Swarm as a workflow engine.
#
#   scripts/bench.sh [--quick] [--json FILE]
#
# Installs etcd-server, and protoc for the build of the etcd client, from
# Debian's packages if they are missing, starts a three-node Swarm cluster
# (scripts/cluster-up.sh) and a three-member etcd cluster, both on 127.0.0.1
# with their data in one temp dir (the same disk), then measures:
#   claims     submit → claim → complete at 1, 8, 64, 256 clients, each client
#              on its own HTTP/2 connection (swarm-vs-etcd claims); also
#              against swarm-ceiling, the same calls and state machine over
#              the same gRPC stack from one process's memory (no Raft, no
#              fsync): the ceiling column
#   workflows  five-step no-op workflows at a steady offered rate
#              (swarm-vs-etcd workflows) and all submitted at once (swarm-load)
#   failover   SIGKILL of the leader under load, time to the first
#              acknowledged write (20 trials; 5 with --quick)
#   memory     VmRSS of every node/member with 100,000 active claims, on fresh clusters
#              (10,000 with --quick)
# and prints a markdown table on stdout (progress on stderr). Everything it
# started is stopped on exit, by recorded PID only.
#
# Environment: BENCH_KEEP=1 keeps the temp dir (logs, data) after the run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
quick=0
json_out=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --quick) quick=1 ;;
    --json)
        [[ $# -ge 2 ]] || { echo "usage: $0 [--quick] [--json FILE]" >&2; exit 2; }
        json_out="$2"
        shift
        ;;
    -h | --help)
        sed -n '2,24p' "$0"
        exit 0
        ;;
    *)
        echo "usage: $0 [--quick] [--json FILE]" >&2
        exit 2
        ;;
    esac
    shift
done

if [[ $quick -eq 1 ]]; then
    claim_secs=2s trials=5 fill_count=10000 wf_count=100 wf_rate=50 wf_secs=3s
else
    claim_secs=10s trials=20 fill_count=100000 wf_count=200 wf_rate=100 wf_secs=10s
fi
concurrencies=(1 8 64 256)

log() { echo "==> $*" >&2; }

# Debian packages: etcd itself, and protoc for the etcd-client crate's build
# (the `etcd` feature of swarm-bench).
packages=()
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    packages+=(etcd-server etcd-client)
fi
if ! command -v protoc >/dev/null; then
    packages+=(protobuf-compiler)
fi
if [[ ${#packages[@]} -gt 0 ]]; then
    log "installing ${packages[*]} (apt-get)"
    apt-get install -y "${packages[@]}" >&2 ||
        { apt-get update >&2 && apt-get install -y "${packages[@]}" >&2; }
fi

for port in 7101 7102 7103 7201 7202 7203 7401 2379 2380 22379 22380 32379 32380; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "error: 127.0.0.1:$port is in use; stop whatever listens there first" >&2
        exit 1
    fi
done

log "building swarm-vs-etcd (feature etcd), swarm-ceiling and swarm-load (release)"
(cd "$root" && cargo build --release -p swarm-bench --features etcd --bin swarm-vs-etcd --bin swarm-load --bin swarm-ceiling >&2)
vs="$root/target/release/swarm-vs-etcd"
ceiling="$root/target/release/swarm-ceiling"
load="$root/target/release/swarm-load"
swarmd="$root/target/release/swarmd"
swarmctl="$root/target/release/swarmctl"

work="$(mktemp -d /tmp/swarm-bench.XXXXXX)"
export SWARM_CLUSTER_DIR="$work/swarm"
mkdir -p "$SWARM_CLUSTER_DIR" "$work/etcd"
results="$work/results.jsonl"
: >"$results"

swarm_endpoints="127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103"
etcd_endpoints="127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379"
etcd_client_port=([1]=2379 [2]=22379 [3]=32379)
etcd_peer_port=([1]=2380 [2]=22380 [3]=32380)
etcd_initial="m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"

teardown() {
    local rc=$?
    log "tearing down"
    "$root/scripts/cluster-down.sh" >&2 2>/dev/null || true
    local m pid
    pid="$(cat "$work/ceiling.pid" 2>/dev/null)" || true
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -TERM "$pid" 2>/dev/null || true
    for m in 1 2 3; do
        pid="$(cat "$work/etcd/m$m.pid" 2>/dev/null)" || continue
        [[ "$pid" =~ ^[0-9]+$ ]] && kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.5
    for m in 1 2 3; do
        pid="$(cat "$work/etcd/m$m.pid" 2>/dev/null)" || continue
        [[ "$pid" =~ ^[0-9]+$ ]] && kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ "${BENCH_KEEP:-0}" == 1 || $rc -ne 0 ]]; then
        echo "logs and data kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap teardown EXIT

start_etcd_member() {
    local m=$1 c=${etcd_client_port[$1]} p=${etcd_peer_port[$1]}
    # Default settings (heartbeat 100ms, election 1000ms, WAL fdatasync per
    # batch); only addresses and data dir are given.
    nohup etcd --name "m$m" --data-dir "$work/etcd/m$m" \
        --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
        --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
        --initial-cluster "$etcd_initial" --initial-cluster-token swarm-bench \
        --initial-cluster-state new </dev/null >>"$work/etcd/m$m.log" 2>&1 &
    echo $! >"$work/etcd/m$m.pid"
    # Stopped by its recorded PID; disowned so bash does not report the kill.
    disown "$!" 2>/dev/null || true
}

etcd_healthy() {
    local i
    for i in $(seq 1 150); do
        if ETCDCTL_API=3 etcdctl --endpoints="$etcd_endpoints" --command-timeout=1s endpoint health >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "error: etcd did not become healthy" >&2
    tail -n 20 "$work"/etcd/m*.log >&2
    return 1
}

# The PID of the current etcd leader.
etcd_leader_pid() {
    local m
    m="$(ETCDCTL_API=3 etcdctl --endpoints="$etcd_endpoints" --command-timeout=2s endpoint status -w json 2>/dev/null |
        python3 -c '
import json, sys
for i, s in enumerate(json.load(sys.stdin)):
    st = s["Status"]
    if st["header"]["member_id"] == st["leader"]:
        print(i + 1)
        break
')"
    [[ -n "$m" ]] || return 1
    echo "$m $(cat "$work/etcd/m$m.pid")"
}

start_swarm_node() {
    local n=$1 dir="$SWARM_CLUSTER_DIR"
    (
        cd "$root"
        for var in $(compgen -e); do
            if [[ $var == SWARM_* && $var != SWARM_LOG ]]; then unset "$var"; fi
        done
        NO_COLOR=1 nohup "$swarmd" --config "$root/cluster/node$n.toml" --data-dir "$dir/node$n" \
            </dev/null >>"$dir/node$n.log" 2>&1 &
        echo $! >"$dir/node$n.pid"
    )
}

# Waits until all three Swarm nodes name one leader.
swarm_healthy() {
    local i
    for i in $(seq 1 150); do
        if python3 - "$swarmctl" <<'PY' 2>/dev/null; then
import json, subprocess, sys
leaders = set()
for a in ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]:
    out = subprocess.run([sys.argv[1], "--endpoints", a, "cluster", "status", "-o", "json"],
                         capture_output=True, timeout=5, check=True).stdout
    leaders.add(json.loads(out).get("leader_id"))
sys.exit(0 if len(leaders) == 1 and all(leaders) else 1)
PY
            return 0
        fi
        sleep 0.2
    done
    echo "error: the Swarm cluster did not become healthy" >&2
    return 1
}

swarm_leader_pid() {
    local l
    l="$(SWARM_ENDPOINTS="$swarm_endpoints" "$swarmctl" cluster status -o json |
        python3 -c "import json,sys; print(json.load(sys.stdin)['leader_id'])")"
    [[ "$l" =~ ^[0-9]+$ ]] || return 1
    echo "$l $(cat "$SWARM_CLUSTER_DIR/node$l.pid")"
}

log "starting the Swarm cluster in $SWARM_CLUSTER_DIR"
"$root/scripts/cluster-up.sh" >&2
log "starting the etcd cluster in $work/etcd"
for m in 1 2 3; do start_etcd_member "$m"; done
etcd_healthy
log "starting swarm-ceiling (no consensus, no disk) on 127.0.0.1:7401"
nohup "$ceiling" --listen 127.0.0.1:7401 </dev/null >>"$work/ceiling.log" 2>&1 &
echo $! >"$work/ceiling.pid"
disown "$!" 2>/dev/null || true
for _ in $(seq 1 50); do (exec 3<>/dev/tcp/127.0.0.1/7401) 2>/dev/null && break; sleep 0.1; done

# --- claims ---------------------------------------------------------------
# CPU ticks (user + system) used so far by the server processes of SYSTEM:
# what one loop costs them, summed over nodes/members, is reported beside
# the throughput (on 2 cores it is what bounds it).
server_pids() {
    case $1 in
    swarm) cat "$SWARM_CLUSTER_DIR"/node{1,2,3}.pid ;;
    etcd) cat "$work"/etcd/m{1,2,3}.pid ;;
    ceiling) cat "$work/ceiling.pid" ;;
    esac
}
cpu_ticks() {
    local t=0 p u s
    for p in $(server_pids "$1"); do
        read -r u s < <(awk '{print $14, $15}' "/proc/$p/stat")
        t=$((t + u + s))
    done
    echo "$t"
}
for n in "${concurrencies[@]}"; do
    for sys in swarm etcd ceiling; do
        log "claims: $sys, $n clients, $claim_secs"
        before="$(cpu_ticks "$sys")"
        out="$("$vs" claims --system "$sys" --clients "$n" --duration "$claim_secs")"
        after="$(cpu_ticks "$sys")"
        echo "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin); d["kind"] = "claims"
ticks, hz = int(sys.argv[2]) - int(sys.argv[1]), int(sys.argv[3])
d["cpu_us_per_loop"] = round(ticks / hz / d["claims"] * 1e6) if d["claims"] else None
print(json.dumps(d))' "$before" "$after" "$(getconf CLK_TCK)" >>"$results"
        tail -n1 "$results" >&2
    done
done

# --- workflows ------------------------------------------------------------
log "workflows: $wf_count five-step no-op workflows at once"
wf_line="$("$load" --endpoints "$swarm_endpoints" workflows --count "$wf_count" | tail -n1)"
echo "$wf_line" >&2
python3 - "$wf_line" "$wf_count" >>"$results" <<'PY'
import json, re, sys
m = re.search(r"= (\S+)/s; latency ms p50 (\S+) p99 (\S+)", sys.argv[1])
d = {"kind": "workflows", "count": int(sys.argv[2])}
if m:
    d.update(per_s=float(m.group(1)), p50_ms=float(m.group(2)), p99_ms=float(m.group(3)))
print(json.dumps(d))
PY

log "workflows: steady, $wf_rate/s for $wf_secs"
"$vs" workflows --rate "$wf_rate" --duration "$wf_secs" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); d["kind"]="workflows_steady"; print(json.dumps(d))' >>"$results"
tail -n1 "$results" >&2

# --- failover -------------------------------------------------------------
# One trial on SYSTEM (swarm|etcd): SIGKILL its leader under load, record the
# time to the first acknowledged write, bring the killed member back.
failover_trial() {
    local system=$1 t=$2 who="" pid="" out
    if [[ $system == swarm ]]; then
        read -r who pid < <(swarm_leader_pid) || true
    else
        read -r who pid < <(etcd_leader_pid) || true
    fi
    if [[ ! "$pid" =~ ^[0-9]+$ ]]; then
        echo "error: no $system leader found for trial $t" >&2
        exit 1
    fi
    log "failover $t/$trials: $system, SIGKILL leader $who (pid $pid)"
    if out="$("$vs" failover --system "$system" --kill-pid "$pid")"; then
        echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); d["kind"]="failover"; print(json.dumps(d))' >>"$results"
        tail -n1 "$results" >&2
    fi
    if [[ $system == swarm ]]; then
        start_swarm_node "$who"
        swarm_healthy
    else
        start_etcd_member "$who"
        etcd_healthy
    fi
    sleep 1
}

for t in $(seq 1 "$trials"); do
    failover_trial swarm "$t"
    failover_trial etcd "$t"
done

# --- memory ---------------------------------------------------------------
# On fresh clusters of both systems: what the RSS row measures is the memory
# 100,000 active claims take, not that of the finished items the phases above
# left behind (kept for the retention period) or of failover restarts.
log "memory: fresh clusters (stopping both, wiping their data)"
"$root/scripts/cluster-down.sh" >&2
for m in 1 2 3; do
    pid="$(cat "$work/etcd/m$m.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -TERM "$pid" 2>/dev/null || true
done
for m in 1 2 3; do
    pid="$(cat "$work/etcd/m$m.pid")"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    # A member still running after 10 s would write its data dir again
    # after it is wiped (seen: "member ... has already been bootstrapped").
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$work/etcd/m$m"
done
rm -rf "$SWARM_CLUSTER_DIR"/node1 "$SWARM_CLUSTER_DIR"/node2 "$SWARM_CLUSTER_DIR"/node3
"$root/scripts/cluster-up.sh" >&2
for m in 1 2 3; do start_etcd_member "$m"; done
etcd_healthy
rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
record_rss() {
    local phase=$1 n pid
    for n in 1 2 3; do
        pid="$(cat "$SWARM_CLUSTER_DIR/node$n.pid")"
        echo "{\"kind\":\"rss\",\"phase\":\"$phase\",\"system\":\"swarm\",\"member\":$n,\"mb\":$(rss_mb "$pid")}" >>"$results"
        pid="$(cat "$work/etcd/m$n.pid")"
        echo "{\"kind\":\"rss\",\"phase\":\"$phase\",\"system\":\"etcd\",\"member\":$n,\"mb\":$(rss_mb "$pid")}" >>"$results"
    done
}
record_rss before
for sys in swarm etcd; do
    log "memory: $sys, $fill_count items submitted and claimed with 1 h leases"
    "$vs" fill --system "$sys" --count "$fill_count" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); d["kind"]="fill"; print(json.dumps(d))' >>"$results"
    tail -n1 "$results" >&2
done
sleep 2
record_rss after

# --- report ---------------------------------------------------------------
python3 - "$results" "$json_out" "$quick" "$fill_count" "$trials" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json_out, quick, fill_count, trials = sys.argv[2], sys.argv[3] == "1", int(sys.argv[4]), int(sys.argv[5])

claims = []
by = {(r["system"], r["clients"]): r for r in rows if r["kind"] == "claims"}
for n in sorted({c for _, c in by}):
    s, e, c = by.get(("swarm", n), {}), by.get(("etcd", n), {}), by.get(("ceiling", n), {})
    sp, ep, cp = s.get("per_s", 0.0), e.get("per_s", 0.0), c.get("per_s", 0.0)
    claims.append({
        "clients": n, "swarm_per_s": round(sp, 1), "etcd_per_s": round(ep, 1),
        "ratio": round(sp / ep, 2) if ep else None,
        "ceiling_per_s": round(cp, 1), "of_ceiling": round(sp / cp, 2) if cp else None,
        "ceiling_p50_ms": c.get("p50_ms"),
        "cpu_us_per_loop": {k: r.get("cpu_us_per_loop") for k, r in (("swarm", s), ("etcd", e), ("ceiling", c))},
        "swarm_p50_ms": s.get("p50_ms"), "swarm_p99_ms": s.get("p99_ms"), "swarm_p999_ms": s.get("p999_ms"),
        "etcd_p50_ms": e.get("p50_ms"), "etcd_p99_ms": e.get("p99_ms"), "etcd_p999_ms": e.get("p999_ms"),
        "swarm_errors": s.get("errors"), "etcd_errors": e.get("errors"),
    })

fo = {}
for sys_ in ("swarm", "etcd"):
    v = sorted(r["ms"] for r in rows if r["kind"] == "failover" and r["system"] == sys_)
    fo[f"{sys_}_p50"] = round(statistics.median(v), 1) if v else None
    fo[f"{sys_}_max"] = round(max(v), 1) if v else None
    fo[f"{sys_}_trials"] = len(v)

rss = {}
for phase in ("before", "after"):
    for sys_ in ("swarm", "etcd"):
        rss[f"{sys_}_{phase}"] = [r["mb"] for r in rows if r["kind"] == "rss" and r["phase"] == phase and r["system"] == sys_]
fills = {r["system"]: r for r in rows if r["kind"] == "fill"}
wf = next((r for r in rows if r["kind"] == "workflows"), {})
wfs = next((r for r in rows if r["kind"] == "workflows_steady"), {})

out = {
    "quick": quick,
    "durability": {
        "swarm": "Raft log segment write + fdatasync on a majority before each acknowledged write",
        "etcd": "WAL fdatasync on a majority before each acknowledged write (etcd default)",
        "ceiling": "none: one process, state in memory, no Raft (swarm-ceiling)",
    },
    "claims": claims,
    "failover_ms": fo,
    "rss_mb_100k": {"swarm": max(rss["swarm_after"], default=None), "etcd": max(rss["etcd_after"], default=None),
                    "active_claims": fill_count, "per_member": rss},
    "fill": fills,
    "workflows": {"per_s": wf.get("per_s"), "p50_ms": wf.get("p50_ms"), "p99_ms": wf.get("p99_ms"),
                  "count": wf.get("count"), "mode": "all submitted at once (saturation)",
                  "steady": {k: wfs.get(k) for k in ("offered_per_s", "per_s", "p50_ms", "p99_ms", "completed", "failed")}},
}
if json_out:
    with open(json_out, "w") as f:
        json.dump(out, f, indent=2)

def f(x, d=1):
    return "—" if x is None else f"{x:,.{d}f}"

print(f"### Swarm vs etcd, claim workload (submit → claim → complete; claim latency){' — quick run' if quick else ''}\n")
print("| clients | Swarm claims/s | etcd claims/s | Swarm/etcd | Swarm p50 / p99 / p99.9 ms | etcd p50 / p99 / p99.9 ms "
      "| ceiling claims/s (p50 ms) | Swarm/ceiling |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in claims:
    print(f"| {c['clients']} | {f(c['swarm_per_s'], 0)} | {f(c['etcd_per_s'], 0)} | {f(c['ratio'], 2)}× "
          f"| {f(c['swarm_p50_ms'], 2)} / {f(c['swarm_p99_ms'], 2)} / {f(c['swarm_p999_ms'], 2)} "
          f"| {f(c['etcd_p50_ms'], 2)} / {f(c['etcd_p99_ms'], 2)} / {f(c['etcd_p999_ms'], 2)} "
          f"| {f(c['ceiling_per_s'], 0)} ({f(c['ceiling_p50_ms'], 2)}) | {f(c['of_ceiling'], 2)} |")
print()
print("| clients | server CPU per loop, µs (all nodes/members): Swarm | etcd | ceiling |")
print("|---:|---:|---:|---:|")
for c in claims:
    u = c["cpu_us_per_loop"]
    print(f"| {c['clients']} | {f(u['swarm'], 0)} | {f(u['etcd'], 0)} | {f(u['ceiling'], 0)} |")
print()
print("ceiling: swarm-ceiling, the same three calls and state machine over the same gRPC stack "
      "from one process's memory, with no Raft and no fsync; Swarm/ceiling is the share of it "
      "Swarm keeps with consensus and a majority's fdatasync.")
print()
print("| figure | Swarm | etcd |")
print("|---|---:|---:|")
print(f"| durability | {out['durability']['swarm']} | {out['durability']['etcd']} |")
print(f"| failover p50 / max, ms ({fo['swarm_trials']} / {fo['etcd_trials']} trials, default settings) "
      f"| {f(fo['swarm_p50'], 0)} / {f(fo['swarm_max'], 0)} | {f(fo['etcd_p50'], 0)} / {f(fo['etcd_max'], 0)} |")
sa, ea = rss["swarm_after"], rss["etcd_after"]
sb, eb = rss["swarm_before"], rss["etcd_before"]
mb = lambda v: " / ".join(f"{x:.0f}" for x in v) or "—"
held = lambda s: fills.get(s, {}).get("claimed", 0)
print(f"| RSS per node/member, MB, with ~{fill_count:,} active claims{' (reduced by --quick)' if quick else ''} "
      f"({held('swarm'):,} / {held('etcd'):,} claimed) | {mb(sa)} | {mb(ea)} |")
print(f"| (same, before the fill) | {mb(sb)} | {mb(eb)} |")
print(f"| workflows, 5 no-op steps, steady {wfs.get('offered_per_s')}/s offered: per s, p50 / p99 ms "
      f"| {f(wfs.get('per_s'), 0)}/s, {f(wfs.get('p50_ms'), 0)} / {f(wfs.get('p99_ms'), 0)} | n/a |")
print(f"| workflows, 5 no-op steps, {wf.get('count')} at once: per s, p50 / p99 ms "
      f"| {f(wf.get('per_s'), 0)}/s, {f(wf.get('p50_ms'), 0)} / {f(wf.get('p99_ms'), 0)} | n/a |")
PY
