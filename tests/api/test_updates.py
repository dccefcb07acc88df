"""GET /get_updates: cursors (0, $, ids), paging, verbatim pass-through of
response_duck entries, long polling, the table filter, 410 for a cursor
older than what is retained, and 503 when Redis is down."""
import json
import subprocess
import threading
import time

import pytest

from conftest import Redis, Server


def problem(r, status, code):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    return body


def xid(s):
    ms, seq = s.split("-")
    return (int(ms), int(seq))


def make_table(s, name):
    r = s.post("/tables", {"name": name, "columns": [{"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text


def insert(s, table, row_id, v="1.00"):
    r = s.post(f"/tables/{table}/rows", {"id": row_id, "v": v})
    assert r.status_code == 201, r.text


def updates(s, query=""):
    r = s.get("/get_updates" + query)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    return r.json()


def xrange_raw(redis, key):
    """[(id, res text)] of a stream, read with redis-cli --raw."""
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(redis.port), "--no-auth-warning",
                          "-a", redis.password, "--raw", "XRANGE", key, "-", "+"],
                         capture_output=True, text=True, timeout=30).stdout
    lines = out.split("\n")
    # id, res, <text>, mac, <hex>: five lines an entry (src/stream/entry_mac.c)
    return [(lines[i], lines[i + 2]) for i in range(0, len(lines) - 2, 5) if lines[i + 1] == "res"]


@pytest.fixture
def fresh(make_server):
    """A server of its own: its response stream holds only this test's updates."""
    return make_server().start()


def test_all_then_nothing_then_new(fresh):
    make_table(fresh, "a")
    insert(fresh, "a", 1)
    body = updates(fresh)
    ops = [u["op"] for u in body["updates"]]
    assert ops == ["create_table", "insert_rows"]
    assert body["next"] == body["updates"][-1]["update_id"]
    for u in body["updates"]:
        assert {"update_id", "stream_id", "request_id", "user", "op", "status", "changes", "error",
                "ts"} <= set(u)
        assert u["status"] == "applied"
    # Same with since=0 and 0-0.
    assert updates(fresh, "?since=0") == body
    assert updates(fresh, "?since=0-0") == body
    # Nothing after the last one: empty, and next stays.
    nxt = body["next"]
    assert updates(fresh, f"?since={nxt}") == {"updates": [], "next": nxt}
    insert(fresh, "a", 2)
    body = updates(fresh, f"?since={nxt}")
    assert [u["op"] for u in body["updates"]] == ["insert_rows"]
    assert xid(body["next"]) > xid(nxt)


def test_dollar_means_only_new(fresh):
    make_table(fresh, "a")
    body = updates(fresh, "?since=$")
    assert body["updates"] == []
    last = updates(fresh)["next"]
    assert body["next"] == last
    insert(fresh, "a", 1)
    body = updates(fresh, f"?since={body['next']}")
    assert [u["op"] for u in body["updates"]] == ["insert_rows"]


def test_dollar_on_an_empty_stream(fresh):
    assert updates(fresh, "?since=$") == {"updates": [], "next": "0-0"}
    assert updates(fresh) == {"updates": [], "next": "0-0"}


def test_entries_are_passed_through_verbatim(fresh, redis_server):
    make_table(fresh, "a")
    insert(fresh, "a", 1, "12.50")
    entries = xrange_raw(redis_server, fresh.prefix + "response_duck")
    assert len(entries) == 2
    r = fresh.get("/get_updates")
    assert r.text == '{"updates":[' + ",".join(e[1] for e in entries) + '],"next":"' + entries[-1][0] + '"}'


def test_limit_pages_through(fresh):
    make_table(fresh, "a")
    for i in range(1, 8):
        insert(fresh, "a", i)
    all_ids = [u["update_id"] for u in updates(fresh, "?limit=100")["updates"]]
    assert len(all_ids) == 8
    seen, since = [], "0"
    while True:
        body = updates(fresh, f"?since={since}&limit=3")
        if not body["updates"]:
            assert body["next"] == since
            break
        assert len(body["updates"]) <= 3
        seen += [u["update_id"] for u in body["updates"]]
        since = body["next"]
    assert seen == all_ids


def test_long_poll_returns_when_an_update_arrives(fresh):
    make_table(fresh, "a")
    since = updates(fresh)["next"]
    t = threading.Timer(0.5, insert, args=(fresh, "a", 1))
    t.start()
    t0 = time.monotonic()
    body = updates(fresh, f"?since={since}&wait_ms=10000")
    took = time.monotonic() - t0
    t.join()
    assert [u["op"] for u in body["updates"]] == ["insert_rows"]
    assert 0.3 < took < 5, took


def test_long_poll_times_out_empty(fresh):
    make_table(fresh, "a")
    since = updates(fresh)["next"]
    t0 = time.monotonic()
    body = updates(fresh, f"?since={since}&wait_ms=1500")
    took = time.monotonic() - t0
    assert body == {"updates": [], "next": since}
    assert 1.3 < took < 4, took


def test_long_poll_with_dollar(fresh):
    make_table(fresh, "a")
    t = threading.Timer(0.4, insert, args=(fresh, "a", 1))
    t.start()
    body = updates(fresh, "?since=$&wait_ms=10000")
    t.join()
    assert [u["op"] for u in body["updates"]] == ["insert_rows"]


def test_long_poll_does_not_wait_when_updates_are_there(fresh):
    make_table(fresh, "a")
    t0 = time.monotonic()
    body = updates(fresh, "?wait_ms=10000")
    assert len(body["updates"]) == 1 and time.monotonic() - t0 < 1


def test_table_filter(fresh):
    make_table(fresh, "a")
    make_table(fresh, "b")
    insert(fresh, "a", 1)
    insert(fresh, "b", 1)
    insert(fresh, "b", 2)
    insert(fresh, "a", 2)
    insert(fresh, "b", 3)
    everything = updates(fresh)
    assert len(everything["updates"]) == 7
    body = updates(fresh, "?table=a")
    assert [u["op"] for u in body["updates"]] == ["create_table", "insert_rows", "insert_rows"]
    assert all(u.get("table") == "a" or any(c.get("table") == "a" for c in u["changes"])
               for u in body["updates"])
    # next advances past the scanned entries of other tables.
    assert body["next"] == everything["next"]
    assert updates(fresh, f"?table=a&since={body['next']}") == {"updates": [], "next": body["next"]}
    # With a limit, next is the last match, so nothing after it is skipped.
    body = updates(fresh, "?table=b&limit=2")
    assert [u["op"] for u in body["updates"]] == ["create_table", "insert_rows"]
    rest = updates(fresh, f"?table=b&since={body['next']}")
    assert len(rest["updates"]) == 2
    assert updates(fresh, "?table=nosuch") == {"updates": [], "next": everything["next"]}


def test_table_filter_long_poll_skips_other_tables(fresh):
    make_table(fresh, "a")
    make_table(fresh, "b")
    since = updates(fresh)["next"]

    def writes():
        time.sleep(0.3)
        insert(fresh, "b", 1)
        time.sleep(0.3)
        insert(fresh, "a", 1)
    t = threading.Thread(target=writes)
    t.start()
    t0 = time.monotonic()
    body = updates(fresh, f"?since={since}&table=a&wait_ms=10000")
    took = time.monotonic() - t0
    t.join()
    assert [u["op"] for u in body["updates"]] == ["insert_rows"]
    assert body["updates"][0]["changes"][0]["table"] == "a" or body["updates"][0].get("table") == "a"
    assert 0.4 < took < 5, took


@pytest.mark.parametrize("query", [
    "since=abc", "since=123", "since=1-2-3", "since=-1-0", "since=1-", "since=$$",
    "limit=0", "limit=10001", "limit=x", "limit=-5",
    "wait_ms=30001", "wait_ms=-1", "wait_ms=x", "wait_ms=1.5",
    "table=Bad", "table=a-b", "table=id"])
def test_bad_parameters_400(server, query):
    problem(server.get(f"/get_updates?{query}"), 400, "bad_request")


def test_needs_a_key(server):
    problem(server.get("/get_updates", key="nope"), 401, "unauthorized")


def test_gone_when_cursor_is_older_than_retained(fresh, redis_server):
    make_table(fresh, "a")
    for i in range(1, 6):
        insert(fresh, "a", i)
    ids = [u["update_id"] for u in updates(fresh)["updates"]]
    assert len(ids) == 6
    key = fresh.prefix + "response_duck"
    assert redis_server.cli("XTRIM", key, "MAXLEN", "3") == "3"
    # Older than the first retained entry: 410 gone.
    body = problem(fresh.get(f"/get_updates?since={ids[0]}"), 410, "gone")
    assert "since=$" in body["detail"] and body["oldest"] == ids[3]
    problem(fresh.get(f"/get_updates?since={ids[1]}&wait_ms=5000"), 410, "gone")
    problem(fresh.get("/get_updates?since=1-0"), 410, "gone")
    # At or after the first retained entry: fine.
    body = updates(fresh, f"?since={ids[3]}")
    assert [u["update_id"] for u in body["updates"]] == ids[4:]
    # 0 still means "from the oldest retained", $ still works.
    assert [u["update_id"] for u in updates(fresh, "?since=0")["updates"]] == ids[3:]
    assert updates(fresh, "?since=$")["next"] == ids[-1]
    # Everything trimmed: a cursor before the last id is gone; the last id is not.
    redis_server.cli("XTRIM", key, "MAXLEN", "0")
    assert problem(fresh.get(f"/get_updates?since={ids[4]}"), 410, "gone")["oldest"] is None
    assert updates(fresh, f"?since={ids[5]}") == {"updates": [], "next": ids[5]}


def test_not_gone_without_trimming(fresh):
    make_table(fresh, "a")
    # A cursor older than anything in an untrimmed stream is just "from the start".
    body = updates(fresh, "?since=1-0")
    assert [u["op"] for u in body["updates"]] == ["create_table"]


def test_redis_down_is_503():
    redis = Redis().start()
    s = Server(redis.url).start()
    try:
        assert s.get("/get_updates").status_code == 200
        redis.stop()
        for q in ("", "?since=$", "?since=1-0", "?wait_ms=1000"):
            problem(s.get("/get_updates" + q), 503, "unavailable")
    finally:
        s.cleanup()
        redis.cleanup()
