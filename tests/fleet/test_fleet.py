"""test_fleet.py: a fleet of real mpcd instances behind a real HAProxy (suite integration).

tools/fleet brings up 3 instances of `mpcd --config` (the shipped cartpole-swingup conf and
model, a light planner so that 3 instances and 6 robots share a 2-CPU machine, under ASan
too) behind `haproxy -f` running systemd/haproxy-fleet.cfg.example rendered with free
loopback ports. The robots are `mpc-sim --task cartpole-swingup --policy mpcd --realtime`
through the balancer, with short episodes (--max-steps); a robot's "late" steps are the
replies that came after its control period (80 ms), which is what a lost step costs a
real robot.

- test_resume_after_killed_instance: SIGKILL the instance with the most robots
  mid-episode: every robot finishes its episode (exit 0, every step answered), exactly
  the robots that were on it report `resumed` >= 1, each with at most 2 late steps.
- test_drain_loses_no_step: SIGTERM an instance with robots on it: during the grace its
  /readyz says 503 "draining" and /status "draining": true, HAProxy takes it out and sends
  it no new session, its session count never grows, it exits 0; every robot finishes
  with no late step, those that were on it resumed elsewhere.
- test_roll_updates_every_instance: `tools/fleet roll NEW` (mpcctl drain when mpcctl has
  it, else SIGTERM) across the 3 instances while 6 robots run: 0 late steps, every step
  answered, and each instance's /status names the new model file afterwards.
- test_admission_full_and_draining_get_no_sessions: an instance that is full (admission
  control) and one that is draining (with a robot still on it) are DOWN in HAProxy and get
  none of the new robots; the ready one gets them all.

Each skips when haproxy, mpcd, mpc-sim or mpcctl is missing (tools/install-deps installs
haproxy; the others come with the build).
"""
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
FLEET = os.path.join(REPO, "tools", "fleet")
PYTHON = "/usr/bin/python3"
sys.path.insert(0, os.path.join(REPO, "tests", "clients"))

from mpcd_harness import HarnessError, find_binary, find_mpcd  # noqa: E402


def load_fleet_tool():
    loader = importlib.machinery.SourceFileLoader("fleet_tool", FLEET)
    spec = importlib.util.spec_from_loader("fleet_tool", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


ft = load_fleet_tool()

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin",
                               "/sbin"])
HAPROXY = shutil.which("haproxy", path=SEARCH_PATH)
MPCD = find_mpcd()
SIM = find_binary("mpc-sim", "MPC_SIM", os.path.join("clients", "sim"))
MPCCTL = find_binary("mpcctl", "MPCCTL", "clients")
SHIPPED_MODEL = os.path.join(REPO, "model", "zoo", "cartpole-swingup.safetensors")
pytestmark = pytest.mark.skipif(
    not (HAPROXY and MPCD and SIM and MPCCTL),
    reason="needs haproxy (tools/install-deps), mpcd, mpc-sim and mpcctl (the build)")

# A planner light enough for 3 instances and 6 robots on 2 CPUs (ASan is ~10x slower), no
# warm-up spinning, admission control off (tests/clients/mpcd_harness.py does the same)
# except where a test turns it on.
LIGHT = ["--candidates=100", "--top=10", "--iterations=2", "--horizon=8", "--warm-up-ms=0",
         "--min-iterations=0"]
# An instance that is full from the start: one session's minimum plan (10 iterations of
# 1000 candidates) at 12.5 Hz takes far more than max-load 5 % of its worker.
FULL = ["--candidates=1000", "--top=50", "--iterations=10", "--min-iterations=10",
        "--max-load=0.05"]


class FleetRun:
    """A fleet run by tools/fleet in this test's directory; down() stops it."""

    def __init__(self, tmp_path):
        self.run = str(tmp_path / "run")
        self.state = None
        self.robots = []

    def cli(self, *args, timeout=180):
        env = dict(os.environ, MPCD=MPCD, MPC_SIM=SIM, MPCCTL=MPCCTL, HAPROXY=HAPROXY)
        return subprocess.run([PYTHON, FLEET, "--run-dir", self.run] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=timeout, env=env)

    def up(self, n=3, drain_grace_s=2, extra=()):
        r = self.cli("up", n, "--threads", 1, "--drain-grace-s", drain_grace_s,
                     *["--mpcd-arg=" + a for a in LIGHT], *extra)
        assert r.returncode == 0, "tools/fleet up:\n%s%s" % (r.stdout, r.stderr)
        self.reload()
        return r

    def reload(self):
        f = ft.Fleet(self.run)
        f.load()
        self.fleet = f
        self.state = f.data

    def inst(self, name):
        return self.fleet.instance(name)

    @property
    def names(self):
        return [i["name"] for i in self.state["instances"]]

    def dir(self, name):
        return os.path.join(self.run, name)

    def pid(self, name):
        return ft.running(self.dir(name))

    def exit(self, name):
        return ft.read_exit(self.dir(name))

    def status(self, name):
        return ft.instance_status(self.inst(name))

    def readyz(self, name):
        return ft.http_get(self.inst(name)["status_port"], "/readyz")

    def sessions(self):
        """{name: open sessions} of the running instances."""
        out = {}
        for name in self.names:
            st = self.status(name) if self.pid(name) else None
            if st:
                out[name] = st.get("sessions", 0)
        return out

    def haproxy(self):
        return ft.haproxy_stat(self.fleet)

    def wait_sessions(self, total, timeout=60):
        return ft.wait_for(lambda: sum(self.sessions().values()) >= total, timeout, 0.1)

    def start_robots(self, k, max_steps, seed=1, address=None, tag="robot"):
        robots = []
        os.makedirs(os.path.join(self.run, "robots"), exist_ok=True)
        for i in range(k):
            out = os.path.join(self.run, "robots", "%s%d.out" % (tag, i + 1))
            cmd = [SIM, "--task", "cartpole-swingup", "--policy", "mpcd", "--realtime",
                   "--quiet", "--connect", address or self.fleet.address(),
                   "--max-steps", str(max_steps), "--seed", str(seed + i)]
            with open(out, "w") as f:
                p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
            robots.append({"name": "%s%d" % (tag, i + 1), "proc": p, "out": out})
        self.robots += robots
        return robots

    def finish(self, robots, timeout=180):
        return ft.finish_robots(robots, timeout)

    def down(self):
        for r in self.robots:
            if r["proc"].poll() is None:
                r["proc"].kill()
                r["proc"].wait()
        if os.path.exists(os.path.join(self.run, "fleet.json")):
            self.cli("down", timeout=120)

    def logs(self):
        parts = []
        for name in (self.names if self.state else []) + ["haproxy"]:
            for fname in ("mpcd.log", "haproxy.log"):
                path = os.path.join(self.dir(name), fname)
                if os.path.exists(path):
                    parts.append("--- %s ---\n%s" % (path, ft.log_tail(path, 60)))
        rdir = os.path.join(self.run, "robots")
        for fname in sorted(os.listdir(rdir)) if os.path.isdir(rdir) else []:
            path = os.path.join(rdir, fname)
            parts.append("--- %s ---\n%s" % (fname, ft.log_tail(path, 12)))
        return "\n".join(parts)


@pytest.fixture
def fleet(tmp_path, request):
    f = FleetRun(tmp_path)
    yield f
    f.down()


def explain(f, robots=()):
    """Text for assertion messages: the robots' results and the fleet's logs."""
    lines = ["%s: rc %s, replies %s, late %s, resumed %s" % (
        r["name"], r.get("rc"), r.get("replies"), r.get("late"), r.get("resumed"))
        for r in robots]
    return "\n".join(lines) + "\n" + f.logs()


def check_robots(f, robots, max_steps, max_late):
    """Every robot exited 0 with every step answered, said how often it resumed, and had
    at most max_late(robot) late replies."""
    for r in robots:
        assert r["rc"] == 0, "%s failed:\n%s\n%s" % (r["name"], r["text"], explain(f, robots))
        assert r["replies"] == max_steps, explain(f, robots)
        assert r["resumed"] is not None, "no `resumed N time(s)` line:\n" + r["text"]
        assert r["late"] is not None and r["late"] <= max_late(r), explain(f, robots)


def test_resume_after_killed_instance(fleet):
    f = fleet
    f.up(3)
    steps = 100
    robots = f.start_robots(6, steps)
    assert f.wait_sessions(6), explain(f)
    time.sleep(1.0)  # mid-episode
    per = f.sessions()
    victim = max(per, key=per.get)
    on_victim = per[victim]
    assert on_victim >= 1 and sum(per.values()) == 6, per
    os.kill(f.pid(victim), signal.SIGKILL)
    ex = ft.wait_exit(f.dir(victim), 10)
    assert ex and ex["signal"] == signal.SIGKILL, ex
    f.finish(robots)
    # every robot finishes; the ones on the victim resumed elsewhere, losing at most the
    # step in flight (and the one after it while reconnecting)
    check_robots(f, robots, steps, lambda r: 2 if r["resumed"] else 0)
    resumed = [r for r in robots if r["resumed"]]
    assert len(resumed) == on_victim, explain(f, robots)
    assert f.haproxy()[victim]["status"].startswith("DOWN")


def test_drain_loses_no_step(fleet):
    f = fleet
    grace = 2.0
    f.up(3, drain_grace_s=grace)
    steps = 100
    robots = f.start_robots(6, steps)
    assert f.wait_sessions(6), explain(f)
    time.sleep(0.5)
    per = f.sessions()
    victim = max(per, key=per.get)
    on_victim = per[victim]
    stot_before = int(f.haproxy()[victim]["stot"])
    t0 = time.monotonic()
    os.kill(f.pid(victim), signal.SIGTERM)
    readyz, most_sessions, draining, down_at = [], 0, False, None
    while f.exit(victim) is None and time.monotonic() - t0 < 60:
        code, body = f.readyz(victim)
        t = time.monotonic() - t0
        if code is not None:
            readyz.append((t, code, body))
        st = f.status(victim)
        if st:
            most_sessions = max(most_sessions, st.get("sessions", 0))
            draining = draining or st.get("draining") is True
        if down_at is None and f.haproxy()[victim]["status"].startswith("DOWN"):
            down_at = t
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    ex = f.exit(victim)
    assert ex is not None and ex["rc"] == 0, "%s\n%s" % (ex, explain(f))
    assert elapsed >= grace * 0.9, elapsed  # it served out the grace
    # /readyz said "draining" at once (a first answer may predate the signal's handling)
    # and never 200 again
    first = next((i for i, (_, code, _) in enumerate(readyz) if code == 503), None)
    assert first is not None and readyz[first][0] < 0.5, readyz
    assert all(code == 503 for _, code, _ in readyz[first:]), readyz
    assert any(t < grace and body.startswith("draining") for t, _, body in readyz), readyz
    assert draining
    # HAProxy took it out within the grace and sent it no new session
    assert down_at is not None and down_at < grace, (down_at, f.haproxy()[victim])
    assert int(f.haproxy()[victim]["stot"]) == stot_before
    assert most_sessions <= on_victim
    f.finish(robots)
    check_robots(f, robots, steps, lambda r: 0)
    resumed = [r for r in robots if r["resumed"]]
    assert len(resumed) == on_victim, explain(f, robots)


def new_model(tmp_path):
    """A model of the shipped one's sizes with other weights; a copy of the shipped file
    when PyTorch is not there to make one."""
    path = tmp_path / "retrained.safetensors"
    try:
        cmd = [PYTHON, os.path.join(REPO, "model", "train", "make_model.py"),
               "--obs-dim", "5", "--action-dim", "1", "--deter", "32", "--stoch", "16",
               "--hidden", "32", "--embed", "32", "--activation", "elu",
               "--task", "cartpole-swingup", "--control-period", "0.08", "--seed", "15",
               "--out", str(path)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise HarnessError(r.stderr)
    except (HarnessError, OSError):
        shutil.copyfile(SHIPPED_MODEL, path)
    return str(path)


def test_roll_updates_every_instance(fleet, tmp_path):
    f = fleet
    target = new_model(tmp_path)
    f.up(3, drain_grace_s=1)
    old_model = f.state["model"]
    steps = 300  # 24 s: longer than the roll
    robots = f.start_robots(6, steps)
    assert f.wait_sessions(6), explain(f)
    time.sleep(0.5)
    t0 = time.monotonic()
    r = f.cli("roll", target, timeout=240)
    roll_s = time.monotonic() - t0
    assert r.returncode == 0, "tools/fleet roll:\n%s%s\n%s" % (r.stdout, r.stderr, explain(f))
    still = [x["name"] for x in robots if x["proc"].poll() is None]
    assert len(still) == len(robots), \
        "the robots ended before the %.1f s roll did (%s): lengthen them" % (roll_s, still)
    f.reload()
    new = f.state["model"]
    assert new != old_model and os.path.basename(new).startswith("retrained-")
    for name in f.names:
        st = f.status(name)
        assert st and st["model_path"] == new, (name, st and st["model_path"])
        assert f.haproxy()[name]["status"] == "UP"
    f.finish(robots)
    check_robots(f, robots, steps, lambda r: 0)
    assert sum(x["resumed"] for x in robots) >= 3, explain(f, robots)
    if "drain" in subprocess.run([MPCCTL, "--help"], capture_output=True,
                                 text=True).stdout:
        assert r.stdout.count("mpcctl drain") == 3, r.stdout


def test_admission_full_and_draining_get_no_sessions(fleet):
    f = fleet
    f.up(3, extra=["--arg-for=mpcd2=--drain-grace-s=60"]
         + ["--arg-for=mpcd3=" + a for a in FULL])
    # mpcd3 is full from the start: /readyz 503 "full", HAProxy has it DOWN
    code, body = f.readyz("mpcd3")
    assert code == 503 and body.startswith("full"), (code, body)
    assert ft.wait_for(lambda: f.haproxy()["mpcd3"]["status"].startswith("DOWN"), 10), \
        f.haproxy()["mpcd3"]
    # mpcd2 drains with a robot on it (connected directly, not through HAProxy), which
    # keeps it draining for its 60 s grace
    direct = f.start_robots(1, 1000, seed=11, tag="direct",
                            address="tcp://127.0.0.1:%d" % f.inst("mpcd2")["port"])
    assert ft.wait_for(lambda: f.sessions().get("mpcd2") == 1, 30), explain(f)
    os.kill(f.pid("mpcd2"), signal.SIGTERM)
    assert ft.wait_for(lambda: f.readyz("mpcd2")[1].startswith("draining"), 5), \
        f.readyz("mpcd2")
    assert ft.wait_for(lambda: f.haproxy()["mpcd2"]["status"].startswith("DOWN"), 5), \
        f.haproxy()["mpcd2"]
    stot = {n: int(f.haproxy()[n]["stot"]) for n in f.names}
    steps = 30
    robots = f.start_robots(4, steps)
    assert ft.wait_for(lambda: f.sessions().get("mpcd1") == 4, 30), (f.sessions(),
                                                                     explain(f))
    f.finish(robots)
    check_robots(f, robots, steps, lambda r: 0)
    assert all(r["resumed"] == 0 for r in robots), explain(f, robots)
    after = {n: int(f.haproxy()[n]["stot"]) for n in f.names}
    assert after == {"mpcd1": stot["mpcd1"] + 4, "mpcd2": stot["mpcd2"],
                     "mpcd3": stot["mpcd3"]}, (stot, after)
    assert all(int(f.haproxy()[n + "-backup"]["stot"]) == 0 for n in f.names)
    # still draining, still serving only the direct robot; the full one has none
    st2, st3 = f.status("mpcd2"), f.status("mpcd3")
    assert st2["draining"] is True and st2["sessions"] == 1, st2
    assert st3["sessions"] == 0 and st3["sessions_refused"] == 0, st3
    assert f.pid("mpcd2") and direct[0]["proc"].poll() is None


def hello_through(address, name="pytest/fleet"):
    """Says Hello (cartpole sizes) on a new connection to address; returns the Reply, or
    None when the connection closed first."""
    sys.path.insert(0, os.path.join(REPO, "clients", "python"))
    import mpc_client
    pb = mpc_client.load_pb2()
    host, port = address[len("tcp://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(mpc_client.encode_frame(pb.Request(id=1, hello=pb.Hello(
            client_name=name, observation_size=5, action_size=1))))
        buf = bytearray()
        try:
            for reply in mpc_client.read_messages(s, pb.Reply, buf):
                return reply
        except ConnectionResetError:
            return None
    return None


def test_admission_whole_fleet_full_answers_overloaded(fleet):
    # Every instance full: HAProxy has them all DOWN and hands a new robot to a backup
    # line (the same instances, unchecked), so that the robot hears mpcd's OVERLOADED
    # with retry_after_ms instead of a closed connection.
    f = fleet
    f.up(2, extra=["--arg-for=mpcd%d=%s" % (i, a) for i in (1, 2) for a in FULL])
    assert ft.wait_for(lambda: all(f.haproxy()[n]["status"].startswith("DOWN")
                                   for n in f.names), 10), f.haproxy()
    for _ in range(2):
        r = hello_through(f.fleet.address())
        assert r is not None and r.HasField("error"), r
        assert r.error.code == r.error.OVERLOADED and r.error.retry_after_ms > 0, r
    refused = sum(f.status(n)["sessions_refused"] for n in f.names)
    assert refused == 2, [f.status(n) for n in f.names]
