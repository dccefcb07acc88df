"""Redis is a trust boundary (issue 14, item 1).

Whoever can XADD to Redis must not become a caller of the manager or a
source of truth for the API: entries of request_duck and response_duck carry
an HMAC-SHA256 keyed from the pepper file (src/stream/entry_mac.c); an entry
without a valid one is counted in /metrics and never applied. Names read
from a stream pass the whitelist before they go near SQL, even when signed.

The tests play the attacker with a raw RESP client (tests/api/helpers.py):
forged requests and outcomes, and replays of real entries. Where a test
needs a *valid* MAC it derives the key from the pepper file as the server
does (the attacker of these tests does not have that file).
"""
import hashlib
import hmac
import json
import re
import time

import pytest
import requests

from conftest import wait_until
from helpers import Resp

INJECT = "t1\";UPDATE dg.api_keys SET role='admin';--"


def stream_key(server):
    with open(server.db + ".pepper", "rb") as f:
        pepper = f.read()
    return hmac.new(pepper, b"duckgrid stream v1", hashlib.sha256).digest()


def mac_res(key, sid, res):
    return hmac.new(key, b"dg-res-v1\0" + sid.encode() + b"\0" + res.encode(), hashlib.sha256).hexdigest()


def rejected_count(server, stream):
    text = server.get("/metrics").text
    m = re.search(r'^duckgrid_stream_entries_rejected_total\{stream="%s"\} (\d+)$' % stream, text, re.M)
    return int(m.group(1)) if m else 0  # absent: later assertions on the count fail


def fields(entry):
    return dict(zip(entry[1][::2], entry[1][1::2]))


def outcome_of(redis, server, sid, timeout=10):
    """The outcome published under stream id sid, or None."""
    got = {}

    def find():
        with Resp(redis) as r:
            page = r.cmd("XRANGE", server.prefix + "response_duck", sid, sid)
        if page:
            got["res"] = json.loads(fields(page[0])["res"])
        return bool(page)
    wait_until(find, timeout)
    return got.get("res")


def cell(server, table, row, col):
    r = server.get(f"/tables/{table}/rows/{row}")
    assert r.status_code == 200, r.text
    return r.json()["cells"][col] if "cells" in r.json() else r.json()[col]


def sync_write(server):
    """A synchronous write: when it is answered, every entry XADDed before it
    has been through the manager and the response reader."""
    r = server.post("/update_cell", {"table": "t1", "row_id": 1, "column": "v", "value": 3})
    assert r.status_code == 200, r.text


def new_key(server, role, name):
    r = server.post("/admin/keys", {"name": name, "role": role})
    assert r.status_code == 201, r.text
    return r.json()["key"]


@pytest.fixture(scope="module")
def grid(server):
    r = server.post("/tables", {"name": "t1", "columns": [{"name": "v", "type": "number", "scale": 0}]})
    assert r.status_code == 201, r.text
    r = server.post("/tables/t1/rows", {"rows": [{"id": 1, "v": 1}]})
    assert r.status_code == 201, r.text
    return server


def test_forged_outcome_with_sql_in_a_table_name_is_ignored(grid, redis_server):
    """A create_table outcome XADDed by hand, whose name carries SQL, must not
    reach the catalog (nor count_rows' SQL): before the fix every key became
    admin on the next GET /tables."""
    s = grid
    reader = new_key(s, "read", "forged-outcome-reader")
    before = rejected_count(s, "response_duck")
    res = {"update_id": "x", "request_id": "forged", "user": "admin", "op": "create_table",
           "status": "applied", "table": INJECT, "changes": [], "error": None,
           "table_def": {"name": INJECT, "columns": [{"name": "v", "type": "number", "scale": 0}]}}
    with Resp(redis_server) as r:
        r.cmd("XADD", s.prefix + "response_duck", "*", "res", json.dumps(res))
    # A request queued within the forged entry's millisecond (or before it:
    # the signed one's id is a millisecond ahead) would get an id not above
    # it, and its outcome could not be published after it.
    time.sleep(0.01)
    sync_write(s)  # its outcome follows the forged one: the reader has seen both
    r = s.get("/tables", key=reader)
    assert r.status_code == 200, r.text
    assert INJECT not in [t["name"] for t in r.json()["tables"]], r.text
    time.sleep(1.2)  # the key cache re-reads roles within a second
    r = s.post("/admin/keys", {"name": "escalated", "role": "admin"}, key=reader)
    assert r.status_code == 403, "a read key became admin through a forged outcome: " + r.text
    assert rejected_count(s, "response_duck") == before + 1
    assert "refused: no MAC" in s.logs()


def test_signed_outcome_with_a_bad_name_is_still_not_used(grid, redis_server):
    """Defence in depth: even an outcome with a valid MAC (a bug, a stolen
    pepper) cannot put a name that fails the whitelist into the catalog."""
    s = grid
    reader = new_key(s, "read", "signed-outcome-reader")
    key = stream_key(s)
    res = json.dumps({"update_id": "x", "request_id": "signed-bad", "user": "admin", "op": "create_table",
                      "status": "applied", "table": INJECT, "changes": [], "error": None,
                      "table_def": {"name": INJECT, "columns": [{"name": "v", "type": "number", "scale": 0}]}})
    sid = "%d-0" % (int(time.time() * 1000) + 1)
    with Resp(redis_server) as r:
        r.cmd("XADD", s.prefix + "response_duck", sid, "res", res, "mac", mac_res(key, sid, res))
    r = s.get(f"/get_updates?since=0&limit=1000", key=reader)
    assert r.status_code == 200, r.text
    assert any(u.get("request_id") == "signed-bad" for u in r.json()["updates"]), "signed outcome not served"
    r = s.get("/tables", key=reader)
    assert INJECT not in [t["name"] for t in r.json()["tables"]], r.text
    time.sleep(1.2)
    r = s.post("/admin/keys", {"name": "escalated2", "role": "admin"}, key=reader)
    assert r.status_code == 403, r.text


def test_forged_request_is_rejected_and_not_applied(grid, redis_server):
    """A request XADDed by hand (no MAC, or a wrong one) is not applied: it
    gets a rejected outcome under its own stream id, carrying none of its
    content, and is counted."""
    s = grid
    before = rejected_count(s, "request_duck")
    req = {"op": "update_cell", "table": "t1", "row_id": 1, "column": "v", "value": 999,
           "request_id": "forged-req", "user": "admin"}
    sids = []
    with Resp(redis_server) as r:
        sids.append(r.cmd("XADD", s.prefix + "request_duck", "*", "req", json.dumps(req)))
        req["request_id"] = "forged-req-2"
        sids.append(r.cmd("XADD", s.prefix + "request_duck", "*", "req", json.dumps(req),
                          "t", str(int(time.time() * 1000)), "mac", "0" * 64))
    sync_write(s)
    assert str(cell(s, "t1", 1, "v")) == "3"
    for sid in sids:
        out = outcome_of(redis_server, s, sid)
        assert out is not None, "no outcome for the forged request " + sid + "\n" + s.logs()
        assert out["status"] == "rejected" and out["op"] == "unauthenticated_entry", out
        assert out["request_id"] == sid and not out.get("user"), out
    assert str(cell(s, "t1", 1, "v")) == "3"
    assert rejected_count(s, "request_duck") >= before + 2


def test_replayed_request_inside_the_window_is_a_duplicate(grid, redis_server):
    """A real request entry copied again at once verifies (the MAC cannot
    cover an id Redis has not chosen yet) but repeats a request_id the
    manager remembers: nothing is applied and no second outcome appears."""
    s = grid
    assert s.post("/update_cell", {"table": "t1", "row_id": 1, "column": "v", "value": 5,
                                   "request_id": "replay-a"}).status_code == 200
    assert s.post("/update_cell", {"table": "t1", "row_id": 1, "column": "v", "value": 7}).status_code == 200
    with Resp(redis_server) as r:
        entries = r.cmd("XRANGE", s.prefix + "request_duck", "-", "+")
        orig = [e for e in entries if json.loads(fields(e)["req"]).get("request_id") == "replay-a"][0]
        f = fields(orig)
        assert set(f) >= {"req", "t", "mac"}, f
        sid = r.cmd("XADD", s.prefix + "request_duck", "*", "req", f["req"], "t", f["t"], "mac", f["mac"])
    assert outcome_of(redis_server, s, sid, timeout=2) is None
    assert str(cell(s, "t1", 1, "v")) == "7"


def test_replayed_outcome_is_ignored(grid, redis_server):
    """An old, validly signed outcome XADDed again under a new id: the MAC
    covers the id it was published under, so the copy does not verify.
    Before the fix the API re-created a dropped table from it."""
    s = grid
    assert s.post("/tables", {"name": "gone1", "columns": [{"name": "v", "type": "text"}]}).status_code == 201
    r = requests.delete(s.base + "/tables/gone1", headers=s.headers(), timeout=15)
    assert r.status_code in (200, 204), r.text
    before = rejected_count(s, "response_duck")
    with Resp(redis_server) as rc:
        entries = rc.cmd("XRANGE", s.prefix + "response_duck", "-", "+")
        orig = [e for e in entries
                if json.loads(fields(e)["res"]).get("op") == "create_table"
                and json.loads(fields(e)["res"]).get("table") == "gone1"][0]
        f = fields(orig)
        args = ["XADD", s.prefix + "response_duck", "*"]
        for k, v in f.items():
            args += [k, v]
        rc.cmd(*args)
    assert wait_until(lambda: rejected_count(s, "response_duck") > before, 10), s.logs()
    names = [t["name"] for t in s.get("/tables").json()["tables"]]
    assert "gone1" not in names, names


def test_replayed_request_after_the_window_is_rejected(make_server, redis_server):
    """A real request entry replayed long after it was signed (simulated by
    an explicit stream id 200 s after its signed time) is stale: rejected
    outcome, counted, not applied. Its own server: the future id moves the
    stream's clock."""
    s = make_server().start()
    assert s.post("/tables", {"name": "t1", "columns": [{"name": "v", "type": "number", "scale": 0}]}).status_code == 201
    assert s.post("/tables/t1/rows", {"rows": [{"id": 1, "v": 1}]}).status_code == 201
    assert s.post("/update_cell", {"table": "t1", "row_id": 1, "column": "v", "value": 5,
                                   "request_id": "late-a"}).status_code == 200
    assert s.post("/update_cell", {"table": "t1", "row_id": 1, "column": "v", "value": 7}).status_code == 200
    before = rejected_count(s, "request_duck")
    with Resp(redis_server) as r:
        entries = r.cmd("XRANGE", s.prefix + "request_duck", "-", "+")
        orig = [e for e in entries if json.loads(fields(e)["req"]).get("request_id") == "late-a"][0]
        f = fields(orig)
        sid = "%d-0" % (int(f["t"]) + 200000)
        r.cmd("XADD", s.prefix + "request_duck", sid, "req", f["req"], "t", f["t"], "mac", f["mac"])
    out = outcome_of(redis_server, s, sid)
    assert out is not None and out["status"] == "rejected" and out["op"] == "unauthenticated_entry", out
    assert str(cell(s, "t1", 1, "v")) == "7"
    assert rejected_count(s, "request_duck") == before + 1
    assert "stale" in s.logs()


def mac_req(key, t, req):
    return hmac.new(key, b"dg-req-v1\0" + t.encode() + b"\0" + req.encode(), hashlib.sha256).hexdigest()


def roles(server):
    """Every key's role, read from DuckDB's dg.api_keys by GET /admin/keys."""
    r = server.get("/admin/keys")
    assert r.status_code == 200, r.text
    body = r.json()
    keys = body["keys"] if isinstance(body, dict) else body
    return {k["name"]: k["role"] for k in keys}


def test_signed_outcome_with_sql_in_a_column_name_is_not_used(grid, redis_server):
    """A validly signed create_table outcome with a valid table name but SQL
    in a column name: the definition is refused whole, so the table never
    reaches the catalog, and no read or export builds SQL around that column
    (they would splice it into SELECT … "<column>" …)."""
    s = grid
    reader = new_key(s, "read", "signed-column-reader")
    before = roles(s)
    key = stream_key(s)
    bad_col = "v\" FROM dg.api_keys; UPDATE dg.api_keys SET role='admin';--"
    res = json.dumps({"update_id": "x", "request_id": "signed-bad-col", "user": "admin", "op": "create_table",
                      "status": "applied", "table": "forged_cols", "changes": [], "error": None,
                      "table_def": {"name": "forged_cols",
                                    "columns": [{"name": bad_col, "type": "text"}]}})
    sid = "%d-0" % (int(time.time() * 1000) + 1)
    with Resp(redis_server) as r:
        r.cmd("XADD", s.prefix + "response_duck", sid, "res", res, "mac", mac_res(key, sid, res))
    # A request queued within the forged entry's millisecond (or before it:
    # the signed one's id is a millisecond ahead) would get an id not above
    # it, and its outcome could not be published after it.
    time.sleep(0.01)
    sync_write(s)  # its outcome follows the forged one: the reader has seen both
    assert "forged_cols" not in [t["name"] for t in s.get("/tables", key=reader).json()["tables"]]
    for path in ("/tables/forged_cols", "/tables/forged_cols/rows", "/tables/forged_cols/export?format=csv",
                 "/tables/forged_cols/export?format=parquet"):
        r = s.get(path, key=reader)
        assert r.status_code == 404, (path, r.status_code, r.text)
    assert roles(s) == before


def test_signed_request_with_sql_in_a_table_name_is_rejected_by_the_manager(grid, redis_server):
    """Defence in depth on the other side: a request with a valid MAC (a bug
    in an API process, a stolen pepper) whose create_table name carries SQL is
    rejected by the manager's own whitelist (the name would go into its DDL)
    and changes nothing; so is one with SQL in a column name."""
    s = grid
    key = stream_key(s)
    before = roles(s)
    tables_before = sorted(t["name"] for t in s.get("/tables").json()["tables"])
    cases = [("signed-sql-table", INJECT, "v"),
             ("signed-sql-col", "okname2", "v\" VARCHAR); UPDATE dg.api_keys SET role='admin';--")]
    sids = []
    with Resp(redis_server) as r:
        for rid, table, col in cases:
            req = json.dumps({"op": "create_table", "table": table, "columns": [{"name": col, "type": "text"}],
                              "request_id": rid, "user": "admin"})
            t = str(int(time.time() * 1000))
            sids.append(r.cmd("XADD", s.prefix + "request_duck", "*", "req", req, "t", t, "mac", mac_req(key, t, req)))
    sync_write(s)
    for sid, (rid, _, _) in zip(sids, cases):
        out = outcome_of(redis_server, s, sid)
        assert out is not None, "no outcome for the signed request " + sid + "\n" + s.logs()
        # signed: it is the manager's whitelist, not the MAC check, that refuses it
        assert out["op"] == "create_table" and out["request_id"] == rid, out
        assert out["status"] == "rejected" and out["error"]["status"] == 400, out
    assert sorted(t["name"] for t in s.get("/tables").json()["tables"]) == tables_before
    assert roles(s) == before
