#!/usr/bin/env bash
# Attach latency of `shibafu network attach` (a whole CLI process against a running agent, as a
# runtime would call it) and of `shibafu-cni` ADD (the CNI plugin, as a runtime calls it), next to
# the anchors of ../shared/bench/attach-anchors.sh (netavark and the CNI bridge plugin with
# host-local), in one run, in the anchors' private host namespace.
#
# Usage (repo root, as root): bench/attach.sh [N containers, default 40]
#   ANCHORS=PATH     attach-anchors.sh (default ../shared/bench/attach-anchors.sh)
#   NO_BUILD=1       skip `cargo build --release` (binaries must be in target/release)
#   UNDERLAY=lo      use 127.0.0.1 as the agent's underlay (its MTU 65536 makes the network MTU
#                    65486); default: a veth pair inside the host namespace (the dummy driver
#                    may be missing), one end 10.254.0.1/24 with MTU 1500, so the network MTU is
#                    1450 as on a real host
#   AGENT_LOG=FILTER tracing filter of the agent (default info); its log is kept in $KEEP if set
#   KEEP=DIR         copy the setup's logs (etcd, coordinator, agent) there after the run
#   CNI_FIRST=1      time shibafu-cni before the CLI (the tool timed second runs 0.5-0.9 ms
#                    slower, whichever it is: alternate the order and report both)
#
# The shibafu setup (this script with --setup, started by attach-anchors.sh inside the host
# namespace) runs etcd on 127.0.0.1 (temp data dir, fsync on, as in production), a coordinator,
# an agent, and creates network `bench`; its trap stops all of them. Everything the bench makes
# lives in namespaces it removes, and in one temp directory removed at the end.
set -euo pipefail

# ---------------------------------------------------------------- setup (inside the host netns)
if [ "${1:-}" = "--setup" ]; then
  DIR=$2 N=$3
  BIN=$(dirname "$DIR")/bin
  mkdir -p "$DIR"
  PIDS=()
  stop_all() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  }
  trap stop_all EXIT
  trap 'exit 0' TERM INT
  wait_for() { # DESCRIPTION TRIES COMMAND...: poll every 0.1 s, bounded
    local what=$1 tries=$2 i; shift 2
    for ((i = 0; i < tries; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "setup: $what did not come up" >&2; exit 1
  }
  underlay=127.0.0.1
  if [ "${UNDERLAY:-veth}" != lo ]; then
    ip link add sfbunder mtu 1500 type veth peer name sfbunder2 mtu 1500
    ip addr add 10.254.0.1/24 dev sfbunder
    ip link set sfbunder2 up
    ip link set sfbunder up
    underlay=10.254.0.1
  fi
  etcd --name bench --data-dir "$DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster bench=http://127.0.0.1:2380 >"$DIR/etcd.log" 2>&1 &
  PIDS+=($!)
  wait_for etcd 100 curl -sf http://127.0.0.1:2379/health
  "$BIN/shibafu-coordinator" --listen 127.0.0.1:7480 --etcd http://127.0.0.1:2379 \
    >"$DIR/coordinator.log" 2>&1 &
  PIDS+=($!)
  wait_for coordinator 100 curl -sf http://127.0.0.1:7480/v1/health
  RUST_LOG=${AGENT_LOG:-info} "$BIN/shibafu-agent" run --node bench --etcd http://127.0.0.1:2379 \
    --underlay "$underlay" --state-dir "$DIR/state" --api-socket "$DIR/agent.sock" \
    >"$DIR/agent.log" 2>&1 &
  PIDS+=($!)
  wait_for agent 100 curl -sf --unix-socket "$DIR/agent.sock" http://localhost/v1/health
  subnet=10.77.0.0/24
  [ "$N" -gt 250 ] && subnet=10.77.0.0/16
  SHIBAFU_COORDINATOR=http://127.0.0.1:7480 "$BIN/shibafu" network create bench $subnet >/dev/null
  agent_sees_bench() { curl -sf --unix-socket "$DIR/agent.sock" http://localhost/v1/networks | grep -q '"bench"'; }
  wait_for "network bench on the agent" 100 agent_sees_bench
  touch "$DIR/ready"
  echo "setup: ready (underlay $underlay, subnet $subnet)"
  sleep 3600 &
  PIDS+=($!)
  wait $! || true
  exit 0
fi

# ---------------------------------------------------------------- main
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-40}
ANCHORS=${ANCHORS:-$ROOT/../shared/bench/attach-anchors.sh}
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
case $N in '' | *[!0-9]*) echo "N must be a number" >&2; exit 1 ;; esac
[ "$N" -ge 1 ] && [ "$N" -le 1000 ] || { echo "N must be 1..1000" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --bins
for b in shibafu shibafu-agent shibafu-coordinator; do
  [ -x "target/release/$b" ] || { echo "target/release/$b missing: build first" >&2; exit 1; }
done
DIR=$(mktemp -d /tmp/sfbattach.XXXX)
cleanup() {
  # attach-anchors.sh removes its namespaces and kills their processes in its own trap; this
  # catches anything of ours left if it was itself killed.
  local p
  for p in $(pgrep -f "$DIR" 2>/dev/null || true); do kill "$p" 2>/dev/null || true; done
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP"; for run in cli cni; do mkdir -p "$KEEP/$run"; cp "$DIR/$run"/*.log "$KEEP/$run"/ 2>/dev/null || true; done; cp "$DIR"/out "$KEEP"/ 2>/dev/null || true; fi
  rm -rf "$DIR"
}
trap cleanup EXIT
# A private copy of the binaries: a concurrent rebuild of target/ cannot change them mid-run.
mkdir "$DIR/bin"
cp target/release/shibafu target/release/shibafu-agent target/release/shibafu-coordinator \
  target/release/shibafu-cni "$DIR/bin/"
# Each tool gets a setup of its own (fresh etcd, coordinator and agent) in its own directory.
SETUP="bash $ROOT/bench/attach.sh --setup $DIR/cli $N"
CMD="SHIBAFU_AGENT=unix:$DIR/cli/agent.sock $DIR/bin/shibafu network attach bench --netns {NETNS} --name c{I}"
# shibafu-cni as a runtime calls it: the network configuration on stdin, the CNI_* variables.
CNI_CONF="{\"cniVersion\":\"1.0.0\",\"name\":\"bench\",\"type\":\"shibafu\",\"network\":\"bench\",\"agent\":\"$DIR/cni/agent.sock\"}"
CNI_SETUP="bash $ROOT/bench/attach.sh --setup $DIR/cni $N"
# (no pipe: attach-anchors.sh splits its tool specs at '|')
CNI_CMD="CNI_COMMAND=ADD CNI_CONTAINERID=c{I} CNI_NETNS={NETNS} CNI_IFNAME=eth0 $DIR/bin/shibafu-cni <<< '$CNI_CONF'"
echo "# attach latency, N=$N, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo no-git)$(git diff --quiet HEAD 2>/dev/null || echo +dirty), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
TOOLS=("shibafu|$CMD|$SETUP" "shibafu-cni|$CNI_CMD|$CNI_SETUP")
[ -z "${CNI_FIRST:-}" ] || TOOLS=("${TOOLS[1]}" "${TOOLS[0]}")
SETUP_WAIT=${SETUP_WAIT:-8} bash "$ANCHORS" "$N" "${TOOLS[@]}" | tee "$DIR/out"
for run in cli cni; do
  [ -e "$DIR/$run/ready" ] || { echo "shibafu setup ($run) never became ready; its log:" >&2; cat "$DIR/$run"/*.log >&2 || true; exit 1; }
done
for tool in shibafu shibafu-cni; do
  grep -q "^$tool .*n=$N\$" "$DIR/out" || { echo "$tool did not finish all $N attaches" >&2; exit 1; }
done
awk '
  { for (i = 2; i <= NF; i++) if ($i ~ /^median_ms=/) { split($i, kv, "="); m[$1] = kv[2] } }
  END {
    best = (m["netavark"] < m["cni-bridge"]) ? m["netavark"] : m["cni-bridge"]
    printf "ratio shibafu/faster-anchor = %.3f (goal <= 0.333)\n", m["shibafu"] / best
    printf "ratio shibafu-cni/cni-bridge = %.3f (goal <= 0.333)\n", m["shibafu-cni"] / m["cni-bridge"]
  }' "$DIR/out"
