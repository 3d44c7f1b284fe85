#!/usr/bin/env bash
# The Linux bridge alone, no shibafu: N veth ports added to one bridge in a scratch namespace
# (IPv6 off, as on shibafu's host ends), each `link add` + `master` + `up` of both ends (both
# stay in the namespace), 100 at a time through one `ip -batch`; prints the time per port of
# each hundred. How much of attach-flat's growth any bridge-based runtime pays (issue 16,
# docs/bench-scale.md).
#
# Usage (repo root, as root): bench/bridge-ports.sh [N, default 1000]
#   BRARGS="mcast_snooping 0"   extra options of the bridge (which has a fixed address, as
#                               shibafu's: it never takes one from its ports)
#   PORT_MAC=bridge             every port carries the bridge's MAC (as shibafu's host ends do:
#                               the bridge then keeps no local forwarding entry per port)
#   VXFDB=K                     first a VXLAN port with K static forwarding entries (remote
#                               endpoints, as shibafu adds them), which every new port walks
#   V6=none                     IPv6 on, each end without a link-local (`addrgenmode none`, as
#                               shibafu's host ends before change 25 of docs/bench-scale.md;
#                               two interfaces with IPv6 a port here, one in shibafu's host)
# Everything lives in namespace sfbrports, removed at the end (trap).
set -euo pipefail
N=${1:-1000}
case $N in '' | *[!0-9]*) echo "N must be a number" >&2; exit 1 ;; esac
[ "$N" -ge 100 ] && [ "$N" -le 4000 ] || { echo "N must be 100..4000" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
NS=sfbrports BATCH=$(mktemp)
trap 'ip netns del "$NS" 2>/dev/null || true; rm -f "$BATCH"' EXIT
ip netns add "$NS"
case ${V6:-off} in
  off) ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 ;;
  none) ;;
  *) echo "V6 must be off or none" >&2; exit 1 ;;
esac
BRMAC=02:73:66:00:00:01
# shellcheck disable=SC2086 # BRARGS holds several words
ip -n "$NS" link add br0 address "$BRMAC" type bridge ${BRARGS:-}
ip -n "$NS" link set br0 up
PORT_ADDR=
[ "${PORT_MAC:-}" = bridge ] && PORT_ADDR="address $BRMAC"
K=${VXFDB:-0}
case $K in '' | *[!0-9]*) echo "VXFDB must be a number" >&2; exit 1 ;; esac
if [ "$K" -gt 0 ]; then
  ip -n "$NS" link add sfbpu0 type veth peer name sfbpu1
  ip -n "$NS" addr add 10.99.0.1/24 dev sfbpu0
  ip -n "$NS" link set sfbpu0 up
  ip -n "$NS" link add vx0 type vxlan id 42 local 10.99.0.1 dstport 4789 nolearning
  ip -n "$NS" link set vx0 master br0
  ip -n "$NS" link set vx0 up
  for i in $(seq 1 "$K"); do
    printf 'fdb add 02:aa:%02x:%02x:%02x:01 dev vx0 master static\n' $((i >> 16 & 255)) $((i >> 8 & 255)) $((i & 255))
  done >"$BATCH"
  bridge -n "$NS" -batch "$BATCH"
fi
out=""
for b in $(seq 0 $((N / 100 - 1))); do
  for i in $(seq $((b * 100)) $((b * 100 + 99))); do
    echo "link add v$i $PORT_ADDR type veth peer name p$i"
    [ "${V6:-off}" = off ] || printf 'link set v%s addrgenmode none\nlink set p%s addrgenmode none\n' "$i" "$i"
    echo "link set v$i master br0"
    echo "link set v$i up"
    echo "link set p$i up"
  done >"$BATCH"
  s=$(date +%s%N)
  ip -n "$NS" -batch "$BATCH"
  e=$(date +%s%N)
  out="$out $(((e - s) / 100000))"
done
echo "bridge ports: microseconds per port, per hundred:$out"
