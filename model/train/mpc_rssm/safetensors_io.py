"""safetensors read/write with numpy only (the container of model/FORMAT.md).

Layout: 8-byte little-endian header length N, N bytes of JSON header (padded with spaces so
the tensor data starts 8-byte aligned), then the raw tensors back to back. The header maps
each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
the start of the data) plus an optional "__metadata__" object of string -> string.

Only float32 little-endian tensors are written; reading accepts F32 only as well, since
that is all mpc-rssm files contain.
"""
import json
import os
import struct

import numpy as np

HEADER_CAP = 16 << 20  # largest header we accept (bytes); matches the C loader


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors container (names the problem)."""


def encode(tensors, metadata=None):
    """dict name -> array (converted to float32), dict str -> str -> file bytes."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata {k!r}: keys and values must be strings")
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name, value in tensors.items():
        if name == "__metadata__":
            raise ValueError("'__metadata__' is not a valid tensor name")
        arr = np.ascontiguousarray(np.asarray(value, dtype="<f4"))
        data = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write(path, tensors, metadata=None):
    """Writes atomically: a temporary file in the same directory, fsync, rename.

    mpcd may watch the path and hot-swap on rename, so it must never see a partial file.
    """
    data = encode(tensors, metadata)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def decode(data):
    """File bytes -> (dict name -> float32 array, dict metadata str -> str)."""
    if len(data) < 8:
        raise SafetensorsError(f"file too short ({len(data)} bytes) for the header length")
    (n,) = struct.unpack("<Q", data[:8])
    if n > HEADER_CAP or 8 + n > len(data):
        raise SafetensorsError(f"header length {n} runs past the end of the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise SafetensorsError("header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError("__metadata__ must map strings to strings")
    body = memoryview(data)[8 + n:]
    entries = []
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"tensor {name!r}: needs dtype, shape and data_offsets") from None
        if dtype != "F32":
            raise SafetensorsError(f"tensor {name!r} has dtype {dtype}; only F32 is supported")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end <= len(body)) or end - begin != 4 * count:
            raise SafetensorsError(f"tensor {name!r}: data_offsets [{begin},{end}] do not fit shape {shape}")
        entries.append((begin, end, name, shape))
    entries.sort()
    pos = 0
    for begin, end, name, _ in entries:
        if begin != pos:
            raise SafetensorsError(f"tensor {name!r} starts at {begin}, expected {pos} (gap or overlap)")
        pos = end
    if pos != len(body):
        raise SafetensorsError(f"{len(body) - pos} trailing bytes after the last tensor")
    by_name = {name: (begin, end, shape) for begin, end, name, shape in entries}
    tensors = {}
    for name in header:  # header order, which is the writer's order
        begin, end, shape = by_name[name]
        tensors[name] = np.frombuffer(body[begin:end], dtype="<f4").reshape(shape).copy()
    return tensors, dict(metadata)


def read(path):
    """Reads a whole file -> (tensors, metadata)."""
    with open(path, "rb") as f:
        return decode(f.read())
