"""test_realtime.py: timed plans and delay compensation on the real mpcd (raw frames).

Covers the plan in every Action (horizon x action_size rows, row 0 = the action, inside
the bounds, plan_step_s = the model's control period, also on fallbacks); Step.delay_steps
and Step.applied_actions (refused when out of range or of the wrong size, with the session
still usable; explicit applied_actions equal to the daemon's defaults give the same
replies as none, bit for bit); and that delay_steps = 0 replies are bit for bit what the
daemon answered before delay compensation existed, for the same seed.

The last one compares with tests/daemon/golden/delay0-cartpole.json, written by this file
from mpcd at commit 884111b (the last commit without delay compensation):

    MPCD=<old build>/daemon/mpcd MPCD_WRITE_GOLDEN=1 MPC_PB2_DIR=build/proto \\
        /usr/bin/python3 -m pytest tests/daemon/test_realtime.py -k golden

The daemon runs one worker with a one-thread planner and a deadline no plan reaches, so
its plans depend only on the seed (planner.h: deterministic for a seed, model, config and
thread count when the deadline does not cut).
"""
import json
import os
import struct
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cartpole_raw import MODEL, Raw as RawSession, pb  # noqa: E402
from mpcd_harness import Mpcd, find_mpcd  # noqa: E402

pytestmark = pytest.mark.skipif(not find_mpcd(), reason="mpcd is not built")

GOLDEN = os.path.join(HERE, "golden", "delay0-cartpole.json")
HORIZON = 12
# Deterministic plans: one worker, one planner thread, iterations (not time) end a plan.
PLANNER = ["--workers", "1", "--threads", "1", "--candidates", "200", "--top", "20",
           "--iterations", "4", "--horizon", str(HORIZON), "--seed", "5"]
FAR_US = 60_000_000  # the longest deadline a Step may ask for


def start():
    return Mpcd(MODEL, deadline_ms=40, extra_args=PLANNER).start()


class Raw(RawSession):
    """Steps that iterations, not the deadline, end (unless a test asks otherwise)."""

    def hello(self, seed=0):
        rep = super().hello(name="pytest/realtime", seed=seed)
        assert rep.WhichOneof("body") == "welcome", rep
        return rep.welcome

    def step(self, t, **kw):
        kw.setdefault("deadline_us", FAR_US)
        return super().step(t, **kw)


def f32_bits(values):
    return [struct.unpack("<I", struct.pack("<f", v))[0] for v in values]


# Steps of the golden run: a reset in the middle, and exploration noise on some steps
# (drawn from the session's random stream, like the planner's seeds).
GOLDEN_STEPS = 40


def golden_run():
    d = start()
    try:
        c = Raw(d)
        c.hello()
        out = []
        for t in range(GOLDEN_STEPS):
            kw = {"exploration_noise": 0.3} if t % 7 == 3 else {}
            rep = c.step(t if t != 20 else 0, **kw)  # step 20 starts a new episode
            assert rep.WhichOneof("body") == "action", rep
            a = rep.action
            assert not a.deadline_cut and a.iterations == 4
            out.append({"action": f32_bits(a.action),
                        "predicted_return": f32_bits([a.predicted_return])[0],
                        "plan": f32_bits(a.plan)})
        c.close()
        return out
    finally:
        d.stop()


def test_delay0_replies_match_golden():
    got = golden_run()
    if os.environ.get("MPCD_WRITE_GOLDEN"):
        with open(GOLDEN, "w") as f:
            json.dump({"commit": "884111b", "planner": PLANNER, "steps": [
                {k: v for k, v in g.items() if k != "plan"} for g in got]}, f, indent=0)
        pytest.skip("golden file written")
    with open(GOLDEN) as f:
        want = json.load(f)["steps"]
    assert len(got) == len(want)
    for t, (g, w) in enumerate(zip(got, want)):
        assert g["action"] == w["action"], "step %d: action differs from 884111b's" % t
        assert g["predicted_return"] == w["predicted_return"], "step %d" % t
        assert g["plan"][:1] == g["action"], "step %d: plan row 0 is not the action" % t


def seeded_session(d, seed, steps=12):
    """The actions of a fresh session with this Hello.seed (noise on every other step)."""
    c = Raw(d)
    c.hello(seed=seed)
    out = []
    for t in range(steps):
        rep = c.step(t, exploration_noise=0.3 * (t % 2))
        assert rep.WhichOneof("body") == "action", rep
        out.append(f32_bits(rep.action.action) + f32_bits(rep.action.plan))
    c.s.close()
    return out


def test_hello_seed_repeats_a_session():
    """Hello.seed fixes the session's draws: two sessions (different ids) with one seed
    answer alike, bit for bit; another seed, or none (the daemon's, mixed with the session
    id), answers otherwise."""
    d = start()
    try:
        first = seeded_session(d, 42)
        assert seeded_session(d, 42) == first
        assert seeded_session(d, 43) != first
        assert seeded_session(d, 0) != seeded_session(d, 0)
    finally:
        d.stop()


def test_plan_in_every_reply():
    d = start()
    try:
        c = Raw(d)
        w = c.hello()
        A = w.action_size
        for t in range(6):
            a = c.step(t).action
            assert len(a.plan) == HORIZON * A
            assert list(a.plan[:A]) == list(a.action)
            assert a.plan_step_s == pytest.approx(w.control_period_s) and a.plan_step_s > 0
            for k, v in enumerate(a.plan):
                assert w.action_low[k % A] <= v <= w.action_high[k % A]
        # A fallback (a deadline no iteration fits) sends the warm start's plan.
        a = c.step(6, deadline_us=1).action
        assert a.fallback and len(a.plan) == HORIZON * A
        assert list(a.plan[:A]) == list(a.action)
        c.close()
    finally:
        d.stop()


def test_delay_fields_refused_clearly():
    d = start()
    try:
        c = Raw(d)
        w = c.hello()
        A = w.action_size
        cases = [
            ({"delay_steps": HORIZON + 1}, "INVALID_VALUE", "horizon"),
            ({"delay_steps": 2, "applied_actions": [0.0] * 3}, "SIZE_MISMATCH", "2 x 1"),
            ({"delay_steps": 0, "applied_actions": [0.0]}, "SIZE_MISMATCH", "none or"),
            ({"delay_steps": 1, "applied_actions": [w.action_high[0] + 0.5]}, "INVALID_VALUE",
             "bounds"),
            ({"delay_steps": 1, "applied_actions": [float("nan")]}, "INVALID_VALUE",
             "applied_actions[0]"),
        ]
        for t, (kw, code, text) in enumerate(cases):
            rep = c.step(t, **kw)
            assert rep.WhichOneof("body") == "error", (kw, rep)
            assert pb.Error.Code.Name(rep.error.code) == code, (kw, rep.error)
            assert text in rep.error.message, (kw, rep.error.message)
        # Still usable, up to the horizon itself.
        rep = c.step(0, delay_steps=HORIZON, applied_actions=[0.0] * (HORIZON * A))
        assert rep.WhichOneof("body") == "action", rep
        rep = c.step(1, delay_steps=HORIZON)
        assert rep.WhichOneof("body") == "action", rep
        c.close()
    finally:
        d.stop()


def delayed_run(delay, explicit):
    """Replies to a delayed episode; explicit: send the daemon's own defaults as
    applied_actions (the actions it returned for those steps, zeros before any)."""
    d = start()
    try:
        c = Raw(d)
        w = c.hello()
        A = w.action_size
        returned = []  # returned[t] is applied at step t + delay
        out = []
        for t in range(12):
            kw = {"delay_steps": delay}
            if explicit:
                applied = []
                for k in range(t, t + delay):
                    j = k - delay
                    applied += returned[j] if j >= 0 else [0.0] * A
                kw["applied_actions"] = applied
            a = c.step(t, **kw).action
            returned.append(list(a.action))
            out.append((f32_bits(a.action), f32_bits(a.plan)))
        c.close()
        return out
    finally:
        d.stop()


def test_default_applied_actions_are_the_returned_ones():
    implicit = delayed_run(2, explicit=False)
    assert implicit == delayed_run(2, explicit=True)
    assert implicit != delayed_run(0, explicit=False)  # the delay changes the plans
