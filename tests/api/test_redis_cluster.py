"""duckgrid on a real Redis Cluster: 3 masters + 3 replicas on loopback
(cluster_helpers.RedisCluster), the server pointed at a master that does NOT
serve the {dg} slot, so every command starts with a redirect.

  - the whole write path through the non-owning entry node: sync and async
    update_cell, get_updates (long poll), SSE; all keys in the {dg} slot;
    each write answered after WAIT (X-Duckgrid-Replicated: ok, /metrics);
  - the {dg} slot migrated to another master key by key (ASK, then MOVED)
    under a sync write load: writes go on, no acknowledged write lost, no
    outcome twice;
  - kill -9 of the slot's master under load: its replica is promoted, the
    server finds it, writes go on, no acknowledged write lost, no outcome
    twice;
  - TLS-only cluster with an ACL user limited to {dg}:* keys;
  - settings: a prefix without a hash tag and a bad mode stop the server.
"""
import json
import threading
import time

import pytest

from conftest import Server, wait_until
from cluster_helpers import RedisCluster
from test_events import SSE
from test_redis_tls import Pki


@pytest.fixture(scope="module")
def cluster():
    c = RedisCluster().start()
    yield c
    c.cleanup()


def non_owner(c):
    own = c.owner(c.slot_of("{dg}"))
    return own, [p for p in c.masters() if p != own][0]


@pytest.fixture(scope="module")
def grid(cluster):
    own, entry = non_owner(cluster)
    s = Server(cluster.url(entry), prefix="", env={"DUCKGRID_REDIS_CLUSTER": "auto"}).start()
    r = s.post("/tables", {"name": "c", "columns": [{"name": "v", "type": "number", "scale": 0}]})
    assert r.status_code == 201, r.text
    r = s.post("/tables/c/rows", {"rows": [{"id": i, "v": 0} for i in range(1, 21)]})
    assert r.status_code == 201, r.text
    yield s
    s.cleanup()


def all_updates(s):
    out, since = [], "0"
    for _ in range(1000):
        r = s.get(f"/get_updates?since={since}&limit=1000")
        # Right after a failover a pooled connection may still point at the
        # old master: that read answers 503 (unavailable) and a retry, as a
        # client would make, reads the new one (bounded).
        for _ in range(20):
            if r.status_code != 503:
                break
            time.sleep(0.5)
            r = s.get(f"/get_updates?since={since}&limit=1000")
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["updates"]
        if not body["updates"]:
            return out
        since = body["next"]
    raise AssertionError("get_updates did not end")


class Load:
    """Writer threads, one row each: sync update_cell v = 1, 2, 3, ... with a
    request_id per value; a failed attempt (503, 504, a dropped connection)
    is retried with the same request_id until it is answered 200, so each
    thread's writes are strictly one after the other."""

    def __init__(self, s, rows):
        self.s, self.rows = s, rows
        self.acked = {}           # request_id -> value, answered 200
        self.last = {r: 0 for r in rows}
        self.errors = 0
        self.replicated = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(r,), daemon=True) for r in rows]

    def _run(self, row):
        seq = 0
        while not self.stop.is_set():
            seq += 1
            rid = f"load-{row}-{seq}"
            for _ in range(400):
                try:
                    r = self.s.post("/update_cell", {"table": "c", "row_id": row, "column": "v",
                                                     "value": seq, "request_id": rid}, timeout=10)
                except Exception:
                    r = None
                if r is not None and r.status_code == 200:
                    assert r.json()["request_id"] == rid
                    with self.lock:
                        self.acked[rid] = seq
                        self.last[row] = seq
                        h = r.headers.get("X-Duckgrid-Replicated")
                        self.replicated[h] = self.replicated.get(h, 0) + 1
                    break
                with self.lock:
                    self.errors += 1
                if self.stop.is_set():
                    return  # the test is over: this write was never acknowledged, so nothing is claimed
                time.sleep(0.05)
            else:
                raise AssertionError(f"{rid} never answered")

    def count(self):
        with self.lock:
            return len(self.acked)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)


def check_no_loss_no_dup(s, load):
    ups = all_updates(s)
    rids = [u["request_id"] for u in ups]
    dups = {r for r in rids if rids.count(r) > 1}
    assert not dups, f"outcomes published twice: {sorted(dups)[:5]}"
    missing = set(load.acked) - set(rids)
    assert not missing, f"acknowledged writes without an outcome: {sorted(missing)[:5]}"
    for row, v in load.last.items():
        r = s.get(f"/tables/c/rows/{row}")
        assert r.status_code == 200 and r.json()["v"] == v, (row, v, r.text)


def test_write_path_through_a_non_owning_node(cluster, grid):
    s = grid
    own, entry = non_owner(cluster)
    sse = SSE(s)
    assert sse.status == 200
    time.sleep(0.3)
    r = s.post("/update_cell", {"table": "c", "row_id": 1, "column": "v", "value": 5,
                                "request_id": "cl-sync"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "applied"
    assert r.headers["X-Duckgrid-Replicated"] == "ok"
    r = s.post("/update_cell?async=true", {"table": "c", "row_id": 2, "column": "v", "value": 6,
                                           "request_id": "cl-async"})
    assert r.status_code == 202, r.text
    assert r.headers["X-Duckgrid-Replicated"] == "ok"
    assert wait_until(lambda: s.get("/tables/c/rows/2").json()["v"] == 6, 10)
    # SSE saw both, in order.
    got = sse.updates(2)
    assert [json.loads(e["data"])["request_id"] for e in got] == ["cl-sync", "cl-async"]
    sse.close()
    # A long poll wakes for a write made while it waits.
    nxt = s.get("/get_updates").json()["next"]
    t = threading.Timer(0.5, lambda: s.post("/update_cell?async=true",
                                            {"table": "c", "row_id": 3, "column": "v", "value": 7}))
    t.start()
    r = s.get(f"/get_updates?since={nxt}&wait_ms=5000")
    t.join()
    assert [(u["op"], u["changes"][0]["new"]) for u in r.json()["updates"]] == [("update_cell", 7)]
    # Every key of the deployment is on the slot's master, none on the entry node.
    keys = set(cluster.cli(own, "KEYS", "*").split())
    assert {"{dg}:request_duck", "{dg}:response_duck", "{dg}:duckgrid:manager",
            "{dg}:duckgrid:fence"} <= keys
    assert cluster.cli(entry, "KEYS", "*") == ""
    m = s.get("/metrics").text
    ok = [ln for ln in m.splitlines() if ln.startswith('duckgrid_redis_replication_total{result="ok"}')]
    assert ok and int(ok[0].split()[-1]) >= 2, m[-2000:]


def test_slot_migration_under_load(cluster, grid):
    s = grid
    slot = cluster.slot_of("{dg}")
    src = cluster.owner(slot)
    dst = [p for p in cluster.masters() if p != src][0]
    with Load(s, rows=[11, 12, 13]) as load:
        assert wait_until(lambda: load.count() >= 20, 20)
        moved = cluster.migrate_slot(slot, src, dst, pause=0.2)
        assert moved >= 4
        n = load.count()
        assert wait_until(lambda: load.count() >= n + 20, 20), "writes did not go on"
    assert cluster.owner(slot) == dst
    assert cluster.cli(src, "KEYS", "*") == ""
    check_no_loss_no_dup(s, load)


def test_failover_of_the_slot_master_under_load(cluster, grid):
    s = grid
    slot = cluster.slot_of("{dg}")
    victim = cluster.owner(slot)
    with Load(s, rows=[15, 16, 17]) as load:
        assert wait_until(lambda: load.count() >= 20, 20)
        cluster.kill(victim)
        killed = time.monotonic()
        n = load.count()
        assert wait_until(lambda: load.count() >= n + 20, 30), "writes did not resume:\n" + s.logs()[-3000:]
        print(f"failover: first 20 writes after the kill within {time.monotonic() - killed:.2f} s")
    new = cluster.owner(slot)
    assert new is not None and new != victim
    check_no_loss_no_dup(s, load)
    # The manager is still the leader and the server healthy.
    assert s.get("/health").status_code == 200


@pytest.fixture(scope="module")
def pki():
    """Test CA; the nodes' certificate is for server and client use both
    (cluster bus and replication links are TLS connections between nodes)."""
    p = Pki()
    with open(p.cnf, "a") as f:
        f.write("[node]\nbasicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n"
                "extendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n")
    p._leaf(p.server_crt, p.server_key, "/CN=localhost", "node", 3)
    yield p
    p.cleanup()


def test_tls_and_acl_cluster(pki):
    c = RedisCluster(pki=pki, acl_user="dgapp").start()
    s = bad = None
    try:
        own, entry = non_owner(c)
        env = {"DUCKGRID_REDIS_CA": pki.ca}
        s = Server(c.url(entry, user="dgapp"), prefix="", env=env).start()
        r = s.post("/tables", {"name": "t", "columns": [{"name": "v", "type": "number", "scale": 0}]})
        assert r.status_code == 201, r.text
        r = s.post("/tables/t/rows", {"rows": [{"id": 1, "v": 1}]})
        assert r.status_code == 201, r.text
        r = s.post("/update_cell", {"table": "t", "row_id": 1, "column": "v", "value": 9})
        assert r.status_code == 200 and r.headers["X-Duckgrid-Replicated"] == "ok", r.text
        assert [u["op"] for u in all_updates(s)] == ["create_table", "insert_rows", "update_cell"]
        assert "{dg}:response_duck" in c.cli(own, "KEYS", "*").split()
        assert c.acl_password not in s.logs()
        # A prefix outside the ACL user's keys is refused by Redis: degraded, not crashed.
        bad = Server(c.url(entry, user="dgapp"), prefix="{other}:", env=env).start(expect_ok=False)
        r = bad.post("/tables", {"name": "u", "columns": [{"name": "v", "type": "number"}]})
        assert r.status_code in (503, 504), r.text
    finally:
        for x in (s, bad):
            if x:
                x.cleanup()
        c.cleanup()


@pytest.mark.parametrize("env,msg", [
    ({"DUCKGRID_REDIS_CLUSTER": "on", "DUCKGRID_STREAM_PREFIX": "dg:"}, "needs a hash tag"),
    ({"DUCKGRID_REDIS_CLUSTER": "maybe"}, "DUCKGRID_REDIS_CLUSTER"),
    ({"DUCKGRID_REDIS_WAIT_MS": "0"}, "DUCKGRID_REDIS_WAIT_MS"),
])
def test_bad_cluster_settings_stop_the_server(cluster, env, msg):
    s = Server(cluster.url(cluster.masters()[0]), prefix=env.pop("DUCKGRID_STREAM_PREFIX", ""), env=env)
    try:
        s.start(wait=False)
        assert s.proc.wait(20) == 2
        assert msg in s.logs()
    finally:
        s.cleanup()
