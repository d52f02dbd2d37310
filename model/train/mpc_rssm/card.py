"""Model cards for shipped models, written from an mpc-learn run directory.

    /usr/bin/python3 -m mpc_rssm.card RUN_DIR MODEL_FILE CARD.md

Reads RUN_DIR/log.json (episodes, evaluations, wall time, the exact command) and the model
file's metadata, and writes the card: task, data, training, evaluation return mean +- std,
planner settings, and the command that reproduces the run.
"""
import json
import os
import sys

import numpy as np


def _curve_table(log):
    rows = ["| episodes collected | env steps | train steps | eval return (mean ± std) |",
            "|---:|---:|---:|---:|"]
    for e in log.get("evals", []):
        rows.append(f"| {e['episode']} | {e['env_steps']} | {e['train_step']} | "
                    f"{e['mean']:.1f} ± {e['std']:.1f} (n={len(e['returns'])}) |")
    return "\n".join(rows)


def render(log, meta, model_path, planner_note):
    fe = log.get("final_eval")
    size = os.path.getsize(model_path)
    arch = (f"deter {meta['deter']}, stoch {meta['stoch']}, hidden {meta['hidden']}, "
            f"embed {meta['embed']}, {meta['activation']}, min_std {meta['min_std']}, "
            f"value head: {'yes' if meta['has_value'] else 'no'}")
    cmd = " ".join(log.get("command", []))
    # the episodes this model was trained on (the best model may predate the run's end)
    eps = log.get("episodes", [])[:int(meta.get("collected_episodes", 10**9))]
    random_eps = sum(1 for e in eps if e["kind"] == "random")
    lines = [
        f"# {meta.get('task')} — shipped RSSM",
        "",
        f"- **Task**: `{meta.get('task')}` in `mpc-sim` (MuJoCo), action repeat "
        f"{meta.get('action_repeat')}, control period {meta.get('control_period_s')} s, "
        f"actions in [{meta['action_low']}, {meta['action_high']}].",
        f"- **Model**: {arch}; {size / 1024:.0f} KiB on disk.",
        f"- **Training data**: {len(eps)} episodes ({random_eps} random seed episodes, "
        f"{len(eps) - random_eps} collected by mpcd's planner with exploration noise "
        f"{log['config'].get('explore')}), {sum(e['steps'] for e in eps)} control steps "
        f"(the run went on to {len(log.get('episodes', []))} episodes).",
        f"- **Training**: {meta.get('train_steps')} Adam steps (PlaNet objective, batch "
        f"{meta['train_config']['batch']} x {meta['train_config']['length']}, lr "
        f"{meta['train_config']['lr']}, free nats {meta['train_config']['free_nats']}, "
        f"overshooting {meta['train_config']['overshooting']}); wall time of the whole "
        f"loop {log.get('wall_s', 0) / 60:.1f} min on a shared 2-core CPU.",
    ]
    if fe:
        lines.append(f"- **Evaluation** (no exploration noise, {len(fe['returns'])} episodes, "
                     f"deadline {fe['deadline_ms']:g} ms): return **{fe['mean']:.1f} ± "
                     f"{fe['std']:.1f}** (min {min(fe['returns']):.1f}, max "
                     f"{max(fe['returns']):.1f}).")
    cmds = [cmd] + [" ".join(r["command"]) + f"   # resumed after {r['episodes_before']} "
                    "episodes" for r in log.get("resumed_with", [])]
    lines += [f"- **Planner**: {planner_note}", "", "## Learning curve", "",
              _curve_table(log), "", "## Reproduce", "", "```"] + cmds + ["```", ""]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    run_dir, model_path, card = argv[:3]
    planner_note = argv[3] if len(argv) == 4 else "mpcd defaults"
    from .export import load_model
    with open(os.path.join(run_dir, "log.json")) as f:
        log = json.load(f)
    _, meta = load_model(model_path)
    with open(card, "w") as f:
        f.write(render(log, meta, model_path, planner_note))
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
