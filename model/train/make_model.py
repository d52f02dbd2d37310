#!/usr/bin/python3
"""make_model.py: write a randomly initialised mpc-rssm model file (for tests and demos).

Weights use PyTorch's default initialisation (seeded); obs_mean/obs_std are random too so
that observation normalisation is exercised by whoever loads the file. --image HxWxC makes
an image model (PlaNet's conv encoder; pixels normalised as x / 255 - 0.5, no decoder).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from mpc_rssm import RSSM, RSSMConfig, export_model  # noqa: E402

DESCRIPTION = """\
Write a randomly initialised RSSM model file (model/FORMAT.md) that mpcd, mpc-model and
the planner tests can load. The weights are PyTorch's default init for the given --seed;
obs_mean ~ N(0, 1) and obs_std ~ U(0.5, 2) so normalisation is not the identity.
With --image HxWxC the model observes H x W x C uint8 images (C = 1 or 3) through PlaNet's
convolutional encoder of depth --conv-depth; obs_dim is then H*W*C and the file has no
decoder (an image model's pixel decoder is training-only)."""

EPILOG = """\
examples:
  make_model.py --obs-dim 5 --action-dim 1 --out /tmp/cartpole-random.safetensors
  make_model.py --obs-dim 3 --action-dim 2 --action-low=-2,-3 --action-high=2,3 --out m.safetensors
  (write lists that start with "-" as --action-low=... so they are not read as options)
  make_model.py --obs-dim 17 --action-dim 6 --deter 64 --stoch 8 --hidden 64 --embed 32 \\
                --activation elu --value --no-decoder --seed 3 --out small.safetensors
  make_model.py --image 64x64x3 --conv-depth 32 --action-dim 1 --embed 1024 --out pixels.safetensors

exit status: 0 written, 1 export failed, 2 bad arguments."""


def floats(text):
    return [float(x) for x in text.split(",") if x.strip()]


def image_size(text):
    try:
        h, w, c = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HxWxC, e.g. 64x64x3") from None
    return h, w, c


def build_parser():
    p = argparse.ArgumentParser(prog="make_model.py", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--obs-dim", type=int, metavar="O",
                   help="observation size (required unless --image)")
    p.add_argument("--action-dim", type=int, required=True, metavar="A", help="action size")
    p.add_argument("--deter", type=int, default=200, metavar="D", help="GRU state size (200)")
    p.add_argument("--stoch", type=int, default=30, metavar="S", help="latent size (30)")
    p.add_argument("--hidden", type=int, default=200, metavar="H", help="MLP width (200)")
    p.add_argument("--embed", type=int, default=200, metavar="E", help="embedding size (200)")
    p.add_argument("--min-std", type=float, default=0.1, help="std floor (0.1)")
    p.add_argument("--activation", choices=["relu", "elu"], default="relu")
    p.add_argument("--value", action="store_true", help="include a value head")
    p.add_argument("--no-decoder", action="store_true", help="omit the observation decoder")
    p.add_argument("--image", type=image_size, metavar="HxWxC",
                   help="an image model observing H x W x C uint8 images (C = 1 or 3)")
    p.add_argument("--conv-depth", type=int, default=32, metavar="d",
                   help="image models: channels of the first convolution (32)")
    p.add_argument("--seed", type=int, default=0, help="RNG seed (0)")
    p.add_argument("--task", default="random", help="task name in metadata (random)")
    p.add_argument("--action-low", type=floats, metavar="X[,X..]",
                   help="lower action bounds: one value or A values (default -1)")
    p.add_argument("--action-high", type=floats, metavar="X[,X..]",
                   help="upper action bounds: one value or A values (default 1)")
    p.add_argument("--control-period", type=float, default=0.05, metavar="SECONDS",
                   help="control period in seconds (0.05)")
    p.add_argument("--discount", type=float, default=0.99, help="discount (0.99)")
    p.add_argument("--out", required=True, metavar="FILE", help="model file to write")
    return p


def bounds(values, default, n, name, parser):
    values = values or [default]
    if len(values) == 1:
        values = values * n
    if len(values) != n:
        parser.error(f"--{name}: expected 1 or {n} values, got {len(values)}")
    return values


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    image = {}
    if args.image:
        h, w, c = args.image
        image = dict(obs_type="image", image_height=h, image_width=w, image_channels=c,
                     conv_depth=args.conv_depth)
        if args.obs_dim is None:
            args.obs_dim = h * w * c
    elif args.obs_dim is None:
        parser.error("--obs-dim is required (or --image HxWxC for an image model)")
    for name in ("obs_dim", "action_dim", "deter", "stoch", "hidden", "embed"):
        limit = 512 * 512 * 3 if name == "obs_dim" and image else 4096
        if not 1 <= getattr(args, name) <= limit:
            parser.error(f"--{name.replace('_', '-')} must be in 1..{limit}")
    low = bounds(args.action_low, -1.0, args.action_dim, "action-low", parser)
    high = bounds(args.action_high, 1.0, args.action_dim, "action-high", parser)
    torch.manual_seed(args.seed)
    cfg = RSSMConfig(obs_dim=args.obs_dim, action_dim=args.action_dim, deter=args.deter,
                     stoch=args.stoch, hidden=args.hidden, embed=args.embed,
                     min_std=args.min_std, activation=args.activation,
                     has_value=args.value, has_decoder=not args.no_decoder and not image,
                     **image)
    try:
        model = RSSM(cfg)
    except ValueError as e:
        parser.error(f"--image/--conv-depth: {e}")
    if not cfg.is_image:
        with torch.no_grad():
            model.obs_mean.copy_(torch.randn(cfg.obs_dim))
            model.obs_std.copy_(torch.rand(cfg.obs_dim) * 1.5 + 0.5)
    meta = {"task": args.task, "name": f"{args.task}-random-seed{args.seed}",
            "action_low": low, "action_high": high,
            "control_period_s": args.control_period, "discount": args.discount,
            "trainer": "make_model.py (random init)", "seed": args.seed}
    try:
        export_model(model, args.out, meta)
    except (OSError, ValueError) as e:
        print(f"make_model.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
