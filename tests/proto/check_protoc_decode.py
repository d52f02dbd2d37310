#!/usr/bin/python3
"""check_protoc_decode.py: protoc --decode reads the frames the C encoder writes.

Usage: check_protoc_decode.py PROTOC PROTO_DIR FRAME_TOOL WORKDIR

Runs FRAME_TOOL write-requests / write-replies, strips each varint length prefix and feeds
the payload to `protoc --decode=mpc.v1.Request|Reply mpc.proto`; the decoded text must equal
the samples frame_tool.c writes, field for field. Exit 0 pass, 1 fail.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from delimited import split_frames  # noqa: E402

EXPECTED_REQUESTS = [
    """id: 1
hello {
  client_name: "mpc-sim/cartpole-swingup"
  auth_token: "s3cret"
  observation_size: 3
  action_size: 2
}
""",
    """id: 2
step {
  seq: 7
  observation: 0.5
  observation: -1.25
  observation: 3
  reward: 0.75
  reset: true
  deadline_us: 20000
  exploration_noise: 0.5
}
""",
]

EXPECTED_REPLIES = [
    """id: 1
welcome {
  session_id: 99
  model_name: "cartpole-swingup"
  model_version: 1
  observation_size: 3
  action_size: 2
  action_low: -1
  action_low: -2
  action_high: 1
  action_high: 2
  control_period_s: 0.04
  default_deadline_us: 25000
}
""",
    """id: 2
action {
  seq: 7
  action: 0.25
  action: -0.5
  predicted_return: 12.5
  iterations: 10
  candidates: 10000
  belief_us: 150
  plan_us: 18000
  queue_us: 3
  model_version: 1
  deadline_cut: true
}
""",
]


def check(protoc, proto_dir, frame_tool, path, command, msg_type, expected):
    subprocess.run([frame_tool, command, path], check=True)
    with open(path, "rb") as f:
        frames = split_frames(f.read())
    if len(frames) != len(expected):
        print("%s: %d frames, expected %d" % (command, len(frames), len(expected)))
        return False
    ok = True
    for i, (payload, want) in enumerate(zip(frames, expected)):
        got = subprocess.run(
            [protoc, "--decode=mpc.v1." + msg_type, "--proto_path=" + proto_dir, "mpc.proto"],
            input=payload, capture_output=True, check=False)
        text = got.stdout.decode()
        if got.returncode != 0 or text != want:
            print("%s frame %d: protoc exit %d\n--- got\n%s--- expected\n%s%s" % (
                command, i + 1, got.returncode, text, want, got.stderr.decode()))
            ok = False
    return ok


def main():
    if len(sys.argv) != 5:
        print(__doc__)
        return 2
    protoc, proto_dir, frame_tool, workdir = sys.argv[1:]
    os.makedirs(workdir, exist_ok=True)
    ok = check(protoc, proto_dir, frame_tool, os.path.join(workdir, "requests.bin"),
               "write-requests", "Request", EXPECTED_REQUESTS)
    ok &= check(protoc, proto_dir, frame_tool, os.path.join(workdir, "replies.bin"),
                "write-replies", "Reply", EXPECTED_REPLIES)
    print("protoc decoded every C-encoded frame" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
