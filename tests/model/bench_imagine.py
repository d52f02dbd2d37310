#!/usr/bin/python3
"""bench_imagine.py BENCH_BIN OUTDIR [--n N] [--repeats R] [--threads T,...] [--sizes D,S,H]

One batched imagination step (prior step + reward head) for N candidates, C (librssm) vs
PyTorch (CPU, torch.no_grad; threads shown as torch threads + its OpenBLAS threads) in one
run, on the same model file: by default deter=200, stoch=30, hidden=200 (embed=200, action
1: PlaNet's sizes). Prints a table and one JSON line per measurement; times are medians
over R repetitions after a warm-up.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

import rssm_testlib as lib


def torch_step(model, n, reps, threads, blas_threads):
    lib.set_threads(threads, blas_threads)
    h, z, a, _ = lib.reference_inputs(model, n, seed=1)
    times = []
    with torch.no_grad():
        for i in range(reps + 5):
            t0 = time.perf_counter()
            hn, (pm, ps) = model.imagine_step(h, z, a)
            model.predict_reward(hn, pm)
            if i >= 5:
                times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"impl": "torch", "n": n, "threads": threads, "blas_threads": blas_threads,
            "median_ms": round(times[reps // 2], 4),
            "min_ms": round(times[0], 4), "mean_ms": round(sum(times) / reps, 4)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("bench_bin")
    p.add_argument("outdir")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--threads", default="1,2")
    p.add_argument("--sizes", default="200,30,200", help="deter,stoch,hidden (200,30,200)")
    args = p.parse_args()
    D, S, H = (int(x) for x in args.sizes.split(","))
    os.makedirs(args.outdir, exist_ok=True)
    path = os.path.join(args.outdir, f"bench-{D}-{S}-{H}.safetensors")
    model = lib.random_model(seed=0, obs_dim=5, action_dim=1, deter=D, stoch=S, hidden=H,
                             embed=H)
    lib.export_model(model, path)
    print(f"imagination step (prior + reward), N={args.n}, D={D} S={S} H={H} A=1, "
          f"median of {args.repeats}; torch {torch.__version__}")
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        run = subprocess.run([args.bench_bin, path, str(args.n), str(args.repeats), str(threads)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(run.stdout))
        # torch threads + OpenBLAS threads. torch.set_num_threads(1) alone leaves its
        # OpenBLAS products on every CPU; with T > 1 CPUs, 1 + T is measured too (it is
        # torch's fastest: T + T has both pools spinning for the same CPUs)
        configs = [(threads, threads)] + ([(1, threads)] if threads > 1 else [])
        for torch_threads, blas_threads in configs:
            rows.append(torch_step(model, args.n, args.repeats, torch_threads, blas_threads))
    for r in rows:
        cfg = f"{r['threads']}+{r['blas_threads']}" if r["impl"] == "torch" else r["threads"]
        print(f"  {r['impl']:6s} threads={cfg!s:4s} median {r['median_ms']:8.3f} ms  "
              f"min {r['min_ms']:8.3f} ms")
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
