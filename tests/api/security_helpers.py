"""Helpers for test_security.py: raw HTTP over a socket (exact bytes on the
wire, for hostile paths), a read-only DuckDB reader through libduckdb (to
look at the audit log and the key table after a server stops), a test CA
made with the openssl CLI, and JWT/JWKS material made with PyJWT and
cryptography."""
import base64
import ctypes
import hashlib
import hmac
import http.client
import json
import os
import socket
import ssl
import subprocess
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# ---- raw HTTP ------------------------------------------------------------------

def raw_http(port, method, target, headers=None, body=b"", timeout=15, tls_ca=None):
    """Sends exactly `method target HTTP/1.1` (target: bytes, not re-encoded)
    with the given headers and body; returns (status, headers dict, body).
    The connection is closed after one request."""
    if isinstance(target, str):
        target = target.encode()
    if isinstance(body, str):
        body = body.encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls_ca:
        ctx = ssl.create_default_context(cafile=tls_ca)
        sock = ctx.wrap_socket(sock, server_hostname="127.0.0.1")
    h = {"Host": f"127.0.0.1:{port}", "Connection": "close"}
    if body or method in ("POST", "PUT", "PATCH"):
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(body))
    h.update(headers or {})
    lines = [method.encode() + b" " + target + b" HTTP/1.1"]
    for k, v in h.items():
        lines.append((k.encode() if isinstance(k, str) else k) + b": " +
                     (v.encode() if isinstance(v, str) else v))
    try:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        resp = http.client.HTTPResponse(sock, method=method)
        resp.begin()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        sock.close()


# ---- DuckDB, read-only, through the same libduckdb the server uses -----------

class DuckReader:
    """Opens a DuckDB file READ_ONLY (the server must be stopped) and runs
    queries, every value as text (None for NULL)."""

    def __init__(self, path, read_only=True):
        lib_path = os.path.join(ROOT, "third_party", "duckdb", "lib", "libduckdb.so")
        self.lib = lib = ctypes.CDLL(lib_path)
        lib.duckdb_open_ext.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
                                        ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p)]
        lib.duckdb_create_config.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.duckdb_set_config.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
        lib.duckdb_destroy_config.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.duckdb_connect.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)]
        lib.duckdb_query.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        lib.duckdb_row_count.argtypes = [ctypes.c_void_p]
        lib.duckdb_row_count.restype = ctypes.c_uint64
        lib.duckdb_column_count.argtypes = [ctypes.c_void_p]
        lib.duckdb_column_count.restype = ctypes.c_uint64
        lib.duckdb_value_is_null.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
        lib.duckdb_value_is_null.restype = ctypes.c_bool
        lib.duckdb_value_varchar.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64]
        lib.duckdb_value_varchar.restype = ctypes.c_void_p
        lib.duckdb_result_error.argtypes = [ctypes.c_void_p]
        lib.duckdb_result_error.restype = ctypes.c_char_p
        lib.duckdb_free.argtypes = [ctypes.c_void_p]
        lib.duckdb_destroy_result.argtypes = [ctypes.c_void_p]
        lib.duckdb_disconnect.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.duckdb_close.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        cfg = ctypes.c_void_p()
        assert lib.duckdb_create_config(ctypes.byref(cfg)) == 0
        lib.duckdb_set_config(cfg, b"access_mode", b"READ_ONLY" if read_only else b"READ_WRITE")
        self.db = ctypes.c_void_p()
        err = ctypes.c_char_p()
        rc = lib.duckdb_open_ext(path.encode(), ctypes.byref(self.db), cfg, ctypes.byref(err))
        lib.duckdb_destroy_config(ctypes.byref(cfg))
        assert rc == 0, f"cannot open {path}: {err.value}"
        self.con = ctypes.c_void_p()
        assert lib.duckdb_connect(self.db, ctypes.byref(self.con)) == 0

    def query(self, sql):
        res = ctypes.create_string_buffer(256)  # duckdb_result is 48 bytes
        lib = self.lib
        if lib.duckdb_query(self.con, sql.encode(), res) != 0:
            msg = lib.duckdb_result_error(res)
            lib.duckdb_destroy_result(res)
            raise RuntimeError(f"{sql}: {msg}")
        rows = []
        ncols = lib.duckdb_column_count(res)
        for i in range(lib.duckdb_row_count(res)):
            row = []
            for c in range(ncols):
                if lib.duckdb_value_is_null(res, c, i):
                    row.append(None)
                    continue
                p = lib.duckdb_value_varchar(res, c, i)
                row.append(ctypes.string_at(p).decode() if p else None)
                if p:
                    lib.duckdb_free(p)
            rows.append(tuple(row))
        lib.duckdb_destroy_result(res)
        return rows

    def close(self):
        self.lib.duckdb_disconnect(ctypes.byref(self.con))
        self.lib.duckdb_close(ctypes.byref(self.db))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def db_file_bytes(db_path):
    """The DuckDB file plus its WAL, if any (the server must be stopped)."""
    out = b""
    for p in (db_path, db_path + ".wal"):
        if os.path.exists(p):
            with open(p, "rb") as f:
                out += f.read()
    return out


def sha256_forms(secret):
    """The unkeyed digests of a secret as they might be stored."""
    d = hashlib.sha256(secret.encode()).digest()
    return [d, d.hex().encode(), d.hex().upper().encode(), base64.b64encode(d),
            base64.urlsafe_b64encode(d).rstrip(b"=")]


# ---- a test CA ---------------------------------------------------------------

def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"


def make_test_ca(d):
    """A CA and a server certificate for 127.0.0.1 (CN and SAN) in d, plus an
    unrelated key; returns a dict of paths."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=duckgrid test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-out", "other.key", cwd=d)
    return {k: os.path.join(d, v) for k, v in
            {"ca": "ca.pem", "cert": "server.pem", "key": "server.key", "other_key": "other.key",
             "ca_key": "ca.key"}.items()}


# ---- JWT material -------------------------------------------------------------

def b64u(b):
    if isinstance(b, str):
        b = b.encode()
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unsigned_token(header, payload):
    """header.payload. with an empty signature (alg none)."""
    return b64u(json.dumps(header)) + "." + b64u(json.dumps(payload)) + "."


def hs256_token_with_key_bytes(header, payload, key):
    """An HS256 token signed by hand with arbitrary key bytes (PyJWT refuses
    PEM keys as HMAC secrets, which is the point of the confusion attack)."""
    si = b64u(json.dumps(header)) + "." + b64u(json.dumps(payload))
    sig = hmac.new(key, si.encode(), hashlib.sha256).digest()
    return si + "." + b64u(sig)


def tamper(token):
    """The same token with one signature character changed."""
    h, p, s = token.split(".")
    c = "A" if s[5] != "A" else "B"
    return f"{h}.{p}.{s[:5]}{c}{s[6:]}"


def rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def public_pem(priv):
    from cryptography.hazmat.primitives import serialization
    return priv.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk_of(priv, kid, alg):
    import jwt
    pub = priv.public_key()
    if alg.startswith("RS"):
        d = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(pub))
    else:
        d = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(pub))
    d.update({"kid": kid, "alg": alg, "use": "sig"})
    return d


def now():
    return int(time.time())
