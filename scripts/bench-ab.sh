#!/usr/bin/env bash
# Two swarmd builds, A and B, under the same claim workload, interleaved:
#
#   scripts/bench-ab.sh A_SWARMD B_SWARMD [--rounds N] [--clients N] [--duration D]
#                       [--a-flags "FLAGS"] [--fill N] [--a-ca CA_PEM]
#
# For each round (default 5) it starts a fresh three-node cluster of A on
# 127.0.0.1:7101..7103 (node 1 bootstraps, nodes 2 and 3 join it; data in a
# temp dir), runs `swarm-vs-etcd claims --system swarm` (default 64 clients
# for 10s), stops it, then does the same with B. Interleaving puts both
# builds under the same conditions however the machine's load drifts, which
# is what a cost of a few percent needs (e.g. what metrics cost: A = this
# tree, B = a worktree before them). Prints each round and the mean claims/s
# of each and their ratio. Only flags that every swarmd version has are
# passed, plus --a-flags to A's nodes (e.g. "--http-listen 127.0.0.1:810N",
# where N becomes the node's number). Every process started is stopped by
# its recorded PID.
#
# --fill N: after the claim run, N more items are submitted and claimed with
# 1 h leases (`swarm-vs-etcd fill`, as bench.sh's memory row does) and the
# largest VmRSS of the three nodes is reported too: the A/B of memory.
#
# --a-ca CA_PEM: A's cluster serves TLS (give its --tls-* flags in --a-flags,
# N for the node) and the load generator talks to it over TLS, checked
# against CA_PEM: the A/B of TLS, e.g.
#   --a-flags "--tls-cert D/node-N.pem --tls-key D/node-N.key --tls-ca D/ca.pem" --a-ca D/ca.pem
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
usage() {
    echo "usage: $0 A_SWARMD B_SWARMD [--rounds N] [--clients N] [--duration D] [--a-flags FLAGS] [--fill N] [--a-ca CA_PEM]" >&2
    exit 2
}
[[ $# -ge 2 ]] || usage
a="$1" b="$2"
shift 2
rounds=5 clients=64 duration=10s a_flags="" fill=0 a_ca=""
while [[ $# -gt 0 ]]; do
    case "$1" in
    --rounds) rounds="${2:?}"; shift ;;
    --clients) clients="${2:?}"; shift ;;
    --duration) duration="${2:?}"; shift ;;
    --a-flags) a_flags="${2:?}"; shift ;;
    --fill) fill="${2:?}"; shift ;;
    --a-ca) a_ca="${2:?}"; shift ;;
    *) usage ;;
    esac
    shift
done
for bin in "$a" "$b"; do
    [[ -x "$bin" ]] || { echo "error: $bin is not an executable swarmd" >&2; exit 2; }
done
vs="$root/target/release/swarm-vs-etcd"
[[ -x "$vs" ]] || {
    echo "error: $vs is missing: cargo build --release -p swarm-bench --bin swarm-vs-etcd" >&2
    exit 2
}
for port in 7101 7102 7103; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "error: 127.0.0.1:$port is in use; stop whatever listens there first" >&2
        exit 1
    fi
done

work="$(mktemp -d "${TMPDIR:-/tmp}/swarm-ab.XXXXXX")"
pids=()
stop_cluster() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}
trap 'stop_cluster; rm -rf "$work"' EXIT

# The load generator's flags for the running side: TLS for A with --a-ca.
vs_flags=()

# Starts a cluster of swarmd $1 in $2, with flags $3 (N = the node), and
# waits until a claim run can start.
start_cluster() {
    local bin="$1" dir="$2" flags="$3" n
    for n in 1 2 3; do
        local membership=(--join 127.0.0.1:7101)
        [[ $n -eq 1 ]] && membership=(--bootstrap)
        local extra=()
        [[ -n "$flags" ]] && read -r -a extra <<<"${flags//N/$n}"
        NO_COLOR=1 "$bin" --id "$n" --listen "127.0.0.1:710$n" --data-dir "$dir/node$n" \
            --capabilities exec "${membership[@]}" "${extra[@]}" >"$dir/node$n.log" 2>&1 &
        pids+=("$!")
    done
    # Ready once a short claim run goes through with no errors.
    for _ in $(seq 60); do
        if out="$("$vs" "${vs_flags[@]}" claims --system swarm --clients 3 --duration 300ms 2>/dev/null)" &&
            python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["errors"]==0 and r["claims"]>0 else 1)' "$out"; then
            return 0
        fi
        sleep 0.5
    done
    echo "error: the cluster of $bin did not come up; logs in $dir" >&2
    trap - EXIT
    stop_cluster
    exit 1
}

# The largest VmRSS of the running cluster's nodes, in MB.
max_rss_mb() {
    local pid kb max=0
    for pid in "${pids[@]}"; do
        kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")"
        ((kb > max)) && max=$kb
    done
    awk -v kb="$max" 'BEGIN { printf "%.1f", kb / 1024 }'
}

declare -A total=([A]=0 [B]=0) rss_total=([A]=0 [B]=0) lat_log=([A]="" [B]="")
if ((fill > 0)); then
    echo "| round | A claims/s (p50 / p99) | B claims/s (p50 / p99) | A max RSS MB | B max RSS MB |"
    echo "|---:|---:|---:|---:|---:|"
else
    echo "| round | A claims/s (p50 / p99) | B claims/s (p50 / p99) |"
    echo "|---:|---:|---:|"
fi
for r in $(seq "$rounds"); do
    row=() rss_row=()
    for side in A B; do
        bin="$a" flags="$a_flags" vs_flags=()
        [[ -n "$a_ca" ]] && vs_flags=(--swarm-ca "$a_ca")
        [[ $side == B ]] && bin="$b" flags="" vs_flags=()
        dir="$work/$side-$r"
        mkdir -p "$dir"
        start_cluster "$bin" "$dir" "$flags"
        out="$("$vs" "${vs_flags[@]}" claims --system swarm --clients "$clients" --duration "$duration")"
        rss=""
        if ((fill > 0)); then
            "$vs" "${vs_flags[@]}" fill --system swarm --count "$fill" >/dev/null
            sleep 2
            rss="$(max_rss_mb)"
            rss_total[$side]="$(awk -v a="${rss_total[$side]}" -v b="$rss" 'BEGIN { print a + b }')"
        fi
        stop_cluster
        rate="$(python3 -c 'import json,sys; print(round(json.loads(sys.argv[1])["per_s"]))' "$out")"
        total[$side]=$((total[$side] + rate))
        latency="$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["p50_ms"], r["p99_ms"])' "$out")"
        lat_log[$side]+="$latency;"
        row+=("$rate ($(echo "$latency" | awk '{printf "%.1f / %.1f ms", $1, $2}'))")
        rss_row+=("$rss")
    done
    if ((fill > 0)); then
        echo "| $r | ${row[0]} | ${row[1]} | ${rss_row[0]} | ${rss_row[1]} |"
    else
        echo "| $r | ${row[0]} | ${row[1]} |"
    fi
done
python3 - "${total[A]}" "${total[B]}" "$rounds" "${rss_total[A]}" "${rss_total[B]}" "$fill" "${lat_log[A]}" "${lat_log[B]}" <<'PY'
import sys
a, b, n = (int(x) for x in sys.argv[1:4])
ra, rb, fill = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
def lat(log):
    rows = [tuple(float(v) for v in r.split()) for r in log.split(";") if r.strip()]
    return sum(r[0] for r in rows) / len(rows), sum(r[1] for r in rows) / len(rows)
(a50, a99), (b50, b99) = lat(sys.argv[7]), lat(sys.argv[8])
print(f"\nmean claims/s: A {a / n:,.0f}, B {b / n:,.0f}; A/B = {a / b:.3f}")
print(f"mean claim latency p50 / p99, ms: A {a50:.2f} / {a99:.2f}, B {b50:.2f} / {b99:.2f}")
if fill:
    print(f"mean max RSS with {fill:,} more active claims, MB: A {ra / n:.1f}, B {rb / n:.1f}; A/B = {ra / rb:.3f}")
PY
