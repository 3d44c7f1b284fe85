#!/usr/bin/env bash
# Scale: one real agent (node1 of a one-node lab, TLS as by default) and a coordinator against a
# simulated cluster: NODES node records with PER_NODE endpoints each on NETWORKS networks,
# written straight into etcd under the nodes' leases by `shibafu-sim`, then churned at CHURN
# changes a second for SECS seconds. The agent has one real container on network scale0 (one
# of the simulated ones), so it builds and answers everything a node of such a cluster would.
#
# Measured: the time to write the cluster and for the agent to answer its last name
# (settle), the agent's resident memory, its CPU share during the churn, the latency from an
# endpoint's etcd write to the agent's DNS answer (a new name every 100 ms during the churn,
# queried from the container), and the agent's start-up into that cluster (start to the first
# answer of a simulated name, from the container) with its resident memory then and 10 s
# later (once the listing's transient copies are freed). From the agent's /metrics, scraped when the
# churn starts and when it ends: its DNS record updates (shibafu_dns_update_duration_seconds)
# and its dataplane passes for cluster changes (shibafu_reconcile_duration_seconds, kind
# change) during the churn: count, mean, and the bucket bounds holding the median and p99.
#
# Usage (repo root, as root): bench/scale.sh [NODES 100] [PER_NODE 100] [NETWORKS 50] [CHURN 100] [SECS 30]
#   NO_BUILD=1   skip `cargo build --release` (binaries must be in target/release)
# Everything runs in the lab's namespaces; the lab and the temp dir are removed at the end.
set -euo pipefail
NODES=${1:-100} PER_NODE=${2:-100} NETWORKS=${3:-50} CHURN=${4:-100} SECS=${5:-30}
LAB=scale$((RANDOM % 1000)) W=$(mktemp -d) LAB_STARTED=
cleanup() {
  if [ -n "$LAB_STARTED" ]; then "$W/bin/shibafu-lab" --name "$LAB" down >"$W/down.log" 2>&1 || cat "$W/down.log" >&2; fi
  rm -rf "$W"
}
trap cleanup EXIT
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --workspace --bins >/dev/null
fi
. bench/lab-lib.sh
lab_bench_up 1
cp target/release/shibafu-sim "$W/bin/"
on node1 "$W/bin/shibafu" network create scale0 10.100.0.0/16 >/dev/null
on node1 "$W/bin/shibafu" run -d --name c1 --network scale0 -- sleep 3600 >/dev/null
NETNS=$(on node1 "$W/bin/shibafu" ps --format json | python3 -c 'import json,sys; print([c for c in json.load(sys.stdin) if c["name"]=="c1"][0]["netns"])')
agent_pid() { "${LABCMD[@]}" status --json | python3 -c 'import json,sys; print([c for c in json.load(sys.stdin)["components"] if c["name"]=="node1"][0]["pid"])'; }
PID=$(agent_pid)
echo "agent pid $PID, probe namespace $NETNS; writing $((NODES * PER_NODE)) endpoints" >&2
HOLD=${HOLD:-120}
ip netns exec "sf-$LAB-node1" "$W/bin/shibafu-sim" --etcd "$ETCD" \
  --tls-ca "$SHIBAFU_TLS_CA" --tls-cert "$SHIBAFU_TLS_CERT" --tls-key "$SHIBAFU_TLS_KEY" \
  --nodes "$NODES" --per-node "$PER_NODE" --networks "$NETWORKS" --churn "$CHURN" --secs "$SECS" \
  --probe-netns "$NETNS" --agent-pid "$PID" --hold "$HOLD" >"$W/figures.json" 2>"$W/sim.log" &
SIM=$!
METRICS=$("${LABCMD[@]}" status --json | python3 -c 'import json,sys; print([c for c in json.load(sys.stdin)["components"] if c["name"]=="node1"][0]["metrics"])')
for ((i = 0; i < 600; i++)); do grep -q churning "$W/sim.log" && break; kill -0 $SIM 2>/dev/null || break; sleep 0.2; done
ip netns exec "sf-$LAB-node1" curl -sf --max-time 5 "$METRICS" >"$W/before.prom" || echo "cannot scrape $METRICS" >&2
for ((i = 0; i < 600; i++)); do [ -s "$W/figures.json" ] && break; kill -0 $SIM 2>/dev/null || break; sleep 1; done
[ -s "$W/figures.json" ] || { wait $SIM; cat "$W/sim.log" >&2; echo "the simulator gave no figures" >&2; exit 1; }
ip netns exec "sf-$LAB-node1" curl -sf --max-time 5 "$METRICS" >"$W/after.prom" || echo "cannot scrape $METRICS" >&2
# Start-up into the cluster: stop the agent, start it, time until it answers a simulated name.
"${LABCMD[@]}" stop node1 >/dev/null
t0=$(date +%s.%N)
"${LABCMD[@]}" start node1 >/dev/null
startup=
for ((i = 0; i < HOLD * 10; i++)); do
  if nsenter --net="$NETNS" dig +short +time=1 +tries=1 @10.100.0.1 anchor.scale0.local 2>/dev/null | grep -q .; then
    startup=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { print a - b }'); break
  fi
  sleep 0.05
done
PID=$(agent_pid)
rss=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$PID/status")
sleep 10
rss_later=$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$PID/status")
wait $SIM
python3 - "$W/figures.json" "${startup:-nan}" "$rss" "$W/before.prom" "$W/after.prom" "$rss_later" <<'PY'
import json, re, sys
f = json.load(open(sys.argv[1]))
f["startup_s"] = float(sys.argv[2])
f["rss_mb_after_restart"] = float(sys.argv[3])
f["rss_mb_10s_after_restart"] = float(sys.argv[6])

def series(path, family, labels):
    # bucket bound -> cumulative count, plus sum and count, of one histogram series.
    out = {"buckets": {}, "sum": 0.0, "count": 0.0}
    try:
        text = open(path).read()
    except OSError:
        return out
    for line in text.splitlines():
        m = re.match(r'^' + family + r'_(bucket|sum|count)(\{[^}]*\})? (\S+)$', line)
        if not m or any(l not in (m.group(2) or "") for l in labels):
            continue
        kind, value = m.group(1), float(m.group(3))
        if kind == "bucket":
            le = re.search(r'le="([^"]+)"', m.group(2)).group(1)
            out["buckets"][float(le)] = value
        else:
            out[kind] = value
    return out

def during(family, labels=()):
    a, b = series(sys.argv[4], family, labels), series(sys.argv[5], family, labels)
    n = b["count"] - a["count"]
    if n <= 0:
        return {"count": 0}
    cum = sorted((le, b["buckets"][le] - a["buckets"].get(le, 0.0)) for le in b["buckets"])
    at = lambda q: next((le for le, c in cum if c >= q * n), float("inf")) * 1000
    return {"count": int(n), "mean_ms": round((b["sum"] - a["sum"]) / n * 1000, 3),
            "p50_le_ms": at(0.5), "p99_le_ms": at(0.99)}

f["dns_update"] = during("shibafu_dns_update_duration_seconds")
f["dataplane_change_pass"] = during("shibafu_reconcile_duration_seconds", ['kind="change"'])
print(json.dumps(f))
PY
