"""The Recurrent State Space Model (PlaNet / Dreamer) in PyTorch: the reference for librssm.

Parameter names here are the tensor names in the model file (model/FORMAT.md); the C
runtime (model/rssm.h) computes exactly the same functions. Observations are normalised
inside the model: vector observations with the stored obs_mean / obs_std buffers, images
(obs_type "image") as x / 255 - 0.5 (PlaNet), then embedded by an MLP or by PlaNet's
convolutional encoder (ConvEncoder).
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
    # Image observations (format 1.1): obs_type "image" with an image_height x image_width
    # x image_channels uint8 image (HWC) per observation; obs_dim is then their product
    # (0 here fills it in). conv_depth is d, the first convolution's channels (PlaNet: 32).
    obs_type: str = "vector"  # "vector" or "image"
    image_height: int = 0
    image_width: int = 0
    image_channels: int = 0
    conv_depth: int = 32

    def __post_init__(self):
        if self.obs_type == "image" and not self.obs_dim:
            self.obs_dim = self.image_height * self.image_width * self.image_channels

    @property
    def is_image(self):
        return self.obs_type == "image"

    def validate(self):
        """Raises ValueError naming the field when the configuration is not a valid model."""
        if self.obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type {self.obs_type!r}: expected 'vector' or 'image'")
        if not self.is_image:
            return
        if self.image_channels not in (1, 3):
            raise ValueError(f"image_channels is {self.image_channels}; expected 1 or 3")
        for name in ("image_height", "image_width"):
            n = getattr(self, name)
            if not MIN_IMAGE_SIDE <= n <= MAX_IMAGE_SIDE:
                raise ValueError(f"{name} is {n}; the encoder's {CONV_LAYERS} convolutions "
                                 f"(kernel {CONV_KERNEL}, stride {CONV_STRIDE}) need "
                                 f"{MIN_IMAGE_SIDE}..{MAX_IMAGE_SIDE}")
        if not 1 <= self.conv_depth <= MAX_CONV_DEPTH:
            raise ValueError(f"conv_depth is {self.conv_depth}; expected 1..{MAX_CONV_DEPTH}")
        pixels = self.image_height * self.image_width * self.image_channels
        if self.obs_dim != pixels:
            raise ValueError(f"obs_dim is {self.obs_dim}; an image model's obs_dim is "
                             f"image_height*image_width*image_channels = {pixels}")

    def to_dict(self):
        return asdict(self)


OBS_TYPES = ("vector", "image")
CONV_LAYERS, CONV_KERNEL, CONV_STRIDE = 4, 4, 2
MAX_IMAGE_SIDE = 512
MAX_CONV_DEPTH = 512  # the last convolution has 8 * conv_depth channels, at most 4096


def conv_output_size(n, layers=CONV_LAYERS):
    """Spatial size after `layers` convolutions (kernel 4, stride 2, no padding); <= 0 when
    the input is too small."""
    for _ in range(layers):
        if n < CONV_KERNEL:
            return 0
        n = (n - CONV_KERNEL) // CONV_STRIDE + 1
    return n


MIN_IMAGE_SIDE = next(n for n in range(1, 1000) if conv_output_size(n) >= 1)  # 46


def _activation(name):
    if name == "relu":
        return F.relu
    if name == "elu":
        return F.elu
    raise ValueError(f"unknown activation {name!r} (expected 'relu' or 'elu')")


def _mlp(sizes):
    """Linear layers only; the activation is applied between them by the caller."""
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))


def normalise_image(image):
    """uint8 (or float 0..255) pixels -> float32 x / 255 - 0.5 (PlaNet)."""
    return image.to(torch.float32) / 255.0 - 0.5


class ConvEncoder(nn.ModuleList):
    """PlaNet's convolutional image encoder: 4 convolutions (kernel 4, stride 2, no padding),
    d, 2d, 4d, 8d channels, the activation after each; the model file's conv_encoder.{0..3}.

    forward(image [..., H, W, C], uint8 or float in 0..255) -> features [..., 8d * h4 * w4],
    flattened channel-major (C x H x W, torch.flatten's order). RSSM applies encoder_out and
    the activation to them to get the embedding.
    """

    def __init__(self, height, width, channels, depth, act):
        sizes = [channels, depth, 2 * depth, 4 * depth, 8 * depth]
        super().__init__(nn.Conv2d(a, b, CONV_KERNEL, stride=CONV_STRIDE)
                         for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = act
        self.image_shape = (height, width, channels)
        self.out_hw = (conv_output_size(height), conv_output_size(width))
        self.out_size = 8 * depth * self.out_hw[0] * self.out_hw[1]

    def forward(self, image):
        if tuple(image.shape[-3:]) != self.image_shape:
            raise ValueError(f"image batch has shape {list(image.shape)}; expected "
                             f"[..., {', '.join(map(str, self.image_shape))}] (H, W, C)")
        lead = image.shape[:-3]
        x = normalise_image(image).reshape(-1, *self.image_shape).permute(0, 3, 1, 2)
        for conv in self:
            x = self.act(conv(x))
        return x.reshape(*lead, self.out_size)


class ConvDecoder(nn.Module):
    """Training-only pixel decoder for image models (never in a served file: export_model
    leaves it out). The encoder mirrored: a linear layer from [h, z] to [8d, h4, w4], then 4
    transposed convolutions (kernel 4, stride 2; output_padding lands exactly on each of the
    encoder's sizes), the activation after each but the last. Returns the normalised image
    [..., H, W, C] (x / 255 - 0.5); replace it at will, only its `decoder.` prefix matters."""

    def __init__(self, in_size, height, width, channels, depth, act):
        super().__init__()
        hs, ws = [height], [width]
        for _ in range(CONV_LAYERS):
            hs.append(conv_output_size(hs[-1], 1))
            ws.append(conv_output_size(ws[-1], 1))
        sizes = [8 * depth, 4 * depth, 2 * depth, depth, channels]
        self.act = act
        self.image_shape = (height, width, channels)
        self.start = (8 * depth, hs[-1], ws[-1])
        self.fc = nn.Linear(in_size, 8 * depth * hs[-1] * ws[-1])
        self.deconv = nn.ModuleList(
            nn.ConvTranspose2d(sizes[i], sizes[i + 1], CONV_KERNEL, stride=CONV_STRIDE,
                               output_padding=(hs[-i - 2] - (2 * hs[-i - 1] + 2),
                                               ws[-i - 2] - (2 * ws[-i - 1] + 2)))
            for i in range(CONV_LAYERS))

    def forward(self, x):
        lead = x.shape[:-1]
        y = self.fc(x).reshape(-1, *self.start)
        for i, layer in enumerate(self.deconv):
            y = layer(y)
            if i < CONV_LAYERS - 1:
                y = self.act(y)
        return y.permute(0, 2, 3, 1).reshape(*lead, *self.image_shape)


class RSSM(nn.Module):
    def __init__(self, cfg: RSSMConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        O, A = cfg.obs_dim, cfg.action_dim
        D, S, H, E = cfg.deter, cfg.stoch, cfg.hidden, cfg.embed
        self.act = _activation(cfg.activation)
        if cfg.is_image:  # tensor order: conv_encoder.*, encoder_out.*, then as below
            self.conv_encoder = ConvEncoder(cfg.image_height, cfg.image_width,
                                            cfg.image_channels, cfg.conv_depth, self.act)
            self.encoder_out = nn.Linear(self.conv_encoder.out_size, E)
        else:
            self.register_buffer("obs_mean", torch.zeros(O))
            self.register_buffer("obs_std", torch.ones(O))
            self.encoder = _mlp([O, H, E])
        self.img_in = nn.Linear(S + A, H)
        self.gru = nn.GRUCell(H, D)
        self.prior = _mlp([D, H, 2 * S])
        self.posterior = _mlp([D + E, H, 2 * S])
        self.reward = _mlp([D + S, H, H, 1])
        self.value = _mlp([D + S, H, H, 1]) if cfg.has_value else None
        if not cfg.has_decoder:
            self.decoder = None
        elif cfg.is_image:
            self.decoder = ConvDecoder(D + S, cfg.image_height, cfg.image_width,
                                       cfg.image_channels, cfg.conv_depth, self.act)
        else:
            self.decoder = _mlp([D + S, H, H, O])

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
        """Raw observation -> the encoder's input (images: x / 255 - 0.5, same shape)."""
        if self.cfg.is_image:
            return normalise_image(obs)
        return (obs - self.obs_mean) / self.obs_std

    def encode(self, obs):
        """Raw observation [..., O] -> embedding [..., E] (both layers activated); for an
        image model obs is an image batch [..., H, W, C], uint8 or float in 0..255."""
        if self.cfg.is_image:
            return self.act(self.encoder_out(self.conv_encoder(obs)))
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
        """Normalised observation reconstruction (multiply by obs_std, add obs_mean for raw);
        an image model's (training-only) decoder gives [..., H, W, C] in x / 255 - 0.5."""
        if self.cfg.is_image:
            return self.decoder(torch.cat([h, z], -1))
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
