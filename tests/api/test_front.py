"""The HTTP front end on h2o's event loop (src/http/front.c): no thread per
client, limits enforced by the loop, clients that vanish or read slowly."""
import socket
import threading
import time

import requests

from helpers import problem


def threads_of(s):
    with open(f"/proc/{s.proc.pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads: line")


def raw(s, data, limit=65536, timeout=10):
    c = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    c.sendall(data)
    out = b""
    try:
        while len(out) < limit:
            d = c.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        pass
    c.close()
    return out


def test_many_sse_clients_take_no_thread_each(make_server):
    # No per-IP cap: every client here comes from 127.0.0.1.
    s = make_server(env={"DUCKGRID_IP_CONNECTIONS": "0"}).start()
    before = threads_of(s)
    socks = []
    try:
        for _ in range(1000):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.admin_key}\r\n\r\n".encode())
            socks.append(c)
        # Every stream has started (each got its 200 and first bytes).
        for c in socks:
            head = c.recv(4096)
            assert head.startswith(b"HTTP/1.1 200"), head[:100]
        # A thread per client would be over 1000. Workers started for the
        # burst of arrivals (each request is routed on one) end after 5 s idle.
        deadline = time.time() + 12
        while threads_of(s) >= before + 64 and time.time() < deadline:
            time.sleep(0.5)
        during = threads_of(s)
        assert during < before + 64, (before, during)
        # A write reaches every one of them.
        s.post("/tables", {"name": "fan", "columns": [{"name": "v", "type": "number", "scale": 2}]})
        deadline = time.time() + 30
        missing = set(range(len(socks)))
        bufs = {i: b"" for i in missing}
        while missing and time.time() < deadline:
            for i in list(missing):
                socks[i].settimeout(0.01)
                try:
                    bufs[i] += socks[i].recv(65536)
                except socket.timeout:
                    pass
                if b"event: update" in bufs[i]:
                    missing.discard(i)
        assert not missing, f"{len(missing)} of 1000 streams got no update"
    finally:
        for c in socks:
            c.close()
    # The server is fine after they all went away.
    assert requests.get(s.base + "/health", timeout=10).status_code == 200


def test_raw_nul_in_the_request_line_is_refused(server):
    out = raw(server, b"GET /tables/t\x00x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), out[:100]


def test_headers_over_64k_get_431_problem(server):
    r = requests.get(server.base + "/health", headers={"X-Big": "a" * 70000}, timeout=10)
    problem(r, 431, "headers_too_large")


def test_pipelined_requests_answer_in_order(server):
    s = server
    req = b"".join(
        f"GET /nope{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(20)
    ) + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(s, req, limit=1 << 20)
    assert out.count(b"HTTP/1.1 404") == 20, out[:300]
    assert out.rfind(b"HTTP/1.1 200") > out.rfind(b"HTTP/1.1 404")


def test_clients_that_vanish_mid_long_poll_cost_nothing(make_server):
    s = make_server(env={"DUCKGRID_IP_CONNECTIONS": "0"}).start()
    for _ in range(200):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        c.sendall(f"GET /get_updates?since=$&wait_ms=3000 HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {s.admin_key}\r\n\r\n".encode())
        c.close()
    # Writes and reads go on meanwhile, and once the polls time out nothing is left.
    r = s.post("/tables", {"name": "gone", "columns": [{"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text
    # A long poll holds a worker while it waits (not a loop): once the polls
    # have timed out, the extra workers end (5 s idle).
    deadline = time.time() + 30
    while threads_of(s) >= 100 and time.time() < deadline:
        time.sleep(0.5)
    assert requests.get(s.base + "/health", timeout=10).status_code == 200
    assert threads_of(s) < 100


def test_half_sent_requests_do_not_block_others(make_server):
    s = make_server(env={"DUCKGRID_IP_CONNECTIONS": "0"}).start()
    half = []
    for _ in range(300):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
        c.sendall(b"POST /update_cell HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ta")
        half.append(c)
    try:
        t0 = time.time()
        for _ in range(20):
            assert requests.get(s.base + "/health", timeout=10).status_code == 200
        r = s.post("/tables", {"name": "half", "columns": [{"name": "v", "type": "number", "scale": 2}]})
        assert r.status_code == 201, r.text
        assert time.time() - t0 < 30
    finally:
        for c in half:
            c.close()


def test_a_slow_sse_reader_is_dropped_not_buffered(make_server):
    s = make_server(env={"DUCKGRID_CLIENT_BUFFER": "65536"}).start()
    s.post("/tables", {"name": "slow", "columns": [{"name": "v", "type": "number", "scale": 2},
                                                   {"name": "note", "type": "text"}]})
    s.post("/tables/slow/rows", {"rows": [{"id": 1, "v": "1.00", "note": ""}]})
    c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sendall(f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.admin_key}\r\n\r\n".encode())
    note = "n" * 8000
    done = threading.Event()

    def writer():
        for i in range(400):
            if done.is_set():
                break
            s.post("/update_cell", {"table": "slow", "row_id": 1, "column": "note", "value": f"{i}{note}"})
    t = threading.Thread(target=writer)
    t.start()
    time.sleep(3)
    # Now read everything: the stream ended with `event: dropped`.
    got = b""
    c.settimeout(10)
    try:
        while True:
            d = c.recv(1 << 20)
            if not d:
                break
            got += d
    except socket.timeout:
        pass
    done.set()
    t.join()
    c.close()
    assert b"event: dropped" in got, got[-300:]
    assert requests.get(s.base + "/health", timeout=10).status_code == 200


def test_long_polls_are_parked_without_a_thread_each(make_server):
    s = make_server(env={"DUCKGRID_IP_CONNECTIONS": "0"}).start()
    s.post("/tables", {"name": "lp", "columns": [{"name": "v", "type": "number", "scale": 2}]})
    s.post("/tables/lp/rows", {"rows": [{"id": 1, "v": "1.00"}]})
    last = s.post("/update_cell", {"table": "lp", "row_id": 1, "column": "v", "value": "1.50"}).json()["update_id"]
    before = threads_of(s)
    socks = []
    try:
        for _ in range(500):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            # since=<id>, not $: a poll that arrives after the write still gets it.
            c.sendall(f"GET /get_updates?since={last}&wait_ms=25000 HTTP/1.1\r\nHost: x\r\n"
                      f"Authorization: Bearer {s.admin_key}\r\n\r\n".encode())
            socks.append(c)
        # Workers started for the burst of arrivals end after 5 s idle; 500
        # waiting long polls on 500 threads would keep them all.
        deadline = time.time() + 12
        while threads_of(s) >= before + 50 and time.time() < deadline:
            time.sleep(0.5)
        during = threads_of(s)
        assert during < before + 50, (before, during)
        r = s.post("/update_cell", {"table": "lp", "row_id": 1, "column": "v", "value": "2.00"})
        assert r.status_code == 200, r.text
        uid = r.json()["update_id"]
        for c in socks:
            c.settimeout(15)
            got = b""
            while b"\r\n\r\n" not in got or uid.encode() not in got:
                d = c.recv(65536)
                if not d:
                    break
                got += d
            assert got.startswith(b"HTTP/1.1 200") and uid.encode() in got, got[:300]
    finally:
        for c in socks:
            c.close()


def test_sync_writes_wait_for_their_outcome_without_a_worker_each(make_server, redis_server):
    """A sync write waits for its outcome parked on its loop, not on a worker
    (issue 13). With 16 workers and the manager pausing 15 s after each
    publish (a test hook), 200 sync writes are all queued in Redis during
    the first pause (long enough for an ASan build on a loaded machine): a worker that waited for its outcome would let only 16
    through before the first answers. Then each gets its own outcome."""
    s = make_server(env={"DUCKGRID_IP_CONNECTIONS": "0", "DUCKGRID_HTTP_WORKERS": "16"}).start()
    assert s.post("/tables", {"name": "sw", "columns": [{"name": "v", "type": "number", "scale": 0}]}).status_code == 201
    rows = [{"id": 1}] + [{"id": 100 + i, "parent_id": 1, "v": 0} for i in range(200)]
    assert s.post("/tables/sw/rows", {"rows": rows}).status_code == 201
    assert s.stop() == 0
    s.env.update({"DUCKGRID_TEST_HOOKS": "1", "DUCKGRID_TEST_PUBLISH_PAUSE_MS": "15000", "DUCKGRID_SYNC_TIMEOUT_MS": "60000"})
    s.start()
    queued0 = int(redis_server.cli("XLEN", s.prefix + "request_duck"))
    socks = []
    try:
        for i in range(200):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=40)
            body = f'{{"table":"sw","row_id":{100 + i},"column":"v","value":{i + 1},"request_id":"sw-{i}"}}'
            c.sendall(f"POST /update_cell HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.admin_key}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
            socks.append(c)
        deadline = time.time() + 14.0  # within the manager's first pause
        queued = 0
        while time.time() < deadline:
            queued = int(redis_server.cli("XLEN", s.prefix + "request_duck")) - queued0
            if queued >= 200:
                break
            time.sleep(0.1)
        assert queued == 200, queued
        for i, c in enumerate(socks):
            got = b""
            while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
                d = c.recv(65536)
                if not d:
                    break
                got += d
            assert got.startswith(b"HTTP/1.1 200"), got[:300]
            assert f'"request_id":"sw-{i}"'.encode() in got, got[:300]
    finally:
        for c in socks:
            c.close()
    assert s.get("/tables/sw/rows/1").json()["v"] == sum(range(1, 201))
