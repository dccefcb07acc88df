"""POST /updates/{update_id}/revert (issue 19): one new request through the
log that restores the old value of every cell the update changed (outcome
op "revert", "reverts"); 409 listing the cells changed since unless
"force"; a revert of a revert restores the reverted values; a revert of a
spread restores every leaf to the cent; survives a restart (replay).
"""
import requests

COLUMNS = [
    {"name": "name", "type": "text"},
    {"name": "v", "type": "number", "scale": 2},
]


def ok(r, status=200):
    assert r.status_code == status, f"want {status}, got {r.status_code}: {r.text}"
    return r.json() if r.content else None


def cells(s):
    rows = ok(s.get("/tables/rv/rows?limit=100"))["rows"]
    return {x["id"]: (x["name"], f'{x["v"]:.2f}' if x["v"] is not None else None) for x in rows}


def exact(s, rid):
    """The leaf's v as the audit log's newest record prints it (exact text)."""
    return ok(s.get(f"/tables/rv/rows/{rid}/history?column=v&limit=1"))["history"][0]["new"]


def test_revert(make_server):
    s = make_server().start()
    ok(s.post("/tables", {"name": "rv", "columns": COLUMNS}), 201)
    ok(s.post("/tables/rv/rows", {"rows": [
        {"id": 1, "name": "R"},
        {"id": 10, "parent_id": 1, "name": "A", "v": "10.01"},
        {"id": 11, "parent_id": 1, "name": "B", "v": "20.50"},
        {"id": 12, "parent_id": 1, "name": "C", "v": "0.03"},
        {"id": 2, "name": "S", "v": "5.00"},
    ]}), 201)
    before = cells(s)
    # A spread whose shares do not divide evenly: 30.54 -> 100.
    spread = ok(s.post("/update_cell", {"table": "rv", "row_id": 1, "column": "v", "value": "100"}))
    assert cells(s)[1][1] == "100.00" and cells(s)[10] != before[10]
    rv = ok(s.post(f"/updates/{spread['update_id']}/revert", {"request_id": "rv-1"}))
    assert rv["op"] == "revert" and rv["reverts"] == spread["update_id"] and rv["status"] == "applied"
    assert cells(s) == before
    assert [exact(s, i) for i in (10, 11, 12)] == ["10.01", "20.50", "0.03"]
    # The same request_id again: the first outcome, nothing applied twice.
    again = ok(s.post(f"/updates/{spread['update_id']}/revert", {"request_id": "rv-1"}))
    assert again["update_id"] == rv["update_id"]

    # Reverting the revert restores the spread's values.
    spread_vals = {c["row_id"]: c["new"] for c in spread["changes"]}
    rr = ok(s.post(f"/updates/{rv['update_id']}/revert", {}))
    assert rr["reverts"] == rv["update_id"]
    now = cells(s)
    for rid, val in spread_vals.items():
        assert f"{float(now[rid][1]):.2f}" == f"{float(val):.2f}", (rid, now[rid], val)

    # A text cell and a cell changed since: 409 listing it, nothing applied.
    t = ok(s.post("/update_cell", {"table": "rv", "row_id": 2, "column": "name", "value": "S2"}))
    ok(s.post("/update_cell", {"table": "rv", "row_id": 2, "column": "name", "value": "S3"}))
    mid = cells(s)
    r = s.post(f"/updates/{t['update_id']}/revert", {})
    assert r.status_code == 409, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    p = r.json()
    assert p["conflicts"] == [{"table": "rv", "row_id": 2, "column": "name", "expected": "S2"}]
    assert cells(s) == mid
    # force: restores the old text anyway.
    f = ok(s.post(f"/updates/{t['update_id']}/revert", {"force": True}))
    assert f["changes"] == [{"table": "rv", "row_id": 2, "column": "name", "old": "S3", "new": "S"}]
    assert cells(s)[2][0] == "S"

    # A leaf write under a parent that changed since (a sibling moved it): 409.
    leaf = ok(s.post("/update_cell", {"table": "rv", "row_id": 10, "column": "v", "value": "1.00"}))
    ok(s.post("/update_cell", {"table": "rv", "row_id": 11, "column": "v", "value": "2.00"}))
    r = s.post(f"/updates/{leaf['update_id']}/revert", {})
    assert r.status_code == 409, r.text
    assert {"table": "rv", "row_id": 1, "column": "v", "expected": leaf_parent_new(leaf)} in r.json()["conflicts"]

    # Bad requests change nothing.
    state = cells(s)
    # A hold cannot be reverted (inserts, deletes, moves can: test_revert_rows.py).
    r = requests.put(s.base + "/tables/rv/holds", json={"holds": [{"row_id": 2, "column": "v"}]},
                     headers=s.headers(None), timeout=15)
    assert r.status_code == 200, r.text
    hold_id = ok(s.get("/tables/rv/rows/2/history?limit=1&column=v"))["history"][0]["update_id"]
    for path, body, status in [("/updates/abc/revert", {}, 400),
                               (f"/updates/{t['update_id']}/revert", {"force": "yes"}, 400),
                               (f"/updates/{t['update_id']}/revert", {"bogus": 1}, 400),
                               ("/updates/1-0/revert", {}, 404),
                               (f"/updates/{hold_id}/revert", {}, 400)]:
        r = s.post(path, body)
        assert r.status_code == status, (path, body, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
    assert cells(s) == state

    # A restart replays the log (kill -9): the state is the same.
    s.stop(sig=9)
    s.start()
    assert cells(s) == state
    assert s.stop() == 0


def leaf_parent_new(leaf):
    return f'{next(c["new"] for c in leaf["changes"] if c["row_id"] == 1):.2f}'
