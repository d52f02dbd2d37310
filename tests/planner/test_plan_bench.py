"""mpc-plan-bench's interface, which scripts depend on: options, --json keys, exit codes,
the random model it builds (loads, and --write-model writes a file that loads again)."""
import json
import os
import subprocess

import pytest

BIN = os.environ.get("PLAN_BENCH_BIN", "mpc-plan-bench")
TINY = ["--deter", "16", "--stoch", "4", "--hidden", "16", "--candidates", "40", "--top", "4",
        "--iterations", "3", "--horizon", "5", "--threads", "2", "--plans", "3", "--warmup", "1"]


def run(*args):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=120)


def test_json_keys():
    r = run(*TINY, "--action-dim", "3", "--json", "--evaluate", "8")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("candidate_steps_per_s", "gflops", "plan_ms_p50", "plan_ms_p99",
                "iterations_mean", "overrun_fraction", "eval_return_mean"):
        assert key in d, key
    assert d["action_dim"] == 3 and d["candidates"] == 40 and d["plans"] == 3
    assert d["iterations_mean"] == 3.0 and d["fallbacks"] == 0
    assert d["candidate_steps_per_s"] > 0 and d["gflops"] > 0
    assert d["plan_ms_p50"] <= d["plan_ms_p99"] <= d["plan_ms_max"]


def test_deadline_and_options():
    r = run(*TINY, "--json", "--deadline-ms", "0.001", "--mppi", "--noise-beta", "2",
            "--keep-elites", "0.5", "--population-decay", "0.5", "--mean-latent")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["fallbacks"] == 3 and d["deadline_cut_fraction"] == 1.0  # nothing fits in 1 us


def test_write_model_roundtrip(tmp_path):
    path = str(tmp_path / "random.safetensors")
    r = run(*TINY, "--value", "--write-model", path, "--json", "--use-value")
    assert r.returncode == 0, r.stderr
    r2 = run("--model", path, *TINY[6:], "--json", "--use-value")
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["deter"] == 16


@pytest.mark.parametrize("args, text", [
    (["--candidates", "0"], "--candidates"),
    (["--candidates", "10", "--top", "20"], "top_k"),
    (["--deadline-ms", "nan"], "--deadline-ms"),
    (["--bogus"], "--bogus"),
    (["--threads"], "--threads"),
    (["--model", "/nonexistent.safetensors"], "nonexistent"),
])
def test_bad_arguments(args, text):
    r = run(*args)
    assert r.returncode in (1, 2)
    assert text in r.stderr
    assert r.stdout == ""


def test_help():
    r = run("--help")
    assert r.returncode == 0
    for word in ("SYNOPSIS", "--deadline-ms", "candidate_steps_per_s", "EXIT STATUS"):
        assert word in r.stdout
