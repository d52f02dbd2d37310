"""The HTTP status endpoint of the real mpcd (integration): /metrics after real steps is
accepted by `promtool check metrics` and counts them, /status agrees with the protocol's
StatusReply, a failed reload shows up in both, and a daemon without a model is alive but
not ready. Started with tests/clients/mpcd_harness.py; skips while mpcd is not built."""
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "clients"))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))

from mpcd_harness import Mpcd, find_mpcd, make_model  # noqa: E402

STEPS = 25


def http(d, path, method="GET"):
    """(status, headers, body text) of one request to the daemon's status endpoint."""
    req = urllib.request.Request("http://%s%s" % (d.status_address, path), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def samples(text):
    """{'name{labels}': value} of an exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    if not find_mpcd():
        pytest.skip("mpcd is not built")
    path = tmp_path_factory.mktemp("model") / "pendulum.safetensors"
    return make_model(path, obs_dim=3, action_dim=1,
                      extra=["--task", "pendulum-test", "--action-low=-2", "--action-high=2"])


@pytest.fixture(scope="module")
def daemon(model, tmp_path_factory):
    d = Mpcd(model, deadline_ms=20, log_path=str(tmp_path_factory.mktemp("mpcd") / "mpcd.log"))
    d.start()
    yield d
    status = d.stop()
    sys.stdout.write(d.log_text())
    assert status == 0


@pytest.fixture(scope="module")
def stepped(daemon):
    """The daemon after one session of STEPS steps (the session stays open)."""
    import mpc_client
    c = mpc_client.Client(daemon.address, timeout=10)
    c.hello("ops-test/session", auth_token=daemon.admin_token)  # the admin may Reload too
    for seq in range(STEPS):
        c.step([0.1 * seq, 1.0, -0.5], seq=seq, reward=0.5, reset=(seq == 0))
    yield c
    c.close()


def test_probes(daemon):
    assert http(daemon, "/healthz")[0] == 200
    assert http(daemon, "/readyz")[0] == 200
    assert http(daemon, "/nope")[0] == 404
    assert http(daemon, "/metrics", method="POST")[0] == 405


def test_metrics_after_steps(daemon, stepped):
    code, headers, text = http(daemon, "/metrics")
    assert code == 200 and "version=0.0.4" in headers["Content-Type"]
    s = samples(text)
    # every step is answered: planned ("ok"), or shed to the warm-start action on a loaded
    # machine when its deadline passed in the queue ("shed")
    assert (s['mpcd_requests_total{type="step",outcome="ok"}'] +
            s.get('mpcd_requests_total{type="step",outcome="shed"}', 0)) == STEPS
    assert s['mpcd_requests_total{type="hello",outcome="ok"}'] >= 1
    assert s["mpcd_steps_total"] == STEPS
    for stage in ("queue", "belief", "plan", "total"):
        assert s["mpcd_step_%s_seconds_count" % stage] == STEPS
        assert s['mpcd_step_%s_seconds_bucket{le="+Inf"}' % stage] == STEPS
    assert s["mpcd_plan_iterations_count"] == STEPS
    assert s["mpcd_step_overhead_seconds_count"] == STEPS
    assert s["mpcd_model_surprise_nats_count"] == STEPS
    assert s["mpcd_model_reward_error_count"] >= STEPS - 1  # none before the first action
    assert s["mpcd_sessions"] == 1 and s["mpcd_ready"] == 1 and s["mpcd_model_version"] == 1
    assert s['mpcd_reloads_total{result="ok"}'] == 1
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_status_json_matches_protocol(daemon, stepped):
    code, headers, text = http(daemon, "/status")
    assert code == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(text)
    rep = stepped.status()
    proto_doc = json.loads(rep.json)
    assert set(doc) == set(proto_doc)
    assert doc["ready"] and doc["model_name"] == rep.model_name == "pendulum-test"
    assert doc["steps"] == STEPS and doc["last_minute"]["total_s"]["count"] == STEPS
    lm = doc["last_minute"]["total_s"]
    assert 0 < lm["p50"] <= lm["p90"] <= lm["p99"] <= lm["max"]
    assert abs(rep.total.max_us - lm["max"] * 1e6) < 1.0
    sess = [x for x in doc["session"] if x["client_name"] == "ops-test/session"]
    assert len(sess) == 1 and sess[0]["steps"] == STEPS and sess[0]["episodes"] >= 1
    assert doc["model"]["dims"]["obs"] == 3 and doc["model"]["dims"]["action"] == 1
    assert doc["model"]["metadata"]["task"] == "pendulum-test"
    assert doc["model"]["action_high"] == [2.0]
    assert doc["planner"]["deadline_ms"] == 20 and doc["planner"]["candidates"] > 0


def test_failed_reload_visible(daemon, stepped):
    import mpc_client
    with pytest.raises(mpc_client.ReloadError):
        stepped.reload("/nonexistent/model.safetensors")
    s = samples(http(daemon, "/metrics")[2])
    assert s['mpcd_reloads_total{result="failed"}'] == 1
    assert s["mpcd_last_reload_failed"] == 1
    assert s["mpcd_ready"] == 1  # the old model keeps serving
    doc = json.loads(http(daemon, "/status")[2])
    assert "nonexistent" in doc["last_reload_error"] and doc["reloads_failed"] == 1


def test_not_ready_without_model(tmp_path):
    with Mpcd(None, log_path=str(tmp_path / "mpcd.log")) as d:
        assert http(d, "/healthz")[0] == 200
        assert http(d, "/readyz")[0] == 503
        doc = json.loads(http(d, "/status")[2])
        assert doc["ready"] is False and doc["model"] is None
        assert samples(http(d, "/metrics")[2])["mpcd_ready"] == 0
