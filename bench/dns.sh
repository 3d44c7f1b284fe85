#!/usr/bin/env bash
# Authoritative DNS throughput of `shibafu-agent dns` next to the anchors of
# ../shared/bench/dns-anchors.sh (unbound, nsd, knot, dnsmasq, aardvark-dns and the C `limit`
# answerer), in one run: same 1000 names, same dnsperf load, same private network namespace.
#
# Usage: bench/dns.sh [seconds per server, default 8]
#   THREADS=N   UDP threads (SO_REUSEPORT sockets) of shibafu, default 1
#   ANCHORS=... path of dns-anchors.sh (default: ../shared/bench/dns-anchors.sh from the repo root)
# Needs root (network namespace); installs dnsperf and the anchor servers itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-8}
THREADS=${THREADS:-1}
ANCHORS=${ANCHORS:-$ROOT/../shared/bench/dns-anchors.sh}
cd "$ROOT"
cargo build --release -p shibafu-agent
AGENT=$ROOT/target/release/shibafu-agent
bash "$ANCHORS" "$SECS" \
  "shibafu|5399|$AGENT dns --listen 127.0.0.1:5399 --zone backend.local --records \$RECORDS --threads $THREADS"
