"""PlaNet's objective for the RSSM, the optimiser loop, checkpoints and export.

Per chunk of L steps and B sequences (data.py), filtering with the posterior from a zero
state and computing, averaged over batch and time:
  - observation reconstruction: Gaussian unit-variance NLL (0.5 * squared error, summed over
    dimensions) of the normalised observation from the decoder;
  - reward prediction: 0.5 * squared error (masked at episode starts);
  - KL(posterior || prior) summed over latent dimensions, clamped below by free nats;
  - optional latent overshooting (PlaNet): open-loop priors 2..D steps ahead matched to the
    (stop-gradient) posterior, plus reward prediction from those open-loop states, which is
    what the planner evaluates;
  - optional value head (Dreamer's critic): regressed on lambda-returns of trajectories
    imagined from posterior states with uniformly random actions.
"""
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .rssm import RSSM, RSSMConfig


@dataclass
class TrainConfig:
    batch: int = 50
    length: int = 50
    lr: float = 1e-3
    adam_eps: float = 1e-4
    grad_clip: float = 1000.0
    # The recipe that works from state vectors (model/train/README.md): their KL stays
    # below PlaNet's 3 free nats, which leaves the prior untrained, and the planner needs
    # open-loop reward predictions, which overshooting trains. PLANET below is one flag away.
    free_nats: float = 1.0
    kl_scale: float = 1.0
    reward_scale: float = 1.0
    overshooting: int = 12         # D; 0 or 1 = off
    overshooting_scale: float = 1.0
    overshooting_stride: int = 4   # open-loop rollouts start every this many steps
    value_horizon: int = 15        # imagination length for the critic (when has_value)
    value_lambda: float = 0.95
    discount: float = 0.99
    seed: int = 0

    def to_dict(self):
        return dataclasses.asdict(self)


# PlaNet's published KL settings (free nats 3, latent overshooting off), for `--planet`.
PLANET = {"free_nats": 3.0, "overshooting": 0, "overshooting_stride": 1}


def kl_diag(q_mean, q_std, p_mean, p_std):
    """KL(q || p) of diagonal Gaussians, summed over the last dimension."""
    var_ratio = (q_std / p_std) ** 2
    t = ((q_mean - p_mean) / p_std) ** 2
    return 0.5 * (var_ratio + t - 1.0 - torch.log(var_ratio)).sum(-1)


def lambda_returns(rewards, values, bootstrap, discount, lam):
    """rewards[k], values[k] = r(s_{k+1}), v(s_{k+1}) for k = 0..H-1; bootstrap = v(s_H).
    Returns G_k for k = 0..H-1 with G = r + discount * ((1 - lam) v' + lam G')."""
    out = []
    g = bootstrap
    for k in reversed(range(rewards.shape[0])):
        g = rewards[k] + discount * ((1 - lam) * values[k] + lam * g)
        out.append(g)
    return torch.stack(out[::-1])


@torch.no_grad()
def renormalise(model, mean, std):
    """Sets new observation statistics without changing the function the model computes:
    the encoder's first layer and the decoder's last layer absorb the change."""
    mean = torch.as_tensor(mean, dtype=torch.float32)
    std = torch.as_tensor(std, dtype=torch.float32)
    m0, s0 = model.obs_mean.clone(), model.obs_std.clone()
    first = model.encoder[0]
    # W (o - m0) / s0 + b  ==  W' (o - m) / s + b'
    first.bias += first.weight @ ((mean - m0) / s0)
    first.weight *= (std / s0)[None, :]
    if model.decoder is not None:
        last = model.decoder[-1]
        # decoder output d predicts (o - m0) / s0; new target (o - m) / s = (d s0 + m0 - m) / s
        last.weight *= (s0 / std)[:, None]
        last.bias.copy_((last.bias * s0 + m0 - mean) / std)
    model.obs_mean.copy_(mean)
    model.obs_std.copy_(std)


class Trainer:
    """Owns the model, the optimiser, the step counter and the loss history."""

    def __init__(self, model_cfg: RSSMConfig, cfg: TrainConfig, action_low=None,
                 action_high=None):
        self.cfg = cfg
        self.model_cfg = model_cfg
        torch.manual_seed(cfg.seed)
        self.model = RSSM(model_cfg)
        self.optim = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        self.step = 0
        self.history = []  # one dict of floats per logged step
        self.loop = None   # the learning loop's state saved with the checkpoint
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        A = model_cfg.action_dim
        self.action_low = torch.full((A,), -1.0) if action_low is None else \
            torch.as_tensor(action_low, dtype=torch.float32)
        self.action_high = torch.full((A,), 1.0) if action_high is None else \
            torch.as_tensor(action_high, dtype=torch.float32)

    # -- the objective ----------------------------------------------------------------
    def _randn(self, *shape):
        return torch.randn(*shape, generator=self.gen)

    def observe(self, obs, prev_action):
        """Posterior filtering over a chunk. Returns time-major stacks of h, z, prior and
        posterior (mean, std)."""
        m = self.model
        L, B, _ = obs.shape
        embed = m.encode(obs)
        h, z = m.initial_state(B)
        eps = self._randn(L, B, self.model_cfg.stoch)
        out = {k: [] for k in ("h", "z", "pm", "ps", "qm", "qs")}
        for t in range(L):
            h = m.transition(h, z, prev_action[t])
            pm, ps = m.prior_dist(h)
            qm, qs = m.posterior_dist(h, embed[t])
            z = qm + qs * eps[t]
            for k, v in zip(out, (h, z, pm, ps, qm, qs)):
                out[k].append(v)
        return {k: torch.stack(v) for k, v in out.items()}

    def losses(self, batch):
        cfg, m = self.cfg, self.model
        obs, act = batch["obs"], batch["prev_action"]
        rew, mask = batch["reward"], batch["reward_mask"]
        post = self.observe(obs, act)
        h, z = post["h"], post["z"]
        parts = {}
        target = m.normalise(obs)
        parts["recon"] = 0.5 * ((m.decode(h, z) - target) ** 2).sum(-1).mean()
        masked_mse = lambda pred, r, mk: (0.5 * (pred - r) ** 2 * mk).sum() / mk.sum().clamp(min=1)
        parts["reward"] = masked_mse(m.predict_reward(h, z), rew, mask)
        kl = kl_diag(post["qm"], post["qs"], post["pm"], post["ps"]).mean()
        parts["kl"] = kl
        loss = parts["recon"] + cfg.reward_scale * parts["reward"] + \
            cfg.kl_scale * torch.clamp(kl, min=cfg.free_nats)
        if cfg.overshooting > 1:
            os_kl, os_rew = self._overshooting(post, act, rew, mask)
            parts["overshoot_kl"], parts["overshoot_reward"] = os_kl, os_rew
            loss = loss + cfg.overshooting_scale * (
                cfg.kl_scale * torch.clamp(os_kl, min=cfg.free_nats) +
                cfg.reward_scale * os_rew)
        if m.value is not None:
            parts["value"] = self._value_loss(h, z)
            loss = loss + parts["value"]
        parts["loss"] = loss
        return parts

    def _overshooting(self, post, act, rew, mask):
        """Open-loop priors k = 1..D steps ahead from posterior states at every
        `overshooting_stride`-th time step; KL against the stop-gradient posterior and
        reward prediction for k >= 2 (k = 1 is the usual term)."""
        m, cfg = self.model, self.cfg
        L = act.shape[0]
        D = min(cfg.overshooting, L - 1)
        starts = torch.arange(0, L - D, max(1, cfg.overshooting_stride))
        h, z = post["h"][starts], post["z"][starts]  # [n, B, .]
        shape = h.shape[:2]
        flat = lambda x: x.reshape(-1, x.shape[-1])  # GRUCell wants 2-D
        kls, rews = [], []
        for k in range(1, D + 1):
            t = starts + k
            h = m.transition(flat(h), flat(z), flat(act[t])).reshape(*shape, -1)
            pm, ps = m.prior_dist(h)
            z = pm + ps * self._randn(*pm.shape)
            if k >= 2:
                kls.append(kl_diag(post["qm"][t].detach(), post["qs"][t].detach(), pm, ps)
                           .mean())
                mk = mask[t]
                err = 0.5 * (m.predict_reward(h, z) - rew[t]) ** 2 * mk
                rews.append(err.sum() / mk.sum().clamp(min=1))
        if not kls:
            zero = torch.zeros(())
            return zero, zero
        return torch.stack(kls).mean(), torch.stack(rews).mean()

    def _value_loss(self, h, z):
        """Dreamer critic on trajectories imagined with random actions from posterior states."""
        m, cfg = self.model, self.cfg
        with torch.no_grad():
            h = h.reshape(-1, h.shape[-1])
            z = z.reshape(-1, z.shape[-1])
            starts_h, starts_z = h, z
            hs, zs = [], []
            lo, hi = self.action_low, self.action_high
            for _ in range(cfg.value_horizon):
                u = torch.rand(h.shape[0], lo.shape[0], generator=self.gen)
                h, (pm, ps) = m.imagine_step(h, z, lo + (hi - lo) * u)
                z = pm + ps * self._randn(*pm.shape)
                hs.append(h)
                zs.append(z)
            hs, zs = torch.stack(hs), torch.stack(zs)
            rewards = m.predict_reward(hs, zs)
            values = m.predict_value(hs, zs)
            targets = lambda_returns(rewards, values, values[-1], cfg.discount,
                                     cfg.value_lambda)
            all_h = torch.cat([starts_h[None], hs[:-1]])
            all_z = torch.cat([starts_z[None], zs[:-1]])
        pred = m.predict_value(all_h, all_z)
        return 0.5 * ((pred - targets) ** 2).mean()

    # -- optimisation -------------------------------------------------------------------
    def train_step(self, buffer):
        self.model.train()
        batch = buffer.sample(self.cfg.batch, self.cfg.length, self.rng)
        parts = self.losses(batch)
        self.optim.zero_grad(set_to_none=True)
        parts["loss"].backward()
        gnorm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optim.step()
        self.step += 1
        rec = {k: float(v) for k, v in parts.items()}
        rec["grad_norm"] = float(gnorm)
        rec["step"] = self.step
        self.history.append(rec)
        return rec

    def fit(self, buffer, steps, progress=True, desc="train"):
        """Runs `steps` optimiser steps; returns the mean of each loss part over them."""
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=steps, desc=desc, dynamic_ncols=True, leave=False)
        recs = []
        for _ in range(steps):
            rec = self.train_step(buffer)
            recs.append(rec)
            if bar is not None:
                bar.update(1)
                if self.step % 10 == 0:
                    bar.set_postfix(loss=f"{rec['loss']:.2f}", rec=f"{rec['recon']:.2f}",
                                    rew=f"{rec['reward']:.3f}", kl=f"{rec['kl']:.2f}")
        if bar is not None:
            bar.close()
        return mean_losses(recs)

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self):
        return {
            "format": "mpc-rssm-checkpoint",
            "model_config": self.model_cfg.to_dict(),
            "train_config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optim": self.optim.state_dict(),
            "step": self.step,
            "history": self.history,
            "rng": self.rng.bit_generator.state,
            "gen": self.gen.get_state(),
            "action_low": self.action_low,
            "action_high": self.action_high,
        }

    def save(self, path, loop=None):
        """Writes the checkpoint atomically (a crash never leaves a half-written file).
        `loop` is the learning loop's own state (schedule, replay index), kept in the same
        file so that the two can never disagree; it comes back as Trainer.loop."""
        st = self.state_dict()
        if loop is not None:
            st["loop"] = loop
        tmp = f"{path}.tmp.{os.getpid()}"
        torch.save(st, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path, overrides=None):
        """Restores a checkpoint; `overrides` may change TrainConfig fields (e.g. lr)."""
        st = torch.load(path, map_location="cpu")
        if not isinstance(st, dict) or st.get("format") != "mpc-rssm-checkpoint":
            raise ValueError(f"{path}: not an mpc-rssm checkpoint")
        tc = dict(st["train_config"])
        tc.update(overrides or {})
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        t = cls(RSSMConfig(**st["model_config"]),
                TrainConfig(**{k: v for k, v in tc.items() if k in known}),
                st["action_low"], st["action_high"])
        t.model.load_state_dict(st["model"])
        t.optim.load_state_dict(st["optim"])
        for g in t.optim.param_groups:  # an lr override must win over the saved one
            g["lr"] = t.cfg.lr
            g["eps"] = t.cfg.adam_eps
        t.step = st["step"]
        t.history = st["history"]
        t.rng.bit_generator.state = st["rng"]
        t.gen.set_state(st["gen"])
        t.loop = st.get("loop")
        return t


def mean_losses(recs):
    if not recs:
        return {}
    keys = [k for k in recs[0] if k != "step"]
    return {k: float(np.mean([r[k] for r in recs])) for k in keys}


def provenance(trainer, buffer, extra=None):
    """Training metadata for the model file (strings/numbers only)."""
    last = mean_losses(trainer.history[-100:])
    meta = {
        "train_steps": trainer.step,
        "data_episodes": len(buffer),
        "data_steps": buffer.num_steps,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trainer": "mpc-train (PlaNet objective)",
        "train_config": trainer.cfg.to_dict(),
    }
    for k, v in last.items():
        if math.isfinite(v):
            meta[f"final_{k}"] = round(v, 6)
    meta.update(extra or {})
    return meta


def export(trainer, path, metadata):
    """Writes the model file through the model package's exporter (model/FORMAT.md)."""
    from .export import export_model
    trainer.model.eval()
    export_model(trainer.model, path, metadata)  # atomic: mpcd only ever sees whole files
