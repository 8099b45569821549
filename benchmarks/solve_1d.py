"""Time the quickstart problem (DESIGN.md §2) on every installed backend; print one table.

    python benchmarks/solve_1d.py [--backends numpy,jax] [--repeats 3] [--particles 100000]

For each backend: the first solve in the process (JAX compiles here) and the best of
``--repeats`` later solves (one for particles), both wall-clock around ``solve_mfg``,
the iteration count, and the largest difference from the numpy result relative to its
maximum. Then the same for the particle method (FP by particles, ``--particles``, seed 0,
at most ``--particle-iterations`` fixed-point iterations: sampling noise keeps its
residual above the 1e-6 tolerance, so it stops there), whose difference from the FDM
result is an L1 distance of densities (statistical, not round-off).
Run it on an idle machine; the table says which machine it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from mfg_pde import MFGProblem, available_backends, solve_mfg


def problem() -> MFGProblem:
    """The DESIGN.md §2 example: ``MFGProblem()``'s defaults (Nx=101, Nt=50, sigma=0.2,
    running cost 0.2 m, terminal cost 2 (x - 0.8)^2, m0 ~ exp(-50 (x - 0.3)^2))."""
    return MFGProblem()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    installed = [name for name, info in available_backends().items() if info["installed"]]
    parser.add_argument("--backends", default=",".join(installed))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--particles", type=int, default=100_000)
    parser.add_argument("--particle-iterations", type=int, default=20)
    args = parser.parse_args()
    names = [n.strip() for n in args.backends.split(",") if n.strip()]

    cpu = platform.processor() or platform.machine()
    print(f"machine: {platform.node()}, {cpu}, {os.cpu_count()} CPUs; numpy {np.__version__}")
    p = problem()
    options = dict(use_anderson=True, tolerance=1e-6)
    rows, reference = [], None
    for method in ("fdm", "particle"):
        extra = {}
        if method == "particle":
            # Sampling noise keeps the residual above 1e-6: the particle run stops at
            # --particle-iterations, and reports converged=False.
            extra = dict(
                num_particles=args.particles, seed=0, max_iterations=args.particle_iterations
            )
        for name in names:
            kwargs = {**options, **extra}
            first, t_first = timed(lambda: solve_mfg(p, method, name, **kwargs))  # noqa: B023
            best = min(
                timed(lambda: solve_mfg(p, method, name, **kwargs))[1]  # noqa: B023
                for _ in range(args.repeats if method == "fdm" else 1)
            )
            if method == "fdm" and reference is None:
                reference = first
            if method == "fdm":
                diff = max(
                    np.abs(first[k] - reference[k]).max() / np.abs(reference[k]).max()
                    for k in ("U", "M")
                )
                diff_text = f"{diff:.1e} rel"
            else:
                l1 = (np.abs(first.M - reference.M).sum(axis=1) * p.dx).max()
                diff_text = f"{l1:.3f} L1"
            rows.append(
                (
                    method,
                    name,
                    first.device,
                    first.iterations,
                    first.converged,
                    t_first,
                    best,
                    diff_text,
                )
            )
            print(f"  {method} {name}: first {t_first:.2f} s, best {best:.2f} s", flush=True)

    header = (
        "method",
        "backend",
        "device",
        "iterations",
        "converged",
        "first solve",
        "best solve",
        "vs numpy fdm",
    )
    print()
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for method, name, dev, it, conv, t1, tb, diff in rows:
        print(f"{method} | {name} | {dev} | {it} | {conv} | {t1:.2f} s | {tb:.2f} s | {diff}")


if __name__ == "__main__":
    main()
