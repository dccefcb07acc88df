"""The stream is the log (issue 12): outcomes are published before DuckDB
persists them, apply is deterministic, recovery replays the unpersisted
tail, and reads stay consistent.

test_kill_9_replay_is_byte_identical: a load of async writes (adds on
leaves, spreads on parents, inserts without ids, deletes, retries with the
same request_id) while the server is killed with SIGKILL at random moments,
several times, restarting after each kill. Afterwards the request log is
copied, ids and all, to a fresh prefix and applied from an empty database by
a second server: every outcome of the crashed run must equal the reference
run's byte for byte, and every cell must be equal.
"""
import random
import signal
import threading
import time

import requests

from conftest import wait_until
from helpers import Resp, all_rows, check_invariant, outcomes_in

COLS = [{"name": "v", "type": "number", "scale": 2}, {"name": "name", "type": "text"}]
MIDS = [10, 20, 30]
LEAVES = [m * 10 + k for m in MIDS for k in range(1, 5)]
KILLS = 4


def _tree(s):
    assert s.post("/tables", {"name": "wb", "columns": COLS}).status_code == 201
    rows = [{"id": 1, "name": "root"}] + [{"id": m, "parent_id": 1} for m in MIDS]
    rows += [{"id": leaf, "parent_id": leaf // 10, "v": leaf % 7} for leaf in LEAVES]
    r = s.post("/tables/wb/rows", {"rows": rows})
    assert r.status_code == 201, r.text


def _load(s, stop, seed, sent):
    """Async writes until stop is set; a request whose fate is unknown is
    retried with the same request_id (after the restart)."""
    rnd = random.Random(seed)
    sess = requests.Session()
    n = 0
    pending = []
    while not stop.is_set():
        if pending:
            rid, body = pending.pop()
        else:
            n += 1
            rid = f"wb-{seed}-{n}"
            k = rnd.random()
            if k < 0.5:
                body = ("/update_cell", {"table": "wb", "row_id": rnd.choice(LEAVES), "column": "v",
                                         "value": rnd.randint(1, 9), "mode": "add"})
            elif k < 0.7:
                body = ("/update_cell", {"table": "wb", "row_id": rnd.choice(MIDS + [1]), "column": "v",
                                         "value": f"{rnd.randint(0, 5000)}.{rnd.randint(0, 99):02d}"})
            elif k < 0.9:
                body = ("/tables/wb/rows", {"parent_id": rnd.choice(LEAVES + MIDS), "v": rnd.randint(0, 50),
                                            "name": f"n{n}"})
            else:
                body = ("/update_cell", {"table": "wb", "row_id": rnd.choice(LEAVES), "column": "name",
                                         "value": f"t{n}"})
        path, payload = body
        try:
            r = sess.post(s.base + path + "?async=true", json=dict(payload, request_id=rid),
                          headers=s.headers(), timeout=5)
            if r.status_code == 202:
                sent[rid] = 1
                continue
            if r.status_code != 503:
                # a 404 (parent deleted...) is an answer too
                sent[rid] = 1
                continue
        except (requests.ConnectionError, requests.Timeout):
            sess = requests.Session()
        pending.append((rid, body))
        time.sleep(0.05)


def test_kill_9_replay_is_byte_identical(make_server, redis_server):
    t0 = time.monotonic()
    rnd = random.Random(12)
    s = make_server(env={"DUCKGRID_PERSIST_INTERVAL_MS": "30"}).start()
    _tree(s)
    sent = {}
    for round_ in range(KILLS):
        stop = threading.Event()
        ths = [threading.Thread(target=_load, args=(s, stop, round_ * 10 + k, sent)) for k in range(3)]
        for th in ths:
            th.start()
        time.sleep(rnd.uniform(0.4, 1.5))
        # A loaded machine (ASan, a busy CI) queues slowly: each round kills
        # only after enough requests for the replay to mean something.
        wait_until(lambda: len(sent) >= 40 * (round_ + 1), 20)
        s.stop(signal.SIGKILL)
        time.sleep(0.2)
        s.start()
        time.sleep(0.3)
        stop.set()
        for th in ths:
            th.join(60)
    # everything queued gets its outcome
    with Resp(redis_server) as rr:
        assert wait_until(lambda: int(dict(zip(*[iter(rr.cmd("XINFO", "GROUPS", s.prefix + "request_duck")[0])] * 2))
                                        .get("pending", 1)) == 0 and
                          int(dict(zip(*[iter(rr.cmd("XINFO", "GROUPS", s.prefix + "request_duck")[0])] * 2))
                              .get("lag", 1) or 0) == 0, 30)
        log = []
        start = "-"
        while True:
            page = rr.cmd("XRANGE", s.prefix + "request_duck", start, "+", "COUNT", 2000)
            if not page:
                break
            log.extend(page)
            ms, seq = page[-1][0].split("-")
            start = f"{ms}-{int(seq) + 1}"
    assert len(log) > 100
    got = {}
    with Resp(redis_server) as rr:
        start = "-"
        while True:
            page = rr.cmd("XRANGE", s.prefix + "response_duck", start, "+", "COUNT", 2000)
            if not page:
                break
            for eid, fields in page:
                got[eid] = dict(zip(fields[::2], fields[1::2]))["res"]
            ms, seq = page[-1][0].split("-")
            start = f"{ms}-{int(seq) + 1}"
    # one outcome per request, none for a repeated request_id
    ids = {eid for eid, _ in log}
    assert set(got) <= ids
    check_invariant(s, "wb", ["v"])
    rows_a = all_rows(s, "wb")

    # The reference: the same log, ids and all, applied from nothing, by a
    # node of the same deployment (the same pepper, so the entries' MACs hold).
    ref = make_server(env={"DUCKGRID_KEY_PEPPER_FILE": s.db + ".pepper"})
    with Resp(redis_server) as rr:
        for eid, fields in log:
            rr.cmd("XADD", ref.prefix + "request_duck", eid, *fields)
    ref.start()
    assert wait_until(lambda: len(outcomes_in(redis_server, ref)) >= len(got), 60)
    want = {}
    with Resp(redis_server) as rr:
        for eid, fields in rr.cmd("XRANGE", ref.prefix + "response_duck", "-", "+"):
            want[eid] = dict(zip(fields[::2], fields[1::2]))["res"]
    assert set(want) == set(got), (len(want), len(got), sorted(set(want) ^ set(got))[:5])
    diff = [eid for eid in want if want[eid] != got[eid]]
    assert not diff, f"{len(diff)} outcomes differ, e.g. {diff[0]}:\n{got[diff[0]][:600]}\n{want[diff[0]][:600]}"
    r = ref.get("/tables/wb/rows?limit=1", key=ref.admin_key)
    rows_b = all_rows(ref, "wb")
    assert rows_a == rows_b
    assert r.headers.get("X-Duckgrid-Applied")
    print(f"kill -9 x{KILLS}: {len(log)} requests, {len(got)} outcomes, {len(rows_a)} rows; "
          f"{time.monotonic() - t0:.1f}s")


def test_reads_reflect_answered_writes_under_load(make_server):
    """Seed test 5 under load: right after a sync write is answered, the
    view and the rows show it, while other clients keep writing."""
    s = make_server(env={"DUCKGRID_PERSIST_INTERVAL_MS": "1000"}).start()
    _tree(s)
    r = s.post("/views", {"name": "wb_sum", "sql": "SELECT sum(v) AS total FROM wb WHERE parent_id IS NOT NULL "
                                                   "AND id >= 100"})
    assert r.status_code == 201, r.text
    # a row of our own: the load writes other rows' names
    assert s.post("/tables/wb/rows", {"id": 9999, "parent_id": 1}).status_code == 201
    stop = threading.Event()
    sent = {}
    ths = [threading.Thread(target=_load, args=(s, stop, 900 + k, sent)) for k in range(2)]
    for th in ths:
        th.start()
    try:
        for i in range(40):
            leaf = 9999
            r = s.post("/update_cell", {"table": "wb", "row_id": leaf, "column": "name", "value": f"mine{i}"})
            assert r.status_code == 200, r.text
            uid = r.json()["update_id"]
            g = s.get(f"/tables/wb/rows/{leaf}")
            assert g.status_code == 200 and g.json()["name"] == f"mine{i}", (i, g.text)
            ms, seq = (int(x) for x in g.headers["X-Duckgrid-Applied"].split("-"))
            ums, useq = (int(x) for x in uid.split("-"))
            assert (ms, seq) >= (ums, useq)
            v = s.get("/views/wb_sum")
            assert v.status_code == 200 and "X-Duckgrid-Applied" in v.headers
    finally:
        stop.set()
        for th in ths:
            th.join(30)


def test_read_after_write_while_the_manager_is_paused(make_server):
    """The manager pauses (a test hook) after Redis took a batch's outcomes,
    as a loaded machine may deschedule it there: this process's reader
    already answers the write from Redis. A read sent after that answer
    must still wait for the write (CI once read a stale row, a missing view
    and a lock icon that stayed on)."""
    s = make_server(env={"DUCKGRID_TEST_HOOKS": "1", "DUCKGRID_TEST_PUBLISH_PAUSE_MS": "300",
                         "DUCKGRID_PERSIST_INTERVAL_MS": "1000"}).start()
    _tree(s)
    for i in range(3):
        r = s.post("/update_cell", {"table": "wb", "row_id": 101, "column": "name", "value": f"paused{i}"})
        assert r.status_code == 200, r.text
        g = s.get("/tables/wb/rows/101")
        assert g.status_code == 200 and g.json()["name"] == f"paused{i}", (i, g.text)
    r = s.post("/views", {"name": "wb_paused", "sql": "SELECT count(*) AS n FROM wb"})
    assert r.status_code == 201, r.text
    v = s.get("/views/wb_paused")
    assert v.status_code == 200, v.text


def test_retry_while_its_first_outcome_is_being_published(make_server):
    """A sync retry of an async write whose outcome the manager is
    publishing (the published mark moved, the XADD not yet done: a test hook
    pauses there) gets the first request's outcome, not a bare "duplicate"
    (CI once answered "duplicate" in test_same_request_id_async_then_sync)."""
    s = make_server(env={"DUCKGRID_TEST_HOOKS": "1", "DUCKGRID_TEST_PREPUBLISH_PAUSE_MS": "400"}).start()
    _tree(s)
    body = {"table": "wb", "row_id": 101, "column": "name", "value": "first", "request_id": "wb-prepub-1"}
    a = s.post("/update_cell?async=true", body)
    assert a.status_code == 202, a.text
    time.sleep(0.15)  # the manager has applied it and sits in the pause
    r = s.post("/update_cell", body)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "applied" and r.json()["stream_id"] == a.json()["stream_id"], r.text


def test_read_after_async_write_while_the_manager_is_slow(make_server):
    """An async write answered 202 is in the next read on the node that
    answered it, though the manager (a test hook) takes new requests only
    200 ms after they arrive, as a loaded machine may delay it. CI once read
    the row as it was before an async write (test_history)."""
    s = make_server(env={"DUCKGRID_TEST_HOOKS": "1", "DUCKGRID_TEST_CLAIM_DELAY_MS": "200"}).start()
    _tree(s)
    for i in range(3):
        r = s.post("/update_cell?async=true", {"table": "wb", "row_id": 101, "column": "name", "value": f"async{i}"})
        assert r.status_code == 202, r.text
        g = s.get("/tables/wb/rows/101")
        assert g.status_code == 200 and g.json()["name"] == f"async{i}", (i, g.text)
        xid = lambda t: tuple(map(int, t.split("-")))  # noqa: E731
        assert xid(g.headers["X-Duckgrid-Applied"]) >= xid(r.json()["stream_id"])


def test_min_update(server):
    r = server.post("/tables", {"name": "mu", "columns": COLS})
    assert r.status_code == 201
    r = server.post("/tables/mu/rows", {"id": 1, "v": 1})
    assert r.status_code == 201
    r = server.post("/update_cell", {"table": "mu", "row_id": 1, "column": "v", "value": 5})
    uid = r.json()["update_id"]
    g = server.get(f"/tables/mu/rows/1?min_update={uid}")
    assert g.status_code == 200 and g.json()["v"] == 5
    ms, seq = uid.split("-")
    future = f"{int(ms) + 3600_000}-0"
    t = time.monotonic()
    g = server.get(f"/tables/mu/rows/1?min_update={future}&wait_ms=300")
    assert g.status_code == 504, g.text
    assert time.monotonic() - t >= 0.25
    assert server.get("/tables/mu/rows/1?min_update=banana").status_code == 400
    assert server.get(f"/tables/mu?min_update={uid}&wait_ms=99999999").status_code == 400


def test_idempotency_is_per_caller(server):
    r = server.post("/admin/keys", {"name": "w1", "role": "write"})
    k1 = r.json()["key"]
    r = server.post("/admin/keys", {"name": "w2", "role": "write"})
    k2 = r.json()["key"]
    assert server.post("/tables", {"name": "ic", "columns": COLS}).status_code == 201
    assert server.post("/tables/ic/rows", {"id": 1, "v": 0}).status_code == 201
    body = {"table": "ic", "row_id": 1, "column": "v", "value": 1, "mode": "add", "request_id": "same-id"}
    a = server.post("/update_cell", body, key=k1)
    b = server.post("/update_cell", body, key=k2)
    a2 = server.post("/update_cell", body, key=k1)
    assert a.status_code == b.status_code == a2.status_code == 200, (a.text, b.text, a2.text)
    assert a.json()["update_id"] != b.json()["update_id"]          # another caller: another request
    assert a2.json()["update_id"] == a.json()["update_id"]         # the same caller: the first outcome
    assert server.get("/tables/ic/rows/1").json()["v"] == 2


def test_compact_outcome_and_paged_changes(make_server):
    s = make_server(env={"DUCKGRID_OUTCOME_CHANGES_MAX": "50", "DUCKGRID_REQUEST_CHANGES_MAX": "250"}).start()
    assert s.post("/tables", {"name": "big", "columns": COLS}).status_code == 201
    rows = [{"id": 1}] + [{"id": 100 + i, "parent_id": 1, "v": 1} for i in range(120)]
    assert s.post("/tables/big/rows", {"rows": rows}).status_code == 201
    r = s.post("/update_cell", {"table": "big", "row_id": 1, "column": "v", "value": 240})
    assert r.status_code == 200, r.text
    o = r.json()
    assert o["changes"] == [] and o["changes_truncated"] is True and o["changes_total"] == 121
    got, off = [], 0
    while off is not None:
        p = s.get(f"/updates/{o['update_id']}/changes?offset={off}&limit=40")
        assert p.status_code == 200, p.text
        body = p.json()
        assert body["changes_total"] == 121
        got += body["changes"]
        off = body["next"]
    assert len(got) == 121
    assert [c["row_id"] for c in got] == sorted(c["row_id"] for c in got)
    assert all(c["new"] == 2 and c["old"] == 1 for c in got if c["row_id"] != 1)
    assert [c for c in got if c["row_id"] == 1] == [{"table": "big", "row_id": 1, "column": "v",
                                                      "old": 120, "new": 240}]
    # small outcomes list their changes as before
    r = s.post("/update_cell", {"table": "big", "row_id": 100, "column": "v", "value": 3})
    assert len(r.json()["changes"]) == 2 and "changes_truncated" not in r.json()
    assert s.get("/updates/banana/changes").status_code == 400
    assert s.get("/updates/1-0/changes").status_code == 404
    # over the request cap: 400, nothing applied
    for k in range(2):                               # ~200 changes each, under the cap
        more = [{"id": 1000 + k * 100 + i, "parent_id": 1, "v": 1} for i in range(100)]
        assert s.post("/tables/big/rows", {"rows": more}).status_code == 201
    before = s.get("/tables/big/rows/1").json()["v"]
    r = s.post("/update_cell", {"table": "big", "row_id": 1, "column": "v", "value": 1})
    assert r.status_code == 400, r.text
    assert "DUCKGRID_REQUEST_CHANGES_MAX" in r.json()["detail"]
    assert s.get("/tables/big/rows/1").json()["v"] == before
    # many spreads in one request: the work stops at the first over the cap
    # (the detail names the cap, not a total of 40 x 321 changes computed
    # first), and nothing of the request stays
    ups = [{"table": "big", "row_id": 1, "column": "v", "value": 1000 + k} for k in range(40)]
    r = s.post("/update_cells", {"updates": ups})
    assert r.status_code == 400, r.text
    assert "more than the 250 cells allowed" in r.json()["detail"], r.text
    assert s.get("/tables/big/rows/1").json()["v"] == before


def test_reads_right_after_a_restart_see_every_answered_write(make_server):
    """Killed with answered writes only in memory, restarted with a manager
    that starts late (a test hook): HTTP answers at once, and its first
    read already holds every write answered before the kill -- it waits
    for the new manager to catch up with response_duck."""
    s = make_server(env={"DUCKGRID_TEST_HOOKS": "1", "DUCKGRID_TEST_MANAGER_START_DELAY_MS": "1500",
                         "DUCKGRID_PERSIST_INTERVAL_MS": "60000"}).start()
    _tree(s)
    assert s.get("/tables/wb/rows/101").status_code == 200  # the tree is in DuckDB
    for i in range(10):
        r = s.post("/update_cell", {"table": "wb", "row_id": 101, "column": "name", "value": f"w{i}"})
        assert r.status_code == 200, r.text
    s.stop(signal.SIGKILL)
    s.start(wait=False)
    first = []

    def answered():
        try:
            g = requests.get(s.base + "/tables/wb/rows/101", headers=s.headers(), timeout=15)
        except requests.ConnectionError:
            return False
        first.append(g)
        return True
    assert wait_until(answered, 20, 0.01), s.logs()
    g = first[0]
    assert g.status_code == 200 and g.json()["name"] == "w9", g.text


def test_two_callers_with_one_name_and_one_request_id_each_get_their_own_outcome():
    """Key names are not unique: two keys named alike, sending the same
    request_id at the same time, are two callers with two requests. Each sync
    answer must be its own request's outcome (waiters were keyed by the user
    name: both got the first outcome). Redis is paused so that both wait."""
    from conftest import Redis, Server
    redis = Redis().start()
    s = Server(redis.url, env={"DUCKGRID_REDIS_TIMEOUT_MS": "20000", "DUCKGRID_LEASE_MS": "4000"}).start()
    try:
        keys = [s.post("/admin/keys", {"name": "twin", "role": "write"}).json()["key"] for _ in range(2)]
        assert s.post("/tables", {"name": "tw", "columns": COLS}).status_code == 201
        assert s.post("/tables/tw/rows", {"id": 1, "v": 0}).status_code == 201
        for round_ in range(3):
            body = {"table": "tw", "row_id": 1, "column": "v", "value": 1, "mode": "add",
                    "request_id": f"twin-{round_}"}
            answers = [None, None]

            def send(i):
                answers[i] = s.post("/update_cell", body, key=keys[i])
            redis.proc.send_signal(signal.SIGSTOP)
            try:
                threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
                for t in threads:
                    t.start()
                time.sleep(0.5)  # both are waiting for Redis
            finally:
                redis.proc.send_signal(signal.SIGCONT)
            for t in threads:
                t.join(timeout=30)
            assert all(a is not None and a.status_code == 200 for a in answers), answers
            a, b = (x.json() for x in answers)
            assert a["update_id"] != b["update_id"], (a, b)
            assert a["caller_tag"] != b["caller_tag"] and len(a["caller_tag"]) == 16, (a, b)
            # each answer is the outcome published for that caller's request
            for x in (a, b):
                ups = s.get(f"/get_updates?since=0&limit=1000").json()["updates"]
                mine = [u for u in ups if u["update_id"] == x["update_id"]]
                assert mine and mine[0]["caller_tag"] == x["caller_tag"], (x, mine)
        assert s.get("/tables/tw/rows/1").json()["v"] == 6
    finally:
        s.cleanup()
        redis.cleanup()
