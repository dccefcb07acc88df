"""Writes queued from the HTTP loop: an update_cell(s) without a client
request_id is validated on its loop and handed to the submitter, which
sends the XADDs of a moment as one pipeline; the request waits parked (no
worker) for its outcome (sync) or its XADD (async). A client request_id
still goes to a worker (a replay may read DuckDB). Each test has its own
redis-server."""
import json
import socket
import threading
import time

import pytest
import requests

from conftest import Redis, Server
from helpers import problem


@pytest.fixture
def own():
    redis = Redis().start()
    s = Server(redis.url, env={"DUCKGRID_SYNC_TIMEOUT_MS": "20000"}).start()
    yield redis, s
    s.cleanup()
    redis.cleanup()


def queued(s, where):
    want = f'duckgrid_writes_queued_total{{from="{where}"}} '
    for line in s.get("/metrics").text.splitlines():
        if line.startswith(want):
            return int(line.split()[1])
    raise AssertionError(f"no {want} in /metrics")


def tree(s):
    r = s.post("/tables", {"name": "t", "columns": [{"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text
    rows = [{"id": 1, "v": "0"}] + [{"id": i, "parent_id": 1, "v": "0"} for i in range(2, 12)]
    r = s.post("/tables/t/rows", {"rows": rows})
    assert r.status_code == 201, r.text


def call(s, method, path, body=None):
    return requests.request(method, s.base + path, json=body, headers=s.headers(), timeout=30)


def value(s, row):
    r = s.get(f"/tables/t/rows/{row}")
    assert r.status_code == 200, r.text
    return r.json()["v"]


def test_sync_and_async_writes_queued_from_the_loop(own):
    _, s = own
    tree(s)
    loop0, worker0 = queued(s, "loop"), queued(s, "worker")
    n_sync, n_async = 40, 20
    answers, errors = [], []

    def writer(i, asynchronous):
        try:
            q = "?async=true" if asynchronous else ""
            r = requests.post(f"{s.base}/update_cell{q}", headers=s.headers(), timeout=30,
                              json={"table": "t", "row_id": 2 + i % 10, "column": "v", "value": "1.00", "mode": "add"})
            answers.append((asynchronous, r.status_code, r.json()))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(i, i >= n_sync)) for i in range(n_sync + n_async)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    assert len(answers) == n_sync + n_async
    for asynchronous, status, body in answers:
        if asynchronous:
            assert status == 202 and body["status"] == "queued", body
            assert body["request_id"].startswith("r-") and "-" in body["stream_id"], body
        else:
            assert status == 200 and body["status"] == "applied", body
            assert body["update_id"] and body["request_id"].startswith("r-"), body
    # Every write queued once, from the loop; each applied exactly once.
    assert queued(s, "loop") - loop0 == n_sync + n_async
    assert queued(s, "worker") == worker0
    ids = [b["update_id"] if not a else b["stream_id"] for a, _, b in answers]
    assert len(set(ids)) == len(ids)
    # The async ones too: a read after their 202 reflects them.
    assert sum(float(value(s, i)) for i in range(2, 12)) == pytest.approx(60.0)
    assert float(value(s, 1)) == pytest.approx(60.0)


def test_client_request_id_still_goes_to_a_worker(own):
    _, s = own
    tree(s)
    worker0 = queued(s, "worker")
    body = {"table": "t", "row_id": 3, "column": "v", "value": "2.50", "request_id": "mine-1"}
    first = s.post("/update_cell", body)
    assert first.status_code == 200 and first.json()["status"] == "applied", first.text
    again = s.post("/update_cell", body)
    assert again.status_code == 200 and again.json()["update_id"] == first.json()["update_id"], again.text
    assert queued(s, "worker") == worker0 + 1  # the replay queued nothing
    # A request_id in the query or an Idempotency-Key header: a worker's too.
    r = s.post("/update_cell?request_id=mine-2", {"table": "t", "row_id": 3, "column": "v", "value": "3"})
    assert r.status_code == 200, r.text
    assert queued(s, "worker") == worker0 + 2


def test_bad_writes_answered_on_the_loop(own):
    _, s = own
    tree(s)
    loop0 = queued(s, "loop")
    problem(s.post("/update_cell", {"table": "t", "row_id": 999, "column": "v", "value": "1"}), 404)
    problem(s.post("/update_cell", {"table": "t", "row_id": 2, "column": "nope", "value": "1"}), 404)
    problem(s.post("/update_cell", {"table": "t", "row_id": 2, "column": "v", "value": "x1"}), 400)
    problem(s.post("/update_cells", {"updates": []}), 400)
    r = requests.post(f"{s.base}/update_cell", data=b'{"table": "t", "row_id": 2,', timeout=10,
                      headers={**s.headers(), "Content-Type": "application/json"})
    problem(r, 400)
    assert "malformed JSON" in r.json()["detail"]
    r = requests.post(f"{s.base}/update_cell", data=b'[1, 2]', timeout=10,
                      headers={**s.headers(), "Content-Type": "application/json"})
    problem(r, 400)
    assert queued(s, "loop") == loop0  # nothing queued
    assert float(value(s, 2)) == 0


def test_loop_write_when_redis_is_gone(own):
    """The pipeline fails: 503 at once, nothing queued, not the sync timeout."""
    redis, s = own
    tree(s)
    redis.stop()
    t0 = time.monotonic()
    b = problem(s.post("/update_cell", {"table": "t", "row_id": 2, "column": "v", "value": "1"}), 503)
    assert "nothing was queued" in b["detail"] and b["request_id"].startswith("r-"), b
    b = problem(s.post("/update_cell?async=true", {"table": "t", "row_id": 2, "column": "v", "value": "1"}), 503)
    assert "nothing was queued" in b["detail"], b
    assert time.monotonic() - t0 < 15  # the sync timeout is 20 s


def test_clients_that_leave_while_their_write_is_queued(own):
    """Connections closed right after sending: the writes still apply once
    each, and the server goes on (the submitter's news for a request that
    is gone is dropped)."""
    _, s = own
    tree(s)
    body = b'{"table":"t","row_id":4,"column":"v","value":"1","mode":"add"}'
    head = "".join(f"{k}: {v}\r\n" for k, v in s.headers().items())
    n = 30
    for i in range(n):
        q = "?async=true" if i % 2 else ""
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall((f"POST /update_cell{q} HTTP/1.1\r\nHost: x\r\n{head}Content-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        c.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and float(value(s, 4)) < n:
        time.sleep(0.1)
    assert float(value(s, 4)) == n
    r = s.post("/update_cell", {"table": "t", "row_id": 5, "column": "v", "value": "7"})
    assert r.status_code == 200, r.text


def test_row_and_hold_writes_queued_from_the_loop(own):
    """Insert, update and delete rows and hold cells: each queued from the
    loop, each with its usual answer."""
    _, s = own
    tree(s)
    loop0 = queued(s, "loop")
    r = s.post("/tables/t/rows", {"rows": [{"id": 20, "parent_id": 1, "v": "5.00"}]})
    assert r.status_code == 201, r.text
    r = call(s, "PATCH", "/tables/t/rows/20", {"v": "6.00"})
    assert r.status_code == 200, r.text
    r = call(s, "PUT", "/tables/t/holds", {"holds": [{"row_id": 2, "column": "v"}]})
    assert r.status_code == 200, r.text
    r = call(s, "DELETE", "/tables/t/holds", {"holds": [{"row_id": 2, "column": "v"}]})
    assert r.status_code == 200, r.text
    r = call(s, "DELETE", "/tables/t/rows/20")
    assert r.status_code == 204, r.text
    assert queued(s, "loop") - loop0 == 5
    assert s.get("/tables/t/rows/20").status_code == 404
    assert float(value(s, 1)) == 0
    # Refused on the loop as on a worker: nothing queued.
    problem(s.post("/tables/t/rows", {"rows": [{"id": 2, "v": "1"}]}), 409)
    problem(call(s, "DELETE", "/tables/t/rows/999"), 404)
    assert queued(s, "loop") - loop0 == 5


def test_a_large_body_is_parsed_on_a_worker(own):
    """A body over 64 KiB is not parsed on a loop (its parse would hold the
    loop's other clients): the same write, queued by a worker."""
    _, s = own
    tree(s)
    loop0, worker0 = queued(s, "loop"), queued(s, "worker")
    rows = [{"id": 1000 + i, "parent_id": 1, "v": "0.01"} for i in range(2000)]
    assert len(json.dumps({"rows": rows})) > 64 * 1024
    r = s.post("/tables/t/rows", {"rows": rows})
    assert r.status_code == 201, r.text
    small = s.post("/tables/t/rows", {"rows": [{"id": 5000, "parent_id": 1, "v": "0.01"}]})
    assert small.status_code == 201, small.text
    assert queued(s, "worker") == worker0 + 1
    assert queued(s, "loop") == loop0 + 1
    assert float(value(s, 1)) == pytest.approx(20.01)
