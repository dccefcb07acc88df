#!/usr/bin/env python3
"""Row reads against one server build: a row and a page of a mid's children,
64 connections each, closed loop (issue 13's read targets).

  python3 bench/reads.py --build B [--load build/bench_load] [--env K=V ...]

--load lets an older server be measured with this tree's load generator
(its --target page), so two builds can be alternated on one machine.
Prints one JSON line per target; network traffic stays on loopback."""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dgbench as B  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="directory holding the duckgrid binary")
    ap.add_argument("--load", default=None, help="bench_load binary (default: BUILD/bench_load)")
    ap.add_argument("--env", action="append", default=[], help="K=V for the server (repeatable)")
    ap.add_argument("--duration", type=float, default=3.0)
    a = ap.parse_args()
    load = a.load or os.path.join(a.build, "bench_load")
    env = dict(kv.split("=", 1) for kv in a.env)
    wd = B.Workdir()
    redis = B.Redis(wd.path).start()
    srv = None
    try:
        srv = B.Server(os.path.join(a.build, "duckgrid"), redis, wd.path, env=env).start()
        B.create_table(srv, "bench")
        levels, _ = B.load_tree(srv, "bench", [10, 100, 100])
        time.sleep(1.5)  # the load's tail persisted
        leaf, mid = levels[2], levels[1]
        for target in ("row", "page"):
            p = subprocess.run([load, "--port", str(srv.port), "--key", srv.key, "--table", "bench",
                                "--leaf", f"{leaf[0]}:{leaf[1]}", "--mid", f"{mid[0]}:{mid[1]}",
                                "--target", target, "--conns", "64", "--duration", str(a.duration),
                                "--warmup", "1"], capture_output=True, text=True, timeout=300)
            if p.returncode != 0:
                raise SystemExit(f"bench_load failed: {p.stderr[-2000:]}")
            r = json.loads(p.stdout)
            print(json.dumps({"build": a.build, "target": target, "rps": round(r["throughput_rps"]),
                              "p99_ms": r["latency"]["p99_ms"], "status": r["status"],
                              "load1": os.getloadavg()[0]}))
    finally:
        if srv and srv.proc:
            srv.proc.terminate()
            srv.proc.wait(60)
        redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
