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
