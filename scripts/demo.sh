#!/usr/bin/env bash
# The shibafu demo on a three-node lab (run by `make demo`, as root, after `make build`).
# Prints what it does as it goes; leaves the lab running for you to explore.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${SHIBAFU_BIN_DIR:-$PWD/target/debug}
export SHIBAFU_BIN_DIR=$BIN
LAB=${SHIBAFU_LAB:-demo}
lab() { "$BIN/shibafu-lab" --name "$LAB" "$@"; }
# on NODE CMD...: run CMD inside a lab node, quietly (for polling loops).
on() { local node=$1; shift; lab exec "$node" -- "$@"; }
# at NODE CMD...: show the command as typed on that node, then run it there.
at() { local node=$1; shift; printf '\033[2m%s$ %s\033[0m\n' "$node" "$*"; on "$node" "$@"; }
# host CMD...: show a shibafu-lab command, then run it.
host() { printf '\033[2m$ shibafu-lab %s\033[0m\n' "$*"; lab "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

for b in shibafu shibafu-agent shibafu-coordinator shibafu-lab; do
  [ -x "$BIN/$b" ] || { echo "demo: $BIN/$b missing: run 'make build' first" >&2; exit 1; }
done

step "1. A three-node lab: namespaces as hosts, one underlay switch, etcd, coordinator, agents"
if lab status >/dev/null 2>&1; then
  echo "a lab named '$LAB' is already up: removing it first"
  lab down
fi
host up --nodes 3

step "2. Networks, created through the coordinator from node1 (as in the phase plan)"
at node1 shibafu network create frontend 172.21.0.0/24
at node1 shibafu network create backend 172.22.0.0/24
at node1 shibafu network create database 172.23.0.0/24 --internal

step "3. The cluster as seen from node2"
at node2 shibafu network ls
at node2 shibafu node ls

step "4. Every agent sees every network (each node's local agent API)"
for n in node1 node2 node3; do
  sock="$(lab status --json | sed -n 's/.*"dir": "\(.*\)".*/\1/p')/nodes/$n/agent.sock"
  nets=""
  for _ in $(seq 50); do
    nets=$(on "$n" curl -sf --unix-socket "$sock" http://agent/v1/networks \
      | grep -o '"name":"[a-z0-9-]*"' | cut -d'"' -f4 | sort | tr '\n' ' ')
    [ "$(echo "$nets" | wc -w)" -ge 3 ] && break
    sleep 0.1
  done
  echo "$n sees: $nets"
done

step "5. Bad input is refused with a clear message and changes nothing"
at node1 shibafu network create overlap 172.21.0.0/16 || true
at node1 shibafu network create Bad_Name 172.30.0.0/24 || true

step "6. Containers spread over the nodes (veth + IPAM + VXLAN between nodes)"
at node3 shibafu run -d --name postgres --network backend --network database -- sleep infinity
at node1 shibafu run -d --name api --network backend --network frontend -- sleep infinity
at node2 shibafu run -d --name client --network frontend -- sleep infinity
at node1 shibafu ps

step "7. api on node1 resolves and pings postgres on node3, by name"
at node1 shibafu exec api nslookup postgres.backend.local
at node1 shibafu exec api ping -c2 postgres

step "8. Isolation: client (frontend only) neither sees nor reaches backend"
at node2 shibafu exec client nslookup postgres.backend.local || true
pg=$(on node3 shibafu ps --format json | jq -r '.[] | select(.name == "postgres") | .interfaces[] | select(.network == "backend") | .ipv4')
at node2 shibafu exec client ping -c1 -W1 "$pg" || echo "   (blocked, as it should be)"
at node1 shibafu network connect-networks frontend backend
at node2 shibafu exec client ping -c1 -W1 "$pg"
at node1 shibafu network isolate frontend backend
at node2 shibafu exec client ping -c1 -W1 "$pg" || echo "   (blocked again)"

step "9. A service: three instances of web, one per node, answering the client in turn"
for i in 1 2 3; do
  at node$i shibafu run -d --name web$i --network frontend --service web --port 80 -- \
    sh -c "mkdir -p /tmp/shibafu-demo/web$i && echo 'hello from web$i on node$i' > /tmp/shibafu-demo/web$i/index.html && exec busybox httpd -f -p 80 -h /tmp/shibafu-demo/web$i"
done
at node2 shibafu exec client dig +short web.frontend.local
at node2 shibafu exec client dig +short _web._tcp.frontend.local SRV
echo "The answer rotates: each query lists another instance first. (glibc's getaddrinfo re-sorts"
echo "addresses by RFC 6724 longest-prefix match, so curl by name would keep picking the nearest"
echo "address; take the DNS answer's order instead:)"
for _ in 1 2 3 4 5 6; do
  at node2 shibafu exec client sh -c 'curl -s --max-time 2 "http://$(dig +short web.frontend.local | head -1)/"'
done

step "10. Names outside the cluster go to the lab's upstream DNS"
at node2 shibafu exec client dig +short www.example.com

step "11. Node loss: stop node3's agent; its lease expires and postgres stops resolving"
host stop node3
for _ in $(seq 100); do
  on node1 shibafu node ls | grep -q node3 || break
  sleep 0.2
done
at node1 shibafu node ls
at node1 shibafu exec api nslookup postgres.backend.local || true
host start node3
for _ in $(seq 100); do
  on node1 shibafu exec api nslookup postgres.backend.local >/dev/null 2>&1 && break
  sleep 0.2
done
echo "node3 is back; its running containers are announced again:"
at node1 shibafu exec api ping -c1 postgres

step "Done. The lab '$LAB' keeps running:"
cat <<EOF
  $BIN/shibafu-lab --name $LAB status
  $BIN/shibafu-lab --name $LAB exec node2 -- shibafu network ls
  $BIN/shibafu-lab --name $LAB exec node1 -- shibafu exec api sh   # a shell in container api
  $BIN/shibafu-lab --name $LAB exec node1 -- bash        # a shell on node1
  $BIN/shibafu-lab --name $LAB partition node2            # cut node2 off; heal node2 restores it
  logs: $(lab status --json | sed -n 's/.*"dir": "\(.*\)".*/\1/p')/logs/
Stop it with: make demo-down
EOF
