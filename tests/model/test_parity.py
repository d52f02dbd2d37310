"""Parity: librssm (C) must reproduce the PyTorch RSSM to 1e-4 max-abs.

For several architectures (vector and image observations), exports a random model and the
PyTorch outputs of observe_step, imagine_step, reward, value, decode and (image models) the
encoder into the build directory, then runs the cmocka
binary test_rssm_math on them (it also checks the batched path against a naive reference),
once on librssm's packed-weight kernel and once on OpenBLAS.
Run by meson (suite 'unit') with RSSM_TEST_BIN and RSSM_TEST_DIR set.
"""
import glob
import os
import subprocess

import pytest

import rssm_testlib as lib

ARCHS = {
    "planet-a1-value": dict(obs_dim=5, action_dim=1, deter=200, stoch=30, hidden=200,
                            embed=200, activation="relu", has_value=True, has_decoder=True),
    "small-elu-a6": dict(obs_dim=17, action_dim=6, deter=64, stoch=8, hidden=48, embed=32,
                         activation="elu", has_value=False, has_decoder=True),
    "odd-relu-a6-nodecoder": dict(obs_dim=3, action_dim=6, deter=37, stoch=5, hidden=19,
                                  embed=11, activation="relu", has_value=True,
                                  has_decoder=False, min_std=0.01),
    "tiny-elu-a1-bare": dict(obs_dim=1, action_dim=1, deter=1, stoch=1, hidden=1, embed=1,
                             activation="elu", has_value=False, has_decoder=False),
    "saturated-elu-a6": dict(obs_dim=7, action_dim=6, deter=40, stoch=12, hidden=24,
                             embed=16, activation="elu", has_value=True, has_decoder=True,
                             saturate=True),
    "trained-relu-a1": dict(obs_dim=5, action_dim=1, deter=32, stoch=6, hidden=32, embed=16,
                            activation="relu", has_value=True, has_decoder=True, trained=True),
    # Image models (obs_type "image"): PlaNet's encoder at PlaNet's size, and an odd
    # non-square grey size whose encoder output (2 x 3) catches row/column and flatten-order
    # mix-ups (40x48 is too small: 4 convolutions leave no pixel below 46).
    "image-planet-64x64x3": dict(obs_type="image", image_height=64, image_width=64,
                                 image_channels=3, conv_depth=32, action_dim=1, deter=200,
                                 stoch=30, hidden=200, embed=1024, activation="relu",
                                 has_value=True, has_decoder=False),
    "image-odd-63x79x1-elu": dict(obs_type="image", image_height=63, image_width=79,
                                  image_channels=1, conv_depth=8, action_dim=2, deter=24,
                                  stoch=5, hidden=16, embed=12, activation="elu",
                                  has_value=False, has_decoder=False, min_std=0.01),
}


def _paths(name):
    out = os.environ.get("RSSM_TEST_DIR")
    binary = os.environ.get("RSSM_TEST_BIN")
    if not out or not binary:
        pytest.skip("RSSM_TEST_DIR / RSSM_TEST_BIN not set (run through meson test)")
    os.makedirs(out, exist_ok=True)
    return binary, os.path.join(out, name + ".safetensors"), os.path.join(out, name + ".ref.safetensors")


# librssm's two paths (MPC_RSSM_GEMM): its packed AVX2 kernel, where the CPU has one, and
# OpenBLAS.
PATHS = ("blas", "kernel")


def _cpu_has_kernel():
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        return False
    return "avx2" in flags and "fma" in flags


def _run(binary, model_path, ref_path, path):
    env = dict(os.environ, MPC_RSSM_GEMM=path)
    run = subprocess.run([binary, model_path, ref_path], capture_output=True, text=True,
                         env=env)
    # test_rssm_math prints the path the model ran on: the kernel wherever the CPU has it
    want = "packed kernel" if path == "kernel" and _cpu_has_kernel() else "OpenBLAS"
    assert f"librssm path: {want}" in run.stdout, run.stdout + run.stderr
    return run


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_c_matches_pytorch(name, path):
    binary, model_path, ref_path = _paths(name + "-" + path)
    spec = dict(ARCHS[name])
    seed = sorted(ARCHS).index(name) + 7
    model = lib.random_model(seed=seed, **spec)
    lib.write_case(model, model_path, ref_path, n=13, seed=seed)
    run = _run(binary, model_path, ref_path, path)
    assert run.returncode == 0, run.stdout + run.stderr


ZOO = sorted(glob.glob(os.path.join(lib.HERE, "..", "..", "model", "zoo", "*.safetensors")))


@pytest.mark.parametrize("gemm", sorted(PATHS))
@pytest.mark.parametrize("path", ZOO, ids=[os.path.basename(p) for p in ZOO])
def test_c_matches_pytorch_on_zoo_models(path, gemm):
    """Trained models shipped in model/zoo, exactly as the trainer's exporter wrote them."""
    binary, _, ref_path = _paths("zoo-" + os.path.basename(path).rsplit(".", 1)[0] + "-" + gemm)
    model, _ = lib.load_model(path)
    lib.safetensors_io.write(ref_path, lib.reference_outputs(model, 13, 5))
    run = _run(binary, path, ref_path, gemm)
    assert run.returncode == 0, run.stdout + run.stderr
