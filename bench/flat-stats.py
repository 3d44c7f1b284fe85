#!/usr/bin/env python3
"""Attach flatness from a times file ("I MICROSECONDS" per line): the time of every hundredth
attach, the median of each hundred, of the first ten and of the last ten, and the last attach
against the first ten's median (issue 16's goal: the 1,000th within 1.2 x). With a second file
("I TICKS" of a process's user + system time, at every hundredth attach), also that process's
CPU time per attach in each hundred. Used by bench/attach-flat.sh and bench/attach-flat-anchors.sh.
With --runs, the times files of several runs (attach-flat.sh's RUNS=K): every run's two ratios,
their median, and in how many runs each is within the goal (counted on the unrounded ratios).

Usage: flat-stats.py TIMES [CPU]
       flat-stats.py --runs TIMES..."""
import os
import re
import statistics
import sys

GOAL = 1.2


def times(path):
    """Every attach's time in ms, in order."""
    return [int(line.split()[1]) / 1000 for line in open(path)]


def ratios(t):
    """The last attach and the median of the last ten, each against the first ten's median."""
    first = statistics.median(t[:10])
    return t[-1] / first, statistics.median(t[-10:]) / first


def runs(paths):
    """Every run's two ratios, summarised; the runs in the order of their files' numbers."""
    paths = sorted((p for p in paths if os.path.exists(p)),
                   key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0))
    if not paths:
        sys.exit("no run finished")
    all_t = [times(p) for p in paths]
    per_run = [ratios(t) for t in all_t]
    n = len(all_t[0])
    for what, col in ((f"attach {n} / first ten", 0), ("last ten / first ten", 1)):
        vals = [r[col] for r in per_run]
        within = sum(v <= GOAL for v in vals)
        print(f"{what} over {len(vals)} runs: " + ", ".join(f"{v:.2f}" for v in vals)
              + f" (median {statistics.median(vals):.3f}; within {GOAL} in {within} of {len(vals)})")


if sys.argv[1:2] == ["--runs"]:
    runs(sys.argv[2:])
    sys.exit(0)

t = times(sys.argv[1])
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
last_one, last_ten = ratios(t)
print(f"median of the first ten {first:.2f} ms, of the last ten {last:.2f} ms")
print(f"attach {n} / first ten's median = {last_one:.2f}; "
      f"last ten / first ten = {last_ten:.2f} (goal <= {GOAL})")
