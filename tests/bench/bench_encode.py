#!/usr/bin/python3
"""bench_encode.py BENCH_ENCODE_BIN OUTDIR [--repeats N] [--rounds R] [--size HxWxC]
                                           [--conv-depth d] [--embed E] [--cpu N]

The image encoder on one core: librssm (rssm_encode_image, on its packed kernel and on
OpenBLAS) vs PyTorch (RSSM.encode, torch and its OpenBLAS at one thread), one image at a
time, on the same random model file: by default PlaNet's 64x64x3 with conv depth 32 and a
1024-wide embedding. Both run pinned to the same CPU, in R alternating rounds of N encodes
each (the machine may be shared: each side's best round median is reported, and the ratio
of those). Also the whole belief update of an image model in C (rssm_observe_image).
Prints a table, then one JSON line per measurement. Registered in suite 'bench' (not CI).
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

import rssm_testlib as lib


def encoder_flops(cfg):
    """Multiply-adds x 2 of the 4 convolutions and encoder_out for one image."""
    h, w, c, total = cfg.image_height, cfg.image_width, cfg.image_channels, 0
    for i in range(4):
        h, w, cout = (h - 4) // 2 + 1, (w - 4) // 2 + 1, cfg.conv_depth << i
        total += 2 * h * w * cout * 16 * c
        c = cout
    return total + 2 * cfg.embed * c * h * w


@torch.no_grad()
def torch_round(model, image, reps):
    times = []
    for i in range(reps + 20):
        t0 = time.perf_counter()
        model.encode(image)
        if i >= 20:
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"impl": "torch", "path": f"torch {torch.__version__}",
            "median_ms": times[reps // 2], "min_ms": times[0],
            "mean_ms": sum(times) / reps}


def c_round(binary, path, reps, gemm):
    env = dict(os.environ, MPC_RSSM_GEMM=gemm, OPENBLAS_NUM_THREADS="1")
    run = subprocess.run([binary, path, str(reps)], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        raise RuntimeError(run.stderr.strip())
    return json.loads(run.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("bench_bin")
    p.add_argument("outdir")
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", default="64x64x3")
    p.add_argument("--conv-depth", type=int, default=32)
    p.add_argument("--embed", type=int, default=1024)
    p.add_argument("--cpu", type=int, default=None, help="CPU to pin to (last allowed)")
    args = p.parse_args()
    H, W, C = (int(x) for x in args.size.split("x"))
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # the C binary inherits it
    lib.set_threads(1, 1)
    os.makedirs(args.outdir, exist_ok=True)
    path = os.path.join(args.outdir, f"encode-{H}x{W}x{C}-d{args.conv_depth}.safetensors")
    model = lib.random_model(seed=0, obs_type="image", image_height=H, image_width=W,
                             image_channels=C, conv_depth=args.conv_depth, action_dim=1,
                             deter=200, stoch=30, hidden=200, embed=args.embed,
                             has_decoder=False)
    lib.export_model(model, path)
    image = lib.random_images(model, 1, seed=1).to(torch.uint8)
    flops = encoder_flops(model.cfg)
    print(f"image encoder, one {H}x{W}x{C} image per call, conv depth {args.conv_depth}, "
          f"embed {args.embed}: {flops / 1e6:.1f} MFLOP; CPU {cpu}, one thread; "
          f"{args.rounds} alternating rounds of {args.repeats}; torch {torch.__version__}")
    rounds = {"packed kernel": [], "OpenBLAS": [], "torch": []}
    for r in range(args.rounds):
        rounds["packed kernel"].append(c_round(args.bench_bin, path, args.repeats, "kernel"))
        rounds["torch"].append(torch_round(model, image, args.repeats))
        rounds["OpenBLAS"].append(c_round(args.bench_bin, path, args.repeats, "blas"))
    best = {}
    for name, rows in rounds.items():
        if rows and rows[0]["path"] != name and name != "torch":
            continue  # no AVX2 kernel on this CPU: the "kernel" run was OpenBLAS
        best[name] = min(rows, key=lambda x: x["median_ms"])
    torch_ms = best["torch"]["median_ms"]
    for name, row in best.items():
        medians = ", ".join(f"{x['median_ms']:.3f}" for x in rounds[name])
        extra = (f"  observe_image {row['observe_median_ms']:.3f} ms"
                 if "observe_median_ms" in row else "")
        print(f"  {name:14s} median {row['median_ms']:7.3f} ms (rounds: {medians})  "
              f"min {row['min_ms']:7.3f} ms  {flops / row['median_ms'] / 1e6:6.1f} GFLOP/s  "
              f"torch/this {torch_ms / row['median_ms']:5.2f}x{extra}")
    for name, rows in rounds.items():
        for i, row in enumerate(rows):
            print(json.dumps(dict(row, round=i, size=args.size, conv_depth=args.conv_depth,
                                  embed=args.embed, cpu=cpu, mflop=round(flops / 1e6, 2))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
