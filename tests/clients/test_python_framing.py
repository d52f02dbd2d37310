"""test_python_framing.py: clients/python/mpc_client.py against a fake daemon (no mpcd).

A listener thread on a free loopback port answers each request with canned bytes: a
normal reply, a daemon Error, a late reply to an earlier request, half a frame, or a frame
that does not parse. Checks the delimited framing, the error classes and that a timeout
leaves the connection usable.
"""
import socket
import threading

import pytest

import mpc_client

pb = mpc_client.load_pb2()


frame = mpc_client.encode_frame


@pytest.fixture
def fake():
    """Yields (address, set_script); the script gets (conn, next_request) and answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    state = {}

    def serve():
        conn, _ = srv.accept()
        requests = mpc_client.read_messages(conn, pb.Request)
        with conn:
            state["script"](conn, lambda: next(requests, None))

    def set_script(script):
        state["script"] = script
        state["thread"] = threading.Thread(target=serve, daemon=True)
        state["thread"].start()

    yield "tcp://127.0.0.1:%d" % srv.getsockname()[1], set_script
    if "thread" in state:
        state["thread"].join(timeout=10)
    srv.close()


def test_varint_and_split():
    for n in (0, 1, 127, 128, 300, 1 << 20):
        enc = mpc_client.encode_varint(n)
        assert mpc_client.split_frame(enc + b"x" * n) == (b"x" * n, len(enc) + n)
        if n > 0:
            assert mpc_client.split_frame(enc + b"x" * (n - 1)) == (None, 0)
    with pytest.raises(mpc_client.ProtocolError, match="malformed"):
        mpc_client.split_frame(b"\xff" * 11)
    with pytest.raises(mpc_client.ProtocolError, match="larger"):
        mpc_client.split_frame(mpc_client.encode_varint((1 << 20) + 1))


def test_welcome_step_and_daemon_error(fake):
    address, script = fake

    def answer(conn, next_request):
        req = next_request()
        w = pb.Welcome(session_id=7, observation_size=2, action_size=1, action_low=[-1],
                       action_high=[1])
        conn.sendall(frame(pb.Reply(id=req.id, welcome=w)))
        req = next_request()
        assert list(req.step.observation) == [0.5, -0.5] and req.step.reset
        conn.sendall(frame(pb.Reply(id=req.id, action=pb.Action(seq=req.step.seq,
                                                                action=[0.25]))))
        req = next_request()
        err = pb.Error(code=pb.Error.INVALID_VALUE, message="observation 1 is NaN")
        conn.sendall(frame(pb.Reply(id=req.id, error=err)))
        req = next_request()
        conn.sendall(frame(pb.Reply(id=req.id, ack=pb.Ack())))

    script(answer)
    with mpc_client.Client(address, timeout=10) as c:
        assert c.hello("t").session_id == 7
        assert list(c.step([0.5, -0.5], seq=3, reset=True).action) == [0.25]
        with pytest.raises(mpc_client.DaemonError) as e:
            c.step([0.5, 0.0], seq=4)
        assert e.value.code_name == "INVALID_VALUE" and "NaN" in e.value.message
        c.reset()


def test_timeout_then_late_reply_skipped(fake):
    address, script = fake

    def answer(conn, next_request):
        first, second = next_request(), next_request()
        conn.sendall(frame(pb.Reply(id=first.id, ack=pb.Ack())) +
                     frame(pb.Reply(id=second.id, status=pb.StatusReply(version="v"))))

    script(answer)
    with mpc_client.Client(address, timeout=0.05) as c:
        with pytest.raises(mpc_client.Timeout):
            c.reset()
        c.timeout = 10
        assert c.status().version == "v"


@pytest.mark.parametrize("raw, error, why", [
    (b"\x64\x08\x01", mpc_client.ConnectionLost, "middle of a reply"),
    (b"", mpc_client.ConnectionLost, "closed the connection"),
    (b"\x04\xff\xff\xff\xff", mpc_client.ProtocolError, "not a valid mpc.v1 Reply"),
    (b"\x00", mpc_client.ProtocolError, "without a body"),
])
def test_broken_streams(fake, raw, error, why):
    address, script = fake

    def answer(conn, next_request):
        next_request()
        conn.sendall(raw)

    script(answer)
    with mpc_client.Client(address, timeout=10) as c:
        with pytest.raises(error, match=why):
            c.status()
        with pytest.raises(mpc_client.ConnectionLost, match="broken"):
            c.status()
