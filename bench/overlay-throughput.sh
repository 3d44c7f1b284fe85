#!/usr/bin/env bash
# Overlay throughput: iperf3 from a container on node1 to a container on node2 of a shibafu lab
# (network `bench`, VXLAN between the nodes), against ../shared/bench/vxlan-limit.sh (a hand-built
# kernel VXLAN between two namespaces, overlay MTU 1450) in the same session, alternating runs.
#
# Usage (repo root, as root): bench/overlay-throughput.sh [rounds, default 3] [seconds, default 4]
#   NO_BUILD=1      skip `cargo build --release` (binaries must be in target/release)
#   LAB=NAME        lab name (default bovl)
#   LIMIT=PATH      vxlan-limit.sh (default ../shared/bench/vxlan-limit.sh)
#   POLICY=1        a network policy governs `bench` and allows the flow (`--allow-ingress-from
#                   bench:5201` and `bench/icmp` for the readiness ping): its bridges call the
#                   inet hooks, its traffic is tracked, new connections go through the policy table
#   INVESTIGATE=1   after the rounds, the same rounds again under variants changed inside the two
#                   lab node namespaces only, each undone after: no-nftables (shibafu's table
#                   deleted; the agent restores it on its next resync, a run marked * saw it come
#                   back), no-br-nf (bridge-nf-call-ip{,6}tables=0: bridged frames skip the inet
#                   hooks), notrack (same-network container traffic and VXLAN's outer UDP
#                   skip conntrack, shibafu's table kept); plus offloads, MTUs, conntrack figures
#
# Each round runs shibafu then the limit (or the other way round on even rounds), R rounds each;
# prints every run, the means and the ratio shibafu / limit (goal >= 0.95; 0.85 with POLICY=1). Gbit/s is iperf3's
# sum_received. The trap takes the lab down on any exit; vxlan-limit.sh cleans up after itself.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-3}
S=${2:-4}
LAB=${LAB:-bovl}
LIMIT=${LIMIT:-$ROOT/../shared/bench/vxlan-limit.sh}
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
case "$R$S" in *[!0-9]*) echo "rounds and seconds must be numbers" >&2; exit 1 ;; esac
[ "$R" -ge 1 ] && [ "$R" -le 10 ] && [ "$S" -ge 1 ] && [ "$S" -le 30 ] ||
  { echo "rounds 1..10, seconds 1..30" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --bins
W=$(mktemp -d /tmp/sfbovl.XXXX)
LAB_STARTED=
cleanup() {
  local rc=$?
  if [ -n "$LAB_STARTED" ]; then "$W/bin/shibafu-lab" --name "$LAB" down >"$W/down.log" 2>&1 || cat "$W/down.log" >&2; fi
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
. bench/lab-lib.sh
lab_bench_up 2
SF=$W/bin/shibafu
on node1 "$SF" network create bench 10.79.0.0/24 >/dev/null
SRV_IP=$(on node2 "$SF" run -d --name srv --network bench -- iperf3 -s | awk '{print $4}')
on node1 "$SF" run -d --name cli --network bench -- sleep 3600 >/dev/null
if [ -n "${POLICY:-}" ]; then
  on node1 "$SF" network policy create --name bench-allow --network bench \
    --allow-ingress-from bench:5201 --allow-ingress-from bench/icmp >/dev/null
fi
ok=
for ((i = 0; i < 50; i++)); do # iperf3 -s listening and the path up: bounded wait
  if on node1 "$SF" exec cli ping -c1 -W1 "$SRV_IP" >/dev/null 2>&1; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || { echo "cli cannot reach srv ($SRV_IP)" >&2; exit 1; }
sleep 0.5

gbps() { /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,2))'; }
NO_NFT=
nft_gone() { ! ip netns exec "sf-$LAB-node1" nft list table inet shibafu >/dev/null 2>&1 &&
  ! ip netns exec "sf-$LAB-node2" nft list table inet shibafu >/dev/null 2>&1; }
run_shibafu() {
  local g n
  if [ -n "$NO_NFT" ]; then # the agents put the table back on their next resync: delete it each time
    for n in node1 node2; do ip netns exec "sf-$LAB-$n" nft delete table inet shibafu 2>/dev/null || true; done
  fi
  g=$(on node1 "$SF" exec cli iperf3 -c "$SRV_IP" -t "$S" -J | gbps)
  if [ -n "$NO_NFT" ] && ! nft_gone; then g="$g*"; fi # '*': the table came back during the run
  echo "$g"
}
run_limit() { bash "$LIMIT" "$S" | tail -1; }
MTU=$(on node1 "$SF" exec cli cat /sys/class/net/eth0/mtu)
echo "# overlay throughput, $R rounds x $S s, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo no-git)$(git diff --quiet HEAD 2>/dev/null || echo +dirty), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# shibafu: cli (node1) -> srv $SRV_IP (node2), container MTU $MTU; limit: $LIMIT (overlay MTU 1450)"
[ -z "${POLICY:-}" ] || echo "# with policy bench-allow: --network bench --allow-ingress-from bench:5201 --allow-ingress-from bench/icmp"
rounds() { # LABEL: R alternating rounds, prints each run, appends to $W/LABEL.sf / $W/LABEL.lim
  local label=$1 r a b
  for ((r = 1; r <= R; r++)); do
    if ((r % 2)); then a=$(run_shibafu); b=$(run_limit); else b=$(run_limit); a=$(run_shibafu); fi
    echo "${a%\*}" >>"$W/$label.sf"; echo "$b" >>"$W/$label.lim"
    printf '%-12s round %d  shibafu %6s Gbit/s   limit %6s Gbit/s\n' "$label" "$r" "$a" "$b"
  done
  paste "$W/$label.sf" "$W/$label.lim" | awk -v label="$label" -v goal="${POLICY:+0.85}" '
    { sf += $1; lim += $2; n++ }
    END { printf "%-12s mean     shibafu %6.2f Gbit/s   limit %6.2f Gbit/s   ratio %.3f (goal >= %s)\n",
          label, sf / n, lim / n, (sf / n) / (lim / n), goal == "" ? "0.95" : goal }'
}
rounds default

# Investigation variants, each changed inside the two lab node namespaces only and undone after.
BRNF_SAVED=()
in_nodes() { local n; for n in node1 node2; do ip netns exec "sf-$LAB-$n" "$@"; done; }
brnf_off() {
  local n
  for n in node1 node2; do
    BRNF_SAVED+=("$n=$(ip netns exec "sf-$LAB-$n" cat /proc/sys/net/bridge/bridge-nf-call-iptables)")
    ip netns exec "sf-$LAB-$n" sh -c 'echo 0 >/proc/sys/net/bridge/bridge-nf-call-iptables; echo 0 >/proc/sys/net/bridge/bridge-nf-call-ip6tables'
  done
}
brnf_restore() {
  local kv
  for kv in "${BRNF_SAVED[@]}"; do
    ip netns exec "sf-$LAB-${kv%%=*}" sh -c "echo ${kv#*=} >/proc/sys/net/bridge/bridge-nf-call-iptables; echo ${kv#*=} >/proc/sys/net/bridge/bridge-nf-call-ip6tables"
  done
  BRNF_SAVED=()
}
notrack_on() { # same-network container traffic (bridged frames seen through br_netfilter) and
  # VXLAN's outer UDP skip conntrack: a table of the bench's own, at raw priority
  local n
  for n in node1 node2; do
    ip netns exec "sf-$LAB-$n" nft -f - <<'NFT'
table inet sfbenchraw {
  chain pre {
    type filter hook prerouting priority raw;
    ip saddr 10.79.0.0/24 ip daddr 10.79.0.0/24 ip daddr != 10.79.0.1 notrack
    udp dport 4789 notrack
  }
  chain out { type filter hook output priority raw; udp dport 4789 notrack; }
}
NFT
  done
}
notrack_off() { in_nodes nft delete table inet sfbenchraw; }
report_nodes() {
  local n d
  for n in node1 node2; do
    echo "# $n: offloads of eth0 (underlay), sfvx1000, sfbr1000"
    for d in eth0 sfvx1000 sfbr1000; do
      printf '  %-9s ' "$d"
      ip netns exec "sf-$LAB-$n" ethtool -k "$d" 2>/dev/null |
        awk -F': ' '/^(tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload|tx-checksumming|rx-checksumming|tx-udp_tnl-segmentation):/ { printf "%s=%s ", $1, $2 }'
      echo
    done
    printf '  MTU eth0 %s sfvx1000 %s sfbr1000 %s; conntrack entries %s; bridge-nf-call-iptables %s\n' \
      "$(ip netns exec "sf-$LAB-$n" cat /sys/class/net/eth0/mtu)" \
      "$(ip netns exec "sf-$LAB-$n" cat /sys/class/net/sfvx1000/mtu)" \
      "$(ip netns exec "sf-$LAB-$n" cat /sys/class/net/sfbr1000/mtu)" \
      "$(ip netns exec "sf-$LAB-$n" cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo -)" \
      "$(ip netns exec "sf-$LAB-$n" cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || echo -)"
  done
}
if [ -n "${INVESTIGATE:-}" ]; then
  command -v ethtool >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ethtool >/dev/null
  report_nodes
  NO_NFT=1; rounds no-nftables; NO_NFT=
  brnf_off; rounds no-br-nf; brnf_restore
  notrack_on; rounds notrack; notrack_off
  echo "# after the variants (table back in place on the next agent resync):"
  report_nodes
fi
