#!/usr/bin/env bash
# Authoritative DNS throughput of the coordinator (`shibafu-coordinator --dns-listen`) next to the
# anchors of ../shared/bench/dns-anchors.sh (the C `limit` answerer, unbound, nsd, knot, dnsmasq,
# aardvark-dns) and the standalone engine (`shibafu-agent dns`, as bench/dns.sh runs it), in one
# run: the same 1000 names c<i>.backend.local, the same dnsperf load, the same private namespace.
# The coordinator reads them from etcd, as network `backend` (172.22.0.0/22) with 1000 endpoints,
# through the projection every agent uses (cluster-wide view, its own SOA/NS).
#
# Usage: bench/coordinator-dns.sh [seconds per server, default 8]
#   ANCHORS=... path of dns-anchors.sh (default: ../shared/bench/dns-anchors.sh from the repo root)
#   NO_BUILD=1  use target/release as it is
# Needs root (network namespaces), etcd and etcdctl; dns-anchors.sh installs dnsperf and the
# anchor servers itself.
#
# Steps: the release binaries are copied to a temp dir (a concurrent rebuild cannot change them
# mid-run); etcd is filled in a private namespace of this script (loopback only) and stopped;
# inside the anchors' namespace `bench/coordinator-dns.sh --serve DIR PORT` starts etcd on that
# data (loopback), then execs the coordinator. The anchors stop every process of their namespace
# when done; the EXIT trap removes the prepared namespace, stray processes and the temp dir.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ETCD_CLIENT=127.0.0.1:23790
ETCD_PEER=127.0.0.1:23800
API=127.0.0.1:7481
N=1000

# etcd on DIR/etcd, loopback only, in the background and not a child of the caller (the anchors
# count the CPU of the DNS server's children); the same member flags for fill and serve.
start_etcd() {
  (etcd --name bench --data-dir "$1/etcd" \
    --listen-client-urls "http://$ETCD_CLIENT" --advertise-client-urls "http://$ETCD_CLIENT" \
    --listen-peer-urls "http://$ETCD_PEER" --initial-advertise-peer-urls "http://$ETCD_PEER" \
    --initial-cluster "bench=http://$ETCD_PEER" >>"$1/etcd.log" 2>&1 &)
  local i
  for i in $(seq 100); do
    ETCDCTL_API=3 etcdctl --endpoints "$ETCD_CLIENT" endpoint health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "etcd did not start; see $1/etcd.log" >&2
  return 1
}

# The coordinator serving DNS on 127.0.0.1:PORT from the etcd above.
coordinator() {
  exec "$1/bin/shibafu-coordinator" --name bench --listen "$API" --etcd "http://$ETCD_CLIENT" \
    --dns-listen "127.0.0.1:$2"
}

if [ "${1:-}" = "--serve" ]; then
  start_etcd "$2"
  coordinator "$2" "$3"
fi

SECS=${1:-8}
ANCHORS=${ANCHORS:-$ROOT/../shared/bench/dns-anchors.sh}
cd "$ROOT"
[ -n "${NO_BUILD:-}" ] || cargo build --release -p shibafu-coordinator -p shibafu-agent
W=$(mktemp -d /tmp/sfcoorddns.XXXX)
PREP=sfcoordprep$$
MARK=SHIBAFU_BENCH_MARK=$$
cleanup() {
  local p
  for p in $(ip netns pids "$PREP" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  # Processes of this run that outlived the anchors' namespace (found by their mark, by pid).
  for p in $(grep -lz "^$MARK\$" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); do
    [ "$p" != $$ ] && kill "$p" 2>/dev/null || true
  done
  sleep 0.5
  ip netns del "$PREP" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
mkdir "$W/bin"
cp target/release/shibafu-coordinator target/release/shibafu-agent "$W/bin/"

# Fill etcd in a namespace of our own: the network, then the endpoints, 100 per transaction.
ip netns add "$PREP"
ip -n "$PREP" link set lo up
export ETCDCTL_API=3
ip netns exec "$PREP" bash -c "$(declare -f start_etcd); ETCD_CLIENT=$ETCD_CLIENT ETCD_PEER=$ETCD_PEER start_etcd $W"
ctl() { ip netns exec "$PREP" etcdctl --endpoints "$ETCD_CLIENT" "$@"; }
ctl put /shibafu/v1/networks/backend \
  '{"schema":1,"name":"backend","subnet":"172.22.0.0/22","vni":4096,"zone":"backend.local","internal":false}' >/dev/null
for b in $(seq 0 $((N / 100 - 1))); do
  {
    echo
    for i in $(seq $((b * 100)) $((b * 100 + 99))); do
      o3=$((i / 250)); o4=$((i % 250 + 2))
      mac=$(printf '02:00:ac:16:%02x:%02x' $o3 $o4)
      v="{\"schema\":1,\"id\":\"c$i\",\"network\":\"backend\",\"name\":\"c$i\",\"node\":\"bench\",\"ipv4\":\"172.22.$o3.$o4\",\"mac\":\"$mac\"}"
      printf 'put /shibafu/v1/endpoints/backend/c%d "%s"\n' "$i" "${v//\"/\\\"}"
    done
    echo
    echo
  } | ctl txn >/dev/null
done
ENDPOINTS=$(ctl get --prefix /shibafu/v1/endpoints/backend/ --keys-only | grep -c .)
[ "$ENDPOINTS" = "$N" ] || { echo "wrote $ENDPOINTS endpoints, not $N" >&2; exit 1; }
# Check that a coordinator serves them, then stop it and etcd (the data stays in $W/etcd).
ip netns exec "$PREP" env "$MARK" bash -c "$(declare -f coordinator); API=$API ETCD_CLIENT=$ETCD_CLIENT coordinator $W 5398" \
  >"$W/prep-coordinator.log" 2>&1 &
for i in $(seq 100); do
  got=$(ip netns exec "$PREP" dig +short +time=1 +tries=1 @127.0.0.1 -p 5398 c999.backend.local A 2>/dev/null || true)
  [ "$got" = "172.22.3.251" ] && break
  sleep 0.2
done
[ "$got" = "172.22.3.251" ] || { echo "the coordinator does not answer c999.backend.local" >&2; cat "$W/prep-coordinator.log" >&2; exit 1; }
for p in $(ip netns pids "$PREP"); do kill "$p" 2>/dev/null || true; done
for i in $(seq 50); do [ -z "$(ip netns pids "$PREP")" ] && break; sleep 0.1; done

uptime
env "$MARK" bash "$ANCHORS" "$SECS" \
  "coordinator|5398|bash $ROOT/bench/coordinator-dns.sh --serve $W 5398" \
  "engine|5399|$W/bin/shibafu-agent dns --listen 127.0.0.1:5399 --zone backend.local --records \$RECORDS"
uptime
