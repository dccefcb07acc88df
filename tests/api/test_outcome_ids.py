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
