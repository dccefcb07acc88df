"""The audit log, dg.cell_history: one row per changed cell or row, written
in the same DuckDB transaction as the change (README "Source tour",
src/manager/persist.c). Read from the database file after the server stops.

Every kind of record is checked with its exact text: number cells (old
null for a new row's cells, exact decimals at the column's scale, negative
values), text cells, inserts, moves, deletes and holds, and that a rejected
request leaves no rows.
"""
import requests

import security_helpers as sh


COLUMNS = [
    {"name": "name", "type": "text"},
    {"name": "v", "type": "number", "scale": 2},
    {"name": "w", "type": "number", "scale": 0},
]


def ok(r, status=200):
    assert r.status_code == status, f"want {status}, got {r.status_code}: {r.text}"
    return r.json() if r.content else None


def history(s, rid):
    with sh.DuckReader(s.db) as d:
        return d.query("SELECT table_name, row_id, column_name, old, new, \"user\" FROM dg.cell_history "
                       f"WHERE request_id = '{rid}' ORDER BY row_id, column_name NULLS FIRST, old NULLS FIRST")


def test_audit_rows_exact(make_server):
    s = make_server().start()
    ok(s.post("/tables", {"name": "au", "columns": COLUMNS}), 201)
    ok(s.post("/tables/au/rows", {"rows": [
        {"id": 1, "name": "R"},
        {"id": 10, "parent_id": 1, "name": "A", "v": "10.00", "w": 1},
        {"id": 11, "parent_id": 1, "name": "B", "v": "20.50", "w": 2},
        {"id": 2, "name": "S"},
    ], "request_id": "au-ins"}), 201)
    ok(s.post("/update_cell", {"table": "au", "row_id": 10, "column": "v", "value": "-3.25",
                               "request_id": "au-leaf"}))
    ok(s.post("/update_cell", {"table": "au", "row_id": 1, "column": "v", "value": "100",
                               "request_id": "au-spread"}))
    h = {"Authorization": f"Bearer {s.admin_key}", "Idempotency-Key": "au-text"}
    ok(requests.patch(s.base + "/tables/au/rows/11", json={"name": "B2"}, headers=h, timeout=15))
    h["Idempotency-Key"] = "au-move"
    ok(requests.patch(s.base + "/tables/au/rows/11", json={"parent_id": 2}, headers=h, timeout=15))
    h["Idempotency-Key"] = "au-hold"
    ok(requests.put(s.base + "/tables/au/holds", json={"holds": [{"row_id": 10, "column": "w"}]},
                    headers=h, timeout=15))
    h["Idempotency-Key"] = "au-del"
    assert requests.delete(s.base + "/tables/au/rows/11", headers=h, timeout=15).status_code == 204
    r = s.post("/update_cell", {"table": "au", "row_id": 10, "column": "v", "value": "1",
                                "expected": "999", "request_id": "au-rejected"})
    assert r.status_code == 409, r.text
    assert s.stop() == 0

    u = "bootstrap-admin"
    # Inserted rows: one row record each, and their cells from null; the
    # parent's cells roll up (R: 0 -> 10.00 -> 30.50).
    ins = history(s, "au-ins")
    assert ("au", "1", None, None, "inserted", u) in ins
    assert ("au", "10", "v", None, "10.00", u) in ins
    assert ("au", "10", "w", None, "1", u) in ins
    assert ("au", "11", "v", None, "20.50", u) in ins
    assert ("au", "1", "v", "10.00", "30.50", u) in ins
    assert ("au", "2", None, None, "inserted", u) in ins
    # A leaf write rolls up: 10.00 -> -3.25 on the leaf, 30.50 -> 17.25 on R.
    assert history(s, "au-leaf") == [("au", "1", "v", "30.50", "17.25", u),
                                     ("au", "10", "v", "10.00", "-3.25", u)]
    # A parent write spreads proportionally: -3.25 : 20.50 of 17.25 -> 100.
    # -3.25/17.25*100 = -18.8405... ; 20.50/17.25*100 = 118.8405... ; the
    # largest remainders give -18.84 and 118.84.
    assert history(s, "au-spread") == [("au", "1", "v", "17.25", "100.00", u),
                                       ("au", "10", "v", "-3.25", "-18.84", u),
                                       ("au", "11", "v", "20.50", "118.84", u)]
    assert history(s, "au-text") == [("au", "11", "name", "B", "B2", u)]
    mv = history(s, "au-move")
    assert ("au", "11", None, "parent 1", "parent 2", u) in mv
    assert ("au", "1", "v", "100.00", "-18.84", u) in mv
    assert ("au", "2", "v", "0.00", "118.84", u) in mv
    assert history(s, "au-hold") == [("au", "10", "w", "free", "held", u)]
    dl = history(s, "au-del")
    assert ("au", "11", None, "deleted", None, u) in dl
    assert history(s, "au-rejected") == []


def test_audit_rows_of_schema_4_survive_the_upgrade(make_server):
    """A database made before migration 5 (text audit rows in the table
    dg.cell_history) keeps its rows: after the upgrade the view shows them
    and the new ones."""
    s = make_server().start()
    ok(s.post("/tables", {"name": "old", "columns": COLUMNS}), 201)
    ok(s.post("/tables/old/rows", {"rows": [{"id": 1, "name": "R"}, {"id": 2, "parent_id": 1, "v": "1.50"}]}), 201)
    assert s.stop() == 0
    # Back to schema 4's shape, with one row written the old way.
    with sh.DuckReader(s.db, read_only=False) as d:
        for sql in ["DROP TABLE IF EXISTS dg.row_images",  # migration 9
                    "DROP TABLE IF EXISTS dg.key_scopes", "DROP TABLE IF EXISTS dg.admin_audit",  # migration 8
                    "DROP SEQUENCE IF EXISTS dg.admin_audit_seq",
                    "DROP TABLE IF EXISTS dg.revoked_tokens",  # migration 7, after 6
                    "DROP VIEW dg.cell_history", "DROP MACRO dg.scaled_text", "DROP TABLE dg.cell_log",
                    "DROP TABLE dg.audit_cols", "DROP TABLE dg.audit_requests",
                    "ALTER TABLE dg.cell_history_v1 RENAME TO cell_history",
                    "INSERT INTO dg.cell_history VALUES ('1-1', 'from-v4', 'carol', TIMESTAMP '2026-01-02 03:04:05', "
                    "'old', 2, 'v', '0.25', '1.50')",
                    # and what schema 6 changed (dg.outcomes back, dg.idem and the row counter gone)
                    "DROP TABLE dg.idem", "ALTER TABLE dg.applied DROP COLUMN next_row_id",
                    "CREATE TABLE dg.outcomes (stream_id VARCHAR NOT NULL, request_id VARCHAR NOT NULL, "
                    "res VARCHAR NOT NULL, ms BIGINT)",
                    "UPDATE dg.schema_version SET version = 4"]:
            d.query(sql)
    s.start()
    ok(s.post("/update_cell", {"table": "old", "row_id": 2, "column": "v", "value": "2.75", "request_id": "after-v4"}))
    assert s.stop() == 0
    with sh.DuckReader(s.db) as d:
        assert d.query("SELECT max(version) FROM dg.schema_version") == [("9",)]
        assert d.query("SELECT stream_id, \"user\", ts, table_name, row_id, column_name, old, new "
                       "FROM dg.cell_history WHERE request_id = 'from-v4'") == [
            ("1-1", "carol", "2026-01-02 03:04:05", "old", "2", "v", "0.25", "1.50")]
    assert history(s, "after-v4") == [("old", "1", "v", "1.50", "2.75", "bootstrap-admin"),
                                      ("old", "2", "v", "1.50", "2.75", "bootstrap-admin")]
