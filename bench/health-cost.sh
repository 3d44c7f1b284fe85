#!/usr/bin/env bash
# CPU cost of health checks on one agent: N containers, instances of one service, each checked by
# TCP every INTERVAL_MS, measured as the agent's CPU time (utime + stime of /proc/PID/stat, all
# its threads) over SECONDS seconds, next to the same agent with the same instances unchecked.
#
# Usage (repo root, as root): bench/health-cost.sh [N containers, default 1000] [SECONDS, default 30]
#   NO_BUILD=1      skip `cargo build --release` (binaries must be in target/release)
#   INTERVAL_MS=MS  check interval (default 1000)
#   LAB=NAME        lab name (default bhealth)
#
# How: a one-node lab (etcd, coordinator and the agent each in a namespace of their own, nothing
# in the machine's namespace), network `bench` (10.79.0.0/16), service `web` (port 8080, no check
# yet), and N containers `c<i>` of it (`shibafu run -d --service web --port 8080 -- sleep 3600`).
# One small python process on the node listens on port 8080 inside every container's namespace
# (it enters each through /proc/<pid>/ns/net, binds, and comes back), accepting and closing:
# no process per instance, so the machine's load stays the agent's. Then:
#   1. baseline: the agent's CPU over SECONDS s with the instances registered and no check;
#   2. `web` gets a TCP check on 8080 (PUT /v1/services/bench/web); once every instance is
#      healthy (and 3 s more), the agent's CPU over SECONDS s, the accepts the listener saw (the
#      checks actually made) and the etcd revisions written meanwhile (records are written on
#      transitions only, so none are expected).
# Bounded: N <= 1000, SECONDS <= 120, every wait has a limit; the trap takes the lab down (every
# process, container and namespace it made) on any exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-1000}
SECS=${2:-30}
INTERVAL_MS=${INTERVAL_MS:-1000}
LAB=${LAB:-bhealth}
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
case "$N$SECS$INTERVAL_MS" in *[!0-9]*) echo "N, SECONDS and INTERVAL_MS must be numbers" >&2; exit 1 ;; esac
[ "$N" -ge 1 ] && [ "$N" -le 1000 ] || { echo "N must be 1..1000" >&2; exit 1; }
[ "$SECS" -ge 5 ] && [ "$SECS" -le 120 ] || { echo "SECONDS must be 5..120" >&2; exit 1; }
[ "$INTERVAL_MS" -ge 100 ] || { echo "INTERVAL_MS must be at least 100" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --bins
W=$(mktemp -d /tmp/sfbhealth.XXXX)
LAB_STARTED=
LISTENER_PID=
cleanup() {
  local rc=$?
  if [ -n "$LISTENER_PID" ]; then kill "$LISTENER_PID" 2>/dev/null || true; wait "$LISTENER_PID" 2>/dev/null || true; fi
  if [ -n "$LAB_STARTED" ]; then "$W/bin/shibafu-lab" --name "$LAB" down >"$W/down.log" 2>&1 || cat "$W/down.log" >&2; fi
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. bench/lab-lib.sh
lab_bench_up 1
NODE_NS="sf-$LAB-node1"
SOCK="$LABDIR/nodes/node1/agent.sock"
# The lab is TLS by default: the coordinator wants the admin's client certificate.
TLS=()
[ -n "${SHIBAFU_TLS_CA:-}" ] && TLS=(--cacert "$SHIBAFU_TLS_CA" --cert "$SHIBAFU_TLS_CERT" --key "$SHIBAFU_TLS_KEY")
api() { on node1 curl -sf "${TLS[@]}" -H 'content-type: application/json' "$@"; }
wait_for() { # DESCRIPTION SECONDS COMMAND...: poll every 0.5 s, bounded
  local what=$1 tries=$(($2 * 2)) i; shift 2
  for ((i = 0; i < tries; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "$what: not within the time allowed" >&2; exit 1
}

on node1 "$W/bin/shibafu" network create bench 10.79.0.0/16 >/dev/null
api -X POST "$COORD/v1/services" -d '{"network":"bench","name":"web","port":8080}' >/dev/null
t0=${EPOCHREALTIME/./}
for ((i = 1; i <= N; i++)); do
  on node1 "$W/bin/shibafu" run -d --name "c$i" --network bench --service web --port 8080 -- sleep 3600 >/dev/null
done
t1=${EPOCHREALTIME/./}

# The listener: one process, a socket on 8080 in every container's namespace.
cat >"$W/listener.py" <<'PY'
import ctypes, os, selectors, socket, sys, time
port, limit, counter = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
home = os.open("/proc/self/ns/net", os.O_RDONLY)
sel = selectors.DefaultSelector()
for pid in sys.stdin.read().split():
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns into the namespace of {pid}")
    os.close(fd)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(64)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
if libc.setns(home, CLONE_NEWNET) != 0:
    raise OSError(ctypes.get_errno(), "setns home")
print(f"listening in {len(sel.get_map())} namespaces", flush=True)
accepts, end, tick = 0, time.monotonic() + limit, 0.0
while time.monotonic() < end:
    for key, _ in sel.select(0.5):
        try:
            c, _ = key.fileobj.accept()
            c.close()
            accepts += 1
        except OSError:
            pass
    if time.monotonic() - tick >= 0.5:
        tick = time.monotonic()
        with open(counter + ".tmp", "w") as f:
            f.write(str(accepts))
        os.replace(counter + ".tmp", counter)
PY
api --unix-socket "$SOCK" http://localhost/v1/containers >"$W/containers.json"
python3 -c '
import json, sys
cs = [c for c in json.load(open(sys.argv[1])) if c["name"].startswith("c") and c.get("pid")]
print(" ".join(str(c["pid"]) for c in cs))
with open(sys.argv[2], "w") as f:
    f.writelines("%d %s\n" % (c["pid"], c["interfaces"][0]["ipv4"]) for c in cs)' "$W/containers.json" "$W/addrs" >"$W/pids"
[ "$(wc -w <"$W/pids")" = "$N" ] || { echo "expected $N running containers, got $(wc -w <"$W/pids")" >&2; exit 1; }
on node1 python3 "$W/listener.py" 8080 $((4 * SECS + 300)) "$W/accepts" <"$W/pids" >"$W/listener.log" 2>&1 &
LISTENER_PID=$!
wait_for "listener" 60 grep -q "listening in $N namespaces" "$W/listener.log"

AGENT=
for p in $(ip netns pids "$NODE_NS"); do
  if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "shibafu-agent run "; then AGENT=$p; fi
done
[ -n "$AGENT" ] || { echo "no agent process in $NODE_NS" >&2; exit 1; }
TCK=$(getconf CLK_TCK)
cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$AGENT/stat"; } # utime + stime, ticks
revision() { on node1 etcdctl --endpoints "$ETCD" endpoint status -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Status"]["header"]["revision"])'; }
accepted() { cat "$W/accepts" 2>/dev/null || echo 0; }
measure() { # LABEL: agent CPU, accepts and etcd writes over SECS seconds
  local c0 c1 a0 a1 r0 r1 s0 s1
  c0=$(cpu); a0=$(accepted); r0=$(revision); s0=${EPOCHREALTIME/./}
  sleep "$SECS"
  c1=$(cpu); a1=$(accepted); r1=$(revision); s1=${EPOCHREALTIME/./}
  awk -v l="$1" -v c=$((c1 - c0)) -v t="$TCK" -v us=$((s1 - s0)) -v a=$((a1 - a0)) -v w=$((r1 - r0)) -v n="$N" 'BEGIN {
    s = us / 1e6; cpu = c / t
    printf "%-9s agent CPU %.2f s in %.1f s = %.2f %% of one core; checks seen %d (%.0f/s); etcd writes %d\n", l, cpu, s, 100 * cpu / s, a, a / s, w
  }'
}

echo "# health-check cost, N=$N, interval ${INTERVAL_MS} ms, ${SECS} s windows, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo no-git)$(git diff --quiet HEAD 2>/dev/null || echo +dirty), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "setup: $N containers started in $(((t1 - t0) / 1000000)) s; agent pid $AGENT; listener in $N namespaces"
sleep 3
base=$(measure baseline)
echo "$base"
check="{\"network\":\"bench\",\"name\":\"web\",\"health\":{\"probe\":{\"kind\":\"tcp\",\"port\":8080},\"interval_ms\":$INTERVAL_MS,\"timeout_ms\":$((INTERVAL_MS < 500 ? INTERVAL_MS : 500))}}"
tc=${EPOCHREALTIME/./}
api -X PUT "$COORD/v1/services/bench/web" -d "$check" >/dev/null
all_healthy() { [ "$(api "$COORD/v1/services/bench/web" | grep -o '"state":"healthy"' | wc -l)" = "$N" ]; }
wait_for "every instance healthy" 120 all_healthy
th=${EPOCHREALTIME/./}
echo "check set: all $N instances healthy $(((th - tc) / 1000)) ms after the update"
sleep 3
checked=$(measure checked)
echo "$checked"
# The floor: the same exchange from a bare C loop (enter, socket, back, connect, reset).
command -v gcc >/dev/null || { echo "gcc not found: the floor needs it (apt-get install gcc)" >&2; exit 1; }
gcc -O2 -o "$W/connect-floor" bench/connect-floor.c
floor=$(ip netns exec "$NODE_NS" "$W/connect-floor" "$W/addrs" 8080 $(((5000 + N - 1) / N)))
echo "$floor"
awk -v b="$base" -v c="$checked" -v f="$floor" -v n="$N" -v secs="$SECS" 'BEGIN {
  split(b, x, " = "); split(x[2], bp, " "); split(c, y, " = "); split(y[2], cp, " ")
  match(c, /checks seen [0-9]+/); seen = substr(c, RSTART + 12, RLENGTH - 12)
  split(f, z, " "); fl = z[2]
  per = (cp[1] - bp[1]) / 100 * secs * 1e6 / (seen > 0 ? seen : 1)
  printf "cost of checks: %.2f %% of one core for %d instances (%.2f %% with the baseline); goal <= 5 %%\n", cp[1] - bp[1], n, cp[1]
  printf "per check: %.1f us of agent CPU = %.2f x the floor (%.1f us per bare check)\n", per, per / fl, fl
}'
