"""test_scheduler.py: many robots on one mpcd: admission control and fallback-not-late.

The real daemon on loopback (tests/clients/mpcd_harness.py), driven by the Python client.
Covers: a Hello that would push the admitted sessions below their minimum plan is refused
with OVERLOADED and a retry hint while the admitted ones keep stepping; /readyz says "full"
and /metrics and /status count admitted and refused sessions; capacity freed by a session
that leaves admits the next Hello on the same connection; an operator (admin) always gets
in; absurd rate_hz values are refused. A step that cannot get one CEM iteration before its
deadline (an iteration outlasts it, and the only worker is busy) is answered with the
warm start's action, flagged fallback, and never after its deadline; its observation
still reaches the belief.

The capacity figures are read from the daemon's own /status (the measured cost of a
minimum plan) and the rates chosen from them, so nothing here depends on the machine's
speed. EDF order, yields and expiry are unit-tested in test_workq.c.
"""
import json
import math
import os
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "clients"))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))

from mpcd_harness import Mpcd, find_mpcd, make_model  # noqa: E402

import mpc_client  # noqa: E402

pytestmark = pytest.mark.skipif(not find_mpcd(), reason="mpcd is not built")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    bounds = ["--action-low=-2", "--action-high=2", "--task", "scheduler-test"]
    return make_model(d / "a.safetensors", 3, 1, seed=1, extra=bounds)


def http(d, path):
    try:
        with urllib.request.urlopen("http://%s%s" % (d.status_address, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def status(d):
    return json.loads(http(d, "/status")[1])


def obs(t):
    return [math.cos(0.1 * t), math.sin(0.1 * t), 0.05 * t]


def client(d, rate_hz, name="pytest/robot", token=""):
    c = mpc_client.Client(d.address, timeout=30)
    c.hello(name, rate_hz=rate_hz, auth_token=token)
    return c


def test_admission_refuses_when_full(model):
    planner = ["--candidates", "200", "--top", "20", "--iterations", "4", "--horizon", "8"]
    d = Mpcd(model, deadline_ms=30, admin_token=True, admission=True,
             extra_args=planner + ["--workers", "1", "--max-load", "1"]).start()
    try:
        st = status(d)
        adm = st["admission"]
        cost = adm["plan_cost_ms"] / 1e3
        max_load = adm["max_load"]
        assert adm["min_iterations"] == 1 and max_load == 1 and cost > 0, adm
        probe = mpc_client.Client(d.address, timeout=30)
        model_rate = 1.0 / probe.hello("pytest/probe").control_period_s
        probe.close()  # its place is freed when the connection closes
        assert model_rate * cost < max_load / 4, (model_rate, cost)  # the rates below fit

        # Robots that take all but half of what a robot at the model's rate needs (as many
        # as it takes to stay within the 1000 Hz a Hello may declare) ...
        total = max_load / cost - 0.5 * model_rate
        n_big = int(math.ceil(total / 900.0))
        bigs = [client(d, total / n_big, "pytest/big%d" % i) for i in range(n_big)]
        big = bigs[0]
        # ... one at 1 Hz still fits ...
        small = client(d, 1.0, "pytest/small")
        # ... and one at the model's rate would push the others below their minimum plan.
        late = mpc_client.Client(d.address, timeout=30)
        with pytest.raises(mpc_client.Overloaded) as e:
            late.hello("pytest/late")
        assert e.value.code_name == "OVERLOADED" and e.value.retry_after_ms == 2000
        assert "full" in e.value.message and "max-load" in e.value.message, e.value.message
        # (before any step: the costs are still the calibration's, as the rates assumed)
        code, body = http(d, "/readyz")
        assert code == 503 and body.startswith("full"), (code, body)
        st = status(d)
        assert st["admission"]["full"]
        assert st["sessions_admitted"] == n_big + 2, st  # the probe too
        assert st["sessions_refused"] == 1
        metrics = http(d, "/metrics")[1]
        assert 'mpcd_sessions_total{result="refused"} 1' in metrics
        assert "mpcd_admission_full 1" in metrics
        # Nobody admitted is hurt: both step as before.
        for t in range(3):
            a = big.step(obs(t), seq=t, reset=(t == 0))
            assert a.iterations >= 1 and not a.fallback
            small.step(obs(t), seq=t, reset=(t == 0))

        # An operator always gets in (uncounted): a full daemon must stay operable.
        op = client(d, 0, "pytest/operator", token=d.admin_token)
        assert status(d)["sessions_refused"] == 1

        # The big robots leave: the refused connection tries again and is admitted.
        for b in bigs:
            b.close()
        deadline = time.monotonic() + 10
        while status(d)["admission"]["full"] and time.monotonic() < deadline:
            time.sleep(0.05)
        w = late.hello("pytest/late")
        assert w.min_iterations == 1 and abs(w.rate_hz - model_rate) < 1e-6
        assert http(d, "/readyz")[0] == 200
        late.step(obs(0), seq=0, reset=True)

        # Absurd rates are bad input, not a capacity question.
        for bad in (-1.0, 1e6, float("nan")):
            with pytest.raises(mpc_client.DaemonError) as e:
                client(d, bad, "pytest/bad")
            assert e.value.code_name == "INVALID_VALUE", e.value
        for c in (small, late, op):
            c.close()
    finally:
        assert d.stop() == 0, d.log_text()


def test_fallback_is_never_late(model):
    # One worker and iterations far longer than the short step's deadline: it can neither
    # plan in time itself nor get the worker, so it must be answered with the warm start.
    # A 20 ms margin gives the loop's timer slack on a CI machine running other tests.
    planner = ["--candidates", "300000", "--top", "20", "--iterations", "2", "--horizon", "8",
               "--workers", "1", "--threads", "1", "--min-iterations", "0", "--margin-ms", "20"]
    d = Mpcd(model, deadline_ms=30, extra_args=planner).start(timeout=120)
    try:
        it_ms = status(d)["admission"]["iteration_ms"]
        short_ms = 100
        assert it_ms > 1.5 * short_ms, "an iteration of %.1f ms is too short here" % it_ms
        slow = client(d, 1.0, "pytest/long-plan")
        quick = client(d, 1.0, "pytest/short-deadline")
        quick.step(obs(0), seq=0, reset=True)  # a first plan: the warm start exists
        got = {}

        def long_plan():
            got["long"] = slow.step(obs(0), seq=0, reset=True, deadline_us=10_000_000)

        th = threading.Thread(target=long_plan)
        th.start()
        time.sleep(min(0.5, it_ms / 4e3))  # the long plan has the worker now
        a = quick.step(obs(1), seq=1, deadline_us=short_ms * 1000)
        th.join()
        assert a.fallback and a.deadline_cut and a.iterations == 0, a
        assert got["long"].iterations >= 1
        # The daemon's own clock: no reply after its deadline.
        st = status(d)
        assert st["overruns"] == 0, st
        assert st["fallbacks"] >= 1
        # The fallback step's observation still went into the belief: the session goes on.
        b = quick.step(obs(2), seq=2, deadline_us=10_000_000)
        assert not b.fallback and b.iterations >= 1
        sess = {x["client_name"]: x for x in status(d)["session"]}
        assert sess["pytest/short-deadline"]["steps"] == 3
        print("short step: fallback after %.1f ms in the queue (iteration %.1f ms)"
              % (a.queue_us / 1e3, it_ms))
        slow.close()
        quick.close()
    finally:
        assert d.stop() == 0, d.log_text()
