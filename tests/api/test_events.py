"""GET /events: Server-Sent Events of the same update objects as
get_updates, resumable, filterable, with heartbeats, `gone`, and dropping
of clients that fall too far behind."""
import json
import queue
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import wait_until


class SSE:
    """An event-stream client on a raw socket (HTTP/1.0, so the body is the
    plain stream), read on a thread; events land in a queue. close() shuts
    the socket down, which ends the reader at once."""

    def __init__(self, s, query="", headers=None):
        h = {"Authorization": f"Bearer {s.admin_key}"}
        h.update(headers or {})
        self.sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
        req = f"GET /events{query} HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        req += "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        self.sock.sendall(req.encode())
        self.file = self.sock.makefile("rb")
        status = self.file.readline().decode()
        self.status = int(status.split()[1])
        self.headers = {}
        while True:
            line = self.file.readline().decode().strip()
            if not line:
                break
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.q = queue.Queue()
        self.comments = 0
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        ev = {}
        try:
            for raw in self.file:
                line = raw.decode().rstrip("\n")
                if line == "":
                    if ev:
                        self.q.put(ev)
                    ev = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    k, _, v = line.partition(": ")
                    ev[k] = v
        except Exception:
            pass
        self.q.put(None)

    def next(self, timeout=10):
        return self.q.get(timeout=timeout)

    def updates(self, n, timeout=10):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ev = self.q.get(timeout=max(0.1, deadline - time.monotonic()))
            if ev is None:
                break
            if ev.get("event") == "update":
                out.append(ev)
        return out

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@pytest.fixture(scope="module")
def grid(server):
    r = server.post("/tables", {"name": "ev", "columns": [{"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text
    r = server.post("/tables", {"name": "ev2", "columns": [{"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text
    rows = [{"id": 1}] + [{"id": 100 + i, "parent_id": 1, "v": "1.00"} for i in range(50)]
    assert server.post("/tables/ev/rows", {"rows": rows}).status_code == 201
    assert server.post("/tables/ev2/rows", {"rows": [{"id": 1, "v": "1.00"}]}).status_code == 201
    return server


def write(s, table, row, value):
    r = s.post("/update_cell", {"table": table, "row_id": row, "column": "v", "value": value})
    assert r.status_code == 200, r.text
    return r.json()


def test_live_events_match_outcomes(grid):
    sse = SSE(grid)
    assert sse.status == 200
    assert sse.headers["content-type"].startswith("text/event-stream")
    time.sleep(0.3)
    outs = [write(grid, "ev", 100 + i, f"{i}.25") for i in range(5)]
    got = sse.updates(5)
    assert [e["id"] for e in got] == [o["update_id"] for o in outs]
    for e, o in zip(got, outs):
        body = json.loads(e["data"])
        assert body == o
    sse.close()


def test_resume_with_last_event_id_replays_then_follows(grid):
    first = write(grid, "ev", 101, "7.00")
    more = [write(grid, "ev", 102, f"{i}.00") for i in range(3)]
    sse = SSE(grid, headers={"Last-Event-ID": first["update_id"]})
    got = sse.updates(3)
    assert [e["id"] for e in got] == [o["update_id"] for o in more]
    live = write(grid, "ev", 103, "9.00")
    nxt = sse.updates(1)
    assert nxt[0]["id"] == live["update_id"]
    sse.close()
    # ?since= works the same
    sse = SSE(grid, query="?since=" + first["update_id"])
    assert [e["id"] for e in sse.updates(4)] == [o["update_id"] for o in more] + [live["update_id"]]
    sse.close()


def test_table_filter(grid):
    sse = SSE(grid, query="?table=ev2")
    time.sleep(0.3)
    write(grid, "ev", 104, "1.50")
    mine = write(grid, "ev2", 1, "2.50")
    got = sse.updates(1)
    assert got[0]["id"] == mine["update_id"]
    sse.close()


def test_bad_parameters(grid):
    r = requests.get(grid.base + "/events?since=yesterday", headers=grid.headers(), timeout=5)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/problem+json")
    r = requests.get(grid.base + "/events?table=Bad-Name", headers=grid.headers(), timeout=5)
    assert r.status_code == 400
    r = requests.get(grid.base + "/events", timeout=5)
    assert r.status_code == 401


def test_many_clients_each_get_every_update(grid):
    clients = [SSE(grid) for _ in range(40)]
    time.sleep(0.5)
    outs = [write(grid, "ev", 105 + (i % 10), f"{i}.50") for i in range(10)]
    for c in clients:
        assert [e["id"] for e in c.updates(10)] == [o["update_id"] for o in outs]
        c.close()


def test_heartbeat_and_gone_and_drop(make_server, redis_server):
    s = make_server(env={"DUCKGRID_HEARTBEAT_MS": "300", "DUCKGRID_CLIENT_BUFFER": "4096"}).start()
    assert s.post("/tables", {"name": "hb", "columns": [{"name": "v", "type": "number", "scale": 2}]}).status_code == 201
    rows = [{"id": 1}] + [{"id": 10 + i, "parent_id": 1, "v": "1.00"} for i in range(200)]
    assert s.post("/tables/hb/rows", {"rows": rows}).status_code == 201
    # heartbeat comments while idle
    sse = SSE(s)
    # two heartbeats (300 ms apart); the bound leaves room for a loaded machine
    assert wait_until(lambda: sse.comments >= 2, 10), sse.comments
    sse.close()
    # gone: the resume point was trimmed away
    old = write(s, "hb", 10, "2.00")
    for i in range(30):
        write(s, "hb", 11, f"{i}.00")
    redis_server.cli("XTRIM", s.prefix + "response_duck", "MAXLEN", "5")
    sse = SSE(s, headers={"Last-Event-ID": old["update_id"]})
    ev = sse.next()
    while ev is not None and ev.get("event") != "gone":
        ev = sse.next()
    assert ev is not None and json.loads(ev["data"])["code"] == "gone"
    sse.close()
    # a client that never reads is dropped, and the server stays healthy
    host, port = "127.0.0.1", s.port
    sock = socket.create_connection((host, port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.admin_key}\r\n\r\n".encode())
    time.sleep(0.3)
    for i in range(60):  # each outcome lists 200 changed leaves: ~15 KB
        write(s, "hb", 1, f"{1000 + i}.00")
    sock.settimeout(10)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    sock.close()
    assert b"event: dropped" in data
    assert requests.get(s.base + "/health", timeout=5).status_code == 200


def test_shutdown_with_live_clients_is_prompt(make_server):
    s = make_server().start()
    clients = [SSE(s) for _ in range(5)]
    time.sleep(0.3)
    t0 = time.monotonic()
    assert s.stop() == 0
    assert time.monotonic() - t0 < 10
    for c in clients:
        c.close()
