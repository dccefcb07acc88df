"""Webhooks (issue 19): /admin/webhooks and the delivery thread, against a
receiver on loopback (an http.server in a thread) that records what it
gets and can be told to answer 500 or to hang past the client's timeout.

The servers here retry after DUCKGRID_WEBHOOK_BACKOFF_MS=50 (doubling) and
give up an attempt after DUCKGRID_WEBHOOK_TIMEOUT_S=1."""
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from conftest import free_port, wait_until
from helpers import problem, updates_since

ENV = {"DUCKGRID_WEBHOOK_BACKOFF_MS": "50", "DUCKGRID_WEBHOOK_TIMEOUT_S": "1"}


class Receiver:
    """Records every POST (path, headers, body, status answered). fail(k):
    the next k answer 500; hang(k): the next k sleep past the client's
    timeout, then answer 200 (to nobody)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.got = []
        self.to_fail = 0
        self.to_hang = 0
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with rec.lock:
                    if self.path == "/redirect":
                        mode = "redirect"
                    elif rec.to_hang > 0:
                        rec.to_hang -= 1
                        mode = "hang"
                    elif rec.to_fail > 0:
                        rec.to_fail -= 1
                        mode = "fail"
                    else:
                        mode = "ok"
                    rec.got.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                    "mode": mode})
                if mode == "hang":
                    time.sleep(2.0)
                code = {"fail": 500, "redirect": 307}.get(mode, 200)
                self.send_response(code)
                if mode == "redirect":
                    self.send_header("Location", "/hook")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.port = free_port()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def fail(self, k):
        with self.lock:
            self.to_fail = k

    def hang(self, k):
        with self.lock:
            self.to_hang = k

    def ok_ids(self, path="/hook"):
        """Update ids answered 200, in arrival order."""
        with self.lock:
            return [json.loads(g["body"])["update_id"] for g in self.got if g["mode"] == "ok" and g["path"] == path]

    def all(self, path="/hook"):
        with self.lock:
            return [g for g in self.got if g["path"] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def srv(make_server):
    return make_server(env=ENV).start()


def make_table(s, name):
    r = s.post("/tables", {"name": name, "columns": [{"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text


def insert(s, table, row_id):
    r = s.post(f"/tables/{table}/rows", {"id": row_id, "v": "1.00"})
    assert r.status_code == 201, r.text
    ids = [u["update_id"] for u in updates_since(s, table=table) if u["op"] == "insert_rows"]
    return ids[-1]


def create_hook(s, url, **kw):
    r = s.post("/admin/webhooks", {"url": url, **kw})
    assert r.status_code == 201, r.text
    return r.json()


def dedup(ids):
    """Consecutive repeats removed: at-least-once may send one twice."""
    out = []
    for i in ids:
        if not out or out[-1] != i:
            out.append(i)
    return out


def test_routes_and_validation(srv, receiver):
    for body in ({"url": "ftp://127.0.0.1/x"}, {"url": "http://10.1.2.3/x"}, {"url": "http://example.com/"},
                 {"url": f"http://u:p@127.0.0.1:{receiver.port}/"}, {"url": "http://127.0.0.1:99999/"},
                 {"url": 5}, {}, {"url": receiver.url(), "tables": []}, {"url": receiver.url(), "tables": ["no such!"]},
                 {"url": receiver.url(), "tables": "a"}, {"url": receiver.url(), "secret": "short"},
                 {"url": receiver.url(), "extra": 1}):
        problem(srv.post("/admin/webhooks", body), 400)
    assert srv.get("/admin/webhooks").json() == {"webhooks": []}

    made = create_hook(srv, receiver.url(), tables=["t1"])
    assert set(made) == {"id", "url", "tables", "created", "secret"}
    assert made["url"] == receiver.url() and made["tables"] == ["t1"]
    assert len(made["secret"]) == 64 and len(made["id"]) == 16
    own = create_hook(srv, f"http://localhost:{receiver.port}/x", secret="s" * 20)
    assert own["secret"] == "s" * 20 and own["tables"] is None
    listed = srv.get("/admin/webhooks").json()["webhooks"]
    assert sorted(h["id"] for h in listed) == sorted([made["id"], own["id"]])
    assert all("secret" not in h for h in listed)

    key = srv.post("/admin/keys", {"name": "w", "role": "write"}).json()["key"]
    problem(srv.get("/admin/webhooks", key=key), 403)
    problem(srv.post("/admin/webhooks", {"url": receiver.url()}, key=key), 403)

    assert srv.get(f"/admin/webhooks/{made['id']}/deliveries").json() == {"id": made["id"], "deliveries": []}
    problem(srv.get("/admin/webhooks/0123456789abcdef/deliveries"), 404)
    problem(srv.get("/admin/webhooks/..%2F/deliveries"), 404)
    r = requests.delete(srv.base + f"/admin/webhooks/{made['id']}", headers=srv.headers(), timeout=10)
    assert r.status_code == 204
    r = requests.delete(srv.base + f"/admin/webhooks/{made['id']}", headers=srv.headers(), timeout=10)
    problem(r, 404)
    assert [h["id"] for h in srv.get("/admin/webhooks").json()["webhooks"]] == [own["id"]]


def test_signed_in_order_through_failures_and_a_hang(srv, receiver):
    make_table(srv, "a")
    hook = create_hook(srv, receiver.url(), secret="k" * 32)
    receiver.hang(1)
    receiver.fail(3)
    want = [insert(srv, "a", i) for i in range(1, 7)]
    assert wait_until(lambda: want[-1] in receiver.ok_ids(), 30), (receiver.all(), srv.logs())
    assert dedup(receiver.ok_ids()) == want
    for g in receiver.all():
        body = g["body"]
        mac = hmac.new(b"k" * 32, body, hashlib.sha256).hexdigest()
        assert g["headers"]["X-Duckgrid-Signature"] == "sha256=" + mac
        assert g["headers"]["X-Duckgrid-Delivery"] == json.loads(body)["update_id"]
        assert g["headers"]["Content-Type"] == "application/json"
    # The body is the update object get_updates serves, byte for byte.
    served = {u["update_id"]: u for u in updates_since(srv)}
    for g in receiver.all():
        assert json.loads(g["body"]) == served[json.loads(g["body"])["update_id"]]

    d = srv.get(f"/admin/webhooks/{hook['id']}/deliveries").json()["deliveries"]
    first = [x for x in d if x["update_id"] == want[0]]
    assert [x["outcome"] for x in reversed(first)] == ["failed"] * 4 + ["delivered"], d
    assert [x["attempt"] for x in reversed(first)] == [1, 2, 3, 4, 5]
    assert first[-1]["status"] is None and "no answer" in first[-1]["error"]  # the hang
    assert first[-2]["status"] == 500 and first[-2]["error"] == "HTTP 500"
    assert first[0]["status"] == 200 and first[0]["error"] is None
    assert {x["update_id"] for x in d if x["outcome"] == "delivered"} == set(want)


def test_tables_filter(srv, receiver):
    make_table(srv, "a")
    make_table(srv, "b")
    create_hook(srv, receiver.url(), tables=["a"])
    ids_b = [insert(srv, "b", 1), insert(srv, "b", 2)]
    ids_a = [insert(srv, "a", 1)]
    ids_b.append(insert(srv, "b", 3))
    ids_a.append(insert(srv, "a", 2))
    assert wait_until(lambda: ids_a[-1] in receiver.ok_ids(), 20), srv.logs()
    assert dedup(receiver.ok_ids()) == ids_a
    assert not set(ids_b) & {json.loads(g["body"])["update_id"] for g in receiver.all()}


def test_delete_stops_deliveries(srv, receiver):
    make_table(srv, "a")
    gone = create_hook(srv, receiver.url("/gone"))
    first = insert(srv, "a", 1)
    assert wait_until(lambda: first in receiver.ok_ids("/gone"), 20)
    assert requests.delete(srv.base + f"/admin/webhooks/{gone['id']}", headers=srv.headers(),
                           timeout=10).status_code == 204
    create_hook(srv, receiver.url("/kept"))
    later = insert(srv, "a", 2)
    assert wait_until(lambda: later in receiver.ok_ids("/kept"), 20)
    assert receiver.ok_ids("/gone") == [first] and len(receiver.all("/gone")) == 1


def test_restart_resumes_from_the_cursor(srv, receiver):
    make_table(srv, "a")
    hook = create_hook(srv, receiver.url())
    done = insert(srv, "a", 1)
    assert wait_until(lambda: done in receiver.ok_ids(), 20)
    receiver.fail(10 ** 6)  # refuse everything while the server goes down
    pending = [insert(srv, "a", i) for i in range(2, 5)]
    assert wait_until(lambda: len(receiver.all()) >= 2, 20)
    assert srv.stop() == 0
    receiver.fail(0)
    n_before = len(receiver.all())
    srv.start()
    assert wait_until(lambda: pending[-1] in receiver.ok_ids(), 30), srv.logs()
    after = [json.loads(g["body"])["update_id"] for g in receiver.all()[n_before:] if g["mode"] == "ok"]
    assert dedup(after) == pending  # from the cursor: not `done` again, nothing skipped
    d = srv.get(f"/admin/webhooks/{hook['id']}/deliveries").json()["deliveries"]
    assert any(x["outcome"] == "failed" and x["status"] == 500 for x in d)
    assert d[0]["outcome"] == "delivered" and d[0]["update_id"] == pending[-1]


def test_a_listed_name_must_not_resolve_inside(make_server, receiver):
    """A host the allow-list names (not localhost, not an IP) is refused at
    delivery when it resolves to an internal address -- or not at all."""
    name = socket.gethostname().lower()
    s = make_server(env={**ENV, "DUCKGRID_WEBHOOK_ALLOW": name}).start()
    problem(s.post("/admin/webhooks", {"url": receiver.url()}), 400)  # 127.0.0.1 is no longer listed
    hook = create_hook(s, f"http://{name}:{receiver.port}/hook")
    make_table(s, "a")

    def refused():
        d = s.get(f"/admin/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        return [x for x in d if x["outcome"] == "failed"]
    assert wait_until(lambda: len(refused()) >= 2, 20), s.logs()
    err = refused()[0]["error"]
    assert "does not allow" in err or "cannot resolve" in err, err
    assert receiver.all() == []


def test_a_trimmed_cursor_is_recorded_as_a_gap(srv, receiver, redis_server):
    """Updates trimmed from response_duck before they were delivered: the
    deliveries say so, and delivery goes on from the oldest retained."""
    make_table(srv, "a")
    hook = create_hook(srv, receiver.url())
    receiver.fail(10 ** 6)
    lost = [insert(srv, "a", 1), insert(srv, "a", 2)]
    assert wait_until(lambda: len(receiver.all()) >= 1, 20)
    redis_server.cli("XTRIM", srv.prefix + "response_duck", "MAXLEN", "0")
    receiver.fail(0)
    kept = insert(srv, "a", 3)
    assert wait_until(lambda: kept in receiver.ok_ids(), 30), srv.logs()
    assert dedup(receiver.ok_ids()) == [kept]
    d = srv.get(f"/admin/webhooks/{hook['id']}/deliveries").json()["deliveries"]
    gaps = [x for x in d if x["outcome"] == "gap"]
    xid = lambda s: tuple(int(p) for p in s.split("-"))
    assert len(gaps) == 1 and xid(gaps[0]["update_id"]) < xid(lost[0]) and gaps[0]["attempt"] == 0, d
    assert "oldest retained" in gaps[0]["error"]


def test_proxy_settings_of_the_environment_are_not_used(make_server, receiver):
    """A proxy from the environment would see (and could redirect) every
    delivery: the client goes straight to the allowed address."""
    dead = f"http://127.0.0.1:{free_port()}"
    s = make_server(env={**ENV, "http_proxy": dead, "HTTP_PROXY": dead, "https_proxy": dead,
                         "ALL_PROXY": dead, "all_proxy": dead}).start()
    make_table(s, "a")
    create_hook(s, receiver.url())
    want = insert(s, "a", 1)
    assert wait_until(lambda: want in receiver.ok_ids(), 20), s.logs()


def test_redirects_are_not_followed(srv, receiver):
    """A 307 is a failed attempt, not a way to another address."""
    make_table(srv, "a")
    hook = create_hook(srv, receiver.url("/redirect"))
    insert(srv, "a", 1)

    def failed():
        d = srv.get(f"/admin/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        return [x for x in d if x["outcome"] == "failed"]
    assert wait_until(lambda: len(failed()) >= 2, 20), srv.logs()
    assert failed()[0]["status"] == 307
    assert receiver.all("/hook") == []


def test_an_update_failing_past_the_give_up_time_is_dropped(make_server, receiver):
    s = make_server(env={**ENV, "DUCKGRID_WEBHOOK_GIVEUP_MS": "300"}).start()
    make_table(s, "a")
    hook = create_hook(s, receiver.url())
    receiver.fail(10 ** 6)
    lost = insert(s, "a", 1)

    def outcomes():
        d = s.get(f"/admin/webhooks/{hook['id']}/deliveries").json()["deliveries"]
        return [(x["update_id"], x["outcome"]) for x in reversed(d)]
    assert wait_until(lambda: (lost, "dropped") in outcomes(), 20), s.logs()
    receiver.fail(0)
    later = insert(s, "a", 2)
    assert wait_until(lambda: later in receiver.ok_ids(), 20), s.logs()
    assert receiver.ok_ids() == [later]
    got = outcomes()
    assert got.index((lost, "dropped")) > got.index((lost, "failed"))
    assert got[-1] == (later, "delivered") and got.count((lost, "dropped")) == 1
