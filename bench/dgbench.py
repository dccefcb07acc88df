"""dgbench.py -- the pieces bench/run.py is built from: a private redis-server
and duckgrid on free loopback ports, each stopped by its own PID; bulk table
loads through the HTTP API; /proc readings (RSS, CPU ticks).

Only the Python standard library (Debian's /usr/bin/python3), so the bench
runs wherever `make test` runs.
"""
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "api"))
from helpers import Resp  # noqa: E402  (the tests' RESP client)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pid):
    """utime+stime of a process, in clock ticks (for CPU shares per scenario)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])
    except (OSError, IndexError, ValueError):
        return 0


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024 // 1024
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": mem,
            "kernel": os.uname().release, "host": socket.gethostname()}


class Redis:
    """redis-server on loopback with a password, AOF on (appendfsync always: a write is acknowledged once its outcome is in Redis), no RDB."""

    def __init__(self, workdir):
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.dir = os.path.join(workdir, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None

    @property
    def url(self):
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "-", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "always",
             "--save", "", "--daemonize", "no", "--maxclients", "10000"],
            stdin=subprocess.PIPE, stdout=log, stderr=log)
        self.proc.stdin.write(f"requirepass {self.password}\n".encode())
        self.proc.stdin.close()
        if not wait_until(lambda: self.cli("PING") == "PONG", 10):
            raise RuntimeError("redis-server did not start")
        return self

    def cli(self, *args, timeout=30):
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port),
                              "--no-auth-warning", "-a", self.password, *args],
                             capture_output=True, text=True, timeout=timeout)
        return out.stdout.strip()

    def command(self, *args):
        """One command on a kept connection (the tests' RESP client: a poll
        every 10 ms through redis-cli would load the machine it measures).
        Replies: str, int, None, list; an error raises."""
        if getattr(self, "_resp", None) is None:
            self._resp = Resp(self)
        return self._resp.cmd(*args)

    @property
    def resp(self):
        """The kept connection itself, for pipelining (send, then _read)."""
        self.command("PING")
        return self._resp

    def stop(self):
        if getattr(self, "_resp", None) is not None:
            self._resp.close()
            self._resp = None
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Server:
    """`duckgrid serve` with its own database file."""

    def __init__(self, binary, redis, workdir, env=None, name="server"):
        self.binary = binary
        self.port = free_port()
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.db = os.path.join(self.dir, "bench.duckdb")
        self.key = "dg_bench_admin_" + secrets.token_hex(16)
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith("DUCKGRID_"):
                del self.env[k]
        self.env.update({
            "DUCKGRID_LISTEN": f"127.0.0.1:{self.port}",
            "DUCKGRID_DB": self.db,
            "DUCKGRID_REDIS_URL": redis.url,
            "DUCKGRID_ADMIN_KEY": self.key,
            "DUCKGRID_BODY_LIMIT": str(64 << 20),
            "DUCKGRID_SYNC_TIMEOUT_MS": "60000",
            "DUCKGRID_LOG_LEVEL": "warn",
            # the load generator is one IP with thousands of connections
            "DUCKGRID_IP_CONNECTIONS": "0",
            "DUCKGRID_IP_RATE": "0",
        })
        if env:
            self.env.update(env)
        self.proc = None
        self.started_at = None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, wait=True, timeout=120):
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.env, cwd=self.dir,
                                     stdout=open(os.path.join(self.dir, "stdout.log"), "ab"),
                                     stderr=open(os.path.join(self.dir, "stderr.log"), "ab"))
        if wait and not self.wait_leader(timeout):
            raise RuntimeError("duckgrid did not become leader:\n" + self.logs())
        return self

    def wait_leader(self, timeout):
        """Waits until /health says 200 with manager=leader (tables loaded)."""
        def up():
            if self.proc.poll() is not None:
                raise RuntimeError("duckgrid exited:\n" + self.logs())
            st, body = self.request("GET", "/health", timeout=2, auth=False)
            return st == 200 and json.loads(body).get("manager") == "leader"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if up():
                    return True
            except (OSError, http.client.HTTPException, ValueError):
                pass
            if self.proc.poll() is not None:
                return False
            time.sleep(0.01)
        return False

    def logs(self):
        out = []
        for p in ("stdout.log", "stderr.log"):
            try:
                with open(os.path.join(self.dir, p), errors="replace") as f:
                    out.append(f"--- {p}\n" + f.read()[-8000:])
            except OSError:
                pass
        return "\n".join(out)

    def request(self, method, path, body=None, timeout=600, auth=True):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            h = {}
            if auth:
                h["Authorization"] = "Bearer " + self.key
            data = None
            if body is not None:
                data = body if isinstance(body, (bytes, str)) else json.dumps(body)
                h["Content-Type"] = "application/json"
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def ok(self, method, path, body=None, want=(200, 201, 202, 204), timeout=600):
        st, data = self.request(method, path, body, timeout=timeout)
        if st not in want:
            raise RuntimeError(f"{method} {path} -> {st}: {data[:400]!r}")
        return json.loads(data) if data else None

    def stop(self, timeout=60):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code


def create_table(srv, name, scale=2):
    srv.ok("POST", "/tables", {"name": name, "columns": [
        {"name": "v", "type": "number", "scale": scale}]})


def load_tree(srv, table, fanout, leaf_value="1.00", chunk=100_000, first_id=1):
    """Loads a full forest: fanout[0] roots, each level fanout[i] children per
    parent, ids breadth-first from first_id, every leaf `leaf_value`.
    Returns (ids per level as (first, count), seconds). Rows go in chunks of
    `chunk`, each one POST /tables/{t}/rows (parents before children)."""
    levels = []
    nxt = first_id
    count = 1
    for f in fanout:
        count *= f
        levels.append((nxt, count))
        nxt += count
    t0 = time.monotonic()
    buf = []

    def flush():
        if buf:
            body = ('{"rows":[' + ",".join(buf) + "]}").encode()
            srv.ok("POST", f"/tables/{table}/rows", body, want=(201,))
            buf.clear()

    for li, (first, n) in enumerate(levels):
        leaf = li == len(levels) - 1
        per = fanout[li]
        pfirst = levels[li - 1][0] if li else None
        for k in range(n):
            rid = first + k
            if li == 0:
                buf.append(f'{{"id":{rid}}}' if not leaf else f'{{"id":{rid},"v":"{leaf_value}"}}')
            elif leaf:
                buf.append(f'{{"id":{rid},"parent_id":{pfirst + k // per},"v":"{leaf_value}"}}')
            else:
                buf.append(f'{{"id":{rid},"parent_id":{pfirst + k // per}}}')
            if len(buf) >= chunk:
                flush()
    flush()
    return levels, time.monotonic() - t0


class Workdir:
    def __init__(self, keep=False):
        self.path = tempfile.mkdtemp(prefix="dg-bench-")
        self.keep = keep

    def cleanup(self):
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)
