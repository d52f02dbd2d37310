"""cem_torch.py: PlaNet's CEM written in PyTorch the natural batched way (the baseline that
mpc-plan-bench's C planner is compared with; same model file, same J, K, I, H).

All J candidates go through the RSSM as one batch per imagination step; sampled latents;
top-K refit with the population std, like libplanner's plain CEM.
"""
import time

import torch

from rssm_testlib import set_threads


@torch.no_grad()
def cem_plan(model, h0, z0, low, high, J=1000, K=100, I=10, H=12, gen=None):
    """Returns (first action [A], predicted return of the best candidate, mean [H, A])."""
    A = low.numel()
    mean = ((low + high) / 2).expand(H, A).clone()
    std = ((high - low) / 2).expand(H, A).clone()
    best = None
    for _ in range(I):
        a = mean.unsqueeze(1) + std.unsqueeze(1) * torch.randn(H, J, A, generator=gen)
        a = torch.max(torch.min(a, high), low)
        h, z = h0.expand(J, -1), z0.expand(J, -1)
        ret = torch.zeros(J)
        for t in range(H):
            h, (pm, ps) = model.imagine_step(h, z, a[t])
            z = pm + ps * torch.randn(pm.shape, generator=gen)
            ret += model.predict_reward(h, z)
        top = ret.topk(K)
        best = float(top.values[0])
        elites = a[:, top.indices]
        mean, std = elites.mean(1), elites.std(1, unbiased=False)
    return mean[0], best, mean


def time_plans(model, low, high, J, K, I, H, threads, plans, seed=0, cpu=False,
               blas_threads=None):
    """Seconds of each of `plans` plans (after one warm-up) on `threads` torch threads and
    `blas_threads` OpenBLAS threads (default: the same): wall time, or with cpu=True the
    process CPU time (steadier on a busy machine)."""
    set_threads(threads, blas_threads)
    gen = torch.Generator().manual_seed(seed)
    c = model.cfg
    h0 = torch.tanh(0.5 * torch.randn(1, c.deter, generator=gen))
    z0 = torch.randn(1, c.stoch, generator=gen)
    cem_plan(model, h0, z0, low, high, J, K, 1, H, gen)
    clock = time.process_time if cpu else time.perf_counter
    times = []
    for _ in range(plans):
        t0 = clock()
        cem_plan(model, h0, z0, low, high, J, K, I, H, gen)
        times.append(clock() - t0)
    return times
