"""cartpole_raw.py: raw-frame sessions with the shipped cartpole model, shared by the
daemon's integration tests of timed plans (test_realtime.py) and of resume and drain
(test_resume.py).
"""
import math
import os
import socket
import sys
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "clients"))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))

import mpc_client  # noqa: E402

pb = mpc_client.load_pb2()
MODEL = os.path.join(REPO, "model", "zoo", "cartpole-swingup.safetensors")


def observation(t):
    """A plausible cartpole observation (position, cos, sin, velocities) at step t."""
    a = 0.2 * t
    return [0.3 * math.sin(0.1 * t), math.cos(a), math.sin(a), 0.5 * math.cos(0.3 * t),
            1.5 * math.sin(0.25 * t)]


class Raw:
    """One connection speaking raw frames: requests out, replies in, in order."""

    def __init__(self, d, token=""):
        self.s = socket.create_connection(("127.0.0.1", d.port), timeout=30)
        self.buf = bytearray()
        self.next_id = 1
        self.token = token

    def send(self, **body):
        rid = self.next_id
        self.next_id += 1
        self.s.sendall(mpc_client.encode_frame(pb.Request(id=rid, **body)))
        return rid

    def read(self):
        """The next Reply, or None when the daemon closed the connection."""
        return next(mpc_client.read_messages(self.s, pb.Reply, self.buf), None)

    def call(self, **body):
        rid = self.send(**body)
        rep = self.read()
        assert rep is not None and rep.id == rid, rep
        return rep

    def hello(self, history=(), name="pytest/raw", seed=0):
        return self.call(hello=pb.Hello(client_name=name, auth_token=self.token,
                                        history=list(history), seed=seed))

    def step(self, t, reset=None, **kw):
        """Step t: observation(t), reward 0.1 * (t % 3); a reset at t == 0 unless told."""
        return self.call(step=pb.Step(seq=t, observation=observation(t), reward=0.1 * (t % 3),
                                      reset=t == 0 if reset is None else reset, **kw))

    def close(self):
        self.s.close()


def http(d, path):
    """(status, body) of an HTTP GET on the daemon's status endpoint."""
    try:
        with urllib.request.urlopen("http://%s%s" % (d.status_address, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
