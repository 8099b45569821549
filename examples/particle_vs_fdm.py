"""The Fokker-Planck equation by finite differences and by particles: the same density,
up to the particles' sampling error.

    python examples/particle_vs_fdm.py
    python examples/particle_vs_fdm.py --particles 1000,10000,40000 --backend jax

Solves the DESIGN example (``mfg_pde.problems.design_example``) once with the FDM
Fokker-Planck solver and once per particle count with ``FPParticleSolver`` (Gaussian
KDE; the same seed in every iteration, so the fixed-point map is deterministic and
converges). The L1 distance between the densities is the particles' error: sampling
noise, of order N^(-1/2), plus the smoothing bias of the KDE, whose bandwidth (Scott's
rule) shrinks only like N^(-1/5), so the distance falls more slowly than N^(-1/2)
(0.09 -> 0.05 from N = 1000 to 10000 here). Writes
``examples/output/particle_vs_fdm.png``.
``--small`` (or ``MFG_PDE_EXAMPLE_SMALL=1``) uses a coarse grid and few particles;
``MFG_PDE_EXAMPLE_OUTPUT`` sets the output folder. numpy is the default backend: on a CPU
it is the fastest for this 1D size (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from mfg_pde import solve_mfg
from mfg_pde.problems import design_example

OUTPUT = Path(os.environ.get("MFG_PDE_EXAMPLE_OUTPUT", Path(__file__).resolve().parent / "output"))
SMALL = os.environ.get("MFG_PDE_EXAMPLE_SMALL", "") not in ("", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="numpy", help="numpy, numba, jax or torch")
    parser.add_argument("--particles", default=None, help="comma-separated particle counts")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="folder for the figure")
    parser.add_argument("--small", action="store_true", default=SMALL, help="coarse grid")
    args = parser.parse_args()
    if args.particles:
        counts = [int(n) for n in args.particles.split(",")]
    else:
        counts = [300, 1000] if args.small else [1_000, 10_000]
    problem = design_example(Nx=41, Nt=20) if args.small else design_example()
    options = dict(backend=args.backend, tolerance=1e-5, max_iterations=40 if args.small else 150)

    fdm = solve_mfg(problem, method="fdm", **options)
    print(f"fdm          {fdm.iterations:>4} iterations, {fdm.timings['total']:.2f} s")
    particles = {}
    for n in counts:
        result = solve_mfg(problem, method="particle", num_particles=n, seed=0, **options)
        l1 = np.abs(result.M - fdm.M).sum(axis=1) * problem.dx  # per time level
        particles[n] = (result, l1)
        status = "converged" if result.converged else "NOT converged"
        print(
            f"N = {n:<8} {result.iterations:>4} iterations ({status}), "
            f"{result.timings['total']:.2f} s, L1 distance from FDM: max over t {l1.max():.3f}"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_e, ax_r) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    largest, _ = particles[max(counts)]
    for n, colour in zip(np.linspace(0, problem.Nt, 4).astype(int), "bgrk", strict=True):
        ax_m.plot(problem.x, fdm.M[n], colour + "-", label=f"t = {problem.t[n]:.2f}")
        ax_m.plot(problem.x, largest.M[n], colour + "--")
    ax_m.set(
        xlabel="x",
        ylabel="m(t, x)",
        title=f"Density: FDM (solid), {max(counts)} particles (dashed)",
    )
    ax_m.legend(fontsize="small")
    for n, (_, l1) in particles.items():
        ax_e.plot(problem.t, l1, label=f"N = {n}")
    ax_e.set(xlabel="t", ylabel="L1 distance", title="Particles vs FDM: distance of densities")
    ax_e.legend()
    ax_r.semilogy(np.arange(1, fdm.iterations + 1), fdm.residuals["M"], label="FDM")
    for n, (result, _) in particles.items():
        ax_r.semilogy(np.arange(1, result.iterations + 1), result.residuals["M"], label=f"N = {n}")
    ax_r.set(xlabel="iteration", ylabel="relative L2 change of M", title="Fixed-point residual")
    ax_r.legend()
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / "particle_vs_fdm.png"
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
