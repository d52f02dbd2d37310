"""delimited.py: protobuf's delimited-message framing (varint length + payload) in pure Python.

Shared by the proto interop test scripts. Deliberately independent of the protobuf package,
so the protoc test runs even where python3-protobuf is missing.
"""


def encode_varint(value):
    """Base-128 varint bytes of a non-negative int (same as protobuf's _VarintBytes)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def split_frames(data):
    """Payloads of the delimited frames in data; raises ValueError on a broken stream."""
    frames, pos = [], 0
    while pos < len(data):
        length, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 63:
                raise ValueError("truncated or overlong length varint at byte %d" % pos)
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        if pos + length > len(data):
            raise ValueError("frame of %d bytes runs past the end of the data" % length)
        frames.append(data[pos:pos + length])
        pos += length
    return frames
