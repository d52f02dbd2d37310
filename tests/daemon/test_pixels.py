"""test_pixels.py: camera robots on the real mpcd (raw frames, the Python client, HTTP).

A random-initialised image model (model/train/make_model.py --image 64x64x3, written into
the test's tmp dir) served on loopback: the Welcome's image fields, an image Step answered
with an Action and its plan, every Step or Hello of the wrong size or kind refused with
SIZE_MISMATCH naming both shapes while the session stays usable, a vector model (the
shipped cartpole) refusing images, hot-swaps between a vector and an image model (and
between image shapes) refused and one between two models of the same image shape
re-syncing the belief from the images, resume with an image history (Welcome.
resumed_steps), /status's image shape, `mpcd --record` of a pixel session (images
numpy loads, observation [T+1, 0], refused by the trainer's loader by name), raw frames
carrying images (oversized, wrong wire type, mutated: one reply each, the stream and the
session survive), a 1-channel model, and a max-frame too small for the images.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cartpole_raw import MODEL, REPO, Raw, http, observation, pb  # noqa: E402
from mpcd_harness import PYTHON, Mpcd, find_mpcd  # noqa: E402

import mpc_client  # noqa: E402

pytestmark = pytest.mark.skipif(not find_mpcd(), reason="mpcd is not built")

PLANNER = ["--workers", "1", "--threads", "1", "--candidates", "100", "--top", "10",
           "--iterations", "2", "--horizon", "8", "--history", "16"]
H, W, C = 64, 64, 3
NBYTES = H * W * C
SHAPE = "64x64x3 images (12288 bytes)"


def make_image_model(path, image="64x64x3", seed=1, task="pixel-test"):
    cmd = [PYTHON, os.path.join(REPO, "model", "train", "make_model.py"), "--image", image,
           "--conv-depth", "8", "--action-dim", "1", "--deter", "32", "--stoch", "8",
           "--hidden", "32", "--embed", "32", "--seed", str(seed), "--task", task,
           "--out", str(path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("pixel-models")
    return {"rgb": make_image_model(d / "rgb.safetensors", seed=1),
            "rgb2": make_image_model(d / "rgb2.safetensors", seed=2),
            "grey": make_image_model(d / "grey.safetensors", image="64x64x1", seed=3),
            "dir": str(d)}


def image(t, shape=(H, W, C)):
    """A deterministic test pattern for step t (uint8, HWC)."""
    y, x, c = np.indices(shape)
    return ((x * 4 + y * 2 + c * 60 + t * 17) % 256).astype(np.uint8)


def img_bytes(t):
    return image(t).tobytes()


def code(rep):
    assert rep.WhichOneof("body") == "error", rep
    return pb.Error.Code.Name(rep.error.code)


def refused(rep, *words):
    assert code(rep) == "SIZE_MISMATCH", rep
    for w in words:
        assert w in rep.error.message, rep.error.message
    return rep.error.message


def pixel_step(c, t, reset=None, **kw):
    return c.call(step=pb.Step(seq=t, image=img_bytes(t), reward=0.1,
                               reset=t == 0 if reset is None else reset, **kw))


def action(rep, seq):
    assert rep.WhichOneof("body") == "action", rep
    assert rep.action.seq == seq and len(rep.action.action) == 1
    return rep.action


def test_welcome_and_image_steps(models):
    d = Mpcd(models["rgb"], deadline_ms=300, extra_args=PLANNER).start()
    try:
        c = Raw(d)
        w = c.hello().welcome
        assert (w.image_height, w.image_width, w.image_channels) == (H, W, C)
        assert w.observation_size == 0 and w.action_size == 1
        for t in range(4):
            a = action(pixel_step(c, t), t)
            assert len(a.plan) == 8 and a.iterations >= 1 and not a.fallback
            assert all(-1.0 <= x <= 1.0 for x in a.plan)
        status, body = http(d, "/status")
        doc = json.loads(body)
        assert status == 200 and doc["model"]["obs_type"] == "image"
        im = doc["model"]["image"]
        assert (im["height"], im["width"], im["channels"], im["bytes"]) == (H, W, C, NBYTES)
        c.close()
    finally:
        assert d.stop() == 0, d.log_text()


def test_wrong_sizes_and_kinds_refused(models):
    d = Mpcd(models["rgb"], deadline_ms=300, extra_args=PLANNER).start()
    try:
        c = Raw(d)
        # A Hello that declares an observation vector names the model's image shape.
        refused(c.call(hello=pb.Hello(observation_size=5)), "observation_size 5", SHAPE)
        refused(c.call(hello=pb.Hello(observation_size=NBYTES)), SHAPE)
        c.hello()
        action(pixel_step(c, 0), 0)
        cases = [
            (dict(image=b"x" * 100), "an image of 100 bytes and 0 observation values"),
            (dict(image=b"x" * (NBYTES + 1)), "an image of 12289 bytes"),
            (dict(image=b"x" * (NBYTES - 1)), "an image of 12287 bytes"),
            (dict(), "an image of 0 bytes and 0 observation values"),
            (dict(observation=observation(1)), "an image of 0 bytes and 5 observation values"),
            (dict(image=img_bytes(1), observation=[0.5]),
             "an image of 12288 bytes and 1 observation values"),
        ]
        for t, (fields, says) in enumerate(cases, start=1):
            msg = refused(c.call(step=pb.Step(seq=t, reward=0.1, **fields)), says)
            assert msg.startswith("the model takes %s and no observation vector; the Step "
                                  "has " % SHAPE), msg
            # The session stays usable: the next good step goes on with the episode.
            action(pixel_step(c, 100 + t, reset=False), 100 + t)
        c.close()
        # The Python client refuses the same before anything is sent.
        with mpc_client.Client(d.address, timeout=30) as cl:
            w = cl.hello("pytest/pixels")
            assert (w.image_height, w.image_width, w.image_channels) == (H, W, C)
            for bad in (np.zeros((H, W, 1), np.uint8), np.zeros((H, W, C), np.float32),
                        b"x" * 100):
                with pytest.raises(ValueError):
                    cl.step(image=bad)
            with pytest.raises(ValueError, match="images"):
                cl.step(observation(0))
            a = cl.step(image=image(0), seq=7, reset=True)
            assert a.seq == 7 and len(a.plan) == 8
            a = cl.step(image=img_bytes(1), seq=8, reward=0.5)
            hist = cl.history
            assert len(hist) == 2 and all(len(e) == 4 and e[0] == [] for e in hist)
            assert hist[0][3] == img_bytes(0) and hist[1][3] == img_bytes(1)
    finally:
        assert d.stop() == 0, d.log_text()


def test_vector_model_refuses_images():
    d = Mpcd(MODEL, deadline_ms=300, extra_args=PLANNER).start()
    try:
        c = Raw(d)
        w = c.hello().welcome
        assert w.observation_size == 5 and w.image_channels == 0 and w.image_height == 0
        action(c.step(0), 0)
        for t, fields in enumerate([dict(image=img_bytes(0)),
                                    dict(image=img_bytes(0), observation=observation(1))], 1):
            refused(c.call(step=pb.Step(seq=t, reward=0.1, **fields)),
                    "the model takes 5 observation values and no image; the Step has an "
                    "image of 12288 bytes")
            action(c.step(t, reset=False), t)
        # History entries with an image are refused the same way.
        h = pb.HistoryStep(observation=observation(0), action=[0.5], image=b"x")
        refused(c.call(hello=pb.Hello(history=[h])), "history[0] has an image of 1 bytes")
        with mpc_client.Client(d.address, timeout=30) as cl:
            cl.hello("pytest/vector")
            with pytest.raises(ValueError, match="no image"):
                cl.step(observation(0), image=img_bytes(0))
        c.close()
    finally:
        assert d.stop() == 0, d.log_text()


def admin(d):
    c = mpc_client.Client(d.address, timeout=60)
    c.hello("pytest/admin", auth_token=d.admin_token)
    return c


def test_hot_swaps_between_kinds_refused(models, tmp_path):
    vector = str(tmp_path / "cartpole.safetensors")
    shutil.copy(MODEL, vector)
    for name in ("rgb", "rgb2", "grey"):
        shutil.copy(models[name], tmp_path / os.path.basename(models[name]))
    rgb, rgb2, grey = (str(tmp_path / n) for n in
                       ("rgb.safetensors", "rgb2.safetensors", "grey.safetensors"))
    # An image model serving: a vector model and another image shape are refused.
    d = Mpcd(rgb, deadline_ms=300, extra_args=PLANNER + ["--model-dir", str(tmp_path)]).start()
    try:
        c = Raw(d)
        c.hello()
        for t in range(3):
            action(pixel_step(c, t), t)
        with admin(d) as a:
            with pytest.raises(mpc_client.ReloadError) as e:
                a.reload(vector)
            assert "observes 5 observation values; the serving model observes " + SHAPE \
                in str(e.value), str(e.value)
            with pytest.raises(mpc_client.ReloadError) as e:
                a.reload(grey)
            assert "64x64x1 images (4096 bytes)" in str(e.value) and SHAPE in str(e.value)
            st = a.status()
            assert st.model_version == 1 and st.reloads_failed == 2
            # The same image shape swaps, and the session's belief is replayed from its
            # images into the new model (the step after the swap says version 2).
            a.reload(rgb2)
        a3 = action(pixel_step(c, 3, reset=False), 3)
        assert a3.model_version == 2 and len(a3.plan) == 8
        c.close()
    finally:
        assert d.stop() == 0, d.log_text()
    # A vector model serving: an image model is refused.
    d = Mpcd(vector, deadline_ms=300, extra_args=PLANNER + ["--model-dir", str(tmp_path)])
    d.start()
    try:
        c = Raw(d)
        c.hello()
        action(c.step(0), 0)
        with admin(d) as a:
            with pytest.raises(mpc_client.ReloadError) as e:
                a.reload(rgb)
            assert "observes %s; the serving model observes 5 observation values" % SHAPE \
                in str(e.value), str(e.value)
            assert a.status().model_version == 1
        action(c.step(1, reset=False), 1)
        c.close()
    finally:
        assert d.stop() == 0, d.log_text()


def test_resume_with_an_image_history(models):
    d = Mpcd(models["rgb"], deadline_ms=300, extra_args=PLANNER).start()
    try:
        c = Raw(d)
        hist = [pb.HistoryStep(image=img_bytes(t), action=[0.05 * t], reward=0.1)
                for t in range(20)]
        w = c.hello(history=hist).welcome
        assert w.resumed_steps == 16  # the newest --history entries
        a = action(pixel_step(c, 20, reset=False), 20)
        assert len(a.plan) == 8
        # Entries of the wrong size or kind are refused, naming the entry and both shapes.
        for bad, says in [(pb.HistoryStep(image=b"x" * 10, action=[0.0]),
                           "history[1] has an image of 10 bytes"),
                          (pb.HistoryStep(observation=observation(0), action=[0.0]),
                           "history[1] has an image of 0 bytes and 5 observation values"),
                          (pb.HistoryStep(image=img_bytes(0), action=[0.0, 0.0]),
                           "history[1] has 2 action values")]:
            refused(c.call(hello=pb.Hello(history=[hist[0], bad])), says)
        c.close()
        # The Python client's history carries the images into a resuming Hello.
        with mpc_client.Client(d.address, timeout=30) as cl:
            cl.hello("pytest/pixels")
            for t in range(3):
                cl.step(image=image(t), seq=t, reset=t == 0)
            msg = cl._hello_message(resume=True)
            assert [h.image for h in msg.history] == [img_bytes(t) for t in range(3)]
        c = Raw(d)
        assert c.call(hello=msg).welcome.resumed_steps == 3
        action(pixel_step(c, 3, reset=False), 3)
        c.close()
    finally:
        assert d.stop() == 0, d.log_text()


def test_record_pixel_sessions(models, tmp_path):
    rec = tmp_path / "rec"
    d = Mpcd(models["rgb"], deadline_ms=300,
             extra_args=PLANNER + ["--record", str(rec)]).start()
    try:
        c = Raw(d)
        c.hello()
        for t in range(6):
            action(pixel_step(c, t), t)
        c.call(reset=pb.Reset())  # the episode ends: its file is written
        c.close()
    finally:
        assert d.stop() == 0, d.log_text()
    files = glob.glob(str(rec / "*.npz"))
    assert len(files) == 1, files
    with np.load(files[0], allow_pickle=False) as f:
        assert sorted(f.files) == ["action", "image", "observation", "reward"]
        img, obs, act, rew = f["image"], f["observation"], f["action"], f["reward"]
    # 6 steps: o_0..o_5, and the last action has no reward yet: T = 5.
    assert img.dtype == np.uint8 and img.shape == (6, H, W, C)
    assert obs.dtype == np.float32 and obs.shape == (6, 0)
    assert act.shape == (5, 1) and rew.shape == (5,)
    for t in range(6):
        assert np.array_equal(img[t], image(t)), t
    sys.path.insert(0, os.path.join(REPO, "model", "train"))
    try:
        from mpc_rssm import data
    except ImportError as e:  # torch missing: the loader cannot be imported at all
        pytest.skip("mpc_rssm: %s" % e)
    with pytest.raises(data.EpisodeError, match="pixel episode"):
        data.load_episode(files[0])


def test_grey_model_steps(models):
    d = Mpcd(models["grey"], deadline_ms=300, extra_args=PLANNER).start()
    try:
        c = Raw(d)
        w = c.hello().welcome
        assert (w.image_height, w.image_width, w.image_channels) == (64, 64, 1)
        grey = image(0, (64, 64, 1)).tobytes()
        a = action(c.call(step=pb.Step(seq=0, image=grey, reset=True)), 0)
        assert len(a.plan) == 8
        refused(c.call(step=pb.Step(seq=1, image=img_bytes(1))),
                "64x64x1 images (4096 bytes)", "an image of 12288 bytes")
        c.close()
    finally:
        assert d.stop() == 0, d.log_text()


def test_raw_image_frames(models):
    """Frames carrying images, well formed or not: each well-framed one gets exactly one
    reply in order, none breaks the stream, and the session goes on."""
    import random
    d = Mpcd(models["rgb"], deadline_ms=300, extra_args=PLANNER).start()
    try:
        c = Raw(d)
        c.hello()
        action(pixel_step(c, 0), 0)
        # An image far larger than the model's (still within max-frame): SIZE_MISMATCH.
        refused(c.call(step=pb.Step(seq=1, image=b"\x7f" * 600000)),
                "an image of 600000 bytes", SHAPE)
        # Field 9 (image) with the wrong wire type (a varint): not a Step.
        c.s.sendall(mpc_client.encode_varint(6) + bytes([0x08, 0x05, 0x1a, 0x02, 0x48, 0x01]))
        rep = c.read()
        assert rep.id == 5 and rep.WhichOneof("body") == "error", rep
        # Mutated image Steps and Hellos: bytes flipped, lengths cut short.
        rng = random.Random(9)
        seeds = [pb.Request(id=7, step=pb.Step(seq=7, image=img_bytes(7), reward=0.5)),
                 pb.Request(id=7, hello=pb.Hello(history=[
                     pb.HistoryStep(image=img_bytes(1)[:64], action=[0.0])]))]
        seeds = [m.SerializeToString() for m in seeds]
        n = 120
        for i in range(n):
            payload = bytearray(seeds[i % 2])
            for _ in range(rng.randrange(1, 4)):
                payload[rng.randrange(min(len(payload), 40))] = rng.randrange(256)
            if rng.random() < 0.3:
                payload = payload[:rng.randrange(len(payload))]
            c.s.sendall(mpc_client.encode_varint(len(payload)) + bytes(payload))
        replies = [c.read() for _ in range(n)]
        assert all(r is not None for r in replies)
        # A mutated Hello may have opened a new session (of the same model): say Hello
        # again, and the connection serves image steps as before.
        c.hello()
        action(pixel_step(c, 0), 0)
        c.close()
        assert d.alive()
    finally:
        assert d.stop() == 0, d.log_text()


def test_max_frame_too_small_for_the_images(models):
    """A max-frame that cannot hold the model's image is worth a warning at load; such a
    Step is then FRAME_TOO_LARGE (and the stream closed), like any frame over the cap."""
    d = Mpcd(models["rgb"], deadline_ms=300,
             extra_args=PLANNER + ["--max-frame", "8192"]).start()
    try:
        assert "raise max-frame to at least 13312" in d.log_text(), d.log_text()
        c = Raw(d)
        c.hello()
        c.send(step=pb.Step(seq=0, image=img_bytes(0), reset=True))
        assert code(c.read()) == "FRAME_TOO_LARGE"
        assert c.read() is None
        c.close()
    finally:
        assert d.stop() == 0, d.log_text()


def test_resume_history_fits_max_frame(models):
    """A pixel model's Welcome.history_steps is what a resuming Hello can carry within
    max-frame, so a client never builds a Hello the daemon must refuse as too large."""
    d = Mpcd(models["rgb"], deadline_ms=300,
             extra_args=PLANNER + ["--max-frame", "65536"]).start()
    try:
        c = Raw(d)
        w = c.hello().welcome
        assert w.history_steps == (65536 - 1024) // (NBYTES + 4 * 1 + 16) < 16, w
        c.close()
        c = Raw(d)
        hist = [pb.HistoryStep(image=img_bytes(t), action=[0.0], reward=0.1)
                for t in range(w.history_steps)]
        assert c.hello(history=hist).welcome.resumed_steps == w.history_steps
        action(pixel_step(c, w.history_steps, reset=False), w.history_steps)
        c.close()
    finally:
        assert d.stop() == 0, d.log_text()
