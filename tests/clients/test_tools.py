"""test_tools.py: mpcctl and mpc-bench against the real mpcd on loopback.

The binaries come from $MPCCTL / $MPC_BENCH (set by meson) or build*/clients. Tests that
need a daemon skip when mpcd is not built; the unreachable-daemon and --help checks run
always.
"""
import json
import re
import subprocess

import pytest

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
