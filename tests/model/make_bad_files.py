#!/usr/bin/python3
"""make_bad_files.py OUTDIR: writes a corpus of broken model files and a manifest.

Starts from one good random model (small dims, value head and decoder) and breaks it in
one way per file: container (truncation, header length, JSON, offsets, gaps, overlaps),
tensors (dtype, shape, missing, unexpected, NaN/Inf, obs_std <= 0) and metadata (missing
keys, huge or bad dims, newer major version, bounds); then the same for a good image model
(obs_type "image": conv shapes, image metadata, decoder or vector-encoder tensors present).
OUTDIR/manifest.json lists
{file, code, message}: the rssm_err_t name the loader must return and a substring its
message must contain (naming the tensor or field). Entries with code "OK" must load
(e.g. a newer minor version). Read by test_rssm_load.c and test_mpc_model.py.
"""
import json
import math
import os
import struct
import sys

import numpy as np

import rssm_testlib as lib
from mpc_rssm import safetensors_io

DIMS = dict(obs_dim=4, action_dim=2, deter=12, stoch=3, hidden=10, embed=6)
# 62 x 78 leaves a 2 x 3 encoder output: encoder_out.weight is [6, 8 * 2 * 2 * 3] = [6, 96]
IMAGE = dict(obs_type="image", image_height=62, image_width=78, image_channels=3,
             conv_depth=2, action_dim=2, deter=12, stoch=3, hidden=10, embed=6)


def good_parts():
    model = lib.random_model(seed=5, activation="elu", has_value=True, has_decoder=True, **DIMS)
    path = os.path.join(OUT, "good.safetensors")
    lib.export_model(model, path, {"task": "corpus", "name": "good"})
    tensors, meta = safetensors_io.read(path)
    return tensors, meta


def good_image_parts():
    model = lib.random_model(seed=6, activation="relu", has_value=True, has_decoder=False,
                             **IMAGE)
    path = os.path.join(OUT, "image-good.safetensors")
    lib.export_model(model, path, {"task": "corpus", "name": "image-good"})
    return safetensors_io.read(path)


def assemble(entries, meta, gap_after=None, gap=0):
    """entries: list of (name, dtype, shape, bytes); returns (header dict, data bytes)."""
    header = {"__metadata__": dict(meta)} if meta is not None else {}
    data = b""
    for name, dtype, shape, blob in entries:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
        if name == gap_after:
            data += b"\0" * gap
    return header, data


def pack(header, data, header_text=None, header_len=None):
    text = header_text if header_text is not None else json.dumps(header).encode()
    text += b" " * ((-(8 + len(text))) % 8)
    n = len(text) if header_len is None else header_len
    return struct.pack("<Q", n) + text + data


def main():
    global OUT
    OUT = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    tensors, meta = good_parts()
    cases = []

    def entries(t=None, dtype=None):
        t = tensors if t is None else t
        return [(k, (dtype or {}).get(k, "F32"), v.shape, v.astype("<f4").tobytes())
                for k, v in t.items()]

    def add(name, blob, code, message):
        fname = name + ".safetensors"
        with open(os.path.join(OUT, fname), "wb") as f:
            f.write(blob)
        cases.append({"file": fname, "code": code, "message": message})

    def with_meta(name, code, message, **changes):
        m = dict(meta)
        for k, v in changes.items():
            if v is None:
                m.pop(k, None)
            else:
                m[k] = v
        add(name, pack(*assemble(entries(), m)), code, message)

    def with_tensors(name, code, message, t, dtype=None, **kw):
        add(name, pack(*assemble(entries(t, dtype), meta, **kw)), code, message)

    good = pack(*assemble(entries(), meta))
    D, H = DIMS["deter"], DIMS["hidden"]

    # -- container --
    add("empty", b"", "FORMAT", "too short")
    add("truncated-in-length", good[:5], "FORMAT", "too short")
    add("truncated-data", good[:-7], "FORMAT", "decoder.2.bias")
    add("truncated-header", good[:40], "FORMAT", "runs past the end")
    add("header-length-past-end", struct.pack("<Q", len(good)) + good[8:], "FORMAT",
        "runs past the end")
    add("header-length-huge", struct.pack("<Q", 1 << 40) + good[8:], "FORMAT", "cap")
    add("bad-json", pack(None, b"", header_text=b'{"obs_mean": {"dtype": "F32",'), "FORMAT",
        "not valid JSON")
    add("json-not-object", pack(None, b"", header_text=b"[1, 2, 3]"), "FORMAT",
        "not a JSON object")
    h, d = assemble(entries(), meta)
    h["gru.bias_hh"]["data_offsets"][0] -= 4
    h["gru.bias_hh"]["data_offsets"][1] -= 4
    add("overlapping-offsets", pack(h, d), "FORMAT", "overlaps")
    h, d = assemble(entries(), meta)
    h["reward.0.weight"]["data_offsets"][1] += 4
    add("offsets-disagree-with-shape", pack(h, d), "FORMAT", "reward.0.weight")
    h, d = assemble(entries(), meta)
    h["decoder.2.bias"]["data_offsets"] = [len(d) - 16, len(d) + 16]
    add("offsets-out-of-bounds", pack(h, d), "FORMAT", "decoder.2.bias")
    h, d = assemble(entries(), meta)
    h["prior.0.bias"]["shape"] = [-H]
    add("negative-dim", pack(h, d), "FORMAT", "prior.0.bias")
    with_tensors("gap-between-tensors", "FORMAT", "gap of 8 bytes before tensor 'gru.weight_ih'",
                 tensors, gap_after="img_in.bias", gap=8)
    add("trailing-bytes", good + b"\0" * 8, "FORMAT", "8 bytes after the last tensor")
    text = json.dumps(assemble(entries(), meta)[0])
    dup = text.replace('"obs_mean":', '"obs_std": {"dtype": "F32", "shape": [0], '
                       '"data_offsets": [0, 0]}, "obs_mean":', 1)
    add("duplicate-tensor", pack(None, assemble(entries(), meta)[1],
                                 header_text=dup.encode()), "FORMAT", "'obs_std' appears twice")
    h, d = assemble(entries(), meta)
    h["__metadata__"]["deter"] = 12
    add("metadata-not-string", pack(h, d), "FORMAT", "metadata 'deter'")

    # -- tensors --
    with_tensors("wrong-dtype", "TENSOR", "tensor 'gru.weight_hh' has dtype F16", tensors,
                 dtype={"gru.weight_hh": "F16"})
    t = dict(tensors)
    t["gru.weight_hh"] = t["gru.weight_hh"].T.copy()
    with_tensors("wrong-shape", "TENSOR",
                 f"tensor 'gru.weight_hh' has wrong shape; expected [{3 * D},{D}], got [{D},{3 * D}]", t)
    t = dict(tensors)
    t["obs_mean"] = t["obs_mean"].reshape(1, -1)
    with_tensors("wrong-rank", "TENSOR", "tensor 'obs_mean' has wrong shape", t)
    t = {k: v for k, v in tensors.items() if k != "reward.1.bias"}
    with_tensors("missing-tensor", "TENSOR", "tensor 'reward.1.bias' is missing", t)
    t = dict(tensors, **{"extra.weight": np.ones(3, np.float32)})
    with_tensors("unknown-extra-tensor", "TENSOR", "unexpected tensor 'extra.weight'", t)
    for key, val, label in (("prior.0.weight", math.nan, "nan"), ("gru.bias_ih", math.inf, "inf")):
        t = dict(tensors)
        t[key] = t[key].copy()
        t[key].flat[3] = val
        with_tensors(f"{label}-weight", "VALUE", f"tensor '{key}' has a non-finite value at index 3", t)
    t = dict(tensors)
    t["obs_std"] = t["obs_std"].copy()
    t["obs_std"][1] = 0.0
    with_tensors("obs-std-zero", "VALUE", "obs_std", t)

    # -- metadata --
    add("no-metadata", pack(*assemble(entries(), None)), "METADATA", "__metadata__")
    with_meta("wrong-format", "METADATA", "metadata 'format'", format="gguf")
    with_meta("newer-major-version", "VERSION", "newer", format_version="2.0")
    with_meta("bad-version", "VERSION", "format_version", format_version="one")
    with_meta("newer-minor-version", "OK", "", format_version="1.7")
    with_meta("missing-stoch", "METADATA", "metadata 'stoch' is missing", stoch=None)
    with_meta("huge-dims", "METADATA", "metadata 'deter'", deter="1000000000")
    with_meta("zero-dim", "METADATA", "metadata 'hidden'", hidden="0")
    with_meta("dim-not-integer", "METADATA", "metadata 'embed'", embed="6.5")
    with_meta("dims-disagree-with-tensors", "TENSOR", "tensor 'encoder.0.weight' has wrong shape",
              hidden=str(H + 1))
    with_meta("bad-activation", "METADATA", "metadata 'activation'", activation="tanh")
    with_meta("bad-min-std", "METADATA", "metadata 'min_std'", min_std="0")
    with_meta("bad-discount", "METADATA", "metadata 'discount'", discount="1.5")
    with_meta("bad-control-period", "METADATA", "metadata 'control_period_s'", control_period_s="nan")
    with_meta("missing-task", "METADATA", "metadata 'task' is missing", task=None)
    with_meta("bad-bool", "METADATA", "metadata 'has_value'", has_value="yes")
    with_meta("action-low-wrong-length", "METADATA", "metadata 'action_low'", action_low="[-1]")
    with_meta("action-bounds-inverted", "METADATA", "action_low[1]", action_high="[1, -2]")
    with_meta("value-tensors-but-no-value", "TENSOR", "unexpected tensor 'value.0.weight'",
              has_value="false")
    t = {k: v for k, v in tensors.items() if not k.startswith("decoder.")}
    with_tensors("decoder-missing", "TENSOR", "tensor 'decoder.0.weight' is missing (has_decoder is true)", t)

    # -- versions and observation types (format 1.1) --
    with_meta("format-1.0-vector", "OK", "", format_version="1.0")
    with_meta("vector-obs-dim-above-4096", "METADATA", "metadata 'obs_dim'", obs_dim="4097")
    with_meta("vector-with-image-keys", "METADATA",
              "metadata 'image_height' is set but obs_type is \"vector\" (absent)",
              image_height="64")
    with_meta("explicit-vector-type", "OK", "", obs_type="vector")
    t = dict(tensors, **{"conv_encoder.0.weight": np.zeros((2, 3, 4, 4), np.float32)})
    with_tensors("vector-with-conv-tensor", "TENSOR",
                 "unexpected tensor 'conv_encoder.0.weight' (obs_type is \"vector\"", t)
    image_cases(add)

    add("good-copy", good, "OK", "")
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(cases, f, indent=1)
    return 0


def image_cases(add):
    """The image model's corpus: one good file, then one broken in each way."""
    tensors, meta = good_image_parts()
    H, W, C, d = (IMAGE[k] for k in ("image_height", "image_width", "image_channels",
                                     "conv_depth"))
    E = IMAGE["embed"]

    def blob(t=None, m=None):
        t = tensors if t is None else t
        m = meta if m is None else m
        ents = [(k, "F32", v.shape, v.astype("<f4").tobytes()) for k, v in t.items()]
        return pack(*assemble(ents, m))

    def with_meta(name, code, message, **changes):
        m = dict(meta)
        for k, v in changes.items():
            if v is None:
                m.pop(k, None)
            else:
                m[k] = v
        add("image-" + name, blob(m=m), code, message)

    def with_tensors(name, code, message, **changes):
        t = dict(tensors)
        for k, v in changes.items():
            k = k.replace("__", ".")
            if v is None:
                t.pop(k)
            else:
                t[k] = v
        add("image-" + name, blob(t), code, message)

    def nonfinite(name, value, index):
        a = tensors[name].copy()
        a.flat[index] = value
        return a

    add("image-good-copy", blob(), "OK", "")
    with_meta("newer-minor-version", "OK", "", format_version="1.7")
    # -- tensors --
    with_tensors("conv-wrong-shape", "TENSOR",
                 f"tensor 'conv_encoder.1.weight' has wrong shape; expected [{2 * d},{d},4,4], "
                 f"got [{d},{2 * d},4,4]",
                 conv_encoder__1__weight=np.ascontiguousarray(
                     tensors["conv_encoder.1.weight"].transpose(1, 0, 2, 3)))
    with_tensors("conv-wrong-kernel", "TENSOR",
                 f"tensor 'conv_encoder.0.weight' has wrong shape; expected [{d},{C},4,4], "
                 f"got [{d},{C},5,5]", conv_encoder__0__weight=np.zeros((d, C, 5, 5), np.float32))
    with_tensors("conv-weight-flat", "TENSOR",
                 f"tensor 'conv_encoder.3.weight' has wrong shape; expected [{8 * d},{4 * d},4,4], "
                 f"got [{8 * d},{4 * d * 16}]",
                 conv_encoder__3__weight=tensors["conv_encoder.3.weight"].reshape(8 * d, -1))
    with_tensors("conv-bias-wrong", "TENSOR", "tensor 'conv_encoder.2.bias' has wrong shape",
                 conv_encoder__2__bias=np.zeros(4 * d + 1, np.float32))
    with_tensors("encoder-out-wrong-columns", "TENSOR",
                 f"tensor 'encoder_out.weight' has wrong shape; expected [{E},{8 * d * 6}], "
                 f"got [{E},{8 * d}]", encoder_out__weight=np.zeros((E, 8 * d), np.float32))
    with_tensors("missing-conv-bias", "TENSOR",
                 "tensor 'conv_encoder.2.bias' is missing (obs_type is \"image\")",
                 conv_encoder__2__bias=None)
    with_tensors("missing-encoder-out", "TENSOR", "tensor 'encoder_out.weight' is missing",
                 encoder_out__weight=None)
    with_tensors("decoder-tensors", "TENSOR",
                 "unexpected tensor 'decoder.0.weight' (an image model's pixel decoder is "
                 "training-only", decoder__0__weight=np.zeros((10, 15), np.float32))
    with_tensors("with-obs-mean", "TENSOR",
                 "unexpected tensor 'obs_mean' (an image model normalises pixels",
                 obs_mean=np.zeros(H * W * C, np.float32))
    with_tensors("with-mlp-encoder", "TENSOR", "unexpected tensor 'encoder.0.weight'",
                 encoder__0__weight=np.zeros((10, 4), np.float32))
    with_tensors("nan-conv", "VALUE",
                 "tensor 'conv_encoder.1.weight' has a non-finite value at index 5",
                 conv_encoder__1__weight=nonfinite("conv_encoder.1.weight", math.nan, 5))
    with_tensors("inf-encoder-out", "VALUE",
                 "tensor 'encoder_out.weight' has a non-finite value at index 7",
                 encoder_out__weight=nonfinite("encoder_out.weight", -math.inf, 7))
    # -- metadata --
    with_meta("has-decoder-true", "METADATA",
              "metadata 'has_decoder' is true, but an image model's pixel decoder is "
              "training-only", has_decoder="true")
    with_meta("no-obs-type", "METADATA",
              "metadata 'image_height' is set but obs_type is \"vector\" (absent)",
              obs_type=None)
    with_meta("bad-obs-type", "METADATA", "metadata 'obs_type' is \"pixels\"", obs_type="pixels")
    with_meta("missing-width", "METADATA", "metadata 'image_width' is missing",
              image_width=None)
    with_meta("missing-conv-depth", "METADATA", "metadata 'conv_depth' is missing",
              conv_depth=None)
    with_meta("two-channels", "METADATA", "metadata 'image_channels' is 2; expected 1 (grey) "
              "or 3 (RGB)", image_channels="2", obs_dim=str(H * W * 2))
    with_meta("four-channels", "METADATA", "metadata 'image_channels'", image_channels="4",
              obs_dim=str(H * W * 4))
    with_meta("too-small", "METADATA",
              "metadata 'image_height' is 40; the encoder's 4 convolutions (kernel 4, stride 2) "
              "need at least 46", image_height="40", obs_dim=str(40 * W * C))
    with_meta("too-wide", "METADATA", "metadata 'image_width'", image_width="513",
              obs_dim=str(H * 513 * C))
    with_meta("side-not-integer", "METADATA", "metadata 'image_height'", image_height="62.0")
    with_meta("obs-dim-mismatch", "METADATA",
              f"metadata 'obs_dim' is {H * W * C - 1}; an image model's obs_dim must be "
              f"image_height*image_width*image_channels = {H * W * C}",
              obs_dim=str(H * W * C - 1))
    with_meta("obs-dim-huge", "METADATA", "metadata 'obs_dim'", obs_dim=str(512 * 512 * 3 + 1))
    with_meta("conv-depth-zero", "METADATA", "metadata 'conv_depth'", conv_depth="0")
    with_meta("conv-depth-huge", "METADATA", "metadata 'conv_depth'", conv_depth="513")
    with_meta("conv-depth-disagrees", "TENSOR",
              f"tensor 'conv_encoder.0.weight' has wrong shape; expected [{d + 1},{C},4,4]",
              conv_depth=str(d + 1))
    with_meta("height-disagrees", "TENSOR",  # 80 rows leave 3, not 2: encoder_out changes
              f"tensor 'encoder_out.weight' has wrong shape; expected [{E},{8 * d * 9}], "
              f"got [{E},{8 * d * 6}]", image_height="80", obs_dim=str(80 * W * C))
    with_meta("channels-disagree", "TENSOR", "tensor 'conv_encoder.0.weight' has wrong shape",
              image_channels="1", obs_dim=str(H * W))


if __name__ == "__main__":
    sys.exit(main())
