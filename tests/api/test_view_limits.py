"""View limits (issue 14, item 5): a per-query deadline enforced with
duckdb_interrupt (504), a cap on the view queries one key runs at once
(429), a cap on the answer's bytes (413), DuckDB's memory limit (413), and
a stop (SIGTERM) that interrupts running queries and exits in seconds."""
import signal
import threading
import time

import pytest

RECURSIVE = "WITH RECURSIVE r(i) AS (SELECT 1::BIGINT UNION ALL SELECT i + 1 FROM r) SELECT max(i) AS m FROM r"
CROSS32 = "SELECT count(*) AS n FROM " + ", ".join(f"t1 a{i}" for i in range(32))


def setup_views(s):
    assert s.post("/tables", {"name": "t1", "columns": [{"name": "v", "type": "number", "scale": 0},
                                                         {"name": "txt", "type": "text"}]}).status_code == 201
    rows = [{"id": i, "v": i, "txt": "y" * 200} for i in range(1, 101)]
    assert s.post("/tables/t1/rows", {"rows": rows}).status_code == 201
    for name, sql in (("forever", RECURSIVE), ("cross32", CROSS32), ("wide", "SELECT id, txt FROM t1")):
        r = s.post("/views", {"name": name, "sql": sql})
        assert r.status_code == 201, r.text


def new_key(s, name):
    r = s.post("/admin/keys", {"name": name, "role": "read"})
    assert r.status_code == 201, r.text
    return r.json()["key"]


@pytest.fixture(scope="module")
def vs(redis_server):
    from conftest import Server
    s = Server(redis_server.url, env={"DUCKGRID_VIEW_TIMEOUT_MS": "700", "DUCKGRID_VIEW_CONCURRENCY": "1",
                                      "DUCKGRID_VIEW_MAX_BYTES": "4096"}).start()
    setup_views(s)
    yield s
    s.cleanup()


@pytest.mark.parametrize("view", ["forever", "cross32"])
def test_runaway_view_is_interrupted_with_504(vs, view):
    t0 = time.monotonic()
    r = vs.get(f"/views/{view}", timeout=30)
    assert r.status_code == 504, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert "700 ms" in r.json()["detail"]
    assert time.monotonic() - t0 < 5
    assert vs.get("/health").status_code == 200


def test_one_key_cannot_run_more_view_queries_at_once_than_allowed(vs):
    key, other = new_key(vs, "v1"), new_key(vs, "v2")
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("a", vs.get("/views/forever", key=key, timeout=30)))
    t.start()
    time.sleep(0.25)
    r = vs.get("/views/wide?limit=1", key=key)
    r2 = vs.get("/views/wide?limit=1", key=other)
    t.join()
    assert r.status_code == 429, r.text
    assert r.headers.get("Retry-After") == "1"
    assert r2.status_code == 200, r2.text
    assert out["a"].status_code == 504


def test_view_answer_is_capped_in_bytes(vs):
    r = vs.get("/views/wide?limit=100")
    assert r.status_code == 413, r.text
    assert "limit" in r.json()["detail"]
    r = vs.get("/views/wide?limit=5")
    assert r.status_code == 200 and len(r.json()["rows"]) == 5


def test_view_over_the_memory_limit_is_413(make_server):
    s = make_server(env={"DUCKGRID_DB_MEMORY_LIMIT": "50MB", "DUCKGRID_VIEW_TIMEOUT_MS": "60000"}).start()
    sql = ("WITH RECURSIVE r(i) AS (SELECT 1::BIGINT UNION ALL SELECT i + 1 FROM r WHERE i < 400000) "
           "SELECT length(string_agg(i::VARCHAR || repeat('x', 300), ',')) AS n FROM r")
    assert s.post("/views", {"name": "big", "sql": sql}).status_code == 201
    r = s.get("/views/big", timeout=60)
    assert r.status_code == 413, r.text
    assert "memory" in r.json()["detail"]


def test_sigterm_interrupts_running_view_queries(make_server):
    s = make_server(env={"DUCKGRID_VIEW_TIMEOUT_MS": "600000", "DUCKGRID_VIEW_CONCURRENCY": "4"}).start()
    setup_views(s)
    out = []

    def read():
        try:
            out.append(s.get("/views/forever", timeout=60).status_code)
        except Exception as e:  # the server may close the socket as it stops
            out.append(type(e).__name__)
    ts = [threading.Thread(target=read) for _ in range(2)]
    for t in ts:
        t.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    code = s.stop(signal.SIGTERM, timeout=20)
    took = time.monotonic() - t0
    for t in ts:
        t.join(10)
    assert code == 0 and took < 5, f"exit {code} after {took:.1f} s"
