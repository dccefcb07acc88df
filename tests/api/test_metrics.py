"""GET /metrics: Prometheus text with request, batch, outcome, lag,
live-client and reconnect figures that move with the traffic."""
import re

import requests


def scrape(s):
    r = s.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    vals = {}
    for line in r.text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, v = line.rpartition(" ")
        vals[name] = float(v)
    return r.text, vals


def test_metrics_need_a_key(server):
    assert requests.get(server.base + "/metrics", timeout=5).status_code == 401


def test_metrics_move_with_traffic(server):
    assert server.post("/tables", {"name": "mt", "columns": [{"name": "v", "type": "number"}]}).status_code == 201
    assert server.post("/tables/mt/rows", {"rows": [{"id": 1}, {"id": 2, "parent_id": 1}]}).status_code == 201
    text0, v0 = scrape(server)
    for i in range(5):
        assert server.post("/update_cell", {"table": "mt", "row_id": 2, "column": "v", "value": i}).status_code == 200
    r = server.post("/update_cell", {"table": "mt", "row_id": 2, "column": "v", "value": 1, "expected": 99})
    assert r.status_code == 409
    # A one-row read is answered from the manager's memory: it needs no
    # flush, and the counter says where it came from.
    got = server.get("/tables/mt/rows/2")
    assert got.status_code == 200 and got.json()["v"] == 4
    # DuckDB is written behind (the persister); a page of rows, read from
    # DuckDB, flushes it first.
    assert server.get("/tables/mt/rows?limit=5").status_code == 200
    text, v = scrape(server)
    assert v['duckgrid_row_reads_total{source="memory"}'] - v0['duckgrid_row_reads_total{source="memory"}'] == 1
    assert v['duckgrid_row_reads_total{source="duckdb"}'] == v0['duckgrid_row_reads_total{source="duckdb"}']
    key = 'duckgrid_http_requests_total{method="POST",route="/update_cell",status="200"}'
    assert v[key] - v0.get(key, 0) == 5
    assert v['duckgrid_http_requests_total{method="POST",route="/update_cell",status="409"}'] >= 1
    assert v['duckgrid_outcomes_total{status="applied"}'] - v0['duckgrid_outcomes_total{status="applied"}'] == 5
    assert v['duckgrid_outcomes_total{status="rejected"}'] - v0['duckgrid_outcomes_total{status="rejected"}'] == 1
    assert v["duckgrid_batch_size_count"] > v0["duckgrid_batch_size_count"]
    assert v["duckgrid_duckdb_transaction_seconds_count"] > v0["duckgrid_duckdb_transaction_seconds_count"]
    assert v["duckgrid_manager_leader"] == 1
    assert "duckgrid_request_duck_lag" in v and "duckgrid_live_clients" in v
    assert "duckgrid_redis_reconnects_total" in v
    # histogram buckets are cumulative and end in +Inf == count
    le = [(m.group(1), float(m.group(2))) for m in re.finditer(
        r'duckgrid_http_request_duration_seconds_bucket\{method="POST",route="/update_cell",le="([^"]+)"\} (\S+)', text)]
    counts = [c for _, c in le]
    assert counts == sorted(counts) and le[-1][0] == "+Inf"
    assert le[-1][1] == v['duckgrid_http_request_duration_seconds_count{method="POST",route="/update_cell"}']
    # no secret in the scrape
    assert server.admin_key not in text
