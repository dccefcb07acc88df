#!/usr/bin/env python3
"""Import and export of a big table (issue 19), end to end through the API.

1. A server with an empty table `imp` (name text, v number scale 2, n number
   scale 0) and a CSV file of ROWS rows made here: ROWS/1000 parents, the
   rest leaves under them, every leaf BEFORE its parent in the file (the
   order the import has to fix), values random decimals.
2. POST /tables/imp/import?format=csv, sync: timed from the first byte sent
   to the answer (the server reads the body, DuckDB parses it, every value
   is checked, the rows are ordered, queued as one request, applied by the
   manager, and the outcome published).
3. GET /tables/imp/export?format=csv|parquet|json: timed to the last byte.
4. The Parquet file imported again into an empty table `imp2`, and its CSV
   export compared with the first (the round trip is exact).

    python3 bench/import_export.py [--build build] [--rows 1000000] [--lease-ms MS] [--redis-timeout-ms MS]

The server runs with its default lease and Redis timeout unless those are given.
Prints one line per figure and one JSON object at the end. No figure is
asserted: the targets (issue 19: import of 1M rows <= 10 s, export <= 2 s)
are compared by the reader.
"""
import argparse
import http.client
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dgbench as B  # noqa: E402

COLUMNS = [{"name": "name", "type": "text"}, {"name": "v", "type": "number", "scale": 2},
           {"name": "n", "type": "number", "scale": 0}]


def make_csv(rows, seed=19):
    """id,parent_id,name,v,n with each parent after its children."""
    rnd = random.Random(seed)
    parents = max(1, rows // 1000)
    leaves = rows - parents
    out = ["id,parent_id,name,v,n\r\n"]
    next_leaf = parents + 1
    for p in range(1, parents + 1):
        for _ in range(leaves // parents + (1 if p <= leaves % parents else 0)):
            out.append(f"{next_leaf},{p},\"leaf {next_leaf}, of {p}\",{rnd.randrange(0, 10**7) / 100:.2f},"
                       f"{rnd.randrange(-50, 50)}\r\n")
            next_leaf += 1
        out.append(f"{p},,parent {p},,\r\n")
    return "".join(out).encode()


def timed(srv, method, path, body=None, ctype=None):
    """(seconds to the last byte, status, body)."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=900)
    h = {"Authorization": "Bearer " + srv.key}
    if ctype:
        h["Content-Type"] = ctype
    t0 = time.monotonic()
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return time.monotonic() - t0, r.status, data
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--lease-ms", default="", help="DUCKGRID_LEASE_MS for the server (default: its own)")
    ap.add_argument("--redis-timeout-ms", default="",
                    help="DUCKGRID_REDIS_TIMEOUT_MS for the server (default: its own)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    wd = B.Workdir(keep=os.environ.get("BENCH_KEEP") == "1")
    redis = srv = None
    out = {"rows": a.rows}
    try:
        t0 = time.monotonic()
        csv = make_csv(a.rows)
        out["csv_bytes"] = len(csv)
        print(f"made a CSV of {a.rows} rows, {len(csv) / 1e6:.1f} MB, in {time.monotonic() - t0:.1f} s", flush=True)
        redis = B.Redis(wd.path).start()
        srv = B.Server(os.path.join(build, "duckgrid"), redis, wd.path,
                       env={"DUCKGRID_BODY_LIMIT": str(1 << 30), "DUCKGRID_SYNC_TIMEOUT_MS": "600000",
                            "DUCKGRID_LOG_LEVEL": "info",
                            **({"DUCKGRID_LEASE_MS": a.lease_ms} if a.lease_ms else {}),
                            **({"DUCKGRID_REDIS_TIMEOUT_MS": a.redis_timeout_ms} if a.redis_timeout_ms else {})}).start()
        for t in ("imp", "imp2"):
            srv.ok("POST", "/tables", {"name": t, "columns": COLUMNS})

        s, st, body = timed(srv, "POST", "/tables/imp/import?format=csv", csv, "text/csv")
        if st != 201:
            raise RuntimeError(f"import: {st} {body[:400]!r}")
        got = json.loads(body)
        assert got["imported"] == a.rows, got
        out["import_csv_s"] = round(s, 2)
        print(f"RESULT import csv: {a.rows} rows in {s:.2f} s ({a.rows / s:,.0f} rows/s)", flush=True)

        # A read reflects every write answered before it, so this one waits
        # until the manager has written the import behind into DuckDB.
        s2, st, body = timed(srv, "GET", "/tables/imp")
        assert st == 200 and json.loads(body)["row_count"] == a.rows, body[:200]
        out["import_csv_in_duckdb_s"] = round(s + s2, 2)
        print(f"RESULT import csv, in DuckDB (the next read sees it): {s + s2:.2f} s", flush=True)

        exports = {}
        # Each format twice: the first read after the import also pays for
        # DuckDB's first scan of the new rows.
        for fmt in ("csv", "parquet", "json", "csv", "parquet", "json"):
            s, st, body = timed(srv, "GET", f"/tables/imp/export?format={fmt}")
            if st != 200:
                raise RuntimeError(f"export {fmt}: {st} {body[:400]!r}")
            again = fmt in exports
            assert not again or body == exports[fmt] or fmt == "parquet"
            exports[fmt] = body
            out[f"export_{fmt}{'_again' if again else ''}_s"] = round(s, 2)
            out[f"export_{fmt}_bytes"] = len(body)
            print(f"RESULT export {fmt}{' again' if again else ''}: {a.rows} rows, {len(body) / 1e6:.1f} MB in {s:.2f} s",
                  flush=True)

        s, st, body = timed(srv, "POST", "/tables/imp2/import?format=parquet", exports["parquet"],
                            "application/vnd.apache.parquet")
        if st != 201:
            raise RuntimeError(f"import parquet: {st} {body[:400]!r}")
        out["import_parquet_s"] = round(s, 2)
        print(f"RESULT import parquet: {a.rows} rows in {s:.2f} s ({a.rows / s:,.0f} rows/s)", flush=True)
        s2, st, body = timed(srv, "GET", "/tables/imp2")
        out["import_parquet_in_duckdb_s"] = round(s + s2, 2)
        _, st, again = timed(srv, "GET", "/tables/imp2/export?format=csv")
        out["round_trip_identical"] = st == 200 and again == exports["csv"]
        print(f"round trip (export parquet -> import -> export csv) identical: {out['round_trip_identical']}")
        out["server_rss_mb"] = round(B.rss_kb(srv.pid) / 1024)
        out["redis_rss_mb"] = round(B.rss_kb(redis.proc.pid) / 1024)
        print(json.dumps(out))
    finally:
        if srv:
            srv.stop()
        if redis:
            redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
