#!/usr/bin/env bash
# Throughput of service names: every name of the DNS benchmark holds 10 addresses and is
# answered like a service (one address per answer, chosen by the policy), weighted and
# least-connections, next to the anchors and the `limit` answerer of
# ../shared/bench/dns-anchors.sh in the same run, same queries, same dnsperf load.
#
# Usage: bench/dns-service.sh [seconds per server, default 8]
#   ANCHORS=... path of dns-anchors.sh (default: ../shared/bench/dns-anchors.sh from the repo root)
# Needs root (network namespace); the harness installs dnsperf and the anchor servers itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${1:-8}
ANCHORS=${ANCHORS:-$ROOT/../shared/bench/dns-anchors.sh}
cd "$ROOT"
cargo build --release -p shibafu-agent
W=$(mktemp -d /tmp/sfbdnssvc.XXXX)
trap 'rm -rf "$W"' EXIT
chmod 755 "$W"
# One server: every name of $RECORDS (exported by the harness) gets 10 addresses.
cat >"$W/serve.sh" <<EOS
#!/usr/bin/env bash
port=\$1; shift
awk '{ for (k = 0; k < 10; k++) printf "%s A 10.%d.%d.%d\n", \$1, k, int(NR / 250), NR % 250 + 1 }' "\$RECORDS" >"\$RECORDS.\$port"
exec $ROOT/target/release/shibafu-agent dns --listen 127.0.0.1:\$port --zone backend.local --records "\$RECORDS.\$port" "\$@"
EOS
chmod +x "$W/serve.sh"
bash "$ANCHORS" "$SECS" \
  "weighted|5401|$W/serve.sh 5401 --balance weighted --weights 1000,500,300,200,100,50,20,10,5,1" \
  "leastconn|5402|$W/serve.sh 5402 --balance least-connections --connections 3,0,1,0,2,0,5,0,0,4"
