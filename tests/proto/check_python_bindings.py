#!/usr/bin/python3
"""check_python_bindings.py: the generated mpc_pb2 module talks to the C encoder/decoder.

Usage: check_python_bindings.py MPC_PB2_PY FRAME_TOOL WORKDIR

Imports MPC_PB2_PY (build/proto/mpc_pb2.py, made by protoc --python_out), parses the frames
FRAME_TOOL writes and checks every field, then writes the same Requests from Python with
the delimited convention and has FRAME_TOOL check-requests decode and compare them.
Exit 0 pass, 1 fail, 77 skip (python3-protobuf is not installed).
"""
import importlib.util
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from delimited import encode_varint, split_frames  # noqa: E402

try:
    import google.protobuf  # noqa: F401
except ImportError:
    print("SKIP: python3-protobuf is not installed")
    sys.exit(77)


def load_bindings(path):
    spec = importlib.util.spec_from_file_location("mpc_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sample_requests(pb):
    """The Requests frame_tool.c writes, built with the Python bindings."""
    hello = pb.Request(id=1)
    hello.hello.client_name = "mpc-sim/cartpole-swingup"
    hello.hello.auth_token = "s3cret"
    hello.hello.observation_size = 3
    hello.hello.action_size = 2
    step = pb.Request(id=2)
    step.step.seq = 7
    step.step.observation.extend([0.5, -1.25, 3.0])
    step.step.reward = 0.75
    step.step.reset = True
    step.step.deadline_us = 20000
    step.step.exploration_noise = 0.5
    return [hello, step]


def sample_replies(pb):
    welcome = pb.Reply(id=1)
    w = welcome.welcome
    w.session_id, w.model_name, w.model_version = 99, "cartpole-swingup", 1
    w.observation_size, w.action_size = 3, 2
    w.action_low.extend([-1.0, -2.0])
    w.action_high.extend([1.0, 2.0])
    w.control_period_s, w.default_deadline_us = 0.04, 25000
    action = pb.Reply(id=2)
    a = action.action
    a.seq = 7
    a.action.extend([0.25, -0.5])
    a.predicted_return, a.iterations, a.candidates = 12.5, 10, 10000
    a.belief_us, a.plan_us, a.queue_us = 150, 18000, 3
    a.model_version, a.deadline_cut, a.fallback = 1, True, False
    return [welcome, action]


def parse_c_frames(pb, frame_tool, path, command, cls, expected):
    subprocess.run([frame_tool, command, path], check=True)
    with open(path, "rb") as f:
        frames = split_frames(f.read())
    ok = len(frames) == len(expected)
    for i, (payload, want) in enumerate(zip(frames, expected)):
        got = cls()
        got.ParseFromString(payload)
        if got != want:
            print("%s frame %d differs:\n%s\nexpected:\n%s" % (command, i + 1, got, want))
            ok = False
    if len(frames) != len(expected):
        print("%s: %d frames, expected %d" % (command, len(frames), len(expected)))
    return ok


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    pb2_path, frame_tool, workdir = sys.argv[1:]
    os.makedirs(workdir, exist_ok=True)
    pb = load_bindings(pb2_path)

    ok = parse_c_frames(pb, frame_tool, os.path.join(workdir, "c-requests.bin"),
                        "write-requests", pb.Request, sample_requests(pb))
    ok &= parse_c_frames(pb, frame_tool, os.path.join(workdir, "c-replies.bin"),
                         "write-replies", pb.Reply, sample_replies(pb))

    # Python -> C: the delimited convention clients use (varint length, then the message).
    py_path = os.path.join(workdir, "py-requests.bin")
    with open(py_path, "wb") as f:
        for req in sample_requests(pb):
            payload = req.SerializeToString()
            f.write(encode_varint(len(payload)) + payload)
    check = subprocess.run([frame_tool, "check-requests", py_path], check=False)
    if check.returncode != 0:
        print("frame_tool rejected the Python-encoded frames")
        ok = False

    print("python bindings interoperate with the C codec" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
