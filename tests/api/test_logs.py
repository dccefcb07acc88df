"""Structured logs: DUCKGRID_LOG_FORMAT=json gives one JSON object per line,
with the access log fields and never a key."""
import json
import time

import requests


def test_json_log_lines(make_server):
    s = make_server(env={"DUCKGRID_LOG_FORMAT": "json"}).start()
    requests.get(s.base + "/nope", headers=s.headers(), timeout=5)
    s.get("/tables")
    time.sleep(0.2)
    s.stop()
    lines = [l for l in open(s.stderr_path).read().splitlines() if l.strip()]
    assert lines
    objs = [json.loads(l) for l in lines]          # every line is one JSON object
    for o in objs:
        assert set(o) >= {"ts", "level", "msg"}
    access = [o for o in objs if o["msg"].startswith("GET /tables 200")]
    assert access and access[0]["level"] == "info"
    assert any(o["msg"].startswith("GET /nope 404") for o in objs)
    assert s.admin_key not in open(s.stderr_path).read()
