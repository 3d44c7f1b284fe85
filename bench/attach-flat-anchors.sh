#!/usr/bin/env bash
# Attach flatness of the anchors, for bench/attach-flat.sh's figure: the tools of
# ../shared/bench/attach-anchors.sh (netavark, the Podman backend, with its default firewall
# driver; the CNI reference bridge plugin with host-local IPAM and ipMasq) attach N fresh
# container namespaces one after the other, none removed, to one bridge network in a private
# host namespace, each a whole process as its runtime calls it, with the anchors' own network
# settings on a /22 (10.77.0.0/22, the gateway .1) so 1,000 containers fit. Prints what
# attach-flat.sh prints (bench/flat-stats.py): the median of each hundred, of the first ten and
# of the last ten, and the last attach against the first ten's median (issue 16's goal for
# shibafu: the 1,000th within 1.2 x).
#
# Each tool's loop runs inside one `ip netns exec` of the host namespace, so every attach is a
# plain process there: `ip netns exec` around each attach would add its own cost, which grows
# with the namespaces mounted (attach-flat.sh calls shibafu's CLI directly for the same reason).
#
# netavark would tell a running firewalld (over the system D-Bus, which `ip netns exec` does not
# isolate) to trust the bench's subnet in the machine's own firewall: the loops run with the
# system bus pointed nowhere, so everything they change stays in the host namespace.
#
# Usage (repo root, as root): bench/attach-flat-anchors.sh [N, default 1000] [TOOLS]
#   TOOLS: "netavark cni-bridge" (default) or either one
# Everything lives in namespaces named sfaflat* and one temp dir, removed at the end (trap).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${1:-1000}
TOOLS=${2:-netavark cni-bridge}
case $N in '' | *[!0-9]*) echo "N must be a number" >&2; exit 1 ;; esac
[ "$N" -ge 20 ] && [ "$N" -le 1000 ] || { echo "N must be 20..1000" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -x /usr/lib/podman/netavark ] && [ -x /usr/lib/cni/bridge ] && command -v iptables >/dev/null ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq netavark containernetworking-plugins iptables >/dev/null
H=sfaflathost W=$(mktemp -d /tmp/sfaflat.XXXX)
clean_namespaces() {
  local i
  for i in $(seq 1 "$N"); do ip netns del "sfaflat$i" 2>/dev/null || true; done
  ip netns pids "$H" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$H" 2>/dev/null || true
}
trap 'clean_namespaces; rm -rf "$W"' EXIT
fresh() {
  clean_namespaces
  ip netns add "$H"
  ip -n "$H" link set lo up
  local i
  for i in $(seq 1 "$N"); do ip netns add "sfaflat$i"; done
}
# 10.77.0.0/22: container I gets the I+1-th address (the gateway is .1).
addr() { echo "10.77.$((($1 + 1) / 256)).$((($1 + 1) % 256))"; }

# The per-tool loops, run inside the host namespace: one attach per container, timed alone.
cat >"$W/netavark.sh" <<'EOF'
for i in $(seq 1 "$N"); do
  t0=$(date +%s%N)
  /usr/lib/podman/netavark --config "$W/nav" setup "/run/netns/sfaflat$i" <"$W/na$i.json" >/dev/null 2>"$W/err" ||
    { echo "netavark attach $i failed: $(cat "$W/err")" >&2; exit 1; }
  t1=$(date +%s%N)
  echo "$i $(((t1 - t0) / 1000))"
done
EOF
cat >"$W/cni-bridge.sh" <<'EOF'
for i in $(seq 1 "$N"); do
  t0=$(date +%s%N)
  CNI_COMMAND=ADD CNI_CONTAINERID="c$i" CNI_NETNS="/run/netns/sfaflat$i" CNI_IFNAME=eth0 \
    CNI_PATH=/usr/lib/cni /usr/lib/cni/bridge <"$W/cni.json" >/dev/null 2>"$W/err" ||
    { echo "cni-bridge attach $i failed: $(cat "$W/err")" >&2; exit 1; }
  t1=$(date +%s%N)
  echo "$i $(((t1 - t0) / 1000))"
done
EOF
for i in $(seq 1 "$N"); do
  cat >"$W/na$i.json" <<J
{"container_id":"c$i","container_name":"c$i","networks":{"bench":{"interface_name":"eth0","static_ips":["$(addr "$i")"]}},
 "network_info":{"bench":{"dns_enabled":false,"driver":"bridge","id":"b$(printf '%063d' 1)","internal":false,"ipv6_enabled":false,
 "name":"bench","network_interface":"sfbench0","subnets":[{"gateway":"10.77.0.1","subnet":"10.77.0.0/22"}]}}}
J
done
cat >"$W/cni.json" <<J
{"cniVersion":"1.0.0","name":"bench","type":"bridge","bridge":"sfbench0","isGateway":true,"ipMasq":true,
 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.77.0.0/22","gateway":"10.77.0.1"}]],"dataDir":"$W/ipam"}}
J
echo "# anchors' attach flatness, N=$N, $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for tool in $TOOLS; do
  [ -f "$W/$tool.sh" ] || { echo "unknown tool $tool (netavark, cni-bridge)" >&2; exit 1; }
  fresh
  rm -rf "$W/nav" "$W/ipam"
  echo "## $tool"
  ip netns exec "$H" env N="$N" W="$W" DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent \
    bash "$W/$tool.sh" >"$W/$tool.times"
  python3 "$ROOT/bench/flat-stats.py" "$W/$tool.times"
done
