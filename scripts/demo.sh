#!/usr/bin/env bash
# The shibafu demo on a three-node lab (run by `make demo`, as root, after `make build`).
# Prints what it does as it goes; leaves the lab running for you to explore.
# Later steps (containers, cross-node DNS, isolation, services) extend this script.
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

step "6. The lab's own \"external\" DNS (upstream of every agent)"
at node1 dig +short @"$(lab status --json | sed -n 's/.*"dns_addr": "\([0-9.]*\):.*/\1/p')" www.example.com A

step "7. Node loss: stop node3's agent; its lease expires and the cluster forgets it"
host stop node3
for _ in $(seq 100); do
  on node1 shibafu node ls | grep -q node3 || break
  sleep 0.2
done
at node1 shibafu node ls
host start node3
for _ in $(seq 100); do
  on node1 shibafu node ls | grep -q node3 && break
  sleep 0.2
done
at node1 shibafu node ls

step "Done. The lab '$LAB' keeps running:"
cat <<EOF
  $BIN/shibafu-lab --name $LAB status
  $BIN/shibafu-lab --name $LAB exec node2 -- shibafu network ls
  $BIN/shibafu-lab --name $LAB exec node1 -- bash        # a shell on node1
  $BIN/shibafu-lab --name $LAB partition node2            # cut node2 off; heal node2 restores it
  logs: $(lab status --json | sed -n 's/.*"dir": "\(.*\)".*/\1/p')/logs/
Stop it with: make demo-down
EOF
