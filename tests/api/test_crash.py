"""kill -9 during an async write load, restart, and check the write path's
promises (DESIGN.md "Never lose a write", API.md "Updates"):

  - no accepted request is lost: every 202 gets exactly one outcome;
  - none is applied twice: each write adds 1 to a leaf, so every leaf must
    end at exactly the number of distinct requests aimed at it;
  - requests whose fate the client could not know (connection dropped or
    refused around the kill) are retried after the restart with the same
    request_id, and are applied exactly once too;
  - Σ children == parent holds on every parent afterwards.

Each round kills the server at a different moment (early: ~100 accepted,
late: ~1,200 accepted of 1,500), on the same database, Redis and prefix.
"""
import collections
import signal
import threading
import time
from decimal import Decimal

import requests

from helpers import check_invariant, outcomes_in, requests_in, updates_since

MIDS = [10, 20, 30, 40]
LEAVES = [m * 10 + k for m in MIDS for k in range(1, 6)]          # 20 leaves, 101..405
THREADS = 6
PER_THREAD = 250                                                   # 1,500 requests a round


def make_tree(s):
    r = s.post("/tables", {"name": "crash", "columns": [{"name": "v", "type": "number", "scale": 2}]})
    assert r.status_code == 201, r.text
    rows = [{"id": 1}] + [{"id": m, "parent_id": 1} for m in MIDS]
    rows += [{"id": leaf, "parent_id": leaf // 10} for leaf in LEAVES]
    r = s.post("/tables/crash/rows", {"rows": rows})
    assert r.status_code == 201, r.text


def add_one(s, sess, rid, leaf, timeout=5):
    return sess.post(s.base + "/update_cell?async=true", headers=s.headers(), timeout=timeout,
                     json={"table": "crash", "row_id": leaf, "column": "v", "value": 1, "mode": "add",
                           "request_id": rid})


def run_round(redis, s, name, kill_after):
    """Fires THREADS x PER_THREAD async adds, kills the server once
    `kill_after` are accepted, restarts it and retries what was not
    accepted. Returns (accepted {rid: (stream_id, leaf)}, target {rid: leaf},
    failure counts)."""
    accepted = {}
    unknown = {}                 # rid -> leaf: refused, dropped, or 503
    failures = collections.Counter()
    unexpected = []
    lock = threading.Lock()
    enough = threading.Event()

    def client(k):
        sess = requests.Session()
        for i in range(PER_THREAD):
            rid = f"crash-{name}-{k}-{i}"
            leaf = LEAVES[(k * 7 + i * 3) % len(LEAVES)]
            try:
                r = add_one(s, sess, rid, leaf)
                if r.status_code == 202:
                    body = r.json()
                    with lock:
                        if body.get("request_id") != rid or body.get("status") != "queued":
                            unexpected.append(r.text)
                        accepted[rid] = (body["stream_id"], leaf)
                        if len(accepted) >= kill_after:
                            enough.set()
                    continue
                with lock:
                    failures[r.status_code] += 1
                    if r.status_code != 503:
                        unexpected.append(f"{r.status_code}: {r.text}")
            except (requests.ConnectionError, requests.Timeout) as e:
                with lock:
                    failures[type(e).__name__] += 1
                sess = requests.Session()
            with lock:
                unknown[rid] = leaf

    threads = [threading.Thread(target=client, args=(k,)) for k in range(THREADS)]
    for th in threads:
        th.start()
    assert enough.wait(60), f"only {len(accepted)} requests were accepted"
    s.stop(signal.SIGKILL)
    prefix = f"crash-{name}-"
    done_at_kill = sum(1 for _, o in outcomes_in(redis, s) if str(o.get("request_id")).startswith(prefix))
    for th in threads:
        th.join(120)
        assert not th.is_alive()
    assert not unexpected, unexpected[:5]
    n_at_kill = len(accepted)
    assert n_at_kill >= kill_after
    s.start()

    # Retry every request whose fate is unknown, with the same request_id.
    sess = requests.Session()
    for rid, leaf in sorted(unknown.items()):
        r = add_one(s, sess, rid, leaf, timeout=15)
        assert r.status_code == 202, r.text
    target = {rid: leaf for rid, (_, leaf) in accepted.items()}
    target.update(unknown)
    assert len(target) == THREADS * PER_THREAD
    print(f"round {name}: killed with {n_at_kill} accepted, {done_at_kill} of them with an outcome")
    return accepted, target, failures


def wait_for_outcomes(redis, s, rids, deadline=60.0):
    end = time.monotonic() + deadline
    while True:
        outs = [o for _, o in outcomes_in(redis, s) if o.get("request_id") in rids]
        if {o["request_id"] for o in outs} >= rids or time.monotonic() > end:
            return outs
        time.sleep(0.5)


def test_kill_9_during_async_load_then_restart(make_server, redis_server):
    s = make_server().start()
    make_tree(s)
    expected = collections.Counter()          # leaf -> adds that must be applied, all rounds
    for name, kill_after in (("early", 100), ("late", 1200)):
        accepted, target, failures = run_round(redis_server, s, name, kill_after)
        expected.update(target.values())
        rids = set(target)

        outs = wait_for_outcomes(redis_server, s, rids)
        per_rid = collections.Counter(o["request_id"] for o in outs)
        missing = rids - set(per_rid)
        assert not missing, f"{name}: {len(missing)} requests have no outcome, e.g. {sorted(missing)[:5]}\n" + s.logs()
        twice = {r: n for r, n in per_rid.items() if n != 1}
        assert not twice, f"{name}: requests with more than one outcome: {list(twice.items())[:5]}"
        for o in outs:
            assert "_invalid_json" not in o, o
            assert o["status"] == "applied", o
            rid = o["request_id"]
            if rid in accepted:
                # the outcome answers the very entry the 202 named
                assert o["stream_id"] == accepted[rid][0], (o, accepted[rid])
            assert o["update_id"] and o["op"] == "update_cell"
            (c_leaf,) = [c for c in o["changes"] if c["row_id"] == target[rid]]
            assert Decimal(str(c_leaf["new"])) - Decimal(str(c_leaf["old"])) == 1

        # every request of the round reached request_duck at least once;
        # in-flight ones around the kill and the retries may be there twice
        queued = collections.Counter(q["request_id"] for _, q in requests_in(redis_server, s)
                                     if q.get("request_id") in rids)
        assert set(queued) == rids
        assert max(queued.values()) <= 2

        # get_updates agrees: exactly one update per request
        seen = collections.Counter(u["request_id"] for u in updates_since(s, table="crash")
                                   if u["request_id"] in rids)
        assert seen == collections.Counter({r: 1 for r in rids}), \
            f"{name}: get_updates per request differs: {[(r, n) for r, n in seen.items() if n != 1][:5]}, " \
            f"missing {sorted(rids - set(seen))[:5]}"

        # applied exactly once: each leaf == number of distinct adds aimed at it
        by_id = check_invariant(s, "crash", ["v"])
        for leaf in LEAVES:
            assert by_id[leaf]["v"] == expected[leaf], (name, leaf, by_id[leaf]["v"], expected[leaf])
        assert by_id[1]["v"] == sum(expected.values())
        print(f"round {name}: accepted before kill {len(accepted)}, retried {len(rids) - len(accepted)}, "
              f"client failures {dict(failures)}, queued twice {sum(1 for n in queued.values() if n == 2)}")
    # a clean stop at the end
    assert s.stop() == 0
