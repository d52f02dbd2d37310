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


def test_hello_overloaded_then_admitted(fake):
    """Admission control: a refused Hello raises Overloaded (a DaemonError) with the
    retry hint and leaves the connection usable; the Welcome says what was admitted."""
    address, script = fake
    seen = []

    def answer(conn, next_request):
        req = next_request()
        seen.append(req.hello)
        err = pb.Error(code=pb.Error.OVERLOADED, retry_after_ms=250,
                       message="admitting 50 Hz would leave the sessions at 3 of 4 iterations")
        conn.sendall(frame(pb.Reply(id=req.id, error=err)))
        req = next_request()
        seen.append(req.hello)
        w = pb.Welcome(session_id=8, observation_size=2, action_size=1, action_low=[-1],
                       action_high=[1], rate_hz=req.hello.rate_hz, min_iterations=4)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=w)))
        req = next_request()
        seen.append(req.hello)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=pb.Welcome(session_id=9))))

    script(answer)
    with mpc_client.Client(address, timeout=10) as c:
        with pytest.raises(mpc_client.Overloaded) as e:
            c.hello("arm-3", rate_hz=50)
        assert isinstance(e.value, mpc_client.DaemonError)
        assert e.value.code_name == "OVERLOADED" and e.value.code == pb.Error.OVERLOADED
        assert e.value.retry_after_ms == 250 and "retry after 250 ms" in str(e.value)
        assert "3 of 4 iterations" in e.value.message
        w = c.hello("arm-3", rate_hz=50)
        assert (w.session_id, w.rate_hz, w.min_iterations) == (8, 50.0, 4)
        assert c.welcome is w
        assert c.hello("arm-3").session_id == 9
    assert [h.rate_hz for h in seen] == [50.0, 50.0, 0.0]
    assert all(h.client_name == "arm-3" for h in seen)


def test_daemon_error_without_hint(fake):
    address, script = fake

    def answer(conn, next_request):
        req = next_request()
        err = pb.Error(code=pb.Error.NOT_READY, message="no model loaded")
        conn.sendall(frame(pb.Reply(id=req.id, error=err)))

    script(answer)
    with mpc_client.Client(address, timeout=10) as c:
        with pytest.raises(mpc_client.DaemonError) as e:
            c.hello("t")
        assert type(e.value) is mpc_client.DaemonError and e.value.retry_after_ms == 0
        assert "retry after" not in str(e.value)


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
