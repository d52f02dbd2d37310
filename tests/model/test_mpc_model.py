"""mpc-model CLI: info, check (good file and the whole bad-file corpus), eval vs PyTorch.

Run by meson with MPC_MODEL_BIN set to the built binary.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import rssm_testlib as lib

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def cli():
    binary = os.environ.get("MPC_MODEL_BIN")
    if not binary:
        pytest.skip("MPC_MODEL_BIN not set (run through meson test)")
    return lambda *args, **kw: subprocess.run([binary, *map(str, args)], capture_output=True,
                                              text=True, **kw)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model = lib.random_model(seed=11, obs_dim=5, action_dim=2, deter=32, stoch=6, hidden=24,
                             embed=12, activation="elu", has_value=True, has_decoder=True)
    path = tmp_path_factory.mktemp("cli") / "m.safetensors"
    lib.export_model(model, path, {"task": "cli-test", "train_steps": 7})
    return model, path


def test_help_and_usage(cli):
    helped = cli("--help")
    assert helped.returncode == 0
    for section in ("SYNOPSIS", "DESCRIPTION", "EXIT STATUS", "\"observe\"", "\"imagine\""):
        assert section in helped.stdout
    assert cli().returncode == 2
    assert cli("info").returncode == 2
    assert cli("frobnicate", "x").returncode == 2


def test_info(cli, model_file):
    model, path = model_file
    run = cli("info", path)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "O=5 A=2 D=32 S=6 H=24 E=12" in out
    assert "activation  elu" in out and "reward, value, decoder" in out
    assert f"parameters  {sum(t.numel() for t in model.state_dict().values())}" in out
    assert "gru.weight_hh          [96, 32]" in out
    assert "train_steps            7" in out and "task        cli-test" in out
    D, S, H, A = 32, 6, 24, 2
    flops = (2 * H * (S + A) + 6 * D * H + 6 * D * D + 2 * H * D + 4 * S * H
             + 2 * (2 * H * (D + S) + 2 * H * H + 2 * H))
    assert f"flops       {flops} " in out


def test_check_good_and_bad_corpus(cli, model_file, tmp_path):
    run = cli("check", model_file[1])
    assert run.returncode == 0 and f": ok (mpc-rssm {lib.FORMAT_VERSION}" in run.stdout
    corpus = tmp_path / "bad"
    gen = subprocess.run([sys.executable, os.path.join(HERE, "make_bad_files.py"), str(corpus)],
                         capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    cases = json.loads((corpus / "manifest.json").read_text())
    assert len(cases) > 40
    for case in cases:
        run = cli("check", corpus / case["file"])
        if case["code"] == "OK":
            assert run.returncode == 0, run.stdout
        else:
            assert run.returncode == 1, case
            assert case["message"] in run.stdout, (case, run.stdout)
    assert cli("check", model_file[1], corpus / "nan-weight.safetensors").returncode == 1
    missing = cli("info", tmp_path / "nope.safetensors")
    assert missing.returncode == 1 and "nope.safetensors" in missing.stderr


@torch.no_grad()
def test_eval_matches_pytorch(cli, model_file, tmp_path):
    model, path = model_file
    h, z, a, obs = lib.reference_inputs(model, 4, seed=3)
    steps = [{"obs": obs[0].tolist()},
             {"obs": obs[1].tolist(), "a_prev": a[1].tolist()},
             {"obs": obs[2].tolist(), "a_prev": a[2].tolist(), "h": h[2].tolist(), "z": z[2].tolist()}]
    req = {"observe": steps,
           "imagine": {"h": h.tolist(), "z": z.tolist(), "a": a.tolist()}}
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(req))
    run = cli("eval", path, inp)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)

    # the same filtering in PyTorch: h, z chain through post means unless given
    hc, zc = model.initial_state(1)
    for i, step in enumerate(steps):
        if "h" in step:
            hc, zc = h[2:3], z[2:3]
        ap = a[i:i + 1] if "a_prev" in step else torch.zeros(1, 2)
        hc, (pm, ps), (qm, qs) = model.observe_step(hc, zc, ap, obs[i:i + 1])
        got = out["observe"][i]
        for name, want in (("h", hc), ("prior_mean", pm), ("prior_std", ps),
                           ("post_mean", qm), ("post_std", qs)):
            np.testing.assert_allclose(got[name], want[0].numpy(), atol=1e-4, err_msg=name)
        np.testing.assert_allclose(got["reward"], model.predict_reward(hc, qm)[0].item(), atol=1e-4)
        kl = torch.distributions.kl_divergence(torch.distributions.Normal(qm, qs),
                                               torch.distributions.Normal(pm, ps)).sum()
        np.testing.assert_allclose(got["kl"], kl.item(), atol=1e-4)
        zc = qm
    hn, (pm, ps) = model.imagine_step(h, z, a)
    img = out["imagine"]
    np.testing.assert_allclose(img["h"], hn.numpy(), atol=1e-4)
    np.testing.assert_allclose(img["prior_std"], ps.numpy(), atol=1e-4)
    np.testing.assert_allclose(img["reward"], model.predict_reward(h, z).numpy(), atol=1e-4)
    np.testing.assert_allclose(img["value"], model.predict_value(h, z).numpy(), atol=1e-4)
    np.testing.assert_allclose(img["decode"], (model.decode(h, z) * model.obs_std + model.obs_mean).numpy(), atol=1e-4)


@pytest.mark.parametrize("req, message", [
    ({"observe": [{"obs": [1, 2, 3]}]}, "observe[0].obs must be an array of 5"),
    ({"observe": [{"obs": [0] * 5}, {"a_prev": [0, 0]}]}, "observe[1].obs"),
    ({"imagine": {"h": [[0] * 32], "z": [[0] * 6, [0] * 6], "a": [[0, 0]]}}, "imagine.z"),
    ({"imagine": {"h": [[0] * 32], "z": [[0] * 6], "a": [["x", 0]]}}, "imagine.a[0][0]"),
    ({"nothing": 1}, "observe"),
])
def test_eval_bad_input(cli, model_file, tmp_path, req, message):
    inp = tmp_path / "bad.json"
    inp.write_text(json.dumps(req))
    run = cli("eval", model_file[1], inp)
    assert run.returncode == 1 and message in run.stderr, run.stderr
    inp.write_text("{not json")
    assert cli("eval", model_file[1], inp).returncode == 1


# -- image models (format 1.1) ------------------------------------------------------------

@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    model = lib.random_model(seed=12, obs_type="image", image_height=50, image_width=47,
                             image_channels=3, conv_depth=2, action_dim=2, deter=16, stoch=4,
                             hidden=12, embed=8, activation="relu", has_decoder=False)
    path = tmp_path_factory.mktemp("cli-image") / "img.safetensors"
    lib.export_model(model, path, {"task": "cli-image"})
    return model, path


def test_info_and_check_image(cli, image_file):
    model, path = image_file
    run = cli("info", path)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "O=7050 A=2 D=16 S=4 H=12 E=8" in out
    assert "observation image 50x47x3 uint8 (HWC, top row first), x/255 - 0.5" in out
    assert "encoder     conv depth 2, 4 convs k4 s2 -> [16, 1, 1] -> 16 -> E=8" in out
    assert "conv_encoder.0.weight  [2, 3, 4, 4]" in out and "obs_type               image" in out
    assert "heads       reward\n" in out
    run = cli("check", path)
    assert run.returncode == 0 and run.stdout.rstrip().endswith("image 50x47x3)"), run.stdout


@torch.no_grad()
def test_eval_image_matches_pytorch(cli, image_file, tmp_path):
    model, path = image_file
    images = lib.random_images(model, 2, seed=4)
    a = torch.tensor([[0.5, -0.25]])
    steps = [{"obs": images[0].reshape(-1).int().tolist()},
             {"obs": images[1].reshape(-1).int().tolist(), "a_prev": a[0].tolist()}]
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps({"observe": steps}))
    run = cli("eval", path, inp)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)["observe"]
    hc, zc = model.initial_state(1)
    for i in range(2):
        ap = a if i else torch.zeros(1, 2)
        hc, (pm, ps), (qm, qs) = model.observe_step(hc, zc, ap, images[i:i + 1])
        for name, want in (("h", hc), ("prior_mean", pm), ("post_mean", qm), ("post_std", qs)):
            np.testing.assert_allclose(out[i][name], want[0].numpy(), atol=1e-4, err_msg=name)
        zc = qm
    for obs, message in (([0] * 5, "must be an image: an array of 7050 integers 0..255"),
                         ([256] * 7050, "observe[0].obs[0] is not an integer 0..255"),
                         ([0.5] * 7050, "observe[0].obs[0] is not an integer 0..255")):
        inp.write_text(json.dumps({"observe": [{"obs": obs}]}))
        bad = cli("eval", path, inp)
        assert bad.returncode == 1 and message in bad.stderr, bad.stderr
