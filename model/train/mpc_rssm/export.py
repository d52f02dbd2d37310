"""Model file export and import for the RSSM (model/FORMAT.md).

export_model(model, path, metadata) writes every parameter and buffer of model.state_dict()
under its own name as float32, plus the architecture and whatever the caller passes in
metadata (task, action bounds, control period, discount, training provenance). Metadata
values are strings in the file: strings are stored as is, everything else as JSON text.
An image model (obs_type "image") is written without its pixel decoder, which is for
training only: no decoder.* tensors and has_decoder false.

load_model(path) reads it back into an RSSM (eval mode) and returns (model, metadata) with
metadata values decoded from JSON where they are JSON (numbers, booleans, lists, objects);
the string-valued keys (format, format_version, activation, task, name) stay strings.
"""
import json
import math

import numpy as np
import torch

from . import safetensors_io
from .rssm import RSSM, RSSMConfig

FORMAT_NAME = "mpc-rssm"
FORMAT_VERSION = "1.1"
FORMAT_MAJOR = 1

# Keys the exporter derives from the model itself; callers may not override them.
_ARCH_KEYS = ("obs_dim", "action_dim", "deter", "stoch", "hidden", "embed", "min_std",
              "activation", "has_value", "has_decoder", "obs_type", "image_height",
              "image_width", "image_channels", "conv_depth")
_IMAGE_KEYS = ("image_height", "image_width", "image_channels", "conv_depth")
_STRING_KEYS = {"format", "format_version", "activation", "task", "name", "date", "trainer",
                "obs_type"}
_DEFAULTS = {"task": "unspecified", "control_period_s": 0.05, "discount": 0.99}


class ModelFileError(ValueError):
    """A model file that does not follow model/FORMAT.md (names the field or tensor)."""


def _meta_text(value):
    if isinstance(value, str):
        return value
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    return json.dumps(value, allow_nan=False)


def export_model(model: RSSM, path, metadata=None):
    """Writes model to path atomically (temporary file + rename). Returns the metadata
    dict as stored (string values)."""
    cfg = model.cfg
    A = cfg.action_dim
    meta = dict(_DEFAULTS)
    meta["action_low"] = [-1.0] * A
    meta["action_high"] = [1.0] * A
    for k, v in (metadata or {}).items():
        if k in _ARCH_KEYS or k in ("format", "format_version"):
            raise ValueError(f"metadata key {k!r} is set by the exporter from the model")
        meta[k] = v
    low = [float(x) for x in np.asarray(meta["action_low"], dtype=np.float64).reshape(-1)]
    high = [float(x) for x in np.asarray(meta["action_high"], dtype=np.float64).reshape(-1)]
    if len(low) != A or len(high) != A or not all(l < h for l, h in zip(low, high)):
        raise ValueError(f"action_low/action_high must be {A} values with low < high")
    meta["action_low"], meta["action_high"] = low, high
    arch = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
            "obs_dim": cfg.obs_dim, "action_dim": A, "deter": cfg.deter,
            "stoch": cfg.stoch, "hidden": cfg.hidden, "embed": cfg.embed,
            "min_std": float(cfg.min_std), "activation": cfg.activation,
            "has_value": bool(cfg.has_value), "has_decoder": bool(cfg.has_decoder)}
    if cfg.is_image:  # vector files keep 1.0's keys exactly
        arch["has_decoder"] = False  # the pixel decoder is training-only
        arch["obs_type"] = "image"
        arch.update({k: int(getattr(cfg, k)) for k in _IMAGE_KEYS})
    stored = {k: _meta_text(v) for k, v in {**arch, **meta}.items()}

    tensors = {}
    for name, t in model.state_dict().items():
        if cfg.is_image and name.startswith("decoder."):
            continue
        arr = t.detach().to("cpu", torch.float32).numpy()
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"tensor {name!r} has non-finite values; refusing to export")
        tensors[name] = arr
    if not cfg.is_image and not np.all(tensors["obs_std"] > 0):
        raise ValueError("obs_std must be > 0 everywhere")
    safetensors_io.write(path, tensors, stored)
    return stored


def decode_metadata(stored):
    """String metadata -> Python values (JSON-decoded except for the string keys)."""
    out = {}
    for k, v in stored.items():
        if k in _STRING_KEYS:
            out[k] = v
            continue
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _config_from(meta):
    def need(key, kind):
        if key not in meta:
            raise ModelFileError(f"metadata {key!r} is missing")
        v = meta[key]
        ok = (isinstance(v, bool) if kind is bool else
              isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
              if kind is float else
              isinstance(v, int) and not isinstance(v, bool) if kind is int else
              isinstance(v, kind))
        if not ok:
            raise ModelFileError(f"metadata {key!r} has the wrong type ({v!r})")
        return v
    if meta.get("format") != FORMAT_NAME:
        raise ModelFileError(f"metadata 'format' is {meta.get('format')!r}, expected {FORMAT_NAME!r}")
    version = str(meta.get("format_version", ""))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise ModelFileError(f"metadata 'format_version' {version!r} is not MAJOR.MINOR") from None
    if major > FORMAT_MAJOR:
        raise ModelFileError(f"format_version {version} is newer than this reader "
                             f"supports ({FORMAT_MAJOR}.x); update mpc_rssm")
    if major < 1:
        raise ModelFileError(f"format_version {version} is not supported")
    obs_type = meta.get("obs_type", "vector")
    if obs_type not in ("vector", "image"):
        raise ModelFileError(f"metadata 'obs_type' is {obs_type!r}; expected 'vector' or 'image'")
    image = {}
    if obs_type == "image":
        image = {k: need(k, int) for k in _IMAGE_KEYS}
        if need("has_decoder", bool):
            raise ModelFileError("metadata 'has_decoder' is true, but an image model's pixel "
                                 "decoder is training-only and never in a model file")
    else:
        for k in _IMAGE_KEYS:
            if k in meta:
                raise ModelFileError(f"metadata {k!r} is set but obs_type is 'vector'")
    return RSSMConfig(obs_dim=need("obs_dim", int), action_dim=need("action_dim", int),
                      deter=need("deter", int), stoch=need("stoch", int),
                      hidden=need("hidden", int), embed=need("embed", int),
                      min_std=float(need("min_std", float)),
                      activation=need("activation", str),
                      has_value=need("has_value", bool), has_decoder=need("has_decoder", bool),
                      obs_type=obs_type, **image)


def load_model(path):
    """Reads a model file -> (RSSM in eval mode, decoded metadata dict)."""
    try:
        tensors, stored = safetensors_io.read(path)
    except safetensors_io.SafetensorsError as e:
        raise ModelFileError(f"{path}: {e}") from None
    meta = decode_metadata(stored)
    try:
        model = RSSM(_config_from(meta))
    except ValueError as e:
        raise ModelFileError(f"{path}: {e}") from None
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        raise ModelFileError(f"{path}: missing tensors {missing}, unexpected tensors {extra}")
    for k, v in expected.items():
        if tuple(v.shape) != tensors[k].shape:
            raise ModelFileError(f"{path}: tensor {k!r} has wrong shape; expected "
                                 f"{list(v.shape)}, got {list(tensors[k].shape)}")
    model.load_state_dict({k: torch.from_numpy(tensors[k]) for k in expected})
    model.eval()
    return model, meta
