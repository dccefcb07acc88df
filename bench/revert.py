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

With --spread: the issue's other target, "a revert of a 1M-leaf spread <= the
spread's own time": a tree of 1 root -> 100 -> 100 -> 100 (1,000,000 leaves of
1.00), a sync write to the root (spread over every leaf, rounding each), then
the revert of that update (sync), both timed from the request to the applied
answer; the root and sampled leaves must be back to the cent.

    python3 bench/revert.py --spread [--build build] [--repeat 3] [--revert-cache-mb 0]

The revert is the compact form (src/manager/apply.c op_revert_compact): the
manager finds the spread's cells in its cache of recent writes; with
--revert-cache-mb 0 it reads them from the audit log instead, after
waiting for the persister to write the spread.
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
    ap.add_argument("--spread", action="store_true")
    ap.add_argument("--fanout", default="1,100,100,100")
    ap.add_argument("--revert-cache-mb", type=int, default=None,
                    help="DUCKGRID_REVERT_CACHE_MB (0: every revert reads the audit log)")
    a = ap.parse_args()
    if a.spread:
        return spread_revert(a)
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
            # above DUCKGRID_OUTCOME_IDS_MAX (10,000) the ids are ranges, with a total
            assert rv.get("inserted_total", len(rv["inserted"])) == 10101, rv.get("inserted_total")
            assert srv.ok("GET", "/tables/t/rows/1")["v"] == total
            rr, rr_ms = timed(lambda: srv.ok("POST", f"/updates/{rv['update_id']}/revert", {}))
            assert rr.get("deleted_total", len(rr["deleted"])) == 10101
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


def spread_revert(a):
    fan = [int(x) for x in a.fanout.split(",")]
    wd = B.Workdir()
    redis = B.Redis(wd.path).start()
    srv = B.Server(os.path.join(a.build, "duckgrid"), redis, wd.path,
                   env=dict({"DUCKGRID_BODY_LIMIT": str(1 << 30), "DUCKGRID_SYNC_TIMEOUT_MS": "600000"},
                            **({"DUCKGRID_REVERT_CACHE_MB": str(a.revert_cache_mb)}
                               if a.revert_cache_mb is not None else {}))).start()
    try:
        B.create_table(srv, "t")
        levels, load_s = B.load_tree(srv, "t", fan)
        root = levels[0][0]
        leaves = levels[-1]
        total = srv.ok("GET", f"/tables/t/rows/{root}")["v"]
        sample = [leaves[0], leaves[0] + leaves[1] // 2, leaves[0] + leaves[1] - 1]
        before = {lid: srv.ok("GET", f"/tables/t/rows/{lid}")["v"] for lid in sample}
        runs = []
        for k in range(a.repeat):
            target = f"{1234567 + k}.89"
            up, s_ms = timed(lambda: srv.ok("POST", "/update_cell",
                                            {"table": "t", "row_id": root, "column": "v", "value": target}))
            uid = up["update_id"]
            rv, r_ms = timed(lambda: srv.ok("POST", f"/updates/{uid}/revert", {}))
            back = srv.ok("GET", f"/tables/t/rows/{root}")["v"]
            assert back == total, (back, total)
            for lid in sample:
                v = srv.ok("GET", f"/tables/t/rows/{lid}")["v"]
                assert v == before[lid], (lid, v, before[lid])
            runs.append({"spread_ms": round(s_ms, 1), "revert_ms": round(r_ms, 1),
                         "changes": up.get("changes_total", len(up.get("changes", []))),
                         "revert_changes": rv.get("changes_total", len(rv.get("changes", [])))})
            print(json.dumps(runs[-1]), file=sys.stderr)
        print(json.dumps({"machine": B.machine(), "fanout": fan, "leaves": leaves[1],
                          "revert_cache_mb": a.revert_cache_mb,
                          "load_s": round(load_s, 1), "runs": runs}, indent=1))
    except Exception:
        print(srv.logs()[-4000:], file=sys.stderr)
        raise
    finally:
        srv.stop()
        redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
