"""The Recurrent State Space Model (PlaNet / Dreamer) in PyTorch: the reference for librssm.

Parameter names here are the tensor names in the model file (model/FORMAT.md); the C
runtime (model/rssm.h) computes exactly the same functions. Observations are normalised
inside the model with the stored obs_mean / obs_std buffers.
"""
from dataclasses import dataclass, asdict

import torch
from torch import nn
import torch.nn.functional as F


@dataclass
class RSSMConfig:
    obs_dim: int
    action_dim: int
    deter: int = 200
    stoch: int = 30
    hidden: int = 200
    embed: int = 200
    min_std: float = 0.1
    activation: str = "relu"  # "relu" or "elu"
    has_value: bool = False
    has_decoder: bool = True

    def to_dict(self):
        return asdict(self)


def _activation(name):
    if name == "relu":
        return F.relu
    if name == "elu":
        return F.elu
    raise ValueError(f"unknown activation {name!r} (expected 'relu' or 'elu')")


def _mlp(sizes):
    """Linear layers only; the activation is applied between them by the caller."""
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


class RSSM(nn.Module):
    def __init__(self, cfg: RSSMConfig):
        super().__init__()
        self.cfg = cfg
        O, A = cfg.obs_dim, cfg.action_dim
        D, S, H, E = cfg.deter, cfg.stoch, cfg.hidden, cfg.embed
        self.act = _activation(cfg.activation)
        self.register_buffer("obs_mean", torch.zeros(O))
        self.register_buffer("obs_std", torch.ones(O))
        self.encoder = _mlp([O, H, E])
        self.img_in = nn.Linear(S + A, H)
        self.gru = nn.GRUCell(H, D)
        self.prior = _mlp([D, H, 2 * S])
        self.posterior = _mlp([D + E, H, 2 * S])
        self.reward = _mlp([D + S, H, H, 1])
        self.value = _mlp([D + S, H, H, 1]) if cfg.has_value else None
        self.decoder = _mlp([D + S, H, H, O]) if cfg.has_decoder else None

    # -- building blocks -------------------------------------------------------------
    def _run(self, layers, x, last_act=False):
        for i, layer in enumerate(layers):
            x = layer(x)
            if i < len(layers) - 1 or last_act:
                x = self.act(x)
        return x

    def _gaussian(self, out):
        mean, raw_std = out.chunk(2, dim=-1)
        return mean, F.softplus(raw_std) + self.cfg.min_std

    def normalise(self, obs):
        return (obs - self.obs_mean) / self.obs_std

    def encode(self, obs):
        """Raw observation [..., O] -> embedding [..., E] (both layers activated)."""
        return self._run(self.encoder, self.normalise(obs), last_act=True)

    def transition(self, h, z, a):
        """Deterministic path: h' = GRUCell(act(W_in [z, a] + b), h)."""
        x = self.act(self.img_in(torch.cat([z, a], -1)))
        return self.gru(x, h)

    def prior_dist(self, h):
        return self._gaussian(self._run(self.prior, h))

    def posterior_dist(self, h, embed):
        return self._gaussian(self._run(self.posterior, torch.cat([h, embed], -1)))

    def predict_reward(self, h, z):
        return self._run(self.reward, torch.cat([h, z], -1)).squeeze(-1)

    def predict_value(self, h, z):
        return self._run(self.value, torch.cat([h, z], -1)).squeeze(-1)

    def decode(self, h, z):
        """Normalised observation reconstruction (multiply by obs_std, add obs_mean for raw)."""
        return self._run(self.decoder, torch.cat([h, z], -1))

    # -- the two operations librssm exposes ------------------------------------------
    def observe_step(self, h, z, a_prev, obs):
        """One filtering step. Returns h', (prior mean, std), (posterior mean, std)."""
        h_next = self.transition(h, z, a_prev)
        prior = self.prior_dist(h_next)
        post = self.posterior_dist(h_next, self.encode(obs))
        return h_next, prior, post

    def imagine_step(self, h, z, a):
        """One prior step for a batch: h', (prior mean, std)."""
        h_next = self.transition(h, z, a)
        return h_next, self.prior_dist(h_next)

    def initial_state(self, batch, device=None):
        zeros = lambda n: torch.zeros(batch, n, device=device)
        return zeros(self.cfg.deter), zeros(self.cfg.stoch)
