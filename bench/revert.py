#!/usr/bin/env python3
"""Revert of a subtree delete (issue 19): how long a revert takes that
brings back a deleted subtree of ~10k rows (one row image each, read from
the audit log, sent as one request, re-inserted by the manager), against
the delete itself, and the revert of that revert (a delete again).

A forest of 1 root, 10 families, 100 groups each, 100 leaves each (101,011
rows); family 2's subtree (1 + 100 + 10,000 rows) is deleted with cascade,
then reverted, then the revert reverted. Each call is synchronous: its time
is from the request to the applied answer.

    python3 bench/revert.py [--build build] [--repeat 3]
Prints one JSON object.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dgbench as B  # noqa: E402


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return out, (time.monotonic() - t0) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    wd = B.Workdir()
    redis = B.Redis(wd.path).start()
    srv = B.Server(os.path.join(a.build, "duckgrid"), redis, wd.path).start()
    try:
        B.create_table(srv, "t")
        levels, _ = B.load_tree(srv, "t", [1, 10, 100, 100])
        fam = levels[1][0] + 1  # the second family
        total = srv.ok("GET", "/tables/t/rows/1")["v"]
        runs = []
        for _ in range(a.repeat):
            _, d_ms = timed(lambda: srv.ok("DELETE", f"/tables/t/rows/{fam}?cascade=true"))
            hist = srv.ok("GET", f"/tables/t/rows/{fam}/history?limit=1")["history"]
            uid = hist[0]["update_id"]
            rv, r_ms = timed(lambda: srv.ok("POST", f"/updates/{uid}/revert", {}))
            assert len(rv["inserted"]) == 10101, len(rv["inserted"])
            assert srv.ok("GET", "/tables/t/rows/1")["v"] == total
            rr, rr_ms = timed(lambda: srv.ok("POST", f"/updates/{rv['update_id']}/revert", {}))
            assert len(rr["deleted"]) == 10101
            rrr, rrr_ms = timed(lambda: srv.ok("POST", f"/updates/{rr['update_id']}/revert", {}))
            assert srv.ok("GET", "/tables/t/rows/1")["v"] == total
            runs.append({"delete_ms": round(d_ms, 1), "revert_delete_ms": round(r_ms, 1),
                         "revert_revert_ms": round(rr_ms, 1), "revert_again_ms": round(rrr_ms, 1)})
        print(json.dumps({"machine": B.machine(), "rows_in_table": 101011, "rows_in_subtree": 10101,
                          "runs": runs}, indent=1))
    finally:
        srv.stop()
        redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
