"""test_sim_fake_daemon.py: mpc-sim --policy mpcd against an in-test fake daemon.

A listener thread on a free loopback port speaks mpc.v1 (clients/python/mpc_client.py's
framing and the generated mpc_pb2): it answers Hello with a Welcome and every Step with a
scripted Action, and keeps every request. Checks what mpc-sim sends (reset flag on each
episode's first step only, the previous step's reward, the observation it records, seq,
the deadline) and what it does with the answers: clipping, exploration noise, latency
report, and the exit status for a daemon Error, a model of the wrong size, a bad action
and a connection closed mid-episode.
"""
import glob
import math
import os
import re
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "clients", "python"))
import mpc_client  # noqa: E402

SIM = os.environ.get("MPC_SIM")
pytestmark = pytest.mark.skipif(not SIM or not os.access(SIM, os.X_OK),
                                reason="mpc-sim is not built (set MPC_SIM)")
pb = mpc_client.load_pb2()


frame = mpc_client.encode_frame


class FakeDaemon:
    """Serves one connection; action(step_request) gives the Reply body for each Step."""

    def __init__(self, action, obs_size=5, act_size=1, close_after=None):
        self.action, self.obs_size, self.act_size = action, obs_size, act_size
        self.close_after = close_after
        self.hello, self.steps = None, []
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(1)
        self.address = "tcp://127.0.0.1:%d" % self.srv.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        conn, _ = self.srv.accept()
        with conn:
            for req in mpc_client.read_messages(conn, pb.Request):
                if req.WhichOneof("body") == "hello":
                    self.hello = req.hello
                    w = pb.Welcome(session_id=9, model_name="fake", model_version=3,
                                   observation_size=self.obs_size, action_size=self.act_size,
                                   action_low=[-1] * self.act_size,
                                   action_high=[1] * self.act_size, control_period_s=0.08,
                                   default_deadline_us=20000)
                    conn.sendall(frame(pb.Reply(id=req.id, welcome=w)))
                    continue
                self.steps.append(req.step)
                if self.close_after is not None and len(self.steps) > self.close_after:
                    return
                conn.sendall(frame(pb.Reply(id=req.id, **self.action(req.step))))

    def close(self):
        self.thread.join(timeout=30)
        self.srv.close()


def run(daemon, *args):
    cmd = [SIM, "--task", "cartpole-swingup", "--policy", "mpcd", "--connect", daemon.address,
           "--timeout", "10000", *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    daemon.close()
    return p


def act(values, **stats):
    return lambda step: {"action": pb.Action(seq=step.seq, action=values, **stats)}


def load_all(directory):
    out = []
    for path in sorted(glob.glob(os.path.join(directory, "*.npz"))):
        with np.load(path) as f:
            out.append({k: f[k] for k in f.files})
    return out


def test_protocol_of_two_episodes(tmp_path):
    # Actions out of the bounds are clipped before they are applied and recorded.
    d = FakeDaemon(act([3.0], iterations=7, predicted_return=1.5, plan_us=900))
    p = run(d, "--episodes", 2, "--max-steps", 20, "--deadline-ms", 40, "--record", tmp_path)
    assert p.returncode == 0, p.stderr
    assert d.hello.client_name == "mpc-sim/cartpole-swingup"
    assert (d.hello.observation_size, d.hello.action_size) == (5, 1)
    eps = load_all(tmp_path)
    assert len(eps) == 2 and len(d.steps) == 40
    for e, ep in enumerate(eps):
        steps = d.steps[20 * e:20 * (e + 1)]
        assert [s.reset for s in steps] == [True] + [False] * 19
        for t, s in enumerate(steps):
            assert s.deadline_us == 40000
            assert s.exploration_noise == 0
            np.testing.assert_array_equal(np.array(s.observation, np.float32),
                                          ep["observation"][t])
            # The reward of the previous action, exactly as recorded (0 on reset).
            assert s.reward == (0.0 if t == 0 else ep["reward"][t - 1])
        np.testing.assert_array_equal(ep["action"], np.ones((20, 1), np.float32))
    assert [s.seq for s in d.steps] == list(range(40))
    assert "session 9 with model 'fake' version 3" in p.stderr
    assert "latency p50" in p.stdout and "replies: 40" in p.stdout
    assert "mean iterations 7.0" in p.stdout
    assert "deadline misses (> 40 ms): 0" in p.stdout


def test_exploration_noise_is_asked_of_the_daemon(tmp_path):
    # The daemon adds the noise (so its belief update sees the applied action): mpc-sim sends
    # the scale with every step and applies and records the daemon's action unchanged.
    d = FakeDaemon(act([0.9]))
    p = run(d, "--max-steps", 100, "--explore", 0.3, "--record", tmp_path, "--seed", 4)
    assert p.returncode == 0, p.stderr
    assert all(abs(s.exploration_noise - 0.3) < 1e-6 for s in d.steps)
    a = load_all(tmp_path)[0]["action"][:, 0]
    np.testing.assert_array_equal(a, np.full(100, 0.9, np.float32))


def test_daemon_error_exits_1():
    def answer(step):
        if step.seq < 3:
            return act([0.0])(step)
        return {"error": pb.Error(code=pb.Error.INVALID_VALUE, message="observation 2 is odd")}
    p = run(FakeDaemon(answer), "--max-steps", 10)
    assert p.returncode == 1
    assert "observation 2 is odd" in p.stderr


def test_model_of_another_size_exits_1():
    p = run(FakeDaemon(act([0.0]), obs_size=3), "--max-steps", 10)
    assert p.returncode == 1
    assert "takes 3 observations" in p.stderr and "cartpole-swingup" in p.stderr


def test_bad_actions():
    p = run(FakeDaemon(act([math.nan])), "--max-steps", 10)
    assert p.returncode == 1
    assert "bad action" in p.stderr
    # A reply of the wrong size breaks the protocol (libmpcclient refuses it): exit 3.
    p = run(FakeDaemon(act([0.1, 0.2])), "--max-steps", 10)
    assert p.returncode == 3
    assert "2 floats" in p.stderr


def test_connection_lost_exits_3(tmp_path):
    p = run(FakeDaemon(act([0.0]), close_after=5), "--max-steps", 50, "--record", tmp_path)
    assert p.returncode == 3
    assert "step" in p.stderr
    assert load_all(tmp_path) == []  # the unfinished episode is not recorded


def test_realtime_pacing_counts_late_replies():
    # Every 4th reply takes longer than the 80 ms control period.
    import time

    def answer(step):
        if step.seq % 4 == 3:
            time.sleep(0.1)
        return act([0.0])(step)
    t0 = time.monotonic()
    p = run(FakeDaemon(answer), "--max-steps", 12, "--realtime")
    wall = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    # At least the slow ones (a loaded machine may add more).
    late = re.search(r"late replies \(> control period 80 ms\): (\d+) \(paced in real time\)",
                     p.stdout)
    assert late and int(late.group(1)) >= 3, p.stdout
    assert wall > 11 * 0.08  # paced, not as fast as possible
