"""test_python_client.py: clients/python/mpc_client.py against the real mpcd on loopback.

Skips when mpcd is not built. The daemon serves a random pendulum-sized model (3
observations, 1 action in [-2, 2]) from make_model.py; see conftest.py.
"""
import json
import math
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

import mpc_client
import mpcd_harness
from mpcd_harness import PYTHON, REPO, HarnessError, Mpcd, free_port


def test_address_parsing():
    assert mpc_client.parse_address(None) == ("tcp", "127.0.0.1", 7070)
    assert mpc_client.parse_address("tcp://[::1]:80") == ("tcp", "::1", 80)
    assert mpc_client.parse_address("tcp://robot.local:7070") == ("tcp", "robot.local", 7070)
    assert mpc_client.parse_address("unix:///run/mpcd.sock") == ("unix", "/run/mpcd.sock", None)
    for bad, why in [("1.2.3.4:5", "unknown scheme"), ("tcp://h", "missing ':PORT'"),
                     ("tcp://h:0", "port must be"), ("tcp://::1:7", "brackets"),
                     ("unix:", "empty socket path")]:
        with pytest.raises(mpc_client.ConnectError, match=why):
            mpc_client.parse_address(bad)


def test_unreachable_daemon():
    with pytest.raises(mpc_client.ConnectError, match="cannot connect to tcp://127.0.0.1:"):
        mpc_client.Client("tcp://127.0.0.1:%d" % free_port(), timeout=2)


def test_session_steps_and_reset(daemon):
    with mpc_client.Client(daemon.address, timeout=10) as c:
        w = c.hello("pytest/session", observation_size=3, action_size=1)
        assert (w.observation_size, w.action_size) == (3, 1)
        assert list(w.action_low) == [-2.0] and list(w.action_high) == [2.0]
        assert w.model_name == "pendulum-test"
        for seq in range(10):
            obs = [math.cos(seq), math.sin(seq), 0.1 * seq]
            a = c.step(obs, seq=seq, reward=0.5, reset=(seq == 0))
            assert a.seq == seq
            assert len(a.action) == 1 and -2.0 <= a.action[0] <= 2.0
            assert a.model_version == w.model_version
        c.reset()
        a = c.step([0.0, 1.0, 0.0], seq=10, reset=True, exploration_noise=0.3)
        assert len(a.action) == 1
        with pytest.raises(ValueError, match="expects 3"):
            c.step([0.0, 1.0], seq=11)

        st = c.status()
        assert st.ready and st.model_name == "pendulum-test"
        assert st.requests >= 12
        names = [s.client_name for s in st.session]
        assert "pytest/session" in names, names
        doc = json.loads(st.json)
        assert isinstance(doc, dict)


def test_daemon_errors_keep_session_usable(daemon):
    with mpc_client.Client(daemon.address, timeout=10) as c:
        with pytest.raises(mpc_client.DaemonError) as e:
            c.step([0.0, 0.0, 0.0], seq=1)
        assert e.value.code_name == "NO_SESSION"
        with pytest.raises(mpc_client.DaemonError) as e:
            c.hello("pytest/mismatch", observation_size=4)
        assert e.value.code_name == "SIZE_MISMATCH"
        c.hello("pytest/errors")
        assert c.step([0.0, 0.0, 0.0], seq=2, reset=True).seq == 2


def test_timeout_then_late_reply_skipped(daemon):
    with mpc_client.Client(daemon.address, timeout=10) as c:
        c.hello("pytest/timeout")
        c.timeout = 1e-4
        # A 5 s deadline lets the planner run every iteration (tens of ms at least), so
        # the reply cannot come back within 0.1 ms, however loaded the machine is.
        with pytest.raises(mpc_client.Timeout):
            c.step([0.0, 0.0, 0.0], seq=1, reset=True, deadline_us=5_000_000)
        c.timeout = 10
        assert c.step([0.0, 0.0, 0.0], seq=2).seq == 2


def session(c, name):
    """Hello, then one step; returns (welcome, horizon) with the horizon read off the plan."""
    w = c.hello(name, observation_size=3, action_size=1)
    a = c.step([1.0, 0.0, 0.0], seq=0, reset=True)
    assert len(a.plan) % w.action_size == 0
    return w, len(a.plan) // w.action_size


def check_plan(a, w):
    """The plan an Action carries: horizon x action_size, row 0 = action, inside the bounds,
    rows one control period apart."""
    A = w.action_size
    assert len(a.plan) >= A and len(a.plan) % A == 0
    assert list(a.plan[:A]) == list(a.action)
    assert all(w.action_low[i % A] <= v <= w.action_high[i % A] for i, v in enumerate(a.plan))
    assert a.plan_step_s == w.control_period_s and a.plan_step_s > 0


def test_plan_round_trip(daemon):
    with mpc_client.Client(daemon.address, timeout=10) as c:
        w, horizon = session(c, "pytest/plan")
        assert horizon == 12  # mpcd's default --horizon
        for seq in range(1, 5):
            a = c.step([math.cos(seq), math.sin(seq), 0.0], seq=seq)
            check_plan(a, w)
            assert len(a.plan) == horizon * w.action_size


def test_delay_steps(daemon):
    with mpc_client.Client(daemon.address, timeout=10) as c:
        w, horizon = session(c, "pytest/delay")
        for seq, delay in enumerate([1, 2, horizon], start=1):
            a = c.step([0.0, 1.0, 0.0], seq=seq, delay_steps=delay)
            assert a.seq == seq
            check_plan(a, w)
        a = c.step([0.0, 1.0, 0.0], seq=10, delay_steps=2, applied_actions=[[0.5], [-2.0]])
        check_plan(a, w)
        with pytest.raises(mpc_client.DaemonError) as e:
            c.step([0.0, 1.0, 0.0], seq=11, delay_steps=horizon + 1)
        assert e.value.code_name == "INVALID_VALUE" and "horizon" in e.value.message
        with pytest.raises(mpc_client.DaemonError) as e:  # the client does not check bounds
            c.step([0.0, 1.0, 0.0], seq=12, delay_steps=2, applied_actions=[0.5, 2.5])
        assert e.value.code_name == "INVALID_VALUE" and "applied_actions[1]" in e.value.message
        with pytest.raises(ValueError, match="applied_actions has 1 floats"):
            c.step([0.0, 1.0, 0.0], seq=13, delay_steps=2, applied_actions=[0.5])
        # The daemon's own check, past the client's (a raw Step, as another client sends).
        with pytest.raises(mpc_client.DaemonError) as e:
            c._call("action", step=c.pb.Step(seq=14, observation=[0.0, 1.0, 0.0],
                                             delay_steps=2, applied_actions=[0.5]))
        assert e.value.code_name == "SIZE_MISMATCH"
        assert c.step([0.0, 1.0, 0.0], seq=15).seq == 15  # the session stays usable


def wait_replies(c, n, timeout=30.0):
    """Waits until n replies have reached the client's socket (peeked, not consumed)."""
    deadline = time.monotonic() + timeout
    while True:
        data = bytes(c.buf)
        try:
            data += c.sock.recv(1 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            pass
        frames = 0
        while True:
            payload, used = mpc_client.split_frame(data)
            if payload is None:
                break
            data, frames = data[used:], frames + 1
        if frames >= n:
            return
        assert time.monotonic() < deadline, "%d of %d replies after %g s" % (frames, n, timeout)
        time.sleep(0.01)


def test_async_send_and_poll(daemon):
    with mpc_client.Client(daemon.address, timeout=10) as c:
        w, _ = session(c, "pytest/async")
        assert c.fileno() >= 0 and c.in_flight == 0 and c.poll_action(0) is None
        c.step_send([0.0, 1.0, 0.0], seq=1, delay_steps=1)
        assert c.in_flight == 1
        a = c.poll_action(0)  # right after sending: usually nothing yet
        if a is None:
            a = c.poll_action(10)
        assert a is not None and a.seq == 1 and c.in_flight == 0
        check_plan(a, w)
        assert c.dropped_replies == 0

        # Several in flight, all arrived before the poll: the newest is kept.
        for seq in range(2, 6):
            c.step_send([math.cos(seq), math.sin(seq), 0.0], seq=seq, delay_steps=1,
                        applied_actions=[0.25])
        assert c.in_flight == 4
        wait_replies(c, 4)
        a = c.poll_action(0)
        assert a.seq == 5 and c.in_flight == 0 and c.dropped_replies == 3
        check_plan(a, w)
        assert c.poll_action(0.05) is None


def test_blocking_call_after_async_sends(daemon):
    with mpc_client.Client(daemon.address, timeout=10) as c:
        session(c, "pytest/async-blocking")
        for seq in range(1, 4):
            c.step_send([0.0, 1.0, 0.0], seq=seq)
        a = c.step([0.0, 1.0, 0.0], seq=4)
        assert a.seq == 4 and c.in_flight == 0 and c.dropped_replies == 3
        assert c.poll_action(0) is None
        c.step_send([0.0, 1.0, 0.0], seq=5)
        assert c.status().ready and c.in_flight == 0 and c.dropped_replies == 4
        c.step_send([0.0, 1.0, 0.0], seq=6, delay_steps=99)
        with pytest.raises(mpc_client.DaemonError) as e:  # an async Error raises at the poll
            c.poll_action(10)
        assert e.value.code_name == "INVALID_VALUE" and c.in_flight == 0
        assert c.step([0.0, 1.0, 0.0], seq=7).seq == 7


def test_follower_with_daemon_plans(daemon):
    """A robot loop that never waits: send, poll, follow; every tick gets an action."""
    with mpc_client.Client(daemon.address, timeout=10) as c:
        w = c.hello("pytest/follower", observation_size=3, action_size=1)
        period, delay = w.control_period_s, 1
        f = mpc_client.Follower(w.action_size)
        states, taken = [], 0
        for k in range(40):
            t = k * period  # simulated time: observation k at k periods
            if not c.in_flight:
                c.step_send([math.cos(k), math.sin(k), 0.0], seq=k, reset=(k == 0),
                            delay_steps=delay)
            a = c.poll_action(0 if k < 39 else 10)
            if a is not None:
                assert f.update(a, (a.seq + delay) * period)
                taken += 1
            action, state = f.action_at(t)
            assert len(action) == 1 and -2.0 <= action[0] <= 2.0
            states.append(state)
            time.sleep(0.002)
        assert taken >= 1 and states[0] == mpc_client.FOLLOW_NO_PLAN
        assert set(states) <= {mpc_client.FOLLOW_PLAN, mpc_client.FOLLOW_PAST_END,
                               mpc_client.FOLLOW_NO_PLAN}


def test_reload(daemon, model):
    with mpc_client.Client(daemon.address, timeout=60) as c:
        with pytest.raises(mpc_client.DaemonError) as e:  # no admin role yet
            c.reload()
        assert e.value.code_name == "PERMISSION_DENIED"
        c.hello("pytest/admin", auth_token=daemon.admin_token)
        before = c.status().model_version
        r = c.reload()
        assert r.ok and r.model_version == before + 1
        r = c.reload(model)
        assert r.ok and r.model_version == before + 2
        with pytest.raises(mpc_client.ReloadError):
            c.reload("/nonexistent/model.safetensors")
        st = c.status()
        assert st.ready and st.model_version == before + 2
        assert st.reloads_failed >= 1


def test_example_control(daemon):
    example = os.path.join(REPO, "clients", "python", "example_control.py")
    r = subprocess.run([PYTHON, example, "--connect", daemon.address, "--steps", "20",
                        "--timeout", "10"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "steps 20  return" in r.stdout
    assert "latency ms  p50" in r.stdout


def test_example_control_unreachable():
    example = os.path.join(REPO, "clients", "python", "example_control.py")
    r = subprocess.run([PYTHON, example, "--connect", "tcp://127.0.0.1:%d" % free_port()],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "cannot connect" in r.stderr


# Session resume (README "A fleet of daemons"): the instance behind the address goes away
# and another takes its place on the same port; the client resumes by itself.

def start_on_ports(model, port, status_port, log_path, timeout=20.0):
    """A new mpcd listening on the given ports (those of one that has gone): the harness
    picks free ports, so its picker hands it these. Retries while the old process's port
    is still taken."""
    d = Mpcd(model, log_path=str(log_path))
    picker = mpcd_harness.free_port
    deadline = time.monotonic() + timeout
    try:
        while True:
            ports = [port, status_port]
            mpcd_harness.free_port = lambda: ports.pop(0)
            try:
                return d.start()
            except HarnessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)
    finally:
        mpcd_harness.free_port = picker


def resume_obs(seq):
    return [math.cos(0.3 * seq), math.sin(0.3 * seq), 0.1 * seq]


def open_resumable_session(c, steps):
    """Hello and `steps` steps; skips when the daemon predates resume (no history_steps)."""
    w = c.hello("pytest/resume", observation_size=3, action_size=1)
    if not getattr(w, "history_steps", 0):
        pytest.skip("this mpcd's Welcome has no history_steps (a build before resume)")
    for seq in range(steps):
        assert c.step(resume_obs(seq), seq=seq, reward=0.1 * seq, reset=(seq == 0)).seq == seq
    assert len(c.history) == min(steps, w.history_steps)
    return w


def test_resume_after_daemon_killed(model, tmp_path):
    """SIGKILL mid-episode, a new mpcd on the same port: the next step() resumes the
    session with its history and returns the action."""
    first = Mpcd(model, log_path=str(tmp_path / "first.log")).start()
    second = None
    try:
        with mpc_client.Client(first.address, timeout=10, resume_backoff=0.1) as c:
            w = open_resumable_session(c, 8)
            first.proc.kill()
            first.proc.wait()
            second = start_on_ports(model, first.port, first.status_port,
                                    tmp_path / "second.log")
            a = c.step(resume_obs(8), seq=8, reward=0.8)
            assert a.seq == 8 and len(a.action) == 1 and -2.0 <= a.action[0] <= 2.0
            assert c.resumes == 1 and c.dropped_replies == 0
            assert c.welcome.resumed_steps == min(8, w.history_steps) > 0
            assert c.step(resume_obs(9), seq=9).seq == 9
            assert "pytest/resume" in [s.client_name for s in c.status().session]
    finally:
        first.stop()
        if second is not None:
            print(second.log_text())
            second.stop()


def test_resume_after_drain(model, tmp_path):
    """SIGTERM drains the instance: after its grace period it hands the session over
    (Error DRAINING) and exits; its successor on the same port takes the session over
    while the robot keeps stepping."""
    first = Mpcd(model, log_path=str(tmp_path / "first.log")).start()
    successor = {}

    def start_successor():
        try:
            first.proc.wait(timeout=60)
            successor["d"] = start_on_ports(model, first.port, first.status_port,
                                            tmp_path / "second.log")
        except BaseException as e:  # noqa: B902 - reported below
            successor["error"] = e

    thread = threading.Thread(target=start_successor, daemon=True)
    try:
        with mpc_client.Client(first.address, timeout=10, resume_attempts=80,
                               resume_backoff=0.05, resume_backoff_max=0.25) as c:
            open_resumable_session(c, 5)
            first.signal(signal.SIGTERM)
            thread.start()
            seq, deadline = 5, time.monotonic() + 60
            while c.resumes == 0:
                assert time.monotonic() < deadline, "no resume within 60 s"
                assert c.step(resume_obs(seq), seq=seq, reward=0.5).seq == seq
                seq += 1
                time.sleep(0.02)
            assert c.resumes == 1 and c.welcome.resumed_steps > 0
            assert c.step(resume_obs(seq), seq=seq).seq == seq
        thread.join(timeout=60)
        assert "error" not in successor, successor.get("error")
        assert first.proc.returncode == 0, first.log_text()
    finally:
        first.stop()
        if "d" in successor:
            successor["d"].stop()

