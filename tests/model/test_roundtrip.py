"""Round trip of the PyTorch side: export_model -> load_model gives the same model.

Also covers the numpy safetensors container (layout, alignment, metadata), atomic writes,
version checks in load_model, exporter refusals, the make_model.py CLI, and format 1.1:
image models (conv encoder, no pixel decoder in the file) and vector files unchanged.
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

import rssm_testlib as lib
from mpc_rssm import (FORMAT_VERSION, RSSM, ModelFileError, RSSMConfig, export_model,
                      load_model)
from mpc_rssm import safetensors_io

MAKE_MODEL = os.path.join(lib.TRAIN, "make_model.py")


@pytest.mark.parametrize("spec", [
    dict(obs_dim=5, action_dim=1, deter=24, stoch=4, hidden=16, embed=8, has_value=True),
    dict(obs_dim=9, action_dim=6, deter=16, stoch=3, hidden=12, embed=10, activation="elu",
         has_decoder=False),
])
def test_export_load_same_outputs(tmp_path, spec):
    model = lib.random_model(seed=3, trained=True, **spec)
    path = tmp_path / "m.safetensors"
    provenance = {"train_steps": 1234, "date": "2026-11-25T00:00:00Z",
                  "final_loss": 0.5, "train_config": {"lr": 1e-3, "batch": 50},
                  "action_low": [-2.0] * model.cfg.action_dim,
                  "action_high": [2.0] * model.cfg.action_dim, "task": "unit-test"}
    export_model(model, path, provenance)
    loaded, meta = load_model(path)
    assert loaded.cfg == model.cfg
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    ref, got = lib.reference_outputs(model, 7, 2), lib.reference_outputs(loaded, 7, 2)
    assert ref.keys() == got.keys()
    for k in ref:
        np.testing.assert_array_equal(ref[k], got[k], err_msg=k)
    assert meta["format"] == "mpc-rssm" and meta["format_version"] == FORMAT_VERSION
    assert meta["train_steps"] == 1234 and meta["final_loss"] == 0.5
    assert meta["train_config"] == {"lr": 1e-3, "batch": 50}
    assert meta["date"] == "2026-11-25T00:00:00Z" and meta["task"] == "unit-test"
    assert meta["action_low"] == [-2.0] * model.cfg.action_dim
    assert meta["obs_dim"] == model.cfg.obs_dim and meta["has_value"] == model.cfg.has_value


def test_container_layout(tmp_path):
    tensors = {"b": np.arange(3, dtype=np.float32), "a": np.ones((2, 2), np.float32)}
    blob = safetensors_io.encode(tensors, {"k": "v"})
    (n,) = struct.unpack("<Q", blob[:8])
    assert (8 + n) % 8 == 0, "tensor data must start 8-byte aligned"
    header = json.loads(blob[8:8 + n])
    assert header["__metadata__"] == {"k": "v"}
    assert header["b"] == {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}
    assert header["a"]["data_offsets"] == [12, 28]
    back, meta = safetensors_io.decode(blob)
    assert list(back) == ["b", "a"] and meta == {"k": "v"}
    np.testing.assert_array_equal(back["a"], tensors["a"])
    with pytest.raises(TypeError):
        safetensors_io.encode(tensors, {"k": 1})
    for bad in (blob[:-4], blob[:6], blob + b"\0" * 4):
        with pytest.raises(safetensors_io.SafetensorsError):
            safetensors_io.decode(bad)


def test_write_is_atomic_and_replaces(tmp_path):
    path = tmp_path / "m.safetensors"
    safetensors_io.write(path, {"x": np.zeros(2, np.float32)})
    safetensors_io.write(path, {"x": np.ones(5, np.float32)})
    assert os.listdir(tmp_path) == ["m.safetensors"], "no temporary file may be left"
    assert safetensors_io.read(path)[0]["x"].shape == (5,)


def test_load_model_refuses_newer_major_and_bad_shapes(tmp_path):
    model = lib.random_model(seed=1, obs_dim=3, action_dim=2, deter=8, stoch=2, hidden=6, embed=4)
    path = tmp_path / "m.safetensors"
    export_model(model, path)
    tensors, meta = safetensors_io.read(path)
    safetensors_io.write(path, tensors, dict(meta, format_version="2.0"))
    with pytest.raises(ModelFileError, match="newer"):
        load_model(path)
    safetensors_io.write(path, tensors, dict(meta, format_version="1.9"))
    load_model(path)  # minor versions are compatible
    tensors["gru.weight_hh"] = tensors["gru.weight_hh"].T.copy()
    safetensors_io.write(path, tensors, meta)
    with pytest.raises(ModelFileError, match=r"gru.weight_hh.*expected \[24, 8\], got \[8, 24\]"):
        load_model(path)


def test_export_refusals(tmp_path):
    model = lib.random_model(seed=1, obs_dim=3, action_dim=2, deter=8, stoch=2, hidden=6, embed=4)
    with pytest.raises(ValueError, match="set by the exporter"):
        export_model(model, tmp_path / "a", {"deter": 9})
    with pytest.raises(ValueError, match="action_low"):
        export_model(model, tmp_path / "b", {"action_low": [1.0, 1.0]})
    with torch.no_grad():
        model.prior[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="prior.0.weight"):
        export_model(model, tmp_path / "c")
    assert os.listdir(tmp_path) == []


def test_make_model_cli(tmp_path):
    out = tmp_path / "r.safetensors"
    run = subprocess.run([sys.executable, MAKE_MODEL, "--obs-dim", "4", "--action-dim", "2",
                          "--deter", "16", "--stoch", "4", "--hidden", "8", "--embed", "8",
                          "--activation", "elu", "--value", "--no-decoder", "--seed", "9",
                          "--task", "t", "--action-low=-2,-3", "--action-high", "2",
                          "--control-period", "0.02", "--out", str(out)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    model, meta = load_model(out)
    assert model.cfg.has_value and not model.cfg.has_decoder and model.cfg.activation == "elu"
    assert meta["action_low"] == [-2.0, -3.0] and meta["action_high"] == [2.0, 2.0]
    assert meta["control_period_s"] == 0.02 and meta["task"] == "t"
    assert not torch.allclose(model.obs_std, torch.ones(4)), "normalisation must be exercised"
    bad = subprocess.run([sys.executable, MAKE_MODEL, "--obs-dim", "0", "--action-dim", "1",
                          "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "obs-dim" in bad.stderr
    helped = subprocess.run([sys.executable, MAKE_MODEL, "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "exit status" in helped.stdout


# -- format 1.1: image models -----------------------------------------------------------

IMAGE_SPEC = dict(obs_type="image", image_height=63, image_width=79, image_channels=1,
                  conv_depth=4, action_dim=2, deter=16, stoch=3, hidden=12, embed=10,
                  activation="elu", has_value=True)


def test_image_export_load_same_outputs(tmp_path):
    """An image model with its (training-only) pixel decoder: the file leaves the decoder
    out and says has_decoder false; everything else round-trips exactly."""
    model = lib.random_model(seed=4, has_decoder=True, **IMAGE_SPEC)
    assert model.cfg.obs_dim == 63 * 79 and model.decoder is not None
    path = tmp_path / "img.safetensors"
    stored = export_model(model, path, {"task": "pixels"})
    assert stored["obs_type"] == "image" and stored["has_decoder"] == "false"
    assert (stored["image_height"], stored["image_width"], stored["image_channels"],
            stored["conv_depth"]) == ("63", "79", "1", "4")
    tensors, _ = safetensors_io.read(path)
    names = list(tensors)
    assert names[:10] == [f"conv_encoder.{i}.{p}" for i in range(4) for p in ("weight", "bias")] \
        + ["encoder_out.weight", "encoder_out.bias"]
    assert not any(n.startswith(("decoder.", "encoder.", "obs_")) for n in names)
    assert tensors["conv_encoder.3.weight"].shape == (32, 16, 4, 4)
    assert tensors["encoder_out.weight"].shape == (10, 32 * 2 * 3)
    loaded, meta = load_model(path)
    assert meta["obs_type"] == "image" and meta["image_height"] == 63
    assert loaded.cfg == RSSMConfig(**{**model.cfg.to_dict(), "has_decoder": False})
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    ref, got = lib.reference_outputs(model, 3, 2), lib.reference_outputs(loaded, 3, 2)
    assert ref.keys() == got.keys() and "embed" in ref
    for k in ref:
        np.testing.assert_array_equal(ref[k], got[k], err_msg=k)


@torch.no_grad()
def test_image_encode_inputs():
    """encode takes uint8 or float 0..255, any leading batch shape, and normalises inside;
    the pixel decoder gives [..., H, W, C]."""
    model = lib.random_model(seed=2, has_decoder=True, **IMAGE_SPEC)
    images = lib.random_images(model, 6, seed=3)
    e = model.encode(images)
    assert e.shape == (6, 10)
    torch.testing.assert_close(model.encode(images.to(torch.uint8)), e, rtol=0, atol=0)
    torch.testing.assert_close(model.encode(images.reshape(2, 3, 63, 79, 1))[1, 2], e[5])
    torch.testing.assert_close(model.encode(images[4]), e[4])
    x = model.normalise(images)
    assert float(x.min()) >= -0.5 and float(x.max()) <= 0.5
    h, z = model.initial_state(4)
    assert model.decode(h, z).shape == (4, 63, 79, 1)
    with pytest.raises(ValueError, match="expected"):
        model.encode(images.reshape(6, 79, 63, 1))


def test_image_config_refusals():
    for bad, message in ((dict(image_height=40), "image_height is 40"),
                         (dict(image_channels=2), "image_channels"),
                         (dict(conv_depth=0), "conv_depth"),
                         (dict(obs_dim=5), "obs_dim is 5"),
                         (dict(obs_type="pixels"), "obs_type")):
        with pytest.raises(ValueError, match=message):
            RSSM(RSSMConfig(**{**IMAGE_SPEC, "obs_dim": 0, **bad}))


def test_vector_files_keep_the_1_0_layout(tmp_path):
    """A vector model's file is 1.0's apart from format_version: no new keys, same tensors
    in the same order."""
    model = lib.random_model(seed=1, obs_dim=3, action_dim=2, deter=8, stoch=2, hidden=6,
                             embed=4, has_value=True)
    path = tmp_path / "v.safetensors"
    stored = export_model(model, path)
    assert stored["format_version"] == "1.1" == FORMAT_VERSION
    assert list(stored)[:13] == ["format", "format_version", "obs_dim", "action_dim", "deter",
                                 "stoch", "hidden", "embed", "min_std", "activation",
                                 "has_value", "has_decoder", "task"]
    assert not {"obs_type", "image_height", "image_width", "image_channels",
                "conv_depth"} & set(stored)
    tensors, _ = safetensors_io.read(path)
    core = ["obs_mean", "obs_std", "encoder.0.weight", "encoder.0.bias", "encoder.1.weight",
            "encoder.1.bias", "img_in.weight", "img_in.bias", "gru.weight_ih", "gru.weight_hh",
            "gru.bias_ih", "gru.bias_hh"]
    assert list(tensors)[:12] == core and len(tensors) == 38


def test_load_model_refuses_bad_image_files(tmp_path):
    model = lib.random_model(seed=1, has_decoder=False, **IMAGE_SPEC)
    path = tmp_path / "m.safetensors"
    export_model(model, path)
    tensors, meta = safetensors_io.read(path)
    safetensors_io.write(path, tensors, dict(meta, has_decoder="true"))
    with pytest.raises(ModelFileError, match="has_decoder"):
        load_model(path)
    safetensors_io.write(path, tensors, {k: v for k, v in meta.items() if k != "obs_type"})
    with pytest.raises(ModelFileError, match="image_height.*obs_type is 'vector'"):
        load_model(path)
    safetensors_io.write(path, tensors, dict(meta, image_height="40", obs_dim=str(40 * 79)))
    with pytest.raises(ModelFileError, match="image_height is 40"):
        load_model(path)
    safetensors_io.write(path, dict(tensors, **{"obs_mean": np.zeros(63 * 79, np.float32)}),
                         meta)
    with pytest.raises(ModelFileError, match="unexpected tensors \\['obs_mean'\\]"):
        load_model(path)


def test_make_model_cli_image(tmp_path):
    out = tmp_path / "img.safetensors"
    run = subprocess.run([sys.executable, MAKE_MODEL, "--image", "64x64x3", "--conv-depth", "8",
                          "--action-dim", "1", "--deter", "16", "--stoch", "4", "--hidden",
                          "8", "--embed", "12", "--out", str(out)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    model, meta = load_model(out)
    assert model.cfg.is_image and model.cfg.obs_dim == 64 * 64 * 3
    assert model.cfg.conv_depth == 8 and not model.cfg.has_decoder
    assert meta["obs_type"] == "image"
    for args, message in ((["--image", "40x48x1"], "image_height is 40"),
                          (["--image", "64x64"], "HxWxC"),
                          (["--image", "64x64x2"], "image_channels"),
                          (["--image", "64x64x3", "--obs-dim", "5"], "obs_dim is 5")):
        bad = subprocess.run([sys.executable, MAKE_MODEL, *args, "--action-dim", "1",
                              "--out", str(tmp_path / "x")], capture_output=True, text=True)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
