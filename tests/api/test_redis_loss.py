"""Redis loses everything (issue 16's disaster): a private redis-server is
emptied with FLUSHALL under a running leader, and under a stopped one.
The node goes on from its DuckDB and the archive: every answered write is
there, new ids stay above every id handed out before, and a get_updates
cursor from before the loss gets 410 (the client reloads)."""
import os
import signal

import pytest

from conftest import Redis, wait_until

COLS = [{"name": "v", "type": "number", "scale": 2}, {"name": "name", "type": "text"}]


@pytest.fixture
def own_redis():
    r = Redis().start()
    yield r
    r.cleanup()


def xid(t):
    return tuple(map(int, t.split("-")))


def _metric(s, name):
    for line in s.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _leading(s):
    r = s.get("/health")
    return r.status_code == 200 and r.json().get("manager") == "leader"


def _tree(s):
    assert s.post("/tables", {"name": "rl", "columns": COLS}).status_code == 201
    rows = [{"id": 1, "name": "root"}] + [{"id": 10 + k, "parent_id": 1, "v": "0"} for k in range(4)]
    r = s.post("/tables/rl/rows", {"rows": rows})
    assert r.status_code == 201, r.text


def _adds(s, n, tag):
    """n sync writes adding k cents to leaf 10 + k % 4; the last update id."""
    last = None
    for i in range(n):
        r = s.post("/update_cell", {"table": "rl", "row_id": 10 + i % 4, "column": "v", "value": "0.01",
                                    "mode": "add", "request_id": f"{tag}-{i}"})
        assert r.status_code == 200, r.text
        last = r.json()["update_id"]
    return last


def _expect(total):
    """Leaf values after `total` adds of 0.01 spread round-robin over 4 leaves."""
    return {10 + k: round(0.01 * len(range(k, total, 4)), 2) for k in range(4)}


def _check(s, total):
    rows = {r["id"]: r for r in s.get("/tables/rl/rows?limit=100").json()["rows"]}
    want = _expect(total)
    assert {k: rows[k]["v"] for k in want} == want
    assert rows[1]["v"] == round(sum(want.values()), 2)


def test_flushall_under_a_running_leader(make_server, own_redis):
    # A long persist interval: the writes right before the loss are
    # published (answered) but only in the leader's memory.
    s = make_server(redis_url=own_redis.url, env={"DUCKGRID_PERSIST_INTERVAL_MS": "60000"}).start()
    _tree(s)
    _adds(s, 20, "a")
    cursor = s.get("/get_updates?since=0&limit=1000").json()["next"]
    last = _adds(s, 20, "b")  # no read in between: nothing asks for a flush
    assert own_redis.cli("FLUSHALL") == "OK"

    assert wait_until(lambda: _metric(s, "duckgrid_redis_log_losses_total") == 1, 20), s.logs()
    assert wait_until(lambda: _leading(s), 20), s.logs()
    _check(s, 40)
    r = s.post("/update_cell", {"table": "rl", "row_id": 10, "column": "name", "value": "after",
                                "request_id": "after-1"})
    assert r.status_code == 200, r.text
    assert xid(r.json()["update_id"]) > xid(last)
    # A cursor from before the loss: the updates it has not seen are gone.
    g = s.get(f"/get_updates?since={cursor}")
    assert g.status_code == 410, g.text
    # A retry of a write answered before the loss is still a duplicate.
    r = s.post("/update_cell", {"table": "rl", "row_id": 10, "column": "v", "value": "0.01", "mode": "add",
                                "request_id": "b-19"})
    assert r.status_code == 200, r.text
    _check(s, 40)
    assert "Redis lost its data" in s.logs()
    assert s.stop() == 0


def test_flushall_while_stopped_with_the_archive(make_server, own_redis, tmp_path):
    """The process dies with requests archived but not in its database,
    then Redis loses everything: at start it applies them from the archive."""
    arch = str(tmp_path / "archive")
    env = {"DUCKGRID_PERSIST_INTERVAL_MS": "60000", "DUCKGRID_ARCHIVE_DIR": arch,
           "DUCKGRID_ARCHIVE_INTERVAL_MS": "100"}
    s = make_server(redis_url=own_redis.url, env=env).start()
    _tree(s)
    assert s.get("/tables/rl").status_code == 200  # a read: the DDL and the rows are persisted
    last = _adds(s, 30, "c")
    added = _metric(s, "duckgrid_archive_entries_total")
    assert wait_until(lambda: _metric(s, "duckgrid_archive_entries_total") >= 32, 20), (added, s.logs())
    s.stop(signal.SIGKILL)
    assert own_redis.cli("FLUSHALL") == "OK"

    s.start()
    assert wait_until(lambda: _leading(s), 20), s.logs()
    _check(s, 30)
    assert _metric(s, "duckgrid_redis_log_losses_total") == 1
    r = s.post("/update_cell", {"table": "rl", "row_id": 11, "column": "v", "value": "0.01", "mode": "add",
                                "request_id": "d-0"})
    assert r.status_code == 200, r.text
    assert xid(r.json()["update_id"]) > xid(last)
    rows = {r["id"]: r for r in s.get("/tables/rl/rows?limit=100").json()["rows"]}
    assert rows[11]["v"] == round(_expect(30)[11] + 0.01, 2)
    assert "applied 30 archived requests" in s.logs(), s.logs()
    assert os.listdir(arch)
    # Starting again changes nothing: the database holds it all now.
    assert s.stop() == 0
    s.start()
    assert wait_until(lambda: _leading(s), 20), s.logs()
    rows = {r["id"]: r for r in s.get("/tables/rl/rows?limit=100").json()["rows"]}
    assert rows[11]["v"] == round(_expect(30)[11] + 0.01, 2)
    assert _metric(s, "duckgrid_redis_log_losses_total") == 0
    assert s.stop() == 0
