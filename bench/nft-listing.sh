#!/usr/bin/env bash
# What nft costs as the source guard's sets grow: a bridge table shaped like the guard, with
# N ports in its sets, in a scratch namespace; one `nft -t -i` takes 200 listings of the table
# (what the firewall's table check does) and, on a fresh table, 200 element adds (what an attach
# does); prints the mean of each. Issue 16, docs/bench-scale.md change 13.
#
# Usage (as root): bench/nft-listing.sh [N ...]   (default: 10 1000 3000)
# Everything lives in namespace sfnftlist, removed at the end (trap).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
NS=sfnftlist
trap 'ip netns del "$NS" 2>/dev/null || true' EXIT
ip netns add "$NS"
python3 - "$NS" "${@:-10 1000 3000}" <<'PY'
import os, subprocess, sys, time
ns = sys.argv[1]
sizes = [int(n) for a in sys.argv[2:] for n in a.split()]
def table(n):
    ports = ", ".join('"p%d"' % i for i in range(n))
    macs = ", ".join('"p%d" . 02:00:00:00:%02x:%02x' % (i, i // 256, i % 256) for i in range(n))
    v4 = ", ".join('"p%d" . 10.77.%d.%d' % (i, i // 256, i % 256) for i in range(n))
    el = lambda e: f"elements = {{ {e} }}" if n else ""
    return f"""table bridge shibafu {{
 set ports {{ type ifname; {el(ports)} }}
 set macs {{ type ifname . ether_addr; {el(macs)} }}
 set addrs4 {{ type ifname . ipv4_addr; {el(v4)} }}
 chain prerouting {{ type filter hook prerouting priority filter; policy accept; iifname != @ports accept comment "x"; }}
}}
"""
def per_command(n, command, k=200):
    subprocess.run(["ip", "netns", "exec", ns, "nft", "flush", "ruleset"], check=True)
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=table(n).encode(), check=True)
    p = subprocess.Popen(["ip", "netns", "exec", ns, "nft", "-t", "-i"], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=dict(os.environ, HOME="/nonexistent"))
    p.stdin.write(b"list tables\n"); p.stdin.flush(); time.sleep(0.3)
    lines = b"".join((command(i) + "\nsfend%d\n" % i).encode() for i in range(k))
    start = time.time(); p.stdin.write(lines); p.stdin.close(); p.wait()
    return (time.time() - start) / k * 1e3
for n in sizes:
    listing = per_command(n, lambda i: "list table bridge shibafu")
    add = per_command(n, lambda i: 'add element bridge shibafu ports { "q%d" }; '
                      'add element bridge shibafu addrs4 { "q%d" . 10.99.%d.%d }' % (i, i, i // 256, i % 256))
    print(f"{n:6d} ports: list table {listing:7.3f} ms, element add {add:6.3f} ms")
PY
