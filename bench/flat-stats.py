#!/usr/bin/env python3
"""Attach flatness from a times file ("I MICROSECONDS" per line): the time of every hundredth
attach, the median of each hundred, of the first ten and of the last ten, and the last attach
against the first ten's median (issue 16's goal: the 1,000th within 1.2 x). With a second file
("I TICKS" of a process's user + system time, at every hundredth attach), also that process's
CPU time per attach in each hundred. Used by bench/attach-flat.sh and bench/attach-flat-anchors.sh.
With --runs, summarises the log of several runs (attach-flat.sh's RUNS=K): every run's two ratios,
their median, and in how many runs each is within the goal.

Usage: flat-stats.py TIMES [CPU]
       flat-stats.py --runs LOG"""
import os
import re
import statistics
import sys

GOAL = 1.2


def runs(log):
    """Every run's "attach N / first ten" and "last ten / first ten", summarised."""
    pat = re.compile(r"attach (\d+) / first ten's median = ([\d.]+); last ten / first ten = ([\d.]+)")
    found = [m.groups() for m in map(pat.search, open(log)) if m]
    if not found:
        sys.exit("no run finished")
    n = found[0][0]
    for what, col in ((f"attach {n} / first ten", 1), ("last ten / first ten", 2)):
        vals = [float(f[col]) for f in found]
        within = sum(v <= GOAL for v in vals)
        print(f"{what} over {len(vals)} runs: " + ", ".join(f"{v:.2f}" for v in vals)
              + f" (median {statistics.median(vals):.2f}; within {GOAL} in {within} of {len(vals)})")


if sys.argv[1:2] == ["--runs"]:
    runs(sys.argv[2])
    sys.exit(0)

t = [int(line.split()[1]) / 1000 for line in open(sys.argv[1])]
n = len(t)
first, last = statistics.median(t[:10]), statistics.median(t[-10:])
for i in [1, 10] + list(range(100, n + 1, 100)):
    if i <= n:
        print(f"attach {i:5d}  {t[i - 1]:7.2f} ms")
hundreds = [statistics.median(t[i:i + 100]) for i in range(0, n, 100)]
print("median of each hundred: " + " ".join(f"{m:.2f}" for m in hundreds) + " ms")
if len(sys.argv) > 2:
    cpu = [tuple(map(int, line.split())) for line in open(sys.argv[2])]
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    per = [(b[1] - a[1]) * tick_ms / (b[0] - a[0]) for a, b in zip(cpu, cpu[1:])]
    if per:
        print("agent CPU per attach, each hundred: " + " ".join(f"{c:.2f}" for c in per) + " ms")
print(f"median of the first ten {first:.2f} ms, of the last ten {last:.2f} ms")
print(f"attach {n} / first ten's median = {t[-1] / first:.2f}; "
      f"last ten / first ten = {last / first:.2f} (goal <= {GOAL})")
