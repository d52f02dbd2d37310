"""End-to-end: every shipped model (model/zoo) controls its task in MuJoCo through mpcd.

For each model, starts mpcd with its conf (model/zoo/<name>.conf) on a free loopback port,
runs `mpc-sim --task <task> --policy mpcd` (with `--obs pixels` for a pixel model: the
camera images are what mpcd sees) for a few recorded, possibly shortened episodes, and
asserts the mean return clears the model's threshold: set well under what its card
measured, and far above what random actions get, so a regression in librssm or the
planner shows per task. The deadline is one no plan ever reaches, so every plan runs all
the iterations of the model's settings and the returns depend on the model and the seed
only, not on how fast the machine is (under ASan on two busy cores a 200 ms deadline cut
every cartpole plan to about 6 of 10 iterations and one episode scored 252). Returns are
read from the recorded episode files. Skips when mpcd / mpc-sim are not built or the
model is not shipped. Run one with `-k NAME`; E2E_MIN_RETURN overrides the threshold.
"""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "model", "train"))

from mpc_rssm.data import episode_files, load_episode  # noqa: E402
from mpc_rssm.learn import Daemon, find_tool, run_logged  # noqa: E402

ZOO = os.path.join(REPO, "model", "zoo")
DEADLINE_MS = 20000  # never binds: a cartpole plan takes ~60 ms, ~350 ms under ASan


class Case:
    """A shipped model's check: episodes of `steps` control steps (0: whole) and the mean
    return they must reach. `name` is the model's file name in the zoo; `task` the
    mpc-sim task (default: the name); `pixels`: the model observes camera images."""

    def __init__(self, name, episodes, steps, min_return, why, task=None, pixels=False):
        self.name, self.task = name, task or name
        self.episodes, self.steps, self.pixels = episodes, steps, pixels
        self.min_return, self.why = min_return, why


CASES = [
    Case("cartpole-swingup", 2, 0, 700,
         "random actions score 126 +- 63 (100 episodes), so a mean of 2 episodes above "
         "700 is control, not luck; the model scores 852 +- 1 at 40 ms (its card)"),
    Case("cartpole-swingup-pixels", 2, 0, 600,
         "from 64x64 camera images; random actions score 126 +- 63", "cartpole-swingup",
         pixels=True),
    Case("pendulum-swingup", 1, 0, 500,
         "random actions score ~0: the pole must be swung up and held within 8 degrees"),
    Case("reacher-easy", 2, 125, 300,
         "half episodes (125 of 250 control steps); random actions score ~40-60 on whole "
         "ones"),
    Case("cheetah-run", 1, 125, 200,
         "half an episode; random actions score ~10-15 on whole ones"),
]


def build_dirs():
    root = os.environ.get("MESON_BUILD_ROOT")
    if root:
        return [root]
    return [os.path.join(REPO, d) for d in sorted(os.listdir(REPO)) if d.startswith("build")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_shipped_model_controls_its_task(case, tmp_path):
    model = os.path.join(ZOO, case.name + ".safetensors")
    config = os.path.join(ZOO, case.name + ".conf")
    if not os.path.exists(model):
        pytest.skip(f"{model} is not shipped")
    mpcd = find_tool("mpcd", None, build_dirs())
    sim = find_tool("mpc-sim", None, build_dirs())
    if not mpcd or not sim:
        pytest.skip("mpcd or mpc-sim is not built (mpc-sim needs MuJoCo)")
    log = open(tmp_path / "tools.log", "w+")
    # admission control off: one robot, and a busy (ASan) machine's calibration could
    # refuse it
    daemon = Daemon(mpcd, None, DEADLINE_MS, log, ["--config", config, "--min-iterations=0"])
    try:
        daemon.start(model)
        rec = str(tmp_path / "episodes")
        os.makedirs(rec)
        cmd = [sim, "--task", case.task, "--policy", "mpcd", "--connect", daemon.endpoint,
               "--episodes", str(case.episodes), "--seed", "7", "--deadline-ms",
               str(DEADLINE_MS), "--timeout", str(3 * DEADLINE_MS), "--record", rec]
        if case.steps:
            cmd += ["--max-steps", str(case.steps)]
        if case.pixels:  # at the model's image size
            from mpc_rssm.export import load_model
            side = load_model(model)[0].cfg.image_height
            cmd += ["--obs", "pixels", "--image-size", str(side)]
        rc = run_logged(cmd, log, timeout=900)
    finally:
        daemon.stop()
        log.seek(0)
        sys.stdout.write(log.read())
    assert rc == 0, "mpc-sim failed (log above)"
    rets = [float(load_episode(p)["reward"].sum()) for p in episode_files(rec)]
    assert len(rets) == case.episodes
    need = float(os.environ.get("E2E_MIN_RETURN", case.min_return))
    print(f"{case.name}: returns {rets}, mean {np.mean(rets):.1f} (needs {need}: {case.why})")
    assert np.mean(rets) >= need, rets
