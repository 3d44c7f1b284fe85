#!/usr/bin/env bash
# Does attach stay flat as containers accumulate on one node? Attaches N fresh container
# namespaces, one after the other and none removed, to one network of one agent (the setup of
# bench/attach.sh: etcd, a coordinator and the agent in a private host namespace), each a whole
# `shibafu network attach` process as a runtime would call it (straight from this namespace, as a
# runtime would: the agent's socket is a path; `ip netns exec` around each attach would add its
# own cost, which grows with the namespaces mounted: it copies the mount table), and prints the
# time of every hundredth attach, the median of each hundred, of the first ten and of the last
# ten, and the last attach against the first ten's median (issue 16's goal: the 1,000th within
# 1.2 x); and the agent's own CPU time per attach in each hundred (user + system, from
# /proc/PID/stat at every hundredth attach), which the machine's other load disturbs less than
# the wall-clock times.
#
# Usage (repo root, as root): bench/attach-flat.sh [N, default 1000]
#   NO_BUILD=1   skip `cargo build --release` (binaries must be in target/release)
#   TIMES=FILE   keep every attach's time there ("I MICROSECONDS" per line)
#   ETCD=1       also read etcd's /metrics after attaches 100, 200, N-100 and N (outside the
#                timed calls) and print, per attach in the second hundred and in the last,
#                etcd's bytes sent to its clients and its database's growth (bench/etcd-per-attach.py)
#   THREADS=1    also read each agent thread's CPU time (/proc/PID/task/TID/schedstat) at every
#                hundredth attach and print, per thread, its CPU per attach in the second hundred
#                and in the last (bench/thread-cpu.py: which of the agent's threads grows)
#   RUNS=K       run the whole benchmark K times in a row (a fresh setup each), then print every
#                run's two ratios, their median and in how many runs each is within the goal: one
#                run on a shared machine says little (TIMES=FILE then keeps FILE.1 .. FILE.K). A
#                run that fails is reported and the others go on; the script then exits non-zero
# Everything lives in namespaces named sfflat* and one temp dir a run (with RUNS, one more for
# the runs' times), removed at the end (trap).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-1000}
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
case $N in '' | *[!0-9]*) echo "N must be a number" >&2; exit 1 ;; esac
# A bridge takes 1,023 ports, its VXLAN port one of them (docs/dataplane.md).
[ "$N" -ge 20 ] && [ "$N" -le 1022 ] || { echo "N must be 20..1022 (one bridge's ports)" >&2; exit 1; }
[ -z "${ETCD:-}" ] || [ "$N" -ge 300 ] || { echo "ETCD=1 needs N >= 300" >&2; exit 1; }
[ -z "${THREADS:-}" ] || [ "$N" -ge 300 ] || { echo "THREADS=1 needs N >= 300" >&2; exit 1; }
RUNS=${RUNS:-1}
case $RUNS in '' | *[!0-9]* | 0*) echo "RUNS must be a number >= 1" >&2; exit 1 ;; esac
[ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --bins
if [ "$RUNS" -gt 1 ]; then
  KEPT=$(mktemp -d /tmp/sfflat-runs.XXXX)
  trap 'rm -rf "$KEPT"' EXIT
  failed=0
  for r in $(seq 1 "$RUNS"); do
    echo "## run $r of $RUNS"
    RUNS=1 NO_BUILD=1 TIMES="$KEPT/times.$r" bash "$ROOT/bench/attach-flat.sh" "$N" \
      || { echo "## run $r failed"; failed=$((failed + 1)); }
    [ -z "${TIMES:-}" ] || [ ! -e "$KEPT/times.$r" ] || cp "$KEPT/times.$r" "$TIMES.$r"
  done
  python3 "$ROOT/bench/flat-stats.py" --runs "$KEPT"/times.*
  [ "$failed" -eq 0 ] || { echo "$failed of $RUNS runs failed" >&2; exit 1; }
  exit 0
fi
H=sfflathost DIR=$(mktemp -d /tmp/sfflat.XXXX) SETUP_PID=
cleanup() {
  [ -n "$SETUP_PID" ] && { kill "$SETUP_PID" 2>/dev/null || true; wait "$SETUP_PID" 2>/dev/null || true; }
  local i
  for i in $(seq 1 "$N"); do ip netns del "sfflat$i" 2>/dev/null || true; done
  ip netns pids "$H" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$H" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
mkdir "$DIR/bin"
cp target/release/shibafu target/release/shibafu-agent target/release/shibafu-coordinator "$DIR/bin/"
ip netns add "$H"
ip -n "$H" link set lo up
ip netns exec "$H" bash "$ROOT/bench/attach.sh" --setup "$DIR/run" "$N" >"$DIR/setup.log" 2>&1 &
SETUP_PID=$!
for ((i = 0; i < 300; i++)); do [ -e "$DIR/run/ready" ] && break; sleep 0.1; done
[ -e "$DIR/run/ready" ] || { cat "$DIR/setup.log" "$DIR"/run/*.log >&2; exit 1; }
for i in $(seq 1 "$N"); do ip netns add "sfflat$i"; done
AGENT_PID=$(pgrep -f "$DIR/bin/shibafu-agent run" | head -1)
agent_cpu() {
  echo "$1 $(awk '{print $14 + $15}' "/proc/$AGENT_PID/stat")" >>"$DIR/cpu"
  [ -z "${THREADS:-}" ] || for t in /proc/"$AGENT_PID"/task/*; do
    echo "$1 ${t##*/} $(cut -d' ' -f1 "$t/schedstat") $(tr ' ' _ <"$t/comm")"
  done >>"$DIR/threads"
}
agent_cpu 0
echo "# attach flatness, N=$N, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo no-git), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in $(seq 1 "$N"); do
  t0=$(date +%s%N)
  SHIBAFU_AGENT="unix:$DIR/run/agent.sock" "$DIR/bin/shibafu" \
    network attach bench --netns "/run/netns/sfflat$i" --name "c$i" >/dev/null 2>"$DIR/err" \
    || { echo "attach $i failed: $(cat "$DIR/err")" >&2; exit 1; }
  t1=$(date +%s%N)
  echo "$i $(((t1 - t0) / 1000))"
  [ $((i % 100)) -ne 0 ] || agent_cpu "$i"
  case ${ETCD:-}:$i in 1:100 | 1:200 | 1:$((N - 100)) | 1:"$N")
    ip netns exec "$H" curl -sf http://127.0.0.1:2379/metrics >"$DIR/etcd.$i" ;;
  esac
done >"$DIR/times"
[ -z "${TIMES:-}" ] || cp "$DIR/times" "$TIMES"
python3 "$ROOT/bench/flat-stats.py" "$DIR/times" "$DIR/cpu"
[ -z "${ETCD:-}" ] || python3 "$ROOT/bench/etcd-per-attach.py" "$DIR" "$N"
[ -z "${THREADS:-}" ] || python3 "$ROOT/bench/thread-cpu.py" "$DIR/threads" "$N"
