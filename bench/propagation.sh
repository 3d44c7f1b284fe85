#!/usr/bin/env bash
# Name propagation across nodes: from `shibafu run -d` returning on node1 to the container's name
# resolving on node3, measured per container over N containers in a 3-node lab.
#
# Usage (repo root, as root): bench/propagation.sh [N containers, default 120]
#   NO_BUILD=1   skip `cargo build --release` (binaries must be in target/release)
#   LAB=NAME     lab name (default bprop); KEEP=DIR keeps the raw per-container figures there
#
# How: a lab of 3 nodes, network `bench` (10.78.0.0/16), a container `probe` on node3. Inside
# probe runs a small DNS poller (python3, raw UDP, no resolver library): it reads a name on its
# stdin, then asks `NAME.bench.local A` of its DNS server (the gateway 10.78.0.1 on node3) every
# millisecond (20 ms timeout per try, 10 s at most) and prints the wall-clock time of the first
# answer carrying an address. For each container i the script hands p<i> to the poller, then
# runs `shibafu run -d --name p<i> --network bench -- sleep 3600` on node1 and takes the time the
# CLI returned (bash's $EPOCHREALTIME, no fork); latency = first answer - return. One container
# at a time, so each figure is one propagation, not a queue. A negative figure means node3
# answered before node1's CLI had returned. All containers are removed at the end; the trap
# takes the lab down on any exit.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-120}
LAB=${LAB:-bprop}
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
case $N in '' | *[!0-9]*) echo "N must be a number" >&2; exit 1 ;; esac
[ "$N" -ge 1 ] && [ "$N" -le 1000 ] || { echo "N must be 1..1000" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --bins
W=$(mktemp -d /tmp/sfbprop.XXXX)
LAB_STARTED=
POLLER_PID=
WATCH_PID=
STAMP_PID=
cleanup() {
  local rc=$?
  exec 3>&- 4<&-
  local p
  for p in $WATCH_PID $STAMP_PID; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "$POLLER_PID" ]; then kill "$POLLER_PID" 2>/dev/null || true; wait "$POLLER_PID" 2>/dev/null || true; fi
  if [ -n "$LAB_STARTED" ]; then "$W/bin/shibafu-lab" --name "$LAB" down >"$W/down.log" 2>&1 || cat "$W/down.log" >&2; fi
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; cp "$W"/results "$W"/etcd.events "$W"/*.log "$KEEP"/ 2>/dev/null || true; fi
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. bench/lab-lib.sh
lab_bench_up 3
on node1 "$W/bin/shibafu" network create bench 10.78.0.0/16 >/dev/null
on node3 "$W/bin/shibafu" run -d --name probe --network bench -- sleep 3600 >/dev/null

cat >"$W/poller.py" <<'PY'
import socket, struct, sys, time
server, zone = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((server, 53))
qid = 0
def ask(name):
    global qid
    qid = (qid + 1) & 0xFFFF
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    s.send(q + struct.pack(">HH", 1, 1))
    end = time.monotonic() + 0.02
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            r = s.recv(1500)
        except socket.timeout:
            return False
        if len(r) >= 12 and struct.unpack(">H", r[:2])[0] == qid:
            return (r[3] & 0xF) == 0 and struct.unpack(">H", r[6:8])[0] > 0
for line in sys.stdin:
    name = line.strip()
    if not name or name == "quit":
        break
    fq, tries, deadline, t = name + "." + zone, 0, time.monotonic() + 10, None
    while time.monotonic() < deadline:
        tries += 1
        if ask(fq):
            t = time.time_ns() // 1000
            break
        time.sleep(0.001)
    print(name, t if t is not None else "timeout", tries, flush=True)
PY
mkfifo "$W/to_poller" "$W/from_poller"
on node3 "$W/bin/shibafu" exec probe /usr/bin/python3 "$W/poller.py" 10.78.0.1 bench.local \
  <"$W/to_poller" >"$W/from_poller" 2>"$W/poller.log" &
POLLER_PID=$!
exec 3>"$W/to_poller" 4<"$W/from_poller"
# The poller answers a name that exists (probe itself) before the measurement starts.
echo probe >&3
read -r -t 15 -u 4 _ t _ || { echo "poller did not answer" >&2; cat "$W/poller.log" >&2; exit 1; }
[ "$t" != timeout ] || { echo "poller cannot resolve probe.bench.local" >&2; exit 1; }

# A watcher on the control host stamps each endpoint key as etcd delivers it: roughly the commit
# time (the watcher itself can lag by several ms), to split the figure into node1's part and
# node3's part.
mkfifo "$W/watch"
ip netns exec "sf-$LAB-ctl" env ETCDCTL_API=3 etcdctl --endpoints "$ETCD" watch --prefix \
  /shibafu/v1/endpoints/bench/ >"$W/watch" 2>"$W/watch.log" &
WATCH_PID=$!
/usr/bin/python3 -c '
import sys, time
for line in iter(sys.stdin.readline, ""):
    if line.startswith("/shibafu/v1/endpoints/bench/"):
        print(time.time_ns() // 1000, line.strip().rsplit("/", 1)[1], flush=True)
' <"$W/watch" >"$W/etcd.events" &
STAMP_PID=$!
sleep 0.5

echo "# propagation node1 -> node3, N=$N, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo no-git)$(git diff --quiet HEAD 2>/dev/null || echo +dirty), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
: >"$W/results"
for ((i = 1; i <= N; i++)); do
  echo "p$i" >&3
  t_run=${EPOCHREALTIME/./}
  on node1 "$W/bin/shibafu" run -d --name "p$i" --network bench -- sleep 3600 >/dev/null
  t_ret=${EPOCHREALTIME/./}
  read -r -t 15 -u 4 name t_ans tries || { echo "poller gave no answer for p$i" >&2; exit 1; }
  [ "$name" = "p$i" ] || { echo "poller out of step: expected p$i, got $name" >&2; exit 1; }
  [ "$t_ans" != timeout ] || { echo "p$i never resolved on node3 (10 s)" >&2; exit 1; }
  echo "p$i $t_ret $t_ans $tries $((t_ans - t_ret)) $((t_ret - t_run))" >>"$W/results"
done
echo quit >&3

# Remove every container (bounded: one rm call per 50 names).
for ((i = 1; i <= N; i += 50)); do
  names=()
  for ((j = i; j < i + 50 && j <= N; j++)); do names+=("p$j"); done
  on node1 "$W/bin/shibafu" rm -f "${names[@]}" >/dev/null
done
on node3 "$W/bin/shibafu" rm -f probe >/dev/null

# results: name t_return_us t_answer_us tries latency_from_return_us run_duration_us
#   from_run_start_us from_etcd_commit_us (the last two added below)
stats() { # LABEL COLUMN: nearest-rank percentiles of a column of $W/results, in ms
  awk -v c="$2" '$c ~ /^-?[0-9]+$/ { print $c }' "$W/results" | sort -n | awk -v label="$1" '
    function rank(p,  r) { r = int(p * NR + 0.999999); return r < 1 ? 1 : r }
    { v[NR] = $1 / 1000; s += $1 / 1000 }
    END {
      printf "%-34s n=%d min=%.2f p50=%.2f p90=%.2f p99=%.2f max=%.2f mean=%.2f\n",
        label, NR, v[1], v[rank(0.50)], v[rank(0.90)], v[rank(0.99)], v[NR], s / NR
    }'
}
# Column 8: node3's answer minus the first etcd event of that name (PUT), when seen.
awk 'NR == FNR { if (!($2 in put)) put[$2] = $1; next }
  { print $1, $2, $3, $4, $5, $6, $5 + $6, ($1 in put) ? $3 - put[$1] : "nan" }' \
  "$W/etcd.events" "$W/results" >"$W/results.tmp" && mv "$W/results.tmp" "$W/results"
stats "propagation_ms (from run return)" 5
stats "from run start (invocation)" 7
stats "shibafu run -d duration" 6
stats "etcd commit -> node3 answer" 8
awk '$5 <= 0 { k++ } END { printf "already resolvable on node3 when run returned: %d of %d\n", k, NR }' "$W/results"
awk '{ print $5 }' "$W/results" | sort -n | awk -v n="$N" '
  { v[NR] = $1 } END { r = int(0.99 * n + 0.999999); printf "goal p99 < 50 ms (from run return): %s\n", (v[r] / 1000 < 50 ? "met" : "MISSED") }'
