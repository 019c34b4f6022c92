#!/usr/bin/env python3
"""Pre-builds request bodies for bench/ingest_wrk.sh: line protocol (1,000 Arc-shaped
lines per body) or Arc columnar MessagePack (RECORDS per body); every record has a
unique (host, time). Usage: wrk_bodies.py lp|msgpack DIR BODIES RECORDS"""
import sys
from pathlib import Path

import msgpack

fmt, out, nbodies, per = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out.mkdir(parents=True, exist_ok=True)
start = 1_700_000_000_000_000_000
for b in range(nbodies):
    ks = range(b * per, (b + 1) * per)
    if fmt == "lp":
        text = "\n".join(f"cpu,host=server{k % 100:02} value={k % 1000 / 10},cpu_idle={100 - k % 1000 / 10},"
                         f"cpu_user={k % 1000 / 20} {start + k * 1000}" for k in ks)
        data = text.encode()
    else:
        data = msgpack.packb({"m": "cpu", "columns": {
            "time": [start + k * 1000 for k in ks], "host": [f"server{k % 100:02}" for k in ks],
            "value": [k % 1000 / 10 for k in ks], "cpu_idle": [100 - k % 1000 / 10 for k in ks],
            "cpu_user": [k % 1000 / 20 for k in ks]}})
    (out / f"body-{b}").write_bytes(data)
