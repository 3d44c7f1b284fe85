#!/usr/bin/env bash
# Forwarding with a warm cache: shibafu's standalone DNS server (`shibafu-agent dns --forward`)
# beside unbound and dnsmasq as forwarders, all in front of the same upstream (nsd), one run, in a
# network namespace of its own (../shared/bench/dns-forward-anchors.sh does that set-up, installs
# dnsperf, unbound and nsd on first use, and removes everything afterwards).
# Then the same workload once more against shibafu alone, in a second namespace, to read its own
# counters: cache hits and misses, upstream queries (the cache-hit behaviour).
#
# Usage (as root, from anywhere): bench/dns-forward.sh [seconds]
# Environment: N (distinct names, default 1000). Results: docs/bench-dns-forward.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
N=${N:-1000}
export N
ANCHORS=../shared/bench/dns-forward-anchors.sh
[ -f "$ANCHORS" ] || { echo "missing $ANCHORS (run from the shibafu checkout next to shared/)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root: the benchmark makes network namespaces" >&2; exit 1; }
cargo build --release -p shibafu-agent
BIN=$PWD/target/release/shibafu-agent
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo nogit)$(git diff --quiet 2>/dev/null || echo +dirty), ${SECS}s per server, N=$N, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. Side by side with the anchors. $UPSTREAM (127.0.0.1:5310) is set by the anchors script.
bash "$ANCHORS" "$SECS" \
  "shibafu|5398|$BIN dns --listen 127.0.0.1:5398 --zone unrelated.test --records /dev/null --forward \$UPSTREAM"

# 2. Cache-hit behaviour: the same names and dnsperf settings; the upstream is a shibafu
#    authoritative server for example.test; SIGUSR1 makes the forwarder log its counters.
NS=sfdnsfwdc$$
W=$(mktemp -d /tmp/dnsfwdc.XXXX)
pids=()
cleanup() {
  for p in "${pids[@]}" $(ip netns pids "$NS" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link set lo up
: > "$W/records"; : > "$W/queries"
for i in $(seq 0 $((N - 1))); do
  echo "h$i.example.test 3600 A 10.9.$((i / 250)).$((i % 250 + 2))" >> "$W/records"
  echo "h$i.example.test A" >> "$W/queries"
done
ip netns exec "$NS" "$BIN" dns --listen 127.0.0.1:5320 --zone example.test --records "$W/records" \
  2> "$W/upstream.log" & pids+=($!)
ip netns exec "$NS" "$BIN" dns --listen 127.0.0.1:5398 --zone unrelated.test --records /dev/null \
  --forward 127.0.0.1:5320 2> "$W/forwarder.log" & pids+=($!)
fwd=$!
sleep 1
ip netns exec "$NS" dnsperf -s 127.0.0.1 -p 5398 -d "$W/queries" -n 1 -c 4 -q 200 > /dev/null 2>&1
out=$(ip netns exec "$NS" dnsperf -s 127.0.0.1 -p 5398 -d "$W/queries" -l "$SECS" -c 4 -q 200 2>&1)
kill -USR1 "$fwd"
sleep 0.5
echo "cache-hit run (shibafu alone, same workload):"
echo "$out" | grep -E 'Queries (sent|completed|lost)|Queries per second|Average Latency' | sed 's/^ */  /'
grep -hoE 'shibafu_dns_(forwarded_requests_total|cache_[a-z_]+|forward_(coalesced|requests|failures|timeouts|tcp_retries)_total)(\{[^}]*\})? [0-9]+' \
  "$W/forwarder.log" | sed 's/^/  /'
