"""Bounded work per request (issue 14, item 2): a get_updates page and an
SSE replay are capped in entries and bytes, and the replay is streamed page
by page from Redis instead of being built in memory first.

The caps are set low here (DUCKGRID_PAGE_BYTES, DUCKGRID_REPLAY_MAX,
DUCKGRID_REPLAY_BYTES) so a few hundred small outcomes cross them.
"""
import json
import socket
import time

import pytest

from test_events import SSE


def make(s, table, rows):
    r = s.post("/tables", {"name": table, "columns": [{"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text
    r = s.post(f"/tables/{table}/rows", {"rows": [{"id": i, "v": "1.00"} for i in range(1, rows + 1)]})
    assert r.status_code == 201, r.text


def write_many(s, table, n):
    for i in range(n):
        r = s.post("/update_cell?async=true", {"table": table, "row_id": 1 + i % 5, "column": "v",
                                               "value": f"{i}.00"})
        assert r.status_code == 202, r.text
    # a sync write last: when it is answered every one before it is published
    r = s.post("/update_cell", {"table": table, "row_id": 1, "column": "v", "value": "0.50"})
    assert r.status_code == 200, r.text
    return r.json()["update_id"]


@pytest.fixture(scope="module")
def capped(redis_server):
    from conftest import Server
    s = Server(redis_server.url, env={"DUCKGRID_PAGE_BYTES": "4096", "DUCKGRID_REPLAY_MAX": "50",
                                      "DUCKGRID_REPLAY_BYTES": "1048576"}).start()
    make(s, "b", 5)
    last = write_many(s, "b", 120)
    yield s, last
    s.cleanup()


@pytest.mark.parametrize("since", ["0", "first"])
def test_get_updates_page_is_capped_in_bytes_and_pages_on(capped, since):
    """limit=10000 returns at most DUCKGRID_PAGE_BYTES of updates (plus the
    one that crosses), and `next` pages through everything exactly once.
    since=0 reads Redis; since=<id> is served from the ring."""
    s, last = capped
    cursor = "0"
    if since == "first":
        cursor = s.get("/get_updates?since=0&limit=1").json()["updates"][0]["update_id"]
    seen, pages = [], 0
    while True:
        r = s.get(f"/get_updates?since={cursor}&limit=10000")
        assert r.status_code == 200, r.text
        ups = r.json()["updates"]
        if not ups:
            break
        pages += 1
        body = sum(len(json.dumps(u, separators=(",", ":"))) for u in ups)
        biggest = max(len(json.dumps(u, separators=(",", ":"))) for u in ups)
        assert body <= 4096 + biggest + 64, f"page of {len(ups)} updates, {body} bytes"
        seen += [u["update_id"] for u in ups]
        cursor = r.json()["next"]
        assert pages < 200
    assert pages >= 5, pages
    assert len(seen) == len(set(seen)) and seen[-1] == last


def test_sse_replay_stops_at_the_entry_cap_and_resumes(capped):
    """A resume from 0 sends at most DUCKGRID_REPLAY_MAX updates, then
    `event: replay_limit` whose id is where to resume; resuming from it
    continues without a gap or a repeat."""
    s, last = capped
    got, resume, rounds = [], "0", 0
    while True:
        rounds += 1
        assert rounds < 20
        sse = SSE(s, headers={"Last-Event-ID": resume})
        assert sse.status == 200
        n = 0
        limit = None
        while True:
            ev = sse.next(timeout=5)
            if ev is None:
                break
            if ev.get("event") == "replay_limit":
                limit = ev
                break
            if ev.get("event") == "update":
                got.append(ev["id"])
                n += 1
                if ev["id"] == last:
                    break
        sse.close()
        assert n <= 50, n
        if limit is None:
            break
        data = json.loads(limit["data"])
        assert limit["id"] == data["last_event_id"] and "resume with Last-Event-ID" in data["reason"]
        resume = limit["id"]
    assert rounds >= 3
    assert got[-1] == last and len(got) == len(set(got))
    assert got == sorted(got, key=lambda i: tuple(map(int, i.split("-"))))


def test_sse_replay_is_capped_in_bytes(make_server):
    """DUCKGRID_REPLAY_BYTES caps the bytes one replay sends."""
    s = make_server(env={"DUCKGRID_REPLAY_BYTES": "4096"}).start()
    make(s, "c", 5)
    write_many(s, "c", 60)
    sse = SSE(s, headers={"Last-Event-ID": "0"})
    size, limit = 0, None
    while True:
        ev = sse.next(timeout=5)
        assert ev is not None, "the stream ended without replay_limit"
        if ev.get("event") == "replay_limit":
            limit = ev
            break
        size += len(ev.get("data", ""))
    sse.close()
    assert limit is not None and size <= 4096 + 2048, size
