"""test_sim_cli.py: the mpc-sim command line (no daemon needed).

Runs the built binary ($MPC_SIM): help and task list, refused command lines, random and
zero episodes, --record files read back with numpy (the trainer's reader when torch is
there), their agreement with the printed returns and the --csv log, determinism per seed,
no overwriting, --max-steps, and the exit status and message when mpcd is unreachable.
With --obs pixels (skipped where nothing can render): the image array numpy reads, the
state recorded bit for bit as without images, --save-frames pictures equal to the recorded
images, --image-size, and --policy mpcd refused until the protocol carries images.
"""
import csv
import glob
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
SIM = os.environ.get("MPC_SIM")
TASKS = {"cartpole-swingup": (5, 1, 125), "cartpole-balance": (5, 1, 125),
         "pendulum-swingup": (3, 1, 500), "reacher-easy": (6, 2, 250),
         "cheetah-run": (17, 6, 250)}

pytestmark = pytest.mark.skipif(not SIM or not os.access(SIM, os.X_OK),
                                reason="mpc-sim is not built (set MPC_SIM)")


def sim(*args, check=True):
    p = subprocess.run([SIM, *map(str, args)], capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"mpc-sim {args} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p


def returns_of(stdout):
    return [float(m) for m in re.findall(r"^episode \d+/\d+: return (\S+)", stdout, re.M)]


def load(path, image=False):
    with np.load(path, allow_pickle=False) as f:
        want = ["action", "observation", "reward"] + (["image"] if image else [])
        assert sorted(f.files) == sorted(want)
        return {k: f[k] for k in f.files}


def test_help_and_list():
    p = sim("--help")
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "--record",
                    "--realtime", "--explore", "--csv", "--max-steps", "--deadline-ms", "--obs",
                    "--image-size", "--save-frames"):
        assert section in p.stdout
    p = sim("--list-tasks")
    for task, (obs, act, _) in TASKS.items():
        assert re.search(rf"^{task}\s+{obs}\s+{act}\s", p.stdout, re.M), p.stdout
    p = sim("--print-mjcf", "reacher-easy")
    assert p.stdout.startswith("<mujoco") and "wrist" in p.stdout


@pytest.mark.parametrize("args, message", [
    ([], "--task is required"),
    (["--task", "nope"], "unknown task 'nope'"),
    (["--task", "cartpole-swingup", "--policy", "smart"], "--policy"),
    (["--task", "cartpole-swingup", "--episodes", "0"], "--episodes"),
    (["--task", "cartpole-swingup", "--episodes", "2x"], "--episodes"),
    (["--task", "cartpole-swingup", "--explore", "-1"], "--explore"),
    (["--task", "cartpole-swingup", "--max-steps", "1001"], "--max-steps"),
    (["--task", "cartpole-swingup", "--deadline-ms", "nan"], "--deadline-ms"),
    (["--task", "cartpole-swingup", "extra"], "unexpected argument"),
    (["--task", "cartpole-swingup", "--bogus"], "--help"),
    (["--task", "cartpole-swingup", "--follow"], "need --policy mpcd"),
    (["--task", "cartpole-swingup", "--policy", "mpcd", "--drop", "1.5"], "--drop"),
    (["--task", "cartpole-swingup", "--policy", "mpcd", "--delay-steps", "65"],
     "--delay-steps"),
    (["--task", "cartpole-swingup", "--policy", "mpcd", "--uncompensated"],
     "--uncompensated needs --delay-steps"),
    (["--task", "cartpole-swingup", "--obs", "rgb"], "--obs: expected state, pixels or both"),
    (["--task", "cartpole-swingup", "--obs", "pixels", "--image-size", "4"], "--image-size"),
    (["--task", "cartpole-swingup", "--obs", "pixels", "--image-size", "2000"], "--image-size"),
    (["--task", "cartpole-swingup", "--image-size", "32"], "need --obs pixels"),
    (["--task", "cartpole-swingup", "--save-frames", "x"], "need --obs pixels"),
])
def test_bad_command_lines(args, message):
    p = sim(*args, check=False)
    assert p.returncode == 2
    assert message in p.stderr


def test_random_episodes_print_returns():
    p = sim("--task", "cartpole-swingup", "--policy", "random", "--episodes", "3")
    rets = returns_of(p.stdout)
    assert len(rets) == 3 and all(0 <= r <= 1000 for r in rets)
    assert "cartpole-swingup, policy random, 3 episodes: return mean" in p.stdout


@pytest.mark.parametrize("task", sorted(TASKS))
def test_record_every_task(tmp_path, task):
    obs_dim, act_dim, steps = TASKS[task]
    p = sim("--task", task, "--episodes", "2", "--seed", "3", "--record", tmp_path / "ep")
    files = sorted(glob.glob(str(tmp_path / "ep" / f"{task}-*.npz")))
    assert len(files) == 2
    for path, ret in zip(files, returns_of(p.stdout)):
        ep = load(path)
        assert ep["observation"].dtype == np.float32
        assert ep["observation"].shape == (steps + 1, obs_dim)
        assert ep["action"].shape == (steps, act_dim)
        assert ep["reward"].shape == (steps,)
        assert np.all(np.abs(ep["action"]) <= 1.0)
        assert np.all(ep["reward"] >= 0)
        assert np.all(ep["reward"] <= 1000 // steps + 1e-4)
        assert abs(float(ep["reward"].sum()) - ret) < 0.01
        assert np.all(np.isfinite(ep["observation"]))


def test_trainer_reads_the_files(tmp_path):
    try:
        sys.path.insert(0, os.path.join(REPO, "model", "train"))
        from mpc_rssm.data import EpisodeBuffer
    except ImportError as e:  # torch missing: numpy's reading is tested above
        pytest.skip(f"trainer not importable: {e}")
    sim("--task", "cartpole-swingup", "--episodes", "3", "--record", tmp_path)
    buf = EpisodeBuffer(str(tmp_path))
    assert len(buf) == 3 and buf.obs_dim == 5 and buf.action_dim == 1
    assert buf.num_steps == 3 * 125


def test_csv_matches_record(tmp_path):
    log = tmp_path / "log.csv"
    sim("--task", "reacher-easy", "--episodes", "2", "--max-steps", "20", "--record", tmp_path,
        "--csv", log, "--seed", "8")
    rows = list(csv.DictReader(open(log)))
    assert len(rows) == 40
    assert list(rows[0])[:3] == ["episode", "step", "time_s"]
    assert "obs_5" in rows[0] and "action_1" in rows[0] and "latency_ms" in rows[0]
    ep = load(sorted(glob.glob(str(tmp_path / "*.npz")))[0])
    assert ep["action"].shape == (20, 2)
    for t, row in enumerate(rows[:20]):
        assert int(row["episode"]) == 1 and int(row["step"]) == t
        np.testing.assert_allclose([float(row[f"obs_{i}"]) for i in range(6)],
                                   ep["observation"][t], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([float(row["action_0"]), float(row["action_1"])],
                                   ep["action"][t], rtol=1e-5, atol=1e-6)
        assert abs(float(row["reward"]) - ep["reward"][t]) < 1e-5
    assert float(rows[1]["time_s"]) == pytest.approx(0.08)


def test_seed_determinism_and_no_overwrite(tmp_path):
    for d in ("a", "b", "c"):
        seed = 5 if d != "c" else 6
        sim("--task", "cheetah-run", "--max-steps", "30", "--seed", seed, "--record",
            tmp_path / d)
    a, b, c = (load(glob.glob(str(tmp_path / d / "*.npz"))[0]) for d in "abc")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["observation"], c["observation"])
    # Two runs into one directory (within the same second, typically): 4 distinct files.
    for _ in range(2):
        sim("--task", "pendulum-swingup", "--episodes", "2", "--max-steps", "5", "--record",
            tmp_path / "same")
    names = os.listdir(tmp_path / "same")
    assert len(names) == 4 and all(n.endswith(".npz") for n in names)


def test_zero_policy_leaves_the_pole_down():
    p = sim("--task", "cartpole-swingup", "--policy", "zero", "--episodes", "2")
    assert all(r < 1.0 for r in returns_of(p.stdout))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_daemon():
    p = sim("--task", "cartpole-swingup", "--policy", "mpcd", "--connect",
            f"tcp://127.0.0.1:{free_port()}", "--timeout", "2000", check=False)
    assert p.returncode == 3
    assert "cannot reach mpcd" in p.stderr
    p = sim("--task", "cartpole-swingup", "--policy", "mpcd", "--connect", "bogus://x",
            check=False)
    assert p.returncode == 2


def test_record_dir_problems(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    p = sim("--task", "cartpole-swingup", "--record", blocker / "sub", check=False)
    assert p.returncode == 4 and "--record" in p.stderr
    p = sim("--task", "cartpole-swingup", "--csv", tmp_path / "no" / "dir.csv", check=False)
    assert p.returncode == 4 and "--csv" in p.stderr


def caught(pid, sig):
    """Whether process pid has a handler installed for sig (/proc/PID/status SigCgt)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def test_interrupt_exits_130_without_partial_episode(tmp_path):
    import signal
    import time
    # Real-time pacing makes the first (only) episode last 10 s: interrupt it.
    proc = subprocess.Popen([SIM, "--task", "cartpole-swingup", "--realtime", "--record",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    # A SIGINT before mpc-sim installs its handler would kill it (slow start under ASan on
    # a loaded machine): wait for the handler (Linux: SigCgt), then for the episode to run.
    deadline = time.monotonic() + 30
    while not caught(proc.pid, signal.SIGINT) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    assert os.listdir(tmp_path) == []


# --obs pixels ------------------------------------------------------------------------------

def can_render():
    """Whether mpc-sim can render here (an EGL display, a build with EGL and OpenGL)."""
    if not hasattr(can_render, "answer"):
        p = sim("--task", "pendulum-swingup", "--obs", "pixels", "--max-steps", "1", check=False)
        can_render.answer = p.returncode == 0
        can_render.why = p.stderr.strip()
    return can_render.answer


needs_rendering = pytest.mark.skipif("not can_render()",
                                     reason="mpc-sim cannot render here (no EGL display)")


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, w, h, maxval, rest = data.split(maxsplit=4)
    assert magic == b"P6" and maxval == b"255"
    w, h = int(w), int(h)
    assert len(rest) == w * h * 3
    return np.frombuffer(rest, np.uint8).reshape(h, w, 3)


def test_pixels_without_rendering_fails_clearly():
    if can_render():
        pytest.skip("this machine renders")
    p = sim("--task", "cartpole-swingup", "--obs", "pixels", check=False)
    assert p.returncode == 4
    assert "--obs pixels:" in p.stderr
    assert "EGL" in p.stderr or "without rendering" in p.stderr


@needs_rendering
@pytest.mark.parametrize("task", sorted(TASKS))
def test_pixels_record_every_task(tmp_path, task):
    """The image array: uint8 [T+1, 64, 64, 3], numpy reads it; the state, action and
    reward arrays are bit for bit those of a run without images."""
    obs_dim, act_dim, _ = TASKS[task]
    steps = 12
    p = sim("--task", task, "--seed", "3", "--max-steps", steps, "--obs", "pixels",
            "--record", tmp_path / "px")
    assert re.search(r"^rendered 13 frames of 64x64 from camera '(fixed|side)': [\d.]+ ms per "
                     r"frame \(EGL ", p.stdout, re.M), p.stdout
    sim("--task", task, "--seed", "3", "--max-steps", steps, "--record", tmp_path / "st")
    px = load(glob.glob(str(tmp_path / "px" / "*.npz"))[0], image=True)
    st = load(glob.glob(str(tmp_path / "st" / "*.npz"))[0])
    img = px["image"]
    assert img.dtype == np.uint8 and img.shape == (steps + 1, 64, 64, 3)
    assert img.flags["C_CONTIGUOUS"]
    for k in ("observation", "action", "reward"):
        assert px[k].tobytes() == st[k].tobytes(), k
    # Frames are not blank and the scene moves between some of them.
    assert all(frame.std() > 10 for frame in img)
    assert any(not np.array_equal(img[0], frame) for frame in img[1:])


@needs_rendering
def test_pixels_save_frames_and_size(tmp_path):
    """--save-frames: one PPM per observation, the same pixels as the recorded images,
    top row first (the sky above, the floor below); --image-size sets N."""
    p = sim("--task", "cartpole-swingup", "--episodes", "2", "--max-steps", "5", "--obs",
            "pixels", "--image-size", "32", "--record", tmp_path / "ep", "--save-frames",
            tmp_path / "frames")
    assert "frames of 32x32" in p.stdout
    files = sorted(glob.glob(str(tmp_path / "ep" / "*.npz")))
    assert len(files) == 2
    names = sorted(os.listdir(tmp_path / "frames"))
    assert len(names) == 2 * 6
    assert names[0] == "cartpole-swingup-e001-t0000.ppm"
    assert names[-1] == "cartpole-swingup-e002-t0005.ppm"
    for ep, path in enumerate(files, 1):
        img = load(path, image=True)["image"]
        assert img.shape == (6, 32, 32, 3)
        for t in range(6):
            frame = read_ppm(tmp_path / "frames" / f"cartpole-swingup-e{ep:03d}-t{t:04d}.ppm")
            np.testing.assert_array_equal(frame, img[t])
    # Top row first: the skybox's blue is at the top.
    top = img[0, 0].astype(int)
    assert np.all(top[:, 2] > top[:, 0] + 30)


@needs_rendering
def test_pixels_deterministic(tmp_path):
    for d in ("a", "b"):
        sim("--task", "cheetah-run", "--max-steps", "8", "--seed", "4", "--obs", "pixels",
            "--record", tmp_path / d)
    a, b = (load(glob.glob(str(tmp_path / d / "*.npz"))[0], image=True) for d in "ab")
    assert a["image"].tobytes() == b["image"].tobytes()


@needs_rendering
def test_trainer_reads_pixel_episodes(tmp_path):
    try:
        sys.path.insert(0, os.path.join(REPO, "model", "train"))
        from mpc_rssm.data import EpisodeBuffer
    except ImportError as e:  # torch missing
        pytest.skip(f"trainer not importable: {e}")
    sim("--task", "pendulum-swingup", "--max-steps", "10", "--obs", "pixels", "--record",
        tmp_path)
    buf = EpisodeBuffer(str(tmp_path))
    assert len(buf) == 1 and buf.obs_dim == 3 and buf.action_dim == 1


@needs_rendering
def test_pixels_with_mpcd(tmp_path):
    """--obs pixels --policy mpcd against the real mpcd serving a random 64x64x3 image
    model: every step is answered, and the images the daemon records are the ones
    mpc-sim rendered and recorded. Another image size or a vector model is refused."""
    sys.path.insert(0, os.path.join(REPO, "tests", "clients"))
    from mpcd_harness import PYTHON, Mpcd, find_mpcd
    if not find_mpcd():
        pytest.skip("mpcd is not built")
    model = tmp_path / "pixels.safetensors"
    r = subprocess.run([PYTHON, os.path.join(REPO, "model", "train", "make_model.py"),
                        "--image", "64x64x3", "--conv-depth", "8", "--action-dim", "1",
                        "--deter", "32", "--stoch", "8", "--hidden", "32", "--embed", "32",
                        "--task", "cartpole-swingup", "--control-period", "0.08",
                        "--out", str(model)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "No module named" in r.stderr:
        pytest.skip("make_model.py needs torch: " + r.stderr.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr
    planner = ["--workers", "1", "--threads", "1", "--candidates", "100", "--top", "10",
               "--iterations", "2", "--horizon", "8"]
    with Mpcd(model, deadline_ms=300,
              extra_args=planner + ["--record", str(tmp_path / "daemon")]) as d:
        p = sim("--task", "cartpole-swingup", "--obs", "pixels", "--policy", "mpcd",
                "--connect", d.address, "--max-steps", "10", "--seed", "2", "--record",
                tmp_path / "sim")
        assert re.search(r"^replies: 10,", p.stdout, re.M), p.stdout
        assert "fallbacks 0" in p.stdout and "cannot" not in p.stderr
        p = sim("--task", "cartpole-swingup", "--obs", "pixels", "--image-size", "32",
                "--policy", "mpcd", "--connect", d.address, "--max-steps", "2", check=False)
        assert p.returncode == 1
        assert "takes 64x64x3 images; this run renders 32x32x3 (--image-size 32)" in p.stderr
        p = sim("--task", "cartpole-swingup", "--policy", "mpcd", "--connect", d.address,
                "--max-steps", "2", check=False)
        assert p.returncode == 1 and "SIZE_MISMATCH" in p.stderr
        assert "64x64x3 images (12288 bytes)" in p.stderr
    ep = load(glob.glob(str(tmp_path / "sim" / "*.npz"))[0], image=True)
    assert ep["image"].shape == (11, 64, 64, 3) and ep["action"].shape == (10, 1)
    # The daemon's file: the 10 images it was sent (the last action got no reward: T = 9).
    files = glob.glob(str(tmp_path / "daemon" / "*.npz"))
    assert len(files) == 1, files
    dep = load(files[0], image=True)
    assert dep["observation"].shape == (10, 0) and dep["image"].shape == (10, 64, 64, 3)
    assert dep["image"].tobytes() == ep["image"][:10].tobytes()
    np.testing.assert_array_equal(dep["action"], ep["action"][:9])

    # A vector model (the shipped cartpole) with --obs pixels: refused, naming both.
    vector = os.path.join(REPO, "model", "zoo", "cartpole-swingup.safetensors")
    with Mpcd(vector, deadline_ms=300, extra_args=planner) as d:
        p = sim("--task", "cartpole-swingup", "--obs", "pixels", "--policy", "mpcd",
                "--connect", d.address, "--max-steps", "2", check=False)
        assert p.returncode == 1
        assert "takes 5 observation values and no image; --obs pixels needs a pixel model" \
            in p.stderr, p.stderr
        # --obs both: the state model drives, the camera is recorded beside the states
        p = sim("--task", "cartpole-swingup", "--obs", "both", "--policy", "mpcd",
                "--connect", d.address, "--max-steps", "3", "--seed", "2", "--record",
                tmp_path / "both")
        assert re.search(r"^replies: 3,", p.stdout, re.M), p.stdout
    both = load(glob.glob(str(tmp_path / "both" / "*.npz"))[0], image=True)
    assert both["image"].shape == (4, 64, 64, 3) and both["observation"].shape == (4, 5)
