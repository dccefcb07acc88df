"""GET /tables/{t}/export?format=csv|json|parquet (issue 19): every row with
id, parent_id and every column, from one snapshot that reflects every
answered write; numbers exact to the column's scale; CSV quoting per RFC
4180; Parquet written by DuckDB with DECIMAL columns kept DECIMAL, read back
here by build/parquet_driver (DuckDB's own reader).
"""
import csv
import glob
import io
import json
import os
import subprocess

from conftest import BUILD

COLUMNS = [
    {"name": "name", "type": "text"},
    {"name": "v", "type": "number", "scale": 2},
    {"name": "n", "type": "number", "scale": 0},
]


def ok(r, status=200):
    assert r.status_code == status, f"want {status}, got {r.status_code}: {r.text}"
    return r


def test_export(make_server):
    s = make_server().start()
    ok(s.post("/tables", {"name": "ex", "columns": COLUMNS}), 201)
    ok(s.post("/tables/ex/rows", {"rows": [
        {"id": 1, "name": "Root, \"all\""},
        {"id": 10, "parent_id": 1, "name": "line\nbreak", "v": "10.01", "n": 3},
        {"id": 11, "parent_id": 1, "name": "", "v": "-0.05", "n": -7},
        {"id": 2},
    ]}), 201)
    # An async write, answered 202: the export reflects it.
    r = s.post("/update_cell?async=true", {"table": "ex", "row_id": 2, "column": "v", "value": "123456789.99"})
    assert r.status_code == 202, r.text

    r = ok(s.get("/tables/ex/export?format=csv"))
    assert r.headers["Content-Type"].startswith("text/csv")
    assert "X-Duckgrid-Applied" in r.headers
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8"), newline="")))
    assert rows == [["id", "parent_id", "name", "v", "n"],
                    ["1", "", "Root, \"all\"", "9.96", "-4"],
                    ["2", "", "", "123456789.99", "0"],
                    ["10", "1", "line\nbreak", "10.01", "3"],
                    ["11", "1", "", "-0.05", "-7"]]
    # A null text and an empty one differ in the file: "" is quoted.
    assert r.content.endswith(b'\r\n11,1,"",-0.05,-7\r\n') and b'\r\n2,,,123456789.99,0\r\n' in r.content
    assert ok(s.get("/tables/ex/export")).content == r.content  # csv is the default

    j = ok(s.get("/tables/ex/export?format=json"))
    assert j.headers["Content-Type"].startswith("application/json")
    body = json.loads(j.content, parse_float=str)
    assert body["table"] == "ex" and body["columns"] == ["name", "v", "n"]
    assert body["rows"] == [
        {"id": 1, "parent_id": None, "name": "Root, \"all\"", "v": "9.96", "n": -4},
        {"id": 2, "parent_id": None, "name": None, "v": "123456789.99", "n": 0},
        {"id": 10, "parent_id": 1, "name": "line\nbreak", "v": "10.01", "n": 3},
        {"id": 11, "parent_id": 1, "name": "", "v": "-0.05", "n": -7}]

    for q, status in [("/tables/ex/export?format=xml", 400), ("/tables/ex/export?format=", 400),
                      ("/tables/nosuch/export", 404), ("/tables/bad%20name/export", 400)]:
        r = s.get(q)
        assert r.status_code == status, (q, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json"), q
    assert s.stop() == 0


def read_parquet(tmp_path, content):
    """(columns [[name, type]…], rows [[text or None]…]) of a Parquet file."""
    assert content[:4] == b"PAR1" and content[-4:] == b"PAR1", content[:16]
    f = tmp_path / "export.parquet"
    f.write_bytes(content)
    out = subprocess.run([os.path.join(BUILD, "parquet_driver"), str(f)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return doc["columns"], doc["rows"]


def test_export_parquet(make_server, tmp_path):
    s = make_server().start()
    ok(s.post("/tables", {"name": "pq", "columns": COLUMNS}), 201)
    ok(s.post("/tables/pq/rows", {"rows": [
        {"id": 1, "name": "Root, \"all\""},
        {"id": 10, "parent_id": 1, "name": "line\nbreak", "v": "10.01", "n": 3},
        {"id": 11, "parent_id": 1, "name": "", "v": "-0.05", "n": -7},
        {"id": 2},
    ]}), 201)
    # An async write, answered 202: the export reflects it.
    r = s.post("/update_cell?async=true", {"table": "pq", "row_id": 2, "column": "v",
                                           "value": "999999999999999.99"})
    assert r.status_code == 202, r.text

    r = ok(s.get("/tables/pq/export?format=parquet"))
    assert r.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert r.headers["Content-Disposition"] == 'attachment; filename="pq.parquet"'
    assert int(r.headers["Content-Length"]) == len(r.content)
    assert "X-Duckgrid-Applied" in r.headers
    cols, rows = read_parquet(tmp_path, r.content)
    assert cols == [["id", "BIGINT"], ["parent_id", "BIGINT"], ["name", "VARCHAR"],
                    ["v", "DECIMAL(18,2)"], ["n", "DECIMAL(18,0)"]]
    assert rows == [["1", None, "Root, \"all\"", "9.96", "-4"],
                    ["2", None, None, "999999999999999.99", "0"],
                    ["10", "1", "line\nbreak", "10.01", "3"],
                    ["11", "1", "", "-0.05", "-7"]]

    # The same rows as the CSV export, cell for cell.
    csv_rows = list(csv.reader(io.StringIO(ok(s.get("/tables/pq/export?format=csv")).content
                                           .decode("utf-8"), newline="")))[1:]
    assert [[c if c is not None else "" for c in row] for row in rows] == csv_rows

    # An empty table is a valid file with the columns and no rows.
    ok(s.post("/tables", {"name": "empty", "columns": COLUMNS}), 201)
    cols, rows = read_parquet(tmp_path, ok(s.get("/tables/empty/export?format=parquet")).content)
    assert [c[0] for c in cols] == ["id", "parent_id", "name", "v", "n"] and rows == []

    # The scratch files are gone once the answers are sent.
    assert os.path.isdir(os.path.join(s.dir, "snapshots", "io"))
    assert glob.glob(os.path.join(s.dir, "snapshots", "io", "*")) == []
    for q, status in [("/tables/nosuch/export?format=parquet", 404), ("/tables/bad%20name/export?format=parquet", 400)]:
        r = s.get(q)
        assert r.status_code == status, (q, r.status_code, r.text)
    assert s.stop() == 0
