"""The Postman collection (postman/duckgrid.postman_collection.json) runs
green with the pinned newman against a live server: every assertion of
every request, the contract check of every response against /openapi.json,
and the design document's six test cases. It covers every documented
operation, and runs again (its seed folder alone) against the same server,
since each run makes its own uniquely named tables and keys."""
import json
import os
import re
import subprocess

import pytest

from conftest import ROOT

COLLECTION = os.path.join(ROOT, "postman", "duckgrid.postman_collection.json")
ENVIRONMENT = os.path.join(ROOT, "postman", "duckgrid.postman_environment.json")
NEWMAN_SH = os.path.join(ROOT, "scripts", "newman.sh")
METHODS = ("get", "put", "post", "delete", "patch")


@pytest.fixture(scope="session", autouse=True)
def node_deps():
    """The pinned newman (idempotent, quiet when present)."""
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "node-deps.sh")], check=True,
                   timeout=900)


def load(path):
    with open(path) as f:
        return json.load(f)


def requests_of(node, trail=()):
    """(folder path, name, method, url path) of every request, in run order."""
    for item in node.get("item", []):
        if "item" in item:
            yield from requests_of(item, trail + (item["name"],))
        else:
            r = item["request"]
            yield trail, item["name"], r["method"], "/" + "/".join(r["url"]["path"])


def run_newman(server, tmp_path, *extra):
    report = tmp_path / "newman.json"
    out = subprocess.run(["bash", NEWMAN_SH, server.base, server.admin_key,
                          "--reporters", "cli,json", "--reporter-json-export", str(report),
                          *extra], capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    return out.returncode, text, load(report)


def summary_row(text, name):
    """(executed, failed) from newman's CLI summary table."""
    m = re.search(r"\b%s\s*│\s*(\d+)\s*│\s*(\d+)\s*│" % re.escape(name), text)
    assert m, f"no '{name}' row in newman's summary:\n{text[-4000:]}"
    return int(m.group(1)), int(m.group(2))


def test_collection_passes_against_a_live_server(server, tmp_path):
    rc, text, report = run_newman(server, tmp_path)
    stats = report["run"]["stats"]
    failures = [(f["source"].get("name"), f["error"].get("message")) for f in
                report["run"]["failures"]]
    assert rc == 0 and not failures, f"{failures}\n{text[-6000:]}"
    assert stats["assertions"]["failed"] == 0 and stats["requests"]["failed"] == 0
    assert stats["assertions"]["total"] >= 400, stats
    executed, failed = summary_row(text, "assertions")
    assert failed == 0 and executed == stats["assertions"]["total"]
    assert summary_row(text, "requests")[1] == 0
    # the seed folder ran all six cases, every assertion green
    names = [e["item"]["name"] for e in report["run"]["executions"]]
    for n in range(1, 7):
        assert any(name.startswith(f"{n}") for name in names), n


def test_seed_folder_runs_on_its_own_again(server, tmp_path):
    """Self-contained and re-runnable: a second run on the same server."""
    rc, text, report = run_newman(server, tmp_path, "--folder", "Seed test cases")
    assert rc == 0, text[-6000:]
    assert report["run"]["stats"]["assertions"]["failed"] == 0
    assert summary_row(text, "assertions")[1] == 0


def test_collection_covers_every_documented_operation():
    doc = load(os.path.join(ROOT, "docs", "openapi.json"))
    col = load(COLLECTION)
    assert col["info"]["schema"].endswith("/v2.1.0/collection.json")
    sent = set()
    for _, _, method, path in requests_of(col):
        path = re.sub(r"^/\{\{baseUrl\}\}", "", path)
        for tmpl, item in doc["paths"].items():
            pat = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(tmpl)) + "$"
            if re.match(pat, path) and method.lower() in item:
                sent.add((method, tmpl))
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in METHODS if m in item}
    assert not documented - sent, f"no request in the collection for {sorted(documented - sent)}"


def test_collection_layout_and_environment():
    col = load(COLLECTION)
    folders = [i["name"] for i in col["item"]]
    assert "Seed test cases" in folders
    seed = next(i for i in col["item"] if i["name"] == "Seed test cases")
    cases = [i["name"] for i in seed["item"] if re.match(r"^[1-6][a-e]?\. ", i["name"])]
    assert {c[0] for c in cases} == set("123456")
    # every request asserts something of its own, beyond the collection's contract check
    for trail, name, _, _ in requests_of(col):
        item = next(i for i in _walk(col) if i["name"] == name)
        tests = [e for e in item.get("event", []) if e["listen"] == "test"]
        assert tests and any("pm.test(" in line for line in tests[0]["script"]["exec"]), name
    env = load(ENVIRONMENT)
    values = {v["key"]: v for v in env["values"]}
    assert set(values) == {"baseUrl", "apiKey"}
    assert values["apiKey"]["value"] == "" and values["apiKey"]["type"] == "secret"


def _walk(node):
    for item in node.get("item", []):
        if "item" in item:
            yield from _walk(item)
        else:
            yield item


def test_npm_pins_name_no_download_address():
    with open(os.path.join(ROOT, "tools", "package-lock.json")) as f:
        lock = json.load(f)
    pkg = load(os.path.join(ROOT, "tools", "package.json"))
    for name, version in pkg["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is not pinned exactly"
        assert lock["packages"]["node_modules/" + name]["version"] == version
    for path, entry in lock["packages"].items():
        assert "resolved" not in entry, path
        if path:
            assert entry.get("integrity", "").startswith("sha512-"), path
