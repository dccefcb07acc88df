"""Snapshots and point-in-time restore (issue 16), with real processes.

A snapshot is a copy of the DuckDB state at an update id (POST
/admin/snapshots, `duckgrid snapshot`); `duckgrid restore` copies one and
replays request_duck after it, up to --until. DuckDB files are compared
table by table through bench_mkdb (an in-memory DuckDB that ATTACHes the
file READ_ONLY, so nothing it reads changes).
"""
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time

import requests

from conftest import BIN, BUILD, wait_until

MKDB = os.path.join(BUILD, "bench_mkdb")
COLS = [{"name": "v", "type": "number", "scale": 2}, {"name": "name", "type": "text"}]
MIDS = [10, 20, 30]
LEAVES = [m * 10 + k for m in MIDS for k in range(1, 5)]


def _sql1(path, sql):
    """First value of a query over the DuckDB file at path (read-only)."""
    out = subprocess.run([MKDB, ":memory:", f"ATTACH '{path}' AS s (READ_ONLY)", sql],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout[:-1] if out.stdout.endswith("\n") else out.stdout


def dump(path):
    """Every user table's rows (in id order), the update id, holds, views
    and the audit log's size: what a restore must reproduce."""
    tables = _sql1(path, "SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM s.dg.tables")
    d = {"tables": tables,
         "applied": _sql1(path, "SELECT last_id || '/' || coalesce(next_row_id, 0) FROM s.dg.applied"),
         "holds": _sql1(path, "SELECT count(*) FROM s.dg.holds"),
         "views": _sql1(path, "SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM s.dg.views"),
         "audit": _sql1(path, "SELECT (SELECT count(*) FROM s.dg.audit_requests) || '/' || "
                              "(SELECT count(*) FROM s.dg.cell_log)")}
    # The dg tables' contents too (audit log, row images, idempotency
    # records, holds), each as an MD5 of its rows in a fixed order.
    for t in ("audit_requests", "audit_cols", "cell_log", "row_images", "idem", "holds"):
        d["dg." + t] = _sql1(path, f"SELECT md5(coalesce(string_agg(CAST(t AS VARCHAR), chr(10) "
                                   f"ORDER BY CAST(t AS VARCHAR)), '')) FROM s.dg.{t} t")
    for t in filter(None, tables.split(",")):
        d["rows:" + t] = _sql1(path, f"SELECT coalesce(string_agg(CAST(t AS VARCHAR), chr(10) ORDER BY id), '') "
                                     f"FROM s.main.\"{t}\" t")
    d["catalog"] = catalog(path)
    return d


def catalog(path):
    """Every table's CREATE statement, constraint, index, view, macro and
    sequence of the file: a restored database has the server's own."""
    return _sql1(path, "SELECT string_agg(x, chr(10) ORDER BY x) FROM ("
                 "SELECT 'table ' || schema_name || '.' || table_name || ': ' || sql AS x FROM duckdb_tables() "
                 "WHERE database_name = 's' UNION ALL "
                 "SELECT 'constraint ' || schema_name || '.' || table_name || ': ' || constraint_type || ' ' || "
                 "coalesce(constraint_text, '') || ' ' || CAST(constraint_column_names AS VARCHAR) "
                 "FROM duckdb_constraints() WHERE database_name = 's' UNION ALL "
                 "SELECT 'index ' || schema_name || '.' || index_name || ': ' || coalesce(sql, '') "
                 "FROM duckdb_indexes() WHERE database_name = 's' UNION ALL "
                 "SELECT 'view ' || schema_name || '.' || view_name || ': ' || sql FROM duckdb_views() "
                 "WHERE database_name = 's' AND NOT internal UNION ALL "
                 "SELECT 'macro ' || schema_name || '.' || function_name || ': ' || coalesce(macro_definition, '') "
                 "FROM duckdb_functions() WHERE database_name = 's' AND function_type LIKE '%macro%' UNION ALL "
                 "SELECT 'sequence ' || schema_name || '.' || sequence_name FROM duckdb_sequences() "
                 "WHERE database_name = 's')")


def data(d):
    """A dump without the catalog: a snapshot file (format 2) holds its keyed
    tables without their keys until it is opened."""
    return {k: v for k, v in d.items() if k != "catalog"}


def restore(s, *args, expect=0, env=None):
    out = subprocess.run([BIN, "restore", *args], env=dict(s.env, **(env or {})), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == expect, f"restore {args}: rc {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def snapshot(s, **params):
    r = s.post("/admin/snapshots", params=params, timeout=70)
    assert r.status_code == 201, r.text
    return r.json()


def _tree(s):
    assert s.post("/tables", {"name": "sn", "columns": COLS}).status_code == 201
    rows = [{"id": 1, "name": "root"}] + [{"id": m, "parent_id": 1} for m in MIDS]
    rows += [{"id": leaf, "parent_id": leaf // 10, "v": leaf % 7} for leaf in LEAVES]
    r = s.post("/tables/sn/rows", {"rows": rows})
    assert r.status_code == 201, r.text


def _writes(s, n, seed, tag):
    """n synchronous writes of several kinds; returns the last update id."""
    rnd = random.Random(seed)
    sess = requests.Session()
    last = None
    for i in range(n):
        k = rnd.random()
        if k < 0.6:
            path, body = "/update_cell", {"table": "sn", "row_id": rnd.choice(LEAVES), "column": "v",
                                          "value": rnd.randint(1, 9), "mode": "add"}
        elif k < 0.8:
            path, body = "/tables/sn/rows", {"parent_id": rnd.choice(LEAVES), "v": rnd.randint(0, 50),
                                             "name": f"{tag}{i}"}
        else:
            path, body = "/update_cell", {"table": "sn", "row_id": rnd.choice(LEAVES), "column": "name",
                                          "value": f"{tag}-{i}"}
        r = sess.post(s.base + path, json=dict(body, request_id=f"{tag}-{i}"), headers=s.headers(), timeout=15)
        assert r.status_code in (200, 201), r.text
        last = r.json().get("update_id", last)
    return last


def _copy(path, dst):
    shutil.copyfile(path, dst)
    return dst


def test_restore_until_snapshot_and_until_a_later_snapshot(make_server, tmp_path):
    s = make_server().start()
    _tree(s)
    _writes(s, 60, 1, "a")
    # Writes keep arriving while the first snapshot is taken.
    stop = threading.Event()
    bg = threading.Thread(target=lambda: [_writes(s, 5, 100 + i, f"bg{i}") for i in range(1000)
                                          if not stop.is_set()])
    bg.start()
    try:
        s1 = snapshot(s)
    finally:
        stop.set()
        bg.join(60)
    for key in ("id", "update_id", "schema_version", "created_at", "bytes", "sha256", "tables", "file"):
        assert key in s1, s1
    assert s1["status"] == "done" and s1["tables"]["sn"] >= 16
    listed = s.get("/admin/snapshots").json()["snapshots"]
    assert [m["id"] for m in listed] == [s1["id"]]
    snapdir = os.path.join(s.dir, "snapshots")
    f1 = os.path.join(snapdir, s1["file"])
    assert subprocess.run(["sha256sum", f1], capture_output=True, text=True).stdout.split()[0] == s1["sha256"]

    _writes(s, 80, 2, "b")
    assert s.post("/tables", {"name": "later", "columns": COLS}).status_code == 201
    assert s.post("/tables/later/rows", {"rows": [{"id": 5, "v": 3}]}).status_code == 201
    s2 = snapshot(s)
    _writes(s, 40, 3, "c")
    assert s.stop() == 0
    ref_end = dump(s.db)

    a = str(tmp_path / "a.duckdb")
    out = restore(s, "--snapshot", s1["id"], "--until", s1["update_id"], "--db", a)
    assert json.loads(out.stdout)["replayed"] == 0
    assert data(dump(a)) == data(dump(_copy(f1, str(tmp_path / "s1copy.duckdb"))))
    # The server's tables, constraints and indexes (table "later" came after).
    assert dump(a)["catalog"].split("\n") == [x for x in ref_end["catalog"].split("\n") if "main.later:" not in x]

    b = str(tmp_path / "b.duckdb")
    out = restore(s, "--snapshot", s1["id"], "--until", s2["update_id"], "--db", b)
    assert json.loads(out.stdout)["replayed"] > 80
    assert "restore:" in out.stderr and "requests/s" in out.stderr  # the progress line
    want = data(dump(_copy(os.path.join(snapdir, s2["file"]), str(tmp_path / "s2copy.duckdb"))))
    assert data(dump(b)) == want
    assert dump(b)["catalog"] == ref_end["catalog"]
    assert "later" in want["tables"]

    c = str(tmp_path / "c.duckdb")
    restore(s, "--snapshot", s1["id"], "--db", c)
    assert dump(c) == ref_end
    # Batches of 3 and a persist per batch: the persister thread writes
    # tail after tail while the next batches apply, and a DDL request
    # (table "later") drains it in the middle; the result is the same.
    c3 = str(tmp_path / "c3.duckdb")
    restore(s, "--snapshot", s1["id"], "--db", c3, env={"DUCKGRID_RESTORE_PERSIST_MAX": "3"})
    assert dump(c3) == ref_end
    # By time: everything up to the second snapshot's update id.
    ms = int(s2["update_id"].split("-")[0])
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"
    d = str(tmp_path / "d.duckdb")
    restore(s, "--snapshot", "latest", "--until-time", iso, "--db", d)
    assert dump(d)["applied"].split("/")[0] <= ref_end["applied"].split("/")[0]
    assert dump(d)["rows:later"] == want["rows:later"]


def test_deleted_database_restored_identical(make_server, tmp_path):
    s = make_server().start()
    _tree(s)
    _writes(s, 50, 4, "x")
    snapshot(s)
    _writes(s, 120, 5, "y")
    # An import (one request, rows by column) is replayed like any write:
    # new ids, parents in the file after their children and in the table.
    csv = b'id,parent_id,name,v\n,900,"a, b",1.25\n,101,,2\n900,1,imp,\n'
    r = requests.post(s.base + "/tables/sn/import", data=csv, timeout=15,
                      headers={**s.headers(), "Content-Type": "text/csv"})
    assert r.status_code == 201 and r.json()["imported"] == 3, r.text
    _writes(s, 20, 6, "z")
    assert s.stop() == 0
    ref = dump(_copy(s.db, str(tmp_path / "ref.duckdb")))
    os.remove(s.db)
    if os.path.exists(s.db + ".wal"):
        os.remove(s.db + ".wal")
    restore(s, "--snapshot", "latest", "--db", str(tmp_path / "small.duckdb"),
            env={"DUCKGRID_RESTORE_PERSIST_MAX": "2"})
    assert dump(str(tmp_path / "small.duckdb")) == ref
    restore(s, "--snapshot", "latest", "--db", s.db)
    assert dump(s.db) == ref
    # The node serves from the restored file and goes on.
    s.start()
    r = s.post("/update_cell", {"table": "sn", "row_id": LEAVES[0], "column": "name", "value": "after"})
    assert r.status_code == 200, r.text
    rows = {row["id"]: row for row in s.get("/tables/sn/rows?limit=10000").json()["rows"]}
    assert rows[LEAVES[0]]["name"] == "after"
    assert s.stop() == 0


def test_refusals(make_server, tmp_path, redis_server):
    s = make_server().start()
    _tree(s)
    snap = snapshot(s)
    _writes(s, 10, 6, "z")
    snapdir = os.path.join(s.dir, "snapshots")

    # Bad input to the route: problem+json, nothing started.
    r = s.post("/admin/snapshots", params={"wait_ms": "soon"})
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/problem+json")
    key = s.post("/admin/keys", {"name": "w", "role": "write"}).json()["key"]
    assert s.post("/admin/snapshots", key=key).status_code == 403
    assert s.get("/admin/snapshots", key=key).status_code == 403
    assert len(s.get("/admin/snapshots").json()["snapshots"]) == 1

    # A running server holds the file: the offline command says what to do.
    out = subprocess.run([BIN, "snapshot"], env=s.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "POST /admin/snapshots" in out.stderr

    # An existing file at --db is never touched.
    existing = tmp_path / "exists.duckdb"
    existing.write_bytes(b"keep me")
    out = restore(s, "--snapshot", snap["id"], "--db", str(existing), expect=1)
    assert "exists" in out.stderr and existing.read_bytes() == b"keep me"
    # Unknown snapshot, bad ids and times.
    assert "no snapshot" in restore(s, "--snapshot", "nope", "--db", str(tmp_path / "n.duckdb"), expect=1).stderr
    restore(s, "--snapshot", "../x", "--db", str(tmp_path / "n.duckdb"), expect=2)
    restore(s, "--snapshot", "latest", "--until", "yesterday", "--db", str(tmp_path / "n.duckdb"), expect=2)
    restore(s, "--snapshot", "latest", "--until-time", "2026-13-01", "--db", str(tmp_path / "n.duckdb"), expect=2)
    out = restore(s, "--snapshot", "latest", "--until", "1-0", "--db", str(tmp_path / "n.duckdb"), expect=1)
    assert "before snapshot" in out.stderr

    # A corrupt snapshot: refused, nothing left behind.
    f = os.path.join(snapdir, snap["file"])
    good = open(f, "rb").read()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    open(f, "wb").write(bytes(bad))
    target = tmp_path / "corrupt.duckdb"
    out = restore(s, "--snapshot", snap["id"], "--db", str(target), expect=1)
    assert "corrupt" in out.stderr and "SHA-256" in out.stderr
    assert not target.exists() and not os.path.exists(str(target) + ".restoring")
    open(f, "wb").write(good)

    # Entries after the snapshot trimmed from request_duck (no archive): refused.
    stream = s.prefix + "request_duck"
    first_after = redis_server.cli("XRANGE", stream, "(" + snap["update_id"], "+", "COUNT", "1").split("\n")[0]
    ms, seq = first_after.split("-")
    assert redis_server.cli("XTRIM", stream, "MINID", f"{ms}-{int(seq) + 1}") != "0"
    target = tmp_path / "trimmed.duckdb"
    out = restore(s, "--snapshot", snap["id"], "--db", str(target), expect=1)
    assert "trimmed" in out.stderr and not target.exists()
    s.stop()


def test_retention_and_offline_snapshot(make_server):
    s = make_server(env={"DUCKGRID_SNAPSHOT_KEEP": "2"}).start()
    _tree(s)
    ids = []
    for i in range(4):
        _writes(s, 3, 7 + i, f"r{i}")
        ids.append(snapshot(s)["id"])
    listed = [m["id"] for m in s.get("/admin/snapshots").json()["snapshots"]]
    assert listed == ids[2:]
    snapdir = os.path.join(s.dir, "snapshots")
    assert sorted(os.listdir(snapdir)) == sorted([i + ".duckdb" for i in ids[2:]] + [i + ".json" for i in ids[2:]])
    assert s.stop() == 0

    # Offline, with an age limit: the older ones go, the newest stays.
    env = dict(s.env, DUCKGRID_SNAPSHOT_KEEP="0", DUCKGRID_SNAPSHOT_MAX_AGE="1s")
    time.sleep(1.2)
    out = subprocess.run([BIN, "snapshot"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    m = json.loads(out.stdout)
    assert sorted(os.listdir(snapdir)) == [m["id"] + ".duckdb", m["id"] + ".json"]
    assert m["tables"]["sn"] >= 16


def _metric(s, name):
    for line in s.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _segments(d):
    out = []
    for f in sorted(os.listdir(d)):
        if f.startswith("seg-") and f.endswith(".json"):
            with open(os.path.join(d, f)) as fh:
                out.append(json.load(fh))
    return sorted(out, key=lambda m: tuple(int(x) for x in m["first_id"].split("-")))


def test_archive_trim_waits_and_restore_past_the_trim(make_server, tmp_path, redis_server):
    arch = str(tmp_path / "archive")
    s = make_server(env={"DUCKGRID_ARCHIVE_DIR": arch, "DUCKGRID_ARCHIVE_INTERVAL_MS": "2500",
                         "DUCKGRID_REQUEST_MAXLEN": "5"}).start()
    stream = s.prefix + "request_duck"
    _tree(s)
    snap = snapshot(s)
    def nothing_lost():
        """Every entry ever added is in a sealed segment or still in Redis:
        the manager trims (DUCKGRID_REQUEST_MAXLEN=5) only what is archived."""
        info = redis_server.cli("XINFO", "STREAM", stream).split("\n")
        added = int(info[info.index("entries-added") + 1])
        segs = _segments(arch)
        archived = sum(m["count"] for m in segs)
        after = "(" + segs[-1]["last_id"] if segs else "-"
        in_redis = len([x for x in redis_server.cli("XRANGE", stream, after, "+").split("\n")
                        if re.fullmatch(r"[0-9]+-[0-9]+", x)])
        return archived + in_redis == added

    for i in range(8):
        _writes(s, 5, 80 + i, f"p{i}")
        assert wait_until(nothing_lost, 5)  # a seal and a trim may fall between the reads
    assert _metric(s, "duckgrid_archive_lag_seconds") is not None
    # Once sealed, the stream is trimmed down to the archived, persisted part.
    assert wait_until(lambda: int(redis_server.cli("XLEN", stream)) <= 10, 20), redis_server.cli("XLEN", stream)
    _writes(s, 30, 9, "q")
    assert wait_until(lambda: _metric(s, "duckgrid_archive_lag_seconds") == 0
                      and int(redis_server.cli("XLEN", stream)) <= 10, 20)
    assert wait_until(nothing_lost, 5)
    segs = _segments(arch)
    assert len(segs) >= 2 and segs[0]["prev_id"] == "0-0"
    for a, b in zip(segs, segs[1:]):
        assert b["prev_id"] == a["last_id"]
    assert sum(m["count"] for m in segs) >= 72  # table, rows, 70 writes
    assert _metric(s, "duckgrid_archive_entries_total") == sum(m["count"] for m in segs)
    # Redis trimmed to empty while the archive holds every entry ever added
    # (its last id is the stream's last-generated-id): restore needs nothing
    # from Redis, and is not refused for the empty stream.
    info = redis_server.cli("XINFO", "STREAM", stream).split("\n")
    assert info[info.index("last-generated-id") + 1] == segs[-1]["last_id"]
    redis_server.cli("XTRIM", stream, "MAXLEN", "0")
    after = [m for m in segs if tuple(map(int, m["last_id"].split("-"))) > tuple(map(int, snap["update_id"].split("-")))]
    out = restore(s, "--snapshot", snap["id"], "--db", str(tmp_path / "e.duckdb"))
    assert json.loads(out.stdout)["update_id"] == segs[-1]["last_id"]
    assert json.loads(out.stdout)["replayed"] >= sum(m["count"] for m in after[1:]) > 0
    # What a leader sets after Redis lost its data (the floor): the entries
    # written next are known to follow the archive without a hole.
    redis_server.cli("XSETID", stream, segs[-1]["last_id"], "MAXDELETEDID", segs[-1]["last_id"])
    _writes(s, 5, 10, "r")  # the newest ones only in Redis
    assert s.stop() == 0
    ref = dump(_copy(s.db, str(tmp_path / "ref.duckdb")))

    # The snapshot's successors are gone from Redis: restore reads the archive, then Redis.
    out = restore(s, "--snapshot", snap["id"], "--db", str(tmp_path / "r.duckdb"))
    assert json.loads(out.stdout)["replayed"] == 75
    assert dump(str(tmp_path / "r.duckdb")) == ref
    # Without the archive the same restore is refused.
    env = dict(s.env)
    env.pop("DUCKGRID_ARCHIVE_DIR")
    out = subprocess.run([BIN, "restore", "--snapshot", snap["id"], "--db", str(tmp_path / "x.duckdb")], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "no longer holds every entry" in out.stderr
    # A corrupt segment: refused, naming it; a missing one: refused. Only
    # segments after the snapshot's update id are needed (a slow machine may
    # seal one holding only the requests before it).
    xid = lambda t: tuple(map(int, t.split("-")))  # noqa: E731
    needed = [m for m in segs if xid(m["last_id"]) > xid(snap["update_id"])]
    assert needed, (segs, snap["update_id"])
    f = os.path.join(arch, needed[-1]["file"])
    good = open(f, "rb").read()
    open(f, "wb").write(good[:-1] + bytes([good[-1] ^ 1]))
    out = restore(s, "--snapshot", snap["id"], "--db", str(tmp_path / "c.duckdb"), expect=1)
    assert "corrupt" in out.stderr and needed[-1]["file"] in out.stderr
    assert not (tmp_path / "c.duckdb").exists()
    open(f, "wb").write(good)
    os.rename(os.path.join(arch, needed[0]["file"].replace(".duckdb", ".json")), str(tmp_path / "away.json"))
    out = restore(s, "--snapshot", snap["id"], "--db", str(tmp_path / "m.duckdb"), expect=1)
    assert "missing" in out.stderr or "trimmed" in out.stderr


def test_snapshot_on_a_follower_bootstraps_a_new_follower(make_server, tmp_path):
    """The issue asks for snapshots taken on a follower where one exists, so
    the leader never pauses: a follower's snapshot holds every write the
    leader answered before it was asked. A new node restored from it (while
    the others run) follows from there and ends with the leader's tables."""
    from test_followers import cluster, role
    lead, fol = cluster(make_server, "snf:", n=2)
    _tree(lead)
    last = _writes(lead, 40, 6, "f")
    m = snapshot(fol)
    xid = lambda t: tuple(map(int, t.split("-")))  # noqa: E731
    assert xid(m["update_id"]) >= xid(last), (m, last)
    assert m["tables"]["sn"] >= 16
    assert os.path.exists(os.path.join(fol.dir, "snapshots", m["file"]))
    assert not os.path.exists(os.path.join(lead.dir, "snapshots"))
    _writes(lead, 20, 7, "g")
    # A third node: its database restored from the follower's snapshot
    # (and the log after it), then started as one more follower.
    new = make_server(prefix="snf:", admin_key=lead.admin_key,
                      env={"DUCKGRID_KEY_PEPPER_FILE": lead.db + ".pepper"})
    out = restore(fol, "--snapshot", m["id"], "--db", new.db)
    assert json.loads(out.stdout)["replayed"] >= 20
    new.start()
    assert wait_until(lambda: role(new) == "follower", 10), new.logs()
    last = _writes(lead, 10, 8, "h")
    r = new.get(f"/tables/sn/rows?limit=10000&min_update={last}")
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == lead.get("/tables/sn/rows?limit=10000").json()["rows"]
    assert role(lead) == "leader" and role(fol) == "follower"
    for s in (new, fol, lead):
        assert s.stop() == 0
    assert dump(new.db) == dump(lead.db)


def test_a_new_node_after_trimming_starts_from_a_snapshot_or_refuses(make_server, tmp_path, redis_server):
    """Once Redis trimmed request_duck, a node without a database cannot
    start from the log: it copies the newest snapshot the log still follows
    from the snapshot directory (nodes may share one), or refuses to start
    with a message saying what to do -- never builds a state without the
    trimmed requests."""
    from test_followers import cluster, role
    shared = str(tmp_path / "shared-snapshots")
    env = {"DUCKGRID_REQUEST_MAXLEN": "40", "DUCKGRID_SNAPSHOT_DIR": shared}
    lead, fol = cluster(make_server, "boot:", n=2, env=env)
    _tree(lead)
    _writes(lead, 120, 9, "t")
    stream = lead.prefix + "request_duck"

    def xlen():
        r = requests.get(lead.base + "/health", timeout=5)  # keeps the persister moving
        assert r.status_code == 200
        return int(redis_server.cli("XLEN", stream))
    assert lead.get("/tables/sn").status_code == 200  # a read: everything persisted
    assert wait_until(lambda: xlen() <= 41, 20), xlen()

    # No snapshot yet: a new node refuses to start, and says why.
    pepper = {"DUCKGRID_KEY_PEPPER_FILE": lead.db + ".pepper"}
    bad = make_server(prefix="boot:", admin_key=lead.admin_key, env=dict(env, **pepper))
    bad.start(wait=False)
    assert bad.proc.wait(30) == 1
    text = bad.logs()
    assert "no database" in text and "duckgrid restore" in text and "trimmed" in text, text
    assert not os.path.exists(bad.db)
    bad.proc = None

    m = snapshot(fol)  # into the shared directory
    _writes(lead, 10, 10, "u")
    new = make_server(prefix="boot:", admin_key=lead.admin_key, env=dict(env, **pepper))
    new.start()
    assert wait_until(lambda: role(new) == "follower", 10), new.logs()
    assert "starts from snapshot " + m["id"] in new.logs()
    last = _writes(lead, 5, 11, "v")
    r = new.get(f"/tables/sn/rows?limit=10000&min_update={last}")
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == lead.get("/tables/sn/rows?limit=10000").json()["rows"]
    for s in (new, fol, lead):
        assert s.stop() == 0
    assert dump(new.db) == dump(lead.db)


def _insert_fails(path, tmp_path, sql):
    """Runs sql on a copy of the DuckDB file at path: the error, or None."""
    f = _copy(path, str(tmp_path / "probe.duckdb"))
    out = subprocess.run([MKDB, f, sql], capture_output=True, text=True, timeout=120)
    os.remove(f)
    return out.stderr if out.returncode != 0 else None


def _keys_hold(path, tmp_path):
    """A duplicate id (primary key) and a duplicate table name are refused
    by DuckDB itself in the file at path; a new id is not."""
    err = _insert_fails(path, tmp_path, "INSERT INTO main.sn (id, parent_id) VALUES (1, NULL)")
    assert err and "Duplicate key" in err, err
    err = _insert_fails(path, tmp_path, "INSERT INTO dg.tables (name) VALUES ('sn')")
    assert err and "Duplicate key" in err, err
    assert _insert_fails(path, tmp_path, "INSERT INTO main.sn (id, parent_id) VALUES (987654, NULL)") is None


def test_snapshot_leaves_keys_to_the_consumer(make_server, tmp_path):
    """Format 2: keyed tables are copied as data alone (no index to build
    while the snapshot runs), the manifest says what the consumer rebuilds,
    and restore rebuilds it: the restored file has the server's tables,
    constraints and rows, and its keys refuse a duplicate."""
    s = make_server().start()
    _tree(s)
    _writes(s, 30, 12, "k")
    m = snapshot(s)
    assert m["format"] == 2, m
    keyed = {r["table"]: r.get("keys") for r in m["rebuild"]}
    assert keyed["main.sn"] == "PRIMARY KEY(id)" and keyed["dg.tables"] == "PRIMARY KEY(\"name\")", keyed
    assert "UNIQUE(hash)" in keyed["dg.api_keys"], keyed
    for key in ("id", "update_id", "schema_version", "bytes", "sha256", "tables", "file"):
        assert key in m, m
    # The file itself: main.sn without its key, what to rebuild, and a
    # schema version no duckgrid migrates to (an older one refuses it).
    raw = _copy(os.path.join(s.dir, "snapshots", m["file"]), str(tmp_path / "raw.duckdb"))
    assert "constraint main.sn: PRIMARY KEY" not in catalog(raw)
    assert int(_sql1(raw, "SELECT max(version) FROM s.dg.schema_version")) == m["schema_version"] + 1000000
    assert _sql1(raw, "SELECT count(*) FROM s.dg.snapshot_rebuild WHERE kind = 'table' AND name = 'sn'") == "1"
    assert _insert_fails(raw, tmp_path, "INSERT INTO main.sn (id, parent_id) VALUES (1, NULL)") is None

    _writes(s, 20, 13, "l")
    assert s.stop() == 0
    ref = dump(s.db)
    assert "constraint main.sn: PRIMARY KEY PRIMARY KEY(id) [id]" in ref["catalog"]
    r = str(tmp_path / "r.duckdb")
    out = json.loads(restore(s, "--snapshot", m["id"], "--db", r).stdout)
    assert out["snapshot_format"] == 2 and out["rebuild_s"] > 0 and out["replayed"] >= 20, out
    assert dump(r) == ref
    assert _sql1(r, "SELECT count(*) FROM duckdb_tables() WHERE database_name = 's' "
                    "AND table_name IN ('snapshot_rebuild', 'sn__dg_rebuild')") == "0"
    _keys_hold(r, tmp_path)
    # Restored up to the snapshot alone (nothing replayed): the same keys.
    r0 = str(tmp_path / "r0.duckdb")
    out = json.loads(restore(s, "--snapshot", m["id"], "--until", m["update_id"], "--db", r0).stdout)
    assert out["replayed"] == 0
    assert int(_sql1(r0, "SELECT max(version) FROM s.dg.schema_version")) == m["schema_version"]
    _keys_hold(r0, tmp_path)


def test_old_format_snapshot_restores(make_server, tmp_path):
    """A snapshot written before format 2 (a whole COPY FROM DATABASE, no
    "format" in its manifest) still restores, to the server's own database;
    a manifest of an unknown format is refused."""
    s = make_server().start()
    _tree(s)
    _writes(s, 30, 14, "o")
    assert s.stop() == 0
    snapdir = os.path.join(s.dir, "snapshots")
    os.makedirs(snapdir, exist_ok=True)
    sid = "snap-20261201T000000-000"
    f = os.path.join(snapdir, sid + ".duckdb")
    # What the old dg_snapshot_take did, on the stopped server's file.
    out = subprocess.run([MKDB, ":memory:", f"ATTACH '{s.db}' AS src (READ_ONLY)", f"ATTACH '{f}' AS o",
                          "COPY FROM DATABASE src TO o", "SELECT last_id FROM src.dg.applied", "DETACH o"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    applied = out.stdout.split()[-1]
    sha = subprocess.run(["sha256sum", f], capture_output=True, text=True).stdout.split()[0]
    man = {"id": sid, "update_id": applied, "schema_version": int(_sql1(s.db, "SELECT max(version) FROM "
                                                                                 "s.dg.schema_version")),
           "created_at": "2026-12-01T00:00:00.000Z", "created_ms": 1796083200000, "file": sid + ".duckdb",
           "bytes": os.path.getsize(f), "sha256": sha, "tables": {"sn": 16}, "copy_ms": 1, "took_ms": 1,
           "duckdb": "v1.4.4"}
    with open(os.path.join(snapdir, sid + ".json"), "w") as fh:
        json.dump(man, fh)
    assert "PRIMARY KEY PRIMARY KEY(id)" in catalog(f)  # the old format holds its keys

    s.start()
    _writes(s, 20, 15, "p")
    assert s.stop() == 0
    ref = dump(s.db)
    r = str(tmp_path / "r.duckdb")
    out = json.loads(restore(s, "--snapshot", sid, "--db", r).stdout)
    assert out["snapshot_format"] == 1 and out["rebuild_s"] == 0 and out["replayed"] >= 20, out
    assert dump(r) == ref
    _keys_hold(r, tmp_path)

    # A format this duckgrid does not know: refused, nothing made.
    with open(os.path.join(snapdir, sid + ".json"), "w") as fh:
        json.dump(dict(man, format=99), fh)
    out = restore(s, "--snapshot", sid, "--db", str(tmp_path / "n.duckdb"), expect=1)
    assert "format 99" in out.stderr and not os.path.exists(str(tmp_path / "n.duckdb"))
