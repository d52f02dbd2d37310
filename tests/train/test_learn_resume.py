"""mpc-learn resumes exactly: a tiny run killed (SIGKILL, with its mpcd and mpc-sim) at
every stage of the loop and resumed each time with nothing but `--resume DIR` ends where
the same run without interruptions ends: the same episodes, evaluations, model, optimiser
state and loss history, and the same mpc-sim commands.

The loop's test hook MPC_LEARN_CRASH=STAGE:N (learn.py, crash_point) picks the moment.
The daemon's planner ends each plan by iterations, far inside the deadline, and mpc-sim's
--seed fixes both the simulator's and (Hello.seed) the daemon's draws, so the two runs
can be compared bit for bit. Needs mpcd, mpc-sim and mpcctl from MESON_BUILD_ROOT.
"""
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
MPC_LEARN = os.path.join(REPO, "model", "train", "mpc-learn")
BUILD = os.environ.get("MESON_BUILD_ROOT", os.path.join(REPO, "build"))
TOOLS = {name: os.path.join(BUILD, path) for name, path in
         (("mpcd", "daemon/mpcd"), ("mpc-sim", "clients/sim/mpc-sim"),
          ("mpcctl", "clients/mpcctl"))}

pytestmark = pytest.mark.skipif(not all(os.access(p, os.X_OK) for p in TOOLS.values()),
                                reason="mpcd, mpc-sim and mpcctl are not built")

RUN = ["--task", "cartpole-swingup", "--episodes", "6", "--seed-episodes", "2",
       "--initial-steps", "4", "--train-steps", "3", "--batch", "4", "--length", "8",
       "--deter", "8", "--stoch", "4", "--hidden", "8", "--embed", "8", "--overshooting", "4",
       "--overshooting-stride", "2", "--eval-every", "2", "--eval-episodes", "1",
       "--final-eval-episodes", "1", "--deadline-ms", "20000", "--no-progress",
       "--mpcd", TOOLS["mpcd"], "--mpc-sim", TOOLS["mpc-sim"], "--mpcctl", TOOLS["mpcctl"],
       "--sim-arg=--max-steps=16",
       "--mpcd-arg=--workers=1", "--mpcd-arg=--threads=1", "--mpcd-arg=--candidates=24",
       "--mpcd-arg=--top=4", "--mpcd-arg=--iterations=2", "--mpcd-arg=--horizon=4"]

# Every stage, in the order a run meets them: during the seed episodes; after a round of
# training, before its checkpoint; after the checkpoint; during an evaluation; after a
# collected episode is written, before the log has it.
CRASHES = ["seeded:1", "trained:3", "checkpointed:4", "evaluated:4", "collected:5"]


def learn(args, crash=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MPC_LEARN_CRASH", None)
    if crash:
        env["MPC_LEARN_CRASH"] = crash
    # its own process group, like a session whose end kills the loop and its tools
    r = subprocess.run([sys.executable, MPC_LEARN] + args, env=env, capture_output=True,
                       text=True, timeout=300, start_new_session=True)
    return r


def episodes(run, sub):
    d = os.path.join(run, sub)
    out = []
    for root, _, files in sorted(os.walk(d)):
        for f in sorted(files):
            with np.load(os.path.join(root, f)) as z:
                out.append({k: z[k].copy() for k in ("observation", "action", "reward")})
    return out


def sim_commands(run):
    """mpc-sim's command lines from the tool log, with the run's directory and the
    daemon's port (a free one per start) taken out; a command run again after an
    interruption counts once."""
    out = []
    with open(os.path.join(run, "tools.log")) as f:
        for line in f:
            if line.startswith("$ ") and "mpc-sim" in line:
                cmd = line.replace(run, "RUN")
                cmd = re.sub(r"tcp://127\.0\.0\.1:\d+", "tcp://ENDPOINT", cmd)
                if not out or out[-1] != cmd:
                    out.append(cmd)
    return out


def test_resume_after_each_interruption_matches_an_uninterrupted_run(tmp_path):
    whole, cut = str(tmp_path / "whole"), str(tmp_path / "cut")
    r = learn(["--out", whole] + RUN)
    assert r.returncode == 0, r.stdout + r.stderr

    r = learn(["--out", cut] + RUN, crash=CRASHES[0])
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    for crash in CRASHES[1:] + [None]:
        r = learn(["--resume", cut], crash=crash)
        expected = 0 if crash is None else -signal.SIGKILL
        assert r.returncode == expected, (crash, r.stdout + r.stderr)

    logs = []
    for run in (whole, cut):
        with open(os.path.join(run, "log.json")) as f:
            logs.append(json.load(f))
    a, b = logs
    assert len(b["resumed_with"]) == len(CRASHES)
    assert [(e["steps"], e["return"], e["kind"]) for e in a["episodes"]] == \
        [(e["steps"], e["return"], e["kind"]) for e in b["episodes"]]
    assert len(a["episodes"]) == 6
    assert [(e["episode"], e["returns"], e["train_step"]) for e in a["evals"]] == \
        [(e["episode"], e["returns"], e["train_step"]) for e in b["evals"]]
    assert a["final_eval"]["returns"] == b["final_eval"]["returns"]

    for sub in ("episodes", "eval"):
        ea, eb = episodes(whole, sub), episodes(cut, sub)
        assert len(ea) == len(eb) > 0
        for x, y in zip(ea, eb):
            for k in x:
                assert np.array_equal(x[k], y[k]), (sub, k)

    ca = torch.load(os.path.join(whole, "ckpt.pt"))
    cb = torch.load(os.path.join(cut, "ckpt.pt"))
    assert ca["step"] == cb["step"] == 4 + 3 * 3  # rounds at 2 (initial), 3, 4, 5 episodes
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k
    for sa, sb in zip(ca["optim"]["state"].values(), cb["optim"]["state"].values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k
    assert ca["history"] == cb["history"]
    assert ca["rng"] == cb["rng"]
    assert torch.equal(ca["gen"], cb["gen"])
    assert len(ca["loop"]["replay"]) == 5  # the last round trained on 5 episodes

    assert sim_commands(whole) == sim_commands(cut)


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    r = learn(["--resume", str(tmp_path / "nothing")])
    assert r.returncode == 2 and "no run to resume" in r.stderr, r.stderr
    r = learn(["--out", str(tmp_path / "x")])
    assert r.returncode == 2 and "needs --task and --out" in r.stderr, r.stderr
    run = str(tmp_path / "run")
    r = learn(["--out", run] + RUN + ["--episodes", "3"], crash="checkpointed:2")
    assert r.returncode == -signal.SIGKILL, r.stdout + r.stderr
    r = learn(["--resume", run, "--task", "pendulum-swingup"])
    assert r.returncode == 2 and "is cartpole-swingup" in r.stderr, r.stderr
    # an episode the checkpoint was trained on has gone: say so, do not train on less
    first = sorted(os.listdir(os.path.join(run, "episodes")))[0]
    os.unlink(os.path.join(run, "episodes", first))
    r = learn(["--resume", run])
    assert r.returncode == 1 and "missing" in r.stderr and first in r.stderr, r.stderr
