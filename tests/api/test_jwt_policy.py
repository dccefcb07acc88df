"""JWT policy (issue 14, item 7): iss and aud are required whenever a JWT
key is configured (a clear start-up error otherwise), and token lifetime
is capped (DUCKGRID_JWT_MAX_LIFETIME_S, default 24 h)."""
import subprocess
import time

import jwt
import pytest

from conftest import BIN

SEC = "jwt-policy-secret-" + "k" * 30


@pytest.mark.parametrize("env", [{}, {"DUCKGRID_JWT_ISSUER": "t"}, {"DUCKGRID_JWT_AUDIENCE": "dg"}])
def test_a_jwt_key_without_iss_and_aud_stops_the_start(make_server, env):
    s = make_server(env=dict({"DUCKGRID_JWT_SECRET": SEC}, **env))
    p = subprocess.run([BIN, "serve"], env=s.env, cwd=s.dir, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p.stderr
    assert "DUCKGRID_JWT_ISSUER and DUCKGRID_JWT_AUDIENCE are required" in p.stderr, p.stderr


def tok(lifetime, iat=True):
    now = int(time.time())
    c = {"sub": "u", "role": "read", "iss": "t", "aud": "dg", "exp": now + lifetime, "jti": f"life-{lifetime}-{iat}"}
    if iat:
        c["iat"] = now
    return jwt.encode(c, SEC, algorithm="HS256")


def test_token_lifetime_is_capped(make_server):
    s = make_server(env={"DUCKGRID_JWT_SECRET": SEC, "DUCKGRID_JWT_ISSUER": "t",
                         "DUCKGRID_JWT_AUDIENCE": "dg"}).start()
    assert s.get("/tables", key=tok(3600)).status_code == 200
    r = s.get("/tables", key=tok(2 * 86400))
    assert r.status_code == 401 and "lifetime" in r.json()["detail"], r.text
    r = s.get("/tables", key=tok(2 * 86400, iat=False))
    assert r.status_code == 401, r.text
    s.stop()
    s.env["DUCKGRID_JWT_MAX_LIFETIME_S"] = "600"
    s.start()
    assert s.get("/tables", key=tok(300)).status_code == 200
    assert s.get("/tables", key=tok(3600)).status_code == 401


def test_a_revoked_jti_is_refused_and_its_stream_ends(make_server):
    from test_events import SSE
    s = make_server(env={"DUCKGRID_JWT_SECRET": SEC, "DUCKGRID_JWT_ISSUER": "t",
                         "DUCKGRID_JWT_AUDIENCE": "dg"}).start()
    now = int(time.time())
    claims = {"sub": "u", "role": "read", "iss": "t", "aud": "dg", "iat": now, "exp": now + 600}
    t1 = jwt.encode(dict(claims, jti="tok-1"), SEC, algorithm="HS256")
    t2 = jwt.encode(dict(claims, jti="tok-2"), SEC, algorithm="HS256")
    assert s.get("/tables", key=t1).status_code == 200

    class K:
        admin_key = t1
        port = s.port
    sse = SSE(K)
    assert sse.status == 200
    r = s.post("/admin/tokens/revoke", {"jti": "tok-1"}, key=t2)
    assert r.status_code == 403  # admin only
    r = s.post("/admin/tokens/revoke", {"jti": "tok-1"})
    assert r.status_code == 204, r.text
    assert s.post("/admin/tokens/revoke", {"jti": "tok-1"}).status_code == 204
    assert s.post("/admin/tokens/revoke", {"jti": ""}).status_code == 400
    r = s.get("/tables", key=t1)
    assert r.status_code == 401 and "revoked" in r.json()["detail"], r.text
    assert s.get("/tables", key=t2).status_code == 200
    # the audit log says who revoked what, and who was denied (a JWT caller)
    acts = [(e["action"], e["detail"], e["actor"]) for e in s.get("/admin/audit?limit=50").json()["entries"]]
    assert any(a == "token.revoke" and "tok-1" in d and "bootstrap-admin" in w for a, d, w in acts), acts
    assert any(a == "admin.denied" and "/admin/tokens/revoke" in d and w.startswith("jwt:") for a, d, w in acts), acts
    deadline = time.monotonic() + 5
    ev = None
    while time.monotonic() < deadline:
        ev = sse.next(timeout=5)
        if ev is None or ev.get("event") == "revoked":
            break
    sse.close()
    assert ev is not None and ev.get("event") == "revoked", ev


def test_a_token_without_jti_is_refused(make_server):
    """Every token must be revocable (POST /admin/tokens/revoke names its
    jti), so a token without one is refused with a clear reason."""
    s = make_server(env={"DUCKGRID_JWT_SECRET": SEC, "DUCKGRID_JWT_ISSUER": "t",
                         "DUCKGRID_JWT_AUDIENCE": "dg"}).start()
    now = int(time.time())
    claims = {"sub": "u", "role": "read", "iss": "t", "aud": "dg", "iat": now, "exp": now + 600}
    r = s.get("/tables", key=jwt.encode(claims, SEC, algorithm="HS256"))
    assert r.status_code == 401 and "jti" in r.json()["detail"], r.text
    r = s.get("/tables", key=jwt.encode(dict(claims, jti=""), SEC, algorithm="HS256"))
    assert r.status_code == 401 and "jti" in r.json()["detail"], r.text
    assert s.get("/tables", key=jwt.encode(dict(claims, jti="j-1"), SEC, algorithm="HS256")).status_code == 200
