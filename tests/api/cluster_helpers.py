"""A real Redis Cluster for tests and benchmarks: N redis-server processes
with --cluster-enabled yes on free loopback ports, each in a temp directory,
joined by `redis-cli --cluster create ... --cluster-replicas R`. Optionally
TLS-only (certificates from tests/api/test_redis_tls.py's Pki) and with an
ACL user restricted to the {dg} keys. Processes are stopped by PID.
"""
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time

from conftest import wait_until

NODE_TIMEOUT_MS = 1000


def cluster_port():
    """A free port p <= 55535 whose bus port p + 10000 is free too."""
    for _ in range(200):
        p = random.randint(20000, 55535)
        try:
            for q in (p, p + 10000):
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port pair")

# What duckgrid needs on a cluster, nothing more: its own keys, stream and
# script commands, the lease, WAIT, and reading the topology.
ACL_RULES = ("on resetkeys ~{dg}:* resetchannels -@all +@read +@write +@stream +@scripting "
             "+@keyspace -@dangerous +@connection +cluster|shards +cluster|slots +cluster|info "
             "+info +wait +asking")


class RedisCluster:
    def __init__(self, masters=3, replicas=1, pki=None, acl_user=None):
        self.n = masters * (1 + replicas)
        self.replicas = replicas
        self.pki = pki
        self.password = "cl-" + os.urandom(8).hex()
        self.acl_user = acl_user
        self.acl_password = "dgu-" + os.urandom(8).hex() if acl_user else None
        self.dir = tempfile.mkdtemp(prefix="dg-cluster-")
        self.ports = []
        while len(self.ports) < self.n:
            p = cluster_port()
            if all(abs(p - q) not in (0, 10000) for q in self.ports):
                self.ports.append(p)
        self.procs = {}

    # ---- processes -------------------------------------------------------
    def _start_node(self, port):
        d = os.path.join(self.dir, str(port))
        os.makedirs(d, exist_ok=True)
        args = ["redis-server", "-", "--bind", "127.0.0.1", "--dir", d,
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "",
                "--appendonly", "no", "--daemonize", "no"]
        if self.pki:
            args += ["--port", "0", "--tls-port", str(port), "--tls-cluster", "yes",
                     "--tls-replication", "yes", "--tls-cert-file", self.pki.server_crt,
                     "--tls-key-file", self.pki.server_key, "--tls-ca-cert-file", self.pki.ca,
                     "--tls-auth-clients", "optional"]
        else:
            args += ["--port", str(port)]
        log = open(os.path.join(d, "redis.log"), "ab")
        p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=log, stderr=log)
        conf = f"requirepass {self.password}\nmasterauth {self.password}\n"
        if self.acl_user:
            conf += f"user {self.acl_user} {ACL_RULES} >{self.acl_password}\n"
        p.stdin.write(conf.encode())
        p.stdin.close()
        self.procs[port] = p

    def start(self):
        try:
            return self._start()
        except BaseException:
            self.cleanup()
            raise

    def _start(self):
        for port in self.ports:
            self._start_node(port)
        for port in self.ports:
            assert wait_until(lambda: self.cli(port, "PING") == "PONG", 10), "cluster node did not start"
        out = subprocess.run(self._cli_base() + ["--cluster", "create"] +
                             [f"127.0.0.1:{p}" for p in self.ports] +
                             ["--cluster-replicas", str(self.replicas), "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        self.wait_ok()
        return self

    def wait_ok(self, timeout=20):
        """Every live node says cluster_state:ok and every replica is in sync."""
        def ok():
            for p in self.live_ports():
                info = self.cli(p, "CLUSTER", "INFO")
                if "cluster_state:ok" not in info:
                    return False
                repl = self.cli(p, "INFO", "replication")
                if "role:slave" in repl and "master_link_status:up" not in repl:
                    return False
            return True
        assert wait_until(ok, timeout, 0.1), "cluster did not reach cluster_state:ok"

    def live_ports(self):
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def kill(self, port):
        """kill -9 of one node."""
        self.procs[port].kill()
        self.procs[port].wait()

    def cleanup(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- redis-cli -------------------------------------------------------
    def _cli_base(self):
        base = ["redis-cli", "--no-auth-warning", "-a", self.password]
        if self.pki:
            base += ["--tls", "--cacert", self.pki.ca]
        return base

    def cli(self, port, *args):
        out = subprocess.run(self._cli_base() + ["-h", "127.0.0.1", "-p", str(port), *args],
                             capture_output=True, text=True, timeout=15)
        return out.stdout.strip()

    # ---- topology --------------------------------------------------------
    def nodes(self, via=None):
        """[(id, port, role, slots-text)] as CLUSTER NODES tells a live node."""
        via = via or self.live_ports()[0]
        rows = []
        for line in self.cli(via, "CLUSTER", "NODES").splitlines():
            f = line.split()
            if len(f) < 8:
                continue
            port = int(f[1].split("@")[0].rsplit(":", 1)[1])
            role = "master" if "master" in f[2] else "replica"
            if "fail" in f[2]:
                role += ",fail"
            rows.append((f[0], port, role, " ".join(f[8:])))
        return rows

    def slot_of(self, key):
        return int(self.cli(self.ports[0], "CLUSTER", "KEYSLOT", key))

    def owner(self, slot, via=None):
        """Port of the master serving slot."""
        for nid, port, role, slots in self.nodes(via):
            if role != "master":
                continue
            for part in slots.split():
                if part.startswith("["):
                    continue
                a, _, b = part.partition("-")
                if int(a) <= slot <= int(b or a):
                    return port
        return None

    def node_id(self, port):
        return self.cli(port, "CLUSTER", "MYID")

    def masters(self):
        return [port for _, port, role, _ in self.nodes() if role == "master"]

    def migrate_slot(self, slot, src, dst, pause=0.05):
        """Moves slot from master src to master dst key by key (CLUSTER SETSLOT
        IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE), pausing between keys so
        that clients meet the ASK state."""
        sid, did = self.node_id(src), self.node_id(dst)
        assert self.cli(dst, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", sid) == "OK"
        assert self.cli(src, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", did) == "OK"
        moved = 0
        for _ in range(1000):
            keys = self.cli(src, "CLUSTER", "GETKEYSINSLOT", str(slot), "1").split()
            if not keys:
                break
            r = self.cli(src, "MIGRATE", "127.0.0.1", str(dst), "", "0", "10000",
                         "AUTH", self.password, "KEYS", keys[0])
            assert r in ("OK", "NOKEY"), r
            moved += 1
            time.sleep(pause)
        for p in (dst, src):
            assert self.cli(p, "CLUSTER", "SETSLOT", str(slot), "NODE", did) == "OK"
        for p in self.masters():
            if p not in (src, dst):
                self.cli(p, "CLUSTER", "SETSLOT", str(slot), "NODE", did)
        return moved

    def url(self, port, tls=None, user=None):
        tls = self.pki is not None if tls is None else tls
        scheme = "rediss" if tls else "redis"
        if user:
            return f"{scheme}://{user}:{self.acl_password}@127.0.0.1:{port}/0"
        return f"{scheme}://:{self.password}@127.0.0.1:{port}/0"
