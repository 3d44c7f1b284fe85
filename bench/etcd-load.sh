#!/usr/bin/env bash
# The etcd load a cluster causes, read from etcd's own /metrics: a lab of NODES nodes (TLS, as
# by default) with network `load` and one container on every node (so every agent builds the
# network), then K containers started on node1 one after the other, then removed. Printed per
# container start and per removal, with the idle background (leases, health, counters, measured
# over 10 s first) taken out: etcd writes (puts, deletes, transactions), watch events sent, and
# bytes etcd sent to its clients; also the watchers etcd holds. Run it for several sizes to see
# how each grows with the nodes:
#
#   for n in 1 2 3 5; do NO_BUILD=1 bench/etcd-load.sh $n 10; done
#
# Usage (repo root, as root): bench/etcd-load.sh [NODES 3] [K 10]
#   NO_BUILD=1   skip `cargo build --release` (binaries must be in target/release)
# Everything runs in the lab's namespaces; the lab and the temp dir are removed at the end.
set -euo pipefail
NODES=${1:-3} K=${2:-10}
LAB=etcdload$((RANDOM % 1000)) W=$(mktemp -d) LAB_STARTED=
cleanup() {
  if [ -n "$LAB_STARTED" ]; then "$W/bin/shibafu-lab" --name "$LAB" down >"$W/down.log" 2>&1 || cat "$W/down.log" >&2; fi
  rm -rf "$W"
}
trap cleanup EXIT
if [ -z "${NO_BUILD:-}" ]; then
  cargo build --release --workspace --bins >/dev/null
fi
. bench/lab-lib.sh
lab_bench_up "$NODES"
ETCD1=${ETCD%%,*}
scrape() {
  ip netns exec "sf-$LAB-node1" curl -sf --max-time 5 --cacert "$SHIBAFU_TLS_CA" \
    --cert "$SHIBAFU_TLS_CERT" --key "$SHIBAFU_TLS_KEY" "${ETCD1%/}/metrics" >"$W/$1.prom"
  date +%s.%N >"$W/$1.t"
}
run() { on "$1" "$W/bin/shibafu" run -d --name "$2" --network load -- sleep 3600 >/dev/null; }
on node1 "$W/bin/shibafu" network create load 10.120.0.0/16 >/dev/null
for n in $(seq 1 "$NODES"); do run "node$n" "base$n"; done
sleep 3
scrape idle0
sleep 10
scrape idle1
for i in $(seq 1 "$K"); do run node1 "c$i"; done
sleep 2
scrape started
for i in $(seq 1 "$K"); do on node1 "$W/bin/shibafu" rm -f "c$i" >/dev/null; done
sleep 2
scrape removed
python3 - "$W" "$NODES" "$K" <<'PY'
import json, sys
w, nodes, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
NAMES = {"puts": "etcd_mvcc_put_total", "deletes": "etcd_mvcc_delete_total",
         "txns": "etcd_mvcc_txn_total", "watch_events": "etcd_debugging_mvcc_events_total",
         "sent_bytes": "etcd_network_client_grpc_sent_bytes_total"}
def read(name):
    vals = {}
    for line in open(f"{w}/{name}.prom"):
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            vals[parts[0]] = float(parts[1])
    return vals, float(open(f"{w}/{name}.t").read())
(i0, t0), (i1, t1) = read("idle0"), read("idle1")
(s, ts), (r, tr) = read("started"), read("removed")
rate = {k2: (i1[m] - i0[m]) / (t1 - t0) for k2, m in NAMES.items()}
def per(a, ta, b, tb):
    return {k2: round((b[m] - a[m] - rate[k2] * (tb - ta)) / k, 1) for k2, m in NAMES.items()}
print(json.dumps({
    "nodes": nodes, "containers": k,
    "watchers": s.get("etcd_debugging_mvcc_watcher_total"),
    "idle_per_s": {k2: round(v, 1) for k2, v in rate.items()},
    "per_start": per(i1, t1, s, ts),
    "per_removal": per(s, ts, r, tr),
}))
PY
