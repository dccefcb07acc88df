#!/usr/bin/env python3
"""RSS of duckgrid holding an unpersisted tail of N requests (issue 12).

The persister is held back (DUCKGRID_PERSIST_INTERVAL_MS=60000, a huge
DUCKGRID_PERSIST_MAX), N async update_cell requests are applied, and the
server's RSS is read while they are all still unpersisted (pending in the
consumer group), then again after a read has forced them into DuckDB.

    python3 bench/tail_rss.py [--build build] [--count 200000]
Prints one JSON object.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dgbench as B  # noqa: E402


def pending(redis):
    out = redis.cli("XINFO", "GROUPS", "request_duck").split("\n")
    return int(out[out.index("pending") + 1]) if "pending" in out else -1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--count", type=int, default=200000)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    wd = B.Workdir()
    redis = srv = None
    try:
        redis = B.Redis(wd.path).start()
        srv = B.Server(os.path.join(build, "duckgrid"), redis, wd.path, env={
            "DUCKGRID_PERSIST_INTERVAL_MS": "60000", "DUCKGRID_PERSIST_MAX": "10000000",
            "DUCKGRID_TAIL_MAX": str(a.count + 10000)}).start()
        B.create_table(srv, "bench")
        levels, _ = B.load_tree(srv, "bench", [10, 100, 10])
        time.sleep(1.5)  # the load is persisted (a read asked) and checkpointed
        srv.request("GET", "/tables/bench/rows?limit=1")
        rss0 = B.rss_kb(srv.pid)
        t0 = time.monotonic()
        p = subprocess.run([os.path.join(build, "bench_load"), "--port", str(srv.port), "--key", srv.key,
                            "--table", "bench", "--leaf", f"{levels[2][0]}:{levels[2][1]}",
                            "--mid", f"{levels[1][0]}:{levels[1][1]}", "--mid-pct", "10",
                            "--target", "async", "--conns", "32", "--count", str(a.count), "--drain", "120",
                            "--redis", redis.url, "--res-stream", "response_duck"],
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-2000:])
        r = json.loads(p.stdout)
        took = time.monotonic() - t0
        tail = pending(redis)
        rss_tail = B.rss_kb(srv.pid)
        t1 = time.monotonic()
        srv.request("GET", "/tables/bench/rows?limit=1", timeout=120)  # forces the persist
        persist_s = time.monotonic() - t1
        time.sleep(2)
        rss_after = B.rss_kb(srv.pid)
        print(json.dumps({"requests": a.count, "applied_all": r.get("applied_all"), "load_s": round(took, 1),
                          "unpersisted_tail_at_measure": tail, "rss_before_mb": round(rss0 / 1024, 1),
                          "rss_with_tail_mb": round(rss_tail / 1024, 1),
                          "tail_bytes_per_request": round((rss_tail - rss0) * 1024 / max(1, tail), 1),
                          "persist_tail_s": round(persist_s, 2), "pending_after": pending(redis),
                          "rss_after_persist_mb": round(rss_after / 1024, 1)}))
    finally:
        if srv and srv.proc:
            srv.proc.terminate()
            srv.proc.wait(60)
        if redis:
            redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
