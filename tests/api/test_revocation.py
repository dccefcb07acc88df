"""Revocation reaches open streams (issue 14, item 4).

A deleted key or an expired token loses its SSE and WebSocket streams
within about a second, with a clear last event; a WebSocket checks the
caller before every message; WebSocket update_cell takes from the same
rate-limit bucket as POST /update_cell.
"""
import json
import time

import jwt
import pytest
import requests
import websocket

from test_events import SSE

SEC = "revocation-test-secret-" + "x" * 20


@pytest.fixture(scope="module")
def srv(redis_server):
    from conftest import Server
    s = Server(redis_server.url, env={"DUCKGRID_JWT_SECRET": SEC, "DUCKGRID_JWT_ISSUER": "t",
                                      "DUCKGRID_JWT_AUDIENCE": "dg", "DUCKGRID_HEARTBEAT_MS": "60000"}).start()
    r = s.post("/tables", {"name": "rv", "columns": [{"name": "v", "type": "number", "scale": 0}]})
    assert r.status_code == 201, r.text
    assert s.post("/tables/rv/rows", {"rows": [{"id": 1, "v": 1}]}).status_code == 201
    yield s
    s.cleanup()


def new_key(s, role):
    r = s.post("/admin/keys", {"name": f"rv-{role}-{time.monotonic_ns()}", "role": role})
    assert r.status_code == 201, r.text
    return r.json()["id"], r.json()["key"]


def delete_key(s, kid):
    r = requests.delete(f"{s.base}/admin/keys/{kid}", headers=s.headers(), timeout=10)
    assert r.status_code == 204, r.text


def sse_with(s, key):
    class K:
        admin_key = key
        port = s.port
    return SSE(K)


def until_event(sse, name, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = sse.next(timeout=max(0.1, deadline - time.monotonic()))
        if ev is None:
            return None
        if ev.get("event") == name:
            return ev
    return None


def test_sse_ends_when_its_key_is_deleted(srv):
    kid, key = new_key(srv, "read")
    sse = sse_with(srv, key)
    assert sse.status == 200
    time.sleep(0.3)
    t0 = time.monotonic()
    delete_key(srv, kid)
    ev = until_event(sse, "revoked", 5)
    sse.close()
    assert ev is not None, "the stream of a deleted key did not end"
    assert time.monotonic() - t0 < 3
    assert "deleted" in json.loads(ev["data"])["reason"]


def test_sse_ends_when_its_token_expires(srv):
    now = int(time.time())
    # exp 28 s ago: still inside the 30 s leeway, so valid for ~2 more seconds
    tok = jwt.encode({"sub": "u1", "role": "read", "iss": "t", "aud": "dg", "iat": now - 60,
                      "exp": now - 28, "jti": "expiring"}, SEC, algorithm="HS256")
    sse = sse_with(srv, tok)
    assert sse.status == 200
    ev = until_event(sse, "revoked", 8)
    sse.close()
    assert ev is not None and "expired" in json.loads(ev["data"])["reason"]


def ws_connect(s, key):
    return websocket.create_connection(f"ws://127.0.0.1:{s.port}/ws", timeout=10,
                                       header=[f"Authorization: Bearer {key}"])


def recv_until(ws, typ, timeout=5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            m = json.loads(ws.recv())
        except (websocket.WebSocketConnectionClosedException, websocket.WebSocketTimeoutException, ValueError):
            return None
        if m.get("type") == typ:
            return m
    return None


def cell(s):
    return str(s.get("/tables/rv/rows/1").json()["v"])


def test_websocket_stops_writing_at_once_when_its_key_is_deleted(srv):
    kid, key = new_key(srv, "write")
    ws = ws_connect(srv, key)
    ws.send(json.dumps({"type": "update_cell", "id": 1, "table": "rv", "row_id": 1, "column": "v", "value": 5}))
    assert recv_until(ws, "result")["status"] == 200
    delete_key(srv, kid)
    ws.send(json.dumps({"type": "update_cell", "id": 2, "table": "rv", "row_id": 1, "column": "v", "value": 6}))
    m = recv_until(ws, "revoked")
    assert m is not None and m["status"] == 401, m
    time.sleep(0.5)
    assert cell(srv) == "5", "a deleted key kept writing over its WebSocket"
    ws.close()


def test_websocket_ends_when_its_key_is_deleted_while_idle(srv):
    kid, key = new_key(srv, "read")
    ws = ws_connect(srv, key)
    ws.send(json.dumps({"type": "subscribe"}))
    assert recv_until(ws, "subscribed")
    delete_key(srv, kid)
    t0 = time.monotonic()
    m = recv_until(ws, "revoked", timeout=5)
    assert m is not None and "deleted" in m["reason"]
    assert time.monotonic() - t0 < 3
    ws.close()


def test_websocket_update_cell_is_rate_limited(make_server):
    s = make_server(env={"DUCKGRID_RATE_LIMIT": "1", "DUCKGRID_RATE_BURST": "2"}).start()
    r = s.post("/tables", {"name": "rl", "columns": [{"name": "v", "type": "number", "scale": 0}]})
    assert r.status_code == 201, r.text
    time.sleep(2.1)  # refill the admin key's bucket
    ws = ws_connect(s, s.admin_key)
    statuses = []
    for i in range(6):
        ws.send(json.dumps({"type": "update_cell", "id": i, "table": "rl", "row_id": 999, "column": "v",
                            "value": i}))
        statuses.append(recv_until(ws, "result")["status"])
    ws.close()
    assert 429 in statuses, statuses


def test_websocket_ends_when_its_token_expires(srv):
    """An expired JWT ends an open WebSocket as it ends an SSE stream."""
    now = int(time.time())
    # exp 28 s ago: still inside the 30 s leeway, so valid for ~2 more seconds
    tok = jwt.encode({"sub": "u-ws", "role": "read", "iss": "t", "aud": "dg", "iat": now - 60,
                      "exp": now - 28, "jti": "ws-expiring"}, SEC, algorithm="HS256")
    ws = ws_connect(srv, tok)
    ws.send(json.dumps({"type": "subscribe"}))
    assert recv_until(ws, "subscribed")
    m = recv_until(ws, "revoked", timeout=8)
    assert m is not None and m["status"] == 401 and "expired" in m["reason"], m
    ws.close()


def test_request_ids_are_scoped_by_jwt_sub(srv):
    """The same request_id from two JWT subjects is two requests; from the
    same subject (another token) it is the first one again."""
    now = int(time.time())

    def tok(sub, jti):
        return jwt.encode({"sub": sub, "role": "write", "iss": "t", "aud": "dg", "iat": now, "exp": now + 300,
                           "jti": jti}, SEC, algorithm="HS256")
    body = {"table": "rv", "row_id": 1, "column": "v", "value": 1, "mode": "add", "request_id": "by-sub-1"}
    hdr = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    url = srv.base + "/update_cell"
    before = float(cell(srv))
    a = requests.post(url, json=body, headers=hdr(tok("alice", "a-1")), timeout=30)
    b = requests.post(url, json=body, headers=hdr(tok("bob", "b-1")), timeout=30)
    a2 = requests.post(url, json=body, headers=hdr(tok("alice", "a-2")), timeout=30)
    assert a.status_code == b.status_code == a2.status_code == 200, (a.text, b.text, a2.text)
    assert a.json()["update_id"] != b.json()["update_id"]
    assert a2.json()["update_id"] == a.json()["update_id"]
    assert float(cell(srv)) == before + 2
