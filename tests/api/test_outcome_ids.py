"""An outcome's inserted / deleted ids are capped (issue 14, item 2).

Above DUCKGRID_OUTCOME_IDS_MAX ids (default 10,000; 5 here) an outcome lists
none of them, like a compact outcome's changes: `"inserted": []`,
`"inserted_total": N`, `"inserted_truncated": true` and `"inserted_ranges":
[[first,last],…]`, every id exactly in runs of consecutive ids (likewise
`deleted`). The API's row set (what lets an update of a new row through, and
refuses a deleted one) learns the ids from the ranges: the writes after a
capped insert or delete behave as after a listed one.
"""
import json
import time

import pytest
import requests

from conftest import Server

CAP = 5


def last_outcome(s, op):
    """The newest update of op (the writes here are synchronous: when one is
    answered its outcome is published)."""
    r = s.get("/get_updates?since=0&limit=10000")
    assert r.status_code == 200, r.text
    got = [u for u in r.json()["updates"] if u["op"] == op]
    assert got, op
    return got[-1]


@pytest.fixture(scope="module")
def capped(redis_server):
    s = Server(redis_server.url, env={"DUCKGRID_OUTCOME_IDS_MAX": str(CAP)}).start()
    r = s.post("/tables", {"name": "t", "columns": [{"name": "v", "type": "number", "scale": 0}]})
    assert r.status_code == 201, r.text
    yield s
    s.cleanup()


def test_a_small_insert_still_lists_its_ids(capped):
    s = capped
    r = s.post("/tables/t/rows", {"rows": [{"id": i, "v": i} for i in (901, 902, 903)]})
    assert r.status_code == 201, r.text
    out = last_outcome(s, "insert_rows")
    assert sorted(out["inserted"]) == [901, 902, 903], out
    assert "inserted_total" not in out and "inserted_truncated" not in out and "inserted_ranges" not in out


def test_capped_insert_gives_ranges_and_the_api_knows_every_row(capped):
    s = capped
    ids = [1, 2, 3, 4, 5, 10, 20, 21, 22, 23, 24, 25]
    r = s.post("/tables/t/rows", {"rows": [{"id": 100, "v": 0}] +
                                  [{"id": i, "parent_id": 100, "v": i} for i in ids]})
    assert r.status_code == 201, r.text
    out = last_outcome(s, "insert_rows")
    assert out["inserted"] == [] and out["inserted_truncated"] is True, out
    assert out["inserted_total"] == len(ids) + 1, out
    assert out["inserted_ranges"] == [[1, 5], [10, 10], [20, 25], [100, 100]], out
    # every new row is known to the API: an update of each goes through
    for i in ids + [100]:
        r = s.post("/update_cell", {"table": "t", "row_id": i, "column": "v", "value": 7})
        assert r.status_code == 200, (i, r.text)
    # and an explicit id already taken is a conflict at the API
    r = s.post("/tables/t/rows", {"rows": [{"id": 22, "v": 1}]})
    assert r.status_code == 409, r.text


def test_capped_cascade_delete_gives_ranges_and_the_api_forgets_every_row(capped):
    s = capped
    r = s.post("/tables/t/rows", {"rows": [{"id": 200, "v": 0}] +
                                  [{"id": 200 + i, "parent_id": 200, "v": i} for i in range(1, 9)] +
                                  [{"id": 300, "parent_id": 201, "v": 3}]})
    assert r.status_code == 201, r.text
    r = requests.delete(s.base + "/tables/t/rows/200?cascade=true", headers=s.headers(), timeout=15)
    assert r.status_code in (200, 204), r.text
    out = last_outcome(s, "delete_row")
    assert out["deleted"] == [] and out["deleted_truncated"] is True and out["deleted_total"] == 10, out
    assert out["deleted_ranges"] == [[200, 208], [300, 300]], out
    # gone for the API: an update is 404, and the ids can be inserted again
    for i in (200, 204, 208, 300):
        r = s.post("/update_cell", {"table": "t", "row_id": i, "column": "v", "value": 1})
        assert r.status_code == 404, (i, r.text)
    r = s.post("/tables/t/rows", {"rows": [{"id": 204, "v": 4}, {"id": 300, "v": 5}]})
    assert r.status_code == 201, r.text


def test_capped_outcomes_survive_a_restart(capped):
    """The row set loaded from DuckDB after a restart agrees with the one the
    ranges built (a row inserted by a capped insert can be updated, a row
    deleted by a capped delete cannot)."""
    s = capped
    assert s.stop() == 0
    s.start()
    r = s.post("/update_cell", {"table": "t", "row_id": 23, "column": "v", "value": 9})
    assert r.status_code == 200, r.text
    r = s.post("/update_cell", {"table": "t", "row_id": 205, "column": "v", "value": 9})
    assert r.status_code == 404, r.text


@pytest.fixture(scope="module")
def capped_slow(redis_server):
    """Capped, and DuckDB written behind by seconds: the writes right after a
    scattered insert reach the API's row set before DuckDB holds it."""
    s = Server(redis_server.url, env={"DUCKGRID_OUTCOME_IDS_MAX": str(CAP),
                                      "DUCKGRID_PERSIST_INTERVAL_MS": "2500"}).start()
    r = s.post("/tables", {"name": "t", "columns": [{"name": "v", "type": "number", "scale": 0}]})
    assert r.status_code == 201, r.text
    yield s
    s.cleanup()


def async_status(s, row):
    r = s.post("/update_cell?async=true", {"table": "t", "row_id": row, "column": "v", "value": 1})
    assert r.status_code in (202, 404), r.text
    return r.status_code


def test_scattered_ids_leave_out_the_ranges_and_the_row_set_is_reloaded(capped_slow):
    """More runs than the cap (scattered ids): the outcome carries neither the
    ids nor the ranges, so its size does not grow with them. The API cannot
    tell which rows exist until it reloads the table's row set from DuckDB:
    meanwhile the manager decides (a duplicate id is still 409, a free id
    201), the changes listed by later outcomes are kept across the reload,
    and after it the API answers from the reloaded set again."""
    s = capped_slow
    kids = list(range(402, 422, 2))  # 402, 404, ..., 420: eleven runs with the parent
    r = s.post("/tables/t/rows", {"rows": [{"id": 400, "v": 0}] +
                                  [{"id": i, "parent_id": 400, "v": i} for i in kids]})
    assert r.status_code == 201, r.text
    out = last_outcome(s, "insert_rows")
    assert out["inserted"] == [] and out["inserted_truncated"] is True, out
    assert out["inserted_total"] == len(kids) + 1, out
    assert "inserted_ranges" not in out, out
    # Before DuckDB has it (persisted 2.5 s behind): the manager decides.
    r = s.post("/update_cell", {"table": "t", "row_id": 404, "column": "v", "value": 44})
    assert r.status_code == 200, r.text
    r = s.post("/tables/t/rows", {"rows": [{"id": 406, "v": 1}]})
    assert r.status_code == 409, r.text
    r = s.post("/update_cell", {"table": "t", "row_id": 405, "column": "v", "value": 1})
    assert r.status_code == 404, r.text
    # Listed changes meanwhile: one row deleted, two inserted.
    r = requests.delete(s.base + "/tables/t/rows/402", headers=s.headers(), timeout=15)
    assert r.status_code in (200, 204), r.text
    r = s.post("/tables/t/rows", {"rows": [{"id": 403, "v": 3}, {"id": 405, "v": 5}]})
    assert r.status_code == 201, r.text
    # The reload: an async write to a row that never existed is refused by
    # the API itself (404, nothing queued) once the set is known again.
    deadline = time.time() + 20
    while async_status(s, 999) != 404:
        assert time.time() < deadline, "the row set was never reloaded:\n" + s.logs()
        time.sleep(0.2)
    # The reloaded set holds the scattered rows and the changes made meanwhile.
    for row in kids[1:] + [400, 403, 405]:
        assert async_status(s, row) == 202, row
    for row in (402, 401, 407, 421):
        assert async_status(s, row) == 404, row
    r = s.post("/tables/t/rows", {"rows": [{"id": 410, "v": 1}]})
    assert r.status_code == 409, r.text
