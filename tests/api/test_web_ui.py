"""What the web grid needs from the server (the browser tests themselves are
tests/web/): GET / and /app/{file} (open, a fixed whitelist, strict CSP, no
traversal), GET /tables/{t}/rows?children=true (each row's child count) and
GET /tables/{t}/holds (the held cells)."""
import os
import re
from html.parser import HTMLParser

import pytest
import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DIST = os.path.join(ROOT, "web", "dist")


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []
        self.inline_scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and not a.get("src"):
            self.inline_scripts += 1
        for name in ("src", "href"):
            if a.get(name) and not a[name].startswith("#"):
                self.refs.append(a[name])


def test_page_is_open_with_a_strict_csp(server):
    r = requests.get(server.base + "/", timeout=10)  # no key
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = r.headers["Content-Security-Policy"]
    for want in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                 "frame-ancestors 'none'", "base-uri 'none'", "form-action 'none'"):
        assert want in csp, csp
    assert "unsafe" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Cache-Control"] == "no-cache"
    with open(os.path.join(DIST, "index.html"), "rb") as f:
        assert r.content == f.read()
    assert not re.search(r"(https?:)?//[a-z0-9]", r.text, re.I), "the page names an outside URL"
    p = _Refs()
    p.feed(r.text)
    assert p.inline_scripts == 0
    assert sorted(p.refs) == ["/app/app.css", "/app/app.js"]
    # A revalidation with the ETag is 304.
    r2 = requests.get(server.base + "/", headers={"If-None-Match": r.headers["ETag"]}, timeout=10)
    assert r2.status_code == 304 and not r2.content


@pytest.mark.parametrize("name,ctype", [("app.js", "text/javascript"), ("app.css", "text/css")])
def test_assets_are_served_with_their_types(server, name, ctype):
    r = requests.get(server.base + "/app/" + name, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == ctype + "; charset=utf-8"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    with open(os.path.join(DIST, name), "rb") as f:
        assert r.content == f.read()
    # Built offline: the bundle loads nothing from another host.
    assert not re.search(rb"https?://[a-z0-9]", r.content, re.I)


@pytest.mark.parametrize("path", [
    "/app/index.html", "/app/app.js.map", "/app/.stamp", "/app/APP.JS", "/app/app.js.",
    "/app/..%2Findex.html", "/app/..%2F..%2FCMakeLists.txt", "/app/%2e%2e", "/app/.%2Fapp.js",
    "/app/swagger-ui.css", "/docs/app.js", "/app/openapi.json", "/index.html", "/app/app.js%00"])
def test_only_whitelisted_files_are_served(server, path):
    r = requests.get(server.base + path, timeout=10)
    want = (400, "bad_request") if "%00" in path else (404, "not_found")
    assert r.status_code == want[0], (path, r.status_code, r.text)
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["code"] == want[1]


def test_web_routes_are_get_only(server):
    for path in ("/", "/app/app.js"):
        r = requests.post(server.base + path, timeout=10)
        assert r.status_code == 405 and r.headers["Allow"] == "GET", path


def test_web_dir_override_and_missing_files(make_server, tmp_path):
    d = tmp_path / "web"
    d.mkdir()
    (d / "index.html").write_text("<!DOCTYPE html><title>x</title>\n")
    s = make_server(env={"DUCKGRID_WEB_DIR": str(d)}).start()
    r = requests.get(s.base + "/", timeout=10)
    assert r.status_code == 200 and "<title>x</title>" in r.text
    r = requests.get(s.base + "/app/app.js", timeout=10)
    assert r.status_code == 404 and "app.js" in r.json()["detail"]
    assert "web: app.js is not served" in s.logs()
    # The docs are unaffected.
    assert requests.get(s.base + "/docs/swagger-initializer.js", timeout=10).status_code == 200


# ---- the reads the grid makes ------------------------------------------------

@pytest.fixture(scope="module")
def tree(server):
    t = "webtree"
    r = server.post("/tables", {"name": t, "columns": [{"name": "name", "type": "text"},
                                                       {"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text
    rows = [{"id": 1, "name": "root"}, {"id": 2, "name": "empty root"},
            {"id": 10, "parent_id": 1, "name": "a"}, {"id": 11, "parent_id": 1, "name": "b"},
            {"id": 100, "parent_id": 10, "v": 1}, {"id": 101, "parent_id": 10, "v": 2},
            {"id": 102, "parent_id": 10, "v": 3}]
    r = server.post(f"/tables/{t}/rows", {"rows": rows})
    assert r.status_code == 201, r.text
    return t


def test_rows_with_children_counts(server, tree):
    r = server.get(f"/tables/{tree}/rows?parent_id=null&children=true")
    assert r.status_code == 200, r.text
    assert [(x["id"], x["children"]) for x in r.json()["rows"]] == [(1, 2), (2, 0)]
    r = server.get(f"/tables/{tree}/rows?parent_id=1&children=true&limit=1")
    body = r.json()
    assert [(x["id"], x["children"], x["v"]) for x in body["rows"]] == [(10, 3, 6.0)]
    assert body["next"] == 10
    r = server.get(f"/tables/{tree}/rows?parent_id=1&children=true&after=10")
    assert [(x["id"], x["children"]) for x in r.json()["rows"]] == [(11, 0)]
    # Without the flag (or with false) the rows are as before.
    for q in ("", "&children=false"):
        r = server.get(f"/tables/{tree}/rows?parent_id=10{q}")
        assert [sorted(x) for x in r.json()["rows"]] == [["id", "name", "parent_id", "v"]] * 3


@pytest.mark.parametrize("bad", ["yes", "1", "TRUE", ""])
def test_rows_children_flag_is_validated(server, tree, bad):
    r = server.get(f"/tables/{tree}/rows?children={bad}")
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "bad_request"


def test_holds_list(server, tree):
    h = server.headers()
    assert server.get(f"/tables/{tree}/holds").json() == {"holds": []}
    body = {"holds": [{"row_id": 101, "column": "v"}, {"row_id": 100, "column": "v"}]}
    assert requests.put(f"{server.base}/tables/{tree}/holds", json=body, headers=h, timeout=10).status_code == 200
    got = server.get(f"/tables/{tree}/holds")
    assert got.status_code == 200
    assert got.json() == {"holds": [{"row_id": 100, "column": "v"}, {"row_id": 101, "column": "v"}]}
    r = requests.delete(f"{server.base}/tables/{tree}/holds", json={"holds": [{"row_id": 100, "column": "v"}]},
                        headers=h, timeout=10)
    assert r.status_code == 200, r.text
    assert server.get(f"/tables/{tree}/holds").json() == {"holds": [{"row_id": 101, "column": "v"}]}
    # Held cells of another table are not listed; unknown and invalid tables are errors.
    assert server.get("/tables/nope_absent/holds").status_code == 404
    assert server.get("/tables/Bad-Name/holds").status_code == 400
    assert requests.get(f"{server.base}/tables/{tree}/holds", timeout=10).status_code == 401
