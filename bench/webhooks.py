#!/usr/bin/env python3
"""Webhooks (issue 19): how fast one webhook drains a backlog, and how long
an update takes from its write to the receiver when the hook is caught up.

1. A webhook is registered, its receiver (a loopback http.server in a
   thread, answering 200 at once) answers 500 while N async inserts are
   queued, then 200: deliveries per second over the backlog, timed from the
   first 200 to the last (the retry's backoff before the first is left out).
2. M sync inserts one at a time with the hook caught up: latency from the
   write's answer to the receiver's arrival, p50/p99/max.

    python3 bench/webhooks.py [--build build] [--count 2000] [--latency 200]
Prints one JSON object.
"""
import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dgbench as B  # noqa: E402


class Receiver:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = []          # (update id, monotonic arrival)
        self.failing = True
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with rec.lock:
                    fail = rec.failing
                    if not fail:
                        rec.ok.append((json.loads(body)["update_id"], time.monotonic()))
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = B.free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len({u for u, _ in self.ok})


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--latency", type=int, default=200)
    a = ap.parse_args()
    wd = B.Workdir()
    redis = B.Redis(wd.path).start()
    srv = B.Server(os.path.join(os.path.abspath(a.build), "duckgrid"), redis, wd.path,
                   env={"DUCKGRID_WEBHOOK_BACKOFF_MS": "50"}).start()
    rec = Receiver()
    try:
        B.create_table(srv, "t")
        srv.ok("POST", "/admin/webhooks", {"url": f"http://127.0.0.1:{rec.port}/h"})
        for i in range(1, a.count + 1):
            srv.ok("POST", "/tables/t/rows?async=true", {"id": i, "v": "1.00"})
        time.sleep(1.0)  # let the async writes land
        with rec.lock:
            rec.failing = False
        if not B.wait_until(lambda: rec.count() >= a.count, 600, 0.05):
            raise RuntimeError(f"only {rec.count()} of {a.count} delivered")
        with rec.lock:
            drain = rec.ok[-1][1] - rec.ok[0][1]
        lat = []
        for i in range(a.latency):
            before = rec.count()
            srv.ok("POST", "/tables/t/rows", {"id": a.count + 1 + i, "v": "1.00"})
            t_ans = time.monotonic()
            B.wait_until(lambda: rec.count() > before, 30, 0.001)
            with rec.lock:
                arrived = rec.ok[-1][1]
            lat.append((arrived - t_ans) * 1000)
        print(json.dumps({"machine": B.machine(), "backlog": a.count, "drain_s": round(drain, 2),
                          "deliveries_per_s": round(a.count / drain, 1),
                          "after_answer_ms": {"p50": round(pct(lat, 50), 1), "p99": round(pct(lat, 99), 1),
                                              "max": round(max(lat), 1), "n": len(lat)}}, indent=1))
    finally:
        rec.httpd.shutdown()
        srv.stop()
        redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
