"""test_tools.py: mpcctl and mpc-bench against the real mpcd on loopback.

The binaries come from $MPCCTL / $MPC_BENCH (set by meson) or build*/clients. Tests that
need a daemon skip when mpcd is not built; the unreachable-daemon and --help checks run
always, and so do the mpc-bench checks against FakeDaemon (admission control: refused
sessions, declared rates, staggered phases, iterations per plan).
"""
import json
import re
import socket
import subprocess
import threading
import time

import pytest

import mpc_client
from mpcd_harness import find_binary, free_port

MPCCTL = find_binary("mpcctl", "MPCCTL", "clients")
MPC_BENCH = find_binary("mpc-bench", "MPC_BENCH", "clients")
pytestmark = pytest.mark.skipif(not MPCCTL or not MPC_BENCH,
                                reason="mpcctl / mpc-bench are not built")


def run(*args, timeout=120):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("tool", ["mpcctl", "mpc-bench"])
def test_help(tool):
    r = run(MPCCTL if tool == "mpcctl" else MPC_BENCH, "--help")
    assert r.returncode == 0
    for section in ("NAME", "SYNOPSIS", "OPTIONS", "EXIT STATUS", "--connect"):
        assert section in r.stdout


def test_unreachable_and_bad_address():
    addr = "tcp://127.0.0.1:%d" % free_port()
    for cmd in ([MPCCTL, "--connect", addr, "status"], [MPCCTL, "--connect", addr, "ping"],
                [MPC_BENCH, "--connect", addr, "--seconds", "1"]):
        r = run(*cmd)
        assert r.returncode == 3, r.stderr
        assert "cannot reach mpcd" in r.stderr and addr in r.stderr
    r = run(MPCCTL, "--connect", "localhost:7070", "status")
    assert r.returncode == 2 and "unknown scheme" in r.stderr
    r = run(MPCCTL, "frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr
    r = run(MPC_BENCH, "--clients", "0")
    assert r.returncode == 2 and "--clients" in r.stderr


def test_status_table_and_json(daemon):
    r = run(MPCCTL, "--connect", daemon.address, "status")
    assert r.returncode == 0, r.stderr
    assert "ready" in r.stdout and "pendulum-test" in r.stdout
    for stage in ("total", "plan", "belief", "queue"):
        assert re.search(r"^\s+%s\s+\d+" % stage, r.stdout, re.M), r.stdout
    r = run(MPCCTL, "--connect", daemon.address, "status", "--json")
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), dict)


def test_ping_and_watch(daemon):
    r = run(MPCCTL, "--connect", daemon.address, "ping", "--count", "3", "--interval", "0")
    assert r.returncode == 0, r.stderr
    assert "3 of 3 requests answered" in r.stdout
    assert len(re.findall(r"time=\d+\.\d+ ms", r.stdout)) == 3
    r = run(MPCCTL, "--connect", daemon.address, "watch", "--count", "2", "--interval", "100")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("latency (us, last minute)") == 2


def test_reload(daemon, model, tmp_path):
    r = run(MPCCTL, "--connect", daemon.address, "reload")
    assert r.returncode == 1 and "admin role" in r.stderr, r.stderr  # no token: refused
    admin = ["--connect", daemon.address, "--token-file", daemon.admin_token_file]
    r = run(MPCCTL, *admin, "reload")
    assert r.returncode == 0, r.stderr
    assert "now serving" in r.stdout
    r = run(MPCCTL, *admin, "reload", model)
    assert r.returncode == 0, r.stderr
    r = run(MPCCTL, *admin, "reload", "/nonexistent/model.safetensors")
    assert r.returncode == 1
    assert "mpcctl: reload:" in r.stderr and "outside model-dir" in r.stderr
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    r = run(MPCCTL, "--connect", daemon.address, "--token-file", str(wrong), "reload")
    assert r.returncode == 1 and "UNAUTHENTICATED" in r.stderr + r.stdout or \
        "bad auth_token" in r.stderr, r.stderr
    r = run(MPCCTL, "--connect", daemon.address, "status")
    assert r.returncode == 0 and "ready" in r.stdout


def test_bench_eight_clients(daemon):
    r = run(MPC_BENCH, "--connect", daemon.address, "--clients", "8", "--seconds", "2",
            "--json", "--timeout", "10000")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["clients"] == 8 and rep["obs_dim"] == 3
    assert rep["steps"] > 0 and rep["errors"] == 0, rep
    lat = rep["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert 0 <= rep["deadline_misses"] <= rep["steps"]
    # The daemon saw the sessions and counted the steps.
    st = run(MPCCTL, "--connect", daemon.address, "status", "--json")
    assert st.returncode == 0


def test_bench_fixed_rate_text(daemon):
    r = run(MPC_BENCH, "--connect", daemon.address, "--clients", "2", "--seconds", "1",
            "--rate", "20", "--deadline-ms", "40", "--timeout", "10000")
    assert r.returncode == 0, r.stderr
    assert "fixed rate" in r.stdout
    assert re.search(r"latency ms\s+p50 [\d.]+\s+p90 [\d.]+\s+p99 [\d.]+\s+max [\d.]+", r.stdout)
    steps = int(re.search(r"steps\s+(\d+) ok", r.stdout).group(1))
    assert 0 < steps <= 2 * 20 + 2  # never faster than the requested rate


class FakeDaemon:
    """A thread per connection on a free loopback port: admits the first `admit` Hellos
    (Welcome with min_iterations), refuses the others with OVERLOADED, and answers each
    Step with an Action whose iterations cycle through `iterations` by seq. Records every
    Hello and the arrival time of every Step per client name."""

    def __init__(self, admit, min_iterations=4, iterations=(2, 4, 6, 8)):
        self.pb = mpc_client.load_pb2()
        self.admit, self.min_iterations, self.iterations = admit, min_iterations, iterations
        self.hellos, self.steps, self.lock = [], {}, threading.Lock()
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.srv.settimeout(0.2)
        self.address = "tcp://127.0.0.1:%d" % self.srv.getsockname()[1]
        self.stopping = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn):
        pb, name = self.pb, None
        with conn:
            for req in mpc_client.read_messages(conn, pb.Request):
                if req.WhichOneof("body") == "hello":
                    with self.lock:
                        self.hellos.append(req.hello)
                        admitted = len(self.hellos) <= self.admit
                    if not admitted:
                        err = pb.Error(code=pb.Error.OVERLOADED, retry_after_ms=100,
                                       message="full: 2 sessions at their minimum plan")
                        conn.sendall(mpc_client.encode_frame(pb.Reply(id=req.id, error=err)))
                        continue
                    name = req.hello.client_name
                    w = pb.Welcome(session_id=len(self.hellos), model_name="fake",
                                   observation_size=3, action_size=1, action_low=[-2],
                                   action_high=[2], control_period_s=0.05,
                                   default_deadline_us=50000, rate_hz=req.hello.rate_hz or 20,
                                   min_iterations=self.min_iterations)
                    reply = pb.Reply(id=req.id, welcome=w)
                else:
                    with self.lock:
                        self.steps.setdefault(name, []).append(time.monotonic())
                    seq = req.step.seq
                    a = pb.Action(seq=seq, action=[0.5], plan_us=100,
                                  iterations=self.iterations[seq % len(self.iterations)])
                    reply = pb.Reply(id=req.id, action=a)
                conn.sendall(mpc_client.encode_frame(reply))

    def close(self):
        self.stopping = True
        self.srv.close()
        for t in self.threads:
            t.join(timeout=10)


@pytest.fixture
def fake_daemon():
    made = []

    def make(**kw):
        made.append(FakeDaemon(**kw))
        return made[-1]

    yield make
    for d in made:
        d.close()


OLD_BENCH_KEYS = {"clients", "seconds", "mode", "rate_hz", "model", "obs_dim", "deadline_ms",
                  "steps", "throughput_hz", "latency_ms", "deadline_misses", "deadline_cuts",
                  "fallbacks", "mean_iterations", "mean_plan_us", "errors", "errors_by_kind",
                  "reconnects"}


def test_bench_refused_sessions_and_iterations(fake_daemon):
    d = fake_daemon(admit=2)
    r = run(MPC_BENCH, "--connect", d.address, "--clients", "4", "--seconds", "1",
            "--rate", "40", "--json", "--timeout", "10000")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert OLD_BENCH_KEYS <= set(rep), rep
    assert rep["sessions_admitted"] == 2 and rep["sessions_refused"] == 2, rep
    assert rep["errors"] == 0 and rep["reconnects"] == 0, rep  # a refusal is no error
    assert rep["model"] == "fake" and rep["steps"] > 0
    assert rep["steps"] <= 2 * 40 + 2  # the refused clients did not try again
    assert len(d.hellos) == 4 and all(h.rate_hz == 40.0 for h in d.hellos)
    # Iterations 2, 4, 6, 8 by seq against a minimum of 4.
    assert rep["min_iterations"] == 4
    assert rep["iterations_p1"] == 2 and rep["iterations_p50"] in (4, 6), rep
    assert 0.6 < rep["min_iterations_reached_fraction"] < 0.9, rep
    assert 4 <= rep["mean_iterations"] <= 6

    r = run(MPC_BENCH, "--connect", d.address, "--clients", "1", "--seconds", "0.2",
            "--timeout", "10000")  # the fake is full now: every Hello is refused
    assert r.returncode == 1, r.stderr
    assert re.search(r"sessions\s+0 admitted, 1 refused", r.stdout), r.stdout
    assert "no step was answered" in r.stderr and "OVERLOADED" in r.stderr
    assert "retry after 100 ms" in r.stderr
    assert d.hellos[-1].rate_hz == 0.0  # closed loop declares no rate


def test_bench_text_iterations_line(fake_daemon):
    d = fake_daemon(admit=8, min_iterations=6)
    r = run(MPC_BENCH, "--connect", d.address, "--clients", "1", "--seconds", "0.3",
            "--timeout", "10000")
    assert r.returncode == 0, r.stderr
    m = re.search(r"iterations\s+p1 (\d+)\s+p50 (\d+); ([\d.]+)% of replies reached the "
                  r"minimum of 6", r.stdout)
    assert m, r.stdout
    assert m.group(1) == "2" and 40 <= float(m.group(3)) <= 60
    assert re.search(r"sessions\s+1 admitted, 0 refused", r.stdout), r.stdout


def test_bench_paced_clients_are_staggered(fake_daemon):
    """The admitted clients step at t0 + (k + slot/A) periods: the phases of 4 clients at
    10 Hz lie a quarter period (25 ms) apart (slots go in the order the Hellos were
    admitted, so the test sorts the phases)."""
    d = fake_daemon(admit=4)
    r = run(MPC_BENCH, "--connect", d.address, "--clients", "4", "--seconds", "1.2",
            "--rate", "10", "--json", "--timeout", "10000")
    assert r.returncode == 0, r.stderr
    period = 0.1
    times = {int(name.rsplit("/", 1)[1]): t for name, t in d.steps.items()}
    assert sorted(times) == [0, 1, 2, 3] and all(len(t) >= 8 for t in times.values())
    ref = min(ts[0] for ts in times.values())

    def phase(ts):  # median offset from the earliest first step, in [-period/8, 7/8 period)
        offs = sorted((t - ref + period / 8) % period - period / 8 for t in ts)
        return offs[len(offs) // 2]

    got = sorted(phase(ts) for ts in times.values())
    for i in range(4):
        want = i * period / 4
        diff = (got[i] - want + period / 2) % period - period / 2
        assert abs(diff) < 0.012, "slot %d phase %.1f ms, expected %.1f ms" % (
            i, got[i] * 1e3, want * 1e3)
