#!/usr/bin/env python3
"""`duckgrid import` and `duckgrid export` (src/cli/transfer.c) on a big
file: wall time and the CLI's peak resident memory.

A server with an empty table `imp` and a CSV of ROWS rows (the file of
bench/import_export.py); then the CLI imports it, exports it as CSV to a
file and exports it again to stdout (a pipe the script drains). Each is run
under /usr/bin/time for its peak RSS. The import streams the file from disk
and the export writes each piece as it arrives, so the CLI's RSS should
stay a few MB whatever the file's size.

    python3 bench/cli_transfer.py [--build build] [--rows 1000000] [--cli PATH]

--cli runs another duckgrid binary as the client (an older build, to
compare) against the server of --build. Prints one line per figure and one
JSON object at the end; nothing is asserted.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dgbench as B  # noqa: E402
from import_export import COLUMNS, make_csv  # noqa: E402


def run_cli(cli, args, env, stdout):
    """(seconds, peak RSS in kB, exit code, stderr) of one CLI run."""
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M", cli, *args], env=env, stdout=stdout,
                       stderr=subprocess.PIPE, timeout=1800)
    s = time.monotonic() - t0
    err = p.stderr.decode(errors="replace")
    rss = next((int(line.split("=")[1]) for line in err.splitlines() if line.startswith("maxrss_kb=")), -1)
    return s, rss, p.returncode, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cli", default="", help="the duckgrid binary to run as the client (default: the build's)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    cli = os.path.abspath(a.cli) if a.cli else os.path.join(build, "duckgrid")
    wd = B.Workdir(keep=os.environ.get("BENCH_KEEP") == "1")
    redis = srv = None
    out = {"rows": a.rows, "cli": cli}
    try:
        csv_path = os.path.join(wd.path, "imp.csv")
        with open(csv_path, "wb") as f:
            f.write(make_csv(a.rows))
        out["csv_bytes"] = os.path.getsize(csv_path)
        print(f"a CSV of {a.rows} rows, {out['csv_bytes'] / 1e6:.1f} MB", flush=True)
        redis = B.Redis(wd.path).start()
        srv = B.Server(os.path.join(build, "duckgrid"), redis, wd.path,
                       env={"DUCKGRID_BODY_LIMIT": str(1 << 30), "DUCKGRID_SYNC_TIMEOUT_MS": "600000",
                            "DUCKGRID_REDIS_TIMEOUT_MS": "120000", "DUCKGRID_LEASE_MS": "30000"}).start()
        srv.ok("POST", "/tables", {"name": "imp", "columns": COLUMNS})
        env = dict(os.environ, DUCKGRID_KEY=srv.key)
        url = ["--url", f"http://127.0.0.1:{srv.port}"]

        s, rss, rc, err = run_cli(cli, ["import", csv_path, "--table", "imp", *url], env, subprocess.DEVNULL)
        if rc != 0:
            raise RuntimeError(f"import exited {rc}: {err[-400:]}")
        out.update(import_s=round(s, 2), import_rss_kb=rss)
        print(f"RESULT import: {out['csv_bytes'] / 1e6:.1f} MB in {s:.2f} s, CLI peak RSS {rss / 1024:.1f} MB",
              flush=True)

        dest = os.path.join(wd.path, "out.csv")
        s, rss, rc, err = run_cli(cli, ["export", "imp", "--output", dest, *url], env, subprocess.DEVNULL)
        if rc != 0:
            raise RuntimeError(f"export exited {rc}: {err[-400:]}")
        out.update(export_file_s=round(s, 2), export_file_rss_kb=rss, export_bytes=os.path.getsize(dest))
        print(f"RESULT export to a file: {out['export_bytes'] / 1e6:.1f} MB in {s:.2f} s, "
              f"CLI peak RSS {rss / 1024:.1f} MB", flush=True)

        with open(os.path.join(wd.path, "stdout.csv"), "wb") as sink:
            s, rss, rc, err = run_cli(cli, ["export", "imp", *url], env, sink)
        if rc != 0:
            raise RuntimeError(f"export to stdout exited {rc}: {err[-400:]}")
        out.update(export_stdout_s=round(s, 2), export_stdout_rss_kb=rss)
        print(f"RESULT export to stdout: in {s:.2f} s, CLI peak RSS {rss / 1024:.1f} MB", flush=True)
        print(json.dumps(out))
    finally:
        if srv:
            srv.stop()
        if redis:
            redis.stop()
        wd.cleanup()


if __name__ == "__main__":
    main()
