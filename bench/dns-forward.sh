#!/usr/bin/env bash
# Forwarding with a warm cache: shibafu's standalone DNS server (`shibafu-agent dns --forward`)
# beside unbound and dnsmasq as forwarders, all in front of the same upstream (nsd), one run, in a
# network namespace of its own (../shared/bench/dns-forward-anchors.sh does the set-up, installs
# dnsperf, unbound and nsd on first use, and removes everything afterwards).
#
# Usage (as root, from anywhere): bench/dns-forward.sh [seconds]
# Environment: N (distinct names, default 1000), passed through to the anchors script.
# Results: docs/bench-dns-forward.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
ANCHORS=../shared/bench/dns-forward-anchors.sh
[ -f "$ANCHORS" ] || { echo "missing $ANCHORS (run from the shibafu checkout next to shared/)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root: the benchmark makes a network namespace" >&2; exit 1; }
cargo build --release -p shibafu-agent
BIN=$PWD/target/release/shibafu-agent
echo "# $(date -u +%FT%TZ) $(git rev-parse --short HEAD 2>/dev/null || echo nogit)$(git diff --quiet 2>/dev/null || echo +dirty), ${SECS}s per server, N=${N:-1000}, $(nproc) cores"
# $UPSTREAM is set by the anchors script inside the namespace (127.0.0.1:5310).
exec bash "$ANCHORS" "$SECS" \
  "shibafu|5398|$BIN dns --listen 127.0.0.1:5398 --zone unrelated.test --records /dev/null --forward \$UPSTREAM"
