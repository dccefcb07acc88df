"""The design document's six test cases (seed §10), end to end through
HTTP, Redis streams, the manager and DuckDB, plus the write path's
guarantees: exactly one outcome per request, in stream order."""
import concurrent.futures
import json
import threading
from decimal import Decimal

import pytest
import requests

from conftest import Server

SALES = {"name": "sales", "columns": [
    {"name": "name", "type": "text"},
    {"name": "product_family", "type": "text"},
    {"name": "sales", "type": "number", "scale": 2},
    {"name": "units", "type": "number", "scale": 0}]}


def stream_entries(redis, key):
    """All entries of a stream as (id, {field: value}) via redis-cli --json-less parsing."""
    out = redis.cli("--no-raw", "XRANGE", key, "-", "+")
    return out


def xrange(redis, key):
    """[(id, first field, its value)] of every entry (entries also carry a
    MAC: src/stream/entry_mac.c)."""
    from helpers import Resp
    with Resp(redis) as r:
        return [(eid, fields[0], fields[1]) for eid, fields in r.cmd("XRANGE", key, "-", "+")]


def make_sales(s, name="sales"):
    body = dict(SALES, name=name)
    r = s.post("/tables", body)
    assert r.status_code == 201, r.text
    rows = [
        {"id": 1, "name": "Brand X"},
        {"id": 10, "parent_id": 1, "name": "Snacks", "product_family": "Snacks"},
        {"id": 20, "parent_id": 1, "name": "Frozen", "product_family": "Frozen"},
        {"id": 101, "parent_id": 10, "name": "Crisps", "product_family": "Snacks", "sales": "100.00", "units": 10},
        {"id": 102, "parent_id": 10, "name": "Nuts", "product_family": "Snacks", "sales": "200.00", "units": 20},
        {"id": 103, "parent_id": 10, "name": "Popcorn", "product_family": "Snacks", "sales": "300.00", "units": 30},
        {"id": 201, "parent_id": 20, "name": "Pizza", "product_family": "Frozen"},
        {"id": 202, "parent_id": 20, "name": "Peas", "product_family": "Frozen"},
        {"id": 203, "parent_id": 20, "name": "Waffles", "product_family": "Frozen"},
    ]
    r = s.post(f"/tables/{name}/rows", {"rows": rows})
    assert r.status_code == 201, r.text
    return r.json()


def cell(s, table, row, col):
    r = s.get(f"/tables/{table}/rows/{row}")
    assert r.status_code == 200, r.text
    return Decimal(str(r.json()[col]))


@pytest.fixture(scope="module")
def seeded(server):
    make_sales(server)
    return server


def test_1_update_cell_reaches_duckdb_and_both_streams(seeded, redis_server):
    s = seeded
    r = s.post("/update_cell", {"table": "sales", "row_id": 101, "column": "sales", "value": 150,
                                "request_id": "seed-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "applied" and body["request_id"] == "seed-1"
    assert body["stream_id"] == body["update_id"]
    changes = {(c["row_id"], c["column"]): c for c in body["changes"]}
    assert changes[(101, "sales")]["old"] == 100.0 and changes[(101, "sales")]["new"] == 150.0
    assert changes[(10, "sales")]["new"] == 650.0   # roll-up
    assert changes[(1, "sales")]["new"] == 650.0
    # exactly two decimals in the raw JSON
    assert '"new":150.00' in r.text
    # DuckDB, read back
    assert cell(s, "sales", 101, "sales") == Decimal("150.00")
    assert cell(s, "sales", 1, "sales") == Decimal("650.00")
    # request_duck holds the request, response_duck the outcome
    reqs = xrange(redis_server, s.prefix + "request_duck")
    assert any(e[0] == body["stream_id"] and json.loads(e[2])["request_id"] == "seed-1" for e in reqs)
    outs = xrange(redis_server, s.prefix + "response_duck")
    mine = [json.loads(e[2]) for e in outs if e[0] == body["update_id"]]
    assert len(mine) == 1 and mine[0]["request_id"] == "seed-1"


def test_2_concurrent_clients_applied_once_in_stream_order(seeded, redis_server):
    s = seeded
    n_clients, per_client = 16, 25
    results = []
    lock = threading.Lock()

    def client(k):
        sess = requests.Session()
        for i in range(per_client):
            row = [101, 102, 103, 201, 202, 203][(k + i) % 6]
            val = f"{k * 1000 + i}.{k:02d}"
            r = sess.post(s.base + "/update_cell", headers=s.headers(), timeout=30,
                          json={"table": "sales", "row_id": row, "column": "sales", "value": val,
                                "request_id": f"c{k}-{i}"})
            assert r.status_code == 200, r.text
            with lock:
                results.append(r.json())

    with concurrent.futures.ThreadPoolExecutor(n_clients) as ex:
        list(ex.map(client, range(n_clients)))
    assert len(results) == n_clients * per_client
    ids = [r["request_id"] for r in results]
    assert len(set(ids)) == len(ids)
    # exactly one outcome per request in response_duck, ordered by stream id
    outs = [json.loads(e[2]) for e in xrange(redis_server, s.prefix + "response_duck")]
    mine = [o for o in outs if o["request_id"].startswith("c")]
    assert sorted(o["request_id"] for o in mine) == sorted(ids)
    # final value of each cell == last change to it in response_duck order
    last = {}
    for o in outs:
        for c in o["changes"]:
            if c["table"] == "sales" and c["column"] == "sales":
                last[c["row_id"]] = Decimal(str(c["new"]))
    for row in (101, 102, 103, 201, 202, 203, 10, 20, 1):
        assert cell(s, "sales", row, "sales") == last[row].quantize(Decimal("0.01")), row


def test_3_parent_spreads_proportionally_exact(server):
    make_sales(server, "brand3")
    r = server.post("/update_cell", {"table": "brand3", "row_id": 10, "column": "sales", "value": "1000.00"})
    assert r.status_code == 200, r.text
    # 100:200:300 -> 1000 = 166.666.. 333.333.. 500 -> largest remainder
    vals = [cell(server, "brand3", i, "sales") for i in (101, 102, 103)]
    assert vals == [Decimal("166.67"), Decimal("333.33"), Decimal("500.00")]
    assert sum(vals) == Decimal("1000.00")
    assert cell(server, "brand3", 1, "sales") == Decimal("1000.00")


def test_4_parent_with_zero_children_spreads_equally(server):
    make_sales(server, "brand4")
    r = server.post("/update_cell", {"table": "brand4", "row_id": 20, "column": "sales", "value": 10})
    assert r.status_code == 200, r.text
    vals = [cell(server, "brand4", i, "sales") for i in (201, 202, 203)]
    assert vals == [Decimal("3.34"), Decimal("3.33"), Decimal("3.33")]
    assert cell(server, "brand4", 1, "sales") == Decimal("610.00")


def test_5_view_consistent_after_update(server):
    make_sales(server, "brand5")
    r = server.post("/views", {"name": "brand5_summary", "sql":
                               "SELECT product_family, sum(sales) AS total_sales FROM brand5 s "
                               "WHERE NOT EXISTS (SELECT 1 FROM brand5 c WHERE c.parent_id = s.id) "
                               "GROUP BY product_family ORDER BY product_family"})
    assert r.status_code == 201, r.text
    r = server.post("/update_cell", {"table": "brand5", "row_id": 20, "column": "sales", "value": "90.00"})
    assert r.status_code == 200
    r = server.post("/update_cell", {"table": "brand5", "row_id": 101, "column": "sales", "value": "50.5"})
    assert r.status_code == 200
    v = server.get("/views/brand5_summary")
    assert v.status_code == 200, v.text
    rows = {row[0]: Decimal(str(row[1])) for row in v.json()["rows"]}
    assert rows == {"Frozen": Decimal("90.00"), "Snacks": Decimal("550.50")}


def test_6_nonexistent_table_row_column_404_nothing_queued(seeded, redis_server):
    s = seeded
    before = redis_server.cli("XLEN", s.prefix + "request_duck")
    for body in ({"table": "nope", "row_id": 1, "column": "sales", "value": 1},
                 {"table": "sales", "row_id": 999999, "column": "sales", "value": 1},
                 {"table": "sales", "row_id": 101, "column": "nope", "value": 1}):
        for q in ("", "?async=true"):
            r = s.post("/update_cell" + q, body)
            assert r.status_code == 404, r.text
            assert r.headers["Content-Type"].startswith("application/problem+json")
            assert r.json()["code"] == "not_found"
    assert redis_server.cli("XLEN", s.prefix + "request_duck") == before


def test_tables_and_views_share_one_namespace(server):
    make_sales(server, "ns_t")
    r = server.post("/views", {"name": "ns_t", "sql": "SELECT 1 AS one"})
    assert r.status_code == 409 and r.json()["code"] == "conflict", r.text
    assert server.post("/views", {"name": "ns_v", "sql": "SELECT name FROM ns_t"}).status_code == 201
    r = server.post("/tables", {"name": "ns_v", "columns": [{"name": "v", "type": "number"}]})
    assert r.status_code == 409 and "exists already" in r.json()["detail"], r.text
