"""GET /get_updates served from the in-memory ring of recent outcomes: the
answers equal the Redis path's byte for byte, long polls wait on the ring
(no XREAD per client), cursors the ring does not cover go to Redis, many
concurrent long polls each see every write, and shutdown is not held up.

Each test gets its own redis-server, so its command counters (INFO
commandstats) count only this test's server: its response reader (about two
XREADs a second while idle) and the requests."""
import threading
import time

import pytest
import requests

from conftest import Redis, Server
from helpers import problem


@pytest.fixture
def own():
    """(redis, server) of this test alone."""
    redis = Redis().start()
    s = Server(redis.url).start()
    yield redis, s
    s.cleanup()
    redis.cleanup()


def calls(redis, cmd):
    """How many times Redis ran cmd (INFO commandstats)."""
    for line in redis.cli("INFO", "commandstats").splitlines():
        if line.startswith(f"cmdstat_{cmd}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def make_table(s, name):
    r = s.post("/tables", {"name": name, "columns": [{"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text


def insert(s, table, row_id, v="1.00"):
    r = s.post(f"/tables/{table}/rows", {"id": row_id, "v": v})
    assert r.status_code == 201, r.text


def raw(s, query):
    r = s.get("/get_updates" + query)
    assert r.status_code == 200, r.text
    return r.text


def updates(s, query=""):
    r = s.get("/get_updates" + query)
    assert r.status_code == 200, r.text
    return r.json()


def restart(s):
    """A new process on the same database and stream: its ring starts empty
    at the stream's end, so every older cursor takes the Redis path."""
    assert s.stop() == 0
    s.start()


def queries(ids):
    """Every cursor, with and without limit and table filter."""
    out = []
    for since in ["0"] + ids:
        for extra in ("", "&limit=1", "&limit=3", "&table=a", "&table=b", "&table=b&limit=2",
                      "&table=nosuch"):
            out.append(f"?since={since}{extra}")
    return out


def test_ring_answers_equal_the_redis_path(own):
    _, s = own
    make_table(s, "a")
    make_table(s, "b")
    for i in range(1, 5):
        insert(s, "a", i)
        insert(s, "b", i)
    ids = [u["update_id"] for u in updates(s)["updates"]]
    assert len(ids) == 10
    qs = queries(ids)
    # since=0, and wait_ms=0 queries that find nothing (new) for them in the
    # ring, read Redis; the others are answered from the ring.
    from_ring = {q: raw(s, q) for q in qs}
    restart(s)
    from_redis = {q: raw(s, q) for q in qs}
    for q in qs:
        assert from_ring[q] == from_redis[q], q


def test_ring_hit_without_xread_and_verbatim(own):
    redis, s = own
    make_table(s, "a")
    insert(s, "a", 1, "12.50")
    first = updates(s)["updates"][0]["update_id"]
    # Byte for byte what the manager published.
    entries = redis.cli("XRANGE", s.prefix + "response_duck", "-", "+").splitlines()
    body = updates(s, f"?since={first}")
    assert [u["op"] for u in body["updates"]] == ["insert_rows"]
    assert entries[-2] == "mac" and entries[-3].startswith("{") and raw(s, f"?since={first}") == \
        '{"updates":[' + entries[-3] + '],"next":"' + body["next"] + '"}'
    before = calls(redis, "xread")
    for _ in range(50):
        assert updates(s, f"?since={first}")["next"] == body["next"]
    assert calls(redis, "xread") - before < 10


def test_cursor_older_than_the_ring_reads_redis(own):
    redis, s = own
    make_table(s, "a")
    for i in range(1, 4):
        insert(s, "a", i)
    ids = [u["update_id"] for u in updates(s)["updates"]]
    restart(s)
    before = calls(redis, "xread")
    body = updates(s, f"?since={ids[0]}")
    assert [u["update_id"] for u in body["updates"]] == ids[1:]
    assert calls(redis, "xread") > before
    # The cursor the new reader started after is covered by the ring: a long
    # poll on it waits there and is woken by the next write.
    t = threading.Timer(0.4, insert, args=(s, "a", 9))
    t.start()
    body = updates(s, f"?since={ids[-1]}&wait_ms=10000")
    t.join()
    assert [u["op"] for u in body["updates"]] == ["insert_rows"]


def test_long_poll_woken_by_a_write_waits_in_memory(own):
    redis, s = own
    make_table(s, "a")
    since = updates(s)["next"]
    before = calls(redis, "xread")
    t = threading.Timer(1.0, insert, args=(s, "a", 1))
    t.start()
    t0 = time.monotonic()
    body = updates(s, f"?since={since}&wait_ms=10000")
    took = time.monotonic() - t0
    t.join()
    assert [u["op"] for u in body["updates"]] == ["insert_rows"]
    assert 0.8 < took < 5, took
    # The reader's own XREADs (BLOCK 500: about two a second) and nothing
    # from the waiting request.
    assert calls(redis, "xread") - before <= 8


def test_sync_write_is_visible_at_once(own):
    _, s = own
    make_table(s, "a")
    since = updates(s)["next"]
    for i in range(1, 21):
        insert(s, "a", i)
        body = updates(s, f"?since={since}&wait_ms=0")
        assert len(body["updates"]) == 1, body
        since = body["next"]


def test_async_write_then_poll_at_once(own):
    _, s = own
    make_table(s, "a")
    since = updates(s)["next"]
    r = s.post("/tables/a/rows?async=true", {"id": 1, "v": "2.00"})
    assert r.status_code == 202, r.text
    sid = r.json()["stream_id"]
    deadline = time.monotonic() + 10
    seen = []
    while time.monotonic() < deadline and sid not in seen:
        body = updates(s, f"?since={since}&wait_ms=0")
        seen += [u["update_id"] for u in body["updates"]]
        since = body["next"]
    assert seen == [sid]


def test_table_filter_via_ring(own):
    _, s = own
    make_table(s, "a")
    make_table(s, "b")
    start = updates(s)["next"]
    for i in range(1, 4):
        insert(s, "b", i)
    insert(s, "a", 1)
    everything = updates(s, f"?since={start}")
    assert len(everything["updates"]) == 4
    body = updates(s, f"?since={start}&table=a")
    assert [u["op"] for u in body["updates"]] == ["insert_rows"]
    assert body["next"] == everything["next"]
    # Nothing for the filter: next still moves past what was scanned.
    body = updates(s, f"?since={start}&table=nosuch")
    assert body == {"updates": [], "next": everything["next"]}
    # A filtered long poll skips writes to other tables and waits on.
    since = everything["next"]

    def writes():
        time.sleep(0.3)
        insert(s, "b", 10)
        time.sleep(0.3)
        insert(s, "a", 10)
    t = threading.Thread(target=writes)
    t.start()
    t0 = time.monotonic()
    body = updates(s, f"?since={since}&table=a&wait_ms=10000")
    took = time.monotonic() - t0
    t.join()
    assert [u["changes"][0]["row_id"] for u in body["updates"]] == [10]
    assert 0.4 < took < 5, took


def test_limit_and_next_page_through_the_ring(own):
    _, s = own
    make_table(s, "a")
    start = updates(s)["next"]
    for i in range(1, 11):
        insert(s, "a", i)
    all_ids = [u["update_id"] for u in updates(s, f"?since={start}")["updates"]]
    assert len(all_ids) == 10
    seen, since = [], start
    for _ in range(20):
        if since == all_ids[-1]:
            break
        # wait_ms > 0 so the ring answers at once (never the Redis path).
        body = updates(s, f"?since={since}&limit=3&wait_ms=5000")
        assert 1 <= len(body["updates"]) <= 3
        seen += [u["update_id"] for u in body["updates"]]
        assert body["next"] == seen[-1]
        since = body["next"]
    assert seen == all_ids
    # Filtered with a limit: next is the last match.
    make_table(s, "b")
    insert(s, "b", 1)
    insert(s, "a", 11)
    insert(s, "b", 2)
    body = updates(s, f"?since={since}&table=b&limit=1")
    assert len(body["updates"]) == 1
    assert body["next"] == body["updates"][0]["update_id"]


def test_many_concurrent_long_polls_see_every_write(own):
    _, s = own
    make_table(s, "a")
    start = updates(s)["next"]
    clients, writes = 200, 15
    got = [[] for _ in range(clients)]
    errors = []
    ready = threading.Barrier(clients + 1)

    def poll(i):
        sess = requests.Session()
        sess.headers.update(s.headers())
        since = start
        deadline = time.monotonic() + 60
        try:
            ready.wait(30)
            while len(got[i]) < writes and time.monotonic() < deadline:
                r = sess.get(f"{s.base}/get_updates?since={since}&wait_ms=5000", timeout=20)
                if r.status_code != 200:
                    errors.append(r.status_code)
                    return
                body = r.json()
                got[i] += [u["update_id"] for u in body["updates"]]
                since = body["next"]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        finally:
            sess.close()

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    ready.wait(30)
    time.sleep(0.5)  # most polls are now waiting on the ring
    for i in range(1, writes + 1):
        insert(s, "a", i)
    ids = [u["update_id"] for u in updates(s, f"?since={start}")["updates"]]
    assert len(ids) == writes
    for t in threads:
        t.join(90)
    assert not errors, errors[:5]
    assert all(g == ids for g in got), [len(g) for g in got if g != ids][:10]


def xid(text):
    ms, seq = text.split("-")
    return int(ms), int(seq)


def test_one_wake_up_answers_each_poll_its_own_page(own):
    """Polls parked at one cursor with different filters, limits and key
    scopes are woken by the same batches; the front end shares a page only
    among polls that ask the same thing (same cursor, table, scope and
    limit), so each still gets exactly its own: what a fresh request with
    its parameters answers, or the start of it."""
    _, s = own
    make_table(s, "a")
    make_table(s, "b")
    r = s.post("/admin/keys", {"name": "ring-scope-b", "role": "read", "tables": ["b"]})
    assert r.status_code == 201, r.text
    scoped = r.json()["key"]
    start = updates(s)["next"]
    kinds = [("", None), ("&limit=1", None), ("&table=a", None), ("&table=b", None),
             ("&table=a&limit=1", None), ("", scoped), ("&limit=1", scoped)]
    per_kind = 6
    got = {}
    errors = []
    ready = threading.Barrier(len(kinds) * per_kind + 1)

    def poll(i, extra, key):
        try:
            ready.wait(30)
            r = requests.get(f"{s.base}/get_updates?since={start}&wait_ms=8000{extra}",
                             headers=s.headers(key), timeout=20)
            assert r.status_code == 200, r.text
            got[i] = (extra, key, r.json())
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = []
    for k, (extra, key) in enumerate(kinds):
        for j in range(per_kind):
            threads.append(threading.Thread(target=poll, args=(k * per_kind + j, extra, key)))
    for t in threads:
        t.start()
    ready.wait(30)
    time.sleep(0.7)  # every poll is parked at `start`
    # Asynchronous writes, so that one batch of the reader may hold several.
    for i, t in enumerate(["b", "a", "b", "a", "b"]):
        r = s.post(f"/tables/{t}/rows?async=true", {"id": 100 + i, "v": "1.00"})
        assert r.status_code in (201, 202), r.text
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    assert len(got) == len(threads)
    for extra, key, body in got.values():
        fresh = requests.get(f"{s.base}/get_updates?since={start}{extra}", headers=s.headers(key),
                             timeout=15).json()["updates"]
        ups = body["updates"]
        assert ups, (extra, key, body)
        assert ups == fresh[:len(ups)], (extra, key is not None, ups, fresh)
        # next is the last entry scanned: the last update, or an entry after
        # it that carries none (the stream may hold such entries).
        assert xid(body["next"]) >= xid(ups[-1]["update_id"]), (extra, body)
        if "limit=1" in extra:
            assert len(ups) == 1, (extra, ups)
        want = "a" if "table=a" in extra else "b" if ("table=b" in extra or key) else None
        if want:
            assert all(u["table"] == want for u in ups), (extra, key is not None, ups)


def long_polls(s, where):
    """duckgrid_long_polls_total{started=where}."""
    want = f'duckgrid_long_polls_total{{started="{where}"}} '
    for line in s.get("/metrics").text.splitlines():
        if line.startswith(want):
            return int(line.split()[1])
    raise AssertionError(f"no {want} in /metrics")


def wait_for(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_new_long_polls_park_on_their_loop(own):
    """A poll again with the `next` it was given (a cursor the ring covers,
    wait_ms > 0, a key the cache knows) is parked by its HTTP loop: no
    worker, one XINFO shared by the polls of a moment for the 410 check.
    Each still gets the write, and a cursor trimmed away is still 410."""
    redis, s = own
    make_table(s, "a")
    start = updates(s)["next"]  # the key is in the cache from here on
    loop0, worker0 = long_polls(s, "loop"), long_polls(s, "worker")
    xinfo0 = calls(redis, "xinfo|stream") or calls(redis, "xinfo")
    n = 40
    got, errors = {}, []

    def poll(i):
        try:
            r = requests.get(f"{s.base}/get_updates?since={start}&wait_ms=15000", headers=s.headers(),
                             timeout=30)
            assert r.status_code == 200, r.text
            got[i] = r.json()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=poll, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    assert wait_for(lambda: long_polls(s, "loop") >= loop0 + n), (long_polls(s, "loop"), loop0)
    assert long_polls(s, "worker") == worker0
    xinfos = (calls(redis, "xinfo|stream") or calls(redis, "xinfo")) - xinfo0
    assert 1 <= xinfos <= n, xinfos
    time.sleep(0.3)
    assert not got and not errors, (got, errors)  # parked: nothing to answer yet
    insert(s, "a", 1)
    for t in threads:
        t.join(30)
    assert not errors, errors[:5]
    want = [u["update_id"] for u in updates(s, f"?since={start}")["updates"]]
    assert len(want) == 1
    assert all([u["update_id"] for u in b["updates"]] == want and b["next"] == want[0] for b in got.values())
    assert len(got) == n
    # Trimmed by hand past the cursor: the loop's check answers 410.
    insert(s, "a", 2)
    assert redis.cli("XTRIM", s.prefix + "response_duck", "MAXLEN", "1") == "2"
    loop1 = long_polls(s, "loop")
    problem(s.get(f"/get_updates?since={start}&wait_ms=5000"), 410, "gone")
    assert long_polls(s, "loop") == loop1 + 1
    # A poll at the newest id is parked, then answered empty at its deadline.
    last = updates(s, "?since=0")["next"]
    t0 = time.monotonic()
    assert updates(s, f"?since={last}&wait_ms=300") == {"updates": [], "next": last}
    assert 0.25 < time.monotonic() - t0 < 5
    assert long_polls(s, "loop") == loop1 + 2


def test_long_poll_parked_on_the_loop_when_redis_is_gone(own):
    """The loop's retention check cannot be made: 503, as on a worker."""
    redis, s = own
    make_table(s, "a")
    start = updates(s)["next"]
    loop0 = long_polls(s, "loop")
    redis.stop()
    problem(s.get(f"/get_updates?since={start}&wait_ms=3000"), 503, "unavailable")
    assert long_polls(s, "loop") == loop0 + 1


def test_shutdown_is_not_held_up_by_long_polls(own):
    _, s = own
    make_table(s, "a")
    since = updates(s)["next"]
    results = []

    def poll():
        try:
            results.append(requests.get(f"{s.base}/get_updates?since={since}&wait_ms=30000",
                                        headers=s.headers(), timeout=40).status_code)
        except requests.RequestException as e:
            results.append(repr(e))
    threads = [threading.Thread(target=poll) for _ in range(20)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    assert s.stop() == 0
    assert time.monotonic() - t0 < 5
    for t in threads:
        t.join(10)
    assert len(results) == 20
