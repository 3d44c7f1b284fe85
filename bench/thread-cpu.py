#!/usr/bin/env python3
"""CPU per attach of each agent thread, from the samples attach-flat.sh takes with THREADS=1
(lines "I TID NANOSECONDS COMM" at every hundredth attach I, NANOSECONDS the thread's time on a
CPU from /proc/PID/task/TID/schedstat): in the second hundred and in the last (issue 16: which
of the agent's threads grows with the containers). The agent's own threads are named by what
they run: its first thread serves requests (API, registry, firewall), its first actix arbiter
owns the dataplane, its second DNS (the order the agent starts them in).

Usage: thread-cpu.py THREADS N"""
import sys
from collections import defaultdict

path, n = sys.argv[1], int(sys.argv[2])
at = defaultdict(dict)
comm = {}
for line in open(path):
    i, tid, ns, name = line.split()
    at[int(i)][int(tid)] = int(ns)
    comm[int(tid)] = name
roles = {}
arbiters = ["dataplane", "dns"]
for tid in sorted(comm):
    if comm[tid] == "shibafu-agent":
        roles[tid] = "requests"
    elif comm[tid].startswith("actix-rt") and arbiters:
        roles[tid] = arbiters.pop(0)
    else:
        roles[tid] = comm[tid]


def per_attach(a, b):
    """Each role's CPU per attach between samples a and b, in ms (threads of one role summed)."""
    out = defaultdict(float)
    for tid, ns in at[b].items():
        out[roles[tid]] += (ns - at[a].get(tid, 0)) / (b - a) / 1e6
    return out


early, late = per_attach(100, 200), per_attach(n - 100, n)
for role in sorted(set(early) | set(late), key=lambda r: -late.get(r, 0)):
    e, l = early.get(role, 0.0), late.get(role, 0.0)
    if e >= 0.005 or l >= 0.005:
        print(f"agent thread {role}: CPU per attach, attaches 101-200 {e:.2f} ms, "
              f"{n - 99}-{n} {l:.2f} ms")
