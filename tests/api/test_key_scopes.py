"""Key scopes, expiry and the admin audit log (issue 14, item 9), and
DuckDB's error text kept from read users (item 8).

A key made with "tables": [...] reaches only those tables: reads, writes,
holds, update pages, events, the changes of an update, and the views whose
every table is in scope; /tables lists only its tables and /metrics is 403.
A key with "expires_at" is refused like an unknown key from then on, and
its open streams end. Key creation, deletion and denied admin actions are in
GET /admin/audit with who did them.
"""
import datetime
import time

import json

import pytest
import requests
import websocket

from helpers import new_key
from test_events import SSE


def cols():
    return [{"name": "v", "type": "number", "scale": 0}, {"name": "txt", "type": "text"}]


@pytest.fixture(scope="module")
def ks(redis_server):
    from conftest import Server
    s = Server(redis_server.url, env={"DUCKGRID_HEARTBEAT_MS": "60000"}).start()
    for t in ("sales", "costs"):
        r = s.post("/tables", {"name": t, "columns": cols()})
        assert r.status_code == 201, r.text
        r = s.post(f"/tables/{t}/rows", {"rows": [{"id": 1, "v": 1, "txt": "abc"}]})
        assert r.status_code == 201, r.text
    for name, sql in (("v_sales", "SELECT v FROM sales"), ("v_costs", "SELECT v FROM costs"),
                      ("v_both", "SELECT s.v FROM sales s JOIN costs c ON s.id = c.id"),
                      ("v_nested", "SELECT v FROM v_sales"),
                      ("v_bad", "SELECT CAST(txt AS INTEGER) AS n FROM sales")):
        r = s.post("/views", {"name": name, "sql": sql})
        assert r.status_code == 201, r.text
    yield s
    s.cleanup()


def rfc3339(seconds_from_now):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_scoped_reads_tables_and_metrics(ks):
    k = new_key(ks, "read", ["sales"])
    assert k["tables"] == ["sales"]
    key = k["key"]
    names = [t["name"] for t in ks.get("/tables", key).json()["tables"]]
    assert names == ["sales"]
    assert sorted(t["name"] for t in ks.get("/tables").json()["tables"]) == ["costs", "sales"]
    assert ks.get("/tables/sales/rows", key).status_code == 200
    for path in ("/tables/costs", "/tables/costs/rows", "/tables/costs/rows/1", "/tables/costs/holds"):
        r = ks.get(path, key)
        assert r.status_code == 403, (path, r.text)
    # An absent table answers as an out-of-scope one: no existence leak.
    assert ks.get("/tables/nosuch", key).status_code == 403
    assert ks.get("/metrics", key).status_code == 403
    assert ks.get("/metrics").status_code == 200
    listed = {x["id"]: x for x in ks.get("/admin/keys").json()["keys"]}
    assert listed[k["id"]]["tables"] == ["sales"] and listed[k["id"]]["expires_at"] is None


def test_scoped_writes(ks):
    key = new_key(ks, "write", ["sales"])["key"]
    ok = ks.post("/update_cell", {"table": "sales", "row_id": 1, "column": "v", "value": 5}, key)
    assert ok.status_code == 200, ok.text
    before = ks.get("/tables/costs/rows/1").json()
    for path, body in (("/update_cell", {"table": "costs", "row_id": 1, "column": "v", "value": 7}),
                       ("/update_cells", {"updates": [
                           {"table": "sales", "row_id": 1, "column": "v", "value": 8},
                           {"table": "costs", "row_id": 1, "column": "v", "value": 8}]}),
                       ("/tables/costs/rows", {"rows": [{"id": 9, "v": 1}]})):
        r = ks.post(path, body, key)
        assert r.status_code == 403, (path, r.text)
    r = requests.put(f"{ks.base}/tables/costs/holds", json={"holds": [{"row_id": 1, "column": "v"}]},
                     headers=ks.headers(key), timeout=10)
    assert r.status_code == 403, r.text
    r = requests.delete(f"{ks.base}/tables/costs/rows/1", headers=ks.headers(key), timeout=10)
    assert r.status_code == 403, r.text
    assert ks.get("/tables/costs/rows/1").json() == before
    assert ks.get("/tables/sales/rows/1").json()["v"] == 5  # the refused batch changed nothing


def test_scoped_views(ks):
    key = new_key(ks, "read", ["sales"])["key"]
    names = sorted(v["name"] for v in ks.get("/views", key).json()["views"])
    assert names == ["v_bad", "v_nested", "v_sales"]
    assert ks.get("/views/v_sales", key).status_code == 200
    assert ks.get("/views/v_nested", key).status_code == 200
    for v in ("v_costs", "v_both"):
        r = ks.get(f"/views/{v}", key)
        assert r.status_code == 404, r.text
    assert ks.get("/views/v_both").status_code == 200


def test_scoped_updates_events_and_changes(ks):
    key = new_key(ks, "read", ["sales"])["key"]
    rs = ks.post("/update_cell", {"table": "sales", "row_id": 1, "column": "v", "value": 11})
    rc = ks.post("/update_cell", {"table": "costs", "row_id": 1, "column": "v", "value": 12})
    assert rs.status_code == 200 and rc.status_code == 200, (rs.text, rc.text)
    cid = rc.json()["update_id"]
    sid = rs.json()["update_id"]
    ups = ks.get("/get_updates?since=0&limit=1000", key).json()["updates"]
    tables = {u.get("table") for u in ups}
    assert "costs" not in tables and "sales" in tables, tables
    assert all(c.get("table") == "sales" for u in ups for c in u.get("changes", [])), ups
    assert len(ks.get("/get_updates?since=0&limit=1000").json()["updates"]) > len(ups)
    assert ks.get("/get_updates?table=costs", key).status_code == 403
    assert ks.get(f"/updates/{cid}/changes", key).status_code == 403
    assert ks.get(f"/updates/{sid}/changes", key).status_code == 200

    class K:
        admin_key = key
        port = ks.port
    sse = SSE(K, "?since=0")
    try:
        assert sse.status == 200
        ks.post("/update_cell", {"table": "costs", "row_id": 1, "column": "v", "value": 13})
        last = ks.post("/update_cell", {"table": "sales", "row_id": 1, "column": "v", "value": 14}).json()
        seen = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ev = sse.next(timeout=max(0.1, deadline - time.monotonic()))
            if ev is None:
                break
            if ev.get("event") == "update":
                seen.append(ev)
                if ev.get("id") == last["update_id"]:
                    break
        assert seen and seen[-1]["id"] == last["update_id"], seen
        assert all('"costs"' not in e["data"] for e in seen), seen
    finally:
        sse.close()
    assert SSE(K, "?table=costs").status == 403


def test_scoped_websocket(ks):
    key = new_key(ks, "write", ["sales"])["key"]
    ws = websocket.create_connection(f"ws://127.0.0.1:{ks.port}/ws", timeout=10,
                                     header=[f"Authorization: Bearer {key}"])
    try:
        def recv(typ):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                m = json.loads(ws.recv())
                if m["type"] == typ:
                    return m
            raise AssertionError("no " + typ)
        ws.send(json.dumps({"type": "subscribe", "tables": ["costs"]}))
        assert recv("error")["status"] == 403
        ws.send(json.dumps({"type": "subscribe"}))  # every table: within the scope only
        recv("subscribed")
        ws.send(json.dumps({"type": "update_cell", "id": 1, "table": "costs", "row_id": 1, "column": "v",
                            "value": 21}))
        assert recv("result")["status"] == 403
        ks.post("/update_cell", {"table": "costs", "row_id": 1, "column": "v", "value": 22})
        ws.send(json.dumps({"type": "update_cell", "id": 2, "table": "sales", "row_id": 1, "column": "v",
                            "value": 23}))
        m = recv("update")
        assert m["update"]["table"] == "sales", m  # the costs update before it was left out
    finally:
        ws.close()


def test_key_creation_is_validated(ks):
    for body in ({"name": "a", "role": "admin", "tables": ["sales"]},
                 {"name": "a", "role": "read", "tables": []},
                 {"name": "a", "role": "read", "tables": ["Bad-Name"]},
                 {"name": "a", "role": "read", "tables": "sales"},
                 {"name": "a", "role": "read", "expires_at": "tomorrow"},
                 {"name": "a", "role": "read", "expires_at": "2026-02-31T00:00:00Z"},
                 {"name": "a", "role": "read", "expires_at": "2001-01-01T00:00:00Z"}):
        r = ks.post("/admin/keys", body)
        assert r.status_code == 400, (body, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")


def test_expired_key_is_refused_and_its_stream_ends(ks):
    k = new_key(ks, "read", expires_at=rfc3339(2))
    assert k["expires_at"].endswith("Z")
    assert ks.get("/tables", k["key"]).status_code == 200

    class K:
        admin_key = k["key"]
        port = ks.port
    sse = SSE(K)
    try:
        assert sse.status == 200
        deadline = time.monotonic() + 8
        ended = None
        while time.monotonic() < deadline and ended is None:
            ev = sse.next(timeout=max(0.1, deadline - time.monotonic()))
            if ev and ev.get("event") == "revoked":
                ended = ev
        assert ended is not None and "expired" in ended["data"], ended
    finally:
        sse.close()
    r = ks.get("/tables", k["key"])
    assert r.status_code == 401, r.text
    # An offset is honoured: the same instant written in +02:00 is accepted.
    t = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=2))) + datetime.timedelta(hours=1)
    assert new_key(ks, "read", expires_at=t.strftime("%Y-%m-%dT%H:%M:%S.5+02:00"))["expires_at"]


def test_audit_log_records_who_did_what(ks):
    k = new_key(ks, "write", ["sales"])
    r = requests.delete(f"{ks.base}/admin/keys/{k['id']}", headers=ks.headers(), timeout=10)
    assert r.status_code == 204
    reader = new_key(ks, "read")["key"]
    assert ks.post("/admin/keys", {"name": "x", "role": "admin"}, reader).status_code == 403
    assert ks.get("/admin/audit", reader).status_code == 403
    entries = ks.get("/admin/audit?limit=50").json()["entries"]
    acts = [(e["action"], e["detail"], e["actor"]) for e in entries]
    assert any(a == "key.create" and f"key {k['id']} " in d and "tables ,sales," in d and "bootstrap-admin" in w
               for a, d, w in acts), acts
    assert any(a == "key.delete" and d == f"key {k['id']}" and "bootstrap-admin" in w for a, d, w in acts), acts
    denied = [(d, w) for a, d, w in acts if a == "admin.denied"]
    assert ("POST /admin/keys" in [d for d, w in denied] and "GET /admin/audit" in [d for d, w in denied]), acts
    assert all(w.startswith("key:") for d, w in denied)
    assert ks.get("/admin/audit?limit=0").status_code == 400


def test_duckdb_error_text_is_not_returned_to_read_users(ks):
    """Item 8: a view failing at run time answers a plain problem; DuckDB's
    own text (error class, the failing value, hints) goes to the log only."""
    key = new_key(ks, "read")["key"]
    r = ks.get("/views/v_bad", key)
    assert r.status_code == 500, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    for leak in ("Conversion Error", "Error:", "abc", "INTEGER", "Did you mean", "LINE "):
        assert leak not in r.text, r.text
    with open(ks.stderr_path, errors="replace") as f:
        logged = f.read()
    with open(ks.stdout_path, errors="replace") as f:
        logged += f.read()
    assert "v_bad" in logged and "Conversion" in logged


def test_scoped_history_export_and_revert(ks):
    """The planning routes (history, export, revert) keep to the key's tables."""
    key = new_key(ks, "write", ["sales"])["key"]
    other = ks.post("/update_cell", {"table": "costs", "row_id": 1, "column": "v", "value": 41})
    assert other.status_code == 200, other.text
    mine = ks.post("/update_cell", {"table": "sales", "row_id": 1, "column": "v", "value": 42}, key)
    assert mine.status_code == 200, mine.text
    assert ks.get("/tables/sales/rows/1/history", key).status_code == 200
    assert ks.get("/tables/costs/rows/1/history", key).status_code == 403
    assert ks.get("/tables/sales/export?format=csv", key).status_code == 200
    assert ks.get("/tables/costs/export?format=csv", key).status_code == 403
    r = ks.post(f"/updates/{other.json()['update_id']}/revert", {}, key)
    assert r.status_code == 403, r.text
    assert ks.get("/tables/costs/rows/1").json()["v"] == 41  # the refused revert changed nothing
    r = ks.post(f"/updates/{mine.json()['update_id']}/revert", {}, key)
    assert r.status_code == 200, r.text
    assert ks.get("/tables/sales/rows/1").json()["v"] != 42
