"""A poison request (issue 12): a request whose apply crashes the manager
must not crash-loop it forever. After DUCKGRID_POISON_ATTEMPTS careful
attempts it is rejected with a 500 outcome and the log goes on.

The crash is provoked by the test-only hook DUCKGRID_TEST_CRASH_ON (honoured
only with DUCKGRID_TEST_HOOKS=1): applying the request with that request_id
aborts the process.
"""
import json
import subprocess

import requests

from conftest import BIN, wait_until
from helpers import Resp, outcomes_in, problem

COLS = [{"name": "v", "type": "number"}]
HOOKS = {"DUCKGRID_TEST_HOOKS": "1", "DUCKGRID_TEST_CRASH_ON": "poison-1", "DUCKGRID_POISON_ATTEMPTS": "1"}


def _died(s, timeout=30):
    code = s.proc.wait(timeout)
    s.stop()
    return code


def _restart_dies(s, redis_server):
    # the killed process's lease would hold for 10 s: the test drops it
    with Resp(redis_server) as rr:
        rr.cmd("DEL", s.prefix + "duckgrid:manager")
    s.start(wait=False)
    return _died(s)


def test_poison_request_is_rejected_after_attempts(make_server, redis_server):
    s = make_server(env=HOOKS).start()
    assert s.post("/tables", {"name": "p", "columns": COLS}).status_code == 201
    assert s.post("/tables/p/rows", {"rows": [{"id": 1, "v": 1}]}).status_code == 201
    snap = s.post("/admin/snapshots", timeout=70)
    assert snap.status_code == 201, snap.text
    try:
        r = s.post("/update_cell?async=true", {"table": "p", "row_id": 1, "column": "v", "value": 5,
                                               "request_id": "poison-1"})
        assert r.status_code == 202, r.text
    except requests.ConnectionError:
        pass  # the process may die before the 202 is written: the request is in the log
    # live apply crashes, the first recovery (a batch) crashes, the one
    # careful attempt allowed crashes: three deaths, each an abort
    assert _died(s) != 0
    assert _restart_dies(s, redis_server) != 0
    assert _restart_dies(s, redis_server) != 0
    with Resp(redis_server) as rr:
        rr.cmd("DEL", s.prefix + "duckgrid:manager")
    s.start()
    # the log went on: a later write applies
    r = s.post("/update_cell", {"table": "p", "row_id": 1, "column": "v", "value": 7})
    assert r.status_code == 200, r.text
    outs = [o for _, o in outcomes_in(redis_server, s)]
    with Resp(redis_server) as rr:
        assert rr.cmd("HLEN", s.prefix + "request_duckpoison") == 0
    poison = [o for o in outs if o.get("request_id") == "poison-1"]
    assert len(poison) == 1, outs
    assert poison[0]["status"] == "rejected"
    err = poison[0]["error"]
    assert err["status"] == 500 and err["code"] == "internal" and err["title"] and "poison" not in err["title"]
    assert "rejected" in err["detail"], err
    assert poison[0]["changes"] == []
    # the poison changed nothing; the later write did
    assert s.get("/tables/p/rows").json()["rows"][0]["v"] == 7
    # a retry with the same request_id is answered with the first outcome,
    # without applying (or crashing) again
    r = s.post("/update_cell", {"table": "p", "row_id": 1, "column": "v", "value": 5, "request_id": "poison-1"})
    problem(r, 500)
    assert s.proc.poll() is None
    assert s.get("/tables/p/rows").json()["rows"][0]["v"] == 7
    with Resp(redis_server) as rr:
        assert rr.cmd("HGETALL", s.prefix + "request_duckpoisoned")[1] == "1"

    # A new follower (an empty database, the same crash hook) follows the
    # log across the poison: it rejects it as the leader did, instead of
    # applying it (which would stop it too), and does not diverge.
    f = make_server(prefix=s.prefix, admin_key=s.admin_key,
                    env=dict(HOOKS, DUCKGRID_KEY_PEPPER_FILE=s.db + ".pepper")).start()
    last = s.post("/update_cell", {"table": "p", "row_id": 1, "column": "v", "value": 8}).json()["update_id"]
    r = f.get(f"/tables/p/rows?min_update={last}&wait_ms=20000")
    assert r.status_code == 200, r.text + f.logs()
    assert r.json()["rows"][0]["v"] == 8
    assert f.proc.poll() is None
    h = f.get("/health").json()
    assert h["manager"] == "follower", h
    assert f.stop() == 0

    # A restore from the snapshot taken before the poison rejects it too:
    # the restored database is the server's, audit log included.
    assert s.stop() == 0
    out = str(s.dir) + "/restored.duckdb"
    p = subprocess.run([BIN, "restore", "--snapshot", snap.json()["id"], "--db", out], env=s.env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["replayed"] >= 3
    from test_snapshots import dump
    assert dump(out) == dump(s.db)


def test_crash_hook_needs_test_hooks(make_server):
    """Without DUCKGRID_TEST_HOOKS=1 the crash hook does nothing."""
    s = make_server(env={"DUCKGRID_TEST_CRASH_ON": "poison-1"}).start()
    assert s.post("/tables", {"name": "p", "columns": COLS}).status_code == 201
    assert s.post("/tables/p/rows", {"rows": [{"id": 1, "v": 1}]}).status_code == 201
    r = s.post("/update_cell", {"table": "p", "row_id": 1, "column": "v", "value": 5, "request_id": "poison-1"})
    assert r.status_code == 200, r.text
    assert s.proc.poll() is None
