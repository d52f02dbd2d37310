"""Synthetic episodes for the trainer tests: a damped pendulum in numpy.

Observation [cos, sin, angular velocity], one torque action in [-1, 1], reward (1 + cos)/2
per step: small, deterministic for a seed, and learnable in a few hundred steps.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "model", "train"))

from mpc_rssm.data import write_episode  # noqa: E402


def pendulum_episode(rng, steps=60, dt=0.1):
    th, om = rng.uniform(-np.pi, np.pi), rng.uniform(-1, 1)
    obs, act, rew = [], [], []
    for _ in range(steps):
        obs.append([np.cos(th), np.sin(th), om])
        a = float(np.clip(rng.normal(0, 0.7), -1, 1))
        om = om + dt * (-9.8 * np.sin(th) + 3.0 * a - 0.1 * om)
        th = th + dt * om
        act.append([a])
        rew.append((1 + np.cos(th)) / 2)
    obs.append([np.cos(th), np.sin(th), om])
    return np.array(obs), np.array(act), np.array(rew)


def write_pendulum_episodes(directory, count, seed=0, steps=60):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        write_episode(os.path.join(directory, f"pendulum-synthetic-{i:03d}.npz"),
                      *pendulum_episode(rng, steps))


def pendulum_image(obs, side):
    """A side x side x 3 picture of the pendulum: a bright disc at the tip on a dark
    background (the angle is visible, the velocity is not, as in a camera frame)."""
    yy, xx = np.mgrid[0:side, 0:side]
    c = (side - 1) / 2
    tip_x, tip_y = c + 0.35 * side * obs[1], c - 0.35 * side * obs[0]
    disc = ((xx - tip_x) ** 2 + (yy - tip_y) ** 2) <= (side / 8) ** 2
    img = np.full((side, side, 3), 20, np.uint8)
    img[disc] = (230, 180, 40)
    return img


def write_pendulum_pixel_episodes(directory, count, seed=0, steps=60, side=48, states=True):
    """Pendulum episodes with an `image` array (common/EPISODES.md); states=False writes
    pixel-only episodes (observation [T+1, 0]) as `mpcd --record` of a pixel session does."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        obs, act, rew = pendulum_episode(rng, steps)
        image = np.stack([pendulum_image(o, side) for o in obs])
        kept = obs if states else np.zeros((obs.shape[0], 0))
        np.savez(os.path.join(directory, f"pendulum-pixels-{i:03d}.npz"),
                 observation=kept.astype(np.float32), action=act.astype(np.float32),
                 reward=rew.astype(np.float32), image=image)
