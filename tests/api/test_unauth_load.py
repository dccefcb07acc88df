"""Unauthenticated load (issue 14, item 6): a per-IP cap on open
connections, enforced at accept before any key is looked at (on by
default), and a negative cache so a flood of made-up keys costs an HMAC
each, not a DuckDB lookup."""
import re
import socket
import subprocess
import time

import requests

from conftest import BIN


def closed_by_server(c):
    """True when the server has closed c (EOF waiting to be read)."""
    c.setblocking(False)
    try:
        return c.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    finally:
        c.setblocking(True)


def test_connections_per_ip_are_capped_before_auth(make_server):
    s = make_server(env={"DUCKGRID_IP_CONNECTIONS": "4"}).start()
    idle = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(4)]
    # One try only, once the server surely holds the four: a try that came
    # first would take a slot itself. The start-up health check's own
    # connection may still have counted when the four came, and then one of
    # them was refused: it is opened again (bounded) until the server holds
    # four idle ones.
    time.sleep(1.0)
    for _ in range(10):
        gone = [i for i, c in enumerate(idle) if closed_by_server(c)]
        if not gone:
            break
        for i in gone:
            idle[i].close()
            idle[i] = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        time.sleep(1.0)
    assert not [c for c in idle if closed_by_server(c)], "the server did not keep four idle connections"
    try:
        requests.get(s.base + "/health", timeout=5)
        refused = False
    except requests.exceptions.ConnectionError:
        refused = True
    assert refused, "a fifth connection from one IP was served"
    for c in idle:
        c.close()
    time.sleep(0.3)
    assert requests.get(s.base + "/health", timeout=5).status_code == 200


def test_the_cap_is_on_by_default():
    out = subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout + \
        subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True).stdout
    assert re.search(r"DUCKGRID_IP_CONNECTIONS .*default 256", out), out


def test_unknown_keys_are_refused_from_a_negative_cache(server):
    bad = {"Authorization": "Bearer dg_not-a-key-" + "x" * 30}
    for _ in range(30):
        assert requests.get(server.base + "/tables", headers=bad, timeout=5).status_code == 401
    text = server.get("/metrics").text
    m = re.search(r"^duckgrid_auth_unknown_key_cache_hits_total (\d+)$", text, re.M)
    assert m and int(m.group(1)) >= 29, text[-2000:]


def test_requests_per_ip_are_rate_limited_before_auth(make_server):
    """A burst over DUCKGRID_IP_RATE is 429 with Retry-After, decided
    before the key is looked at: made-up keys then cost no HMAC or cache
    lookup (the negative-cache counter does not move), and a good key from
    the same address is refused too until a token is back."""
    s = make_server(env={"DUCKGRID_IP_RATE": "2", "DUCKGRID_IP_BURST": "5"}).start()
    time.sleep(3)  # the health polls of start() took tokens; let the bucket refill
    bad = {"Authorization": "Bearer dg_not-a-key-" + "y" * 30}
    codes = []
    with requests.Session() as sess:
        for _ in range(12):
            codes.append(sess.get(s.base + "/tables", headers=bad, timeout=5).status_code)
        limited = sess.get(s.base + "/tables", headers=s.headers(), timeout=5)
    assert codes[0] == 401 and codes.count(429) >= 5, codes
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["Content-Type"].startswith("application/problem+json")
    time.sleep(2.5)
    m = s.get("/metrics")
    assert m.status_code == 200, m.text
    hits = re.search(r"^duckgrid_auth_unknown_key_cache_hits_total (\d+)$", m.text, re.M)
    assert hits and int(hits.group(1)) <= 5, hits  # only the requests let through reached auth


def test_the_ip_rate_is_on_by_default():
    out = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True).stdout + \
        subprocess.run([BIN, "--help"], capture_output=True, text=True).stdout
    assert re.search(r"DUCKGRID_IP_RATE .*default 2000", out), out
