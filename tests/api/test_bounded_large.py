"""Bounded work under a backlog of *large* outcomes (issue 14, item 2).

test_bounded.py shows the caps with a few hundred small outcomes. Here
response_duck holds ~30 MB: 120 outcomes of ~250 KB each (an update_cell of
a 250 KB text), followed by one small outcome of another table. Then:

- every get_updates page stays within DUCKGRID_PAGE_BYTES (plus the one
  update that crosses the line) and within `limit`, and `next` pages through
  everything exactly once;
- a filtered get_updates page stops after DUCKGRID_PAGE_BYTES of scanned
  outcomes, matched or not, instead of reading the whole backlog to find one
  update (`next` moves on, the client continues);
- an SSE replay from the start of that backlog is streamed: while the client
  does not read, the server stops reading response_duck once the socket's
  buffers are full. The observable is Redis's own count of bytes sent
  (INFO stats total_net_output_bytes): well under half of the backlog, where a
  replay held in memory (or read in pages of 100 outcomes of any size, as
  before) has read most or all of it before the client's first event.
  After that the client reads everything, in order, exactly once.

No timing assertions: the waits are bounded polls for a condition.
"""
import json
import socket
import time

import pytest

from conftest import Server, wait_until

BIG = 250_000          # bytes of text per large outcome
NBIG = 120             # large outcomes in the backlog (~30 MB)
PAGE_BYTES = 1 << 20   # DUCKGRID_PAGE_BYTES of this server
REPLAY_BYTES = 24 << 20  # DUCKGRID_REPLAY_BYTES: less than half the backlog


def xid(s):
    return tuple(int(x) for x in s.split("-"))


def redis_out_bytes(redis):
    for line in redis.cli("INFO", "stats").splitlines():
        if line.startswith("total_net_output_bytes:"):
            return int(line.split(":")[1])
    raise AssertionError("no total_net_output_bytes in INFO stats")


def settled_out_bytes(redis, rounds=4, timeout=30):
    """Redis's output byte count once it stops moving (a few samples in a
    row equal), within a bounded wait."""
    last, same = redis_out_bytes(redis), 0
    deadline = time.monotonic() + timeout
    while same < rounds and time.monotonic() < deadline:
        time.sleep(0.3)
        now = redis_out_bytes(redis)
        # the server's idle traffic (lease, reader) is a few hundred bytes
        same = same + 1 if now - last < 4096 else 0
        last = now
    return last


@pytest.fixture(scope="module")
def backlog(redis_server):
    s = Server(redis_server.url, env={"DUCKGRID_PAGE_BYTES": str(PAGE_BYTES),
                                      "DUCKGRID_REPLAY_BYTES": str(REPLAY_BYTES)}).start()
    r = s.post("/tables", {"name": "big", "columns": [{"name": "t", "type": "text"}]})
    assert r.status_code == 201, r.text
    r = s.post("/tables/big/rows", {"rows": [{"id": i, "t": "x"} for i in range(1, 4)]})
    assert r.status_code == 201, r.text
    r = s.post("/tables", {"name": "other", "columns": [{"name": "v", "type": "number", "scale": 0}]})
    assert r.status_code == 201, r.text
    r = s.post("/tables/other/rows", {"rows": [{"id": 100, "v": 1}]})
    assert r.status_code == 201, r.text
    first = s.get("/get_updates?since=$").json()["next"]
    for i in range(NBIG):
        text = chr(ord("a") + i % 26) * BIG
        r = s.post("/update_cell?async=true", {"table": "big", "row_id": 1 + i % 3, "column": "t", "value": text})
        assert r.status_code == 202, r.text
    # sync: when it is answered, every outcome before it is published
    r = s.post("/update_cell", {"table": "other", "row_id": 100, "column": "v", "value": 7})
    assert r.status_code == 200, r.text
    last = r.json()["update_id"]
    yield s, first, last
    s.cleanup()


def test_get_updates_pages_of_large_outcomes_are_capped(backlog):
    s, first, last = backlog
    for limit in (10000, 3):
        cursor, seen, pages = first, [], 0
        while True:
            r = s.get(f"/get_updates?since={cursor}&limit={limit}", timeout=60)
            assert r.status_code == 200, r.text
            ups = r.json()["updates"]
            if not ups:
                break
            pages += 1
            assert len(ups) <= limit, (limit, len(ups))
            sizes = [len(json.dumps(u, separators=(",", ":"))) for u in ups]
            assert max(sizes) >= BIG or ups[-1]["update_id"] == last
            # the page's bytes: at most PAGE_BYTES plus the update that crossed it
            assert sum(sizes) <= PAGE_BYTES + max(sizes) + 1024, (limit, len(ups), sum(sizes))
            seen += [u["update_id"] for u in ups]
            cursor = r.json()["next"]
            assert pages <= NBIG + 1
        assert len(seen) == NBIG + 1 and len(set(seen)) == len(seen), (limit, len(seen))
        assert seen == sorted(seen, key=xid) and seen[-1] == last
        # 250 KB outcomes, 1 MiB pages: a handful per page, never all of them
        assert pages >= NBIG // 5, (limit, pages)
    r = s.get(f"/get_updates?since={first}&limit=10001")
    assert r.status_code == 400, r.text


def test_filtered_page_stops_after_page_bytes_scanned(backlog):
    """table=other over 30 MB of `big` outcomes: the first page (read from
    Redis: since=0) does not scan everything to find the one match; `next`
    moves past what was scanned, and paging on finds it exactly once."""
    s, first, last = backlog
    r = s.get(f"/get_updates?since=0&table=other&limit=100", timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    # (since=0 also finds the table's own creation and first insert)
    assert last not in [u["update_id"] for u in body["updates"]] and xid(body["next"]) < xid(last), \
        "one page scanned the whole backlog of other tables' outcomes"
    cursor, found, pages = body["next"], [u["update_id"] for u in body["updates"]], 1
    while True:
        r = s.get(f"/get_updates?since={cursor}&table=other&limit=100", timeout=60)
        assert r.status_code == 200, r.text
        found += [u["update_id"] for u in r.json()["updates"]]
        pages += 1
        if r.json()["next"] == cursor or last in found:
            break
        cursor = r.json()["next"]
        assert pages <= NBIG + 5
    assert found.count(last) == 1, found


class SlowSSE:
    """A raw event-stream client with a small receive buffer that reads only
    when told to."""

    def __init__(self, s, last_event_id, query=""):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        self.sock.settimeout(60)
        self.sock.connect(("127.0.0.1", s.port))
        self.sock.sendall((f"GET /events{query} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {s.admin_key}\r\n"
                           f"Last-Event-ID: {last_event_id}\r\n\r\n").encode())
        self.file = self.sock.makefile("rb")
        status = self.file.readline().decode()
        self.status = int(status.split()[1])
        while self.file.readline().strip():
            pass

    def next(self):
        ev = {}
        for raw in self.file:
            line = raw.decode().rstrip("\n")
            if line == "":
                if ev:
                    return ev
                continue
            if line.startswith(":"):
                continue
            k, _, v = line.partition(": ")
            ev[k] = v
        return None

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def replay_rest(s, sse, got, last, query=""):
    """Reads sse on to `last`, resuming after each replay_limit from its id
    as EventSource would; appends the update ids to got. The replays made."""
    rounds = 1
    while True:
        ev = sse.next()
        assert ev is not None, "the stream ended before the last update"
        if ev.get("event") == "replay_limit":
            assert ev["id"] == json.loads(ev["data"])["last_event_id"], ev
            sse.close()
            rounds += 1
            assert rounds <= 10
            sse = SlowSSE(s, ev["id"], query)
            assert sse.status == 200
            continue
        assert ev.get("event") in ("update", None), ev
        if ev.get("event") == "update":
            got.append(ev["id"])
            if ev["id"] == last:
                sse.close()
                return rounds


def test_sse_replay_of_a_large_backlog_is_streamed(backlog, redis_server):
    s, first, last = backlog
    before = settled_out_bytes(redis_server)
    sse = SlowSSE(s, first)
    try:
        assert sse.status == 200
        ev = sse.next()
        while ev is not None and ev.get("event") != "update":
            ev = sse.next()
        assert ev is not None, "no update in the replay"
        got = [ev["id"]]
        # The client stops reading: the server fills the socket's buffers
        # and must then stop reading response_duck.
        stalled = settled_out_bytes(redis_server) - before
        rounds = replay_rest(s, sse, got, last)
    finally:
        sse.close()
    total = settled_out_bytes(redis_server) - before
    print(f"\nreplay of {NBIG} outcomes of {BIG} B: Redis sent {stalled} B while the client "
          f"did not read, {total} B in all, {rounds} replays")
    assert len(got) == NBIG + 1 and len(set(got)) == len(got) and got == sorted(got, key=xid)
    assert total >= NBIG * BIG, total  # the replay did read the backlog from Redis
    assert stalled < total // 2, (
        f"the server read {stalled} of {total} bytes of the backlog while the client read one update: "
        "the replay is held in memory instead of being streamed")
    # DUCKGRID_REPLAY_BYTES is under half the backlog: at least one resume
    assert rounds >= 2, rounds


def test_filtered_sse_replay_counts_what_it_passes_over(backlog):
    """?table=other over the backlog of `big` outcomes: what the replay reads
    and passes over counts against DUCKGRID_REPLAY_BYTES too, so it ends
    with replay_limit (id: where it got to) before it reaches the one
    matching update, instead of reading everything in one go; resuming
    finds that update exactly once."""
    s, first, last = backlog
    sse = SlowSSE(s, first, "?table=other")
    assert sse.status == 200
    ev = sse.next()
    while ev is not None and "event" not in ev:  # the retry: line
        ev = sse.next()
    assert ev is not None and ev.get("event") == "replay_limit", ev
    assert xid(ev["id"]) < xid(last)
    sse.close()
    got = []
    sse = SlowSSE(s, ev["id"], "?table=other")
    replay_rest(s, sse, got, last, "?table=other")
    assert got == [last], got
