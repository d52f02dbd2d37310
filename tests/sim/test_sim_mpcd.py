"""test_sim_mpcd.py: mpc-sim --policy mpcd against the real mpcd (integration).

Starts mpcd with a small random cartpole-sized model (tests/clients/mpcd_harness.py) and
checks that mpc-sim completes recorded episodes through it (the issue's "done when"), that
the session shows up in mpcctl status while it runs, that --realtime reports latency and
late replies, that physics that runs on (--no-wait, --follow, --delay-steps, --drop)
completes episodes and reports what happened, and that a model of the wrong size is
refused with exit status 1. Skips
while daemon/mpcd is not built.
"""
import glob
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients"))
from mpcd_harness import Mpcd, find_binary, find_mpcd, make_model  # noqa: E402

SIM = os.environ.get("MPC_SIM")
pytestmark = [
    pytest.mark.skipif(not SIM or not os.access(SIM, os.X_OK), reason="mpc-sim is not built"),
    pytest.mark.skipif(not find_mpcd(), reason="mpcd is not built (set MPCD or build it)"),
]


def model(tmp_path, obs_dim=5):
    return make_model(tmp_path / f"m{obs_dim}.safetensors", obs_dim=obs_dim, action_dim=1,
                      extra=["--task", "cartpole-swingup"])


def sim(daemon, *args, timeout=300):
    cmd = [SIM, "--task", "cartpole-swingup", "--policy", "mpcd", "--connect",
           daemon.address, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_episodes_through_mpcd(tmp_path):
    with Mpcd(model(tmp_path), log_path=str(tmp_path / "mpcd.log")) as d:
        p = sim(d, "--episodes", 2, "--max-steps", 40, "--deadline-ms", 30, "--record",
                tmp_path / "ep", "--explore", 0.1)
        if p.returncode != 0:
            sys.stdout.write(d.log_text())
        assert p.returncode == 0, p.stdout + p.stderr
    files = sorted(glob.glob(str(tmp_path / "ep" / "*.npz")))
    assert len(files) == 2
    with np.load(files[0]) as f:
        assert f["action"].shape == (40, 1) and f["observation"].shape == (41, 5)
        assert np.all(np.abs(f["action"]) <= 1)
    assert "replies: 80" in p.stdout
    assert re.search(r"latency p50 [\d.]+ p90 [\d.]+ p99 [\d.]+ max [\d.]+ ms", p.stdout)


def test_session_visible_and_realtime(tmp_path):
    mpcctl = find_binary("mpcctl", "MPCCTL", "clients")
    with Mpcd(model(tmp_path), log_path=str(tmp_path / "mpcd.log")) as d:
        proc = subprocess.Popen([SIM, "--task", "cartpole-swingup", "--policy", "mpcd",
                                 "--connect", d.address, "--max-steps", "50", "--realtime"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        status = None
        deadline = time.monotonic() + 60
        while mpcctl and proc.poll() is None and time.monotonic() < deadline:
            # 50 steps at 80 ms take 4 s: poll until the session shows (mpc-sim may take a
            # while to start on a loaded machine)
            status = subprocess.run([mpcctl, "--connect", d.address, "status"],
                                    capture_output=True, text=True, timeout=30)
            if status.returncode != 0 or "mpc-sim/cartpole-swingup" in status.stdout:
                break
            time.sleep(0.1)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert "(paced in real time)" in out
    if mpcctl:
        assert status is not None, "mpc-sim ended before mpcctl could ask"
        assert status.returncode == 0, status.stderr
        assert "mpc-sim/cartpole-swingup" in status.stdout


def test_physics_runs_on(tmp_path):
    with Mpcd(model(tmp_path), log_path=str(tmp_path / "mpcd.log")) as d:
        p = sim(d, "--episodes", 2, "--max-steps", 30, "--no-wait", "--follow",
                "--delay-steps", 2, "--drop", 0.3, "--seed", 4, "--record", tmp_path / "ep")
        assert p.returncode == 0, p.stdout + p.stderr + d.log_text()
        m = re.search(r"physics ran on: no-wait, following plans, delay 2 steps "
                      r"\(compensated\), replies dropped (\d+), physics steps on a plan's "
                      r"later rows \d+, past its end (\d+), steps sent with applied_actions "
                      r"(\d+)", p.stdout)
        assert m, p.stdout
        assert 5 <= int(m.group(1)) <= 35  # 30 % of 60 replies, seeded
        assert int(m.group(3)) == 60  # every step says what will be applied meanwhile
        files = sorted(glob.glob(str(tmp_path / "ep" / "*.npz")))
        with np.load(files[0]) as f:
            # the first two steps apply what was in force before any reply: zero
            assert np.all(f["action"][:2] == 0) and np.any(f["action"][2:] != 0)
        # The daemon refuses a delay beyond its planner's horizon (12): exit 1.
        p = sim(d, "--max-steps", 5, "--delay-steps", 13)
        assert p.returncode == 1 and "INVALID_VALUE" in p.stderr and "horizon" in p.stderr


def test_wrong_model_size_refused(tmp_path):
    with Mpcd(model(tmp_path, obs_dim=3), log_path=str(tmp_path / "mpcd.log")) as d:
        p = sim(d, "--max-steps", 5)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "hello" in p.stderr
