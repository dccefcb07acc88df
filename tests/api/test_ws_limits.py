"""GET /ws: the documented limits (README "Live updates", src/http/ws.c).

- a text message over 64 KiB (MAX_MESSAGE) and at most 1 MiB is answered with
  an error (400) and the socket stays usable;
- a message over 1 MiB (wslay's max_recv_msg_length, set in front.c) closes
  the socket with 1009;
- behind a running update_cell at most 1,024 messages (MAX_INBOX) or 4 MiB
  (MAX_INBOX_BYTES) may wait: one more closes the socket with 1008;
- a client that does not read, with more than DUCKGRID_CLIENT_BUFFER bytes
  queued for it (updates or answers), is closed with 1008 "slow consumer"
  (the close frame goes ahead of the queue); {"type":"dropped",...} comes
  first when the hub dropped it (an update larger than the buffer).
Also what writing these found: no updates before "subscribe", and a burst of
answered messages no longer aborts the server.

A raw client over one socket gives the control these need (send without
reading, many frames in one write, fragments, the close code and reason).
To hold an update_cell on its worker for as long as a test needs, the
server runs against a redis-server of its own that the test pauses
(SIGSTOP) and resumes (SIGCONT): its XADD waits meanwhile.
"""
import base64
import json
import os
import signal
import socket
import struct
import threading
import time

import pytest
import requests

from conftest import Redis, Server

MAX_MESSAGE = 64 * 1024
MAX_RECV = 1 << 20
MAX_INBOX = 1024
MAX_INBOX_BYTES = 4 << 20

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE = 0, 1, 2, 8


class Closed(Exception):
    pass


class RawWS:
    """A minimal WebSocket client (RFC 6455) over one blocking socket."""

    def __init__(self, srv, key=None, rcvbuf=None, timeout=10):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", srv.port))
        nonce = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {nonce}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Authorization: Bearer {key or srv.admin_key}\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _fill(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise Closed("EOF")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    @staticmethod
    def frame(payload, opcode=OP_TEXT, fin=True):
        if isinstance(payload, str):
            payload = payload.encode()
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        body = (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        return head + mask + body

    def send(self, payload, opcode=OP_TEXT):
        self.sock.sendall(self.frame(payload, opcode))

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv_frame(self):
        """(opcode, payload, fin) of the next frame."""
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        assert not b1 & 0x80, "a server frame is never masked"
        return b0 & 0x0F, self._take(n), bool(b0 & 0x80)

    def recv(self):
        """The next frame, a whole text message, as JSON."""
        op, data, fin = self.recv_frame()
        assert fin and op == OP_TEXT, (op, data[:200])
        return json.loads(data)

    def until_close(self, timeout=10):
        """Reads to the close frame: (text messages before it, code, reason).
        code None: the connection ended without a close frame."""
        msgs = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                op, data, fin = self.recv_frame()
            except socket.timeout:
                break
            except (Closed, ConnectionResetError):
                return msgs, None, None
            if op == OP_CLOSE:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                return msgs, code, data[2:].decode()
            if op == OP_TEXT:
                msgs.append(json.loads(data))
        raise AssertionError(f"no close frame within {timeout} s; {len(msgs)} messages")

    def close(self):
        self.sock.close()


def ping(pad=0):
    """A ping message of exactly `pad` bytes when pad > 0."""
    base = '{"type":"ping","pad":""}'
    if pad == 0:
        return '{"type":"ping"}'
    assert pad >= len(base)
    return '{"type":"ping","pad":"' + "x" * (pad - len(base)) + '"}'


def assert_usable(ws):
    ws.send('{"type":"ping"}')
    assert ws.recv() == {"type": "pong"}
    ws.send('{"type":"subscribe","tables":["lim"]}')
    assert ws.recv() == {"type": "subscribed", "tables": ["lim"]}


@pytest.fixture(scope="module")
def own_redis():
    r = Redis().start()
    yield r
    r.cleanup()


@pytest.fixture(scope="module")
def srv(own_redis):
    """A server whose Redis the tests may pause: a long Redis timeout and
    lease, so a pause of a second or two is only a pause."""
    s = Server(own_redis.url, env={"DUCKGRID_REDIS_TIMEOUT_MS": "20000", "DUCKGRID_LEASE_MS": "4000"}).start()
    assert s.post("/tables", {"name": "lim", "columns": [{"name": "v", "type": "number"}]}).status_code == 201
    assert s.post("/tables/lim/rows", {"rows": [{"id": 1}]}).status_code == 201
    yield s
    s.cleanup()


class paused:
    """Redis stopped for the block: an update_cell stays on its worker."""

    def __init__(self, redis):
        self.redis = redis

    def __enter__(self):
        self.redis.proc.send_signal(signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        self.redis.proc.send_signal(signal.SIGCONT)


UPDATE = json.dumps({"type": "update_cell", "id": "held", "table": "lim", "row_id": 1, "column": "v", "value": 1})


# ---- 0. no updates before "subscribe" or after "unsubscribe" ------------------------
# (found while writing these tests: both used to mean "every table")

def test_no_updates_before_subscribe_or_after_unsubscribe(srv):
    fresh, left, sub = RawWS(srv), RawWS(srv), RawWS(srv)
    left.send('{"type":"subscribe"}')
    assert left.recv() == {"type": "subscribed", "tables": "*"}
    left.send('{"type":"unsubscribe"}')
    assert left.recv() == {"type": "unsubscribed"}
    sub.send('{"type":"subscribe","tables":["lim"]}')
    assert sub.recv() == {"type": "subscribed", "tables": ["lim"]}
    out = srv.post("/update_cell", {"table": "lim", "row_id": 1, "column": "v", "value": 7}).json()
    assert sub.recv() == {"type": "update", "update": out}    # it was published
    time.sleep(0.3)                  # an update for the others would be queued by now
    for ws in (fresh, left):
        ws.send('{"type":"ping"}')
        assert ws.recv() == {"type": "pong"}
        ws.close()
    sub.close()


# ---- 1. over 64 KiB: an error, the socket stays usable ----------------------------

def test_message_over_64_kib_is_answered_400_and_the_socket_stays_usable(srv):
    ws = RawWS(srv)
    ws.send(ping(MAX_MESSAGE))                 # exactly 64 KiB: handled
    assert ws.recv() == {"type": "pong"}
    for size in (MAX_MESSAGE + 1, 200 * 1024, MAX_RECV):   # over 64 KiB, at most 1 MiB
        ws.send(ping(size))
        m = ws.recv()
        assert m["type"] == "error" and m["status"] == 400, m
        assert m["body"]["status"] == 400 and m["body"]["code"] == "bad_request"
        assert m["body"]["detail"] == "the message is larger than 64 KiB"
        assert_usable(ws)
    ws.close()


# ---- 2. over 1 MiB: close 1009 ------------------------------------------------------

def send_meanwhile(ws, data):
    """Sends `data` on a thread: the server may close (and reset) before it
    has read all of it, while the test reads the close frame."""
    def run():
        try:
            ws.send_raw(data)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_message_over_1_mib_closes_with_1009(srv):
    ws = RawWS(srv)
    ws.send(ping(MAX_RECV - 100))              # 1 MiB less a little: handled (an error, see above)
    assert ws.recv()["status"] == 400
    t = send_meanwhile(ws, RawWS.frame(ping(MAX_RECV + 1)))
    msgs, code, _ = ws.until_close()
    t.join(10)
    assert msgs == [] and code == 1009
    ws.close()
    # the same in fragments of 512 KiB: the limit is the message's, not a frame's
    ws = RawWS(srv)
    text = ping(MAX_RECV + 1).encode()
    half = 512 * 1024
    t = send_meanwhile(ws, RawWS.frame(text[:half], OP_TEXT, fin=False)
                       + RawWS.frame(text[half:2 * half], OP_CONT, fin=False)
                       + RawWS.frame(text[2 * half:], OP_CONT, fin=True))
    msgs, code, _ = ws.until_close()
    t.join(10)
    assert msgs == [] and code == 1009
    ws.close()
    # the server goes on
    ws = RawWS(srv)
    assert_usable(ws)
    ws.close()
    assert requests.get(srv.base + "/health", timeout=5).status_code == 200


# ---- a burst of answered messages (found while writing these tests: more than
# 4 KiB of them in one read re-entered wslay from its own callback and aborted
# the server) ----------------------------------------------------------------------

def test_a_burst_of_messages_is_answered_in_order(srv):
    ws = RawWS(srv)
    names = [f"t{i}" for i in range(2000)]     # ~90 KB of frames in one write
    ws.send_raw(b"".join(RawWS.frame(json.dumps({"type": "subscribe", "tables": [n]})) for n in names))
    for n in names:
        assert ws.recv() == {"type": "subscribed", "tables": [n]}
    assert_usable(ws)
    ws.close()
    assert srv.proc.poll() is None


# ---- 3. messages waiting behind an update_cell: 1,024 or 4 MiB, then close 1008 -----

def test_1024_messages_may_wait_behind_an_update_cell_and_are_answered_in_order(srv, own_redis):
    ws = RawWS(srv)
    with paused(own_redis):
        ws.send_raw(RawWS.frame(UPDATE) + b"".join(RawWS.frame(f'{{"type":"ping","n":{i}}}')
                                                   for i in range(MAX_INBOX)))
        time.sleep(0.5)
    m = ws.recv()
    assert m["type"] == "result" and m["id"] == "held" and m["status"] == 200, m
    for _ in range(MAX_INBOX):
        assert ws.recv() == {"type": "pong"}
    assert_usable(ws)
    ws.close()


def test_1025_messages_waiting_close_with_1008(srv, own_redis):
    ws = RawWS(srv)
    with paused(own_redis):
        ws.send_raw(RawWS.frame(UPDATE) + b"".join(RawWS.frame('{"type":"ping"}') for _ in range(MAX_INBOX + 1)))
        msgs, code, reason = ws.until_close()
    assert msgs == [] and code == 1008 and reason == "too many messages waiting for an answer"
    ws.close()
    ws = RawWS(srv)
    assert_usable(ws)
    ws.close()


def test_4_mib_may_wait_behind_an_update_cell_one_byte_more_closes_with_1008(srv, own_redis):
    def burst(total):
        """64 messages, 63 pings of 64 KiB, one a little shorter and "{}" (the
        smallest JSON object): `total` bytes in all."""
        last = total - 63 * MAX_MESSAGE - 2
        assert 0 < last <= MAX_MESSAGE
        return RawWS.frame(ping(MAX_MESSAGE)) * 63 + RawWS.frame(ping(last)) + RawWS.frame("{}")
    ws = RawWS(srv)
    with paused(own_redis):
        ws.send_raw(RawWS.frame(UPDATE) + burst(MAX_INBOX_BYTES))
        time.sleep(0.5)
    m = ws.recv()
    assert m["type"] == "result" and m["id"] == "held" and m["status"] == 200, m
    for _ in range(64):
        assert ws.recv() == {"type": "pong"}
    assert ws.recv()["status"] == 400                   # "{}" has no type: its answer, in order
    ws.close()
    ws = RawWS(srv)
    with paused(own_redis):
        ws.send_raw(RawWS.frame(UPDATE) + burst(MAX_INBOX_BYTES + 1))
        msgs, code, reason = ws.until_close()
    assert msgs == [] and code == 1008 and reason == "too many messages waiting for an answer"
    ws.close()


# ---- 4. a client that does not read: close 1008 "slow consumer" -------------------
# Two ways (ws.c): more than DUCKGRID_CLIENT_BUFFER bytes queued on the socket
# when another message is to follow: closed at once; wslay sends the close
# frame ahead of what is queued, so the client reads some complete messages,
# then the close. Or the hub's queue for the socket holds more than the buffer
# (an update larger than it): {"type":"dropped",...}, then the close.

DROPPED = {"type": "dropped", "reason": "slow consumer: more updates pending than the client buffer holds"}
CLIENT_BUFFER = 65536


@pytest.fixture(scope="module")
def small_buffer(redis_server):
    s = Server(redis_server.url, env={"DUCKGRID_CLIENT_BUFFER": str(CLIENT_BUFFER)}).start()
    for name, children in (("sl", 800), ("big", 3000)):
        assert s.post("/tables", {"name": name, "columns": [{"name": "v", "type": "number"}]}).status_code == 201
        rows = [{"id": 1}] + [{"id": 10 + i, "parent_id": 1} for i in range(children)]
        assert s.post(f"/tables/{name}/rows", {"rows": rows}).status_code == 201
    yield s
    s.cleanup()


def test_a_subscriber_that_does_not_read_updates_is_closed_with_1008(small_buffer):
    s = small_buffer
    ws = RawWS(s, rcvbuf=4096)
    ws.send('{"type":"subscribe","tables":["sl"]}')
    assert ws.recv() == {"type": "subscribed", "tables": ["sl"]}
    outs = []
    for i in range(150):     # every child changes: ~50 KB each (< the buffer), 7 MB in all, unread
        outs.append(s.post("/update_cell", {"table": "sl", "row_id": 1, "column": "v", "value": 800 * (i + 1)}).json())
    assert all(len(json.dumps(o)) < CLIENT_BUFFER for o in outs)
    msgs, code, reason = ws.until_close(timeout=15)
    assert (code, reason) == (1008, "slow consumer")
    # Which check fires first depends on timing: the socket's unsent bytes
    # (closed at once), or the hub's queue for it when the loop is slow to
    # move it into the socket (then {"type":"dropped"} comes last).
    if msgs and msgs[-1].get("type") == "dropped":
        assert "slow consumer" in msgs[-1]["reason"], msgs[-1]
        msgs = msgs[:-1]
    assert all(m["type"] == "update" for m in msgs), [m.get("type") for m in msgs]
    got = [m["update"] for m in msgs]
    assert got == outs[:len(got)] and len(got) < len(outs)   # in order, then no more
    ws.close()
    assert requests.get(s.base + "/health", timeout=5).status_code == 200


def test_a_client_that_does_not_read_its_answers_is_closed_with_1008(small_buffer):
    s = small_buffer
    ws = RawWS(s, rcvbuf=4096)
    n = 20000                                  # ~140 B answer each, 2.8 MB in all, unread
    ws.send_raw(RawWS.frame("x") * n)
    msgs, code, reason = ws.until_close(timeout=15)
    assert (code, reason) == (1008, "slow consumer")
    assert all(m["type"] == "error" and m["status"] == 400 for m in msgs)
    assert len(msgs) < n
    ws.close()
    ws = RawWS(s)
    ws.send('{"type":"ping"}')
    assert ws.recv() == {"type": "pong"}
    ws.close()


def test_an_update_larger_than_the_client_buffer_drops_the_subscriber(small_buffer):
    s = small_buffer
    ws = RawWS(s)
    ws.send('{"type":"subscribe","tables":["big"]}')
    assert ws.recv() == {"type": "subscribed", "tables": ["big"]}
    out = s.post("/update_cell", {"table": "big", "row_id": 1, "column": "v", "value": 5000}).json()
    assert len(json.dumps(out)) > CLIENT_BUFFER
    msgs, code, reason = ws.until_close(timeout=10)
    assert msgs == [DROPPED] and (code, reason) == (1008, "slow consumer")
    ws.close()


def test_errors_behind_an_update_cell_are_answered_in_their_turn(srv, own_redis):
    """Not JSON, a binary frame and a message over 64 KiB sent while an
    update_cell runs: their errors come after its result, in the order of
    the messages (they used to jump ahead of it)."""
    ws = RawWS(srv)
    with paused(own_redis):
        ws.send_raw(RawWS.frame(UPDATE) + RawWS.frame("not json") + RawWS.frame(b"\x01\x02", opcode=OP_BINARY)
                    + RawWS.frame(ping(MAX_MESSAGE + 1)) + RawWS.frame('{"type":"ping"}'))
        time.sleep(0.5)
    m = ws.recv()
    assert m["type"] == "result" and m["id"] == "held" and m["status"] == 200, m
    e1, e2, e3 = ws.recv(), ws.recv(), ws.recv()
    assert e1["type"] == "error" and e1["status"] == 400 and "JSON object" in e1["body"]["detail"], e1
    assert e2["type"] == "error" and "text frames" in e2["body"]["detail"], e2
    assert e3["type"] == "error" and "64 KiB" in e3["body"]["detail"], e3
    assert ws.recv() == {"type": "pong"}
    ws.close()
