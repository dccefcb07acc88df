"""pytest fixtures: a real redis-server and a real duckgrid, each on a free
loopback port with its own temp directory, stopped by PID at the end.

Environment:
  DG_BUILD_DIR   where build/duckgrid lives (default: build/)
  DG_SANITIZED   1 when the binary is an ASan/UBSan or a TSan build: stderr is
                 checked for sanitizer reports after every server stops, and
                 after every test for the servers still running (a TSan report
                 does not stop the server: halt_on_error=0), so the test
                 during which a report appeared fails.
"""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("DG_BUILD_DIR", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "duckgrid")
SANITIZED = os.environ.get("DG_SANITIZED") == "1"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer", "FATAL: ThreadSanitizer")
# Servers started and not stopped yet, for the check after every test.
_running = []


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=10.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(interval)
    return False


class Redis:
    """A redis-server child process with a password, AOF on, on loopback."""

    def __init__(self, port=None, password=None):
        self.port = port or free_port()
        self.password = password or secrets.token_hex(12)
        self.dir = tempfile.mkdtemp(prefix="dg-redis-")
        self.proc = None

    @property
    def url(self):
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "-", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.dir, "--appendonly", "yes", "--appendfsync", "everysec",
             "--save", "", "--daemonize", "no"],
            stdin=subprocess.PIPE, stdout=self.log, stderr=self.log)
        self.proc.stdin.write(f"requirepass {self.password}\n".encode())
        self.proc.stdin.close()
        ok = wait_until(lambda: self.cli("PING") == "PONG", 10)
        assert ok, "redis-server did not start"
        return self

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "--no-auth-warning",
                              "-a", self.password, *args], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


_prefix_counter = [0]


class Server:
    """A duckgrid child process with its own database directory."""

    def __init__(self, redis_url, admin_key=True, env=None, prefix=None, workdir=None):
        self.port = free_port()
        self.dir = workdir or tempfile.mkdtemp(prefix="dg-server-")
        self.db = os.path.join(self.dir, "duckgrid.duckdb")
        self.admin_key = ("dg_test_admin_" + secrets.token_hex(16)) if admin_key is True else admin_key
        _prefix_counter[0] += 1
        self.prefix = prefix if prefix is not None else f"t{os.getpid()}-{_prefix_counter[0]}:"
        self.env = dict(os.environ)
        self.env.update({
            "DUCKGRID_LISTEN": f"127.0.0.1:{self.port}",
            "DUCKGRID_DB": self.db,
            "DUCKGRID_REDIS_URL": redis_url,
            "DUCKGRID_STREAM_PREFIX": self.prefix,
            "DUCKGRID_REDIS_TIMEOUT_MS": "1000",
        })
        self.env.pop("DUCKGRID_ADMIN_KEY", None)
        if self.admin_key:
            self.env["DUCKGRID_ADMIN_KEY"] = self.admin_key
        if env:
            self.env.update(env)
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = None
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")

    def start(self, wait=True, expect_ok=True):
        self.proc = subprocess.Popen([BIN, "serve"], env=self.env, cwd=self.dir,
                                     stdout=open(self.stdout_path, "ab"),
                                     stderr=open(self.stderr_path, "ab"))
        _running.append(self)
        if wait:
            def up():
                r = requests.get(self.base + "/health", timeout=2)
                return r.status_code == 200 if expect_ok else r.status_code in (200, 503)
            assert wait_until(up, 20), "duckgrid did not become healthy:\n" + self.logs()
        return self

    def logs(self):
        out = []
        for p in (self.stdout_path, self.stderr_path):
            try:
                with open(p, errors="replace") as f:
                    out.append(f"--- {os.path.basename(p)}\n" + f.read()[-20000:])
            except OSError:
                pass
        return "\n".join(out)

    def headers(self, key=None):
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    def get(self, path, key=None, **kw):
        kw.setdefault("timeout", 15)
        return requests.get(self.base + path, headers=self.headers(key), **kw)

    def post(self, path, body=None, key=None, **kw):
        kw.setdefault("timeout", 15)
        return requests.post(self.base + path, json=body, headers=self.headers(key), **kw)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stops the server; returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        if self in _running:
            _running.remove(self)
        if SANITIZED:
            with open(self.stderr_path, errors="replace") as f:
                text = f.read()
            for mark in SANITIZER_MARKS:
                assert mark not in text, "sanitizer report in duckgrid's stderr:\n" + text[-20000:]
        return code

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def sanitizer_report_since_last_look(self):
        """The stderr written since the last call if it holds a sanitizer
        report, else None."""
        start = getattr(self, "_seen", 0)
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(start)
                data = f.read()
        except OSError:
            return None
        self._seen = start + len(data)
        text = data.decode(errors="replace")
        return text if any(m in text for m in SANITIZER_MARKS) else None


@pytest.fixture(autouse=True)
def _no_sanitizer_report_while_running():
    """With DG_SANITIZED=1, fails the test during which a running server
    wrote a sanitizer report (the full check still runs when it stops)."""
    yield
    if not SANITIZED:
        return
    for s in list(_running):
        text = s.sanitizer_report_since_last_look()
        assert text is None, "sanitizer report in duckgrid's stderr during this test:\n" + text[-20000:]


@pytest.fixture(scope="session")
def redis_server():
    r = Redis().start()
    yield r
    r.cleanup()


@pytest.fixture(scope="module")
def server(redis_server):
    s = Server(redis_server.url).start()
    yield s
    s.cleanup()


@pytest.fixture
def make_server(redis_server):
    """Factory for servers a test controls itself (restarts, bad config)."""
    made = []

    def make(**kw):
        kw.setdefault("redis_url", redis_server.url)
        s = Server(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.cleanup()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the servers' logs to a failed test's report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for name in ("server",):
            s = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(s, Server):
                rep.sections.append(("duckgrid logs", s.logs()))
