"""The read side of the API: GET /tables, /tables/{t}, /tables/{t}/rows,
/tables/{t}/rows/{id}, /views, /views/{name} -- shapes, exact decimals,
keyset paging, parameter validation, and what a view's SQL may be.

Data is made through the write path (POST /tables, POST /tables/{t}/rows,
POST /views), so these tests also check that reads see every applied write.
"""
import json
import re

import pytest

SALES = {"name": "sales", "columns": [
    {"name": "name", "type": "text"},
    {"name": "product_family", "type": "text"},
    {"name": "sales", "type": "number", "scale": 2},
    {"name": "units", "type": "number", "scale": 0}]}

ROWS = [
    {"id": 1, "name": "Brand X"},
    {"id": 10, "parent_id": 1, "name": "Snacks", "product_family": "Snacks"},
    {"id": 20, "parent_id": 1, "name": "Frozen", "product_family": "Frozen"},
    {"id": 101, "parent_id": 10, "name": "Crisps", "product_family": "Snacks", "sales": "100.5", "units": 10},
    {"id": 102, "parent_id": 10, "name": "Nuts", "product_family": "Snacks", "sales": "200.25", "units": 20},
    {"id": 103, "parent_id": 10, "name": "Popcorn", "product_family": "Snacks", "sales": 300, "units": 30},
    {"id": 201, "parent_id": 20, "name": "Pizza", "product_family": "Frozen"},
    {"id": 202, "parent_id": 20, "name": "Peas \"green\" \u00e9", "product_family": "Frozen"},
]


def problem(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


@pytest.fixture(scope="module")
def grid(server):
    """The sales hierarchy, a wide flat table for paging, and a view."""
    r = server.post("/tables", SALES)
    assert r.status_code == 201, r.text
    r = server.post("/tables/sales/rows", {"rows": ROWS})
    assert r.status_code == 201, r.text
    r = server.post("/tables", {"name": "flat", "columns": [
        {"name": "label", "type": "text"}, {"name": "v", "type": "number", "scale": 3}]})
    assert r.status_code == 201, r.text
    rows = [{"id": i, "label": f"r{i}", "v": f"{i}.125"} for i in range(1, 251)]
    r = server.post("/tables/flat/rows", {"rows": rows})
    assert r.status_code == 201, r.text
    r = server.post("/views", {"name": "sales_summary_by_product_family", "sql":
                               "SELECT product_family, sum(sales) AS total_sales, sum(units) AS units "
                               "FROM sales WHERE id NOT IN (SELECT DISTINCT parent_id FROM sales "
                               "WHERE parent_id IS NOT NULL) GROUP BY product_family ORDER BY 1"})
    assert r.status_code == 201, r.text
    return server


# ---- tables -------------------------------------------------------------------

def test_tables_list_in_name_order_with_row_counts(grid):
    r = grid.get("/tables")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    tables = r.json()["tables"]
    names = [t["name"] for t in tables]
    assert names == sorted(names) and {"flat", "sales"} <= set(names)
    sales = next(t for t in tables if t["name"] == "sales")
    assert sales == dict(SALES, row_count=len(ROWS))


def test_table_get(grid):
    r = grid.get("/tables/sales")
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "sales", "columns": SALES["columns"], "row_count": len(ROWS)}
    assert grid.get("/tables/flat").json()["row_count"] == 250


def test_table_unknown_404_invalid_400(grid):
    problem(grid.get("/tables/nosuch"), 404, "not_found")
    for bad in ("Sales", "1abc", "a-b", "id", "x" * 64, "%22x%22"):
        problem(grid.get(f"/tables/{bad}"), 400, "bad_request")


def test_reads_need_a_key(grid):
    for path in ("/tables", "/tables/sales", "/tables/sales/rows", "/tables/sales/rows/1",
                 "/views", "/views/sales_summary_by_product_family"):
        r = grid.get(path, key="not-a-key")
        problem(r, 401, "unauthorized")


# ---- rows -----------------------------------------------------------------------

def test_rows_all_in_id_order_with_exact_decimals(grid):
    r = grid.get("/tables/sales/rows")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next"] is None
    ids = [row["id"] for row in body["rows"]]
    assert ids == sorted(x["id"] for x in ROWS)
    by_id = {row["id"]: row for row in body["rows"]}
    assert by_id[1] == {"id": 1, "parent_id": None, "name": "Brand X", "product_family": None,
                        "sales": 600.75, "units": 60}
    assert by_id[202]["name"] == "Peas \"green\" \u00e9"
    assert list(by_id[101].keys()) == ["id", "parent_id", "name", "product_family", "sales", "units"]
    # Printed with exactly `scale` decimals: 100.50, not 100.5; units with none.
    text = r.text
    assert '"sales":100.50,"units":10}' in text
    assert '"id":1,"parent_id":null,"name":"Brand X","product_family":null,"sales":600.75,"units":60' in text
    assert '"sales":0.00,"units":0' in text  # Pizza: omitted number cells are 0
    assert '"sales":300.00' in text


def test_rows_roots_and_children(grid):
    body = grid.get("/tables/sales/rows?parent_id=null").json()
    assert [r["id"] for r in body["rows"]] == [1] and body["next"] is None
    body = grid.get("/tables/sales/rows?parent_id=10").json()
    assert [r["id"] for r in body["rows"]] == [101, 102, 103]
    assert all(r["parent_id"] == 10 for r in body["rows"])
    body = grid.get("/tables/sales/rows?parent_id=103").json()
    assert body == {"rows": [], "next": None}
    body = grid.get("/tables/sales/rows?parent_id=999").json()
    assert body == {"rows": [], "next": None}


def test_rows_keyset_paging_covers_everything_once(grid):
    seen, after, pages = [], None, 0
    while True:
        path = "/tables/flat/rows?limit=100" + (f"&after={after}" if after is not None else "")
        r = grid.get(path)
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        seen += [row["id"] for row in body["rows"]]
        if body["next"] is None:
            break
        assert body["next"] == body["rows"][-1]["id"]
        after = body["next"]
    assert pages == 3
    assert seen == list(range(1, 251))


def test_rows_next_is_null_when_page_is_exactly_full(grid):
    body = grid.get("/tables/flat/rows?limit=50&after=200").json()
    assert [r["id"] for r in body["rows"]] == list(range(201, 251))
    assert body["next"] is None
    body = grid.get("/tables/flat/rows?limit=49&after=200").json()
    assert body["next"] == 249


def test_rows_default_limit_is_100_and_max_10000(grid):
    body = grid.get("/tables/flat/rows").json()
    assert len(body["rows"]) == 100 and body["next"] == 100
    body = grid.get("/tables/flat/rows?limit=10000").json()
    assert len(body["rows"]) == 250 and body["next"] is None


def test_rows_after_and_parent_combined(grid):
    body = grid.get("/tables/sales/rows?parent_id=10&after=101&limit=1").json()
    assert [r["id"] for r in body["rows"]] == [102] and body["next"] == 102
    body = grid.get("/tables/sales/rows?after=-5&limit=1").json()
    assert [r["id"] for r in body["rows"]] == [1]


def test_rows_number_scale_three(grid):
    r = grid.get("/tables/flat/rows?limit=2")
    assert '"v":1.125' in r.text and '"v":2.125' in r.text
    assert re.search(r'"v":\d+\.\d{3}[,}]', r.text)


@pytest.mark.parametrize("query", [
    "limit=0", "limit=10001", "limit=-1", "limit=abc", "limit=1.5", "limit=", "limit=+5",
    "limit=99999999999999999999", "after=abc", "after=1.5", "after=", "after=99999999999999999999",
    "parent_id=abc", "parent_id=", "parent_id=NULL", "parent_id=1e3"])
def test_rows_bad_parameters_400(grid, query):
    problem(grid.get(f"/tables/sales/rows?{query}"), 400, "bad_request")


def test_rows_unknown_table_404(grid):
    problem(grid.get("/tables/nosuch/rows"), 404, "not_found")
    problem(grid.get("/tables/Nope/rows"), 400, "bad_request")


def test_row_get_with_children(grid):
    r = grid.get("/tables/sales/rows/1")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": 1, "parent_id": None, "name": "Brand X", "product_family": None,
                        "sales": 600.75, "units": 60, "children": 2}
    assert r.text.endswith('"children":2}')
    assert grid.get("/tables/sales/rows/10").json()["children"] == 3
    row = grid.get("/tables/sales/rows/101").json()
    assert row["children"] == 0 and row["parent_id"] == 10
    assert '"sales":100.50' in grid.get("/tables/sales/rows/101").text


def test_row_get_errors(grid):
    problem(grid.get("/tables/sales/rows/999"), 404, "not_found")
    problem(grid.get("/tables/nosuch/rows/1"), 404, "not_found")
    for bad in ("abc", "1.5", "99999999999999999999", "9223372036854775808", "0x10", "%201"):
        problem(grid.get(f"/tables/sales/rows/{bad}"), 400, "bad_request")
    # The extremes of int64 are valid ids (that do not exist here).
    problem(grid.get("/tables/sales/rows/9223372036854775807"), 404, "not_found")
    problem(grid.get("/tables/sales/rows/-9223372036854775808"), 404, "not_found")


def test_ids_beyond_2_53_are_strings(grid):
    r = grid.post("/tables", {"name": "bigids", "columns": [{"name": "n", "type": "number", "scale": 0}]})
    assert r.status_code == 201, r.text
    big, child = "9007199254740993", "9223372036854775807"
    r = grid.post("/tables/bigids/rows", {"rows": [{"id": big, "n": 1},
                                                   {"id": child, "parent_id": big, "n": 2},
                                                   {"id": 5, "n": 3}]})
    assert r.status_code == 201, r.text
    body = grid.get("/tables/bigids/rows").json()
    assert [row["id"] for row in body["rows"]] == [5, big, child]
    assert body["rows"][2]["parent_id"] == big
    row = grid.get(f"/tables/bigids/rows/{big}").json()
    assert row["id"] == big and row["children"] == 1 and row["n"] == 2
    body = grid.get(f"/tables/bigids/rows?parent_id={big}").json()
    assert [row["id"] for row in body["rows"]] == [child]
    body = grid.get(f"/tables/bigids/rows?limit=1&after=5").json()
    assert body["next"] == big


def test_reads_follow_writes(grid):
    r = grid.post("/update_cell", {"table": "sales", "row_id": 101, "column": "sales", "value": "150.5"})
    assert r.status_code == 200, r.text
    assert '"sales":150.50' in grid.get("/tables/sales/rows/101").text
    assert '"sales":650.75' in grid.get("/tables/sales/rows/10").text
    assert '"sales":650.75' in grid.get("/tables/sales/rows/1").text
    r = grid.post("/update_cell", {"table": "sales", "row_id": 101, "column": "sales", "value": "100.50"})
    assert r.status_code == 200, r.text
    assert '"sales":600.75' in grid.get("/tables/sales/rows/1").text


# ---- views ------------------------------------------------------------------------

def test_views_list(grid):
    r = grid.get("/views")
    assert r.status_code == 200, r.text
    views = r.json()["views"]
    names = [v["name"] for v in views]
    assert names == sorted(names)
    v = next(v for v in views if v["name"] == "sales_summary_by_product_family")
    assert v["sql"].startswith("SELECT product_family, sum(sales)")
    assert set(v.keys()) == {"name", "sql"}


def test_view_rows_exact(grid):
    r = grid.get("/views/sales_summary_by_product_family")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == ["product_family", "total_sales", "units"]
    rows = {row[0]: row for row in body["rows"]}
    assert rows["Frozen"] == ["Frozen", 0, 0]
    assert rows["Snacks"][1] == 600.75
    # sum() of DECIMAL(18,2) is DECIMAL(38,2): still printed exactly, with 2 decimals.
    assert '["Frozen",0.00,0]' in r.text and '["Snacks",600.75,60]' in r.text


def test_view_limit_offset(grid):
    full = grid.get("/views/sales_summary_by_product_family").json()["rows"]
    assert len(full) == 2
    assert grid.get("/views/sales_summary_by_product_family?limit=1").json()["rows"] == full[:1]
    assert grid.get("/views/sales_summary_by_product_family?limit=1&offset=1").json()["rows"] == full[1:]
    assert grid.get("/views/sales_summary_by_product_family?offset=5").json()["rows"] == []
    body = grid.get("/views/sales_summary_by_product_family?limit=0").json()
    assert body == {"columns": ["product_family", "total_sales", "units"], "rows": []}
    for q in ("limit=10001", "limit=-1", "limit=x", "offset=-1", "offset=x", "offset=1.5"):
        problem(grid.get(f"/views/sales_summary_by_product_family?{q}"), 400, "bad_request")


def test_view_value_types(grid):
    sql = ("SELECT 1::TINYINT AS i8, 300::SMALLINT AS i16, 70000 AS i32, 9007199254740993::BIGINT AS i64, "
           "18446744073709551615::UBIGINT AS u64, 170141183460469231731687303715884105727::HUGEINT AS i128, "
           "(-12345.678)::DECIMAL(38,3) AS d38, (-0.05)::DECIMAL(4,2) AS d4, 0.1::DOUBLE AS dbl, "
           "1.5::FLOAT AS flt, 'nan'::DOUBLE AS nan, 'x\"y' AS txt, true AS yes, NULL AS nothing, "
           "DATE '2024-05-01' AS day, [1, 2] AS list, NULL::DECIMAL(18,2) AS nulldec "
           "FROM sales WHERE id = 1")
    r = grid.post("/views", {"name": "types_view", "sql": sql})
    assert r.status_code == 201, r.text
    r = grid.get("/views/types_view")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == ["i8", "i16", "i32", "i64", "u64", "i128", "d38", "d4", "dbl", "flt",
                               "nan", "txt", "yes", "nothing", "day", "list", "nulldec"]
    assert r.text.endswith(
        '"rows":[[1,300,70000,9007199254740993,18446744073709551615,'
        '170141183460469231731687303715884105727,-12345.678,-0.05,0.1,1.5,null,"x\\"y",true,null,'
        '"2024-05-01","[1, 2]",null]]}')


def test_view_unknown_404_invalid_400(grid):
    problem(grid.get("/views/nosuch"), 404, "not_found")
    problem(grid.get("/views/No-Such"), 400, "bad_request")


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM dg.api_keys",
    "SELECT * FROM dg.views",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_settings",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM sales; DROP TABLE sales",
    "DELETE FROM sales",
    "DROP TABLE sales",
    "ATTACH '/tmp/x.db' AS x",
    "COPY sales TO '/tmp/dg_read_test.csv'",
    "WITH duckdb_tables AS (SELECT * FROM duckdb_tables) SELECT * FROM duckdb_tables",
    "SELECT nextval('dg.api_keys_seq')",
    "SELECT * FROM nosuch",
    "SELECT",
])
def test_view_sql_rejected(grid, sql):
    r = grid.post("/views", {"name": "bad_view", "sql": sql})
    body = problem(r, 400, "bad_request")
    assert "\n" not in body["detail"]
    problem(grid.get("/views/bad_view"), 404, "not_found")
    assert grid.get("/tables/sales").json()["row_count"] == len(ROWS)
