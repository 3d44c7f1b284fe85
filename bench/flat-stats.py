#!/usr/bin/env python3
"""Attach flatness from a times file ("I MICROSECONDS" per line): the time of every hundredth
attach, the median of each hundred, of the first ten and of the last ten, and the last attach
against the first ten's median (issue 16's goal: the 1,000th within 1.2 x). With a second file
("I TICKS" of a process's user + system time, at every hundredth attach), also that process's
CPU time per attach in each hundred. Used by bench/attach-flat.sh and bench/attach-flat-anchors.sh.

Usage: flat-stats.py TIMES [CPU]"""
import os
import statistics
import sys

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
      f"last ten / first ten = {last / first:.2f} (goal <= 1.2)")
