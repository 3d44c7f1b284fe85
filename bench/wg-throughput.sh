#!/usr/bin/env bash
# Encrypted overlay throughput: iperf3 from a container on node1 to a container on node2 of a
# shibafu lab over an `--encrypted` network (VXLAN inside WireGuard, the agents' userspace
# backend boringtun-cli), against an anchor in the same session, alternating runs: a hand-built
# boringtun tunnel between two namespaces over a veth (same binary, same options as the agents,
# device MTU 1440, iperf3 straight over the tunnel: no bridge, veth or VXLAN), and kernel
# WireGuard in the same two namespaces when this kernel can create a wireguard link.
#
# Usage (repo root, as root): bench/wg-throughput.sh [rounds 1..10, default 3] [seconds 1..30, default 4]
#   NO_BUILD=1      skip `cargo build --release --workspace --bins` (binaries must be in target/release)
#   LAB=NAME        lab name (default bwg)
#   ONLY=anchor     no lab, no build: only the anchor (and kernel WireGuard if available)
#   BORINGTUN=PATH  boringtun-cli of the anchor (default: the one on PATH, as the agents use)
#
# Each round runs shibafu, anchor, kernel (or kernel, anchor, shibafu on even rounds); prints
# every run, the means, the spread (min-max) and the ratios shibafu / anchor (goal >= 0.9) and
# shibafu / kernel. Gbit/s is iperf3's sum_received. The trap takes the lab down on any exit and
# removes the bench's namespaces (their veth and tun devices go with them), its boringtun
# processes and their sockets. Nothing is configured in the machine's own namespace.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=${1:-3}
S=${2:-4}
LAB=${LAB:-bwg}
ONLY=${ONLY:-}
cd "$ROOT"
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
case "$R$S" in *[!0-9]* | "") echo "rounds and seconds must be numbers" >&2; exit 1 ;; esac
if [ "$R" -lt 1 ] || [ "$R" -gt 10 ] || [ "$S" -lt 1 ] || [ "$S" -gt 30 ]; then
  echo "rounds 1..10, seconds 1..30" >&2; exit 1
fi
case "$ONLY" in "" | anchor) ;; *) echo "ONLY: empty or anchor" >&2; exit 1 ;; esac
BT=${BORINGTUN:-$(command -v boringtun-cli || true)}
[ -x "$BT" ] || { echo "boringtun-cli not found" >&2; exit 1; }
for c in wg iperf3 timeout; do command -v "$c" >/dev/null || { echo "$c not found" >&2; exit 1; }; done
[ -n "$ONLY" ] || [ -n "${NO_BUILD:-}" ] || cargo build --release --workspace --bins

# The anchor's names: unique on the machine (boringtun's socket /var/run/wireguard/<ifname>.sock
# is shared by all namespaces), each at most 15 characters, none a hex string like the agents'.
P=sfwgb
NSA=$P-a-$$ NSB=$P-b-$$          # namespaces
VA=${P}v$$a VB=${P}v$$b          # the veth pair (underlay, MTU 1500)
TA=${P}x$$ TB=${P}y$$            # boringtun devices (MTU 1440)
SOCK=/var/run/wireguard
W=$(mktemp -d /tmp/sfbwg.XXXX)
LAB_STARTED=''
NS_MADE=''
BT_PIDS=()
bt_pids() { pgrep -f "boringtun-cli.* $1\$" || true; } # the process serving device $1
cleanup() {
  local rc=$? n p
  set +e
  if [ -n "$LAB_STARTED" ]; then "$W/bin/shibafu-lab" --name "$LAB" down >"$W/down.log" 2>&1 || cat "$W/down.log" >&2; fi
  while read -r p; do BT_PIDS+=("$p"); done < <(bt_pids "$TA"; bt_pids "$TB")
  for p in "${BT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for ((n = 0; n < 20; n++)); do # bounded: until they have exited (a zombie has no command line)
    for p in "${BT_PIDS[@]}" ""; do [ -n "$p" ] && [ -n "$(tr -d '\0' 2>/dev/null <"/proc/$p/cmdline")" ] && break; done
    [ -n "$p" ] || break
    sleep 0.1
  done
  if [ -n "$NS_MADE" ]; then
    for n in "$NSA" "$NSB"; do
      ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null
    done
    sleep 0.2
    for n in "$NSA" "$NSB"; do
      ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null
      ip netns del "$n" 2>/dev/null
    done
  fi
  for n in "$VA" "$VB"; do ip link show "$n" >/dev/null 2>&1 && ip link del "$n"; done
  rm -f "$SOCK/$TA.sock" "$SOCK/$TB.sock"
  rm -rf "$W"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

gbps() { /usr/bin/python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9,2))'; }
T=$((S + 20)) # bound of one iperf3 run

# --- shibafu: 2-node lab, encrypted network, srv on node2, cli on node1 -------------------------
if [ -z "$ONLY" ]; then
  . bench/lab-lib.sh
  lab_bench_up 2
  SF=$W/bin/shibafu
  on node1 "$SF" network create bench 172.31.0.0/24 --encrypted >/dev/null
  SRV_IP=$(on node2 "$SF" run -d --name srv --network bench -- iperf3 -s | awk '{print $4}')
  on node1 "$SF" run -d --name cli --network bench -- sleep 3600 >/dev/null
  ok=
  end=$((SECONDS + 30))
  while ((SECONDS < end)); do # iperf3 -s listening, tunnels handshaken: bounded wait
    if on node1 "$SF" exec cli ping -c1 -W1 "$SRV_IP" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { echo "cli cannot reach srv ($SRV_IP) within 30 s" >&2; on node1 "$SF" node ls >&2 || true; exit 1; }
  sleep 0.5
fi
run_shibafu() { on node1 timeout "$T" "$SF" exec cli iperf3 -c "$SRV_IP" -t "$S" -J | gbps; }

# --- anchor: boringtun between two namespaces over a veth --------------------------------------
for t in "$TA" "$TB"; do
  [ -z "$(bt_pids "$t")" ] || { echo "a boringtun-cli already serves $t" >&2; exit 1; }
done
ip netns add "$NSA"
NS_MADE=1
ip netns add "$NSB"
ip link add "$VA" netns "$NSA" mtu 1500 type veth peer name "$VB" netns "$NSB" mtu 1500
ip -n "$NSA" addr add 10.250.0.1/24 dev "$VA"
ip -n "$NSB" addr add 10.250.0.2/24 dev "$VB"
for n in "$NSA" "$NSB"; do ip -n "$n" link set lo up; done
ip -n "$NSA" link set "$VA" up
ip -n "$NSB" link set "$VB" up
(umask 077; for k in a b; do wg genkey >"$W/$k.key"; wg pubkey <"$W/$k.key" >"$W/$k.pub"; done)
mkdir -p "$SOCK"
bt_start() { # NS IFNAME: the agents' command line (boringtun daemonizes), wait for its socket
  local ns=$1 t=$2 i
  rm -f "$SOCK/$t.sock"
  ip netns exec "$ns" timeout 10 "$BT" --disable-drop-privileges --log "$W/$t.log" "$t" >"$W/$t.start" 2>&1 ||
    { echo "boringtun-cli $t failed: $(cat "$W/$t.start")" >&2; exit 1; }
  for ((i = 0; i < 100; i++)); do
    [ -S "$SOCK/$t.sock" ] && [ -n "$(bt_pids "$t")" ] && break
    sleep 0.05
  done
  while read -r i; do BT_PIDS+=("$i"); done < <(bt_pids "$t")
  [ -S "$SOCK/$t.sock" ] || { echo "boringtun-cli $t: no socket (log: $(cat "$W/$t.log" 2>/dev/null))" >&2; exit 1; }
}
bt_start "$NSA" "$TA"
bt_start "$NSB" "$TB"
# wg_pair DEVA DEVB PORT NET: keys, peers and addresses NET.1 / NET.2, MTU 1440, up
wg_pair() {
  local da=$1 db=$2 port=$3 net=$4
  ip netns exec "$NSA" wg set "$da" private-key "$W/a.key" listen-port "$port" \
    peer "$(cat "$W/b.pub")" endpoint "10.250.0.2:$port" allowed-ips "$net.2/32"
  ip netns exec "$NSB" wg set "$db" private-key "$W/b.key" listen-port "$port" \
    peer "$(cat "$W/a.pub")" endpoint "10.250.0.1:$port" allowed-ips "$net.1/32"
  ip -n "$NSA" addr add "$net.1/24" dev "$da"
  ip -n "$NSB" addr add "$net.2/24" dev "$db"
  ip -n "$NSA" link set "$da" mtu 1440 up
  ip -n "$NSB" link set "$db" mtu 1440 up
}
wait_ping() { # ADDR: the tunnel handshaken (bounded wait)
  local i
  for ((i = 0; i < 30; i++)); do
    ip netns exec "$NSA" ping -c1 -W1 "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$NSA cannot reach $1 through the tunnel" >&2
  exit 1
}
wg_pair "$TA" "$TB" 51820 10.251.0
wait_ping 10.251.0.2

# --- kernel WireGuard in the same namespaces, if the kernel has it ------------------------------
KERNEL=
if ip -n "$NSA" link add sfwgbt type wireguard 2>/dev/null; then
  ip -n "$NSA" link del sfwgbt
  ip -n "$NSA" link add wgk type wireguard
  ip -n "$NSB" link add wgk type wireguard
  wg_pair wgk wgk 51821 10.252.0
  wait_ping 10.252.0.2
  KERNEL=1
fi

ip netns exec "$NSB" iperf3 -s -D --logfile "$W/iperf3-s.log" # serves both tunnels; dies with the ns
for ((i = 0; i < 50; i++)); do
  ip netns exec "$NSB" ss -Hltn 'sport = :5201' | grep -q . && break
  sleep 0.1
done
anchor_run() { timeout "$T" ip netns exec "$NSA" iperf3 -c "$1" -t "$S" -J | gbps; }
run_anchor() { anchor_run 10.251.0.2; }
run_kernel() { anchor_run 10.252.0.2; }

# --- rounds -------------------------------------------------------------------------------------
echo "# wireguard throughput, $R rounds x $S s, $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo no-git)$(git diff --quiet HEAD 2>/dev/null || echo +dirty), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ -z "$ONLY" ]; then
  MTU=$(on node1 "$SF" exec cli cat /sys/class/net/eth0/mtu)
  echo "# shibafu: cli (node1) -> srv $SRV_IP (node2), network bench --encrypted, container MTU $MTU"
  echo "#   node1 WireGuard device: $(ip -n "sf-$LAB-node1" -o link show type tun | awk '{print $2, $4, $5}' | paste -sd' ')"
  on node1 "$SF" node ls | sed 's/^/#   /'
else
  echo "# shibafu: skipped (ONLY=anchor)"
fi
echo "# anchor: $("$BT" --version) ($BT --disable-drop-privileges), $NSA -> $NSB over a veth (MTU 1500), device MTU 1440"
if [ -n "$KERNEL" ]; then
  echo "# kernel: kernel WireGuard in the same namespaces, device MTU 1440"
else
  echo "# kernel WireGuard: not available here (no module); skipped"
fi
touch "$W/sf" "$W/anchor" "$W/kernel"
for ((r = 1; r <= R; r++)); do
  a=- b=- c=-
  if ((r % 2)); then
    [ -n "$ONLY" ] || a=$(run_shibafu)
    b=$(run_anchor)
    [ -z "$KERNEL" ] || c=$(run_kernel)
  else
    [ -z "$KERNEL" ] || c=$(run_kernel)
    b=$(run_anchor)
    [ -n "$ONLY" ] || a=$(run_shibafu)
  fi
  [ "$a" = - ] || echo "$a" >>"$W/sf"
  echo "$b" >>"$W/anchor"
  [ "$c" = - ] || echo "$c" >>"$W/kernel"
  printf 'round %-3d shibafu %6s Gbit/s   anchor %6s Gbit/s   kernel %6s Gbit/s\n' "$r" "$a" "$b" "$c"
done
stats() { # FILE: "mean min max", or "- - -" when empty
  awk 'NR == 1 { lo = hi = $1 } { s += $1; if ($1 < lo) lo = $1; if ($1 > hi) hi = $1; n++ }
       END { if (n) printf "%.2f %.2f %.2f\n", s / n, lo, hi; else print "- - -" }' "$1"
}
read -r sfm sflo sfhi <<<"$(stats "$W/sf")"
read -r anm anlo anhi <<<"$(stats "$W/anchor")"
read -r kem kelo kehi <<<"$(stats "$W/kernel")"
printf 'mean      shibafu %6s Gbit/s   anchor %6s Gbit/s   kernel %6s Gbit/s\n' "$sfm" "$anm" "$kem"
span() { if [ "$1" = - ]; then echo -; else echo "$1-$2"; fi; }
printf 'spread    shibafu %13s   anchor %13s   kernel %13s\n' "$(span "$sflo" "$sfhi")" "$(span "$anlo" "$anhi")" "$(span "$kelo" "$kehi")"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.3f\n", a / b }'; }
echo "ratio     shibafu / anchor $(ratio "$sfm" "$anm") (goal >= 0.9)   shibafu / kernel $(ratio "$sfm" "$kem")"
