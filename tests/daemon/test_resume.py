"""test_resume.py: session resume and drain on the real mpcd (raw frames and HTTP).

Covers a Hello carrying a session's history (replayed: Welcome.resumed_steps, the episode
goes on without a reset; only the newest `history` entries are kept), histories refused
with clear errors (sizes, non-finite values, actions out of bounds), and draining by a
Drain request: admin only, Hello then refused with DRAINING, /readyz 503 "draining", the
open session served through the grace period, then handed over right after a reply with
Error DRAINING (request id 0), and the daemon exits 0.
"""
import json
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cartpole_raw import MODEL, Raw, http, observation, pb  # noqa: E402
from mpcd_harness import Mpcd, find_mpcd  # noqa: E402

pytestmark = pytest.mark.skipif(not find_mpcd(), reason="mpcd is not built")

PLANNER = ["--workers", "1", "--threads", "1", "--candidates", "100", "--top", "10",
           "--iterations", "2", "--history", "16"]


def code(rep):
    assert rep.WhichOneof("body") == "error", rep
    return pb.Error.Code.Name(rep.error.code)


def test_resume_replays_the_history():
    d = Mpcd(MODEL, deadline_ms=200, extra_args=PLANNER).start()
    try:
        a = Raw(d)
        assert a.hello().welcome.history_steps == 16
        history = []
        for t in range(20):
            act = a.step(t, reset=t == 0).action
            history.append(pb.HistoryStep(observation=observation(t), action=act.action,
                                          reward=0.1 * (t % 3)))
        a.s.close()  # the connection is lost; the client kept its steps
        b = Raw(d)
        w = b.hello(history=history).welcome
        assert w.resumed_steps == 16  # only the newest `history` entries
        rep = b.step(20)  # goes on: no reset
        assert rep.WhichOneof("body") == "action", rep
        st = json.loads(http(d, "/status")[1])
        mine = [s for s in st["session"] if s["session_id"] == w.session_id]
        assert mine and mine[0]["steps"] == 1 and mine[0]["episodes"] == 1, st["session"]
        assert "resumed from its history" in d.log_text()
        # A session without history is a new one.
        assert Raw(d).hello().welcome.resumed_steps == 0
    finally:
        d.stop()


def test_bad_histories_refused():
    d = Mpcd(MODEL, deadline_ms=200, extra_args=PLANNER).start()
    try:
        c = Raw(d)
        good = pb.HistoryStep(observation=observation(0), action=[0.5], reward=0.1)
        cases = [
            (pb.HistoryStep(observation=observation(0)[:4], action=[0.5]), "SIZE_MISMATCH",
             "history[1] has 4 observation and 1 action values"),
            (pb.HistoryStep(observation=observation(0), action=[0.5, 0.5]), "SIZE_MISMATCH",
             "takes 5 and 1"),
            (pb.HistoryStep(observation=[float("nan")] + observation(0)[1:], action=[0.5]),
             "INVALID_VALUE", "history[1]: observation[0]"),
            (pb.HistoryStep(observation=observation(0), action=[3.0]), "INVALID_VALUE",
             "action bounds"),
            (pb.HistoryStep(observation=observation(0), action=[0.5], reward=float("inf")),
             "INVALID_VALUE", "reward"),
        ]
        for bad, want, text in cases:
            rep = c.hello(history=[good, bad])
            assert code(rep) == want and text in rep.error.message, rep.error
        assert c.hello(history=[good]).welcome.resumed_steps == 1  # still usable
    finally:
        d.stop()


def test_drain_hands_sessions_over():
    d = Mpcd(MODEL, deadline_ms=200, extra_args=PLANNER + ["--drain-grace-s", "1"]).start()
    try:
        robot = Raw(d)
        robot.hello()
        robot.step(0, reset=True)
        assert code(Raw(d).call(drain=pb.Drain())) == "PERMISSION_DENIED"
        admin = Raw(d, token=d.admin_token)
        admin.hello(name="pytest/admin")
        assert admin.call(drain=pb.Drain()).WhichOneof("body") == "ack"
        assert code(Raw(d).hello()) == "DRAINING"
        status, body = http(d, "/readyz")
        assert status == 503 and body.startswith("draining"), (status, body)
        assert json.loads(http(d, "/status")[1])["draining"] is True
        # Through the grace period the open session is served as before...
        t, t_end = 1, time.monotonic() + 0.5
        while time.monotonic() < t_end:
            assert robot.step(t).WhichOneof("body") == "action"
            t += 1
        # ...then handed over right after a reply: Action, Error DRAINING (id 0), closed.
        time.sleep(0.8)
        rid = robot.send(step=pb.Step(seq=t, observation=observation(t)))
        replies = []
        while True:
            rep = robot.read()
            if rep is None:
                break
            replies.append(rep)
        kinds = [(r.id, r.WhichOneof("body")) for r in replies]
        assert kinds in ([(rid, "action"), (0, "error")], [(0, "error")]), kinds
        assert code(replies[-1]) == "DRAINING"
        assert d.proc.wait(timeout=20) == 0
    finally:
        d.stop()
