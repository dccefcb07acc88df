"""POST /tables/{t}/import?format=csv (issue 19): the CSV file is the body,
parsed by DuckDB's reader, every value validated as POST /tables/{t}/rows
validates it, parents queued before their children wherever they are in the
file, one request through the log; bad rows are listed by CSV line and
nothing is applied.
"""
import glob
import hashlib
import hmac
import json
import os
import time

import requests

from helpers import Resp, outcomes_in, problem, requests_in

COLUMNS = [
    {"name": "name", "type": "text"},
    {"name": "v", "type": "number", "scale": 2},
    {"name": "n", "type": "number", "scale": 0},
]


def ok(r, status=200):
    assert r.status_code == status, f"want {status}, got {r.status_code}: {r.text}"
    return r


def imp(s, table, body, query="", key=None, headers=None):
    h = s.headers(key)
    h["Content-Type"] = "text/csv"
    h.update(headers or {})
    return requests.post(s.base + f"/tables/{table}/import{query}", data=body, headers=h, timeout=30)


def imports_queued(redis, s):
    return [q for _, q in requests_in(redis, s) if q["op"] == "insert_rows"]


def export(s, table):
    return ok(s.get(f"/tables/{table}/export?format=csv")).content


def new_table(s, name):
    ok(s.post("/tables", {"name": name, "columns": COLUMNS}), 201)


def test_import_round_trip(make_server, redis_server):
    s = make_server().start()
    new_table(s, "src")
    ok(s.post("/tables/src/rows", {"rows": [
        {"id": 1, "name": "Root, \"all\""},
        {"id": 10, "parent_id": 1, "name": "line\nbreak", "v": "10.01", "n": 3},
        {"id": 11, "parent_id": 1, "name": "", "v": "-0.05", "n": -7},
        {"id": 12, "parent_id": 11, "name": "Zoë ✓", "v": "123456789.99", "n": 1},
        {"id": 2},
        {"id": 3, "name": "with \"quotes\" and, commas", "v": "0.10"},
    ]}), 201)
    original = export(s, "src")

    new_table(s, "dst")
    r = ok(imp(s, "dst", original), 201)
    body = r.json()
    assert body["imported"] == 6 and body["table"] == "dst" and body["status"] == "applied", body
    assert body["update_id"] and body["request_id"], body
    assert export(s, "dst") == original
    # The same rows as JSON too, and one request in the log did it.
    assert ok(s.get("/tables/dst/export?format=json")).json()["rows"] == \
        ok(s.get("/tables/src/export?format=json")).json()["rows"]
    reqs = [q for q in imports_queued(redis_server, s) if q["table"] == "dst"]
    assert len(reqs) == 1 and reqs[0]["count"] == 6 and reqs[0]["echo_rows"] is False and "rows" not in reqs[0]
    # By column, parents first: ids and numbers (integers at the column's
    # scale) as comma-separated lists, texts as an array.
    q = reqs[0]
    ids = [int(x) for x in q["ids"].split(",")]
    assert ids[:2] == [1, 2] and ids.index(10) < ids.index(12), q
    assert q["parent_ids"].split(",")[:3] == ["", "", ""] and q["parent_ids"].split(",")[ids.index(12)] == "11", q
    cols = {c["name"]: c for c in q["columns"]}
    assert cols["v"]["scale"] == 2 and cols["n"]["scale"] == 0 and "scale" not in cols["name"], cols
    v = cols["v"]["values"].split(",")
    assert v[ids.index(10)] == "1001" and v[ids.index(12)] == "12345678999", q
    assert cols["name"]["values"][ids.index(11)] == "" and cols["name"]["values"][ids.index(2)] is None, q
    # Its outcome counts the rows instead of listing them; ids still in "inserted".
    out = dict(outcomes_in(redis_server, s))[body["update_id"]]
    assert out["rows_inserted"] == 6 and "rows" not in out, out
    assert sorted(out["inserted"]) == [1, 2, 3, 10, 11, 12], out
    # The scratch file is gone.
    assert glob.glob(os.path.join(s.dir, "snapshots", "io", "*")) == []
    assert s.stop() == 0


def test_import_parents_after_children(make_server):
    s = make_server().start()
    new_table(s, "t")
    ok(s.post("/tables/t/rows", {"rows": [{"id": 500, "name": "existing"}]}), 201)
    # Children first, a grandchild before its parent, a row under a row of
    # the table, LF line ends, columns in another order, n left out.
    csv = (b"v,name,parent_id,id\n"
           b"1.25,leaf a,20,21\n"
           b"2.50,leaf b,20,22\n"
           b",mid,1,20\n"
           b"4,leaf c,1,30\n"
           b",top,,1\n"
           b"7,under existing,500,501\n")
    r = ok(imp(s, "t", csv), 201)
    assert r.json()["imported"] == 6
    assert export(s, "t") == (b"id,parent_id,name,v,n\r\n"
                              b"1,,top,7.75,0\r\n"
                              b"20,1,mid,3.75,0\r\n"
                              b"21,20,leaf a,1.25,0\r\n"
                              b"22,20,leaf b,2.50,0\r\n"
                              b"30,1,leaf c,4.00,0\r\n"
                              b"500,,existing,7.00,0\r\n"
                              b"501,500,under existing,7.00,0\r\n")
    # Without an id column, rows get new ids (above every id in use).
    r = ok(imp(s, "t", b"name,v\r\nfresh,1\r\nfresh too,2\r\n"), 201)
    assert r.json()["imported"] == 2
    rows = ok(s.get("/tables/t/export?format=json")).json()["rows"]
    fresh = [x for x in rows if x["name"] in ("fresh", "fresh too")]
    assert len(fresh) == 2 and all(x["id"] > 501 and x["parent_id"] is None for x in fresh)
    assert s.stop() == 0


def test_import_bad_rows_change_nothing(make_server, redis_server):
    s = make_server().start()
    new_table(s, "t")
    ok(s.post("/tables/t/rows", {"rows": [{"id": 1, "name": "a", "v": "1"}]}), 201)
    before = export(s, "t")
    nreq = len(requests_in(redis_server, s))

    # A bad number on line 4: record 2 spans lines 2-3 (a quoted line break).
    csv = (b"id,parent_id,name,v\r\n"
           b"2,1,\"two\r\nlines\",1.00\r\n"
           b"3,1,three,12x\r\n"
           b"4,1,four,4\r\n")
    body = problem(imp(s, "t", csv), 400)
    assert body["errors"] == [{"line": 4, "column": "v",
                               "detail": "column 'v' is a number (scale 2); '12x' is not a decimal number"}], body
    assert body["errors_total"] == 1 and "line 4" in body["detail"], body
    assert export(s, "t") == before

    # Every bad row is listed, in file order per kind.
    csv = (b"id,parent_id,name,v,n\n"
           b"x,,a,1,1\n"            # line 2: id
           b"5,77,b,1,1\n"          # line 3: unknown parent
           b"6,,c,1e30,1\n"         # line 4: out of range
           b"6,,d,1,1.5\n"          # line 5: duplicate id (n 1.5 rounds: scale 0 accepts it)
           b"1,,e,1,1\n")           # line 6: exists already
    body = problem(imp(s, "t", csv), 400)
    got = sorted((e["line"], e["column"]) for e in body["errors"])
    assert got == [(2, "id"), (3, "parent_id"), (4, "v"), (5, "id"), (6, "id")], body
    assert body["errors_total"] == 5

    # A cycle among the file's rows.
    body = problem(imp(s, "t", b"id,parent_id\n7,8\n8,9\n9,7\n10,\n"), 400)
    assert sorted(e["line"] for e in body["errors"]) == [2, 3, 4], body
    assert all("cycle" in e["detail"] for e in body["errors"]), body
    body = problem(imp(s, "t", b"id,parent_id\n11,11\n"), 400)
    assert body["errors"][0]["line"] == 2, body

    # Only ids that exist already: 409, still by line.
    body = problem(imp(s, "t", b"id,name\n1,again\n"), 409)
    assert body["errors"] == [{"line": 2, "column": "id", "detail": "row 1 exists already in table 't'"}], body

    # The header: an unknown column, a column twice, an empty name.
    body = problem(imp(s, "t", b"id,name,colour\n20,a,red\n"), 400)
    assert body["errors"] == [{"line": 1, "column": "colour", "detail": "table 't' has no column 'colour'"}], body
    assert "colour" in body["detail"]
    body = problem(imp(s, "t", b"id,name,name\n20,a,b\n"), 400)
    assert body["errors"][0]["column"] == "name" and "twice" in body["errors"][0]["detail"], body
    problem(imp(s, "t", b"id,,name\n20,,a\n"), 400)

    # A ragged row: DuckDB's reader names the line.
    body = problem(imp(s, "t", b"id,name,v\n20,a,1\n21,b\n"), 400)
    assert body["errors"][0]["line"] == 3, body
    assert "/" not in body["detail"], body  # no server path in the message
    assert "Expected Number of Columns: 3 Found: 2" in body["detail"], body

    # Text that is not UTF-8, a NUL byte in a text.
    body = problem(imp(s, "t", b"id,name\n20,caf\xe9\n"), 400)
    assert body["errors"][0]["line"] == 2 and "utf-8" in body["detail"].lower(), body
    body = problem(imp(s, "t", b"id,name\n20,a\x00b\n"), 400)
    assert body["errors"] == [{"line": 2, "column": "name", "detail": "a text cannot hold a NUL byte"}], body

    # Nothing at all, a header alone, blank lines only, a bad format.
    for data in (b"", b"\r\n\r\n"):
        body = problem(imp(s, "t", data), 400)
        assert "empty" in body["detail"], body
    problem(imp(s, "t", b"id,name\r\n"), 400)
    problem(imp(s, "t", b"id,name\n30,a\n", "?format=xlsx"), 400)
    problem(imp(s, "nosuch", b"id\n1\n"), 404)
    problem(imp(s, "bad%20name", b"id\n1\n"), 400)

    assert export(s, "t") == before
    assert len(requests_in(redis_server, s)) == nreq  # nothing was queued
    assert glob.glob(os.path.join(s.dir, "snapshots", "io", "*")) == []
    assert s.stop() == 0


def test_import_async_idempotent_and_roles(make_server):
    s = make_server().start()
    new_table(s, "t")
    r = imp(s, "t", b"id,name,v\n1,a,1.5\n", "?async=true&request_id=imp-1")
    assert r.status_code == 202, r.text
    assert r.json()["request_id"] == "imp-1" and r.json()["status"] == "queued"
    # A read after the 202 reflects the import.
    assert export(s, "t") == b"id,parent_id,name,v,n\r\n1,,a,1.50,0\r\n"

    # The same request_id again: answered from the first, nothing inserted twice.
    r = ok(imp(s, "t", b"id,name,v\n1,a,1.5\n", "?request_id=imp-1"), 201)
    assert r.json()["request_id"] == "imp-1" and r.json()["imported"] == 1, r.text
    r1 = ok(imp(s, "t", b"id,name\n2,b\n", "", headers={"Idempotency-Key": "imp-2"}), 201)
    r2 = ok(imp(s, "t", b"id,name\n2,b\n", "", headers={"Idempotency-Key": "imp-2"}), 201)
    assert r1.json() == r2.json() and r1.json()["imported"] == 1
    assert export(s, "t") == b"id,parent_id,name,v,n\r\n1,,a,1.50,0\r\n2,,b,0.00,0\r\n"

    # The write role is needed.
    reader = s.post("/admin/keys", {"name": "reader", "role": "read"})
    assert reader.status_code == 201, reader.text
    problem(imp(s, "t", b"id\n9\n", key=reader.json()["key"]), 403)
    assert s.stop() == 0


def test_import_respects_the_body_limit(make_server):
    s = make_server(env={"DUCKGRID_BODY_LIMIT": "2048"}).start()
    new_table(s, "t")
    big = b"id,name\n" + b"".join(b"%d,row number %d\n" % (i, i) for i in range(1, 200))
    assert len(big) > 2048
    problem(imp(s, "t", big), 413)
    small = b"id,name\n" + b"".join(b"%d,r%d\n" % (i, i) for i in range(1, 50))
    assert ok(imp(s, "t", small), 201).json()["imported"] == 49
    assert s.stop() == 0


def test_import_parquet(make_server, redis_server):
    s = make_server().start()
    new_table(s, "src")
    # Parents with larger ids than their children: the id-ordered export
    # lists children first.
    ok(s.post("/tables/src/rows", {"rows": [
        {"id": 100, "name": "top"},
        {"id": 50, "parent_id": 100, "name": "mid, \"quoted\""},
        {"id": 1, "parent_id": 50, "name": "leaf\nline", "v": "999999999999999.99", "n": 3},
        {"id": 2, "parent_id": 50, "name": "", "v": "-0.01", "n": -4},
        {"id": 3, "parent_id": 100, "v": "0.10"},
    ]}), 201)
    original = export(s, "src")
    pq = ok(s.get("/tables/src/export?format=parquet")).content

    new_table(s, "dst")
    r = ok(imp(s, "dst", pq, "?format=parquet", headers={"Content-Type": "application/vnd.apache.parquet"}), 201)
    assert r.json()["imported"] == 5 and r.json()["status"] == "applied", r.text
    assert export(s, "dst") == original
    assert len([q for q in imports_queued(redis_server, s) if q["table"] == "dst"]) == 1

    # A file of another table: its text column "name" lands in a number column.
    ok(s.post("/tables", {"name": "nums", "columns": [{"name": "name", "type": "number", "scale": 2},
                                                      COLUMNS[1], COLUMNS[2]]}), 201)
    body = problem(imp(s, "nums", pq, "?format=parquet"), 400)
    # Rows in file order (by id): 1 "leaf…", 2 "", 3 null (fine: left at 0), 50 "mid…", 100 "top".
    assert [(e["row"], e["column"]) for e in body["errors"]] == [(1, "name"), (2, "name"), (4, "name"), (5, "name")], body
    assert "line" not in body["errors"][0] and "row 1, column 'name'" in body["detail"], body
    assert body["errors_total"] == 4
    # Its columns where the table has none of them.
    ok(s.post("/tables", {"name": "other", "columns": [{"name": "w", "type": "text"}]}), 201)
    body = problem(imp(s, "other", pq, "?format=parquet"), 400)
    assert sorted(e["column"] for e in body["errors"]) == ["n", "name", "v"], body
    assert all("row" not in e and "line" not in e for e in body["errors"]), body
    # Into the table it came from: every id exists already.
    body = problem(imp(s, "src", pq, "?format=parquet"), 409)
    assert body["errors_total"] == 5 and body["errors"][0]["row"] == 1, body

    # Not Parquet at all; nothing.
    body = problem(imp(s, "dst", b"id,name\n1,a\n", "?format=parquet"), 400)
    assert "/" not in body["detail"] and "magic" in body["detail"].lower(), body
    body = problem(imp(s, "dst", b"", "?format=parquet"), 400)
    assert "empty" in body["detail"], body
    assert export(s, "dst") == original and export(s, "src") == original
    assert glob.glob(os.path.join(s.dir, "snapshots", "io", "*")) == []
    assert s.stop() == 0


def test_cli_export_and_import(server, tmp_path):
    """duckgrid export / import talk to a running server: a Parquet export
    written to a file and imported into another table gives the same CSV
    export; refusals exit 1 with the server's reason, bad usage exits 2."""
    import subprocess
    from conftest import BIN
    assert server.post("/tables", {"name": "cli_src", "columns": COLUMNS}).status_code == 201
    r = server.post("/tables/cli_src/rows", {"rows": [
        {"id": 1, "name": "Root"},
        {"id": 2, "parent_id": 1, "name": "a,b", "v": "12.34", "n": 5},
        {"id": 3, "parent_id": 1, "name": "", "v": "-0.01", "n": -2}]})
    assert r.status_code == 201, r.text
    assert server.post("/tables", {"name": "cli_dst", "columns": COLUMNS}).status_code == 201
    env = dict(os.environ, DUCKGRID_KEY=server.admin_key)
    env.pop("DUCKGRID_URL", None)
    url = ["--url", server.base]

    def run(*args, key_env=True):
        return subprocess.run([BIN, *args], env=env if key_env else {k: v for k, v in env.items()
                                                                     if k != "DUCKGRID_KEY"},
                              capture_output=True, timeout=60)
    pq = str(tmp_path / "src.parquet")
    p = run("export", "cli_src", "--format", "parquet", "--output", pq, *url)
    assert p.returncode == 0, p.stderr
    assert open(pq, "rb").read(4) == b"PAR1"
    p = run("import", pq, "--table", "cli_dst", "--format", "parquet", *url)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["imported"] == 3
    a = run("export", "cli_src", *url)
    b = run("export", "cli_dst", *url)
    assert a.returncode == 0 and b.returncode == 0
    assert a.stdout == b.stdout and a.stdout.startswith(b"id,parent_id")

    bad = tmp_path / "bad.csv"
    bad.write_text("id,parent_id,name,v,n\n50,,x,1.00,1\n51,,y,notanumber,2\n")
    p = run("import", str(bad), "--table", "cli_dst", *url)
    assert p.returncode == 1
    assert b"400" in p.stderr and b"line 3" in p.stderr, p.stderr
    p = run("export", "nosuch", *url)
    assert p.returncode == 1 and b"404" in p.stderr, p.stderr
    p = run("export", "cli_src", *url, key_env=False)
    assert p.returncode == 2 and b"DUCKGRID_KEY" in p.stderr
    keyfile = tmp_path / "key"
    keyfile.write_text("dg_wrong_key\n")
    p = run("export", "cli_src", "--key-file", str(keyfile), *url)
    assert p.returncode == 1 and b"401" in p.stderr, p.stderr
    for args in (("import", pq), ("export",), ("export", "cli_src", "--format", "xml"),
                 ("export", "Bad-Name"), ("import", pq, "--table", "cli_dst", "--bogus")):
        p = run(*args, *url)
        assert p.returncode == 2, (args, p.stderr)


def queue_signed(redis, s, req):
    """XADDs a request to request_duck signed as the API signs it (a
    follower or a replay meets the same entry): its stream id."""
    with open(s.db + ".pepper", "rb") as f:
        key = hmac.new(f.read(), b"duckgrid stream v1", hashlib.sha256).digest()
    text = json.dumps(req, separators=(",", ":"))
    t = str(int(time.time() * 1000))
    mac = hmac.new(key, b"dg-req-v1\0" + t.encode() + b"\0" + text.encode(), hashlib.sha256).hexdigest()
    with Resp(redis) as r:
        return r.cmd("XADD", s.prefix + "request_duck", "*", "req", text, "t", t, "mac", mac)


def test_rows_by_column_are_checked_by_the_manager(make_server, redis_server):
    """The manager trusts no by-column request: a malformed one is rejected
    whole (nothing inserted) with a 400 or 409 outcome; a good one applies."""
    s = make_server().start()
    new_table(s, "t")
    base = {"op": "insert_rows", "user": "u", "caller": "u", "table": "t", "echo_rows": False}

    def outcome(sid):
        for _ in range(200):
            got = dict(outcomes_in(redis_server, s)).get(sid)
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError(f"no outcome for {sid}")

    good = {"count": 2, "ids": "7,8", "parent_ids": ",7",
            "columns": [{"name": "v", "scale": 2, "values": ",125"}, {"name": "name", "values": ["a", None]}]}
    bad = [
        (409, {**good, "columns": [{"name": "v", "scale": 3, "values": ",125"}]}),     # another scale
        (400, {**good, "ids": "7"}),                                                    # too few
        (400, {**good, "ids": "7,8,"}),                                                 # too many
        (400, {**good, "ids": [7, 8]}),                                                 # not a list
        (400, {**good, "ids": "7,8x"}),                                                 # not a number
        (400, {**good, "ids": "7,-"}),
        (400, {**good, "ids": "7,99999999999999999999"}),                               # beyond int64
        (400, {**good, "columns": [{"name": "v", "scale": 2, "values": ",1.25"}]}),    # a decimal point
        (400, {**good, "columns": [{"name": "v", "scale": 2, "values": f",{10**18}"}]}),  # out of range
        (400, {**good, "columns": [{"name": "name", "values": ["a", 5]}]}),             # a number text
        (400, {**good, "columns": [{"name": "name", "values": ["a"]}]}),                # too few texts
        (400, {**good, "columns": [{"name": "nope", "values": "1,2"}]}),                # no such column
        (400, {**good, "columns": [{"name": "n", "scale": 0, "values": "1,2"}] * 2}),  # a column twice
        (404, {**good, "parent_ids": ",99"}),                                           # no such parent
        (400, {**good, "rows": []}),                                                    # both forms
        (400, {**good, "echo_rows": True}),                                             # echoed
        (400, {**good, "count": 1000001}),
    ]
    for i, (status, req) in enumerate(bad):
        out = outcome(queue_signed(redis_server, s, {**base, **req, "request_id": f"bad-{i}"}))
        assert out["status"] == "rejected" and out["error"]["status"] == status, (i, out)
    assert ok(s.get("/tables/t")).json()["row_count"] == 0
    out = outcome(queue_signed(redis_server, s, {**base, **good, "request_id": "good"}))
    assert out["status"] == "applied" and out["rows_inserted"] == 2 and sorted(out["inserted"]) == [7, 8], out
    rows = {r["id"]: r for r in ok(s.get("/tables/t/rows")).json()["rows"]}
    assert rows[8]["parent_id"] == 7 and str(rows[8]["v"]) == "1.25" and str(rows[7]["v"]) == "1.25", rows
    assert rows[7]["name"] == "a" and rows[8]["name"] is None, rows
    assert s.stop() == 0


def test_import_sees_rows_inserted_before_with_any_id(make_server):
    """The API learns inserted ids from each outcome's "inserted" list
    (scanned without a DOM; ids beyond 2^53 are strings there): an import
    finds them as parents and refuses them as new ids."""
    s = make_server().start()
    new_table(s, "t")
    big, top = "9007199254740993", "9223372036854775807"
    ok(s.post("/tables/t/rows", {"rows": [{"id": big}, {"id": top, "parent_id": big}, {"id": -5}]}), 201)
    r = ok(imp(s, "t", f"id,parent_id,n\n7,{top},1\n8,-5,2\n".encode()), 201)
    assert r.json()["imported"] == 2
    for taken in (big, top, "-5", "8"):
        body = problem(imp(s, "t", f"id,n\n{taken},1\n".encode()), 409)
        assert body["errors"][0]["column"] == "id", body
    # ...and forgets deleted ones ("deleted" of the outcome).
    ok(requests.delete(s.base + "/tables/t/rows/8", headers=s.headers(), timeout=15), 204)
    ok(imp(s, "t", b"id,parent_id,n\n8,-5,3\n"), 201)
    assert s.stop() == 0
