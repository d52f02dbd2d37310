"""PNG plots for the trainer (loss curves) and the learning loop (return curves).

matplotlib with the Agg backend: no display needed, safe in CI and over ssh.
"""
import os

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _smooth(y, k):
    if len(y) < k or k <= 1:
        return np.asarray(y)
    return np.convolve(y, np.ones(k) / k, mode="valid")


def _save(fig, path):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}.png"
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)


def plot_losses(history, path, title="RSSM training"):
    """history: list of dicts with 'step' and loss parts (Trainer.history)."""
    plt = _pyplot()
    keys = [k for k in ("loss", "recon", "reward", "kl", "overshoot_kl", "overshoot_reward",
                        "value", "distill_embed", "distill_recon", "distill_belief")
            if any(k in r for r in history)]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    steps = np.array([r["step"] for r in history])
    k = max(1, len(history) // 100)
    for ax, key in zip(axes[0], keys):
        y = np.array([r.get(key, np.nan) for r in history])
        ax.plot(steps, y, alpha=0.3, lw=0.8)
        ys = _smooth(y, k)
        ax.plot(steps[len(steps) - len(ys):], ys, lw=1.5)
        ax.set_title(key)
        ax.set_xlabel("step")
        if key in ("loss", "recon", "reward") and np.all(y[np.isfinite(y)] > 0):
            ax.set_yscale("log")
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_learning(log, path, title="learning curve"):
    """log: the mpc-learn JSON log dict with 'episodes' (collected) and 'evals'."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    eps = [e for e in log.get("episodes", []) if e.get("return") is not None]
    evals = log.get("evals", [])
    for ax, xkey, xlabel in ((axes[0], "episode", "episodes collected"),
                             (axes[1], "env_steps", "environment steps")):
        if eps:
            ax.plot([e[xkey] for e in eps], [e["return"] for e in eps], ".", alpha=0.5,
                    label="collected (random / planner + noise)")
        if evals:
            x = [e[xkey] for e in evals]
            m = np.array([e["mean"] for e in evals])
            s = np.array([e["std"] for e in evals])
            ax.errorbar(x, m, yerr=s, fmt="-o", ms=3, capsize=2, label="evaluation (no noise)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
    if eps or evals:  # nothing to label before the first episode
        axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
