"""Helpers shared by the model tests: random models and PyTorch reference outputs.

Imported by test_parity.py, test_roundtrip.py, make_bad_files.py, the benchmarks with
model/train on sys.path (meson sets PYTHONPATH; running pytest by hand, this module adds it).
"""
import ctypes
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "..", "..", "model", "train")
if TRAIN not in sys.path:
    sys.path.insert(0, TRAIN)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mpc_rssm import FORMAT_VERSION, RSSM, RSSMConfig, export_model, load_model  # noqa: E402,F401
from mpc_rssm import safetensors_io  # noqa: E402


try:  # Debian's torch does its matmuls in the system OpenBLAS, whose pool is separate
    _openblas = ctypes.CDLL("libopenblas.so.0")
except OSError:
    _openblas = None


def set_threads(threads, blas_threads=None):
    """torch's intra-op threads, and the OpenBLAS pool it calls into to `blas_threads`
    (default: the same). torch.set_num_threads alone leaves OpenBLAS on every CPU."""
    torch.set_num_threads(threads)
    if _openblas is not None:
        _openblas.openblas_set_num_threads(blas_threads or threads)


def random_model(seed=0, trained=False, saturate=False, **cfg):
    """RSSM with PyTorch default init (seeded) and random observation statistics.

    trained: a few Adam steps on a toy loss so the weights are no longer at init.
    saturate: large biases so softplus' linear branch (x > 20) and ELU's negative side
    are both exercised. Image models (obs_type="image", image_height/width/channels,
    conv_depth; obs_dim may be left out) have no observation statistics."""
    if cfg.get("obs_type") == "image":
        cfg.setdefault("obs_dim", 0)
    torch.manual_seed(seed)
    model = RSSM(RSSMConfig(**cfg))
    with torch.no_grad():
        if not model.cfg.is_image:
            model.obs_mean.copy_(torch.randn(model.cfg.obs_dim))
            model.obs_std.copy_(torch.rand(model.cfg.obs_dim) * 1.5 + 0.5)
        if saturate:
            model.prior[1].bias.mul_(150.0)
            model.posterior[1].bias.mul_(150.0)
            model.img_in.bias.sub_(1.0)
    if trained:
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(20):
            h, z, a, obs = reference_inputs(model, 16, seed + 1)
            h2, (pm, ps), (qm, qs) = model.observe_step(h, z, a, obs)
            loss = ((qm - pm) ** 2).mean() + ps.mean() + model.predict_reward(h2, qm).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


def random_images(model, n, seed):
    """n images [n, H, W, C] of the model's size, float with integer values 0..255: random
    pixels over a smooth gradient, so both fine and coarse structure reach the encoder."""
    g = torch.Generator().manual_seed(seed)
    c = model.cfg
    H, W, C = c.image_height, c.image_width, c.image_channels
    ramp = (torch.arange(H).view(H, 1, 1) * 3 + torch.arange(W).view(1, W, 1) * 2
            + torch.arange(C).view(1, 1, C) * 50)
    noise = torch.randint(0, 256, (n, H, W, C), generator=g)
    return ((ramp + noise) % 256).to(torch.float32)


def reference_inputs(model, n, seed):
    """Batch of plausible inputs: h in (-1, 1), z ~ N(0, 1), a in the action box, raw obs
    (an image model's: images [n, H, W, C], pixel values as floats)."""
    g = torch.Generator().manual_seed(seed)
    c = model.cfg
    h = torch.rand(n, c.deter, generator=g) * 2 - 1
    z = torch.randn(n, c.stoch, generator=g)
    a = torch.rand(n, c.action_dim, generator=g) * 2 - 1
    if c.is_image:
        obs = random_images(model, n, seed)
    else:
        obs = model.obs_mean + model.obs_std * torch.randn(n, c.obs_dim, generator=g)
    return h, z, a, obs


@torch.no_grad()
def reference_outputs(model, n=13, seed=1):
    """Inputs and PyTorch outputs of every operation librssm implements, as numpy arrays.

    observe_* : one observe_step on row 0 of the inputs;
    batch_*   : imagine_step, reward, value, decode (de-normalised) on all n rows;
    embed     : image models: the encoder on all n images (in_obs: [n, O] pixel values,
                each row an H x W x C image in HWC order)."""
    h, z, a, obs = reference_inputs(model, n, seed)
    out = {"in_h": h, "in_z": z, "in_a": a, "in_obs": obs.reshape(n, -1)}
    if model.cfg.is_image:
        out["embed"] = model.encode(obs)
    h1, (pm, ps), (qm, qs) = model.observe_step(h[:1], z[:1], a[:1], obs[:1])
    out.update(observe_h=h1[0], observe_prior_mean=pm[0], observe_prior_std=ps[0],
               observe_post_mean=qm[0], observe_post_std=qs[0])
    hn, (pm, ps) = model.imagine_step(h, z, a)
    out.update(imagine_h=hn, imagine_prior_mean=pm, imagine_prior_std=ps,
               reward=model.predict_reward(h, z))
    if model.cfg.has_value:
        out["value"] = model.predict_value(h, z)
    if model.cfg.has_decoder and not model.cfg.is_image:  # pixel decoder: not in files
        out["decode"] = model.decode(h, z) * model.obs_std + model.obs_mean
    return {k: v.detach().numpy().astype(np.float32) for k, v in out.items()}


def write_case(model, model_path, ref_path, n=13, seed=1, metadata=None):
    """Exports model and writes its reference inputs/outputs as a safetensors file."""
    export_model(model, model_path, metadata)
    safetensors_io.write(ref_path, reference_outputs(model, n, seed))
