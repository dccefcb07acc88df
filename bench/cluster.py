#!/usr/bin/env python3
"""BENCH=cluster: duckgrid on a single Redis vs a 3-master Redis Cluster (3
replicas) on this machine, all on loopback.

  1. sync (64 connections, closed loop) and async (N writes, applied rate)
     against: a single redis-server; the cluster with WAIT 1 (the default on
     a cluster); the cluster without WAIT (DUCKGRID_REDIS_WAIT_REPLICAS=0).
     The server is always pointed at a master that does NOT serve {dg}.
  2. failover interruption: kill -9 of the {dg} master, time from the kill to
     the first write answered 200 (one writer retrying every 20 ms), 5 times
     (the killed node is restarted and rejoins as a replica between rounds);
     median and all values.
  3. for docs/partitioning.md: XADD of a request-sized entry with
     redis-benchmark (50 clients per stream, unpipelined) into 1 stream on 1
     master, then 3 streams on the 3 masters at once (one hash tag per
     master, what a stream pair per table group would give).

Run: python3 bench/cluster.py [--build build-bench] [--quick]
Prints RESULT lines and writes bench/results/cluster.json.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "api"))
import dgbench as B  # noqa: E402
from cluster_helpers import RedisCluster  # noqa: E402

REQ_SAMPLE = ('{"op":"update_cell","table":"bench","row_id":123456,"column":"v","value":"1234.56",'
              '"user":"bench","request_id":"r-0123456789abcdef01234567"}')


def log(msg):
    print(f"[cluster] {msg}", flush=True)


class Url:
    def __init__(self, url):
        self.url = url


def crc16(b):
    crc = 0
    for x in b:
        crc ^= x << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def slot(tag):
    return crc16(tag.encode()) & 16383


def loadgen(build, srv, levels, *extra):
    cmd = [os.path.join(build, "bench_load"), "--port", str(srv.port), "--key", srv.key,
           "--table", "bench", "--leaf", f"{levels[2][0]}:{levels[2][1]}",
           "--mid", f"{levels[1][0]}:{levels[1][1]}", "--mid-pct", "10", *map(str, extra)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"bench_load failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout)


def rates(args, wd, name, redis_url, owner_url, res_stream, env):
    srv = B.Server(os.path.join(args.build, "duckgrid"), Url(redis_url), wd.path, env=env, name=name)
    srv.start()
    try:
        B.create_table(srv, "bench")
        levels, _ = B.load_tree(srv, "bench", [10, 30, 30])
        time.sleep(1)
        s = loadgen(args.build, srv, levels, "--target", "update", "--conns", 64, "--warmup", 1,
                    "--duration", 3 if args.quick else 6)
        a = loadgen(args.build, srv, levels, "--target", "async", "--conns", 64, "--count",
                    3000 if args.quick else 10000, "--drain", 120, "--redis", owner_url,
                    "--res-stream", res_stream)
        out = {"sync_rps": s["throughput_rps"], "sync_p50_ms": s["latency"]["p50_ms"],
               "sync_p99_ms": s["latency"]["p99_ms"], "async_submit_rps": a["submit_rps"],
               "async_applied_rps": a["applied_rps"], "async_all_applied": a["applied_all"]}
        log(f"{name}: {out}")
        return out
    finally:
        srv.stop()


def failover_rounds(args, wd, c, n):
    own = c.owner(slot("dg"))
    entry = [p for p in c.masters() if p != own][0]
    srv = B.Server(os.path.join(args.build, "duckgrid"), Url(c.url(entry)), wd.path,
                   env={"DUCKGRID_REDIS_TIMEOUT_MS": "1000"}, name="failover")
    srv.start()
    times = []
    try:
        B.create_table(srv, "f")
        srv.ok("POST", "/tables/f/rows", b'{"rows":[{"id":1,"v":"0.00"}]}', want=(201,))
        for k in range(n):
            c.wait_ok(60)
            victim = c.owner(slot("dg"))
            for i in range(5):
                srv.ok("POST", "/update_cell", json.dumps(
                    {"table": "f", "row_id": 1, "column": "v", "value": i}).encode())
            c.kill(victim)
            t0 = time.monotonic()
            i = 0
            while time.monotonic() - t0 < 60:
                i += 1
                try:
                    st, _ = srv.request("POST", "/update_cell", json.dumps(
                        {"table": "f", "row_id": 1, "column": "v", "value": i,
                         "request_id": f"fo-{k}-{i}"}).encode(), timeout=15)
                except OSError:
                    st = None
                if st == 200:
                    break
                time.sleep(0.02)
            dt = time.monotonic() - t0
            times.append(round(dt, 3))
            log(f"failover round {k + 1}: kill of :{victim} -> first acknowledged write {dt:.2f} s")
            c._start_node(victim)  # rejoins (nodes.conf) as a replica of the new master
            time.sleep(0.5)
    finally:
        srv.stop()
    return times


def xadd(c, port, key, n, results, i):
    cmd = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-a", c.password, "-c", "50",
           "-n", str(n), "--csv", "XADD", key, "*", "req", REQ_SAMPLE]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    last = [ln for ln in p.stdout.splitlines() if ln.startswith('"XADD')][-1]
    results[i] = float(re.findall(r'"([\d.]+)"', last)[-7])


def partition_xadd(c, n):
    masters = c.masters()
    tags = {}
    for g in range(1000):
        o = c.owner(slot(f"g{g}")) if len(tags) < 3 else None
        if o is not None and o not in tags:
            tags[o] = f"{{g{g}}}:request_duck"
        if len(tags) == len(masters):
            break
    one = [0.0]
    m0 = masters[0]
    xadd(c, m0, tags[m0], n, one, 0)
    res = [0.0] * len(masters)
    th = [threading.Thread(target=xadd, args=(c, m, tags[m], n, res, i)) for i, m in enumerate(masters)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    out = {"one_master_xadd_rps": one[0], "three_masters_xadd_rps_total": round(sum(res), 1),
           "three_masters_each": res}
    log(f"XADD: 1 stream on 1 master {one[0]:.0f}/s; 3 streams on 3 masters {sum(res):.0f}/s "
        f"({', '.join(f'{x:.0f}' for x in res)})")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build-bench"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    wd = B.Workdir(keep=False)
    single = c = None
    res = {"machine": B.machine(), "note": "2 cores shared with other jobs; see other_load"}
    try:
        single = B.Redis(wd.path).start()
        res["single"] = rates(args, wd, "single", single.url, single.url, "response_duck", {})
        single.stop()
        single = None
        c = RedisCluster().start()
        own = c.owner(slot("dg"))
        entry = [p for p in c.masters() if p != own][0]
        res["cluster_wait1"] = rates(args, wd, "cluster_wait1", c.url(entry), c.url(own),
                                     "{dg}:response_duck", {})
        res["cluster_nowait"] = rates(args, wd, "cluster_nowait", c.url(entry), c.url(own),
                                      "{dg}:response_duck", {"DUCKGRID_REDIS_WAIT_REPLICAS": "0"})
        res["partition_xadd"] = partition_xadd(c, 30000 if args.quick else 100000)
        ft = failover_rounds(args, wd, c, args.rounds)
        res["failover_s"] = {"median": statistics.median(ft), "all": ft}
    finally:
        if single:
            single.stop()
        if c:
            c.cleanup()
        wd.cleanup()
    f = {"single_sync_rps": res["single"]["sync_rps"],
         "cluster_sync_rps": res["cluster_wait1"]["sync_rps"],
         "cluster_nowait_sync_rps": res["cluster_nowait"]["sync_rps"],
         "single_async_applied_rps": res["single"]["async_applied_rps"],
         "cluster_async_applied_rps": res["cluster_wait1"]["async_applied_rps"],
         "cluster_nowait_async_applied_rps": res["cluster_nowait"]["async_applied_rps"],
         "failover_median_s": res["failover_s"]["median"]}
    print("RESULT scenario=cluster " + " ".join(f"{k}={v}" for k, v in f.items()), flush=True)
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "cluster.json"), "w") as fh:
        json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
