#!/usr/bin/env bash
# Service failover and recovery: how long after an instance's server stops (the container keeps
# running) until no node's DNS (and no coordinator's) lists it, and after it starts again until
# every one lists it again; REPS repetitions in a 3-node lab.
#
# Usage (repo root, as root): bench/failover.sh [REPS, default 20]
#   NO_BUILD=1   skip `cargo build --release` (binaries must be in target/release)
#   LAB=NAME     lab name (default bfail)
#   INTERVAL=1s FALL=2 RISE=2   the health check of service web (tcp 80)
#
# How: service web (port 80, --health-tcp 80) with instances web1..web3, one per node; each runs
# `busybox httpd` in a loop that skips the server while a flag file exists. One poller per DNS
# server (the gateway of each node, inside that node; each coordinator's DNS address if the lab
# has `dns` fields in its status) asks SRV _http._tcp.web.fo.local every 10 ms and prints the
# time web1 leaves and comes back. Stop = create the flag and kill httpd in web1 (shibafu exec);
# start = remove the flag. Failover = the last server to drop web1 minus the stop; recovery
# likewise. The trap takes the lab down on any exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=${1:-20}
LAB=${LAB:-bfail}
INTERVAL=${INTERVAL:-1s}
FALL=${FALL:-2}
RISE=${RISE:-2}
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
case $REPS in '' | *[!0-9]*) echo "REPS must be a number" >&2; exit 1 ;; esac
[ "$REPS" -ge 1 ] && [ "$REPS" -le 200 ] || { echo "REPS must be 1..200" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --bins
W=$(mktemp -d /tmp/sfbfail.XXXX)
chmod 755 "$W"
LAB_STARTED=
POLLERS=()
cleanup() {
  local rc=$? p
  for p in "${POLLERS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "$LAB_STARTED" ]; then "$W/bin/shibafu-lab" --name "$LAB" down >"$W/down.log" 2>&1 || cat "$W/down.log" >&2; fi
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. bench/lab-lib.sh
lab_bench_up 3
SH="$W/bin/shibafu"
on node1 "$SH" network create fo 10.76.0.0/24 >/dev/null
on node1 "$SH" service create web --network fo --port 80 --health-tcp 80 \
  --health-interval "$INTERVAL" --health-fall "$FALL" --health-rise "$RISE" >/dev/null
for i in 1 2 3; do
  mkdir -p "$W/www$i"; echo "web$i" >"$W/www$i/index.html"
  on "node$i" "$SH" run -d --name "web$i" --network fo --service web -- sh -c \
    "while :; do [ -e $W/stop$i ] || busybox httpd -f -p 80 -h $W/www$i; sleep 0.02; done" >/dev/null
done

cat >"$W/poll.py" <<'PY'
# poll.py SERVER[:PORT] LABEL: prints "<unix time> <label> up|down" whenever web1's presence in
# the SRV answer changes (every 10 ms; 200 ms timeout per try). Stops on SIGTERM.
import socket, struct, sys, time
host, _, port = sys.argv[1].partition(":")
label = sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.2)
s.connect((host, int(port or 53)))
name = b"".join(bytes([len(p)]) + p.encode() for p in "_http._tcp.web.fo.local".split(".")) + b"\0"
qid, state = 0, None
while True:
    qid = (qid + 1) & 0xFFFF
    s.send(struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 33, 1))
    try:
        r = s.recv(4096)
        up = b"\x04web1" in r[12 + len(name) + 4:]
        if up != state:
            state = up
            sys.stdout.write(f"{time.time():.4f} {label} {'up' if up else 'down'}\n")
            sys.stdout.flush()
    except (socket.timeout, ConnectionRefusedError):
        pass  # no answer yet (a server not listening yet answers with ICMP: refused)
    time.sleep(0.01)
PY
for i in 1 2 3; do
  on "node$i" python3 "$W/poll.py" 10.76.0.1 "node$i" >"$W/events.node$i" & POLLERS+=($!)
done
servers=3
for dns in $("${LABCMD[@]}" status --json | sed -n 's/.*"dns": *"\([^"]*\)".*/\1/p'); do
  ip netns exec "sf-$LAB-ctl" python3 "$W/poll.py" "$dns" "coord-$dns" >"$W/events.$dns" & POLLERS+=($!)
  servers=$((servers + 1))
done

# wait_all STATE SINCE: the time the last server reported STATE after SINCE (10 s at most).
wait_all() {
  local want=$1 since=$2 i
  for ((i = 0; i < 1000; i++)); do
    local last
    last=$(awk -v s="$since" -v w="$want" '$1 > s { st[$2] = $3; t[$2] = $1 } END {
      n = 0; m = 0; for (k in st) if (st[k] == w) { n++; if (t[k] > m) m = t[k] } print n, m }' "$W"/events.*)
    if [ "${last%% *}" -ge "$servers" ]; then echo "${last#* }"; return 0; fi
    sleep 0.01
  done
  echo "timeout after $want since $since: $(awk -v s="$since" '$1 > s' "$W"/events.* | tr '\n' ';')" >&2
  echo "timeout"; return 1
}
wait_all up 0 >/dev/null
: >"$W/failover"; : >"$W/recovery"
for ((r = 1; r <= REPS; r++)); do
  t0=$EPOCHREALTIME
  touch "$W/stop1"
  on node1 "$SH" exec web1 pkill -f "^busybox httpd" >/dev/null 2>&1 || true
  t=$(wait_all down "$t0") && awk -v a="$t" -v b="$t0" 'BEGIN { printf "%.1f\n", (a - b) * 1000 }' >>"$W/failover"
  t1=$EPOCHREALTIME
  rm -f "$W/stop1"
  t=$(wait_all up "$t1") && awk -v a="$t" -v b="$t1" 'BEGIN { printf "%.1f\n", (a - b) * 1000 }' >>"$W/recovery"
  sleep 0.$((RANDOM % 9 + 1))
done
stats() {
  sort -n "$2" | awk -v what="$1" '{ v[NR] = $1 } END {
    if (NR == 0) { print what, "no samples"; exit }
    printf "%-9s n=%d min=%.0f p50=%.0f p90=%.0f p99=%.0f max=%.0f ms\n", what, NR, v[1],
      v[int((NR - 1) * 0.5) + 1], v[int((NR - 1) * 0.9) + 1], v[int((NR - 1) * 0.99) + 1], v[NR] }'
}
echo "# failover, $REPS reps, check tcp every $INTERVAL, fall $FALL, rise $RISE, $servers DNS servers, $(date -u +%FT%TZ), $(git rev-parse --short HEAD)$(git diff --quiet || echo +dirty), load $(cut -d' ' -f1-3 /proc/loadavg)"
stats failover "$W/failover"
stats recovery "$W/recovery"
