"""test_python_framing.py: clients/python/mpc_client.py against a fake daemon (no mpcd).

A listener thread on a free loopback port answers each request with canned bytes: a
normal reply, a daemon Error, a late reply to an earlier request, half a frame, or a frame
that does not parse. Checks the delimited framing, the error classes and that a timeout
leaves the connection usable; asynchronous steps (step_send/poll_action: the newest reply
kept, errors, replies dropped by a blocking call); session resume against a fake fleet
(FakeFleet: one connection after another on the same port: a drop mid-step, DRAINING,
refused Hellos, attempts exhausted, resume off, reset, async steps); and the Follower,
which needs no socket.
"""
import math
import socket
import threading
import time

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


def buffered_frames(c):
    """Complete frames waiting in the client's socket and buffer (nothing is consumed)."""
    try:
        data = bytes(c.buf) + c.sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        data = bytes(c.buf)
    n = 0
    while True:
        payload, used = mpc_client.split_frame(data)
        if payload is None:
            return n
        data, n = data[used:], n + 1


def wait_buffered(c, n, timeout=10.0):
    """Waits until n replies have reached the client, so that one poll sees them all."""
    deadline = time.monotonic() + timeout
    while buffered_frames(c) < n:
        assert time.monotonic() < deadline, "the fake daemon's replies did not arrive"
        time.sleep(0.005)


def welcome_then(script_rest):
    """A fake script: Welcome (2 observations, 1 action in [-1, 1]), then script_rest."""
    def answer(conn, next_request):
        req = next_request()
        w = pb.Welcome(session_id=1, observation_size=2, action_size=1, action_low=[-1],
                       action_high=[1], control_period_s=0.05)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=w)))
        script_rest(conn, next_request)
    return answer


def action_reply(req, value):
    return frame(pb.Reply(id=req.id, action=pb.Action(
        seq=req.step.seq, action=[value], plan=[value, value / 2], plan_step_s=0.05)))


def test_async_newest_kept_and_dropped_counted(fake):
    address, script = fake
    seen = []

    def rest(conn, next_request):
        reqs = [next_request() for _ in range(3)]
        seen.extend(reqs)
        conn.sendall(b"".join(action_reply(r, 0.25 * (i + 1)) for i, r in enumerate(reqs)))
        req = next_request()
        conn.sendall(action_reply(req, -0.5))

    script(welcome_then(rest))
    with mpc_client.Client(address, timeout=10) as c:
        c.hello("t")
        assert c.fileno() == c.sock.fileno() and c.in_flight == 0
        assert c.poll_action(5) is None  # nothing in flight: at once
        ids = [c.step_send([0.0, 1.0], seq=10 + k, reset=(k == 0)) for k in range(2)]
        ids.append(c.step_send([0.0, 1.0], seq=12, delay_steps=2, applied_actions=[[0.5], [-1]]))
        assert ids == sorted(ids) and len(set(ids)) == 3 and c.in_flight == 3
        wait_buffered(c, 3)
        a = c.poll_action(0)
        assert (a.seq, list(a.action), list(a.plan)) == (12, [0.75], [0.75, 0.375])
        assert a.plan_step_s == 0.05
        assert c.in_flight == 0 and c.dropped_replies == 2
        assert c.poll_action(0) is None
        c.step_send([0.0, 1.0], seq=13)
        assert c.poll_action(10).seq == 13 and c.dropped_replies == 2
    assert [r.id for r in seen] == ids
    assert list(seen[2].step.applied_actions) == [0.5, -1.0] and seen[2].step.delay_steps == 2
    assert seen[0].step.reset and seen[0].step.delay_steps == 0 and not seen[0].step.applied_actions
    assert c.fileno() == -1


def test_async_error_after_action_raised_by_next_poll(fake):
    address, script = fake

    def rest(conn, next_request):
        a, b, d = next_request(), next_request(), next_request()
        err = pb.Error(code=pb.Error.OVERLOADED, message="queue full", retry_after_ms=20)
        conn.sendall(action_reply(a, 0.5) + frame(pb.Reply(id=b.id, error=err)) +
                     action_reply(d, -0.25))

    script(welcome_then(rest))
    with mpc_client.Client(address, timeout=10) as c:
        c.hello("t")
        for seq in (1, 2, 3):
            c.step_send([0.0, 0.0], seq=seq)
        wait_buffered(c, 3)
        assert c.poll_action(0).seq == 1  # the Action read before the error comes first
        with pytest.raises(mpc_client.Overloaded) as e:
            c.poll_action(0)
        assert e.value.retry_after_ms == 20 and c.in_flight == 1
        assert c.poll_action(0).seq == 3
        assert c.in_flight == 0 and c.dropped_replies == 0


def test_async_error_alone_raises(fake):
    address, script = fake

    def rest(conn, next_request):
        req = next_request()
        err = pb.Error(code=pb.Error.INVALID_VALUE, message="delay_steps is 99")
        conn.sendall(frame(pb.Reply(id=req.id, error=err)))

    script(welcome_then(rest))
    with mpc_client.Client(address, timeout=10) as c:
        c.hello("t")
        c.step_send([0.0, 0.0], seq=1, delay_steps=99)
        with pytest.raises(mpc_client.DaemonError, match="delay_steps is 99") as e:
            c.poll_action(10)
        assert type(e.value) is mpc_client.DaemonError and e.value.code_name == "INVALID_VALUE"
        assert c.in_flight == 0


def test_blocking_call_drops_async_replies(fake):
    address, script = fake

    def rest(conn, next_request):
        a, b, st = next_request(), next_request(), next_request()
        conn.sendall(action_reply(a, 0.5) + action_reply(b, 0.5) +
                     frame(pb.Reply(id=st.id, status=pb.StatusReply(version="v"))))
        req = next_request()
        conn.sendall(action_reply(req, 0.125))

    script(welcome_then(rest))
    with mpc_client.Client(address, timeout=10) as c:
        c.hello("t")
        c.step_send([0.0, 0.0], seq=1)
        c.step_send([0.0, 0.0], seq=2)
        assert c.status().version == "v"
        assert c.in_flight == 0 and c.dropped_replies == 2
        assert c.poll_action(0) is None
        assert list(c.step([0.0, 0.0], seq=3).action) == [0.125]


def test_late_blocking_reply_skipped_by_poll(fake):
    address, script = fake

    def rest(conn, next_request):
        first, second = next_request(), next_request()
        conn.sendall(frame(pb.Reply(id=first.id, ack=pb.Ack())) + action_reply(second, 0.5))

    script(welcome_then(rest))
    with mpc_client.Client(address, timeout=10) as c:
        c.hello("t")
        c.timeout = 0.05
        with pytest.raises(mpc_client.Timeout):
            c.reset()
        c.timeout = 10
        c.step_send([0.0, 0.0], seq=7)
        assert c.poll_action(10).seq == 7 and c.dropped_replies == 0


def test_async_checks_before_sending(fake):
    address, script = fake

    def rest(conn, next_request):
        req = next_request()  # only the valid step gets here
        conn.sendall(action_reply(req, 0.5))

    script(welcome_then(rest))
    with mpc_client.Client(address, timeout=10) as c:
        c.hello("t")
        with pytest.raises(ValueError, match="expected delay_steps x action_size = 2 x 1 = 2"):
            c.step_send([0.0, 0.0], seq=1, delay_steps=2, applied_actions=[0.5])
        with pytest.raises(ValueError, match="= 0 x 1 = 0"):
            c.step([0.0, 0.0], seq=1, applied_actions=[0.5])
        with pytest.raises(ValueError, match="NaN"):
            c.step_send([0.0, 0.0], seq=1, delay_steps=1, applied_actions=[float("nan")])
        with pytest.raises(ValueError, match="negative"):
            c.step_send([0.0, 0.0], seq=1, delay_steps=-1)
        with pytest.raises(ValueError, match="expects 2"):
            c.step_send([0.0], seq=1)
        assert c.in_flight == 0
        assert c.step([0.0, 0.0], seq=2, delay_steps=1, applied_actions=[]).seq == 2


# The follower (no connection).

def plan_action(rows, step_s=0.1):
    flat = [x for row in rows for x in row]
    return pb.Action(action=rows[0], plan=flat, plan_step_s=step_s)


def test_follower_no_plan_then_hold_and_run_out():
    f = mpc_client.Follower(2)
    assert f.action_at(0.0) == ([0.0, 0.0], mpc_client.FOLLOW_NO_PLAN)
    f = mpc_client.Follower(2, initial=[0.5, -0.5])
    assert f.action_at(0.0) == ([0.5, -0.5], mpc_client.FOLLOW_NO_PLAN)
    assert f.update(plan_action([[1, 1], [2, 2], [3, 3]]), start=1.0) is True
    assert f.action_at(0.99) == ([0.5, -0.5], mpc_client.FOLLOW_NO_PLAN)
    assert f.action_at(1.0) == ([1.0, 1.0], mpc_client.FOLLOW_PLAN)
    assert f.action_at(1.09) == ([1.0, 1.0], mpc_client.FOLLOW_PLAN)  # zero-order hold
    for k in range(3):  # row boundaries computed the way a control loop does land in row k
        assert f.action_at(1.0 + k * 0.1) == ([k + 1.0] * 2, mpc_client.FOLLOW_PLAN)
        assert f.action_at(1.0 + 0.1 + 0.1 * k - 0.1) == ([k + 1.0] * 2, mpc_client.FOLLOW_PLAN)
    assert f.action_at(1.3) == ([3.0, 3.0], mpc_client.FOLLOW_PAST_END)
    assert f.action_at(50.0) == ([3.0, 3.0], mpc_client.FOLLOW_PAST_END)
    assert f.action_at(1.25) == ([3.0, 3.0], mpc_client.FOLLOW_PLAN)


def test_follower_epsilon_at_boundaries():
    f = mpc_client.Follower(1)
    start, step = 0.7, 0.1
    f.update(plan_action([[float(k)] for k in range(40)], step), start)
    fragile = [k for k in range(40) if math.floor((start + k * step - start) / step) != k]
    assert fragile, "no boundary where plain floor rounds down"  # 0.7 + 0.1 k has some
    for k in range(40):
        assert f.action_at(start + k * step) == ([float(k)], mpc_client.FOLLOW_PLAN)


def test_follower_replace_and_look_back():
    f = mpc_client.Follower(1)
    f.update(plan_action([[1], [2], [3], [4]]), 0.0)
    f.update(plan_action([[10], [20], [30], [40]]), 0.2)
    assert len(f) == 2
    assert f.action_at(0.25) == ([10.0], mpc_client.FOLLOW_PLAN)  # the newer one replaced it
    assert f.action_at(0.3) == ([20.0], mpc_client.FOLLOW_PLAN)
    # A pure lookup: earlier times still see the older plan (steps ahead, steps back).
    assert f.action_at(0.15) == ([2.0], mpc_client.FOLLOW_PLAN)
    assert len(f) == 2
    assert f.action_at(-0.1) == ([0.0], mpc_client.FOLLOW_NO_PLAN)


def test_follower_future_plan_waits():
    """A delayed reply's plan starts later; the older one goes on until then."""
    f = mpc_client.Follower(1)
    f.update(plan_action([[1], [2], [3], [4], [5]]), 0.0)
    f.update(plan_action([[10], [20]]), 0.3)
    assert f.action_at(0.1) == ([2.0], mpc_client.FOLLOW_PLAN)
    assert f.action_at(0.2) == ([3.0], mpc_client.FOLLOW_PLAN)
    assert len(f) == 2
    assert f.action_at(0.3) == ([10.0], mpc_client.FOLLOW_PLAN)
    assert f.action_at(0.5) == ([20.0], mpc_client.FOLLOW_PAST_END)


def test_follower_stale_ignored_equal_start_replaces():
    f = mpc_client.Follower(1)
    assert f.update(plan_action([[1], [2]]), 1.0)
    assert f.update(plan_action([[5], [6]]), 0.9) is False  # overtaken: ignored
    assert f.action_at(1.0) == ([1.0], mpc_client.FOLLOW_PLAN)
    assert f.update(plan_action([[7], [8]]), 1.0) is True  # same start: the newer reply
    assert len(f) == 1
    assert f.action_at(1.1) == ([8.0], mpc_client.FOLLOW_PLAN)
    f.clear()
    assert len(f) == 0 and f.action_at(1.1) == ([0.0], mpc_client.FOLLOW_NO_PLAN)
    assert f.update(plan_action([[3]]), 0.5)  # after clear any start goes


def test_follower_planless_reply_holds():
    f = mpc_client.Follower(2)
    assert f.update(pb.Action(action=[0.25, -0.25]), 2.0)
    assert f.action_at(1.0) == ([0.0, 0.0], mpc_client.FOLLOW_NO_PLAN)
    assert f.action_at(2.0) == ([0.25, -0.25], mpc_client.FOLLOW_PLAN)
    assert f.action_at(1e6) == ([0.25, -0.25], mpc_client.FOLLOW_PLAN)
    f.update(plan_action([[1, 1], [2, 2]]), 3.0)
    assert f.action_at(3.1) == ([2.0, 2.0], mpc_client.FOLLOW_PLAN)


def test_follower_keeps_at_most_max_plans():
    f = mpc_client.Follower(1, max_plans=2)
    for start in (1.0, 2.0, 3.0):
        assert f.update(plan_action([[start]]), start)
    assert len(f) == 2
    assert f.action_at(1.5) == ([0.0], mpc_client.FOLLOW_NO_PLAN)  # the oldest went
    assert f.action_at(2.0) == ([2.0], mpc_client.FOLLOW_PLAN)


def test_follower_checks_sizes():
    with pytest.raises(ValueError, match="max_plans"):
        mpc_client.Follower(1, max_plans=1)
    with pytest.raises(ValueError, match="initial has 1"):
        mpc_client.Follower(2, initial=[0.0])
    f = mpc_client.Follower(2)
    with pytest.raises(ValueError, match="action has 1"):
        f.update(pb.Action(action=[0.5]), 0.0)
    with pytest.raises(ValueError, match="whole number of rows"):
        f.update(pb.Action(action=[0.5, 0.5], plan=[0.5, 0.5, 0.5], plan_step_s=0.1), 0.0)
    with pytest.raises(ValueError, match="positive"):
        f.update(pb.Action(action=[0.5, 0.5], plan=[0.5, 0.5]), 0.0)
    assert len(f) == 0


# Session resume: a fake fleet that answers one connection after another.

class FakeFleet:
    """A fake daemon on one loopback port answering successive connections: serve(*scripts)
    runs scripts[k](conn, next_request) on the k-th connection accepted. A script's failed
    assertions are kept and raised by join()."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.srv.settimeout(20)
        self.address = "tcp://127.0.0.1:%d" % self.srv.getsockname()[1]
        self.accepted = 0
        self.errors = []
        self.thread = None

    def serve(self, *scripts):
        def run():
            try:
                for script in scripts:
                    conn, _ = self.srv.accept()
                    self.accepted += 1
                    requests = mpc_client.read_messages(conn, pb.Request)
                    with conn:
                        script(conn, lambda: next(requests, None))
            except BaseException as e:  # noqa: B902 - reported by join()
                self.errors.append(e)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop_listening(self):
        """Later connections are refused."""
        self.srv.close()

    def pending(self):
        """True when a client connected that no script answered."""
        if self.srv.fileno() < 0:
            return False
        self.srv.settimeout(0.2)
        try:
            conn, _ = self.srv.accept()
        except OSError:
            return False
        conn.close()
        return True

    def join(self):
        if self.thread is not None:
            self.thread.join(timeout=20)
            assert not self.thread.is_alive(), "a fake script did not finish"
        if self.errors:
            raise self.errors[0]


@pytest.fixture
def fleet():
    f = FakeFleet()
    yield f
    if f.thread is not None:
        f.thread.join(timeout=20)
    f.srv.close()


def resume_welcome(history_steps=3, resumed=0, session_id=1):
    return pb.Welcome(session_id=session_id, observation_size=2, action_size=1,
                      action_low=[-1], action_high=[1], control_period_s=0.05,
                      history_steps=history_steps, resumed_steps=resumed)


def obs_of(seq):
    return [float(seq), -0.5 * seq]  # exact in float32


def answer_steps(conn, next_request, n):
    """Answers the next n requests, Steps with action seq / 10; returns the requests."""
    reqs = []
    for _ in range(n):
        req = next_request()
        assert req is not None and req.WhichOneof("body") == "step", req
        conn.sendall(action_reply(req, req.step.seq / 10))
        reqs.append(req)
    return reqs


def history_of(hello):
    return [(list(h.observation), list(h.action), h.reward) for h in hello.history]


def entry(seq, reward):
    return (obs_of(seq), [pytest.approx(seq / 10)], reward)


def test_resume_after_drop_mid_step(fleet):
    """The daemon goes away with a step in flight: the client says Hello again with the
    same arguments and the newest N steps, oldest first, then sends the step again."""
    hellos = []

    def first(conn, next_request):
        req = next_request()
        hellos.append(req.hello)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(3))))
        answer_steps(conn, next_request, 5)
        lost = next_request()
        assert lost.step.seq == 5  # read, never answered: the instance dies

    def second(conn, next_request):
        req = next_request()
        hellos.append(req.hello)
        w = resume_welcome(3, resumed=len(req.hello.history), session_id=2)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=w)))
        resent, = answer_steps(conn, next_request, 1)
        assert resent.step.seq == 5 and list(resent.step.observation) == obs_of(5)
        assert resent.step.reward == 2.5 and not resent.step.reset
        answer_steps(conn, next_request, 1)

    fleet.serve(first, second)
    with mpc_client.Client(fleet.address, timeout=10) as c:
        w = c.hello("arm-7", auth_token="tok", rate_hz=50)
        assert w.history_steps == 3 and c.history == [] and c.resumes == 0
        for seq in range(5):
            assert c.step(obs_of(seq), seq=seq, reward=0.5 * seq, reset=(seq == 0)).seq == seq
        assert c.history == [entry(s, 0.5 * s) for s in (2, 3, 4)]
        a = c.step(obs_of(5), seq=5, reward=2.5)
        assert a.seq == 5 and list(a.action) == [pytest.approx(0.5)]
        assert c.resumes == 1 and c.welcome.session_id == 2 and c.welcome.resumed_steps == 3
        assert c.history == [entry(s, 0.5 * s) for s in (3, 4, 5)]
        assert c.step(obs_of(6), seq=6).seq == 6
    fleet.join()
    assert fleet.accepted == 2
    first_hello, again = hellos
    for h in hellos:
        assert (h.client_name, h.auth_token, h.rate_hz) == ("arm-7", "tok", 50.0)
    assert not first_hello.history
    assert (first_hello.observation_size, first_hello.action_size) == (0, 0)
    # The resume names the session's sizes, so an instance serving another model refuses it.
    assert (again.observation_size, again.action_size) == (2, 1)
    assert history_of(again) == [entry(s, 0.5 * s) for s in (2, 3, 4)]
    assert all(len(h.observation) == 2 and len(h.action) == 1 for h in again.history)


@pytest.mark.parametrize("when", ["before_send", "while_waiting", "shutting_down_reply"])
def test_draining_resumes_at_once(fleet, when):
    """DRAINING (request id 0) after a reply, seen before the next step is sent or while
    waiting for it, or SHUTTING_DOWN answering the step: reconnect at once (the backoff is
    5 s here) and send the step on the new connection."""
    hellos = []

    def first(conn, next_request):
        req = next_request()
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(4))))
        req = next_request()
        reply = action_reply(req, 0.0)
        notice = frame(pb.Reply(id=0, error=pb.Error(code=pb.Error.DRAINING,
                                                     message="handed over")))
        if when == "before_send":
            conn.sendall(reply + notice)
            conn.shutdown(socket.SHUT_WR)
            assert next_request() is None  # the client closed without sending step 1
            return
        conn.sendall(reply)
        req = next_request()
        assert req.step.seq == 1
        if when == "while_waiting":
            conn.sendall(notice)
        else:
            conn.sendall(frame(pb.Reply(id=req.id, error=pb.Error(
                code=pb.Error.SHUTTING_DOWN, message="stopping"))))

    def second(conn, next_request):
        req = next_request()
        hellos.append(req.hello)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(4, resumed=1))))
        resent, = answer_steps(conn, next_request, 1)
        assert resent.step.seq == 1

    fleet.serve(first, second)
    with mpc_client.Client(fleet.address, timeout=10, resume_backoff=5,
                           resume_backoff_max=5) as c:
        c.hello("t")
        assert c.step(obs_of(0), seq=0, reset=True).seq == 0
        if when == "before_send":
            wait_buffered(c, 1)  # the notice has arrived
        t0 = time.monotonic()
        assert c.step(obs_of(1), seq=1).seq == 1
        assert time.monotonic() - t0 < 4.0
        assert c.resumes == 1 and c.welcome.resumed_steps == 1
    fleet.join()
    assert [history_of(h) for h in hellos] == [[entry(0, 0.0)]]


def test_resume_hello_refused_then_accepted(fleet):
    """A balancer may still route to instances that drain, are full or load a model: the
    resume tries again (OVERLOADED's retry_after_ms capped by resume_backoff_max)."""
    refusals = [(pb.Error.DRAINING, 0), (pb.Error.OVERLOADED, 60000),
                (pb.Error.SHUTTING_DOWN, 0), (pb.Error.NOT_READY, 0)]
    hellos = []

    def first(conn, next_request):
        req = next_request()
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(2))))
        answer_steps(conn, next_request, 3)
        next_request()  # step 3, lost

    def refuse(code, retry_after_ms):
        def script(conn, next_request):
            req = next_request()
            hellos.append(req.hello)
            conn.sendall(frame(pb.Reply(id=req.id, error=pb.Error(
                code=code, message="not here", retry_after_ms=retry_after_ms))))
            assert next_request() is None  # the client goes elsewhere
        return script

    def accept(conn, next_request):
        req = next_request()
        hellos.append(req.hello)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(2, resumed=2))))
        assert answer_steps(conn, next_request, 1)[0].step.seq == 3

    fleet.serve(first, *[refuse(*r) for r in refusals], accept)
    with mpc_client.Client(fleet.address, timeout=10, resume_backoff=0.01,
                           resume_backoff_max=0.3) as c:
        c.hello("t")
        for seq in range(3):
            c.step(obs_of(seq), seq=seq, reward=1.0, reset=(seq == 0))
        t0 = time.monotonic()
        assert c.step(obs_of(3), seq=3).seq == 3
        elapsed = time.monotonic() - t0
        assert c.resumes == 1 and c.welcome.resumed_steps == 2
    fleet.join()
    assert fleet.accepted == 6
    assert 0.3 <= elapsed < 5.0  # the 60 s hint waited for 0.3 s
    assert all(history_of(h) == [entry(1, 1.0), entry(2, 1.0)] for h in hellos)


def test_resume_attempts_exhausted(fleet):
    def first(conn, next_request):
        req = next_request()
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(3))))
        answer_steps(conn, next_request, 2)
        next_request()
        fleet.stop_listening()  # before the connection closes: every reconnect is refused

    fleet.serve(first)
    with mpc_client.Client(fleet.address, timeout=10, resume_attempts=3,
                           resume_backoff=0.05, resume_backoff_max=0.1) as c:
        c.hello("t")
        c.step(obs_of(0), seq=0, reset=True)
        c.step(obs_of(1), seq=1)
        t0 = time.monotonic()
        with pytest.raises(mpc_client.ResumeFailed) as e:
            c.step(obs_of(2), seq=2)
        assert time.monotonic() - t0 >= 0.15  # at once, then 0.05 and 0.1 s later
        assert isinstance(e.value, mpc_client.ConnectionLost)
        assert e.value.attempts == 3 and isinstance(e.value.last_error, mpc_client.ConnectError)
        assert "in 3 attempts" in str(e.value) and "cannot connect" in str(e.value)
        assert "closed the connection" in str(e.value)  # the cause
        assert c.resumes == 0 and len(c.history) == 2
        with pytest.raises(mpc_client.ResumeFailed):  # the next call tries again
            c.status()
    fleet.join()


def test_resume_refused_for_good(fleet):
    """A refusal that another try cannot change (a wrong token) ends the resume at once."""
    def first(conn, next_request):
        req = next_request()
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(3))))
        next_request()

    def second(conn, next_request):
        req = next_request()
        conn.sendall(frame(pb.Reply(id=req.id, error=pb.Error(
            code=pb.Error.UNAUTHENTICATED, message="wrong token"))))
        assert next_request() is None

    fleet.serve(first, second)
    with mpc_client.Client(fleet.address, timeout=10, resume_backoff=0.01) as c:
        c.hello("t", auth_token="old")
        with pytest.raises(mpc_client.ResumeFailed, match="wrong token") as e:
            c.step(obs_of(0), seq=0, reset=True)
        assert e.value.attempts == 1 and e.value.last_error.code_name == "UNAUTHENTICATED"
    fleet.join()
    assert not fleet.pending()


@pytest.mark.parametrize("case", ["resume_off", "no_session"])
def test_no_resume(fleet, case):
    """resume=False, or no session opened: a dropped connection raises as it always did."""
    def first(conn, next_request):
        if case == "resume_off":
            req = next_request()
            conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(3))))
            answer_steps(conn, next_request, 1)
        next_request()  # closed unanswered

    fleet.serve(first)
    with mpc_client.Client(fleet.address, timeout=10, resume=(case != "resume_off")) as c:
        if case == "resume_off":
            c.hello("t")
            c.step(obs_of(0), seq=0, reset=True)
            assert len(c.history) == 1  # kept all the same
            call = lambda: c.step(obs_of(1), seq=1)  # noqa: E731
        else:
            call = c.status
        with pytest.raises(mpc_client.ConnectionLost, match="closed the connection") as e:
            call()
        assert not isinstance(e.value, mpc_client.ResumeFailed)
        with pytest.raises(mpc_client.ConnectionLost, match="broken"):
            call()
        assert c.resumes == 0
    fleet.join()
    assert not fleet.pending()


def test_reset_clears_history(fleet):
    hellos = []

    def first(conn, next_request):
        req = next_request()
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(3))))
        answer_steps(conn, next_request, 6)
        req = next_request()
        assert req.WhichOneof("body") == "reset"
        conn.sendall(frame(pb.Reply(id=req.id, ack=pb.Ack())))
        answer_steps(conn, next_request, 1)
        next_request()

    def second(conn, next_request):
        req = next_request()
        hellos.append(req.hello)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(3, resumed=1))))
        answer_steps(conn, next_request, 1)

    fleet.serve(first, second)
    with mpc_client.Client(fleet.address, timeout=10) as c:
        c.hello("t")
        for seq in range(4):
            c.step(obs_of(seq), seq=seq, reset=(seq == 0))
        assert [h[0] for h in c.history] == [obs_of(s) for s in (1, 2, 3)]
        c.step(obs_of(4), seq=4, reset=True)  # a new episode: only this step
        assert [h[0] for h in c.history] == [obs_of(4)]
        c.step(obs_of(5), seq=5)
        assert [h[0] for h in c.history] == [obs_of(4), obs_of(5)]
        c.reset()
        assert c.history == []
        c.step(obs_of(6), seq=6)
        c.step(obs_of(7), seq=7)  # dropped, resumed with step 6 only
        assert c.resumes == 1 and [h[0] for h in c.history] == [obs_of(6), obs_of(7)]
    fleet.join()
    assert [[h[0] for h in history_of(x)] for x in hellos] == [[obs_of(6)]]


def test_resume_without_history(fleet):
    """A Welcome without history_steps (a daemon before resume, or history 0): nothing is
    kept, and a resume says Hello without history (a new episode on the daemon)."""
    hellos = []

    def first(conn, next_request):
        req = next_request()
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(0))))
        answer_steps(conn, next_request, 2)
        next_request()

    def second(conn, next_request):
        req = next_request()
        hellos.append(req.hello)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(0))))
        answer_steps(conn, next_request, 1)

    fleet.serve(first, second)
    with mpc_client.Client(fleet.address, timeout=10) as c:
        c.hello("t")
        c.step(obs_of(0), seq=0, reset=True)
        c.step(obs_of(1), seq=1)
        assert c.history == []
        assert c.step(obs_of(2), seq=2).seq == 2 and c.resumes == 1
        assert c.welcome.resumed_steps == 0
    fleet.join()
    assert len(hellos) == 1 and not hellos[0].history


def test_async_resume(fleet):
    """poll_action on a dropped connection resumes and returns None (the step in flight is
    lost: dropped_replies); step_send after a DRAINING notice resumes before sending.
    Every Action read, superseded ones too, goes into the history."""
    hellos = []

    def first(conn, next_request):
        req = next_request()
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(4))))
        reqs = [next_request() for _ in range(3)]
        conn.sendall(b"".join(action_reply(r, r.step.seq / 10) for r in reqs))
        assert next_request().step.seq == 3  # lost with the connection

    def second(conn, next_request):
        req = next_request()
        hellos.append(req.hello)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(4, resumed=3))))
        req = next_request()
        assert req.step.seq == 4
        notice = frame(pb.Reply(id=0, error=pb.Error(code=pb.Error.DRAINING)))
        conn.sendall(action_reply(req, 0.4) + notice)
        conn.shutdown(socket.SHUT_WR)
        assert next_request() is None  # step 5 goes to the next connection

    def third(conn, next_request):
        req = next_request()
        hellos.append(req.hello)
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(4, resumed=4))))
        assert answer_steps(conn, next_request, 1)[0].step.seq == 5

    fleet.serve(first, second, third)
    with mpc_client.Client(fleet.address, timeout=10) as c:
        c.hello("t")
        for seq in range(3):
            c.step_send(obs_of(seq), seq=seq, reward=1.0, reset=(seq == 0))
        wait_buffered(c, 3)
        assert c.poll_action(0).seq == 2 and c.dropped_replies == 2
        assert c.history == [entry(s, 1.0) for s in range(3)]
        c.step_send(obs_of(3), seq=3, reward=1.0)
        assert c.poll_action(10) is None
        assert c.resumes == 1 and c.in_flight == 0 and c.dropped_replies == 3
        c.step_send(obs_of(4), seq=4, reward=1.0)
        assert c.poll_action(10).seq == 4
        wait_buffered(c, 1)  # the notice
        c.step_send(obs_of(5), seq=5, reward=1.0)
        assert c.resumes == 2 and c.in_flight == 1
        assert c.poll_action(10).seq == 5
        assert c.history == [entry(s, 1.0) for s in (1, 2, 4, 5)]
    fleet.join()
    assert [history_of(h) for h in hellos] == [[entry(s, 1.0) for s in range(3)],
                                                [entry(s, 1.0) for s in (0, 1, 2, 4)]]


def test_async_replies_held_across_a_drain(fleet):
    """Replies that arrived before the DRAINING notice are not lost by a resume: the next
    poll_action returns the newest."""
    def first(conn, next_request):
        req = next_request()
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(4))))
        reqs = [next_request() for _ in range(2)]
        notice = frame(pb.Reply(id=0, error=pb.Error(code=pb.Error.DRAINING)))
        conn.sendall(b"".join(action_reply(r, 0.5) for r in reqs) + notice)
        conn.shutdown(socket.SHUT_WR)
        assert next_request() is None

    answer_now = threading.Event()

    def second(conn, next_request):
        req = next_request()
        assert len(req.hello.history) == 2
        conn.sendall(frame(pb.Reply(id=req.id, welcome=resume_welcome(4, resumed=2))))
        req = next_request()
        assert answer_now.wait(10)
        conn.sendall(action_reply(req, 0.5))

    fleet.serve(first, second)
    with mpc_client.Client(fleet.address, timeout=10) as c:
        c.hello("t")
        c.step_send(obs_of(0), seq=0, reset=True)
        c.step_send(obs_of(1), seq=1)
        wait_buffered(c, 3)
        c.step_send(obs_of(2), seq=2)  # resumes first: the two replies are held
        assert c.resumes == 1 and c.dropped_replies == 1
        assert c.poll_action(0).seq == 1 and c.in_flight == 1
        answer_now.set()
        assert c.poll_action(10).seq == 2 and c.dropped_replies == 1
    fleet.join()
