"""Time the planned 2D binned KDE and the 2D particle march on every backend.

Run ``python benchmarks/kde2d.py [--backends numpy,jax] [--particles 100000]``.

KDE: N particles ~ N(0.5, 0.15^2) per axis (clipped to the unit square) onto G x G
grids over [0, 1]^2, for h = dx (Scott's floor), h = 0.022 (Scott's rule for this
law at N = 10^5: 0.15 N^(-1/6)) and h = 0.05. The plan is built once (not timed);
each cell is the best of 3 calls after a first one (for JAX: a ``jax.jit`` of the
plan's call, whose first call compiles), synchronised before the clock stops.
March: ``FPParticleSolver.solve()`` of a 2D problem, first call and best of 3 later
ones, per time step. The script only calls ``backend.binned_kde`` and the solver, so
it also times older trees (``PYTHONPATH=<old tree> python benchmarks/kde2d.py``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from mfg_pde.backends import available_backends, create_backend


def _sync(backend, out):
    if backend.name == "jax":
        out.block_until_ready()
    elif backend.name == "torch" and str(backend.device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return out


def best_of(fn, repeats=3):
    first_start = time.perf_counter()
    fn()
    first = time.perf_counter() - first_start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return first, min(times)


def time_kde(name, n, grids):
    b = create_backend(name)
    rng = np.random.default_rng(0)
    pts = b.from_numpy(np.clip(rng.normal(0.5, 0.15, (n, 2)), 0.0, 1.0))
    for g in grids:
        axis = np.linspace(0.0, 1.0, g)
        for label, h in (("dx", 1.0 / (g - 1)), ("0.022", 0.022), ("0.05", 0.05)):
            try:
                plan = b.binned_kde((axis, axis), (h, h))
            except ValueError as err:
                print(f"{name:6s} {g:4d}^2 h={label:6s} refused: {err}")
                continue
            call = plan
            if name == "jax":
                import jax

                call = jax.jit(plan)
            first, best = best_of(lambda call=call: _sync(b, call(pts)))
            print(
                f"{name:6s} {g:4d}^2 h={label:6s} first {first * 1e3:8.1f} ms  "
                f"best of 3 {best * 1e3:8.1f} ms",
                flush=True,
            )


def time_march(name, n, g, nt):
    from mfg_pde import MFGProblem
    from mfg_pde.alg.numerical import FPParticleSolver

    problem = MFGProblem(
        domain=[(0.0, 1.0), (0.0, 1.0)],
        Nx=(g, g),
        T=0.5,
        Nt=nt,
        sigma=0.2,
        running_cost=lambda x, y, m, t: 0.1 * m,
        terminal_cost=lambda x, y: (x - 0.8) ** 2 + (y - 0.3) ** 2,
        initial_density=lambda x, y: np.exp(-((x - 0.4) ** 2 + (y - 0.6) ** 2) / 0.045),
    )
    fp = FPParticleSolver(problem, backend=name, num_particles=n, seed=0)
    first, best = best_of(fp.solve)
    print(
        f"{name:6s} march N={n} {g}^2 Nt={nt} h={np.round(fp.bandwidth, 4)}: first "
        f"{first:.2f} s, best of 3 {best:.3f} s = {best / nt * 1e3:.1f} ms per step",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(available_backends()))
    parser.add_argument("--particles", type=int, default=100_000)
    parser.add_argument("--grids", default="64,128")
    parser.add_argument("--march", action="store_true", help="also time the 2D march")
    args = parser.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {load:.2f}"
    )
    grids = [int(g) for g in args.grids.split(",")]
    for name in args.backends.split(","):
        time_kde(name, args.particles, grids)
        if args.march:
            time_march(name, args.particles, 64, 20)


if __name__ == "__main__":
    main()
