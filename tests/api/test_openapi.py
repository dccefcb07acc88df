"""docs/openapi.json is the one description of the API: it must list exactly
the routes the router serves (read from the router's own tables by
build/routes_driver), with the same roles, pass the pinned linter, and be
what GET /openapi.json serves. GET /docs serves Swagger UI from this server
alone: a fixed whitelist of files, the right types, no outside URL."""
import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest
import requests

from conftest import BUILD, ROOT, Server

DOC_PATH = os.path.join(ROOT, "docs", "openapi.json")
UI_DIR = os.path.join(ROOT, "third_party", "swagger-ui")
REDOCLY = os.path.join(ROOT, "third_party", "node", "node_modules", ".bin", "redocly")
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
UI_ASSETS = {  # file -> Content-Type served
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}


@pytest.fixture(scope="session", autouse=True)
def node_deps():
    """The pinned Node tools and Swagger UI (idempotent, quiet when present);
    session scope, so they are in place before any server starts."""
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "node-deps.sh")], check=True,
                   timeout=900)


@pytest.fixture(scope="module")
def doc():
    with open(DOC_PATH, "rb") as f:
        raw = f.read()
    return json.loads(raw)


def router_routes():
    """{(METHOD, /path/{param}): (role, json_body)} from the router's tables."""
    out = subprocess.run([os.path.join(BUILD, "routes_driver")], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    routes = {}
    for line in out.stdout.splitlines():
        method, pattern, role, json_body = line.split(" ")
        path = re.sub(r":([A-Za-z_][A-Za-z0-9_]*)", r"{\1}", pattern)
        assert (method, path) not in routes, f"route {method} {path} is registered twice"
        routes[(method, path)] = (role, json_body == "1")
    assert len(routes) >= 20, out.stdout
    return routes


def doc_operations(doc):
    ops = {}
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                ops[(method.upper(), path)] = item[method]
    return ops


def resolve(doc, obj):
    while isinstance(obj, dict) and "$ref" in obj:
        node = doc
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        obj = node
    return obj


# ---- the document against the router ---------------------------------------

def test_every_route_is_documented_and_every_documented_route_exists(doc):
    routes = router_routes()
    ops = doc_operations(doc)
    undocumented = sorted(set(routes) - set(ops))
    unserved = sorted(set(ops) - set(routes))
    assert not undocumented, f"routes missing from docs/openapi.json: {undocumented}"
    assert not unserved, f"docs/openapi.json documents routes the router lacks: {unserved}"


def test_roles_security_and_bodies_match_the_router(doc):
    ops = doc_operations(doc)
    for key, (role, json_body) in router_routes().items():
        op = ops[key]
        where = f"{key[0]} {key[1]}"
        assert op.get("x-duckgrid-role") == role, where
        responses = op["responses"]
        if role == "none":
            assert op.get("security") == [], f"{where} is open: it needs security: []"
            assert "401" not in responses, where
        else:
            assert "security" not in op, f"{where} needs a key: it takes the global security"
            for status in ("401", "403"):
                assert status in responses, f"{where} lacks {status}"
        if json_body:
            body = resolve(doc, op.get("requestBody", {}))
            assert body.get("required") is True, f"{where} takes a JSON body"
            assert list(body["content"]) == ["application/json"], where
            assert "400" in responses and "413" in responses, where
        else:
            # No JSON body; a route that reads a file (an import) documents its type.
            body = resolve(doc, op.get("requestBody", {}))
            assert "application/json" not in body.get("content", {}), f"{where} takes no JSON body"


def test_document_shape(doc):
    assert doc["openapi"] == "3.1.0"
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {**schemes["ApiKeyHeader"], "type": "apiKey",
                                       "in": "header", "name": "X-API-Key"}
    assert schemes["Bearer"]["type"] == "http" and schemes["Bearer"]["scheme"] == "bearer"
    assert doc["security"] == [{"ApiKeyHeader": []}, {"Bearer": []}]
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"status", "code", "title", "detail"}
    assert set(problem["properties"]["code"]["enum"]) == {
        "bad_request", "unauthorized", "forbidden", "not_found", "method_not_allowed",
        "conflict", "gone", "payload_too_large", "headers_too_large", "too_many_requests", "internal",
        "unavailable", "timeout"}
    for name in ("Table", "Column", "Row", "UpdateObject", "Change", "Problem"):
        assert name in doc["components"]["schemas"], name
    row = doc["components"]["schemas"]["Row"]
    assert row["additionalProperties"] == {"$ref": "#/components/schemas/CellValue"}
    op_ids = set()
    for key, op in doc_operations(doc).items():
        assert op["operationId"] not in op_ids, op["operationId"]
        op_ids.add(op["operationId"])
        errors = [s for s in op["responses"] if s.startswith("4") or s.startswith("5")]
        assert errors, f"{key} documents no error"
        for status in errors:
            if key == ("GET", "/health") and status == "503":
                continue  # degraded health keeps the health shape (API.md)
            resp = resolve(doc, op["responses"][status])
            assert list(resp["content"]) == ["application/problem+json"], (key, status)
            assert resolve(doc, resp["content"]["application/problem+json"]["schema"]) is \
                resolve(doc, {"$ref": "#/components/schemas/Problem"}), (key, status)


def test_every_ref_resolves(doc):
    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                assert resolve(doc, node) is not None, node["$ref"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(doc)


def test_document_passes_the_linter():
    """@redocly/cli (pinned in tools/package-lock.json), recommended-strict."""
    env = dict(os.environ, REDOCLY_TELEMETRY="off", REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
               REDOCLY_SUPPRESS_NOTIFICATIONS="true", DO_NOT_TRACK="1", NO_COLOR="1")
    out = subprocess.run([REDOCLY, "lint", "docs/openapi.json", "--config",
                          "tools/redocly.yaml", "--format", "stylish"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout + out.stderr


# ---- what the server serves --------------------------------------------------

def test_served_document_is_the_file_byte_for_byte(server):
    r = requests.get(server.base + "/openapi.json", timeout=10)  # no key
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Cache-Control"] == "no-cache"
    with open(DOC_PATH, "rb") as f:
        assert r.content == f.read()
    etag = r.headers["ETag"]
    r2 = requests.get(server.base + "/openapi.json", headers={"If-None-Match": etag}, timeout=10)
    assert r2.status_code == 304 and r2.content == b"" and r2.headers["ETag"] == etag


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.refs.append(value)


def test_docs_page_uses_only_local_assets(server):
    r = requests.get(server.base + "/docs", timeout=10)  # no key
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-cache"
    assert not re.search(r"(https?:)?//[a-z0-9]", r.text, re.I), "the page names an outside URL"
    p = _Refs()
    p.feed(r.text)
    assert sorted(p.refs) == sorted(["/docs/swagger-ui.css", "/docs/favicon-32x32.png",
                                     "/docs/swagger-ui-bundle.js",
                                     "/docs/swagger-ui-standalone-preset.js",
                                     "/docs/swagger-initializer.js"])
    for ref in p.refs:
        a = requests.get(server.base + ref, timeout=10)
        assert a.status_code == 200, ref
        assert a.content, ref
    init = requests.get(server.base + "/docs/swagger-initializer.js", timeout=10)
    assert init.headers["Content-Type"].startswith("text/javascript")
    assert 'url: "/openapi.json"' in init.text and "validatorUrl: null" in init.text
    assert requests.get(server.base + "/docs/", timeout=10).text == r.text


@pytest.mark.parametrize("name,ctype", sorted(UI_ASSETS.items()))
def test_swagger_ui_assets_are_served_with_their_types(server, name, ctype):
    r = requests.get(server.base + "/docs/" + name, timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].split(";")[0] == ctype
    assert r.headers["Cache-Control"] == "public, max-age=86400"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    with open(os.path.join(UI_DIR, name), "rb") as f:
        assert r.content == f.read()


@pytest.mark.parametrize("path", [
    "/docs/index.htm", "/docs/package.json", "/docs/swagger-ui.js.map", "/docs/openapi.json",
    "/docs/..%2F..%2FCMakeLists.txt", "/docs/%2e%2e", "/docs/.%2Fswagger-ui.css",
    "/docs/swagger-ui.css%00", "/docs/SWAGGER-UI.CSS"])
def test_only_whitelisted_files_are_served(server, path):
    r = requests.get(server.base + path, timeout=10)
    # A NUL (%00) in the target is refused before routing (400); any other
    # name off the whitelist is simply not there (404).
    want = (400, "bad_request") if "%00" in path else (404, "not_found")
    assert r.status_code == want[0], path
    assert r.headers["Content-Type"] == "application/problem+json"
    assert r.json()["code"] == want[1]


def test_docs_routes_are_get_only(server):
    for path in ("/docs", "/docs/swagger-ui.css", "/openapi.json"):
        r = requests.post(server.base + path, timeout=10)
        assert r.status_code == 405 and r.headers["Allow"] == "GET", path


def test_docs_dir_override_and_missing_files(make_server, tmp_path):
    """DUCKGRID_DOCS_DIR replaces the default locations; files it lacks are
    404 with the reason, and the rest is still served."""
    d = tmp_path / "docs"
    (d / "swagger-ui").mkdir(parents=True)
    (d / "openapi.json").write_text('{"openapi":"3.1.0","info":{"title":"x","version":"0"},'
                                    '"paths":{}}\n')
    s = make_server(env={"DUCKGRID_DOCS_DIR": str(d)}).start()
    r = requests.get(s.base + "/openapi.json", timeout=10)
    assert r.status_code == 200 and r.json()["info"]["title"] == "x"
    r = requests.get(s.base + "/docs", timeout=10)
    assert r.status_code == 404 and "swagger-ui.css" in r.json()["detail"]
    r = requests.get(s.base + "/docs/swagger-ui-bundle.js", timeout=10)
    assert r.status_code == 404 and "swagger-ui-bundle.js" in r.json()["detail"]
    # the page's own files are compiled in
    assert requests.get(s.base + "/docs/swagger-initializer.js", timeout=10).status_code == 200
    assert "docs: swagger-ui.css is not served" in s.logs()
