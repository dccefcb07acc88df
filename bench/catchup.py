#!/usr/bin/env python3
"""The write path without the HTTP front end (issue 12): how fast the manager
applies, publishes and persists a backlog of requests already in Redis.

`make bench`'s async scenario measures the applied rate of writes submitted
over HTTP, so it can never exceed what the front end accepts (~7k/s on this
machine). Here the backlog is queued first, while the manager cannot lead,
and then released:

1. redis-server and `duckgrid serve` on loopback, table `bench` (10 x 100 x
   100, as `make bench`);
2. the lease key is taken from under the manager (SET to another holder):
   its renewal fails and it stops leading; the node follows, and a follower
   applies nothing the leader has not published;
3. N async writes (the bench mix: 90% leaves, 10% spreads over 100 leaves)
   go through the API into request_duck (bench_load --target async);
4. the lease key is deleted: the node takes the lease and works through the
   backlog. Timed from the first new outcome in response_duck to the Nth
   (polled every 10 ms), with the server's CPU over that span; then until a
   consistent read (which waits for DuckDB) answers: everything persisted.

    python3 bench/catchup.py [--build build] [--count 200000] [--runs 2] [--perf FILE]
Prints one JSON object.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dgbench as B  # noqa: E402

LEASE_KEY = "duckgrid:manager"


def xlen(redis, key):
    """Entries ever added (XLEN would stop at the stream's cap)."""
    info = redis.command("XINFO", "STREAM", key)
    try:
        return int(info[info.index("entries-added") + 1])
    except (ValueError, IndexError, TypeError):
        return 0


def redis_commands(redis, queued):
    """Redis's own time per command (INFO commandstats, since the catch-up
    began), in microseconds per queued request, largest first: where the
    Redis side of a request goes."""
    out = {}
    for line in redis.command("INFO", "commandstats").splitlines():
        if not line.startswith("cmdstat_"):
            continue
        name, _, rest = line[len("cmdstat_"):].partition(":")
        f = dict(kv.split("=", 1) for kv in rest.split(","))
        out[name] = round(int(f["usec"]) / queued, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:8])


def health(srv):
    st, body = srv.request("GET", "/health", timeout=5, auth=False)
    try:
        return json.loads(body)
    except ValueError:
        return {}


def one_run(a, redis, srv, levels, count):
    (r0, nr), (m0, nm), (l0, nl) = levels
    # 2. take the lease away
    redis.cli("SET", LEASE_KEY, "bench-catchup-holder", "PX", "600000")
    if not B.wait_until(lambda: health(srv).get("manager") != "leader", 30, 0.05):
        raise RuntimeError("the manager kept leading:\n" + srv.logs())
    base = xlen(redis, "response_duck")
    req_base = xlen(redis, "request_duck")
    # 3. the backlog, through the API
    cmd = [os.path.join(a.build, "bench_load"), "--port", str(srv.port), "--key", srv.key,
           "--table", "bench", "--leaf", f"{l0}:{nl}", "--mid", f"{m0}:{nm}", "--mid-pct", "10",
           "--target", "async", "--conns", "64", "--count", str(count), "--duration", "3600", "--drain", "0"]
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError("bench_load: " + p.stderr[-2000:])
    submit_s = time.monotonic() - t
    queued = xlen(redis, "request_duck") - req_base
    if xlen(redis, "response_duck") != base:
        raise RuntimeError("outcomes were published while the lease was taken")
    # 4. release: the node leads and catches up
    time.sleep(1.0)
    perf = None
    if a.perf:
        cg = ["--call-graph", "dwarf,8192", "-F", "499"] if os.environ.get("PERF_DWARF") == "1" else ["-g"]
        perf = subprocess.Popen(["perf", "record", *cg, "-o", a.perf, "-p", str(srv.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rperf = None
    if a.perf_redis:
        rperf = subprocess.Popen(["perf", "record", "-g", "-o", a.perf_redis, "-p", str(redis.proc.pid)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if perf or rperf:
        time.sleep(0.5)
    cpu0 = B.cpu_ticks(srv.pid)
    rcpu0 = B.cpu_ticks(redis.proc.pid)
    redis.command("CONFIG", "RESETSTAT")
    redis.cli("DEL", LEASE_KEY)
    t_del = time.monotonic()
    t_first = None
    deadline = t_del + 600
    while True:
        n = xlen(redis, "response_duck") - base
        now = time.monotonic()
        if n > 0 and t_first is None:
            t_first = now
        if n >= queued:
            break
        if now > deadline:
            raise RuntimeError(f"only {n} of {queued} outcomes after 600 s")
        time.sleep(0.01)
    t_last = time.monotonic()
    cpu1 = B.cpu_ticks(srv.pid)
    rcpu1 = B.cpu_ticks(redis.proc.pid)
    cmdstats = redis_commands(redis, queued)
    for p in (perf, rperf):
        if p:
            p.send_signal(2)
            p.wait(60)
    # everything in DuckDB: a read waits for the persisted mark
    srv.ok("GET", f"/tables/bench/rows/{r0}")
    t_persisted = time.monotonic()
    hz = os.sysconf("SC_CLK_TCK")
    span = max(1e-6, t_last - t_first)
    return {"queued": queued, "submit_rps": round(queued / submit_s),
            "takeover_s": round(t_first - t_del, 2), "apply_publish_s": round(span, 2),
            "applied_rps": round(queued / span), "persisted_after_s": round(t_persisted - t_last, 2),
            "server_cpu_us_per_req": round(1e6 * (cpu1 - cpu0) / hz / queued, 1),
            "redis_cpu_us_per_req": round(1e6 * (rcpu1 - rcpu0) / hz / queued, 1),
            "redis_commands_us_per_req": cmdstats,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--count", type=int, default=200000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--perf", default=None, help="perf record -g the server during the first catch-up into FILE")
    ap.add_argument("--perf-redis", default=None, help="perf record -g redis-server likewise into FILE")
    a = ap.parse_args()
    a.build = os.path.abspath(a.build)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop what we started (finally)
    wd = B.Workdir(keep=os.environ.get("BENCH_KEEP") == "1")
    redis = srv = None
    try:
        redis = B.Redis(wd.path).start()
        srv = B.Server(os.path.join(a.build, "duckgrid"), redis, wd.path,
                       env={"DUCKGRID_HUGEPAGES": os.environ.get("DUCKGRID_HUGEPAGES", "1")}).start()
        B.create_table(srv, "bench")
        levels, _ = B.load_tree(srv, "bench", [10, 100, 100])
        runs = []
        for i in range(a.runs):
            runs.append(one_run(a, redis, srv, levels, a.count))
            a.perf = a.perf_redis = None
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        print(json.dumps({"git": git, "count": a.count, "runs": runs}))
    finally:
        if srv:
            srv.stop()
        if redis:
            redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
