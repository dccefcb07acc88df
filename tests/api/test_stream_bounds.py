"""Both streams stay bounded by count (issue 12): response_duck by
DUCKGRID_RESPONSE_MAXLEN (approximate, whole Redis stream nodes), request_duck
by DUCKGRID_REQUEST_MAXLEN, trimmed only below the persisted watermark."""
import threading

import requests

from conftest import wait_until
from helpers import Resp

COLS = [{"name": "v", "type": "number"}]
WRITES = 1600
REQ_MAX = 300
RES_MAX = 1000  # the smallest DUCKGRID_RESPONSE_MAXLEN allowed


def _writes(s, k, nthreads):
    sess = requests.Session()
    for i in range(k, WRITES, nthreads):
        r = sess.post(s.base + "/update_cell?async=true", headers=s.headers(), timeout=15,
                      json={"table": "b", "row_id": 1 + i % 10, "column": "v", "value": 1, "mode": "add"})
        assert r.status_code == 202, r.text


def test_streams_stay_bounded(make_server, redis_server):
    s = make_server(env={"DUCKGRID_REQUEST_MAXLEN": str(REQ_MAX), "DUCKGRID_RESPONSE_MAXLEN": str(RES_MAX)}).start()
    assert s.post("/tables", {"name": "b", "columns": COLS}).status_code == 201
    assert s.post("/tables/b/rows", {"rows": [{"id": i, "v": 0} for i in range(1, 11)]}).status_code == 201
    ths = [threading.Thread(target=_writes, args=(s, k, 4)) for k in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(120)
    req, res = s.prefix + "request_duck", s.prefix + "response_duck"
    with Resp(redis_server) as rr:
        def group():
            g = rr.cmd("XINFO", "GROUPS", req)[0]
            return dict(zip(g[::2], g[1::2]))
        # everything applied and persisted (acknowledged)...
        assert wait_until(lambda: int(group()["pending"]) == 0 and int(group()["lag"] or 0) == 0, 30)
        # ...then the count trim (once a second) cuts request_duck to REQ_MAX
        assert wait_until(lambda: rr.cmd("XLEN", req) <= REQ_MAX, 10), rr.cmd("XLEN", req)
        assert rr.cmd("XLEN", req) >= REQ_MAX - 10  # trimmed by count, not emptied
        # a Redis stream node holds at most 100 entries: MAXLEN ~ keeps < RES_MAX + 100
        assert rr.cmd("XLEN", res) < RES_MAX + 100, rr.cmd("XLEN", res)
    # nothing unpersisted was trimmed: every write applied
    rows = s.get("/tables/b/rows").json()["rows"]
    assert sum(int(r["v"]) for r in rows) == WRITES
    # and writes go on after trimming
    assert s.post("/update_cell", {"table": "b", "row_id": 1, "column": "v", "value": 1, "mode": "add"}).status_code == 200
