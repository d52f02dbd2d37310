"""test_tls_edge.py: the shipped HAProxy config terminating TLS in front of the real mpcd.

systemd/haproxy-tls.cfg.example is rendered with this test's free loopback ports and a
throwaway certificate (made here with `openssl`: a CA, and a server certificate for
127.0.0.1 / localhost signed by it), checked with `haproxy -c`, and run in the foreground
(`haproxy -db`) in front of an mpcd started by tests/clients/mpcd_harness.py. A Python
`ssl` client that trusts only the throwaway CA then speaks mpc.v1 through it (Hello ->
Welcome, Steps -> Actions, Status) over TLS 1.3 and TLS 1.2. Also covered: TLS 1.0/1.1,
plain TCP, an untrusted CA and a wrong host name get no session; HAProxy's health check
reads mpcd's /readyz (L7OK while ready; DOWN, and no new sessions, while mpcd has no
model); after SIGTERM the open session ends and new TLS sessions get no Welcome.

Skipped when the haproxy or openssl program is missing (tools/install-deps installs both).
"""
import csv
import io
import itertools
import math
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import warnings

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "clients"))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))

from mpcd_harness import Mpcd, free_port, make_model  # noqa: E402

import mpc_client  # noqa: E402

EXAMPLE = os.path.join(REPO, "systemd", "haproxy-tls.cfg.example")
# haproxy lives in /usr/sbin, which is not on an unprivileged user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin",
                               "/sbin"])
HAPROXY = shutil.which("haproxy", path=SEARCH_PATH)
OPENSSL = shutil.which("openssl", path=SEARCH_PATH)
pytestmark = pytest.mark.skipif(not (HAPROXY and OPENSSL),
                                reason="haproxy or openssl is not installed "
                                       "(tools/install-deps installs both)")

pb = mpc_client.load_pb2()

OBS_DIM, ACTION_DIM = 3, 2
# Small planner so the 2-core CI machine is not the bottleneck (as in test_mpcd.py).
PLANNER = ["--candidates", "200", "--top", "20", "--iterations", "4", "--horizon", "8",
           "--workers", "2"]
# Literal values of the shipped example that the test replaces (each must occur exactly
# once outside comments, so a change to the example that the test would miss fails here).
EXAMPLE_BIND = "bind :7443 ssl crt /etc/haproxy/mpcd.pem"
EXAMPLE_SERVER = "server mpcd1 127.0.0.1:7070 check port 9464"
EXAMPLE_STATS = "stats socket /run/haproxy/admin.sock"


def obs(t):
    return [math.cos(0.1 * t), math.sin(0.1 * t), 0.05 * t]


def wait_until(cond, timeout=15.0):
    """Polls cond() until it gives a true value or timeout seconds pass; returns its last
    value (the caller asserts it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.1)


# ---- certificates --------------------------------------------------------------------

CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

SERVER_EXT = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def openssl(*args, cwd):
    r = subprocess.run([OPENSSL] + list(args), cwd=cwd, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, "openssl %s failed:\n%s" % (" ".join(args), r.stderr)


def make_ca(d, name):
    """A self-signed P-256 CA in d: name.key, name.pem."""
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", name + ".key", cwd=d)
    openssl("req", "-new", "-x509", "-config", "openssl.cnf", "-extensions", "v3_ca",
            "-key", name + ".key", "-subj", "/CN=mpcd test CA " + name, "-days", "2",
            "-out", name + ".pem", cwd=d)
    return os.path.join(d, name + ".pem")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    with open(os.path.join(d, "openssl.cnf"), "w") as f:
        f.write(CNF)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write(SERVER_EXT)
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other-ca")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "server.key", cwd=d)
    openssl("req", "-new", "-config", "openssl.cnf", "-key", "server.key",
            "-subj", "/CN=localhost", "-out", "server.csr", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", "2", "-days", "2", "-extfile", "server.ext",
            "-out", "server.pem", cwd=d)
    # HAProxy's `crt` file: the certificate, then its private key.
    pem = os.path.join(d, "mpcd.pem")
    with open(pem, "w") as out:
        for part in ("server.pem", "server.key"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())
    os.chmod(pem, 0o600)
    return {"ca": ca, "other_ca": other_ca, "pem": pem}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    return make_model(d / "m.safetensors", OBS_DIM, ACTION_DIM, seed=4,
                      extra=["--action-low=-2", "--action-high=2", "--task", "tls-edge"])


# ---- the rendered example and haproxy --------------------------------------------------

def render_example(tls_port, pem, backend_port, check_port, stats_sock):
    """The shipped example with this test's ports and files. Besides the four values, only
    what stops it running unprivileged in the foreground changes: `chroot`, `user` and
    `group` need root (and the haproxy user), so they go; logs go to stderr (haproxy -db
    writes it to the test's log file) instead of /dev/log; the stats socket moves to a
    private directory."""
    with open(EXAMPLE) as f:
        text = f.read()
    replaced = {EXAMPLE_BIND: 0, EXAMPLE_SERVER: 0, EXAMPLE_STATS: 0}
    out, logged = [], False
    for line in text.splitlines():
        body = line.strip()
        if not body or body.startswith("#"):
            out.append(line)
            continue
        keyword = body.split()[0]
        assert keyword != "daemon", "the example must not fork: haproxy.service runs -Ws"
        if keyword in ("chroot", "user", "group"):
            continue
        if body.startswith("log /dev/log"):
            if logged:
                continue  # one copy of each message in the log is enough
            logged = True
        for old in replaced:
            if old in line:
                replaced[old] += 1
        line = line.replace(EXAMPLE_BIND, "bind 127.0.0.1:%d ssl crt %s" % (tls_port, pem))
        line = line.replace(EXAMPLE_SERVER, "server mpcd1 127.0.0.1:%d check port %d"
                            % (backend_port, check_port))
        line = line.replace(EXAMPLE_STATS, "stats socket %s" % stats_sock)
        line = line.replace("log /dev/log", "log stderr format raw")
        out.append(line)
    assert replaced == {k: 1 for k in replaced}, \
        "expected each of these once in %s: %s" % (EXAMPLE, replaced)
    return "\n".join(out) + "\n"


class ServerStat(dict):
    def __str__(self):
        return " ".join("%s=%s" % (k, self.get(k)) for k in (
            "status", "check_status", "check_code", "check_desc", "last_chk", "chkfail"))

    __repr__ = __str__


class Edge:
    """mpcd on loopback behind haproxy running the rendered example."""

    def __init__(self, daemon, certs, workdir):
        self.daemon = daemon
        self.certs = certs
        self.workdir = workdir
        # A short private directory: a Unix socket path must fit in 108 bytes.
        self.sockdir = tempfile.mkdtemp(prefix="mpcd-tls-")
        self.stats_sock = os.path.join(self.sockdir, "admin.sock")
        self.port = free_port()
        self.cfg = os.path.join(workdir, "haproxy.cfg")
        self.log_path = os.path.join(workdir, "haproxy.log")
        self.proc = None
        self._log = None

    def start(self):
        self.daemon.start()
        with open(self.cfg, "w") as f:
            f.write(render_example(self.port, self.certs["pem"], self.daemon.port,
                                   self.daemon.status_port, self.stats_sock))
        check = subprocess.run([HAPROXY, "-c", "-f", self.cfg], capture_output=True,
                               text=True, timeout=30)
        assert check.returncode == 0, "haproxy -c:\n%s%s" % (check.stdout, check.stderr)
        self.check_output = check.stdout + check.stderr
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([HAPROXY, "-f", self.cfg, "-db"], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, \
                "haproxy exited with status %d:\n%s" % (self.proc.returncode, self.log_text())
            try:
                tls_connect(self.port, self.certs["ca"], timeout=2).close()
                return self
            except (ConnectionRefusedError, ConnectionResetError):
                pass
            except ssl.SSLError as err:
                raise AssertionError("TLS handshake with haproxy failed: %s\n%s"
                                     % (err, self.log_text())) from None
            assert time.monotonic() < deadline, \
                "haproxy did not accept TLS on port %d:\n%s" % (self.port, self.log_text())
            time.sleep(0.05)

    def log_text(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    def logs(self):
        return "--- haproxy ---\n%s\n--- mpcd ---\n%s" % (self.log_text(),
                                                          self.daemon.log_text())

    def server_stat(self):
        """haproxy's `show stat` row of backend mpcd, server mpcd1 (a dict); its str() shows
        the fields the tests look at."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.stats_sock)
            s.sendall(b"show stat\n")
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        text = data.decode()
        assert text.startswith("# "), text
        for row in csv.DictReader(io.StringIO(text[2:])):
            if row["pxname"] == "mpcd" and row["svname"] == "mpcd1":
                return ServerStat(row)
        raise AssertionError("no mpcd/mpcd1 in show stat:\n" + text)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None
        self.daemon.stop()
        shutil.rmtree(self.sockdir, ignore_errors=True)


@pytest.fixture
def start_edge(certs, tmp_path):
    """start_edge(model) -> a started Edge; everything is stopped after the test."""
    started = []

    def start(model_path):
        d = Mpcd(model_path, deadline_ms=50, extra_args=PLANNER)
        e = Edge(d, certs, str(tmp_path))
        started.append(e)
        return e.start()

    yield start
    for e in started:
        e.stop()


# ---- TLS client ------------------------------------------------------------------------

def tls_context(cafile, max_version=None):
    ctx = ssl.create_default_context(cafile=cafile)  # CERT_REQUIRED, check_hostname
    assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def tls_connect(port, cafile, hostname="localhost", max_version=None, timeout=10):
    ctx = tls_context(cafile, max_version)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=hostname)
    except BaseException:
        raw.close()
        raise


frame = mpc_client.encode_frame


def read_reply(s):
    """One Reply, or None when the peer closed (or reset) the connection first."""
    buf = bytearray()
    try:
        got = list(itertools.islice(mpc_client.read_messages(s, pb.Reply, buf), 1))
    except (ConnectionResetError, ssl.SSLEOFError):
        return None
    return got[0] if got else None


def hello(s, rid=1, name="pytest/tls-edge"):
    s.sendall(frame(pb.Request(id=rid, hello=pb.Hello(
        client_name=name, observation_size=OBS_DIM, action_size=ACTION_DIM))))
    return read_reply(s)


def run_session(s, name, steps=5):
    """Hello, `steps` Steps and a Status through s; asserts every reply."""
    r = hello(s, name=name)
    assert r is not None and r.id == 1 and r.HasField("welcome"), r
    w = r.welcome
    assert w.session_id >= 1 and w.model_name == "tls-edge"
    assert w.observation_size == OBS_DIM and w.action_size == ACTION_DIM
    for t in range(steps):
        s.sendall(frame(pb.Request(id=2 + t, step=pb.Step(seq=t, observation=obs(t),
                                                          reset=(t == 0)))))
        r = read_reply(s)
        assert r is not None and r.id == 2 + t and r.HasField("action"), r
        assert r.action.seq == t and len(r.action.action) == ACTION_DIM
        assert all(-2.0 <= a <= 2.0 for a in r.action.action)
    # Status through the tunnel lists this session. The daemon may answer from a status
    # snapshot a moment old, so ask again until it shows the steps.
    ids = itertools.count(100)

    def status_lists_session():
        rid = next(ids)
        s.sendall(frame(pb.Request(id=rid, status=pb.Status())))
        r = read_reply(s)
        assert r is not None and r.id == rid and r.HasField("status"), r
        assert r.status.ready
        mine = [x for x in r.status.session if x.client_name == name]
        return mine and mine[0].steps == steps

    assert wait_until(status_lists_session, timeout=10)


# ---- tests -----------------------------------------------------------------------------

def test_example_is_valid_and_session_runs_over_tls(start_edge, model):
    e = start_edge(model)
    try:
        assert "[WARNING]" not in e.check_output and "[ALERT]" not in e.check_output, \
            e.check_output
        with tls_connect(e.port, e.certs["ca"]) as s:
            assert s.version() == "TLSv1.3"
            run_session(s, "pytest/tls13")
        with tls_connect(e.port, e.certs["ca"], max_version=ssl.TLSVersion.TLSv1_2) as s:
            assert s.version() == "TLSv1.2"
            cipher = s.cipher()[0]
            assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)
            run_session(s, "pytest/tls12")
    except AssertionError:
        print(e.logs())
        raise


def test_only_trusted_modern_tls_gets_a_session(start_edge, model):
    e = start_edge(model)
    try:
        # A client that does not trust the throwaway CA, and one that expects another name.
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_connect(e.port, e.certs["other_ca"]).close()
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_connect(e.port, e.certs["ca"], hostname="mpcd.example").close()
        # TLS 1.0 and 1.1 are refused by the server (the client offers them).
        for version in ("TLSv1", "TLSv1_1"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                v = getattr(ssl.TLSVersion, version)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.load_verify_locations(e.certs["ca"])
                ctx.minimum_version = ctx.maximum_version = v
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            raw = socket.create_connection(("127.0.0.1", e.port), timeout=10)
            with pytest.raises(ssl.SSLError) as err:
                ctx.wrap_socket(raw, server_hostname="localhost")
            raw.close()
            assert "PROTOCOL_VERSION" in str(err.value) or "protocol version" in \
                str(err.value), err.value
        # Plain mpc.v1 on the TLS port: no reply, the connection is closed (at most a TLS
        # alert record, content type 21, comes back).
        with socket.create_connection(("127.0.0.1", e.port), timeout=10) as s:
            s.sendall(frame(pb.Request(id=1, hello=pb.Hello(client_name="plain"))))
            data = b""
            try:
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            except ConnectionResetError:
                pass
            assert data == b"" or data[0] == 0x15, data
        # None of those reached mpcd as a session; a trusted client still does.
        with tls_connect(e.port, e.certs["ca"]) as s:
            run_session(s, "pytest/after-refusals", steps=2)
    except AssertionError:
        print(e.logs())
        raise


def test_health_check_and_sigterm(start_edge, model):
    e = start_edge(model)
    try:
        # The first check runs within `inter` (2 s) of the start: /readyz answered 200.
        st = wait_until(lambda: (lambda r: r if r["check_status"] == "L7OK" else None)(
            e.server_stat()))
        assert st and st["status"] == "UP" and st["check_code"] == "200", e.server_stat()
        s = tls_connect(e.port, e.certs["ca"])
        try:
            r = hello(s, name="pytest/before-stop")
            assert r is not None and r.HasField("welcome"), r
            assert e.daemon.stop() == 0  # SIGTERM, drained
            r = read_reply(s)  # the open session is handed over, then ends
            assert r is not None and pb.Error.Code.Name(r.error.code) == "DRAINING", r
            assert read_reply(s) is None
        finally:
            s.close()
        # New TLS sessions: HAProxy still completes the handshake, but there is no mpcd
        # behind it, so the Hello gets no Welcome and the connection is closed.
        with tls_connect(e.port, e.certs["ca"]) as s:
            assert hello(s) is None
        st = wait_until(lambda: e.server_stat()["status"].startswith("DOWN"))
        assert st, e.server_stat()
        with tls_connect(e.port, e.certs["ca"]) as s:
            assert hello(s) is None
    except AssertionError:
        print(e.logs())
        raise


def test_not_ready_daemon_gets_no_sessions(start_edge):
    # mpcd without a model runs, but /readyz says 503: the check takes it out, and HAProxy
    # closes new sessions instead of passing their Hello on (mpcd would answer NOT_READY).
    e = start_edge(None)
    try:
        st = wait_until(lambda: (lambda r: r if r["status"].startswith("DOWN") else None)(
            e.server_stat()))
        assert st and st["check_status"] == "L7STS" and st["check_code"] == "503", \
            e.server_stat()
        assert e.daemon.alive()
        with tls_connect(e.port, e.certs["ca"]) as s:
            assert hello(s) is None
    except AssertionError:
        print(e.logs())
        raise
