#!/usr/bin/env python3
"""BENCH=followers: read replicas and failover (issue 15), all on loopback.

One Redis (appendfsync always), a leader and followers of one deployment
(same prefix, pepper and admin key; each its own database), table `fb`
(10 parents x 100 leaves, one number column).

  1. cost: async applied rate of the leader (64 connections, N writes)
     alone, then with one follower following.
  2. staleness: while async writes flow at RATE/s into the leader, a probe
     writes synchronously to the leader every 20 ms and at once reads the
     written row from the follower with ?min_update=<its update id>: the
     time from the leader's answer to the follower's answer (the follower
     applied and persisted it). p50/p99 over the probes.
  3. reads: GET /tables/fb/rows/{random leaf}, 64 connections, closed loop,
     on the leader and on a follower.
  4. failover: ROUNDS times, kill -9 of the leader while a writer sends a
     synchronous write to a follower every 20 ms: time from the kill to the
     first write answered 200 (applied by the new leader). The killed node
     restarts and follows before the next round. Median and all values.

Run: python3 bench/followers.py [--build build-bench] [--quick]
Prints RESULT lines and writes bench/results/followers.json.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dgbench as B  # noqa: E402

PARENTS, LEAVES_PER = 10, 100


def log(msg):
    print(f"[followers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def health(s):
    st, body = s.request("GET", "/health", timeout=2, auth=False)
    return json.loads(body)


def role(s):
    try:
        return health(s).get("manager")
    except Exception:
        return None


def node(args, redis, wd, name, key, pepper):
    s = B.Server(os.path.join(args.build, "duckgrid"), redis, wd.path, name=name,
                 env={"DUCKGRID_KEY_PEPPER_FILE": pepper, "DUCKGRID_LOG_LEVEL": "info"})
    s.key = key
    s.env["DUCKGRID_ADMIN_KEY"] = key
    return s


def start_follower(s, timeout=60):
    s.start(wait=False)
    if not B.wait_until(lambda: role(s) == "follower", timeout, 0.02):
        raise RuntimeError("the follower did not follow:\n" + s.logs())


def loadgen(args, s, leaves, *extra, timeout=900):
    cmd = [os.path.join(args.build, "bench_load"), "--port", str(s.port), "--key", s.key, "--table", "fb",
           "--leaf", f"{leaves[0]}:{leaves[1]}", *map(str, extra)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"bench_load failed ({p.returncode}): {p.stderr[-2000:]}")
    return json.loads(p.stdout)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def result(name, fields):
    print("RESULT scenario=" + name + " " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(B.ROOT, "build-bench"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rate", type=int, default=2000, help="async writes/s during the staleness probe")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    n_async = 8000 if args.quick else 30000
    rounds = 3 if args.quick else args.rounds
    out = {}
    wd = B.Workdir(keep=os.environ.get("BENCH_KEEP") == "1")
    redis = B.Redis(wd.path).start()
    pepper = os.path.join(wd.path, "pepper")
    key = "dg_bench_admin_followers_" + os.urandom(8).hex()
    nodes = []
    try:
        a = node(args, redis, wd, "a", key, pepper)
        nodes.append(a)
        a.start()
        B.create_table(a, "fb")
        levels, _ = B.load_tree(a, "fb", [PARENTS, LEAVES_PER])
        leaves = levels[1]

        # 1. the leader's async applied rate, alone and with a follower
        r0 = loadgen(args, a, leaves, "--target", "async", "--conns", 64, "--count", n_async, "--drain", 120,
                     "--redis", redis.url, "--res-stream", "response_duck")
        b = node(args, redis, wd, "b", key, pepper)
        nodes.append(b)
        start_follower(b)
        r1 = loadgen(args, a, leaves, "--target", "async", "--conns", 64, "--count", n_async, "--drain", 120,
                     "--redis", redis.url, "--res-stream", "response_duck")
        cost = 1 - r1["applied_rps"] / r0["applied_rps"]
        out["cost"] = {"alone_applied_rps": r0["applied_rps"], "with_follower_applied_rps": r1["applied_rps"],
                       "cost_pct": round(100 * cost, 1)}
        result("followers_cost", out["cost"])

        # 2. staleness under a write rate
        bg = threading.Thread(target=loadgen, args=(args, a, leaves, "--target", "async", "--conns", 32,
                                                    "--rate", args.rate, "--duration", 6 if args.quick else 15,
                                                    "--warmup", 0))
        bg.start()
        time.sleep(1.0)
        lags = []
        leaf = leaves[0]
        while bg.is_alive() and len(lags) < 600:
            st, body = a.request("POST", "/update_cell", {"table": "fb", "row_id": leaf, "column": "v", "value": "1.00"})
            t0 = time.monotonic()
            if st != 200:
                time.sleep(0.02)
                continue
            uid = json.loads(body)["update_id"]
            st, _ = b.request("GET", f"/tables/fb/rows/{leaf}?min_update={uid}&wait_ms=5000")
            if st == 200:
                lags.append(1000 * (time.monotonic() - t0))
            time.sleep(0.02)
        bg.join()
        out["staleness"] = {"write_rate": args.rate, "probes": len(lags), "p50_ms": round(pct(lags, 0.5), 2),
                            "p99_ms": round(pct(lags, 0.99), 2), "max_ms": round(max(lags), 2)}
        result("followers_staleness", out["staleness"])

        # 3. row reads on the leader and on the follower
        d = 3 if args.quick else 8
        ra = loadgen(args, a, leaves, "--target", "row", "--conns", 64, "--duration", d)
        rb = loadgen(args, b, leaves, "--target", "row", "--conns", 64, "--duration", d)
        out["reads"] = {"leader_rps": ra["throughput_rps"], "follower_rps": rb["throughput_rps"],
                        "leader_p99_ms": ra["latency"]["p99_ms"], "follower_p99_ms": rb["latency"]["p99_ms"]}
        result("followers_reads", out["reads"])

        # 4. failover
        times = []
        for i in range(rounds):
            leader = next(s for s in nodes if role(s) == "leader")
            other = next(s for s in nodes if s is not leader)
            time.sleep(0.3)
            leader.proc.kill()
            t_kill = time.monotonic()
            leader.proc.wait()
            got = None
            while time.monotonic() - t_kill < 30:
                try:
                    st, _ = other.request("POST", "/update_cell",
                                          {"table": "fb", "row_id": leaves[0] + i, "column": "v", "value": "2.00"},
                                          timeout=5)
                except OSError:
                    st = None
                if st == 200:
                    got = time.monotonic() - t_kill
                    break
                time.sleep(0.02)
            if got is None:
                raise RuntimeError("no write answered within 30 s of the kill:\n" + other.logs())
            times.append(got)
            log(f"failover {i + 1}/{rounds}: {1000 * got:.0f} ms")
            leader.proc = None
            start_follower(leader)
        out["failover"] = {"rounds": rounds, "median_ms": round(1000 * statistics.median(times)),
                           "max_ms": round(1000 * max(times)), "all_ms": [round(1000 * t) for t in times]}
        result("followers_failover", {k: v for k, v in out["failover"].items() if k != "all_ms"})
        os.makedirs(os.path.join(B.ROOT, "bench", "results"), exist_ok=True)
        with open(os.path.join(B.ROOT, "bench", "results", "followers.json"), "w") as f:
            json.dump({"machine": B.machine(), **out}, f, indent=1)
    finally:
        for s in nodes:
            s.stop()
        redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
