"""Reverting inserts, deletes and moves (issue 19): POST /updates/{id}/revert
of a delete brings every deleted row back with its id, parent and every
cell to the cent, and the ancestors' totals with them; of an insert deletes
the inserted rows (409 when one changed since: a cell written, a child
added, moved; unless "force"); of a move puts the row back. A revert of a
revert re-does the update. Every revert is one request through the log: a
follower applies it identically, and so does a replay after kill -9.
An update logged before deleted rows' values were recorded answers 409.
"""
import requests

import security_helpers as sh
import test_followers
from conftest import wait_until
from helpers import all_rows, check_invariant, problem

COLUMNS = [
    {"name": "name", "type": "text"},
    {"name": "v", "type": "number", "scale": 2},
    {"name": "u", "type": "number", "scale": 0},
]
NUMS = ["v", "u"]

# 1 Brand            30.54  8
#   10 Fam A         30.51  7
#     100 a1         10.01  3
#     101 a2         20.50  4
#   11 Fam B          0.03  1
#     110 b1          0.03  1
# 2 Other             5.00  2
ROWS = [
    {"id": 1, "name": "Brand"},
    {"id": 10, "parent_id": 1, "name": "Fam A"},
    {"id": 100, "parent_id": 10, "name": "a1", "v": "10.01", "u": 3},
    {"id": 101, "parent_id": 10, "name": "a2", "v": "20.50", "u": 4},
    {"id": 11, "parent_id": 1, "name": "Fam B"},
    {"id": 110, "parent_id": 11, "name": "b1", "v": "0.03", "u": 1},
    {"id": 2, "name": "Other", "v": "5.00", "u": 2},
]


def ok(r, status=200):
    assert r.status_code == status, f"want {status}, got {r.status_code}: {r.text}"
    return r.json() if r.content else None


def state(s, table="rr"):
    """{id: (parent, name, v, u)} with the numbers' exact text."""
    by_id = check_invariant(s, table, NUMS)
    return {int(i): (None if x["parent_id"] is None else int(x["parent_id"]), x["name"], str(x["v"]), str(x["u"]))
            for i, x in by_id.items()}


def last_update_of(s, rid, table="rr"):
    """The newest update that touched row rid (its history, also once deleted)."""
    return ok(s.get(f"/tables/{table}/rows/{rid}/history?limit=1"))["history"][0]["update_id"]


def delete(s, rid, cascade=False):
    q = "?cascade=true" if cascade else ""
    r = requests.delete(f"{s.base}/tables/rr/rows/{rid}{q}", headers=s.headers(None), timeout=15)
    assert r.status_code == 204, r.text
    return last_update_of(s, rid)


def patch(s, rid, body):
    return ok(requests.patch(f"{s.base}/tables/rr/rows/{rid}", json=body, headers=s.headers(None), timeout=15))


def revert(s, uid, **body):
    return s.post(f"/updates/{uid}/revert", body)


def make_tree(s):
    ok(s.post("/tables", {"name": "rr", "columns": COLUMNS}), 201)
    ok(s.post("/tables/rr/rows", {"rows": ROWS}), 201)
    st = state(s)
    assert st[1] == (None, "Brand", "30.54", "8") and st[10][2:] == ("30.51", "7"), st
    return st


def test_revert_of_a_subtree_delete_brings_the_rows_and_the_totals_back(make_server):
    s = make_server().start()
    before = make_tree(s)
    uid = delete(s, 10, cascade=True)
    gone = state(s)
    assert 10 not in gone and 100 not in gone and 101 not in gone
    assert gone[1] == (None, "Brand", "0.03", "1")

    rv = ok(revert(s, uid, request_id="rr-del-1"))
    assert rv["op"] == "revert" and rv["reverts"] == uid and rv["status"] == "applied"
    assert sorted(rv["inserted"]) == [10, 100, 101]
    assert state(s) == before
    # The API knows the rows exist again: a write to one is not a 404.
    ok(s.post("/update_cell", {"table": "rr", "row_id": 100, "column": "name", "value": "a1"}))
    # The ancestors' totals moved back by exactly what the subtree held.
    # (Each row inserted again rolls up on its own: a cell may be listed more
    # than once, chained old -> new, as in any multi-row insert.)
    net = {}
    for c in rv["changes"]:
        if c["row_id"] == 1:
            net.setdefault(c["column"], [str(c["old"]), None])[1] = str(c["new"])
    assert net == {"v": ["0.03", "30.54"], "u": ["1", "8"]}, rv["changes"]
    # Idempotent: the same request_id answers the first outcome.
    assert ok(revert(s, uid, request_id="rr-del-1"))["update_id"] == rv["update_id"]

    # Reverting the revert deletes the rows again; reverting that brings them back.
    rr = ok(revert(s, rv["update_id"]))
    assert rr["reverts"] == rv["update_id"] and sorted(rr["deleted"]) == [10, 100, 101]
    assert state(s) == gone
    rrr = ok(revert(s, rr["update_id"]))
    assert sorted(rrr["inserted"]) == [10, 100, 101]
    assert state(s) == before

    # A revert of the same delete now: its rows exist again (ids taken): 409,
    # which force does not override; nothing changes.
    for force in (False, True):
        p = problem(revert(s, uid, force=force), 409)
        assert {"table": "rr", "row_id": 10, "undo": "delete", "reason": "exists"} in p["conflicts"], p
        assert state(s) == before

    # A delete that left its parent a leaf (0.00), then written: bringing the
    # row back would overwrite that write (the parent gives way): 409, and
    # force brings it back.
    u110 = delete(s, 110)
    assert state(s)[11][2:] == ("0.00", "0")
    ok(s.post("/update_cell", {"table": "rr", "row_id": 11, "column": "v", "value": "1.50"}))
    p = problem(revert(s, u110), 409)
    assert p["conflicts"] == [{"table": "rr", "row_id": 11, "column": "v", "expected": "0.00"}], p
    assert state(s)[11][2:] == ("1.50", "0")
    ok(revert(s, u110, force=True))
    assert state(s) == before

    # A delete of a leaf whose parent then went: its parent is gone, 409.
    leaf = delete(s, 110)
    delete(s, 11)
    p = problem(revert(s, leaf, force=True), 409)
    assert {"table": "rr", "row_id": 110, "undo": "delete", "reason": "parent_gone"} in p["conflicts"], p
    # (and the old parent's cells the delete rolled down, gone with it)
    assert {"table": "rr", "row_id": 11, "column": "v", "expected": "0.00", "gone": True} in p["conflicts"], p

    # A restart replays the log (kill -9): the same state.
    mid = state(s)
    s.stop(sig=9)
    s.start()
    assert state(s) == mid
    assert s.stop() == 0


def test_revert_of_an_insert_deletes_the_rows_unless_they_changed(make_server):
    s = make_server().start()
    before = make_tree(s)
    # A subtree inserted in one request.
    ins = ok(s.post("/tables/rr/rows", {"rows": [
        {"id": 12, "parent_id": 1, "name": "Fam C"},
        {"id": 120, "parent_id": 12, "name": "c1", "v": "7.77", "u": 5},
        {"id": 121, "parent_id": 12, "name": "c2", "v": "0.01"},
    ]}), 201)
    assert state(s)[1][2:] == ("38.32", "13")
    uid = last_update_of(s, 120)
    rv = ok(revert(s, uid))
    assert rv["reverts"] == uid and sorted(rv["deleted"]) == [12, 120, 121]
    assert state(s) == before
    # Revert of the revert: the rows come back as inserted.
    rr = ok(revert(s, rv["update_id"]))
    assert sorted(rr["inserted"]) == [12, 120, 121]
    assert state(s)[120] == (12, "c1", "7.77", "5") and state(s)[1][2:] == ("38.32", "13")
    ok(revert(s, rr["update_id"]))
    assert state(s) == before
    assert ins["rows"][1]["id"] == 120
    # The API knows the ids are free again (its row index follows reverts).
    ok(s.post("/tables/rr/rows", {"id": 12, "parent_id": 1, "name": "again"}), 201)
    delete(s, 12)
    assert state(s) == before

    # An insert under a leaf: the leaf gave way to its child; the revert
    # gives it its own value back, to the cent.
    ok(s.post("/tables/rr/rows", {"id": 1100, "parent_id": 110, "name": "b1x", "v": "9.99", "u": 9}), 201)
    assert state(s)[110][2:] == ("9.99", "9") and state(s)[1][2:] == ("40.50", "16")
    ok(revert(s, last_update_of(s, 1100)))
    assert state(s) == before

    # A root inserted and reverted; its history still reads (the insert's row
    # record keeps "a root" as a parent it can tell from none recorded).
    ok(s.post("/tables/rr/rows", {"id": 3, "name": "root3", "v": "1.25"}), 201)
    u3 = last_update_of(s, 3)
    ok(revert(s, u3))
    assert state(s) == before
    h = ok(s.get("/tables/rr/rows/3/history?limit=5"))["history"]
    assert [(x["column"], x["old"], x["new"]) for x in h if x["column"] is None] == \
        [(None, "deleted", None), (None, None, "inserted")], h
    h = ok(s.get("/tables/rr/rows/1/history"))["history"]
    assert (None, None, "inserted") in [(x["column"], x["old"], x["new"]) for x in h], h

    # An import (one insert_rows request): its revert deletes every imported row.
    csv = "id,parent_id,name,v,u\n16,1,imp,,\n160,16,i1,2.25,2\n161,16,i2,0.75,1\n"
    h = dict(s.headers(None), **{"Content-Type": "text/csv"})
    imp = ok(requests.post(f"{s.base}/tables/rr/import?format=csv", data=csv, headers=h, timeout=30), 201)
    assert imp["imported"] == 3 and state(s)[1][2:] == ("33.54", "11")
    rv = ok(revert(s, imp["update_id"]))
    assert sorted(rv["deleted"]) == [16, 160, 161]
    assert state(s) == before

    # Changed since: a cell written, a child added, moved. 409 listing each,
    # nothing changed; force deletes them anyway.
    ok(s.post("/tables/rr/rows", {"id": 13, "parent_id": 1, "name": "n13", "v": "1.00"}), 201)
    u13 = last_update_of(s, 13)
    ok(s.post("/update_cell", {"table": "rr", "row_id": 13, "column": "v", "value": "2.00"}))
    ok(s.post("/tables/rr/rows", {"id": 14, "parent_id": 1, "name": "n14", "v": "3.00"}), 201)
    u14 = last_update_of(s, 14)
    ok(s.post("/tables/rr/rows", {"id": 140, "parent_id": 14, "name": "n140", "v": "4.00"}), 201)
    ok(s.post("/tables/rr/rows", {"id": 15, "parent_id": 1, "name": "n15", "v": "0.50"}), 201)
    u15 = last_update_of(s, 15)
    patch(s, 15, {"parent_id": 11})
    mid = state(s)
    assert mid[1][2:] == ("37.04", "8"), mid[1]  # 30.54 + 2.00 + 4.00 (14 gave way to 140) + 0.50
    p = problem(revert(s, u13), 409)
    assert p["conflicts"] == [{"table": "rr", "row_id": 13, "column": "v", "expected": "1.00"}], p
    p = problem(revert(s, u14), 409)
    assert p["conflicts"] == [{"table": "rr", "row_id": 14, "undo": "insert", "reason": "children"}], p
    p = problem(revert(s, u15), 409)
    assert p["conflicts"] == [{"table": "rr", "row_id": 15, "undo": "insert", "reason": "moved"}], p
    assert state(s) == mid
    for u in (u13, u14, u15):
        ok(revert(s, u, force=True))
    assert state(s) == before
    s.stop()


def test_revert_of_a_move_puts_the_row_back(make_server):
    s = make_server().start()
    before = make_tree(s)
    mv = patch(s, 101, {"parent_id": 11})
    uid = last_update_of(s, 101)
    moved = state(s)
    assert moved[10][2:] == ("10.01", "3") and moved[11][2:] == ("20.53", "5") and moved[1][2:] == ("30.54", "8")
    assert mv["parent_id"] == 11
    rv = ok(revert(s, uid))
    assert rv["moved"] == [{"table": "rr", "row_id": 101, "from": 11, "to": 10}]
    assert state(s) == before
    rr = ok(revert(s, rv["update_id"]))  # re-does the move
    assert state(s) == moved
    ok(revert(s, rr["update_id"]))
    assert state(s) == before

    # A move under a leaf (it gives way) that empties the old parent (a leaf
    # with 0 then): the revert restores both to the cent.
    patch(s, 110, {"parent_id": 2})
    u = last_update_of(s, 110)
    st = state(s)
    assert st[2][2:] == ("0.03", "1") and st[11][2:] == ("0.00", "0"), st
    ok(revert(s, u))
    assert state(s) == before

    # One PATCH that moves a row and writes its cells: both undone.
    patch(s, 100, {"parent_id": 11, "name": "a1 moved", "v": "1.11"})
    u = last_update_of(s, 100)
    st = state(s)
    assert st[100] == (11, "a1 moved", "1.11", "3") and st[11][2:] == ("1.14", "4") and st[1][2:] == ("21.64", "8")
    ok(revert(s, u))
    assert state(s) == before

    # Moved again since: 409; force moves it back anyway.
    patch(s, 100, {"parent_id": 11})
    u = last_update_of(s, 100)
    patch(s, 100, {"parent_id": None})
    mid = state(s)
    p = problem(revert(s, u), 409)
    assert p["conflicts"] == [{"table": "rr", "row_id": 100, "undo": "move", "reason": "moved"}], p
    assert state(s) == mid
    ok(revert(s, u, force=True))
    assert state(s) == before
    s.stop()


def test_a_delete_logged_without_row_images_answers_409(make_server):
    """Updates made before deleted rows' values were recorded (schema 8)
    cannot be reverted: a clear 409, nothing changed."""
    s = make_server().start()
    before = make_tree(s)
    ok(s.post("/tables/rr/rows", {"id": 17, "parent_id": 1, "name": "n17", "v": "0.10"}), 201)
    u17 = last_update_of(s, 17)
    uid = delete(s, 110)
    assert s.stop() == 0
    with sh.DuckReader(s.db, read_only=False) as d:
        d.query("DELETE FROM dg.row_images")
        # An insert logged before its parent was recorded: still revertible.
        d.query("UPDATE dg.cell_log SET new_num = NULL WHERE new_text = 'inserted'")
    s.start()
    st = state(s)
    p = problem(revert(s, uid), 409)
    assert "not recorded" in p["detail"], p
    assert state(s) == st
    ok(revert(s, u17))
    assert 17 not in state(s) and state(s)[1][2:] == ("30.51", "7")
    assert before[1][2:] == ("30.54", "8")
    assert s.stop() == 0


def test_a_follower_applies_reverts_identically(make_server):
    a, b = test_followers.cluster(make_server, "rvr:", n=2)
    before = make_tree(a)
    uid = delete(a, 10, cascade=True)
    rv = ok(revert(a, uid))
    last = ok(revert(a, ok(revert(a, rv["update_id"]))["update_id"]))["update_id"]
    assert state(a) == before
    r = b.get(f"/tables/rr/rows/1?min_update={last}&wait_ms=10000")
    assert r.status_code == 200, r.text
    assert wait_until(lambda: state(b) == before, 10), (state(b), before)
    assert all_rows(a, "rr") == all_rows(b, "rr")
