#!/usr/bin/env python3
"""What the manager's fenced Lua scripts cost Redis (issue 12).

The manager claims requests and publishes outcomes through two Lua scripts
that first check the lease key (src/manager/manager.c: CLAIM_LUA,
PUBLISH_LUA), so a paused former leader can neither claim nor publish. This
measures Redis's own time (INFO commandstats) for a 1,024-entry batch of
~500-byte entries, with and without the script around the same commands:

    python3 bench/redis_fence.py [--entries 1024] [--rounds 50]

A redis-server of its own on a free loopback port; prints one JSON object
(milliseconds of Redis time per batch, and microseconds per entry).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dgbench as B  # noqa: E402

CLAIM = "return redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[1])"
PUBLISH = ("local out = {} for i = 2, #ARGV, 3 do "
           "local r = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i], 'res', ARGV[i + 1], "
           "'mac', ARGV[i + 2]) out[#out + 1] = 1 end return out")


def usec(redis, cmd):
    for line in redis.command("INFO", "commandstats").splitlines():
        if line.startswith(f"cmdstat_{cmd}:"):
            f = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].split(","))
            return int(f["usec"])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=50)
    a = ap.parse_args()
    n, rounds = a.entries, a.rounds
    wd = B.Workdir()
    redis = None
    try:
        redis = B.Redis(wd.path).start()
        pay, mac = "x" * 450, "m" * 64
        for _ in range(n):
            redis.command("XADD", "req", "*", "r", pay, "mac", mac, "t", "1700000000000")
        out = {"entries": n, "rounds": rounds}

        def timed(name, cmd, f):
            redis.command("CONFIG", "RESETSTAT")
            for _ in range(rounds):
                f()
            ms = usec(redis, cmd) / rounds / 1000
            out[name] = {"ms_per_batch": round(ms, 2), "us_per_entry": round(1000 * ms / n, 2)}

        timed("read_plain", "xrange", lambda: redis.command("XRANGE", "req", "-", "+", "COUNT", n))
        timed("read_in_lua", "eval", lambda: redis.command("EVAL", CLAIM, "1", "req", n))
        seq = [0]

        def batch():
            args = []
            for _ in range(n):
                seq[0] += 1
                args += [f"{seq[0]}-0", pay, mac]
            return args

        timed("publish_in_lua", "eval", lambda: redis.command("EVAL", PUBLISH, "1", "res", "100000", *batch()))

        def pipelined():
            args, c = batch(), redis.resp
            for i in range(0, len(args), 3):
                c.send("XADD", "res2", "MAXLEN", "~", "100000", args[i], "res", args[i + 1], "mac", args[i + 2])
            for _ in range(n):
                c._read()

        timed("publish_pipelined", "xadd", pipelined)
        print(json.dumps(out))
    finally:
        if redis:
            redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
