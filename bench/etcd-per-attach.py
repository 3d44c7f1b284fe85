#!/usr/bin/env python3
"""etcd's load per attach from the /metrics snapshots attach-flat.sh takes with ETCD=1 (files
DIR/etcd.I after attach I = 100, 200, N-100, N): bytes sent to its clients and database growth
per attach, in the second hundred and in the last (issue 16: what grows with the containers).

Usage: etcd-per-attach.py DIR N"""
import sys

SERIES = {
    "etcd_network_client_grpc_sent_bytes_total": "bytes sent to clients",
    "etcd_mvcc_db_total_size_in_bytes": "database growth, bytes",
}


def load(path):
    out = {}
    for line in open(path):
        name, _, value = line.rpartition(" ")
        if name in SERIES:
            out[name] = float(value)
    return out


d, n = sys.argv[1], int(sys.argv[2])
a, b, c, e = (load(f"{d}/etcd.{i}") for i in (100, 200, n - 100, n))
for name, what in SERIES.items():
    print(f"etcd per attach, {what}: attaches 101-200 {(b[name] - a[name]) / 100:.0f}, "
          f"{n - 99}-{n} {(e[name] - c[name]) / 100:.0f}")
