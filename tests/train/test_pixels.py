"""Pixel training tests: episodes with images, PlaNet's full pixel objective on a tiny run,
and distillation of a state model into a pixel model (both through mpc-train, both resumed
bit for bit), with the files they export checked by the Python and C loaders.

Synthetic pendulum episodes with 48 x 48 pictures (synthetic.py) and tiny models: seconds.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from synthetic import write_pendulum_episodes, write_pendulum_pixel_episodes  # noqa: E402

from mpc_rssm.data import EpisodeBuffer, EpisodeError  # noqa: E402
from mpc_rssm.export import load_model  # noqa: E402
from test_trainer import find_built, run_train  # noqa: E402

torch.set_num_threads(1)

TINY = ["--deter", "16", "--stoch", "4", "--hidden", "16", "--embed", "16",
        "--batch", "6", "--length", "8", "--no-progress", "--task", "pendulum-swingup"]


@pytest.fixture(scope="module")
def pixel_episodes(tmp_path_factory):
    d = tmp_path_factory.mktemp("pixels")
    write_pendulum_pixel_episodes(str(d), 4, seed=2, steps=30)
    return str(d)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny state model trained on the same kind of pendulum (a few hundred steps)."""
    d = tmp_path_factory.mktemp("teacher")
    write_pendulum_episodes(str(d / "ep"), 6, seed=1, steps=40)
    out = str(d / "teacher.safetensors")
    r = run_train("--data", str(d / "ep"), "--steps", "150", "--out", out, *TINY)
    assert r.returncode == 0, r.stderr
    return out


def c_check(path):
    checker = find_built("mpc-model")
    if checker is None:
        pytest.skip("mpc-model is not built: the C-side check of the export is skipped")
    r = subprocess.run([checker, "check", path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_buffer_carries_images_and_pixel_only_episodes(pixel_episodes, tmp_path):
    buf = EpisodeBuffer(pixel_episodes, images=True)
    assert buf.image_shape == (48, 48, 3)
    b = buf.sample(3, 5, np.random.default_rng(0))
    assert b["image"].shape == (5, 3, 48, 48, 3) and b["image"].dtype == torch.uint8
    # images and states of the same moment travel together
    plain = EpisodeBuffer(pixel_episodes).sample(3, 5, np.random.default_rng(0))
    assert torch.equal(plain["obs"], b["obs"]) and "image" not in plain

    only = tmp_path / "only"
    write_pendulum_pixel_episodes(str(only), 2, seed=3, steps=10, states=False)
    with pytest.raises(EpisodeError, match="mpc-train --obs pixels"):
        EpisodeBuffer(str(only))
    assert EpisodeBuffer(str(only), images=True).obs_dim == 0


def test_episode_without_images_is_refused_for_pixels(tmp_path):
    write_pendulum_episodes(str(tmp_path), 1, steps=10)
    with pytest.raises(EpisodeError, match="missing array 'image'"):
        EpisodeBuffer(str(tmp_path), images=True)


def same_tensors(a, b):
    ta, tb = load_model(a)[0].state_dict(), load_model(b)[0].state_dict()
    assert ta.keys() == tb.keys()
    return all(torch.equal(ta[k], tb[k]) for k in ta)


def test_full_pixel_objective_trains_and_resumes(pixel_episodes, tmp_path):
    """PlaNet's pixel ELBO (conv encoder + decoder) on a tiny run; stopping after 3 steps
    and resuming matches 6 steps straight; the export has no decoder and loads in C."""
    px = ["--data", pixel_episodes, "--obs", "pixels", "--conv-depth", "4", *TINY]
    straight, resumed = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    ck = str(tmp_path / "ck.pt")
    r = run_train(*px, "--steps", "6", "--out", straight, "--json")
    assert r.returncode == 0, r.stderr
    r = run_train(*px, "--steps", "3", "--checkpoint", ck)
    assert r.returncode == 0, r.stderr
    r = run_train(*px, "--steps", "3", "--checkpoint", ck, "--resume", "--out", resumed)
    assert r.returncode == 0, r.stderr
    assert same_tensors(straight, resumed)
    model, meta = load_model(straight)
    assert model.cfg.is_image and model.decoder is None
    assert (model.cfg.image_height, model.cfg.image_channels) == (48, 3)
    assert meta["final_recon"] > 0 and meta["train_steps"] == 6
    c_check(straight)


def test_pixel_objective_loss_goes_down(pixel_episodes):
    from mpc_rssm.rssm import RSSMConfig
    from mpc_rssm.train import Trainer, TrainConfig
    buf = EpisodeBuffer(pixel_episodes, images=True)
    cfg = RSSMConfig(obs_dim=0, action_dim=1, deter=16, stoch=4, hidden=16, embed=16,
                     obs_type="image", image_height=48, image_width=48, image_channels=3,
                     conv_depth=4)
    t = Trainer(cfg, TrainConfig(batch=6, length=8, seed=1, lr=3e-3))
    t.fit(buf, 40, progress=False)
    rec = [r["recon"] for r in t.history]
    assert np.mean(rec[-5:]) < 0.7 * np.mean(rec[:5]), (rec[:5], rec[-5:])


def distill(teacher, data, out, *extra):
    return run_train("--data", data, "--distill-from", teacher, "--conv-depth", "4",
                     "--batch", "6", "--length", "8", "--no-progress",
                     "--task", "pendulum-swingup", "--out", out, *extra)


def test_distillation_keeps_the_teacher_and_resumes(teacher, pixel_episodes, tmp_path):
    a, b, ck = (str(tmp_path / n) for n in ("a.safetensors", "b.safetensors", "ck.pt"))
    r = distill(teacher, pixel_episodes, a, "--steps", "6")
    assert r.returncode == 0, r.stderr
    r = distill(teacher, pixel_episodes, b, "--steps", "2", "--checkpoint", ck)
    assert r.returncode == 0, r.stderr
    os.rename(teacher, teacher + ".moved")  # the checkpoint holds the teacher itself
    try:
        r = run_train("--data", pixel_episodes, "--checkpoint", ck, "--resume", "--steps", "4",
                      "--out", b, "--no-progress", "--task", "pendulum-swingup")
    finally:
        os.rename(teacher + ".moved", teacher)
    assert r.returncode == 0, r.stderr
    assert same_tensors(a, b)

    student, meta = load_model(a)
    tm = load_model(teacher)[0].state_dict()
    sm = student.state_dict()
    assert student.cfg.is_image and student.cfg.deter == 16 and student.cfg.embed == 16
    for k in ("img_in.weight", "gru.weight_hh", "prior.1.bias", "reward.2.weight",
              "posterior.0.weight"):  # the first phase learns only to see
        assert torch.equal(sm[k], tm[k]), k
    assert "distilled from teacher.safetensors sha256 " in meta["trainer"]
    assert meta["final_distill_embed"] > 0 and "final_distill_recon" not in meta
    c_check(a)

    # The second phase, resumed: the posterior learns too, with the state read back
    r = run_train("--data", pixel_episodes, "--checkpoint", ck, "--resume", "--steps", "3",
                  "--distill-tune", "posterior", "--distill-recon", "1",
                  "--distill-belief", "0.5", "--out", b,
                  "--no-progress", "--task", "pendulum-swingup")
    assert r.returncode == 0, r.stderr
    student, meta = load_model(b)
    sm = student.state_dict()
    assert not torch.equal(sm["posterior.0.weight"], tm["posterior.0.weight"])
    assert torch.equal(sm["gru.weight_hh"], tm["gru.weight_hh"])
    assert meta["final_distill_recon"] > 0 and meta["final_distill_belief"] > 0
    assert meta["train_steps"] == 9


def test_distillation_learns_to_see(teacher, pixel_episodes):
    from mpc_rssm.train import Trainer, TrainConfig, distill_student_config
    buf = EpisodeBuffer(pixel_episodes, images=True)
    t = load_model(teacher)[0]
    tr = Trainer(distill_student_config(t.cfg, buf.image_shape, 4),
                 TrainConfig(batch=6, length=8, seed=1, lr=3e-3, distill_tune="posterior",
                             distill_recon=1.0, distill_belief=1.0), teacher=t)
    tr.fit(buf, 60, progress=False)
    for part in ("distill_embed", "distill_recon", "distill_belief"):
        v = [r[part] for r in tr.history]
        assert np.mean(v[-5:]) < 0.75 * np.mean(v[:5]), (part, v[:5], v[-5:])


def test_distillation_refuses_what_cannot_teach(teacher, pixel_episodes, tmp_path):
    r = distill(teacher, str(tmp_path), str(tmp_path / "m.safetensors"), "--steps", "1")
    assert r.returncode == 2 and "no .npz episodes" in r.stderr
    states = tmp_path / "states"
    write_pendulum_episodes(str(states), 1, steps=10)
    r = distill(teacher, str(states), str(tmp_path / "m.safetensors"), "--steps", "1")
    assert r.returncode == 2 and "missing array 'image'" in r.stderr
    only = tmp_path / "only"
    write_pendulum_pixel_episodes(str(only), 1, steps=10, states=False)
    r = distill(teacher, str(only), str(tmp_path / "m.safetensors"), "--steps", "1")
    assert r.returncode == 2 and "mpc-sim --obs both" in r.stderr
    px = str(tmp_path / "px.safetensors")
    r = run_train("--data", pixel_episodes, "--obs", "pixels", "--conv-depth", "4", "--steps",
                  "1", "--out", px, *TINY)
    assert r.returncode == 0, r.stderr
    r = distill(px, pixel_episodes, str(tmp_path / "m.safetensors"), "--steps", "1")
    assert r.returncode == 2 and "is a pixel model" in r.stderr


def test_second_phase_resumes_exactly(teacher, pixel_episodes, tmp_path):
    """Phase 2 (posterior, state read-back and belief) stopped and resumed within the
    phase matches it run straight (its optimiser state travels in the checkpoint)."""
    phase2 = ["--distill-tune", "posterior", "--distill-recon", "1", "--distill-belief", "1",
              "--no-progress", "--task", "pendulum-swingup"]
    ck1, ck2 = str(tmp_path / "one.pt"), str(tmp_path / "two.pt")
    r = distill(teacher, pixel_episodes, str(tmp_path / "p1.safetensors"), "--steps", "2",
                "--checkpoint", ck1)
    assert r.returncode == 0, r.stderr
    with open(ck1, "rb") as f, open(ck2, "wb") as g:
        g.write(f.read())
    a, b = str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")
    resume = ["--data", pixel_episodes, "--resume", *phase2]
    r = run_train(*resume, "--checkpoint", ck1, "--steps", "4", "--out", a)
    assert r.returncode == 0, r.stderr
    for steps in ("2", "2"):
        r = run_train(*resume, "--checkpoint", ck2, "--steps", steps, "--out", b)
        assert r.returncode == 0, r.stderr
    assert same_tensors(a, b)


@pytest.mark.parametrize("args, message", [
    (["--resume", "--distill-from", "T"], "--distill-from: on --resume the teacher is"),
    (["--distill-from", "T", "--obs", "state"], "--distill-from makes a pixel model"),
    (["--distill-recon", "1"], "--distill-recon needs --distill-from"),
])
def test_pixel_options_that_contradict_are_refused(args, message, tmp_path):
    r = run_train("--data", str(tmp_path), "--checkpoint", str(tmp_path / "c.pt"), *args,
                  "--no-progress")
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_distillation_options_on_a_state_checkpoint_are_refused(teacher, tmp_path):
    d = tmp_path / "ep"
    write_pendulum_episodes(str(d), 2, steps=20)
    ck = str(tmp_path / "c.pt")
    r = run_train("--data", str(d), "--steps", "1", "--checkpoint", ck, *TINY)
    assert r.returncode == 0, r.stderr
    r = run_train("--data", str(d), "--resume", "--checkpoint", ck, "--steps", "1",
                  "--distill-belief", "1", "--no-progress")
    assert r.returncode == 2 and "is not a distillation" in r.stderr, r.stderr
    r = run_train("--data", str(d), "--resume", "--checkpoint", ck, "--steps", "1",
                  "--obs", "pixels", "--no-progress")
    assert r.returncode == 2 and "holds a state model, not what --obs" in r.stderr, r.stderr
    r = run_train("--data", str(d), "--resume", "--checkpoint", ck, "--steps", "1",
                  "--obs", "state", "--no-progress")
    assert r.returncode == 0, r.stderr


def test_resumed_distillation_refuses_episodes_without_states(teacher, tmp_path):
    ck = str(tmp_path / "c.pt")
    px = tmp_path / "px"
    write_pendulum_pixel_episodes(str(px), 1, seed=5, steps=12)
    r = distill(teacher, str(px), str(tmp_path / "m.safetensors"), "--steps", "1",
                "--checkpoint", ck)
    assert r.returncode == 0, r.stderr
    only = tmp_path / "only"
    write_pendulum_pixel_episodes(str(only), 1, seed=5, steps=12, states=False)
    r = run_train("--data", str(only), "--resume", "--checkpoint", ck, "--steps", "1",
                  "--no-progress", "--task", "pendulum-swingup")
    assert r.returncode == 2 and "mpc-sim --obs both" in r.stderr, r.stderr


def test_distillation_takes_the_teachers_task_and_discount(teacher, pixel_episodes, tmp_path):
    out, ck = str(tmp_path / "m.safetensors"), str(tmp_path / "c.pt")
    base = ["--data", pixel_episodes, "--distill-from", teacher, "--conv-depth", "4",
            "--batch", "6", "--length", "8", "--no-progress", "--steps", "1"]
    r = run_train(*base, "--task", "cartpole-swingup", "--out", out)
    assert r.returncode == 2 and "is of task 'pendulum-swingup', not --task " \
        "cartpole-swingup" in r.stderr, r.stderr
    r = run_train(*base, "--discount", "0.9", "--out", out)
    assert r.returncode == 2 and "keeps its teacher's discount" in r.stderr, r.stderr
    r = run_train(*base, "--out", out, "--checkpoint", ck)  # no --task: the teacher's
    assert r.returncode == 0, r.stderr
    meta, tmeta = load_model(out)[1], load_model(teacher)[1]
    assert meta["task"] == "pendulum-swingup" and meta["discount"] == tmeta["discount"]
    resume = ["--data", pixel_episodes, "--resume", "--checkpoint", ck, "--steps", "1",
              "--no-progress"]
    r = run_train(*resume, "--out", out)  # the checkpoint's task, without --task
    assert r.returncode == 0, r.stderr
    assert load_model(out)[1]["task"] == "pendulum-swingup"
    r = run_train(*resume, "--task", "reacher-easy")
    assert r.returncode == 2 and "is of task 'pendulum-swingup'" in r.stderr, r.stderr
    r = run_train(*resume, "--discount", "0.5")
    assert r.returncode == 2 and "its discount is its teacher's" in r.stderr, r.stderr
