"""duckgrid over rediss://: a TLS-only redis-server (--port 0 --tls-port N,
password) with a PKI made by the openssl command at test time, so no key is
ever checked in.

  - end to end over TLS: create a table, insert rows, a synchronous
    update_cell, get_updates -- all through request_duck/response_duck on
    the TLS server;
  - by host name with a client certificate, against a server that requires
    one (--tls-auth-clients yes), and without one: degraded;
  - a wrong CA: /health 503 degraded with redis "down", one clear log line
    naming the certificate failure, no crash;
  - a wrong password: degraded, a clear log line, no password in any log;
  - bad TLS settings stop the server at start with one line (exit 2).
"""
import os
import shutil
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import BIN, Server, free_port, wait_until

OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
"""

EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class Pki:
    """A CA, a server certificate for localhost/127.0.0.1, a client
    certificate, and an unrelated CA."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="dg-pki-")
        p = lambda name: os.path.join(self.dir, name)  # noqa: E731
        self.cnf = p("openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(OPENSSL_CNF)
        self.ca, self.ca_key = p("ca.crt"), p("ca.key")
        self.other_ca, other_key = p("other-ca.crt"), p("other-ca.key")
        self.server_crt, self.server_key = p("server.crt"), p("server.key")
        self.client_crt, self.client_key = p("client.crt"), p("client.key")
        self._ca(self.ca, self.ca_key, "/CN=dg-api-test-ca")
        self._ca(self.other_ca, other_key, "/CN=dg-api-other-ca")
        self._leaf(self.server_crt, self.server_key, "/CN=localhost", "server", 1)
        self._leaf(self.client_crt, self.client_key, "/CN=dg-api-client", "client", 2)

    def _run(self, *args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr

    def _ca(self, crt, key, cn):
        self._run("req", "-x509", "-config", self.cnf, "-extensions", "ca", *EC, "-keyout", key,
                  "-out", crt, "-days", "2", "-subj", cn)

    def _leaf(self, crt, key, cn, ext, serial):
        csr = os.path.join(self.dir, "req.csr")
        self._run("req", "-new", "-config", self.cnf, *EC, "-keyout", key, "-out", csr,
                  "-subj", cn)
        self._run("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                  "-set_serial", str(serial), "-days", "2", "-extfile", self.cnf,
                  "-extensions", ext, "-out", crt)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class TlsRedis:
    """A TLS-only redis-server child (no plaintext port) with a password."""

    def __init__(self, pki, require_client_cert=False):
        self.pki = pki
        self.port = free_port()
        self.password = "tls-" + os.urandom(8).hex()
        self.require = require_client_cert
        self.dir = tempfile.mkdtemp(prefix="dg-redis-tls-")
        self.proc = None

    def url(self, host="127.0.0.1", password=None):
        return f"rediss://:{password or self.password}@{host}:{self.port}/0"

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        # The password goes in through stdin, not the process list.
        self.proc = subprocess.Popen(
            ["redis-server", "-", "--port", "0", "--tls-port", str(self.port),
             "--bind", "127.0.0.1", "--tls-cert-file", self.pki.server_crt,
             "--tls-key-file", self.pki.server_key, "--tls-ca-cert-file", self.pki.ca,
             "--tls-auth-clients", "yes" if self.require else "optional",
             "--dir", self.dir, "--save", "", "--appendonly", "no", "--daemonize", "no"],
            stdin=subprocess.PIPE, stdout=self.log, stderr=self.log)
        self.proc.stdin.write(f"requirepass {self.password}\n".encode())
        self.proc.stdin.close()
        assert wait_until(lambda: self.cli("PING") == "PONG", 10), "TLS redis-server did not start"
        return self

    def cli(self, *args):
        out = subprocess.run(
            ["redis-cli", "--tls", "--cacert", self.pki.ca, "--cert", self.pki.client_crt,
             "--key", self.pki.client_key, "-h", "127.0.0.1", "-p", str(self.port),
             "--no-auth-warning", "-a", self.password, *args],
            capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pki():
    p = Pki()
    yield p
    p.cleanup()


@pytest.fixture(scope="module")
def tls_redis(pki):
    r = TlsRedis(pki).start()
    yield r
    r.cleanup()


@pytest.fixture
def servers():
    made = []

    def make(**kw):
        s = Server(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.cleanup()


def health(s):
    r = requests.get(s.base + "/health", timeout=10)
    return r.status_code, r.json()


def logs_of(s):
    with open(s.stdout_path, errors="replace") as f:
        out = f.read()
    with open(s.stderr_path, errors="replace") as f:
        return out + f.read()


def run_cli(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("DUCKGRID_")}
    e.update(env or {})
    return subprocess.run([BIN, *args], capture_output=True, text=True, env=e, timeout=30)


# =============================================================================
# Working over TLS
# =============================================================================

def test_end_to_end_over_tls(servers, tls_redis, pki):
    s = servers(redis_url=tls_redis.url(), env={"DUCKGRID_REDIS_CA": pki.ca}).start()
    code, body = health(s)
    assert code == 200 and body["redis"] == "ok", body
    assert f"connected to redis at rediss://127.0.0.1:{tls_redis.port}/0" in logs_of(s)

    r = s.post("/tables", {"name": "tls", "columns": [{"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text
    r = s.post("/tables/tls/rows", {"rows": [{"id": i, "v": f"{i}.00"} for i in (1, 2, 3)]})
    assert r.status_code == 201, r.text

    # A synchronous update: request_duck -> manager -> response_duck -> answer.
    r = s.post("/update_cell", {"table": "tls", "row_id": 2, "column": "v", "value": "7.25",
                                "request_id": "tls-1"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "applied" and out["request_id"] == "tls-1"
    assert [(c["row_id"], c["column"], c["new"]) for c in out["changes"]] == [(2, "v", 7.25)]
    r = s.get("/tables/tls/rows/2")
    assert r.status_code == 200 and r.json()["v"] == 7.25, r.text

    r = s.get("/get_updates")
    assert r.status_code == 200, r.text
    ups = r.json()["updates"]
    assert [u["op"] for u in ups] == ["create_table", "insert_rows", "update_cell"]
    assert all(u["status"] == "applied" for u in ups)
    # Long poll wakes for an update that arrives over TLS.
    nxt = r.json()["next"]
    r = s.post("/update_cell?async=true", {"table": "tls", "row_id": 1, "column": "v",
                                           "value": "3.50"})
    assert r.status_code == 202, r.text
    r = s.get(f"/get_updates?since={nxt}&wait_ms=5000")
    assert [u["op"] for u in r.json()["updates"]] == ["update_cell"]

    # The streams really are on the TLS server.
    assert int(tls_redis.cli("XLEN", s.prefix + "request_duck")) == 4
    assert int(tls_redis.cli("XLEN", s.prefix + "response_duck")) == 4
    logs = logs_of(s)
    assert tls_redis.password not in logs
    assert s.stop() == 0


def test_host_name_and_client_certificate(servers, pki):
    strict = TlsRedis(pki, require_client_cert=True).start()
    try:
        # By name: SNI and the DNS name check; the server wants a certificate.
        s = servers(redis_url=strict.url(host="localhost"),
                    env={"DUCKGRID_REDIS_CA": pki.ca, "DUCKGRID_REDIS_CERT": pki.client_crt,
                         "DUCKGRID_REDIS_KEY": pki.client_key}).start()
        r = s.post("/tables", {"name": "cc", "columns": [{"name": "v", "type": "number"}]})
        assert r.status_code == 201, r.text
        assert int(strict.cli("XLEN", s.prefix + "request_duck")) == 1

        # The same without a client certificate: degraded, and the log says why.
        t = servers(redis_url=strict.url(), env={"DUCKGRID_REDIS_CA": pki.ca})
        t.start(expect_ok=False)
        code, body = health(t)
        assert code == 503 and body["redis"] == "down", body
        assert "requires a client certificate" in logs_of(t)
        assert t.proc.poll() is None
    finally:
        strict.cleanup()


def test_version_over_tls_with_flags(tls_redis, pki):
    # The flags spell of the same settings, through `duckgrid --version`.
    r = run_cli("--version", "--redis-url", tls_redis.url(), "--redis-ca", pki.ca)
    assert r.returncode == 0, r.stderr
    assert "redis 7." in r.stdout and f"rediss://127.0.0.1:{tls_redis.port}/0" in r.stdout
    assert tls_redis.password not in r.stdout + r.stderr


# =============================================================================
# Failing clearly
# =============================================================================

def test_wrong_ca_is_degraded_not_a_crash(servers, tls_redis, pki):
    s = servers(redis_url=tls_redis.url(), env={"DUCKGRID_REDIS_CA": pki.other_ca})
    s.start(expect_ok=False)
    code, body = health(s)
    assert code == 503, body
    assert body["status"] == "degraded" and body["redis"] == "down" and body["duckdb"] == "ok"
    # A write cannot be queued: 503, not a hang or a crash.
    r = s.post("/tables", {"name": "x", "columns": [{"name": "v", "type": "number"}]})
    assert r.status_code == 503, r.text
    logs = logs_of(s)
    line = next((ln for ln in logs.splitlines() if "certificate verify failed" in ln), None)
    assert line is not None, logs
    assert f"TLS handshake with 127.0.0.1:{tls_redis.port} failed" in line
    assert tls_redis.password not in logs
    # Still degraded (retrying with backoff) and alive a moment later.
    time.sleep(1.0)
    assert health(s)[0] == 503
    assert s.proc.poll() is None
    assert s.stop() == 0


def test_wrong_password_is_degraded_and_not_logged(servers, tls_redis, pki):
    wrong = "wrong-" + os.urandom(6).hex()
    s = servers(redis_url=tls_redis.url(password=wrong), env={"DUCKGRID_REDIS_CA": pki.ca})
    s.start(expect_ok=False)
    code, body = health(s)
    assert code == 503 and body["status"] == "degraded" and body["redis"] == "down", body
    logs = logs_of(s)
    line = next((ln for ln in logs.splitlines() if "AUTH" in ln), None)
    assert line is not None, logs
    assert "WRONGPASS" in line
    assert wrong not in logs and tls_redis.password not in logs
    assert s.proc.poll() is None
    assert s.stop() == 0


def test_tls_settings_are_checked_at_start(tmp_path, tls_redis, pki):
    db = str(tmp_path / "x.duckdb")
    cases = [
        ({"DUCKGRID_REDIS_CA": str(tmp_path / "missing.crt")}, "cannot read"),
        ({"DUCKGRID_REDIS_CA": pki.ca, "DUCKGRID_REDIS_URL": "redis://127.0.0.1:6379/0"},
         "not rediss://"),
        ({"DUCKGRID_REDIS_CERT": pki.client_crt}, "DUCKGRID_REDIS_KEY"),
        ({"DUCKGRID_REDIS_KEY": str(tmp_path / "nokey.pem"), "DUCKGRID_REDIS_CERT": pki.client_crt},
         "cannot read"),
    ]
    for env, want in cases:
        env = {"DUCKGRID_REDIS_URL": tls_redis.url(), "DUCKGRID_DB": db, **env}
        r = run_cli("serve", env=env)
        assert r.returncode == 2, (env, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and want in lines[0], (env, r.stderr)
        assert tls_redis.password not in r.stderr
