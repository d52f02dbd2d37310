"""mpc-train: fit the RSSM to recorded episodes with PlaNet's objective and export it."""
import argparse
import json
import os
import sys
import time

import torch

from .data import EpisodeBuffer, EpisodeError
from .rssm import RSSMConfig
from .tasks import task_info
from .export import load_model
from .train import (DISTILL_TUNE, PLANET, Trainer, TrainConfig, distill_student_config,
                    export, provenance, renormalise)

DESCRIPTION = """\
Train a PlaNet/Dreamer RSSM on episode files (common/EPISODES.md) and export it to the
mpc-rssm model format (model/FORMAT.md) for mpcd.

Objective: Gaussian reconstruction of normalised observations + reward MSE + KL(posterior ||
prior) with free nats, on chunks sampled uniformly from the episodes; Adam with gradient-norm
clipping. Observation statistics are computed from the data and stored in the model.
Checkpoints hold model, optimiser, step and RNG state: --resume continues bit-for-bit.

Pixel models (--obs pixels) train on the episodes' camera images (the `image` array) with
PlaNet's full pixel objective: a convolutional encoder, and a convolutional decoder that
reconstructs every pixel (training only, never exported). That costs ~30 s per step of
50 x 50 images on 2 cores. --distill-from MODEL is the cheap way: a trained state model's
dynamics, reward and value heads are kept, frozen, and only the pixel model's encoder (and
posterior) learns, so that its belief from images matches the state model's belief from
the states of the same moments (episodes recorded with both: mpc-sim --obs both).
"""

EPILOG = """\
examples:
  mpc-train --data runs/cartpole/episodes --task cartpole-swingup --steps 2000 \\
            --out runs/cartpole/model.safetensors --checkpoint runs/cartpole/ckpt.pt
  mpc-train --data runs/cartpole/episodes --checkpoint runs/cartpole/ckpt.pt --resume \\
            --steps 500 --out runs/cartpole/model.safetensors
  mpc-train --data runs/pixels/episodes --distill-from model/zoo/cartpole-swingup.safetensors \\
            --steps 3000 --out runs/pixels/model.safetensors --checkpoint runs/pixels/ckpt.pt

exit status: 0 ok, 1 training/export error, 2 bad arguments or unreadable data.
"""


def add_model_args(p):
    g = p.add_argument_group(
        "model (ignored with --resume: the checkpoint's are used). The defaults are far "
        "smaller than PlaNet's (200/30/200): one CEM iteration of 1000 candidates x 12 steps "
        "costs ~16 ms in librssm at this size against ~170 ms at PlaNet's, so the planner "
        "fits a few iterations into a 40 ms deadline")
    g.add_argument("--deter", type=int, default=32, help="GRU state size (default 32)")
    g.add_argument("--stoch", type=int, default=16, help="latent size (default 16)")
    g.add_argument("--hidden", type=int, default=32, help="MLP width (default 32)")
    g.add_argument("--embed", type=int, default=32, help="embedding size (default 32)")
    g.add_argument("--min-std", type=float, default=0.1, help="std floor (default 0.1)")
    g.add_argument("--activation", choices=("relu", "elu"), default="elu")
    g.add_argument("--value", action="store_true",
                   help="add a value head trained on imagined lambda-returns (Dreamer critic)")


def add_pixel_args(p):
    """mpc-train's pixel models: PlaNet's full objective or distillation."""
    d = TrainConfig()
    g = p.add_argument_group("pixel models (model/train/README.md, \"Pixel models\")")
    g.add_argument("--obs", choices=("state", "pixels"), default="state",
                   help="what the model observes: the state vectors (default) or the "
                        "episodes' camera images (the 'image' array)")
    g.add_argument("--conv-depth", type=int, default=32, metavar="D",
                   help="pixel models: channels of the first convolution; the encoder has "
                        "D, 2D, 4D, 8D (PlaNet: 32, the default)")
    g.add_argument("--distill-from", metavar="MODEL",
                   help="distil this trained state model into a pixel model (implies --obs "
                        "pixels; the model sizes are the teacher's)")
    g.add_argument("--distill-tune", choices=DISTILL_TUNE, default=d.distill_tune,
                   help="distillation: what the pixel model learns: its 'encoder' "
                        "(default), or also the 'posterior' layers (a second phase, with "
                        "--distill-recon; on --resume its optimiser moments start afresh)")
    g.add_argument("--distill-embed", type=float, default=d.distill_embed, metavar="W",
                   help="distillation: weight of the image embedding regressed on "
                        f"the teacher's embedding of the state ({d.distill_embed})")
    g.add_argument("--distill-recon", type=float, default=d.distill_recon, metavar="W",
                   help="distillation: weight of the state read back from the pixel "
                        "model's own belief through the teacher's decoder "
                        f"({d.distill_recon})")
    g.add_argument("--distill-belief", type=float, default=d.distill_belief, metavar="W",
                   help="distillation: weight of the pixel model's own belief (h and "
                        "the posterior mean, what the planner starts from) regressed on the "
                        f"teacher's belief from the states ({d.distill_belief})")


def add_train_args(p):
    d = TrainConfig()
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch", type=int, default=d.batch, help=f"sequences per batch ({d.batch})")
    g.add_argument("--length", type=int, default=d.length, help=f"chunk length ({d.length})")
    g.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate ({d.lr})")
    g.add_argument("--adam-eps", type=float, default=d.adam_eps, help=f"Adam eps ({d.adam_eps})")
    g.add_argument("--grad-clip", type=float, default=d.grad_clip,
                   help=f"gradient-norm clip ({d.grad_clip})")
    g.add_argument("--planet", action="store_true",
                   help="PlaNet's KL settings: free nats 3, no latent overshooting (the "
                        "defaults are what works from state vectors: free nats "
                        f"{d.free_nats}, overshooting {d.overshooting}); explicit "
                        "--free-nats / --overshooting still win")
    g.add_argument("--free-nats", type=float, default=None,
                   help=f"KL floor ({d.free_nats}; {PLANET['free_nats']} with --planet)")
    g.add_argument("--kl-scale", type=float, default=d.kl_scale, help=f"({d.kl_scale})")
    g.add_argument("--reward-scale", type=float, default=d.reward_scale,
                   help=f"({d.reward_scale})")
    g.add_argument("--overshooting", type=int, default=None, metavar="D",
                   help="latent overshooting distance, 0 = off "
                        f"({d.overshooting}; {PLANET['overshooting']} with --planet)")
    g.add_argument("--overshooting-scale", type=float, default=d.overshooting_scale)
    g.add_argument("--overshooting-stride", type=int, default=None, metavar="N",
                   help="start open-loop rollouts every N steps (1 = all; larger is cheaper; "
                        f"{d.overshooting_stride}, {PLANET['overshooting_stride']} with "
                        "--planet)")
    g.add_argument("--value-horizon", type=int, default=d.value_horizon)
    g.add_argument("--value-lambda", type=float, default=d.value_lambda)
    g.add_argument("--discount", type=float, default=d.discount,
                   help=f"discount for the value head, stored in the model ({d.discount})")
    g.add_argument("--seed", type=int, default=0, help="seed for init and sampling (0)")
    g.add_argument("--threads", type=int, default=1, choices=(1, 2),
                   help="torch threads (1: small matrices gain nothing from 2, and the "
                        "machine is shared)")


def with_recipe(fields, planet):
    """Fields given explicitly win; with --planet, PlaNet's values fill the others."""
    fields = {k: v for k, v in fields.items() if v is not None}
    if planet:
        fields = {**PLANET, **fields}
    return fields


def train_config_from(args):
    names = {f: getattr(args, f) for f in TrainConfig.__dataclass_fields__ if hasattr(args, f)}
    return TrainConfig(**with_recipe(names, getattr(args, "planet", False)))


def resume_overrides(build_parser, argv):
    """TrainConfig fields given explicitly on the command line. On --resume they replace the
    checkpoint's saved values (e.g. a new --free-nats or --lr); every other field keeps the
    value the run started with."""
    given = given_options(build_parser, argv)
    fields = {f: v for f, v in given.items() if f in TrainConfig.__dataclass_fields__}
    return with_recipe(fields, given.get("planet", False))


def given_options(build_parser, argv):
    """The options given explicitly on the command line: {dest: value}."""
    probe = build_parser()
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return vars(probe.parse_args(argv))


def pixel_option_conflict(given, resume):
    """Why the pixel options given cannot be run together ('' when they can)."""
    if resume:
        if "distill_from" in given:
            return "--distill-from: on --resume the teacher is the checkpoint's"
    elif given.get("distill_from") and given.get("obs") == "state":
        return "--distill-from makes a pixel model, not --obs state"
    elif not given.get("distill_from"):
        extra = [f"--{o.replace('_', '-')}" for o in given if o.startswith("distill_")]
        if extra:
            return (f"{', '.join(extra)} {'need' if len(extra) > 1 else 'needs'} "
                    f"--distill-from (or --resume of a distillation)")
    return ""


def resume_conflict(trainer, args, given):
    """Why the options given contradict the checkpoint's run ('' when they do not); takes
    the checkpoint's task into args.task."""
    c = trainer.model_cfg
    if trainer.teacher is None and any(o.startswith("distill_") for o in given):
        return "is not a distillation: the --distill-* options do not apply"
    if trainer.teacher is not None and "discount" in given:
        return "is a distillation: its discount is its teacher's (the value head's)"
    kind = "pixels" if c.is_image else "state"
    depth = c.conv_depth if c.is_image else None
    if given.get("obs", kind) != kind or ("conv_depth" in given and given["conv_depth"] != depth):
        held = f"a pixel model of conv depth {c.conv_depth}" if c.is_image else "a state model"
        return f"holds {held}, not what --obs / --conv-depth ask for"
    return resolve_task(args, given, (trainer.loop or {}).get("task"))


def model_config_from(args, buffer):
    image = {}
    if getattr(args, "obs", "state") == "pixels":
        H, W, C = buffer.image_shape
        image = dict(obs_type="image", image_height=H, image_width=W, image_channels=C,
                     conv_depth=args.conv_depth)
    return RSSMConfig(obs_dim=0 if image else buffer.obs_dim, action_dim=buffer.action_dim,
                      deter=args.deter, stoch=args.stoch, hidden=args.hidden,
                      embed=args.embed, min_std=args.min_std, activation=args.activation,
                      has_value=args.value, has_decoder=True, **image)


def teacher_mismatch(name, cfg, buffer):
    """Why a state teacher cannot teach on these episodes ('' when it can)."""
    if (cfg.obs_dim, cfg.action_dim) != (buffer.obs_dim, buffer.action_dim):
        return (f"{name} takes {cfg.obs_dim} observations and {cfg.action_dim} actions; the "
                f"episodes have {buffer.obs_dim} and {buffer.action_dim} (distillation needs "
                f"episodes with both states and images: mpc-sim --obs both or pixels)")
    return ""


def read_teacher(path):
    """The state model to distil -> (teacher, its metadata, source text); raises ValueError
    (ModelFileError is one) saying why it cannot teach."""
    import hashlib
    teacher, meta = load_model(path)
    if teacher.cfg.is_image:
        raise ValueError(f"{path} is a pixel model; distillation needs a state model")
    with open(path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    return teacher, meta, f"{os.path.basename(path)} sha256 {sha}"


def resolve_task(args, given, known):
    """The task of a run whose model already has one (`known`, or None): --task may only
    repeat it. Returns why not ('' when fine) and sets args.task."""
    if known is None:
        return ""
    if "task" in given and args.task != known:
        return f"is of task {known!r}, not --task {args.task}"
    args.task = known
    return ""


def export_metadata(trainer, buffer, task, info, extra=None):
    """Everything the model file records besides the architecture."""
    meta = {
        "task": task,
        "name": task,
        "control_period_s": info["control_period_s"],
        "action_repeat": info["action_repeat"],
        "action_low": [float(x) for x in trainer.action_low],
        "action_high": [float(x) for x in trainer.action_high],
        "discount": trainer.cfg.discount,
    }
    meta.update(provenance(trainer, buffer, extra))
    return meta


def build_parser():
    p = argparse.ArgumentParser(prog="mpc-train", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", action="append", required=True, metavar="DIR",
                   help="directory of .npz episodes (repeatable)")
    p.add_argument("--out", metavar="FILE", help="model file to export (.safetensors)")
    p.add_argument("--task", default="cartpole-swingup",
                   help="task name (metadata; default cartpole-swingup, or the teacher's with "
                        "--distill-from, or the checkpoint's on --resume)")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps to run (1000)")
    p.add_argument("--checkpoint", metavar="FILE", help="checkpoint to write (and --resume)")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="N")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--plot", metavar="PNG", help="write loss curves here")
    p.add_argument("--eval-return", type=float, help="evaluation return to record in metadata")
    p.add_argument("--control-period", type=float, help="seconds per control step")
    p.add_argument("--action-low", type=float, nargs="+")
    p.add_argument("--action-high", type=float, nargs="+")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--json", action="store_true", help="print final losses as JSON")
    add_model_args(p)
    add_pixel_args(p)
    add_train_args(p)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.resume and not args.checkpoint:
        print("mpc-train: --resume needs --checkpoint", file=sys.stderr)
        return 2
    if args.steps < 0:
        print("mpc-train: --steps must be >= 0", file=sys.stderr)
        return 2
    given = given_options(build_parser, argv)
    conflict = pixel_option_conflict(given, args.resume)
    if conflict:
        print(f"mpc-train: {conflict}", file=sys.stderr)
        return 2
    trainer = teacher = None
    if args.distill_from:
        try:
            teacher, teacher_meta, source = read_teacher(args.distill_from)
        except (OSError, ValueError) as e:
            print(f"mpc-train: --distill-from: {e}", file=sys.stderr)
            return 2
        conflict = resolve_task(args, given, teacher_meta.get("task"))
        if conflict:
            print(f"mpc-train: {args.distill_from} {conflict}", file=sys.stderr)
            return 2
    if args.resume:  # the checkpoint's model says what the episodes must hold
        try:
            trainer = Trainer.load(args.checkpoint, resume_overrides(build_parser, argv))
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            print(f"mpc-train: cannot resume from {args.checkpoint}: {e}", file=sys.stderr)
            return 2
        why = resume_conflict(trainer, args, given)
        if why:
            print(f"mpc-train: {args.checkpoint} {why}", file=sys.stderr)
            return 2
        c = trainer.model_cfg
        args.obs = "pixels" if c.is_image else "state"
    elif args.distill_from:
        args.obs = "pixels"
    try:
        buffer = EpisodeBuffer(args.data, images=args.obs == "pixels")
    except EpisodeError as e:
        print(f"mpc-train: {e}", file=sys.stderr)
        return 2
    if len(buffer) == 0:
        print(f"mpc-train: no .npz episodes in {', '.join(args.data)}", file=sys.stderr)
        return 2
    info = task_info(args.task, buffer.action_dim)
    if args.control_period is not None:
        info["control_period_s"] = args.control_period
    low = args.action_low or info["action_low"]
    high = args.action_high or info["action_high"]
    if len(low) != buffer.action_dim or len(high) != buffer.action_dim:
        print(f"mpc-train: action bounds need {buffer.action_dim} values", file=sys.stderr)
        return 2
    if trainer is not None:
        c = trainer.model_cfg
        seen = (c.image_height, c.image_width, c.image_channels) if c.is_image else (c.obs_dim,)
        data = tuple(buffer.image_shape) if c.is_image else (buffer.obs_dim,)
        why = "" if seen == data else (f"checkpoint and data disagree on the observation "
                                       f"shape ({seen} against {data})")
        if not why and trainer.teacher is not None:
            why = teacher_mismatch("the checkpoint's teacher", trainer.teacher.cfg, buffer)
        if why:
            print(f"mpc-train: {why}", file=sys.stderr)
            return 2
    elif teacher is not None:
        try:
            if "discount" in given:
                raise ValueError("--discount: a distillation keeps its teacher's discount "
                                 "(the value head's)")
            why = teacher_mismatch(args.distill_from, teacher.cfg, buffer)
            if why:
                raise ValueError(why)
            tc = train_config_from(args)
            tc.discount = teacher_meta.get("discount", tc.discount)
            trainer = Trainer(distill_student_config(teacher.cfg, buffer.image_shape,
                                                     args.conv_depth), tc, low, high, teacher)
        except ValueError as e:
            print(f"mpc-train: --distill-from: {e}", file=sys.stderr)
            return 2
        trainer.teacher_source = source
    else:
        trainer = Trainer(model_config_from(args, buffer), train_config_from(args), low, high)
        if args.obs == "state":
            renormalise(trainer.model, *buffer.obs_stats())
    print(f"mpc-train: {len(buffer)} episodes, {buffer.num_steps} steps, "
          f"start at step {trainer.step}", file=sys.stderr)
    left = args.steps
    summary = {}
    # optimiser wall time over all sittings, and the task (the export's metadata)
    loop = {"wall_s": 0.0, **(trainer.loop or {}), "task": args.task}
    while left > 0:
        n = min(left, args.checkpoint_every) if args.checkpoint else left
        t0 = time.monotonic()
        summary = trainer.fit(buffer, n, progress=not args.no_progress)
        loop["wall_s"] += time.monotonic() - t0
        left -= n
        if args.checkpoint:
            trainer.save(args.checkpoint, loop)
    if args.checkpoint and args.steps == 0:
        trainer.save(args.checkpoint, loop)
    if args.plot and trainer.history:
        from .plot import plot_losses
        plot_losses(trainer.history, args.plot, title=f"{args.task}: RSSM training")
    if args.out:
        extra = {"wall_time_s": round(loop["wall_s"], 1)}
        if args.eval_return is not None:
            extra["eval_return"] = args.eval_return
        export(trainer, args.out, export_metadata(trainer, buffer, args.task, info, extra))
        print(f"mpc-train: wrote {args.out} (step {trainer.step})", file=sys.stderr)
    if args.json:
        print(json.dumps({"step": trainer.step, "losses": summary}))
    return 0
