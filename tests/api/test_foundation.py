"""The service skeleton: health, problem+json errors, configuration errors,
Redis outages, graceful shutdown and the bootstrap admin key."""
import os
import signal
import stat
import subprocess
import time

import requests

from conftest import BIN, Redis, Server, free_port, wait_until


def assert_problem(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["title"]
    assert body["detail"]
    return body


def test_health_ok_shape(server):
    r = requests.get(server.base + "/health", timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "ok"
    assert body["redis"] == "ok"
    assert body["duckdb"] == "ok"
    assert body["manager"] in ("leader", "standby", "off")
    assert isinstance(body["lag"], int)


def test_unknown_route_is_404(server):
    assert_problem(requests.get(server.base + "/nope", timeout=5), 404, "not_found")
    assert_problem(requests.get(server.base + "/health/extra/deep", timeout=5), 404, "not_found")


def test_wrong_method_is_405_with_allow(server):
    r = requests.delete(server.base + "/health", timeout=5)
    assert_problem(r, 405, "method_not_allowed")
    assert "GET" in r.headers["Allow"]


def test_body_over_limit_is_413(server):
    big = b"x" * (1024 * 1024 + 10)
    r = requests.post(server.base + "/health", data=big, timeout=15,
                      headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "payload_too_large")


def test_small_body_limit_setting(make_server):
    s = make_server(env={"DUCKGRID_BODY_LIMIT": "2048"}).start()
    assert_problem(requests.post(s.base + "/health", data=b"y" * 3000, timeout=5), 413,
                   "payload_too_large")
    # At the limit is not over it: the route answers (405 here, not 413).
    assert requests.post(s.base + "/health", data=b"y" * 2048, timeout=5).status_code == 405


def test_access_log_has_no_key(server):
    requests.get(server.base + "/nope?key=" + server.admin_key, headers=server.headers(), timeout=5)
    time.sleep(0.2)
    logs = server.logs()
    assert "GET /nope 404" in logs
    assert server.admin_key not in logs


def run_cli(*args, env=None, timeout=20):
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("DUCKGRID_"):
            del e[k]
    e.update(env or {})
    return subprocess.run([BIN, *args], capture_output=True, text=True, env=e, timeout=timeout)


def test_help_and_version():
    r = run_cli("--help")
    assert r.returncode == 0
    assert "serve" in r.stdout and "DUCKGRID_REDIS_URL" in r.stdout
    r = run_cli("--version", env={"DUCKGRID_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert r.returncode == 0
    assert "duckdb v1.4.4" in r.stdout
    assert "redis: unreachable" in r.stdout


def test_version_reports_redis_server(redis_server):
    r = run_cli("--version", env={"DUCKGRID_REDIS_URL": redis_server.url})
    assert r.returncode == 0, r.stderr
    assert "redis 7." in r.stdout
    assert redis_server.password not in r.stdout


def test_unknown_command_and_option():
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr
    r = run_cli("serve", "--no-such-flag")
    assert r.returncode == 2 and "unknown option" in r.stderr


def test_malformed_redis_url_is_one_clear_line(tmp_path):
    r = run_cli("serve", env={"DUCKGRID_REDIS_URL": "redis://:hunter2secret@host:99999/0",
                              "DUCKGRID_DB": str(tmp_path / "x.duckdb")})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Redis URL" in lines[0]
    assert "hunter2secret" not in r.stderr


def test_bad_listen_and_numbers(tmp_path):
    for env in ({"DUCKGRID_LISTEN": "nonsense"}, {"DUCKGRID_LISTEN": "127.0.0.1:0"},
                {"DUCKGRID_BODY_LIMIT": "-5"}, {"DUCKGRID_SYNC_TIMEOUT_MS": "12abc"},
                {"DUCKGRID_LOG_FORMAT": "xml"}, {"DUCKGRID_ROLE": "leader"}, {"DUCKGRID_LEASE_MS": "50"},
                {"DUCKGRID_LEASE_MS": "1.5s"}):
        env["DUCKGRID_DB"] = str(tmp_path / "x.duckdb")
        r = run_cli("serve", env=env)
        assert r.returncode == 2, (env, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_unwritable_database_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    r = run_cli("serve", env={"DUCKGRID_DB": str(blocker / "sub" / "db.duckdb")})
    assert r.returncode == 2
    assert "database" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    d = tmp_path / "isdir.duckdb"
    d.mkdir()
    r = run_cli("serve", env={"DUCKGRID_DB": str(d)})
    assert r.returncode == 2 and "is a directory" in r.stderr


def test_listen_port_in_use(make_server, server):
    s = make_server(env={"DUCKGRID_LISTEN": f"127.0.0.1:{server.port}"})
    s.start(wait=False)
    assert s.proc.wait(20) == 1
    assert "cannot listen" in s.logs()


def test_redis_down_then_up(make_server):
    port = free_port()
    r = Redis(port=port)
    s = make_server(redis_url=r.url).start(expect_ok=False)
    try:
        h = requests.get(s.base + "/health", timeout=5)
        assert h.status_code == 503
        body = h.json()
        assert body["status"] == "degraded" and body["redis"] == "down" and body["duckdb"] == "ok"
        r.start()
        assert wait_until(lambda: requests.get(s.base + "/health", timeout=5).status_code == 200, 15)
        # ... and down again: degraded, no crash, no hang.
        r.stop()
        assert wait_until(lambda: requests.get(s.base + "/health", timeout=5).status_code == 503, 15)
        assert s.proc.poll() is None
        r.start()
        assert wait_until(lambda: requests.get(s.base + "/health", timeout=5).status_code == 200, 15)
    finally:
        r.cleanup()


def test_graceful_shutdown_exit_zero(make_server):
    for sig in (signal.SIGTERM, signal.SIGINT):
        s = make_server().start()
        assert s.stop(sig) == 0
        assert "stopped cleanly" in s.logs()
        # The database closed cleanly: a new server opens it at once.
        s.start()
        assert s.stop() == 0


def test_bootstrap_key_file(make_server):
    s = make_server(admin_key=None).start()
    key_file = s.db + ".admin-key"
    assert os.path.exists(key_file)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    key = open(key_file).read().strip()
    assert key.startswith("dg_") and len(key) == 46
    with open(s.stdout_path) as f:
        assert key in f.read()  # printed once, at generation
    assert key not in open(s.stderr_path).read()
    # Keys are hashed with a secret pepper kept beside the database, 0600.
    pepper = s.db + ".pepper"
    assert stat.S_IMODE(os.stat(pepper).st_mode) == 0o600 and os.path.getsize(pepper) == 32
    # The key is not stored in plain text in the database.
    s.stop()
    with open(s.db, "rb") as f:
        assert key.encode() not in f.read()
    # A restart does not generate a second key or print it again.
    s.start()
    assert open(key_file).read().strip() == key
    with open(s.stdout_path) as f:
        assert f.read().count("generated the admin key") == 1


def _thp_mode():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read()
    except OSError:
        return ""


def test_malloc_huge_pages_on_by_default_and_off_on_request(make_server):
    """The server re-executes itself with glibc's malloc using transparent
    huge pages (main.c: a big spread's arrays fault far less), same pid;
    DUCKGRID_HUGEPAGES=0 keeps the environment as it was. Sanitized builds
    use their own allocator and never re-execute."""
    mode = _thp_mode()
    if os.environ.get("DG_SANITIZED") or ("[always]" not in mode and "[madvise]" not in mode):
        want_on = False
    else:
        want_on = True
    s = make_server().start()
    env = open(f"/proc/{s.proc.pid}/environ", "rb").read().split(b"\0")
    assert (b"GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in env) == want_on, env
    assert s.get("/health").status_code == 200
    off = make_server(env={"DUCKGRID_HUGEPAGES": "0"}).start()
    env = open(f"/proc/{off.proc.pid}/environ", "rb").read().split(b"\0")
    assert not any(e.startswith(b"GLIBC_TUNABLES=") for e in env), env
    assert off.get("/health").status_code == 200


def test_stop_is_prompt_with_a_long_lease(make_server):
    """The lease thread renews every quarter of DUCKGRID_LEASE_MS; a stop
    must not wait for its sleep (60 s lease: it waited 15 s)."""
    s = make_server(env={"DUCKGRID_LEASE_MS": "60000"}).start()
    assert s.get("/health").status_code == 200
    time.sleep(0.5)  # the lease thread is asleep in its quarter by now
    s.proc.send_signal(signal.SIGTERM)
    try:
        rc = s.proc.wait(timeout=8)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        s.proc.wait()
        raise AssertionError("SIGTERM with a 60 s lease: still running after 8 s")
    assert rc == 0


def test_demo_data_loads_into_an_empty_database(make_server):
    """DUCKGRID_DEMO=1 (make run) queues the demo table, rows and view as
    requests in the wire format: the parents are the exact sums, the view
    answers, and a restart does not queue them again."""
    s = make_server(env={"DUCKGRID_DEMO": "1"}).start()
    assert wait_until(lambda: s.get("/tables/sales/rows/1").status_code == 200, timeout=20)
    assert wait_until(lambda: s.get("/views/sales_summary_by_product_family").status_code == 200, timeout=20)
    brand = s.get("/tables/sales/rows/1").json()
    assert brand["name"] == "Brand X" and brand["sales"] == 1426.80 and brand["units"] == 392
    assert brand["children"] == 3
    assert s.get("/tables/sales/rows/10").json()["sales"] == 510.00
    assert s.get("/tables/sales/rows/20").json()["sales"] == 916.80
    view = s.get("/views/sales_summary_by_product_family").json()
    assert len(view["rows"]) == 3, view
    s.stop()
    s.start()
    assert wait_until(lambda: s.get("/tables/sales/rows/1").status_code == 200, timeout=20)
    r = s.get("/tables/sales/rows?limit=100")
    assert r.status_code == 200 and len(r.json()["rows"]) == 24, r.text
