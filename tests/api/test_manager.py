"""The manager's lease: one leader per stream prefix, a follower that takes
over when the leader stops (lease released) or dies (lease lapses).
Followers as read replicas: tests/api/test_followers.py."""
import signal
import time

import requests

from conftest import wait_until


def manager_state(s):
    return requests.get(s.base + "/health", timeout=5).json()["manager"]


def test_second_process_follows_and_takes_over(make_server):
    a = make_server(prefix="lease-a:").start()
    assert wait_until(lambda: manager_state(a) == "leader", 10)
    b = make_server(prefix="lease-a:").start()
    assert wait_until(lambda: manager_state(b) == "follower", 10)
    time.sleep(0.5)
    assert manager_state(a) == "leader"
    # A clean stop releases the lease: B leads within a second or two.
    assert a.stop() == 0
    t0 = time.monotonic()
    assert wait_until(lambda: manager_state(b) == "leader", 10)
    assert time.monotonic() - t0 < 5


def test_follower_takes_over_after_a_crash(make_server):
    a = make_server(prefix="lease-b:").start()
    assert wait_until(lambda: manager_state(a) == "leader", 10)
    b = make_server(prefix="lease-b:").start()
    assert wait_until(lambda: manager_state(b) == "follower", 10)
    a.stop(signal.SIGKILL)
    # The lease (DUCKGRID_LEASE_MS, 1.5 s) lapses; B takes over.
    assert wait_until(lambda: manager_state(b) == "leader", 20)


def test_same_database_twice_fails_fast(make_server, server):
    s = make_server(workdir=None)
    s.env["DUCKGRID_DB"] = server.db
    s.start(wait=False)
    assert s.proc.wait(20) == 2
    assert "database" in s.logs()
