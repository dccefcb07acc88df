"""GET /ws: subscribe to tables, receive update objects, send update_cell
and get the same answers and errors as the REST call; slow clients are
closed with a reason; many clients, disconnects."""
import json
import threading
import time

import pytest
import requests
import websocket


def connect(s, key=None):
    ws = websocket.create_connection(f"ws://127.0.0.1:{s.port}/ws", timeout=10,
                                     header=[f"Authorization: Bearer {key or s.admin_key}"])
    return ws


def recv_type(ws, typ, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = json.loads(ws.recv())
        if m["type"] == typ:
            return m
    raise AssertionError("no " + typ)


@pytest.fixture(scope="module")
def grid(server):
    for t in ("wa", "wb"):
        assert server.post("/tables", {"name": t, "columns": [{"name": "v", "type": "number", "scale": 2},
                                                              {"name": "note", "type": "text"}]}).status_code == 201
        assert server.post(f"/tables/{t}/rows", {"rows": [{"id": 1}, {"id": 2, "parent_id": 1},
                                                          {"id": 3, "parent_id": 1}]}).status_code == 201
    return server


def test_needs_key_and_upgrade(grid):
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(f"ws://127.0.0.1:{grid.port}/ws", timeout=5)
    assert e.value.status_code == 401
    r = requests.get(grid.base + "/ws", headers=grid.headers(), timeout=5)
    assert 400 <= r.status_code < 500


def test_subscribe_receive_and_filter(grid):
    ws = connect(grid)
    ws.send(json.dumps({"type": "subscribe", "tables": ["wa"]}))
    assert recv_type(ws, "subscribed")["tables"] == ["wa"]
    grid.post("/update_cell", {"table": "wb", "row_id": 2, "column": "v", "value": 1})
    out = grid.post("/update_cell", {"table": "wa", "row_id": 2, "column": "v", "value": "2.50"}).json()
    m = recv_type(ws, "update")
    assert m["update"] == out        # the same object as the REST answer / get_updates
    ws.send(json.dumps({"type": "unsubscribe"}))
    recv_type(ws, "unsubscribed")
    ws.send(json.dumps({"type": "ping"}))
    assert recv_type(ws, "pong")["type"] == "pong"
    ws.close()


def test_update_cell_over_ws_same_answers_as_rest(grid):
    ws = connect(grid)
    ws.send(json.dumps({"type": "update_cell", "id": 7, "table": "wa", "row_id": 3, "column": "v",
                        "value": "4.25", "request_id": "ws-1"}))
    m = recv_type(ws, "result")
    assert m["id"] == 7 and m["status"] == 200
    assert m["body"]["status"] == "applied" and m["body"]["request_id"] == "ws-1"
    assert grid.get("/tables/wa/rows/3").json()["v"] == 4.25
    # the same request_id again: the first outcome
    ws.send(json.dumps({"type": "update_cell", "id": 8, "table": "wa", "row_id": 3, "column": "v",
                        "value": "9.99", "request_id": "ws-1"}))
    m2 = recv_type(ws, "result")
    assert m2["body"]["update_id"] == m["body"]["update_id"]
    # errors exactly as REST
    bad = {"table": "wa", "row_id": 999, "column": "v", "value": 1}
    rest = grid.post("/update_cell", bad)
    ws.send(json.dumps(dict(bad, type="update_cell", id="x")))
    m = recv_type(ws, "result")
    assert m["status"] == rest.status_code == 404 and m["body"]["code"] == rest.json()["code"]
    ws.send(json.dumps({"type": "update_cell", "table": "wa", "row_id": 2, "column": "v", "value": "abc"}))
    assert recv_type(ws, "result")["status"] == 400
    ws.send(json.dumps({"type": "update_cell", "async": True, "table": "wa", "row_id": 2, "column": "v", "value": 1}))
    m = recv_type(ws, "result")
    assert m["status"] == 202 and m["body"]["status"] == "queued"
    # malformed messages
    ws.send("not json")
    assert recv_type(ws, "error")["status"] == 400
    ws.send(json.dumps({"type": "launch"}))
    assert recv_type(ws, "error")["status"] == 400
    ws.close()


def test_read_key_cannot_write(grid):
    r = grid.post("/admin/keys", {"name": "ws-reader", "role": "read"})
    assert r.status_code == 201, r.text
    ws = connect(grid, key=r.json()["key"])
    ws.send(json.dumps({"type": "update_cell", "table": "wa", "row_id": 2, "column": "v", "value": 1}))
    assert recv_type(ws, "error")["status"] == 403
    ws.close()


def test_many_clients_and_disconnects(grid):
    clients = [connect(grid) for _ in range(30)]
    for c in clients:
        c.send(json.dumps({"type": "subscribe"}))
        recv_type(c, "subscribed")
    for c in clients[:10]:
        c.close()                      # disconnects mid-stream are harmless
    outs = [grid.post("/update_cell", {"table": "wb", "row_id": 3, "column": "v", "value": i}).json()
            for i in range(5)]
    for c in clients[10:]:
        got = [recv_type(c, "update")["update"]["update_id"] for _ in range(5)]
        assert got == [o["update_id"] for o in outs]
        c.close()
    assert requests.get(grid.base + "/health", timeout=5).status_code == 200


def test_slow_client_is_closed_with_reason(make_server):
    s = make_server(env={"DUCKGRID_CLIENT_BUFFER": "4096"}).start()
    assert s.post("/tables", {"name": "sl", "columns": [{"name": "v", "type": "number"}]}).status_code == 201
    rows = [{"id": 1}] + [{"id": 10 + i, "parent_id": 1} for i in range(200)]
    assert s.post("/tables/sl/rows", {"rows": rows}).status_code == 201
    ws = connect(s)
    ws.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    ws.send(json.dumps({"type": "subscribe"}))
    recv_type(ws, "subscribed")
    for i in range(60):  # ~15 KB per outcome, never read
        s.post("/update_cell", {"table": "sl", "row_id": 1, "column": "v", "value": 1000 + i})
    dropped, closed = None, False
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            op, data = ws.recv_data(control_frame=True)
        except websocket.WebSocketConnectionClosedException:
            closed = True
            break
        if op == websocket.ABNF.OPCODE_CLOSE:
            closed = True
            break
        if op == websocket.ABNF.OPCODE_TEXT and json.loads(data)["type"] == "dropped":
            dropped = json.loads(data)
    assert dropped is not None and "slow consumer" in dropped["reason"]
    assert closed
    assert requests.get(s.base + "/health", timeout=5).status_code == 200
