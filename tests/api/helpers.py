"""Shared helpers for the write-path and crash tests: a tiny RESP client for
reading the streams directly, problem+json assertions, paging through a
table's rows and checking the hierarchy invariant with exact decimals."""
import json
import re
import socket
import time
from decimal import Decimal


class Resp:
    """A minimal synchronous Redis client (RESP2) over one socket, for
    reading streams in tests without a subprocess per call."""

    def __init__(self, redis):
        self.sock = socket.create_connection(("127.0.0.1", redis.port), timeout=30)
        self.f = self.sock.makefile("rb")
        assert self.cmd("AUTH", redis.password) == "OK"

    def close(self):
        try:
            self.f.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def cmd(self, *args):
        self.send(*args)
        return self._read()

    def send(self, *args):
        """Sends one command without reading its reply (pipelining: read
        the replies in order with _read)."""
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(out))

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError("redis error: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2].decode()
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise RuntimeError("bad RESP line %r" % line)


def xlen(redis, key):
    with Resp(redis) as r:
        return r.cmd("XLEN", key)


def xrange_json(redis, key, field):
    """All entries of a stream as [(id, decoded JSON of `field`)], paged."""
    out = []
    start = "-"
    with Resp(redis) as r:
        while True:
            page = r.cmd("XRANGE", key, start, "+", "COUNT", 2000)
            if not page:
                break
            for eid, fields in page:
                d = dict(zip(fields[::2], fields[1::2]))
                out.append((eid, _decode(d[field])))
            ms, seq = page[-1][0].split("-")
            start = f"{ms}-{int(seq) + 1}"
            if len(page) < 2000:
                break
    return out


def _decode(text):
    """JSON of a stream entry; an entry that is not JSON (a server bug) is
    kept as {"_invalid_json": text, "request_id": …} so that counting by
    request_id still works and a test can assert validity explicitly."""
    try:
        return json.loads(text)
    except ValueError:
        m = re.search(r'"request_id":"([^"]*)"', text)
        return {"_invalid_json": text, "request_id": m.group(1) if m else None}


def requests_in(redis, s):
    """[(stream id, request JSON)] of request_duck."""
    return xrange_json(redis, s.prefix + "request_duck", "req")


def outcomes_in(redis, s):
    """[(update id, outcome JSON)] of response_duck."""
    return xrange_json(redis, s.prefix + "response_duck", "res")


def new_key(s, role, tables=None, expires_at=None):
    """A new API key made through POST /admin/keys (its JSON, with "key")."""
    body = {"name": f"ks-{role}-{time.monotonic_ns()}", "role": role}
    if tables is not None:
        body["tables"] = tables
    if expires_at is not None:
        body["expires_at"] = expires_at
    r = s.post("/admin/keys", body)
    assert r.status_code == 201, r.text
    return r.json()


def problem(r, status, code=None):
    """Asserts r is an RFC 9457 problem with this status; returns the body."""
    codes = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
             405: "method_not_allowed", 409: "conflict", 410: "gone", 413: "payload_too_large",
             429: "too_many_requests", 500: "internal", 503: "unavailable", 504: "timeout"}
    assert r.status_code == status, f"{r.request.method} {r.request.url}: want {status}, got {r.status_code}: {r.text}"
    assert r.headers.get("Content-Type", "").startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status, body
    assert body["code"] == (code or codes[status]), body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    return body


def D(x):
    """Exact Decimal of a JSON number/str (requests parses numbers as float;
    use raw text parsing where the digits matter)."""
    return Decimal(str(x))


def jloads(text):
    """json.loads keeping every number exact (Decimal), as the raw text has it."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def row(s, table, rid):
    r = s.get(f"/tables/{table}/rows/{rid}")
    assert r.status_code == 200, r.text
    return jloads(r.text)


def cell(s, table, rid, col):
    return row(s, table, rid)[col]


def all_rows(s, table, page=10000):
    """Every row of a table via keyset paging (limit=10000&after=…)."""
    rows = []
    after = None
    while True:
        q = f"/tables/{table}/rows?limit={page}" + (f"&after={after}" if after is not None else "")
        r = s.get(q, timeout=120)
        assert r.status_code == 200, r.text
        body = jloads(r.text)
        rows.extend(body["rows"])
        if body["next"] is None:
            break
        after = body["next"]
    return rows


def check_invariant(s, table, number_cols):
    """Every parent == Σ children, exactly, for every number column.
    Returns {id: row} for further checks."""
    rows = all_rows(s, table)
    by_id = {int(x["id"]): x for x in rows}
    assert len(by_id) == len(rows), "a row id appears twice in the listing"
    sums = {}
    for x in rows:
        p = x["parent_id"]
        if p is None:
            continue
        p = int(p)
        assert p in by_id, f"row {x['id']} has parent {p}, which is not listed"
        acc = sums.setdefault(p, {c: Decimal(0) for c in number_cols})
        for c in number_cols:
            acc[c] += x[c]
    for p, acc in sums.items():
        for c in number_cols:
            assert by_id[p][c] == acc[c], f"{table}: row {p} column {c} is {by_id[p][c]}, children sum to {acc[c]}"
    return by_id


def updates_since(s, since="0", limit=1000, table=None):
    """Every update from `since` to the end of response_duck via get_updates."""
    out = []
    cur = since
    while True:
        q = f"/get_updates?since={cur}&limit={limit}" + (f"&table={table}" if table else "")
        r = s.get(q, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        out.extend(body["updates"])
        if body["next"] == cur or (not body["updates"] and table is None):
            break
        cur = body["next"]
    return out
