"""test_mpcd.py: the real mpcd on loopback, driven by the Python client and raw sockets.

Models come from model/train/make_model.py (through tests/clients/mpcd_harness.py, which
also starts and stops the daemon on free ports). Covers: a full episode; many concurrent
sessions; hot-swap in the middle of 8 streaming sessions with zero errors and zero missed
replies; refused reloads (corrupt file, other sizes, missing file) while serving goes on;
SIGHUP and --watch reloads; malformed, oversized and truncated frames; per-connection queue
limits, max connections and idle timeout; a client that leaves mid-plan; SIGTERM with
requests in flight; Unix and IPv6 listeners; the HTTP endpoint wired to the same state;
--check-config / --help.
"""
import itertools
import json
import re
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "clients"))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))

from mpcd_harness import Mpcd, find_mpcd, free_port, make_model  # noqa: E402

import mpc_client  # noqa: E402

pb = mpc_client.load_pb2()
pytestmark = pytest.mark.skipif(not find_mpcd(), reason="mpcd is not built")

# Small planner so the 2-core CI machine is not the bottleneck of every test.
PLANNER = ["--candidates", "200", "--top", "20", "--iterations", "4", "--horizon", "8",
           "--workers", "2"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    bounds = ["--action-low=-2", "--action-high=2", "--task", "daemon-test"]
    return {
        "a": make_model(d / "a.safetensors", 3, 1, seed=1, extra=bounds),
        "b": make_model(d / "b.safetensors", 3, 1, seed=2, extra=bounds),
        "wide": make_model(d / "wide.safetensors", 4, 1, seed=3, extra=bounds),
        "dir": str(d),
    }


def start(model, *args, deadline_ms=30, tmp=None):
    d = Mpcd(model, deadline_ms=deadline_ms, extra_args=PLANNER + list(args))
    return d.start()


def admin(d, timeout=60):
    """A client whose Hello carried the daemon's admin token (Reload needs it)."""
    c = mpc_client.Client(d.address, timeout=timeout)
    try:
        c.hello("pytest/admin", auth_token=d.admin_token)
    except mpc_client.DaemonError as e:
        if e.code_name != "NOT_READY":  # the role is granted before the model is needed
            raise
    return c


def obs(t):
    return [math.cos(0.1 * t), math.sin(0.1 * t), 0.05 * t]


def wait_until(cond, timeout=20.0):
    """Polls cond() until it gives a true value or timeout seconds pass; returns its last
    value. For what the daemon does in its own time (closing, reloading): no fixed sleep
    is enough on a loaded machine, and the caller asserts the outcome."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


def http_get(d, path):
    try:
        with urllib.request.urlopen("http://%s%s" % (d.status_address, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# ---- raw frames ----------------------------------------------------------------------

def raw_connect(d):
    s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
    s.settimeout(10)
    return s


frame = mpc_client.encode_frame


def read_replies(s, n):
    """Up to n Replies (fewer when the daemon closes the connection first)."""
    buf = bytearray()
    out = list(itertools.islice(mpc_client.read_messages(s, pb.Reply, buf), n))
    assert not buf or len(out) < n, "bytes after the replies"
    return out


def read_reply(s):
    """One Reply, or None when the daemon closed the connection."""
    got = read_replies(s, 1)
    return got[0] if got else None


def step_request(rid, t, **kw):
    return pb.Request(id=rid, step=pb.Step(seq=t, observation=obs(t), **kw))


# ---- tests ---------------------------------------------------------------------------

def test_full_episode(models):
    d = start(models["a"])
    try:
        with mpc_client.Client(d.address, timeout=10) as c:
            w = c.hello("pytest/episode", observation_size=3, action_size=1)
            assert w.session_id >= 1 and w.model_version == 1
            assert w.default_deadline_us == 30000
            assert w.model_name == "daemon-test"
            for t in range(60):
                a = c.step(obs(t), seq=t, reward=0.1 * t, reset=(t == 0))
                assert a.seq == t and -2.0 <= a.action[0] <= 2.0
                assert a.model_version == 1
                assert a.iterations + (1 if a.fallback else 0) >= 1
                assert a.candidates == 200 * a.iterations
            st = c.status()
            assert st.ready and st.model_version == 1
            mine = [s for s in st.session if s.client_name == "pytest/episode"]
            assert mine and mine[0].steps == 60 and mine[0].episodes == 1
            assert st.total.count >= 60
            doc = json.loads(st.json)
            assert doc["model_version"] == 1
        code, body = http_get(d, "/status")
        assert code == 200 and json.loads(body)["ready"] is True
        assert http_get(d, "/readyz")[0] == 200
        code, text = http_get(d, "/metrics")
        assert code == 200 and "mpcd_" in text
    finally:
        assert d.stop() == 0, d.log_text()


def test_errors_leave_session_usable(models):
    d = start(models["a"])
    try:
        with mpc_client.Client(d.address, timeout=10) as c:
            with pytest.raises(mpc_client.DaemonError) as e:
                c.step(obs(0), seq=0)
            assert e.value.code_name == "NO_SESSION"
            with pytest.raises(mpc_client.DaemonError) as e:
                c.hello("x", observation_size=5, action_size=1)
            assert e.value.code_name == "SIZE_MISMATCH"
            assert "5" in str(e.value) and "3" in str(e.value)
            c.hello("pytest/errors")
            a0 = c.step(obs(0), seq=0, reset=True)
            # NaN / Inf: INVALID_VALUE, and the session is exactly as it was.
        s = raw_connect(d)
        s.sendall(frame(pb.Request(id=1, hello=pb.Hello(client_name="raw"))))
        assert read_reply(s).HasField("welcome")
        bad = pb.Request(id=2, step=pb.Step(seq=1, observation=[0.0, float("nan"), 0.0]))
        s.sendall(frame(bad))
        r = read_reply(s)
        assert r.id == 2 and r.error.code == pb.Error.INVALID_VALUE
        assert "observation[1]" in r.error.message
        s.sendall(frame(pb.Request(id=3, step=pb.Step(seq=1, observation=[1.0, 2.0]))))
        r = read_reply(s)
        assert r.error.code == pb.Error.SIZE_MISMATCH and "expects 3" in r.error.message
        s.sendall(frame(pb.Request(id=4, step=pb.Step(seq=2, observation=obs(0), reset=True,
                                                      exploration_noise=float("inf")))))
        assert read_reply(s).error.code == pb.Error.INVALID_VALUE
        s.sendall(frame(step_request(5, 3, reset=True)))
        r = read_reply(s)
        assert r.id == 5 and r.action.seq == 3
        s.sendall(frame(pb.Request(id=6, reset=pb.Reset())))
        assert read_reply(s).HasField("ack")
        s.close()
        assert a0.seq == 0
    finally:
        assert d.stop() == 0, d.log_text()


def test_concurrent_sessions(models):
    d = start(models["a"])
    errors, counts = [], {}

    def run(k):
        try:
            with mpc_client.Client(d.address, timeout=20) as c:
                c.hello("pytest/many-%d" % k)
                for t in range(25):
                    a = c.step(obs(t + k), seq=t, reset=(t == 0))
                    assert a.seq == t
                counts[k] = 25
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("%d: %r" % (k, e))

    try:
        threads = [threading.Thread(target=run, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert sum(counts.values()) == 16 * 25
        with mpc_client.Client(d.address) as c:
            st = c.status()
            assert st.errors == 0
            assert st.total.count >= 16 * 25
    finally:
        assert d.stop() == 0, d.log_text()


def stream_sessions(d, n, stop, results, deadline_us=0, last=None):
    """n threads stepping until stop is set; results[k] = (steps, errors, versions);
    last[k] (when given) follows the model version of session k's latest action."""
    def run(k):
        steps, errs, versions = 0, [], []
        try:
            with mpc_client.Client(d.address, timeout=20) as c:
                c.hello("pytest/stream-%d" % k)
                t = 0
                while not stop.is_set():
                    a = c.step(obs(t), seq=t, reset=(t == 0), reward=1.0,
                               deadline_us=deadline_us)
                    if a.seq != t:
                        errs.append("seq %d for %d" % (a.seq, t))
                    versions.append(a.model_version)
                    if last is not None:
                        last[k] = a.model_version
                    steps += 1
                    t += 1
        except Exception as e:  # noqa: BLE001
            errs.append(repr(e))
        results[k] = (steps, errs, versions)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    return threads


def test_hot_swap_under_load(models):
    d = start(models["a"], deadline_ms=20)
    stop, results, last = threading.Event(), {}, {}
    try:
        threads = stream_sessions(d, 8, stop, results, last=last)
        time.sleep(0.5)
        with admin(d) as c:
            for i, m in enumerate([models["b"], models["a"], models["b"]]):
                r = c.reload(m)
                assert r.ok and r.model_version == i + 2, r
                time.sleep(0.3)
        # every session steps on the last model
        wait_until(lambda: len(last) == 8 and min(last.values()) >= 4, timeout=30)
        stop.set()
        for t in threads:
            t.join()
        for k, (steps, errs, versions) in results.items():
            assert not errs, (k, errs)
            assert steps > 0
            assert versions == sorted(versions), "model version went backwards"
            assert versions[-1] == 4, (k, versions[-5:])
        with mpc_client.Client(d.address) as c:
            st = c.status()
            assert st.errors == 0 and st.reloads_ok == 4 and st.model_version == 4
    finally:
        stop.set()
        assert d.stop() == 0, d.log_text()


def test_refused_reloads_keep_serving(models, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    data = open(models["a"], "rb").read()
    corrupt.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    wide = tmp_path / "wide.safetensors"
    shutil.copy(models["wide"], wide)
    d = start(models["a"], "--model-dir", str(tmp_path))
    stop, results, last = threading.Event(), {}, {}
    try:
        threads = stream_sessions(d, 2, stop, results, last=last)
        with admin(d) as c:
            for path, why in [(corrupt, None), (garbage, "not an mpc-rssm model"),
                              (wide, "4/1"), ("/nonexistent/m.safetensors", "nonexistent")]:
                with pytest.raises(mpc_client.ReloadError) as e:
                    c.reload(str(path))
                if why:
                    assert why in str(e.value), str(e.value)
            st = c.status()
            assert st.ready and st.model_version == 1
            assert st.reloads_failed == 4
            assert "nonexistent" in st.last_reload_error
            doc = json.loads(http_get(d, "/status")[1])
            assert "nonexistent" in doc["last_reload_error"]
        wait_until(lambda: len(last) == 2)  # both sessions have stepped
        stop.set()
        for t in threads:
            t.join()
        for k, (steps, errs, versions) in results.items():
            assert not errs and steps > 0 and set(versions) == {1}
        assert "reload refused" in d.log_text()
    finally:
        stop.set()
        assert d.stop() == 0, d.log_text()


def test_sighup_and_watch(models, tmp_path):
    path = tmp_path / "serving.safetensors"
    shutil.copy(models["a"], path)
    d = start(str(path), "--watch")
    try:
        with mpc_client.Client(d.address, timeout=30) as c:
            c.hello("pytest/watch")
            c.step(obs(0), seq=0, reset=True)
            d.signal(signal.SIGHUP)
            wait_until(lambda: c.status().model_version >= 2)
            assert c.status().model_version == 2
            # The atomic rename pattern: write elsewhere, rename over the watched path.
            tmp = tmp_path / "next.tmp"
            shutil.copy(models["b"], tmp)
            os.rename(tmp, path)
            wait_until(lambda: c.status().model_version >= 3)
            assert c.status().model_version == 3, d.log_text()
            a = c.step(obs(1), seq=1)
            assert a.model_version == 3
            # A broken file renamed in is refused; version 3 keeps serving.
            failed = c.status().reloads_failed
            tmp.write_bytes(b"not a model")
            os.rename(tmp, path)
            wait_until(lambda: c.status().reloads_failed != failed)
            st = c.status()
            assert st.reloads_failed == failed + 1 and st.model_version == 3
            assert c.step(obs(2), seq=2).model_version == 3
    finally:
        assert d.stop() == 0, d.log_text()


def test_bad_frames(models):
    d = start(models["a"], "--max-frame", "4096")
    try:
        # A frame whose payload is not a Request: Error MALFORMED, connection stays.
        s = raw_connect(d)
        s.sendall(b"\x05\xff\xff\xff\xff\xff")
        r = read_reply(s)
        assert r.id == 0 and r.error.code == pb.Error.MALFORMED
        s.sendall(frame(pb.Request(id=9)))  # no body
        assert read_reply(s).error.code == pb.Error.MALFORMED
        s.sendall(frame(pb.Request(id=10, status=pb.Status())))
        assert read_reply(s).HasField("status")
        s.close()
        # Oversized: FRAME_TOO_LARGE, then the daemon closes the stream.
        s = raw_connect(d)
        s.sendall(mpc_client.encode_varint(1 << 20) + b"x" * 100)
        r = read_reply(s)
        assert r.error.code == pb.Error.FRAME_TOO_LARGE
        assert read_reply(s) is None
        s.close()
        # A malformed varint: MALFORMED and closed.
        s = raw_connect(d)
        s.sendall(b"\xff" * 11)
        assert read_reply(s).error.code == pb.Error.MALFORMED
        assert read_reply(s) is None
        s.close()
        # Truncated: half a frame, then the client goes away.
        s = raw_connect(d)
        f = frame(pb.Request(id=1, hello=pb.Hello(client_name="trunc")))
        s.sendall(f[: len(f) // 2])
        s.close()
        # Random junk of every length.
        for n in range(1, 40, 7):
            s = raw_connect(d)
            s.sendall(os.urandom(n))
            s.close()
        # Well-framed random payloads: each gets exactly one reply, none kills the stream.
        import random
        rng = random.Random(5)
        s = raw_connect(d)
        n = 200
        for i in range(n):
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
            s.sendall(mpc_client.encode_varint(len(payload)) + payload)
        s.sendall(frame(pb.Request(id=424242, status=pb.Status())))
        replies = read_replies(s, n + 1)
        assert len(replies) == n + 1 and replies[-1].id == 424242
        s.close()
        with mpc_client.Client(d.address, timeout=10) as c:
            c.hello("after")
            assert c.step(obs(0), seq=0, reset=True).seq == 0
        assert d.alive()
    finally:
        assert d.stop() == 0, d.log_text()


def test_queue_limit_and_pipelining(models):
    d = start(models["a"], "--max-queued", "4")
    try:
        s = raw_connect(d)
        s.sendall(frame(pb.Request(id=1, hello=pb.Hello(client_name="pipe"))))
        assert read_reply(s).HasField("welcome")
        n = 40
        s.sendall(b"".join(frame(step_request(100 + t, t, reset=(t == 0))) for t in range(n)))
        replies = read_replies(s, n)
        assert len(replies) == n  # every request answered: no hang, no silent drop
        ids = sorted(r.id for r in replies)
        assert ids == list(range(100, 100 + n))
        over = [r for r in replies if r.HasField("error")]
        acts = [r for r in replies if r.HasField("action")]
        assert over and all(r.error.code == pb.Error.OVERLOADED for r in over)
        assert len(acts) >= 4
        # Actions are in request order.
        assert [r.id for r in acts] == sorted(r.id for r in acts)
        s.close()
    finally:
        assert d.stop() == 0, d.log_text()


def test_max_connections_and_idle_timeout(models):
    # The idle timeout leaves time for a and b to be taken while neither goes idle.
    d = start(models["a"], "--max-connections", "2", "--idle-timeout-s", "2")

    def served():
        """A connection the daemon answered, or None (it was refused and closed). It says
        Hello: a connection without one would make room for a new connection instead."""
        x = raw_connect(d)
        try:
            x.sendall(frame(pb.Request(id=1, hello=pb.Hello(client_name="held"))))
            r = read_reply(x)
        except (BrokenPipeError, ConnectionResetError):
            r = None  # refused: closed with our request unread
        if r is not None and r.HasField("welcome"):
            return x
        assert r is None or r.error.code == pb.Error.OVERLOADED, r
        x.close()
        return None
    try:
        a = served()
        # The harness's readiness probe holds a place until the daemon has seen it close.
        b = wait_until(served)
        assert a is not None and b is not None
        c = raw_connect(d)
        r = read_reply(c)
        assert r.error.code == pb.Error.OVERLOADED and "max-connections" in r.error.message
        assert read_reply(c) is None
        c.close()
        # Idle connections are closed by the daemon.
        assert read_reply(a) is None and read_reply(b) is None
        a.close()
        b.close()
        with mpc_client.Client(d.address, timeout=10) as cl:
            assert cl.status().ready
    finally:
        assert d.stop() == 0, d.log_text()


def test_disconnect_mid_plan(models):
    d = start(models["a"], "--iterations", "50")
    try:
        for k in range(4):
            s = raw_connect(d)
            s.sendall(frame(pb.Request(id=1, hello=pb.Hello(client_name="leaver"))))
            assert read_reply(s).HasField("welcome")
            s.sendall(frame(step_request(2, 0, reset=True, deadline_us=300000)))
            time.sleep(0.02 * k)
            s.close()
        with mpc_client.Client(d.address, timeout=10) as c:
            c.hello("after")
            assert c.step(obs(0), seq=0, reset=True).seq == 0
            # the leavers' sessions go once their plans end (in the daemon's own time)
            wait_until(lambda: len(c.status().session) == 1)
            st = c.status()
            assert [x.client_name for x in st.session] == ["after"]
    finally:
        assert d.stop() == 0, d.log_text()


def test_sigterm_answers_in_flight(models):
    d = start(models["a"], "--iterations", "50")
    socks = []
    try:
        for k in range(4):
            s = raw_connect(d)
            s.sendall(frame(pb.Request(id=1, hello=pb.Hello(client_name="term-%d" % k))))
            assert read_reply(s).HasField("welcome")
            socks.append(s)
        for s in socks:
            s.sendall(frame(step_request(2, 0, reset=True, deadline_us=400000)) +
                      frame(step_request(3, 1, deadline_us=400000)))
        # In flight means read: once a round trip on another connection is answered, the
        # loop has read the steps, which were readable before that connection existed.
        with mpc_client.Client(d.address, timeout=30) as c:
            c.status()
        d.signal(signal.SIGTERM)  # drains: the sessions are handed over after their replies
        for s in socks:
            replies = read_replies(s, 3)
            assert [r.id for r in replies] == [2, 3, 0]
            assert all(r.HasField("action") for r in replies[:2])
            assert pb.Error.Code.Name(replies[2].error.code) == "DRAINING"
            assert read_reply(s) is None  # then the daemon closes
        assert d.proc.wait(timeout=20) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", d.port), timeout=1)
        assert "STOPPING" in d.log_text() or "stopping" in d.log_text()
    finally:
        for s in socks:
            s.close()
        d.stop()


def test_unix_and_ipv6_listeners(models, tmp_path):
    sock = tmp_path / "mpcd.sock"
    port6 = free_port()
    extra = ["--listen", "unix:%s" % sock, "--unix-mode", "0600"]
    has6 = socket.has_ipv6
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        has6 = False
    if has6:
        extra += ["--listen", "tcp://[::1]:%d" % port6]
    d = Mpcd(models["a"], extra_args=PLANNER + extra)
    # The harness's own --listen comes first and is kept: --listen repeats.
    d.start()
    try:
        assert (os.stat(sock).st_mode & 0o777) == 0o600
        with mpc_client.Client("unix:%s" % sock, timeout=10) as c:
            c.hello("unix")
            assert c.step(obs(0), seq=0, reset=True).seq == 0
        if has6:
            with mpc_client.Client("tcp://[::1]:%d" % port6, timeout=10) as c:
                c.hello("v6")
                assert c.step(obs(0), seq=0, reset=True).seq == 0
    finally:
        assert d.stop() == 0, d.log_text()
    assert not sock.exists()  # removed on exit


def test_not_ready_until_reload(models):
    d = Mpcd(None, extra_args=PLANNER + ["--model-dir", models["dir"]])
    d.start()
    try:
        with mpc_client.Client(d.address, timeout=30) as c:
            with pytest.raises(mpc_client.DaemonError) as e:
                c.hello("early", auth_token=d.admin_token)
            assert e.value.code_name == "NOT_READY"  # and yet the admin role is granted
            assert not c.status().ready
            assert http_get(d, "/readyz")[0] == 503
            with pytest.raises(mpc_client.ReloadError):
                c.reload()  # no path known yet
            r = c.reload(models["a"])
            assert r.ok and r.model_version == 1
            assert http_get(d, "/readyz")[0] == 200
            c.hello("late")
            assert c.step(obs(0), seq=0, reset=True).model_version == 1
    finally:
        assert d.stop() == 0, d.log_text()


def test_check_config_and_help(models, tmp_path):
    mpcd = find_mpcd()
    conf = tmp_path / "mpcd.conf"
    conf.write_text("[model]\nmodel = %s\n[planner]\ncandidates = 300\n" % models["a"])
    r = subprocess.run([mpcd, "--config", str(conf), "--check-config", "--top", "30"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "candidates = 300" in r.stdout and "top = 30" in r.stdout
    conf.write_text("[planner]\ncandidates = lots\n")
    r = subprocess.run([mpcd, "--config", str(conf), "--check-config"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "mpcd.conf:2: candidates" in r.stderr
    r = subprocess.run([mpcd, "--check-config", "--model", models["dir"] + "/missing"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "missing" in r.stderr
    r = subprocess.run([mpcd, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    for opt in ["--model", "--listen", "--status-listen", "--deadline-ms", "--config",
                "--check-config", "--workers", "--candidates", "--max-connections",
                "--max-frame", "--idle-timeout-s", "--max-queued", "--unix-mode", "--record",
                "--watch", "--log-level", "EXIT STATUS"]:
        assert opt in r.stdout, opt
    r = subprocess.run([mpcd, "--listen", "localhost:7070"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "unknown scheme" in r.stderr


def test_record_episodes(models, tmp_path):
    import numpy as np
    rec = tmp_path / "episodes"
    d = start(models["a"], "--record", str(rec))
    sent = []
    try:
        with mpc_client.Client(d.address, timeout=10) as c:
            c.hello("pytest/record")
            for ep, n in enumerate([20, 10]):
                o, a, r = [], [], []
                for t in range(n):
                    x = obs(t + 100 * ep)
                    act = c.step(x, seq=t, reset=(t == 0), reward=0.5 * t + ep)
                    o.append(x)
                    a.append(list(act.action))
                    r.append(0.5 * t + ep)
                sent.append((o, a, r))
    finally:
        assert d.stop() == 0, d.log_text()
    files = sorted(rec.glob("daemon-test-*.npz"))
    assert len(files) == 2, (files, d.log_text())
    eps = [np.load(f) for f in files]
    eps.sort(key=lambda e: -e["action"].shape[0])
    for e, (o, a, r) in zip(eps, sent):
        T = len(o) - 1  # the last action never got its reward
        assert e["observation"].shape == (T + 1, 3) and e["observation"].dtype == np.float32
        assert e["action"].shape == (T, 1) and e["reward"].shape == (T,)
        np.testing.assert_allclose(e["observation"], np.array(o, np.float32), rtol=1e-6)
        np.testing.assert_allclose(e["action"], np.array(a[:T], np.float32), rtol=1e-6)
        # r_t is what the client reported with o_{t+1}
        np.testing.assert_allclose(e["reward"], np.array(r[1:], np.float32), rtol=1e-6)


def test_record_disk_cap(models, tmp_path):
    rec = tmp_path / "episodes"
    rec.mkdir()
    (rec / "old.npz").write_bytes(b"\0" * (1 << 20))  # the cap is already used up
    d = start(models["a"], "--record", str(rec), "--record-max-mb", "1")
    try:
        with mpc_client.Client(d.address, timeout=10) as c:
            c.hello("pytest/cap")
            for t in range(5):
                c.step(obs(t), seq=t, reset=(t == 0), reward=1.0)
            c.reset()
    finally:
        assert d.stop() == 0, d.log_text()
    assert sorted(p.name for p in rec.iterdir()) == ["old.npz"]
    assert "record-max-mb" in d.log_text()


def test_sd_notify_and_watchdog(models, tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(path)
    ns.settimeout(20)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    d = start(models["a"])

    def until(state):
        """Datagrams up to and including the one holding state."""
        seen = []
        while True:
            msg = ns.recv(4096).decode()
            seen.extend(msg.split("\n"))
            if state in msg.split("\n"):
                return seen

    try:
        first = until("READY=1")
        assert any(m.startswith("STATUS=serving") for m in until("WATCHDOG=1"))
        until("WATCHDOG=1")  # again: the daemon pings twice per WatchdogSec
        d.signal(signal.SIGHUP)
        assert any(m.startswith("MONOTONIC_USEC=") for m in until("RELOADING=1"))
        until("READY=1")
        d.signal(signal.SIGTERM)
        until("STOPPING=1")
        assert d.proc.wait(timeout=20) == 0
        assert first[-1] == "READY=1"
    finally:
        d.stop()
        ns.close()


def test_socket_activation(models):
    activate = shutil.which("systemd-socket-activate")
    if not activate:
        pytest.skip("systemd-socket-activate is not installed")
    port = free_port()
    d = Mpcd(models["a"], extra_args=PLANNER)
    d.port, d.status_port = port, free_port()
    cmd = [activate, "-l", "127.0.0.1:%d" % port, find_mpcd(), "--model", models["a"],
           "--status-listen", d.status_address, "--listen", "tcp://127.0.0.1:1"] + PLANNER
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:  # wait for systemd-socket-activate's socket (mpcd starts on demand)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        with mpc_client.Client("tcp://127.0.0.1:%d" % port, timeout=30) as c:
            c.hello("activated")
            assert c.step(obs(0), seq=0, reset=True).seq == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, out
    assert "listening on tcp://127.0.0.1:%d (socket activation)" % port in out, out
    assert "listening on tcp://127.0.0.1:1\n" not in out


def test_auth_token(models):
    d = start(models["a"], "--auth-token", "s3cret")
    try:
        with mpc_client.Client(d.address, timeout=10) as c:
            for token in ["", "wrong"]:
                with pytest.raises(mpc_client.DaemonError) as e:
                    c.hello("intruder", auth_token=token)
                assert e.value.code_name == "UNAUTHENTICATED"
            with pytest.raises(mpc_client.DaemonError) as e:
                c.step(obs(0), seq=0)
            assert e.value.code_name == "NO_SESSION"
            # The peer is backing off now: even the right token waits its turn.
            with pytest.raises(mpc_client.DaemonError) as e:
                c.hello("friend", auth_token="s3cret")
            assert e.value.code_name == "UNAUTHENTICATED" and "retry in" in str(e.value)
            time.sleep(int(re.search(r"retry in (\d+) ms", str(e.value)).group(1)) / 1e3)
            c.hello("friend", auth_token="s3cret")
            assert c.step(obs(0), seq=0, reset=True).seq == 0
    finally:
        assert d.stop() == 0, d.log_text()


def test_slow_reader_backpressure(models):
    """A client that sends much faster than it reads: the daemon stops reading it (its
    replies would pile up otherwise) and every request is still answered in order."""
    d = start(models["a"], "--max-queued", "64", "--log-level", "debug")
    try:
        s = raw_connect(d)
        n = 20000  # ~40 MB of replies: more than loopback's socket buffers hold
        done = threading.Event()

        def send():
            for i in range(n):
                s.sendall(frame(pb.Request(id=i, status=pb.Status())))
            done.set()

        th = threading.Thread(target=send)
        th.start()
        # let the replies back up until the daemon stops reading (log lines are written at once)
        wait_until(lambda: "reading paused" in d.log_text(), timeout=60)
        replies = read_replies(s, n)
        th.join()
        assert done.is_set() and len(replies) == n
        # Nothing waits behind a Status, so none of them counts against max-queued.
        assert [r.id for r in replies] == list(range(n))
        assert all(r.HasField("status") for r in replies)
        s.close()
        assert d.alive()
        assert "reading paused" in d.log_text() and "reading resumed" in d.log_text()
    finally:
        assert d.stop() == 0, d.log_text()


def test_large_messages(models):
    """Requests far larger than the connection's initial buffers (arena growth)."""
    d = start(models["a"])
    try:
        s = raw_connect(d)
        name = "n" * 200000
        s.sendall(frame(pb.Request(id=1, hello=pb.Hello(client_name=name))))
        assert read_reply(s).HasField("welcome")
        big = pb.Request(id=2, step=pb.Step(seq=0, observation=[0.5] * 100000, reset=True))
        s.sendall(frame(big))
        r = read_reply(s)
        assert r.error.code == pb.Error.SIZE_MISMATCH and "100000" in r.error.message
        s.sendall(frame(step_request(3, 0, reset=True)))
        assert read_reply(s).action.seq == 0
        s.sendall(frame(pb.Request(id=4, status=pb.Status())))
        st = read_reply(s).status
        assert [x.client_name for x in st.session] == ["n" * 63]
        s.close()
    finally:
        assert d.stop() == 0, d.log_text()
