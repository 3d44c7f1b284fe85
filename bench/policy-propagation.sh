#!/usr/bin/env bash
# Policy propagation: from `shibafu network policy create` (or `rm`) returning on node1 to the
# policy being enforced as the oracle says on every node, measured by real TCP probes; and from
# `shibafu run` returning to a new instance on another node being let in by a policy that names
# its service.
#
# Usage (repo root, as root): bench/policy-propagation.sh [N policies, default 50]
#   NO_BUILD=1   skip `cargo build --release` (binaries must be in target/release)
#   LAB=NAME     lab name (default bpolp); KEEP=DIR keeps the raw figures there
#
# How: a 3-node lab; network `tgt` with a TCP server `t` (busybox httpd, port 80) on node3;
# network `cli`, linked to `tgt`, with one client per node (c1, c2, c3). Each client runs a
# poller (python3, plain sockets) that opens a new TCP connection to t every millisecond (5 ms
# timeout) and prints the wall-clock start time of each change between "connects" and "does
# not" (three failures in a row make "does not": one slow connect is not a block). Policy i
# (i = 1..N) is created on node1 and removed 0.4 s later: odd i `--network tgt
# --deny-ingress-from cli` (enforced at node3, the destination's node), even i `--network cli
# --deny-egress-to tgt` (enforced at each client's own node). Latency = the poller's first
# blocked (or, after rm, first passing) attempt - the CLI's return (bash $EPOCHREALTIME).
# Then M = N/5 instances of service `member` start on node1, one at a time, under a policy
# `--network tgt --allow-ingress-from service:member:80`; each runs the poller from its first
# instant; latency = its first passing connection - `run` returning (can be negative).
# The trap takes the lab down on any exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-50}
LAB=${LAB:-bpolp}
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
case $N in '' | *[!0-9]*) echo "N must be a number" >&2; exit 1 ;; esac
[ "$N" -ge 2 ] && [ "$N" -le 200 ] || { echo "N must be 2..200" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --bins
W=$(mktemp -d /tmp/sfbpolp.XXXX)
LAB_STARTED=
cleanup() {
  local rc=$?
  if [ -n "$LAB_STARTED" ]; then "$W/bin/shibafu-lab" --name "$LAB" down >"$W/down.log" 2>&1 || cat "$W/down.log" >&2; fi
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$W"/*.txt "$KEEP"/ 2>/dev/null || true; fi
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. bench/lab-lib.sh
lab_bench_up 3
SF=$W/bin/shibafu
cat >"$W/poller.py" <<'PY'
import socket, sys, time
host, port, mode, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
end, last, fails, first_fail = time.time() + seconds, None, 0, None
while time.time() < end:
    t = time.time()
    s = socket.socket()
    s.settimeout(0.005)
    try:
        s.connect((host, port))
        ok = True
    except OSError:
        ok = False
    s.close()
    if ok:
        fails, first_fail = 0, None
        if last is not True:
            print("%.6f ok" % t, flush=True)
            last = True
            if mode == "first":
                break
    else:
        fails += 1
        first_fail = first_fail or t
        if fails >= 3 and last is not False:
            print("%.6f blocked" % first_fail, flush=True)
            last = False
    time.sleep(0.001)
PY
on node1 "$SF" network create tgt 10.81.0.0/24 >/dev/null
on node1 "$SF" network create cli 10.82.0.0/24 >/dev/null
on node1 "$SF" network connect-networks tgt cli >/dev/null
T_IP=$(on node3 "$SF" run -d --name t --network tgt -- busybox httpd -f -p 80 -h /tmp | awk '{print $4}')
SECONDS_UP=$((N + 30))
for n in 1 2 3; do
  on node$n "$SF" run -d --name c$n --network cli -- /usr/bin/python3 "$W/poller.py" "$T_IP" 80 watch "$SECONDS_UP" >/dev/null
done
sleep 1
echo "# policy propagation, N=$N, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo no-git)$(git diff --quiet HEAD 2>/dev/null || echo +dirty), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$W/events.txt"
for ((i = 1; i <= N; i++)); do
  if ((i % 2)); then spec=(--network tgt --deny-ingress-from cli); else spec=(--network cli --deny-egress-to tgt); fi
  on node1 "$SF" network policy create --name "p$i" "${spec[@]}" >/dev/null
  echo "create $i ${EPOCHREALTIME}" >>"$W/events.txt"
  sleep 0.4
  on node1 "$SF" network policy rm "p$i" >/dev/null
  echo "rm $i ${EPOCHREALTIME}" >>"$W/events.txt"
  sleep 0.4
done
for n in 1 2 3; do on node$n "$SF" logs c$n >"$W/c$n.txt"; done

# A later instance on node1, let in at node3 by a policy naming its service.
M=$((N / 5))
on node1 "$SF" service create member --network cli >/dev/null
on node1 "$SF" network policy create --name members --network tgt --allow-ingress-from service:member:80 >/dev/null
sleep 1
: >"$W/members.txt"
for ((k = 1; k <= M; k++)); do
  on node1 "$SF" run -d --name "m$k" --network cli --service member -- /usr/bin/python3 "$W/poller.py" "$T_IP" 80 first 10 >/dev/null
  t_ret=${EPOCHREALTIME}
  ok=
  for ((j = 0; j < 100; j++)); do
    first=$(on node1 "$SF" logs "m$k" 2>/dev/null | awk '$2 == "ok" {print $1; exit}')
    if [ -n "$first" ]; then ok=1; break; fi
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "m$k never got through" >&2; exit 1; }
  echo "$k $t_ret $first" >>"$W/members.txt"
  on node1 "$SF" rm -f "m$k" >/dev/null
done

/usr/bin/python3 - "$W" <<'PY'
import sys
w = sys.argv[1]
ev = [l.split() for l in open(w + "/events.txt")]
creates = {int(i): float(t) for k, i, t in ev if k == "create"}
rms = {int(i): float(t) for k, i, t in ev if k == "rm"}
block, unblock = {"ingress (node3)": [], "egress (each client's node)": []}, []
missing = 0
for n in (1, 2, 3):
    tr = [(float(t), s) for t, s in (l.split() for l in open("%s/c%d.txt" % (w, n)) if len(l.split()) == 2)]
    for i, tc in creates.items():
        tr_rm = rms[i]
        b = [t for t, s in tr if s == "blocked" and tc - 0.05 < t < tr_rm]
        u = [t for t, s in tr if s == "ok" and tr_rm - 0.05 < t < tr_rm + 0.4]
        kind = "ingress (node3)" if i % 2 else "egress (each client's node)"
        if b: block[kind].append((b[0] - tc) * 1e3)
        else: missing += 1
        if u: unblock.append((u[0] - tr_rm) * 1e3)
        else: missing += 1
mem = [(float(f) - float(r)) * 1e3 for _, r, f in (l.split() for l in open(w + "/members.txt"))]
def show(label, xs):
    xs = sorted(xs)
    if not xs:
        print("%-44s no samples" % label); return
    p = lambda q: xs[min(len(xs) - 1, max(0, int(q * len(xs) + 0.999999) - 1))]
    print("%-44s n=%-4d p50 %7.1f ms  p90 %7.1f ms  p99 %7.1f ms  max %7.1f ms" % (label, len(xs), p(.5), p(.9), p(.99), xs[-1]))
for k, xs in block.items():
    show("create -> blocked, " + k, xs)
show("create -> blocked, all", [x for xs in block.values() for x in xs])
show("rm -> passing again, all", unblock)
show("run -> new service instance let in", mem)
print("transitions not seen: %d (of %d)" % (missing, 2 * 3 * len(creates)))
PY
