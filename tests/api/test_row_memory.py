"""GET /tables/{t}/rows/{id} answered from the manager's state in memory
(issue 13: an authenticated row read without a DuckDB statement).

The memory answer must be the DuckDB answer, byte for byte, whatever the
rows went through; it must reflect every answered write (sync and this
node's async ones) without making the persister flush; and whatever the
memory cannot answer (a ?min_update ahead, a table made again) must still
be answered as before.
"""
import random
import re
import time

import requests

from conftest import wait_until
from helpers import new_key


def scrape(s):
    r = s.get("/metrics")
    assert r.status_code == 200, r.text
    v = {}
    for line in r.text.splitlines():
        m = re.match(r"^(\S+) (\S+)$", line)
        if m and not line.startswith("#"):
            v[m.group(1)] = float(m.group(2))
    return v


MEM = 'duckgrid_row_reads_total{source="memory"}'
DDB = 'duckgrid_row_reads_total{source="duckdb"}'
PMEM = 'duckgrid_row_pages_total{source="memory"}'
PDDB = 'duckgrid_row_pages_total{source="duckdb"}'
TX = "duckgrid_duckdb_transaction_seconds_count"
COLS = [{"name": "label", "type": "text"}, {"name": "amount", "type": "number", "scale": 2},
        {"name": "units", "type": "number", "scale": 0}, {"name": "note", "type": "text"},
        {"name": "rate", "type": "number", "scale": 6}]


def _delete(s, path):
    return requests.delete(s.base + path, headers=s.headers(), timeout=15)


def _patch(s, path, body):
    return requests.patch(s.base + path, json=body, headers=s.headers(), timeout=15)


def _duckdb_row(s, table, rid):
    """The same row as a page of one, which is read from DuckDB."""
    page = s.get(f"/tables/{table}/rows?after={rid - 1}&limit=1&children=true")
    assert page.status_code == 200, page.text
    return page


def test_memory_answer_is_the_duckdb_answer(server):
    s = server
    assert s.post("/tables", {"name": "rm", "columns": COLS}).status_code == 201
    rows = [{"id": 1, "label": "Brand"}]
    rows += [{"id": 10 + k, "parent_id": 1, "label": f"family {k}"} for k in range(3)]
    rows += [{"id": 100 + 10 * k + j, "parent_id": 10 + k, "label": f"p{k}{j}", "amount": f"{j}.25",
              "units": j, "rate": "0.000001"} for k in range(3) for j in range(4)]
    r = s.post("/tables/rm/rows", {"rows": rows})
    assert r.status_code == 201, r.text
    rnd = random.Random(7)
    ids = [row["id"] for row in rows]
    texts = [None, "", "plain", "quote \" and \\ backslash", "naïve ünïcödé ✓", "tab\tnew\nline"]
    for i in range(60):
        op = rnd.randrange(6)
        rid = rnd.choice(ids)
        if op == 0:
            body = {"table": "rm", "row_id": rid, "column": "label", "value": rnd.choice(texts)}
        elif op == 1:
            body = {"table": "rm", "row_id": rid, "column": "note", "value": rnd.choice(texts)}
        elif op == 2:  # a leaf rolls up, a parent spreads
            body = {"table": "rm", "row_id": rid, "column": "amount", "value": f"{rnd.randrange(-500, 5000)}.{rnd.randrange(100):02d}"}
        elif op == 3:
            body = {"table": "rm", "row_id": rid, "column": "units", "value": rnd.randrange(0, 1000)}
        elif op == 4:
            body = {"table": "rm", "row_id": rid, "column": "rate", "value": f"0.{rnd.randrange(10**6):06d}"}
        else:
            new = 1000 + i
            r = s.post("/tables/rm/rows", {"id": new, "parent_id": rnd.choice([10, 11, 12]), "label": f"new{i}",
                                           "amount": "1.50"})
            assert r.status_code == 201, r.text
            ids.append(new)
            continue
        r = s.post("/update_cell", body)
        assert r.status_code in (200, 409), r.text
    # A delete and a move change parents and child counts.
    assert _delete(s, "/tables/rm/rows/103").status_code == 204
    r = _patch(s, "/tables/rm/rows/112", {"parent_id": 10, "label": "moved"})
    assert r.status_code == 200, r.text
    r = _patch(s, "/tables/rm/rows/12", {"parent_id": 10})
    assert r.status_code == 200, r.text
    before = scrape(s)
    n = reads = 0
    for rid in sorted(set(ids)):
        one = s.get(f"/tables/rm/rows/{rid}")
        reads += 1
        if one.status_code == 404:
            assert rid == 103, one.text
            assert one.headers["Content-Type"].startswith("application/problem+json")
            continue
        assert one.status_code == 200, one.text
        assert "X-Duckgrid-Applied" in one.headers
        page = _duckdb_row(s, "rm", rid)
        assert page.json()["rows"][0]["id"] == one.json()["id"]
        # byte for byte: the object in the page is the one-row answer
        assert one.text in page.text, (rid, one.text, page.text)
        n += 1
    after = scrape(s)
    assert n == len(set(ids)) - 1
    assert after[MEM] - before[MEM] == reads
    assert after[DDB] == before[DDB]

    # Pages of one parent's children (and of the roots) come from memory
    # too: paged two at a time, each object is the one DuckDB's page of the
    # whole table has, byte for byte, and together they are every child.
    whole = s.get("/tables/rm/rows?limit=10000&children=true")
    assert whole.status_code == 200 and whole.json()["next"] is None
    every = whole.json()["rows"]
    before = scrape(s)
    pages = 0
    for parent in [None, 1, 10, 11, 12, 112, 999999]:
        want = [x["id"] for x in every if x["parent_id"] == parent]
        got, after_id = [], None
        while True:
            q = f"parent_id={'null' if parent is None else parent}&limit=2&children=true"
            if after_id is not None:
                q += f"&after={after_id}"
            page = s.get(f"/tables/rm/rows?{q}")
            pages += 1
            assert page.status_code == 200, page.text
            assert "X-Duckgrid-Applied" in page.headers
            body = page.json()
            assert len(body["rows"]) <= 2
            for obj, raw in zip(body["rows"], re.findall(r'\{"id":.*?"children":\d+\}', page.text)):
                assert raw in whole.text, raw
                got.append(obj["id"])
            if body["next"] is None:
                break
            after_id = body["next"]
            assert after_id == got[-1]
        assert got == want, (parent, got, want)
    after = scrape(s)
    assert after[PMEM] - before[PMEM] == pages and after[PDDB] == before[PDDB]


def test_reads_reflect_writes_without_a_flush(make_server):
    """With the persister's interval at a minute, every answered write is
    in the next one-row read, and those reads commit nothing to DuckDB."""
    s = make_server(env={"DUCKGRID_PERSIST_INTERVAL_MS": "60000"}).start()
    assert s.post("/tables", {"name": "nf", "columns": COLS}).status_code == 201
    r = s.post("/tables/nf/rows", {"rows": [{"id": 1}, {"id": 2, "parent_id": 1}, {"id": 3, "parent_id": 1}]})
    assert r.status_code == 201, r.text
    s.get("/tables/nf/rows?limit=1")  # a DuckDB read: the tail so far is flushed
    before = scrape(s)
    for i in range(20):
        r = s.post("/update_cell", {"table": "nf", "row_id": 2, "column": "amount", "value": f"{i}.10"})
        assert r.status_code == 200, r.text
        uid = r.json()["update_id"]
        g = s.get("/tables/nf/rows/2")
        assert g.status_code == 200 and g.json()["amount"] == float(f"{i}.10"), g.text
        assert g.headers["X-Duckgrid-Applied"] == uid
        parent = s.get("/tables/nf/rows/1").json()
        assert parent["amount"] == float(f"{i}.10") and parent["children"] == 2
    for i in range(5):
        r = s.post("/update_cell?async=true", {"table": "nf", "row_id": 3, "column": "label", "value": f"a{i}"})
        assert r.status_code == 202, r.text
        g = s.get("/tables/nf/rows/3")
        assert g.status_code == 200 and g.json()["label"] == f"a{i}", g.text
    after = scrape(s)
    assert after[TX] == before[TX], "a one-row read made the persister commit"
    assert after[MEM] - before[MEM] == 45 and after[DDB] == before[DDB]
    # A page of rows still reads DuckDB: it waits for the tail to be committed.
    page = s.get("/tables/nf/rows?limit=5")
    assert page.status_code == 200 and [x["label"] for x in page.json()["rows"]][2] == "a4"
    assert scrape(s)[TX] > after[TX]


def test_what_the_memory_cannot_answer_is_answered_as_before(server):
    s = server
    assert s.post("/tables", {"name": "rb", "columns": [{"name": "v", "type": "number"}]}).status_code == 201
    assert s.post("/tables/rb/rows", {"rows": [{"id": 1, "v": 5}]}).status_code == 201
    # a ?min_update ahead of everything: the wait, then 504, as before
    r = s.get("/tables/rb/rows/1?min_update=99999999999999-0&wait_ms=100")
    assert r.status_code == 504 and r.headers["Content-Type"].startswith("application/problem+json"), r.text
    r = s.get("/tables/rb/rows/1?min_update=nonsense")
    assert r.status_code == 400, r.text
    r = s.get("/tables/rb/rows/1?min_update=0-1")
    assert r.status_code == 200 and r.json()["v"] == 5, r.text
    # made again with other columns: the new shape, never the old row
    assert _delete(s, "/tables/rb").status_code == 204
    r = s.post("/tables", {"name": "rb", "columns": [{"name": "t", "type": "text"}]})
    assert r.status_code == 201, r.text
    assert s.post("/tables/rb/rows", {"rows": [{"id": 1, "t": "new"}]}).status_code == 201
    r = s.get("/tables/rb/rows/1")
    assert r.status_code == 200 and r.json() == {"id": 1, "parent_id": None, "t": "new", "children": 0}, r.text
    assert s.get("/tables/rb/rows/2").status_code == 404
    assert wait_until(lambda: s.get("/tables/rb/rows/1").status_code == 200)


def test_keys_and_limits_on_the_loop(make_server):
    """A row read and /health are answered on the HTTP loop when the key is
    in the cache: a deleted key stops at once, a scoped key is still 403,
    the rate limits still cut in (their tokens taken once a request)."""
    s = make_server(env={"DUCKGRID_RATE_LIMIT": "1", "DUCKGRID_RATE_BURST": "20"}).start()
    assert s.post("/tables", {"name": "lp", "columns": [{"name": "v", "type": "number"}]}).status_code == 201
    assert s.post("/tables", {"name": "other", "columns": [{"name": "v", "type": "number"}]}).status_code == 201
    assert s.post("/tables/lp/rows", {"rows": [{"id": 1, "v": 3}]}).status_code == 201
    reader = new_key(s, "read")
    assert s.get("/tables/lp/rows/1", reader["key"]).status_code == 200  # the key is cached now
    assert s.get("/tables/lp/rows/1", reader["key"]).json()["v"] == 3
    r = requests.delete(f"{s.base}/admin/keys/{reader['id']}", headers=s.headers(), timeout=10)
    assert r.status_code == 204
    r = s.get("/tables/lp/rows/1", reader["key"])
    assert r.status_code == 401 and r.headers["Content-Type"].startswith("application/problem+json"), r.text
    scoped = new_key(s, "read", ["other"])
    for _ in range(2):
        r = s.get("/tables/lp/rows/1", scoped["key"])
        assert r.status_code == 403, r.text
    assert s.get("/tables/lp/rows/1", "not-a-key").status_code == 401
    # 1 a second after a burst of 20 (slow enough for a sanitizer build):
    # of 60 reads in a row the first 20 pass, then refusals, each a 429
    # with Retry-After; at most burst + rate * elapsed pass in all.
    k = new_key(s, "read")["key"]
    sess = requests.Session()
    codes = []
    t0 = time.monotonic()
    for _ in range(60):
        r = sess.get(f"{s.base}/tables/lp/rows/1", headers=s.headers(k), timeout=10)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
    elapsed = time.monotonic() - t0
    assert set(codes) <= {200, 429} and codes[:20] == [200] * 20, codes
    assert codes.count(429) > 0 and codes.count(200) <= 20 + int(elapsed) + 1, (codes, elapsed)
    # /health is open and answers from state kept fresh, ?deep=1 checks live
    h = s.get("/health")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["manager"] == "leader"
    d = s.get("/health?deep=1")
    assert d.status_code == 200 and d.json()["redis"] == "ok" and d.json()["duckdb"] == "ok"


def test_concurrent_reads_while_writing(make_server):
    """Readers on the loops and workers while a writer runs (the TSan run
    has this one): every read answers, and what a reader sees never goes
    back in time (each answer is one state of the log, taken under the
    manager's lock)."""
    import threading
    s = make_server().start()
    assert s.post("/tables", {"name": "cc", "columns": [{"name": "v", "type": "number", "scale": 0}]}).status_code == 201
    rows = [{"id": 1}] + [{"id": 10 + k, "parent_id": 1, "v": 0} for k in range(5)]
    assert s.post("/tables/cc/rows", {"rows": rows}).status_code == 201
    stop = threading.Event()
    errors = []

    def reader(k):
        sess = requests.Session()
        last_v, last_total = -1, -1
        n = 0
        while not stop.is_set() and n < 2000:
            n += 1
            if k % 2:
                r = sess.get(f"{s.base}/tables/cc/rows/10", headers=s.headers(), timeout=15)
                v = r.json()["v"] if r.status_code == 200 else None
                if v is None or v < last_v:
                    errors.append(("row", r.status_code, r.text, last_v))
                    return
                last_v = v
            else:
                r = sess.get(f"{s.base}/tables/cc/rows?parent_id=1&limit=10", headers=s.headers(), timeout=15)
                if r.status_code != 200:
                    errors.append(("page", r.status_code, r.text))
                    return
                total = sum(x["v"] for x in r.json()["rows"])
                if total < last_total:
                    errors.append(("page", total, last_total))
                    return
                last_total = total

    ths = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for th in ths:
        th.start()
    try:
        sess = requests.Session()
        for i in range(1, 61):
            r = sess.post(f"{s.base}/update_cell", json={"table": "cc", "row_id": 10 + i % 5, "column": "v", "value": i},
                          headers=s.headers(), timeout=15)
            assert r.status_code == 200, r.text
    finally:
        stop.set()
        for th in ths:
            th.join(60)
    assert not errors, errors[:3]
    parent = s.get("/tables/cc/rows/1").json()
    assert parent["v"] == sum(range(56, 61)) and parent["children"] == 5


def test_ip_rate_on_the_loop(make_server):
    """/health is answered on the loop, after the per-IP rate (checked
    before any key): over it, a 429 problem with Retry-After."""
    s = make_server(env={"DUCKGRID_IP_RATE": "5", "DUCKGRID_IP_BURST": "5"}).start()
    time.sleep(1.5)  # the bucket refilled after the start-up's probes
    sess = requests.Session()
    codes = []
    t0 = time.monotonic()
    for _ in range(30):
        r = sess.get(f"{s.base}/health", timeout=10)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.headers["Content-Type"].startswith("application/problem+json")
    elapsed = time.monotonic() - t0
    assert set(codes) <= {200, 429} and codes[:5] == [200] * 5, codes
    assert codes.count(429) > 0 and codes.count(200) <= 5 + int(5 * elapsed) + 1, (codes, elapsed)
