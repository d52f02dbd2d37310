"""mpc-learn: PlaNet's data-collection loop, run against the real daemon and simulator.

    seed episodes (mpc-sim --policy random --record)
    repeat:
        train N steps on every episode so far          (Trainer, in this process)
        export the model, hot-swap it into mpcd         (first: mpcd --model; then mpcctl
                                                         reload, or SIGHUP when no mpcctl)
        collect one episode with the planner + noise    (mpc-sim --policy mpcd --explore)
        every K episodes: evaluate M episodes without noise

Everything lives in one output directory, and the loop resumes from it after a crash or a
stop: episodes/ (training data), eval/ (evaluation episodes), ckpt.pt (trainer), model
files, log.json (every collected episode and evaluation, wall time) and learning.png.
Returns are read back from the recorded episode files, so they do not depend on the
simulator's printed output.

Resuming is exact: `mpc-learn --resume DIR` after an interruption at any point (even
SIGKILL) continues as the uninterrupted run would have, with the same commands, as long
as the planner's iterations, not its deadline, end each plan (a deadline that cuts plans
makes collection depend on timing, resumed or not). The
checkpoint, written after each round of training, holds the model, the optimiser, the
trainer's random states and the loop's schedule: which episodes it was trained on (the
replay index). A round whose training is in the checkpoint is not trained again; an
episode recorded but not yet logged is taken as it is; a half-written one was never
renamed into place. Collection and evaluation are reproducible too: mpc-sim's --seed fixes
the simulator's draws and, through Hello.seed, the planner's.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from .data import EpisodeBuffer, episode_files, load_episode
from .plot import plot_learning, plot_losses
from .tasks import task_info
from .train import Trainer, TrainConfig, export, renormalise

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


class LoopError(RuntimeError):
    """A tool of the loop failed in a way that retrying will not fix."""


def crash_point(where, episodes):
    """Test hook: MPC_LEARN_CRASH=WHERE:N kills the loop with SIGKILL at WHERE once N
    episodes are reached, with mpcd and mpc-sim when the loop leads its process group (as
    the end of a session kills them all); tests/train/test_learn_resume.py interrupts a
    run at each stage this way."""
    if os.environ.get("MPC_LEARN_CRASH") == f"{where}:{episodes}":
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


def config_of(args):
    """The options a run is going with, as log.json keeps them for the next --resume."""
    return {k: v for k, v in vars(args).items() if k != "resume"}


# -- finding and running the tools -------------------------------------------------------
def find_tool(name, explicit=None, build_dirs=()):
    """An explicit path, else the first match under the given build dirs, else PATH."""
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise LoopError(f"{explicit}: not an executable")
        return explicit
    for b in build_dirs:
        for root, dirs, files in os.walk(b):
            dirs[:] = [d for d in dirs if not d.startswith(("meson-", "."))]
            if name in files and os.access(os.path.join(root, name), os.X_OK):
                return os.path.join(root, name)
    found = shutil.which(name)
    if found:
        return found
    return None


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def run_logged(cmd, log, timeout):
    """Runs a tool, appending its output to the loop's tool log; returns the exit code."""
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    try:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                              check=False).returncode
    except subprocess.TimeoutExpired:
        log.write(f"(timed out after {timeout} s)\n")
        return 124


class Daemon:
    """An mpcd this loop starts on free loopback ports and hot-swaps models into."""

    def __init__(self, mpcd, mpcctl, deadline_ms, log, extra_args=()):
        self.mpcd, self.mpcctl = mpcd, mpcctl
        self.deadline_ms = deadline_ms
        self.log = log
        self.extra_args = list(extra_args)
        self.proc = None
        self.port = None
        self.model_path = None

    @property
    def endpoint(self):
        return f"tcp://127.0.0.1:{self.port}"

    def start(self, model_path):
        self.stop()
        self.port = free_port()
        status_port = free_port()
        # Reload is an admin request: mpcctl sends it over a private Unix socket, where
        # running as the daemon's own user is the credential (no token to keep).
        self.sock_dir = tempfile.mkdtemp(prefix="mpc-learn-")
        self.admin_endpoint = f"unix:{self.sock_dir}/mpcd.sock"
        cmd = [self.mpcd, "--model", model_path, "--listen", self.endpoint,
               "--listen", self.admin_endpoint,
               "--model-dir", os.path.dirname(os.path.abspath(model_path)),
               "--status-listen", f"127.0.0.1:{status_port}",
               "--deadline-ms", str(self.deadline_ms)] + self.extra_args
        self.log.write(f"$ {' '.join(cmd)} &\n")
        self.log.flush()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.status_port = status_port
        self.model_path = model_path
        if not wait_port(self.port, self.proc):
            self.stop()
            raise LoopError(f"mpcd did not come up on {self.endpoint} (see the tool log)")

    def status(self):
        """The daemon's /status JSON (planner settings for the model card), or None."""
        try:
            import urllib.request
            with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/status",
                                        timeout=2) as r:
                return json.loads(r.read().decode())
        except (OSError, ValueError):
            return None

    def reload(self, model_path):
        """Hot-swaps the model; restarts the daemon if that fails or it has died."""
        if self.proc is None or self.proc.poll() is not None:
            self.start(model_path)
            return "start"
        if self.mpcctl:
            rc = run_logged([self.mpcctl, "reload", os.path.abspath(model_path),
                             "--connect", self.admin_endpoint], self.log, timeout=60)
            if rc == 0:
                self.model_path = model_path
                return "mpcctl"
        elif model_path == self.model_path:
            self.proc.send_signal(signal.SIGHUP)  # re-reads the same (atomically replaced) path
            time.sleep(0.5)
            return "sighup"
        self.start(model_path)
        return "restart"

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "sock_dir", None):
            shutil.rmtree(self.sock_dir, ignore_errors=True)
            self.sock_dir = None


# -- the loop ----------------------------------------------------------------------------
class Learner:
    def __init__(self, args, argv=None):
        self.args = args
        self.argv = sys.argv[1:] if argv is None else argv
        self.out = os.path.abspath(args.out)
        self.ep_dir = os.path.join(self.out, "episodes")
        self.eval_dir = os.path.join(self.out, "eval")
        self.ckpt = os.path.join(self.out, "ckpt.pt")
        self.model_path = os.path.join(self.out, "model.safetensors")
        self.best_path = os.path.join(self.out, "best.safetensors")
        self.log_path = os.path.join(self.out, "log.json")
        os.makedirs(self.ep_dir, exist_ok=True)
        os.makedirs(self.eval_dir, exist_ok=True)
        self.toollog = open(os.path.join(self.out, "tools.log"), "a")
        builds = [os.path.join(REPO_ROOT, d) for d in sorted(os.listdir(REPO_ROOT))
                  if d.startswith("build")] if args.build_dir is None else [args.build_dir]
        self.sim = find_tool("mpc-sim", args.mpc_sim, builds)
        self.mpcd = find_tool("mpcd", args.mpcd, builds)
        self.mpcctl = find_tool("mpcctl", args.mpcctl, builds)
        if not self.sim or not self.mpcd:
            raise LoopError("mpc-sim and mpcd are needed: build them or pass --mpc-sim/--mpcd")
        self.info = task_info(args.task)
        self.log = self._load_log()
        self.t0 = time.monotonic()
        self.wall0 = self.log.get("wall_s", 0.0)
        # Admission control off: this daemon serves the loop's one robot, and on a machine
        # busy training its calibration would refuse even that one.
        self.daemon = Daemon(self.mpcd, self.mpcctl, args.deadline_ms, self.toollog,
                             ["--min-iterations=0"] + (args.mpcd_arg or []))

    def say(self, msg):
        stamp = time.strftime("%H:%M:%S")
        print(f"[{stamp}] {msg}", flush=True)

    # -- log ---------------------------------------------------------------------------
    def _load_log(self):
        if os.path.exists(self.log_path):
            if not self.args.resume:
                raise LoopError(f"{self.log_path} exists: pass --resume to continue that run "
                                "or pick another --out")
            with open(self.log_path) as f:
                log = json.load(f)
            # every resume may change options (e.g. --free-nats): the card lists them all,
            # and the next `--resume DIR` starts from the options in force now
            log.setdefault("resumed_with", []).append(
                {"command": sys.argv, "episodes_before": len(log["episodes"])})
            log["config"] = config_of(self.args)
            return log
        return {"task": self.args.task, "command": sys.argv, "config": config_of(self.args),
                "episodes": [], "evals": [], "wall_s": 0.0}

    def wall(self):
        return self.wall0 + time.monotonic() - self.t0

    def save_log(self):
        self.log["wall_s"] = self.wall()
        tmp = self.log_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.log, f, indent=1)
        os.replace(tmp, self.log_path)
        try:
            plot_learning(self.log, os.path.join(self.out, "learning.png"),
                          title=f"{self.args.task}: mpc-learn")
        except Exception as e:  # a plot must never stop the run
            self.say(f"plot failed: {e}")

    def env_steps(self):
        return sum(e["steps"] for e in self.log["episodes"])

    def register_new_episodes(self):
        """Adds every episode file not in the log yet (also heals a crash mid-iteration):
        the first --seed-episodes are the random ones, the rest the planner's."""
        known = {e["file"] for e in self.log["episodes"]}
        for p in episode_files(self.ep_dir):
            name = os.path.basename(p)
            if name in known:
                continue
            ep = load_episode(p)
            kind = "random" if len(self.log["episodes"]) < self.args.seed_episodes else "planner"
            steps = int(ep["action"].shape[0])
            ret = float(ep["reward"].sum())
            self.log["episodes"].append({
                "episode": len(self.log["episodes"]) + 1, "file": name, "kind": kind,
                "steps": steps, "env_steps": self.env_steps() + steps, "return": ret,
                "wall_s": round(self.wall(), 1)})
            self.say(f"episode {len(self.log['episodes'])} ({kind}): return {ret:.1f}")

    # -- tools ---------------------------------------------------------------------------
    def sim_cmd(self, policy, episodes, record, seed, explore=None):
        cmd = [self.sim, "--task", self.args.task, "--policy", policy, "--episodes",
               str(episodes), "--record", record, "--seed", str(seed)]
        if policy == "mpcd":
            cmd += ["--connect", self.daemon.endpoint, "--deadline-ms",
                    str(self.args.deadline_ms)]
        if explore is not None:
            cmd += ["--explore", str(explore)]
        return cmd + (self.args.sim_arg or [])

    def run_sim(self, cmd, episodes):
        timeout = 120 + 60 * episodes
        for attempt in range(2):
            rc = run_logged(cmd, self.toollog, timeout)
            if rc == 0:
                return
            self.say(f"mpc-sim failed (exit {rc}), attempt {attempt + 1}; see tools.log")
            if "mpcd" in cmd:
                self.daemon.start(self.model_path)
        raise LoopError(f"mpc-sim keeps failing: {' '.join(cmd)}")

    # -- phases --------------------------------------------------------------------------
    def seed(self):
        have = len(episode_files(self.ep_dir))
        if have < self.args.seed_episodes:
            self.say(f"collecting {self.args.seed_episodes - have} random seed episodes")
        # one per mpc-sim run, each with its own seed: a resume collects the same ones
        for i in range(have, self.args.seed_episodes):
            self.run_sim(self.sim_cmd("random", 1, self.ep_dir, self.args.seed * 100000 + i),
                         1)
            crash_point("seeded", i + 1)
        self.register_new_episodes()
        self.save_log()

    def trainer(self, buffer):
        a = self.args
        if os.path.exists(self.ckpt):
            from .train_cli import resume_overrides
            t = Trainer.load(self.ckpt, resume_overrides(build_parser, self.argv))
            self.say(f"resumed trainer at step {t.step}")
            missing = [f for f in (t.loop or {}).get("replay", [])
                       if not os.path.exists(os.path.join(self.ep_dir, f))]
            if missing:
                raise LoopError(f"{len(missing)} episode(s) the checkpoint was trained on are "
                                f"missing from {self.ep_dir}, e.g. {missing[0]}")
            return t
        from .train_cli import model_config_from, train_config_from
        t = Trainer(model_config_from(a, buffer),
                    train_config_from(a), self.info["action_low"], self.info["action_high"])
        renormalise(t.model, *buffer.obs_stats())
        return t

    def export(self, trainer, buffer, path):
        from .train_cli import export_metadata
        last_eval = self.log["evals"][-1]["mean"] if self.log["evals"] else None
        extra = {"collected_episodes": len(self.log["episodes"]),
                 "env_steps": self.env_steps(), "wall_time_s": round(self.wall(), 1),
                 "planner_deadline_ms": self.args.deadline_ms,
                 "trainer_command": " ".join(self.log.get("command", []))}
        if last_eval is not None:
            extra["eval_return"] = round(last_eval, 2)
        export(trainer, path, export_metadata(trainer, buffer, self.args.task, self.info, extra))

    def evaluate(self, trainer, buffer):
        a = self.args
        n = len(self.log["episodes"])
        d = os.path.join(self.eval_dir, f"after-{n:04d}")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        self.run_sim(self.sim_cmd("mpcd", a.eval_episodes, d, 10**9 + n, explore=0.0),
                     a.eval_episodes)
        crash_point("evaluated", n)
        rets = [float(load_episode(p)["reward"].sum()) for p in episode_files(d)]
        ev = {"episode": n, "env_steps": self.env_steps(), "train_step": trainer.step,
              "returns": rets, "mean": float(np.mean(rets)), "std": float(np.std(rets)),
              "wall_s": round(self.wall(), 1)}
        self.log["evals"].append(ev)
        self.say(f"eval after {n} episodes: {ev['mean']:.1f} +- {ev['std']:.1f} {rets}")
        best = max(e["mean"] for e in self.log["evals"])
        if ev["mean"] >= best:
            shutil.copyfile(self.model_path, self.best_path + ".tmp")
            os.replace(self.best_path + ".tmp", self.best_path)
            self.log["best"] = ev
        self.save_log()

    def drop_partial_episodes(self):
        """mpc-sim writes an episode under a hidden temporary name and renames it when
        whole: one killed mid-write leaves only such a file."""
        for d in (self.ep_dir, self.eval_dir):
            for root, _, files in os.walk(d):
                for f in files:
                    if f.startswith("."):
                        os.unlink(os.path.join(root, f))

    def train_round(self, trainer, buffer):
        """Trains on every episode so far and checkpoints, unless the checkpoint already
        holds this round (an interruption after it was written)."""
        a = self.args
        replay = [os.path.basename(p) for p in buffer.paths]
        if trainer.loop is not None and trainer.loop.get("replay") == replay:
            self.say(f"round of {len(replay)} episodes already trained (step {trainer.step})")
            return
        if a.renormalise:
            renormalise(trainer.model, *buffer.obs_stats())
        steps = a.initial_steps if trainer.step == 0 else a.train_steps
        losses = trainer.fit(buffer, steps, progress=not a.no_progress,
                             desc=f"train ep {len(buffer)}")
        crash_point("trained", len(replay))
        trainer.loop = {"replay": replay, "train_steps": steps}
        trainer.save(self.ckpt, trainer.loop)
        self.say(f"step {trainer.step}: " +
                 " ".join(f"{k} {v:.3f}" for k, v in losses.items()))

    def run(self):
        a = self.args
        torch.set_num_threads(a.threads)
        self.drop_partial_episodes()
        self.save_log()  # from the start: an interrupted run can always be resumed
        self.seed()
        buffer = EpisodeBuffer(self.ep_dir)
        trainer = self.trainer(buffer)
        try:
            while len(self.log["episodes"]) < a.episodes:
                if a.max_wall_s and self.wall() > a.max_wall_s:
                    self.say("wall-time budget spent")
                    break
                buffer.refresh()
                self.train_round(trainer, buffer)
                crash_point("checkpointed", len(buffer))
                self.export(trainer, buffer, self.model_path)
                how = self.daemon.reload(self.model_path)
                if how in ("start", "restart") and "daemon_status" not in self.log:
                    st = self.daemon.status()
                    if st is not None:
                        self.log["daemon_status"] = st
                n = len(self.log["episodes"])
                if a.eval_every and (n - a.seed_episodes) % a.eval_every == 0 and \
                        not any(e["episode"] == n for e in self.log["evals"]):
                    self.evaluate(trainer, buffer)
                self.run_sim(self.sim_cmd("mpcd", 1, self.ep_dir, a.seed * 100000 + n,
                                          explore=a.explore), 1)
                crash_point("collected", n + 1)
                self.register_new_episodes()
                self.save_log()
                plot_losses(trainer.history, os.path.join(self.out, "losses.png"),
                            title=f"{a.task}: RSSM training")
            if a.final_eval_episodes:
                self.final_eval(trainer, buffer)
        finally:
            self.daemon.stop()
            self.save_log()
        return 0

    def final_eval(self, trainer, buffer):
        """Evaluates the best model (by periodic eval) over more episodes for the card."""
        a = self.args
        path = self.best_path if os.path.exists(self.best_path) else self.model_path
        if path == self.model_path:
            self.daemon.reload(path)
        else:
            self.daemon.start(path)
        d = os.path.join(self.eval_dir, "final")
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        self.run_sim(self.sim_cmd("mpcd", a.final_eval_episodes, d, 2 * 10**9, explore=0.0),
                     a.final_eval_episodes)
        rets = [float(load_episode(p)["reward"].sum()) for p in episode_files(d)]
        self.log["final_eval"] = {"model": os.path.basename(path), "returns": rets,
                                  "mean": float(np.mean(rets)), "std": float(np.std(rets)),
                                  "deadline_ms": a.deadline_ms}
        self.say(f"final eval ({path}): {np.mean(rets):.1f} +- {np.std(rets):.1f}")


DESCRIPTION = """\
PlaNet's learning loop against the real tools: random seed episodes from mpc-sim, then
repeatedly train the RSSM, export it, hot-swap it into an mpcd this command starts on a free
loopback port, collect an episode with the planner plus exploration noise, and evaluate
without noise every few episodes. All state lives in --out; --resume continues a stopped run.
Writes OUT/log.json (episodes, evaluations, wall time), OUT/learning.png (return vs
episodes and vs environment steps), OUT/losses.png, OUT/model.safetensors (latest) and
OUT/best.safetensors (best evaluation).
"""

EPILOG = """\
example (the shipped cartpole model's recipe is in model/zoo/cartpole-swingup.md):
  mpc-learn --task cartpole-swingup --out runs/cartpole --episodes 100

exit status: 0 done, 1 a tool kept failing, 2 bad arguments.
"""


def build_parser():
    import argparse
    from .train_cli import add_model_args, add_train_args
    p = argparse.ArgumentParser(prog="mpc-learn", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", help="mpc-sim task, e.g. cartpole-swingup (required for a "
                   "new run)")
    p.add_argument("--out", metavar="DIR", help="run directory (required for a new run)")
    p.add_argument("--resume", nargs="?", const=True, metavar="DIR",
                   help="continue the run in DIR (or --out) exactly where it stopped, with "
                        "the options it was going with; options given here replace those "
                        "(e.g. --episodes 300 to go on longer, --free-nats 1)")
    p.add_argument("--episodes", type=int, default=100,
                   help="stop when this many episodes (seed included) are collected (100)")
    p.add_argument("--seed-episodes", type=int, default=5, help="random episodes first (5)")
    p.add_argument("--train-steps", type=int, default=100,
                   help="optimiser steps per collected episode (100)")
    p.add_argument("--initial-steps", type=int, default=100,
                   help="optimiser steps on the seed episodes before the first export (100)")
    p.add_argument("--explore", type=float, default=0.3, help="exploration noise std (0.3)")
    p.add_argument("--eval-every", type=int, default=5, metavar="N",
                   help="evaluate every N collected episodes, 0 = never (5)")
    p.add_argument("--eval-episodes", type=int, default=3, metavar="M", help="(3)")
    p.add_argument("--final-eval-episodes", type=int, default=10,
                   help="episodes for the closing evaluation of the best model (10)")
    p.add_argument("--deadline-ms", type=float, default=40.0,
                   help="planner deadline per control step (40)")
    p.add_argument("--max-wall-s", type=float, default=0.0,
                   help="stop collecting after this much wall time (0 = no limit)")
    p.add_argument("--renormalise", action="store_true",
                   help="recompute observation statistics before each round (function-"
                        "preserving: the first/last layers absorb the change)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--build-dir", help="where to look for mpcd, mpc-sim, mpcctl "
                   "(default: every build* dir of the checkout, then PATH)")
    p.add_argument("--mpcd", help="path of mpcd")
    p.add_argument("--mpc-sim", help="path of mpc-sim")
    p.add_argument("--mpcctl", help="path of mpcctl (without it: SIGHUP reloads)")
    p.add_argument("--mpcd-arg", action="append", metavar="ARG",
                   help="extra argument for mpcd (repeatable), e.g. --mpcd-arg=--threads=2")
    p.add_argument("--sim-arg", action="append", metavar="ARG",
                   help="extra argument for mpc-sim (repeatable)")
    add_model_args(p)
    add_train_args(p)
    return p


def parse_args(argv):
    """The command line; with --resume, the run's saved options under the ones given."""
    p = build_parser()
    args = p.parse_args(argv)
    if not args.resume:
        if not args.task or not args.out:
            p.error("a new run needs --task and --out (or --resume DIR)")
        return args
    out = args.resume if isinstance(args.resume, str) else args.out
    if not out:
        p.error("--resume needs the run directory: --resume DIR")
    if args.out and os.path.abspath(args.out) != os.path.abspath(out):
        p.error(f"--out {args.out} and --resume {out} name different runs")
    try:
        with open(os.path.join(out, "log.json")) as f:
            saved = json.load(f).get("config", {})
    except (OSError, ValueError) as e:
        p.error(f"no run to resume in {out}: {e}")
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    given = vars(probe.parse_args(argv))
    merged = vars(args)
    for k, v in saved.items():
        if k in merged and k not in given:
            merged[k] = v
    if args.task and saved.get("task") and args.task != saved["task"]:
        p.error(f"the run in {out} is {saved['task']}, not {args.task}")
    merged.update(out=out, resume=True)
    return argparse.Namespace(**merged)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.episodes < args.seed_episodes or args.seed_episodes < 1:
        print("mpc-learn: need 1 <= --seed-episodes <= --episodes", file=sys.stderr)
        return 2
    try:
        return Learner(args, argv).run()
    except LoopError as e:
        print(f"mpc-learn: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mpc-learn: interrupted; continue with --resume", file=sys.stderr)
        return 130
