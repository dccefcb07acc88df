"""GET /tables/{t}/rows/{id}/history (issue 19): a row's changes from the
audit log, newest update first, each with who, when, old -> new and the
update that made it; ?column= keeps one column, ?limit= counts updates and
?before=<update id> pages. A consistent read: an answered write (even an
async one) is in the next history read. Bad parameters are problem+json 400.
"""
import requests

COLUMNS = [
    {"name": "name", "type": "text"},
    {"name": "v", "type": "number", "scale": 2},
]
USER = "bootstrap-admin"


def ok(r, status=200):
    assert r.status_code == status, f"want {status}, got {r.status_code}: {r.text}"
    return r.json() if r.content else None


def strip(h):
    return [(e["column"], e["old"], e["new"], e["user"]) for e in h]


def test_row_history(make_server):
    s = make_server().start()
    ok(s.post("/tables", {"name": "hi", "columns": COLUMNS}), 201)
    ok(s.post("/tables/hi/rows", {"rows": [
        {"id": 1, "name": "R"},
        {"id": 10, "parent_id": 1, "name": "A", "v": "10.00"},
        {"id": 11, "parent_id": 1, "name": "B", "v": "20.50"},
    ], "request_id": "hi-ins"}), 201)
    leaf = ok(s.post("/update_cell", {"table": "hi", "row_id": 10, "column": "v", "value": "-3.25",
                                      "request_id": "hi-leaf"}))
    spread = ok(s.post("/update_cell", {"table": "hi", "row_id": 1, "column": "v", "value": "100",
                                        "request_id": "hi-spread"}))
    text = ok(s.post("/update_cell", {"table": "hi", "row_id": 10, "column": "name", "value": "A2",
                                      "request_id": "hi-text"}))
    ids = [x["update_id"] for x in (text, spread, leaf)]

    r = s.get("/tables/hi/rows/10/history")
    body = ok(r)
    assert r.headers["X-Duckgrid-Applied"] >= ids[0].split("-")[0]
    h = body["history"]
    assert body["next"] is None
    ids.append(h[-1]["update_id"])  # the insert answers with its rows, not its update id
    assert [e["update_id"] for e in h] == [ids[0], ids[1], ids[2], ids[3], ids[3], ids[3]]
    assert [tuple(map(int, i.split("-"))) for i in ids] == sorted(
        [tuple(map(int, i.split("-"))) for i in ids], reverse=True)
    assert h[0]["ts"] == text["ts"] and h[1]["ts"] == spread["ts"]
    assert [e["request_id"] for e in h] == ["hi-text", "hi-spread", "hi-leaf"] + ["hi-ins"] * 3
    assert strip(h) == [("name", "A", "A2", USER), ("v", "-3.25", "-18.84", USER),
                        ("v", "10.00", "-3.25", USER), (None, None, "inserted", USER),
                        ("name", None, "A", USER), ("v", None, "10.00", USER)]
    assert all(e["ts"].endswith("Z") and e["ts"][:4].isdigit() for e in h)
    # The parent: its own spread and the roll-ups of its children (the
    # insert rolled it up twice, 0 -> 10.00 -> 30.50; within one update the
    # changes come in (column, old) order).
    assert strip(ok(s.get("/tables/hi/rows/1/history?column=v"))["history"]) == [
        ("v", "17.25", "100.00", USER), ("v", "30.50", "17.25", USER),
        ("v", "0.00", "10.00", USER), ("v", "10.00", "30.50", USER)]

    # One column; paging by update with ?limit and ?before.
    v = ok(s.get("/tables/hi/rows/10/history?column=v"))["history"]
    assert [e["update_id"] for e in v] == [ids[1], ids[2], ids[3]]
    seen, before, pages = [], None, 0
    while pages < 10:
        q = "/tables/hi/rows/10/history?limit=1" + (f"&before={before}" if before else "")
        p = ok(s.get(q))
        pages += 1
        assert len({e["update_id"] for e in p["history"]}) == 1
        seen += p["history"]
        before = p["next"]
        if before is None:
            break
        assert before == p["history"][-1]["update_id"]
    assert pages == 4 and seen == h
    assert ok(s.get(f"/tables/hi/rows/10/history?before={ids[3]}")) == {"history": [], "next": None}
    assert ok(s.get("/tables/hi/rows/999/history")) == {"history": [], "next": None}

    # A consistent read: an async write answered 202 is in the next read.
    r = s.post("/update_cell?async=true", {"table": "hi", "row_id": 11, "column": "v", "value": "7",
                                           "request_id": "hi-async"})
    assert r.status_code == 202, r.text
    top = ok(s.get("/tables/hi/rows/11/history?column=v&limit=1"))["history"]
    assert [(e["request_id"], e["old"], e["new"]) for e in top] == [("hi-async", "118.84", "7.00")]

    # A delete is the row's newest record.
    r = requests.delete(s.base + "/tables/hi/rows/11", headers=s.headers(None), timeout=15)
    assert r.status_code == 204, r.text
    top = ok(s.get("/tables/hi/rows/11/history?limit=1"))["history"]
    assert [(e["column"], e["old"], e["new"]) for e in top] == [(None, "deleted", None)]

    for q, status in [("/tables/hi/rows/10/history?limit=0", 400),
                      ("/tables/hi/rows/10/history?limit=x", 400),
                      ("/tables/hi/rows/10/history?limit=10001", 400),
                      ("/tables/hi/rows/10/history?before=abc", 400),
                      ("/tables/hi/rows/10/history?before=1-2-3", 400),
                      ("/tables/hi/rows/10/history?column=nosuch", 400),
                      ("/tables/hi/rows/10/history?column=", 400),
                      ("/tables/hi/rows/x/history", 400),
                      ("/tables/nosuch/rows/10/history", 404)]:
        r = s.get(q)
        assert r.status_code == status, (q, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json"), q
    assert s.stop() == 0
