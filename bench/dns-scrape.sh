#!/usr/bin/env bash
# The authoritative DNS benchmark of bench/dns.sh with shibafu three times in one run: as is
# ("shibafu"), with --metrics-listen and a scrape loop GETting /metrics every SCRAPE_EVERY
# seconds ("scraped"), and as is again ("shibafu-again"): the cost of being scraped is the
# difference between "scraped" and the two others, whose own difference is the noise of the run.
#
# Usage: bench/dns-scrape.sh [seconds per server, default 8]
#   SCRAPE_EVERY=S  seconds between scrapes (default 1; Prometheus scrapes every 15-60 s)
#   SCRAPES=N       most scrapes the loop makes (default 300); the harness's teardown ends it too
#   ANCHORS=...     path of dns-anchors.sh (default: ../shared/bench/dns-anchors.sh)
#   BASELINE=PATH   also run this shibafu-agent binary as "baseline" (e.g. one built from main
#                   before the metrics), to compare the answer path without any scraping
# Needs root (the harness's network namespace); everything stays on its loopback.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-8}
EVERY=${SCRAPE_EVERY:-1}
SCRAPES=${SCRAPES:-300}
ANCHORS=${ANCHORS:-$ROOT/../shared/bench/dns-anchors.sh}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"
cargo build --release -p shibafu-agent
AGENT=$TARGET/release/shibafu-agent
W=$(mktemp -d /tmp/dnsscrape.XXXX)
trap 'rm -rf "$W"' EXIT
# Runs inside the harness's namespace. The loop is detached (its parent exits), so its CPU is
# not counted as the server's; the server's own work answering scrapes is.
cat > "$W/scraped.sh" <<S
( for i in \$(seq $SCRAPES); do
    curl -sf -o /dev/null --max-time 2 http://127.0.0.1:9480/metrics && echo ok >> $W/scrapes
    sleep $EVERY
  done & )
exec $AGENT dns --listen 127.0.0.1:5398 --zone backend.local --records \$RECORDS --threads 1 \
  --metrics-listen 127.0.0.1:9480
S
extra=()
if [ -n "${BASELINE:-}" ]; then
  extra=("baseline|5397|$BASELINE dns --listen 127.0.0.1:5397 --zone backend.local --records \$RECORDS --threads 1")
fi
bash "$ANCHORS" "$SECS" "${extra[@]}" \
  "shibafu|5399|$AGENT dns --listen 127.0.0.1:5399 --zone backend.local --records \$RECORDS --threads 1" \
  "scraped|5398|bash $W/scraped.sh" \
  "shibafu-again|5396|$AGENT dns --listen 127.0.0.1:5396 --zone backend.local --records \$RECORDS --threads 1"
echo "scrapes answered during the run: $(wc -l < "$W/scrapes" 2>/dev/null || echo 0)"
