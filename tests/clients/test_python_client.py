"""test_python_client.py: clients/python/mpc_client.py against the real mpcd on loopback.

Skips when mpcd is not built. The daemon serves a random pendulum-sized model (3
observations, 1 action in [-2, 2]) from make_model.py; see conftest.py.
"""
import json
import math
import os
import subprocess

import pytest

import mpc_client
from mpcd_harness import PYTHON, REPO, free_port


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
