"""The compact revert (issue 19): a revert of a write of cells names only
the update; the manager finds its cells in its cache of recent writes or,
when they are not there (a restart, DUCKGRID_REVERT_CACHE_MB=0, a follower
that applies with another cache, `duckgrid restore`), in the audit log after
the persister wrote them. Both must give the same outcome byte for byte and
the same cells to the cent: a follower compares every outcome with the
leader's and stops ("diverged") at the first difference.
"""
import os
import signal

import requests

from conftest import wait_until
from test_snapshots import dump, restore, snapshot

COLS = [{"name": "v", "type": "number", "scale": 2}, {"name": "name", "type": "text"}]
MIDS = [10, 20, 30]
LEAVES = [m * 10 + k for m in MIDS for k in range(1, 5)]


def ok(r, status=200):
    assert r.status_code == status, f"want {status}, got {r.status_code}: {r.text}"
    return r.json()


def tree(s):
    ok(s.post("/tables", {"name": "rc", "columns": COLS}), 201)
    rows = [{"id": 1, "name": "root"}] + [{"id": m, "parent_id": 1, "name": f"m{m}"} for m in MIDS]
    rows += [{"id": leaf, "parent_id": leaf // 10, "v": f"{leaf % 7}.{leaf % 100:02d}", "name": f"l{leaf}"}
             for leaf in LEAVES]
    ok(s.post("/tables/rc/rows", {"rows": rows}), 201)


def cells(s):
    """Every row's exact text of v (from the row read) and name."""
    rows = ok(s.get("/tables/rc/rows?limit=1000"))["rows"]
    return {x["id"]: (f'{x["v"]:.2f}' if x["v"] is not None else None, x["name"]) for x in rows}


def role(s):
    try:
        return requests.get(s.base + "/health", timeout=5).json()["manager"]
    except (requests.RequestException, ValueError, KeyError):
        return None


def revert(s, uid, status=200, **body):
    r = s.post(f"/updates/{uid}/revert", body)
    assert r.status_code == status, f"revert {uid}: want {status}, got {r.status_code}: {r.text}"
    return r.json()


def settled(s, want):
    """s shows exactly `want` (another node may take a moment)."""
    assert wait_until(lambda: cells(s) == want, 10), (cells(s), want)


def sequence(w, r=None):
    """Writes through w and reverts through r (another node, or w); checks
    every step's cells exactly; returns the last update id."""
    r = r or w
    s0 = cells(w)
    # a spread whose shares do not divide evenly
    u1 = ok(w.post("/update_cell", {"table": "rc", "row_id": 1, "column": "v", "value": "1000.01"}))
    s1 = cells(w)
    # several leaves under one parent: the parents roll up once per leaf
    u2 = ok(w.post("/update_cells", {"updates": [
        {"table": "rc", "row_id": 101, "column": "v", "value": "7.77"},
        {"table": "rc", "row_id": 102, "column": "v", "value": "-3.01"},
        {"table": "rc", "row_id": 201, "column": "v", "value": "0"},
        {"table": "rc", "row_id": 103, "column": "name", "value": "renamed"},
    ]}))
    assert cells(w) != s1
    rv2 = revert(r, u2["update_id"])
    assert rv2["op"] == "revert" and rv2["reverts"] == u2["update_id"] and rv2["status"] == "applied"
    settled(w, s1)
    rv1 = revert(r, u1["update_id"])
    settled(w, s0)
    # a revert of a revert re-does the spread, to the cent
    revert(r, rv1["update_id"])
    settled(w, s1)
    # a cell changed since: 409 listing what differs (a parent's roll-up
    # too), nothing applied; then forced
    u4 = ok(w.post("/update_cell", {"table": "rc", "row_id": 301, "column": "v", "value": "50"}))
    ok(w.post("/update_cell", {"table": "rc", "row_id": 302, "column": "v", "value": "60"}))
    mid = cells(w)
    settled(r, mid)
    p = revert(r, u4["update_id"], 409)
    assert p["status"] == 409 and p["code"] == "conflict"
    got = {(c["row_id"], c["column"]) for c in p["conflicts"]}
    assert got == {(30, "v"), (1, "v")}, p["conflicts"]
    assert cells(w) == mid
    f = revert(r, u4["update_id"], force=True)
    want301 = s1[301][0]
    assert wait_until(lambda: cells(w)[301][0] == want301, 10)
    # an update that does not exist (or changed nothing)
    revert(r, "1-0", 404)
    return f["update_id"]


def test_compact_revert_exact_and_after_a_restart(make_server):
    s = make_server().start()
    tree(s)
    sequence(s)
    # After a crash the cache is empty: the revert reads the audit log.
    u = ok(s.post("/update_cell", {"table": "rc", "row_id": 1, "column": "v", "value": "123.45"}))
    before = cells(s)
    s.stop(sig=signal.SIGKILL)
    s.start()
    assert cells(s) == before
    revert(s, u["update_id"])
    after = cells(s)
    assert after[1][0] != "123.45"
    assert s.stop() == 0


def test_compact_revert_from_the_audit_log_is_the_same(make_server):
    """A leader with the cache, a follower without (every revert reads its
    own audit log): the follower compares each outcome with the leader's."""
    a = make_server(prefix="rvc:").start()
    assert wait_until(lambda: role(a) == "leader", 10)
    b = make_server(prefix="rvc:", admin_key=a.admin_key,
                    env={"DUCKGRID_KEY_PEPPER_FILE": a.db + ".pepper", "DUCKGRID_REVERT_CACHE_MB": "0"}).start()
    assert wait_until(lambda: role(b) == "follower", 10), b.logs()
    tree(a)
    last = sequence(a, b)  # reverts sent through the follower's API
    r = b.get(f"/tables/rc/rows/1?min_update={last}&wait_ms=10000")
    assert r.status_code == 200, r.text
    assert cells(b) == cells(a)
    assert role(b) == "follower", b.logs()[-4000:]
    m = b.get("/metrics").text
    assert "duckgrid_follower_diverged 0" in m
    assert b.stop() == 0 and a.stop() == 0


def test_restore_replays_compact_reverts(make_server, tmp_path):
    s = make_server().start()
    tree(s)
    snapshot(s)
    sequence(s)
    assert s.stop() == 0
    ref = dump(s.db)
    # with the cache (the reverted updates are replayed just before), and
    # without (each revert reads what the replay persisted)
    for mb in ("64", "0"):
        out = str(tmp_path / f"r{mb}.duckdb")
        env = dict(s.env, DUCKGRID_REVERT_CACHE_MB=mb)
        saved, s.env = s.env, env
        try:
            restore(s, "--snapshot", "latest", "--db", out)
        finally:
            s.env = saved
        assert dump(out) == ref, mb
        os.remove(out)


def test_a_scoped_key_reverts_in_compact_form_within_its_tables(make_server, redis_server):
    """A key limited to some tables: the compact form when every table the
    update concerns is in its scope (the outcome says which), 403 for an
    update of another table (the detailed form, checked record by record)."""
    s = make_server().start()
    tree(s)
    ok(s.post("/tables", {"name": "other", "columns": COLS}), 201)
    ok(s.post("/tables/other/rows", {"rows": [{"id": 1, "v": "1.00"}]}), 201)
    k = ok(s.post("/admin/keys", {"name": "scoped-rc", "role": "write", "tables": ["rc"]}), 201)["key"]
    before = cells(s)
    u = ok(s.post("/update_cell", {"table": "rc", "row_id": 1, "column": "v", "value": "77.77"}, key=k))
    rv = ok(s.post(f"/updates/{u['update_id']}/revert", {}, key=k))
    assert rv["status"] == "applied" and cells(s) == before
    last = redis_server.cli("XREVRANGE", s.prefix + "request_duck", "+", "-", "COUNT", "1")
    assert '"compact":true' in last and u["update_id"] in last, last
    o = ok(s.post("/update_cell", {"table": "other", "row_id": 1, "column": "v", "value": "2.00"}))
    r = s.post(f"/updates/{o['update_id']}/revert", {}, key=k)
    assert r.status_code == 403, r.text
    assert s.get("/tables/other/rows/1").json()["v"] == 2
    assert s.stop() == 0
