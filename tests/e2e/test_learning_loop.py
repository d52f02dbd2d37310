"""Slow: the whole PlaNet loop (mpc-learn) on cartpole-swingup, short but complete.

Random seed episodes, training, export, hot-swap into mpcd, planner episodes with
exploration noise, periodic and final evaluation, then a stop and a --resume that carries
on from the saved state. Checks the artefacts and that the episodes really came from the
tools; the return itself is not asserted (a dozen episodes are too few to swing up).
"""
import json
import os
import subprocess

import pytest

from test_zoo import REPO, build_dirs, find_tool  # noqa: F401

MPC_LEARN = os.path.join(REPO, "model", "train", "mpc-learn")


def learn(out, *extra):
    args = [MPC_LEARN, "--task", "cartpole-swingup", "--out", out, "--seed-episodes", "2",
            "--train-steps", "20", "--initial-steps", "20", "--eval-every", "2",
            "--eval-episodes", "1", "--final-eval-episodes", "2", "--deadline-ms", "40",
            "--no-progress", "--batch", "16", "--length", "32", *extra]
    build = build_dirs()[0]
    return subprocess.run(args + ["--build-dir", build], capture_output=True, text=True,
                          timeout=1500)


def test_learning_loop_runs_and_resumes(tmp_path):
    if not find_tool("mpcd", None, build_dirs()) or not find_tool("mpc-sim", None,
                                                                  build_dirs()):
        pytest.skip("mpcd or mpc-sim is not built")
    out = str(tmp_path / "run")
    r = learn(out, "--episodes", "4")
    assert r.returncode == 0, r.stdout + r.stderr
    r2 = learn(out, "--episodes", "5")
    assert r2.returncode == 1 and "--resume" in r2.stderr  # refuses to clobber a run
    r3 = learn(out, "--episodes", "6", "--resume")
    assert r3.returncode == 0, r3.stdout + r3.stderr
    log = json.load(open(os.path.join(out, "log.json")))
    eps = log["episodes"]
    assert len(eps) == 6
    assert [e["kind"] for e in eps] == ["random"] * 2 + ["planner"] * 4
    assert all(e["steps"] == 125 for e in eps)
    assert eps[-1]["env_steps"] == 6 * 125
    assert len(log["evals"]) >= 2 and len(log["final_eval"]["returns"]) == 2
    for f in ("learning.png", "losses.png", "model.safetensors", "best.safetensors",
              "ckpt.pt"):
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    checker = find_tool("mpc-model", None, build_dirs())
    if checker:
        r = subprocess.run([checker, "check", os.path.join(out, "model.safetensors")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
