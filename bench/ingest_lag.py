"""Write-to-visible lag: write one point, then at once query for it from a second
HTTP client; the point must be there on the first try (Pond acknowledges only
after the rows are in the hot store every query reads). Prints attempts,
misses and the write/query latencies.

    .venv/bin/python bench/ingest_lag.py http://127.0.0.1:8000 PASSWORD [N]
"""

import statistics
import sys
import time

import requests

url, password = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
tok = requests.post(f"{url}/api/v1/auth/login", auth=("admin", password)).json()["token"]
w, q = requests.Session(), requests.Session()
h = {"Authorization": f"Bearer {tok}"}
w.post(f"{url}/api/v3/write_lp?db=lag&precision=ns", data="lag v=-1i 1", headers=h).raise_for_status()
misses, wl, ql = 0, [], []
for i in range(n):
    t0 = time.perf_counter()
    r = w.post(f"{url}/api/v3/write_lp?db=lag&precision=ns", data=f"lag v={i}i {i + 10}", headers=h)
    t1 = time.perf_counter()
    assert r.status_code == 204, r.text
    rows = q.post(f"{url}/api/v1/query", headers=h, json={"sql": f"SELECT count(*) FROM lag.main.lag WHERE v = {i}"}).json()["data"]
    t2 = time.perf_counter()
    misses += rows[0][0] != 1
    wl.append((t1 - t0) * 1e3)
    ql.append((t2 - t1) * 1e3)
print({"writes": n, "not_visible_on_first_query": misses, "write_ack_ms_p50": round(statistics.median(wl), 3),
       "query_ms_p50": round(statistics.median(ql), 3)})
