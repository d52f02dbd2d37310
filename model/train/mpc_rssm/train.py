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
A pixel model (obs_type "image") trains on the chunks' images with the same objective, its
reconstruction term summed over every pixel (PlaNet's full pixel objective).

Distillation (a teacher given): a pixel student takes the trained state model's dynamics,
prior, reward and value heads unchanged (frozen) and learns only to see, from episodes
that hold the state and the camera image of each moment:
  - distill_embed: the image embedding regressed, frame by frame, on the embedding the
    teacher's encoder gives the state of the same moment (the convolutional encoder and
    encoder_out learn; the posterior stays the teacher's);
  - distill_recon (a second phase, with distill_tune "posterior"): the pixel model
    filters the chunk on its own, as mpcd runs it, and the state read back from its
    belief through the teacher's decoder is regressed on the true state. One image shows
    positions, not velocities: the embedding regression can only give the velocity part
    of the teacher's embedding on average, and this term teaches the posterior to take
    the velocities from the belief, which carries the past frames.
  - distill_belief (also a second-phase term): the pixel model's own belief (h and the
    posterior mean, where the planner starts) regressed on the teacher's belief from the
    states, which also pins the latent directions that the decoder does not show.
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
    # Distillation (used only when the Trainer has a teacher)
    distill_tune: str = "encoder"  # "encoder", or "posterior": encoder + posterior layers
    distill_embed: float = 1.0
    distill_recon: float = 0.0
    distill_belief: float = 0.0

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


DISTILL_TUNE = ("encoder", "posterior")
# The student's own tensors; every other one is the teacher's, frozen.
_SEEING = ("conv_encoder.", "encoder_out.")


def distill_student_config(teacher_cfg: RSSMConfig, image_shape, conv_depth):
    """The pixel student of a state teacher: the teacher's sizes, images of image_shape
    (H, W, C), no decoder (distillation needs none)."""
    H, W, C = image_shape
    return RSSMConfig(obs_dim=0, action_dim=teacher_cfg.action_dim, deter=teacher_cfg.deter,
                      stoch=teacher_cfg.stoch, hidden=teacher_cfg.hidden,
                      embed=teacher_cfg.embed, min_std=teacher_cfg.min_std,
                      activation=teacher_cfg.activation, has_value=teacher_cfg.has_value,
                      has_decoder=False, obs_type="image", image_height=H, image_width=W,
                      image_channels=C, conv_depth=conv_depth)


class Trainer:
    """Owns the model, the optimiser, the step counter and the loss history; with a
    teacher (a trained state RSSM), distils it into the pixel model (module docstring)."""

    def __init__(self, model_cfg: RSSMConfig, cfg: TrainConfig, action_low=None,
                 action_high=None, teacher: RSSM = None):
        self.cfg = cfg
        self.model_cfg = model_cfg
        torch.manual_seed(cfg.seed)
        self.model = RSSM(model_cfg)
        self.teacher = None
        self.teacher_source = None  # what the teacher was (file name, SHA-256), for metadata
        params = self.model.parameters()
        if teacher is not None:
            params = self._adopt(teacher)
        self.optim = torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps)
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

    def _adopt(self, teacher):
        """Takes the teacher's tensors into the student and freezes them; returns the
        parameters distillation trains."""
        t, m = teacher.cfg, self.model_cfg
        if t.is_image or not m.is_image:
            raise ValueError("distillation goes from a state (vector) model to a pixel model")
        if self.cfg.distill_tune not in DISTILL_TUNE:
            raise ValueError(f"distill_tune is {self.cfg.distill_tune!r}; expected one of "
                             f"{DISTILL_TUNE}")
        want = distill_student_config(t, (m.image_height, m.image_width, m.image_channels),
                                      m.conv_depth)
        if want != m:
            raise ValueError(f"the student's configuration {m} is not the teacher's sizes "
                             f"({want})")
        if teacher.decoder is None and (self.cfg.distill_recon > 0):
            raise ValueError("the teacher has no decoder, so the state cannot be read back "
                             "(distill_recon)")
        self.teacher = teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        own = self.model.state_dict()
        with torch.no_grad():
            for k, v in teacher.state_dict().items():
                if k in own:
                    own[k].copy_(v)
        tuned = _SEEING + (("posterior.",) if self.cfg.distill_tune == "posterior" else ())
        params = []
        for k, p in self.model.named_parameters():
            p.requires_grad_(k.startswith(tuned))
            if p.requires_grad:
                params.append(p)
        return params

    # -- the objective ----------------------------------------------------------------
    def _randn(self, *shape):
        return torch.randn(*shape, generator=self.gen)

    def observe(self, obs, prev_action):
        """Posterior filtering over a chunk. Returns time-major stacks of h, z, prior and
        posterior (mean, std)."""
        m = self.model
        L, B = prev_action.shape[:2]
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
        if self.teacher is not None:
            return self._distill_losses(batch)
        cfg, m = self.cfg, self.model
        obs = batch["image"] if m.cfg.is_image else batch["obs"]
        act, rew, mask = batch["prev_action"], batch["reward"], batch["reward_mask"]
        post = self.observe(obs, act)
        h, z = post["h"], post["z"]
        parts = {}
        err = (m.decode(h, z) - m.normalise(obs)) ** 2
        parts["recon"] = 0.5 * err.reshape(*err.shape[:2], -1).sum(-1).mean()
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

    def _distill_losses(self, batch):
        """Distillation's terms (module docstring), weighted by the distill_* settings."""
        m, t, cfg = self.model, self.teacher, self.cfg
        with torch.no_grad():
            embed = t.encode(batch["obs"])
        seen = m.encode(batch["image"])
        parts = {"distill_embed": 0.5 * ((seen - embed) ** 2).sum(-1).mean()}
        loss = cfg.distill_embed * parts["distill_embed"]
        if cfg.distill_recon > 0 or cfg.distill_belief > 0:
            act = batch["prev_action"]
            with torch.no_grad():
                teacher = self._filter(t, embed, act)
            student = self._filter(m, seen, act)  # on its own, as mpcd runs it
            if cfg.distill_recon > 0:
                err = t.decode(*student) - t.normalise(batch["obs"])
                parts["distill_recon"] = 0.5 * (err ** 2).sum(-1).mean()
                loss = loss + cfg.distill_recon * parts["distill_recon"]
            if cfg.distill_belief > 0:
                parts["distill_belief"] = 0.5 * sum(((s - q) ** 2).sum(-1).mean()
                                                    for s, q in zip(student, teacher))
                loss = loss + cfg.distill_belief * parts["distill_belief"]
        parts["loss"] = loss
        return parts

    @staticmethod
    def _filter(model, embed, act):
        """The belief (h, posterior mean) over a chunk from a zero state, as mpcd keeps it
        (no sampling); time-major stacks."""
        h, z = model.initial_state(act.shape[1])
        hs, zs = [], []
        for i in range(act.shape[0]):
            h = model.transition(h, z, act[i])
            z, _ = model.posterior_dist(h, embed[i])
            hs.append(h)
            zs.append(z)
        return torch.stack(hs), torch.stack(zs)

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
        gnorm = nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], self.cfg.grad_clip)
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
                    bar.set_postfix({k: f"{rec[k]:.3g}" for k in _SHOWN if k in rec})
        if bar is not None:
            bar.close()
        return mean_losses(recs)

    # -- checkpoints --------------------------------------------------------------------
    def state_dict(self):
        teacher = None
        if self.teacher is not None:  # the checkpoint is whole without the teacher's file
            teacher = {"config": self.teacher.cfg.to_dict(),
                       "model": self.teacher.state_dict(), "source": self.teacher_source}
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
            "teacher": teacher,
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
        teacher = None
        if st.get("teacher") is not None:
            teacher = RSSM(RSSMConfig(**st["teacher"]["config"]))
            teacher.load_state_dict(st["teacher"]["model"])
        t = cls(RSSMConfig(**st["model_config"]),
                TrainConfig(**{k: v for k, v in tc.items() if k in known}),
                st["action_low"], st["action_high"], teacher)
        t.model.load_state_dict(st["model"])
        # A distillation resumed with another distill_tune trains other tensors: their
        # optimiser moments start afresh (a second phase, model/train/README.md)
        if teacher is None or st["train_config"].get("distill_tune") == t.cfg.distill_tune:
            t.optim.load_state_dict(st["optim"])
        for g in t.optim.param_groups:  # an lr override must win over the saved one
            g["lr"] = t.cfg.lr
            g["eps"] = t.cfg.adam_eps
        t.step = st["step"]
        t.history = st["history"]
        t.rng.bit_generator.state = st["rng"]
        t.gen.set_state(st["gen"])
        t.loop = st.get("loop")
        if teacher is not None:
            t.teacher_source = st["teacher"].get("source")
        return t


# Loss parts on the progress bar, when present.
_SHOWN = ("loss", "recon", "reward", "kl", "distill_embed", "distill_recon",
          "distill_belief")


def mean_losses(recs):
    if not recs:
        return {}
    keys = [k for k in recs[-1] if k != "step"]  # the newest parts (a phase may add one)
    return {k: float(np.mean([r[k] for r in recs if k in r])) for k in keys}


def provenance(trainer, buffer, extra=None):
    """Training metadata for the model file (strings/numbers only)."""
    last = mean_losses(trainer.history[-100:])
    meta = {
        "train_steps": trainer.step,
        "data_episodes": len(buffer),
        "data_steps": buffer.num_steps,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trainer": ("mpc-train (PlaNet objective)" if trainer.teacher is None else
                    f"mpc-train (distilled from {trainer.teacher_source})"),
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
