"""The model zoo (model/zoo): evaluate each shipped model as it is served, write the index.

    /usr/bin/python3 -m mpc_rssm.zoo eval [--zoo DIR] [--episodes 10] [NAME ...]
    /usr/bin/python3 -m mpc_rssm.zoo index [--zoo DIR]

A shipped model is three files: <name>.safetensors, <name>.conf (the mpcd settings it is
served with, deadline included) and <name>.md (its card); the name is its task's, with
"-pixels" for a pixel model. `eval` starts mpcd with the conf on loopback, runs `mpc-sim
--task <task> --policy mpcd` (the task of the model's metadata; `--obs pixels` for a pixel
model) for N episodes with the conf's deadline (each its own seed, no exploration noise)
and writes <name>.eval.json: returns,
mean, std, deadline, the reply latencies mpc-sim measured, and the machine. Do not run it
while anything else loads the CPU (training): the planner is timed against its deadline.
`index` writes README.md from the model files' metadata and the eval files: one row per
model with its score, deadline, parameters, training episodes and wall time.
"""
import argparse
import configparser
import datetime
import json
import os
import platform
import sys
import tempfile

import numpy as np

from .data import episode_files, load_episode
from .learn import REPO_ROOT, Daemon, LoopError, find_tool, run_logged

ZOO = os.path.join(REPO_ROOT, "model", "zoo")


def shipped(zoo):
    """Tasks with a model file and a conf, sorted."""
    return sorted(f[:-len(".conf")] for f in os.listdir(zoo)
                  if f.endswith(".conf") and os.path.exists(os.path.join(zoo, f[:-5] +
                                                                         ".safetensors")))


def conf_deadline_ms(conf):
    p = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    p.optionxform = str
    with open(conf) as f:
        p.read_string(f.read())
    for section in p.sections():
        for key in ("deadline-ms", "deadline_ms"):
            if p.has_option(section, key):
                return float(p.get(section, key))
    raise LoopError(f"{conf}: no deadline-ms")


def evaluate(zoo, name, episodes, tools, seed=1):
    """Episodes of the model's task (its metadata: a pixel model of cartpole-swingup is
    shipped as cartpole-swingup-pixels) through mpcd; a pixel model sees mpc-sim's
    camera images (--obs pixels at the model's image size)."""
    from .export import load_model
    model = os.path.join(zoo, name + ".safetensors")
    conf = os.path.join(zoo, name + ".conf")
    deadline = conf_deadline_ms(conf)
    net, meta = load_model(model)
    cfg = net.cfg
    task = meta["task"]
    obs = ["--obs", "pixels", "--image-size", str(cfg.image_height)] if cfg.is_image else []
    with tempfile.TemporaryDirectory(prefix="mpc-zoo-") as tmp:
        log = open(os.path.join(tmp, "tools.log"), "w+")
        # admission control off: one robot, and a busy machine's calibration could refuse it
        daemon = Daemon(tools["mpcd"], None, deadline, log,
                        ["--config", conf, "--min-iterations=0"])
        rec = os.path.join(tmp, "episodes")
        os.makedirs(rec)
        try:
            daemon.start(model)
            rc = run_logged([tools["mpc-sim"], "--task", task, "--policy", "mpcd",
                             "--connect", daemon.endpoint, "--episodes", str(episodes),
                             "--seed", str(seed), "--deadline-ms", f"{deadline:g}",
                             "--record", rec, *obs], log, timeout=300 + 120 * episodes)
        finally:
            daemon.stop()
        log.seek(0)
        text = log.read()
        if rc != 0:
            raise LoopError(f"mpc-sim failed on {name} (exit {rc}):\n{text[-3000:]}")
        rets = [float(load_episode(p)["reward"].sum()) for p in episode_files(rec)]
    summary = [line for line in text.splitlines()
               if line.startswith(("replies:", "late replies", "plans:"))]
    return {"model": name, "task": task, "obs": "pixels" if obs else "state",
            "episodes": episodes, "seed": seed, "deadline_ms": deadline,
            "returns": [round(r, 2) for r in rets], "mean": round(float(np.mean(rets)), 2),
            "std": round(float(np.std(rets)), 2), "min": round(min(rets), 2),
            "mpc_sim_summary": summary,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")}


def camera(cfg):
    """What a pixel model sees, for the index ('' for a state model)."""
    if not cfg.is_image:
        return ""
    return (f", {cfg.image_height}x{cfg.image_width}x{cfg.image_channels} camera "
            f"(conv depth {cfg.conv_depth})")


def index(zoo):
    """model/zoo/README.md from the model files and their eval files."""
    from .export import load_model
    rows = []
    for task in shipped(zoo):
        model, meta = load_model(os.path.join(zoo, task + ".safetensors"))
        params = sum(int(np.prod(t.shape)) for k, t in model.state_dict().items()
                     if not k.startswith(("obs_mean", "obs_std")))
        ev_path = os.path.join(zoo, task + ".eval.json")
        ev = json.load(open(ev_path)) if os.path.exists(ev_path) else None
        score = f"**{ev['mean']:.1f} ± {ev['std']:.1f}** (n={ev['episodes']})" if ev \
            else "not evaluated"
        deadline = conf_deadline_ms(os.path.join(zoo, task + ".conf"))
        wall = meta.get("wall_time_s")
        rows.append(f"| [{task}]({task}.md) | {score} | {deadline:g} ms of "
                    f"{float(meta['control_period_s']) * 1000:g} ms | {params:,} | "
                    f"{meta['deter']}/{meta['stoch']}/{meta['hidden']}"
                    f"{' + value' if meta.get('has_value') else ''}"
                    f"{camera(model.cfg)} | "
                    f"{meta.get('collected_episodes', meta.get('data_episodes', '?'))} | "
                    f"{'%.0f min' % (float(wall) / 60) if wall else '?'} |")
    text = INDEX_HEAD + "\n".join(rows) + "\n" + INDEX_TAIL
    with open(os.path.join(zoo, "README.md"), "w") as f:
        f.write(text)
    return text


INDEX_HEAD = """\
# The model zoo

Trained RSSMs that mpcd serves out of the box, one per DeepMind Control Suite task of
`mpc-sim` (clients/sim/README.md: the tasks follow dm_control's definitions, and says
where they do not). Each is three files: `<task>.safetensors` (the model,
model/FORMAT.md), `<task>.conf` (the mpcd settings it is served with) and `<task>.md` (its
card: how it was trained, with the exact commands, its learning curve and planner
settings). Serve one with

```sh
build/daemon/mpcd --config model/zoo/<task>.conf --listen tcp://127.0.0.1:7070
build/clients/sim/mpc-sim --task <task> --policy mpcd --episodes 3
```

Scores are returns (0-1000) of `mpc-sim` episodes against mpcd with the model's conf and
its deadline, without exploration noise, on this project's 2-core machines:
`/usr/bin/python3 -m mpc_rssm.zoo eval` (from model/train) measures them into
`<task>.eval.json`, and `... zoo index` writes this table. Each deadline is at most half
the task's control period, so a real robot gets its action in time.

| model | score (mean ± std) | deadline of period | parameters | deter/stoch/hidden | training episodes | training wall time |
|---|---|---|---:|---|---:|---:|
"""

INDEX_TAIL = """
Training episodes and wall time are those of the exported model (its metadata:
`collected_episodes`, `wall_time_s`; `mpc-model info FILE` lists them), on a shared
2-core CPU. Every model has an end-to-end test (`tests/e2e/test_zoo.py`, `meson test -C
build --suite e2e`): short episodes against a threshold well under its score.
"""


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m mpc_rssm.zoo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("eval", "index"))
    p.add_argument("tasks", nargs="*", help="only these (default: every shipped model)")
    p.add_argument("--zoo", default=ZOO, help="the zoo directory (model/zoo)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--build-dir", help="where mpcd and mpc-sim are (default: build*/)")
    a = p.parse_intermixed_args(argv)  # options may come before the names
    if a.command == "index":
        sys.stdout.write(index(a.zoo))
        return 0
    builds = [a.build_dir] if a.build_dir else \
        [os.path.join(REPO_ROOT, d) for d in sorted(os.listdir(REPO_ROOT))
         if d.startswith("build")]
    tools = {t: find_tool(t, None, builds) for t in ("mpcd", "mpc-sim")}
    if not all(tools.values()):
        print("zoo: mpcd and mpc-sim are needed: build them or pass --build-dir",
              file=sys.stderr)
        return 2
    for task in a.tasks or shipped(a.zoo):
        try:
            ev = evaluate(a.zoo, task, a.episodes, tools, a.seed)
        except LoopError as e:
            print(f"zoo: {e}", file=sys.stderr)
            return 1
        with open(os.path.join(a.zoo, task + ".eval.json"), "w") as f:
            json.dump(ev, f, indent=1)
            f.write("\n")
        print(f"{task}: {ev['mean']:.1f} +- {ev['std']:.1f} (min {ev['min']:.1f}) at "
              f"{ev['deadline_ms']:g} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
