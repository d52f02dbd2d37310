"""Trainer tests: chunk pairing, the loss going down, bit-exact resume, function-preserving
renormalisation, the optional objectives, the mpc-train CLI, and that an exported model
passes the C loader (`mpc-model check`, skipped until it is built).

Everything runs on synthetic pendulum episodes (synthetic.py) with a tiny model: seconds.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from synthetic import write_pendulum_episodes  # noqa: E402  (also puts model/train on the path)

from mpc_rssm.data import EpisodeBuffer, EpisodeError, write_episode  # noqa: E402
from mpc_rssm.rssm import RSSMConfig  # noqa: E402
from mpc_rssm.train import Trainer, TrainConfig, renormalise, export  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
MPC_TRAIN = os.path.join(REPO, "model", "train", "mpc-train")

torch.set_num_threads(1)


def tiny(obs_dim=3, action_dim=1, **kw):
    cfg = dict(obs_dim=obs_dim, action_dim=action_dim, deter=16, stoch=4, hidden=16, embed=16)
    cfg.update(kw)
    return RSSMConfig(**cfg)


def tiny_train(**kw):
    cfg = dict(batch=8, length=16, seed=3)
    cfg.update(kw)
    return TrainConfig(**cfg)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    d = tmp_path_factory.mktemp("episodes")
    write_pendulum_episodes(str(d), 6, seed=1, steps=40)
    return str(d)


def make_trainer(buffer, **kw):
    t = Trainer(tiny(**kw.pop("model", {})), tiny_train(**kw))
    renormalise(t.model, *buffer.obs_stats())
    return t


def test_chunks_pair_previous_action_and_reward(tmp_path):
    T = 10
    obs = np.arange((T + 1) * 2, dtype=np.float32).reshape(T + 1, 2)
    act = 100 + np.arange(T, dtype=np.float32)[:, None]
    rew = 1000 + np.arange(T, dtype=np.float32)
    write_episode(str(tmp_path / "a.npz"), obs, act, rew)
    buf = EpisodeBuffer(str(tmp_path))
    b = buf.sample(64, 4, np.random.default_rng(0))
    assert b["obs"].shape == (4, 64, 2) and b["prev_action"].shape == (4, 64, 1)
    for j in range(64):
        s = int(b["obs"][0, j, 0]) // 2  # observation index of the chunk start
        for i in range(4):
            assert b["obs"][i, j, 0] == obs[s + i, 0]
            if s + i == 0:
                assert b["prev_action"][i, j, 0] == 0 and b["reward_mask"][i, j] == 0
            else:
                assert b["prev_action"][i, j, 0] == act[s + i - 1, 0]
                assert b["reward"][i, j] == rew[s + i - 1]
                assert b["reward_mask"][i, j] == 1
    # uniform over the 8 possible starts: every one is drawn
    starts = {int(b["obs"][0, j, 0]) // 2 for j in range(64)}
    assert starts == set(range(T + 1 - 4 + 1))


def test_bad_episode_files_are_rejected(tmp_path):
    np.savez(str(tmp_path / "bad.npz"), observation=np.zeros((5, 2), np.float32),
             action=np.zeros((5, 1), np.float32), reward=np.zeros(4, np.float32))
    with pytest.raises(EpisodeError, match="inconsistent lengths"):
        EpisodeBuffer(str(tmp_path))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(EpisodeError, match="bad.npz"):
        EpisodeBuffer(str(tmp_path))


def test_loss_decreases(episodes):
    buf = EpisodeBuffer(episodes)
    t = make_trainer(buf, lr=3e-3)
    t.fit(buf, 300, progress=False)
    h = t.history
    fit = lambda recs: np.mean([r["recon"] + r["reward"] for r in recs])
    first, last = fit(h[:10]), fit(h[-10:])
    assert last < 0.5 * first, (first, last)
    assert all(np.isfinite(r["loss"]) for r in h)


def test_resume_is_bit_exact(episodes, tmp_path):
    buf = EpisodeBuffer(episodes)
    straight = make_trainer(buf)
    straight.fit(buf, 12, progress=False)

    first = make_trainer(buf)
    first.fit(buf, 5, progress=False)
    ck = str(tmp_path / "ck.pt")
    first.save(ck)
    resumed = Trainer.load(ck)
    assert resumed.step == 5
    resumed.fit(buf, 7, progress=False)
    assert resumed.step == 12
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert [r["loss"] for r in straight.history] == [r["loss"] for r in resumed.history]


def test_renormalise_keeps_the_function(episodes):
    buf = EpisodeBuffer(episodes)
    t = make_trainer(buf)
    m = t.model
    obs = buf.sample(4, 6, np.random.default_rng(1))["obs"]
    h = torch.randn(6, 4, 16)
    with torch.no_grad():
        e0 = m.encode(obs)
        raw0 = m.decode(h, torch.randn(6, 4, 4, generator=torch.Generator().manual_seed(0)))
        raw0 = raw0 * m.obs_std + m.obs_mean
        renormalise(m, np.array([0.3, -0.2, 1.0]), np.array([0.5, 2.0, 3.0]))
        e1 = m.encode(obs)
        raw1 = m.decode(h, torch.randn(6, 4, 4, generator=torch.Generator().manual_seed(0)))
        raw1 = raw1 * m.obs_std + m.obs_mean
    assert torch.allclose(e0, e1, atol=1e-5)
    assert torch.allclose(raw0, raw1, atol=1e-4)
    assert torch.allclose(m.obs_std, torch.tensor([0.5, 2.0, 3.0]))


def test_overshooting_and_value_head_train(episodes):
    buf = EpisodeBuffer(episodes)
    t = make_trainer(buf, overshooting=4, value_horizon=5, model={"has_value": True})
    t.fit(buf, 30, progress=False)
    last = t.history[-1]
    for k in ("overshoot_kl", "overshoot_reward", "value"):
        assert k in last and np.isfinite(last[k]), k
    v = [r["value"] for r in t.history]
    assert np.mean(v[-5:]) < np.mean(v[:5])
    # the value head is only fitted through the critic loss: its grads must be non-zero
    assert t.model.value[0].weight.grad.abs().sum() > 0


def find_built(name):
    """A built tool from the meson build dir running the tests, or any build* dir."""
    roots = [os.environ.get("MESON_BUILD_ROOT")] + \
        [os.path.join(REPO, d) for d in sorted(os.listdir(REPO)) if d.startswith("build")]
    for root in filter(None, roots):
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(("meson-", "."))]
            if name in files and os.access(os.path.join(dirpath, name), os.X_OK):
                return os.path.join(dirpath, name)
    return None


def run_train(*args):
    return subprocess.run([MPC_TRAIN, *args], capture_output=True, text=True, timeout=300)


def test_cli_train_resume_plot_export(episodes, tmp_path):
    ck, out, png = (str(tmp_path / n) for n in ("ck.pt", "m.safetensors", "loss.png"))
    small = ["--deter", "16", "--stoch", "4", "--hidden", "16", "--embed", "16",
             "--batch", "8", "--length", "16", "--no-progress", "--task", "pendulum-swingup"]
    r = run_train("--data", episodes, "--steps", "6", "--checkpoint", ck, *small)
    assert r.returncode == 0, r.stderr
    r = run_train("--data", episodes, "--steps", "4", "--checkpoint", ck, "--resume",
                  "--out", out, "--plot", png, "--eval-return", "12.5", *small)
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(png) > 1000
    from mpc_rssm.export import load_model
    model, meta = load_model(out)
    assert meta["train_steps"] == 10
    assert meta["data_episodes"] == 6 and meta["data_steps"] == 240
    assert meta["task"] == "pendulum-swingup" and meta["eval_return"] == 12.5
    assert meta["control_period_s"] == pytest.approx(0.04)
    assert "final_recon" in meta and "date" in meta
    assert model.cfg.deter == 16
    # the stored statistics are the data's
    buf = EpisodeBuffer(episodes)
    mean, std = buf.obs_stats()
    assert np.allclose(model.obs_mean.numpy(), mean, atol=1e-6)
    assert np.allclose(model.obs_std.numpy(), std, atol=1e-6)

    checker = find_built("mpc-model")
    if checker is None:
        pytest.skip("mpc-model is not built: the C-side check of the export is skipped")
    r = subprocess.run([checker, "check", out], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_rejects_bad_input(tmp_path):
    r = run_train("--data", str(tmp_path), "--steps", "1", "--no-progress")
    assert r.returncode == 2 and "no .npz episodes" in r.stderr
    r = run_train("--data", str(tmp_path), "--resume", "--no-progress")
    assert r.returncode == 2 and "--checkpoint" in r.stderr


def test_resume_overrides_only_what_the_command_line_gives():
    from mpc_rssm.learn import build_parser as learn_parser
    from mpc_rssm.train_cli import build_parser as train_parser, resume_overrides
    argv = ["--data", "d", "--resume", "--checkpoint", "c", "--free-nats", "1.5",
            "--lr", "3e-4"]
    assert resume_overrides(train_parser, argv) == {"free_nats": 1.5, "lr": 3e-4}
    assert resume_overrides(train_parser, ["--data", "d"]) == {}
    argv = ["--task", "cartpole-swingup", "--out", "o", "--resume", "--free-nats=0.5"]
    assert resume_overrides(learn_parser, argv) == {"free_nats": 0.5}
    assert resume_overrides(learn_parser, ["--resume", "o", "--planet"]) == \
        {"free_nats": 3.0, "overshooting": 0, "overshooting_stride": 1}


def test_defaults_are_the_state_recipe_and_planet_is_one_flag_away():
    from mpc_rssm.train_cli import build_parser, train_config_from
    parse = lambda *a: train_config_from(build_parser().parse_args(["--data", "d", *a]))
    c = parse()
    assert (c.free_nats, c.overshooting, c.overshooting_stride) == (1.0, 12, 4)
    c = parse("--planet")
    assert (c.free_nats, c.overshooting, c.overshooting_stride) == (3.0, 0, 1)
    c = parse("--planet", "--free-nats", "2", "--overshooting", "50")
    assert (c.free_nats, c.overshooting) == (2.0, 50)
    assert TrainConfig().free_nats == 1.0 and TrainConfig().overshooting == 12
