#!/usr/bin/env python3
"""Snapshots and restore (issue 16): how long a snapshot of a big table
takes, what it does to writes meanwhile, and how fast restore replays.

1. A server with table `big` (a 10 x 1,000 x 1,000 forest: 10,010,010 rows,
   one number column, filled with bench_mkdb as the `scale` scenario does)
   and table `bench` (10 x 100 x 100) for writes.
2. Sync update_cell writes at a fixed rate (open loop, so a pause shows as
   latency) for a while without a snapshot, then again while
   POST /admin/snapshots runs: latency p50/p99/max of each, and the
   snapshot's own figures (copy time, bytes).
3. N async writes after the snapshot, the server stopped, then
   `duckgrid restore --snapshot <it>` into a new file: requests replayed per
   second (the replay only: copying and loading the snapshot are timed
   apart; open_s is the open of the copy, rebuild_s the part of it that
   rebuilt a format-2 snapshot's keys and indexes).
The 1-minute load average is given beside each figure (load1): the machine
is shared.

    python3 bench/snapshot.py [--build build] [--fanout 10,1000,1000] [--count 200000] [--rate 2000]
                              [--skip-writes] [--restore-runs N] [--perf FILE]
                              [--idle-snapshots K] [--from-archive]
--skip-writes leaves out step 2 (the writes with and without a snapshot: a
quicker run for the restore figure, e.g. --fanout 10,100,100 --count 100000);
--restore-runs repeats the restore N times (a new file each time);
--perf FILE runs the first restore under `perf record -g -o FILE`;
--idle-snapshots K takes K snapshots of the idle server (each one's figures);
--from-archive empties request_duck before the restores, which then read
every entry from the archive's segments.
Environment: PERF_ARGS replaces `-g` in the --perf record (e.g. "--call-graph
dwarf"); RESTORE_WRAP="cmd args" runs the first restore under a wrapper
(strace, perf stat, env ...); RESTORE_ALT_ENV=K=V sets K=V for every other
restore (an A/B on one data set; each run says "alt_env").
Prints one JSON object.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dgbench as B  # noqa: E402
from run import tree_sql  # noqa: E402


def loadgen(build, srv, levels, *extra):
    p = subprocess.run([os.path.join(build, "bench_load"), "--port", str(srv.port), "--key", srv.key,
                        "--table", "bench", "--leaf", f"{levels[2][0]}:{levels[2][1]}",
                        "--mid", f"{levels[1][0]}:{levels[1][1]}", "--mid-pct", "10", *map(str, extra)],
                       capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    return json.loads(p.stdout)


def lat(r):
    L = r["latency"]
    return {"rps": round(r["throughput_rps"]), "p50_ms": L["p50_ms"], "p99_ms": L["p99_ms"],
            "max_ms": L.get("max_ms")}


def writes(a, build, srv, levels, out):
    """Sync writes at a fixed rate without, then during, a snapshot."""
    out["load1_before_writes"] = round(os.getloadavg()[0], 2)
    out["writes_without_snapshot"] = lat(loadgen(build, srv, levels, "--target", "update", "--conns", 16,
                                                 "--rate", a.rate, "--duration", a.seconds))
    res = {}

    def snap():
        time.sleep(1.0)
        t = time.monotonic()
        st, body = srv.request("POST", "/admin/snapshots?wait_ms=60000", timeout=120)
        res["status"], res["manifest"], res["http_s"] = st, json.loads(body), time.monotonic() - t
    th = threading.Thread(target=snap)
    th.start()
    out["writes_during_snapshot"] = lat(loadgen(build, srv, levels, "--target", "update", "--conns", 16,
                                                "--rate", a.rate, "--duration", a.seconds))
    th.join(120)
    m = res["manifest"]
    if res["status"] != 201:
        raise RuntimeError(f"snapshot: {res}")
    out["snapshot"] = {"took_ms": m["took_ms"], "copy_ms": m["copy_ms"], "bytes": m["bytes"],
                       "rows": sum(m["tables"].values()), "http_s": round(res["http_s"], 2),
                       "load1": round(os.getloadavg()[0], 2)}
    out["_manifest"] = m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--fanout", default="10,1000,1000")
    ap.add_argument("--count", type=int, default=200000)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--skip-writes", action="store_true")
    ap.add_argument("--restore-runs", type=int, default=1)
    ap.add_argument("--perf", default=None)
    ap.add_argument("--idle-snapshots", type=int, default=1)
    ap.add_argument("--from-archive", action="store_true")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    fanout = [int(x) for x in a.fanout.split(",")]
    wd = B.Workdir(keep=os.environ.get("BENCH_KEEP") == "1")
    redis = srv = None
    out = {}
    try:
        redis = B.Redis(wd.path).start()
        srv = B.Server(os.path.join(build, "duckgrid"), redis, wd.path,
                       env={"DUCKGRID_SNAPSHOT_KEEP": "0", "DUCKGRID_LOG_LEVEL": "info",
                            "DUCKGRID_ARCHIVE_DIR": os.path.join(wd.path, "archive"),
                            "DUCKGRID_ARCHIVE_INTERVAL_MS": "1000"}).start()
        srv.ok("POST", "/tables", {"name": "big", "columns": [{"name": "v", "type": "number", "scale": 2}]})
        srv.stop()
        lv, sql = tree_sql("big", fanout)
        t0 = time.monotonic()
        p = subprocess.run([os.path.join(build, "bench_mkdb"), srv.db, *sql], capture_output=True, text=True,
                           timeout=900)
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-2000:])
        rows = sum(c for _, c, _ in lv)
        out["big_rows"] = rows
        out["big_cells"] = rows  # one number column
        out["fill_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        srv.start(timeout=600)
        out["server_start_s"] = round(time.monotonic() - t0, 1)
        B.create_table(srv, "bench")
        levels, _ = B.load_tree(srv, "bench", [10, 100, 100])
        time.sleep(1.5)

        # Snapshots with the server idle.
        idle = []
        for _ in range(a.idle_snapshots):
            st, body = srv.request("POST", "/admin/snapshots?wait_ms=60000", timeout=120)
            m0 = json.loads(body)
            if st != 201:
                raise RuntimeError(f"idle snapshot: {st} {body[:400]!r}")
            idle.append({"took_ms": m0["took_ms"], "copy_ms": m0["copy_ms"], "bytes": m0["bytes"],
                         "format": m0.get("format", 1), "load1": round(os.getloadavg()[0], 2)})
        out["snapshot_idle"] = idle[0] if len(idle) == 1 else idle

        # Writes without, then with, a snapshot running.
        m = m0
        if not a.skip_writes:
            writes(a, build, srv, levels, out)
            m = out.pop("_manifest")
        else:
            out["snapshot"] = idle[-1]

        # Restore: N requests after the snapshot.
        r = loadgen(build, srv, levels, "--target", "async", "--conns", 32, "--count", a.count, "--drain", 300,
                    "--redis", redis.url, "--res-stream", "response_duck")
        out["async_applied_rps"] = round(r.get("applied_rps") or 0)
        out["async_submit_rps"] = round(r.get("submit_rps") or 0)
        # The archive: sealed segments, and how fast they were written.
        adir = os.path.join(wd.path, "archive")

        def segs():
            ms = []
            for f in os.listdir(adir):
                if f.endswith(".json"):
                    with open(os.path.join(adir, f)) as fh:
                        ms.append(json.load(fh))
            return ms
        total = int(redis.cli("XINFO", "STREAM", "request_duck").split("\n")[
            redis.cli("XINFO", "STREAM", "request_duck").split("\n").index("entries-added") + 1])
        B.wait_until(lambda: sum(m["count"] for m in segs()) >= total, 120, 0.2)
        ss = segs()
        n_arch = sum(m["count"] for m in ss)
        w_ms = sum(m.get("write_ms", 0) for m in ss)
        out["archive"] = {"entries": n_arch, "stream_entries": total, "segments": len(ss),
                          "write_s": round(w_ms / 1000, 2), "entries_per_s": round(n_arch / max(1e-3, w_ms / 1000)),
                          "bytes_per_entry": round(sum(m["bytes"] for m in ss) / max(1, n_arch), 1)}
        srv.stop()
        if a.from_archive:  # Redis lost the entries: restore reads them from the archive's segments
            redis.cli("XTRIM", "request_duck", "MAXLEN", "0")
        runs = []
        for i in range(a.restore_runs):
            target = os.path.join(wd.path, f"restored{i}.duckdb")
            cmd = [os.path.join(build, "duckgrid"), "restore", "--snapshot", m["id"], "--db", target]
            if a.perf and i == 0:
                cmd = ["perf", "record", *os.environ.get("PERF_ARGS", "-g").split(), "-o", a.perf, "--"] + cmd
            elif os.environ.get("RESTORE_WRAP") and i == 0:
                cmd = os.environ["RESTORE_WRAP"].split() + cmd
            env = dict(srv.env)
            alt = os.environ.get("RESTORE_ALT_ENV")  # K=V set on every other run: an A/B on one data set
            if alt and i % 2 == 1:
                env[alt.split("=", 1)[0]] = alt.split("=", 1)[1]
            t0 = time.monotonic()
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
            if p.returncode != 0:
                raise RuntimeError(p.stderr[-4000:])
            rr = json.loads(p.stdout.strip().split("\n")[-1])
            runs.append({"alt_env": bool(alt and i % 2 == 1), "replayed": rr["replayed"], "replay_s": round(rr["seconds"], 2),
                         "format": rr.get("snapshot_format", 1), "open_s": rr.get("open_s"),
                         "rebuild_s": rr.get("rebuild_s"), "load1": round(os.getloadavg()[0], 2),
                         "replay_rps": round(rr["replayed"] / max(1e-9, rr["seconds"])),
                         "total_s": round(time.monotonic() - t0, 1),
                         "profile": {k: round(v, 3) for k, v in rr.get("profile", {}).items()}})
            for f in (target, target + ".pepper"):
                if i + 1 < a.restore_runs and os.path.exists(f):
                    os.unlink(f)
        out["restore"] = runs[0] if len(runs) == 1 else runs
        out["loadavg"] = os.getloadavg()
        print(json.dumps(out))
        if wd.keep:
            with open(os.path.join(wd.path, "restore_env.json"), "w") as fh:
                json.dump({"env": {k: v for k, v in srv.env.items() if k.startswith("DUCKGRID_")},
                           "snapshot": m["id"], "redis_password": redis.password}, fh)
            print("kept", wd.path, file=sys.stderr)
    finally:
        if srv and srv.proc:
            srv.proc.terminate()
            srv.proc.wait(60)
        if redis:
            redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
