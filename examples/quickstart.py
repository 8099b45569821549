"""Solve the DESIGN.md example MFG and save a figure of the solution.

Agents start around x = 0.3, want to reach x = 0.8 at time T = 1 (terminal cost
2 (x - 0.8)^2), pay |α|²/2 for moving and 0.2·m for standing in a crowd.

    python examples/quickstart.py                  # auto-selected backend
    python examples/quickstart.py --backend jax    # or numpy, numba, torch
    python examples/quickstart.py --output out.png

The figure (default ``examples/output/quickstart.png``) shows the density m(t, x) as a
heatmap, the value function u(t, x) at a few times, and the fixed-point residuals.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from mfg_pde import MFGProblem, solve_mfg

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "output" / "quickstart.png"


def make_problem() -> MFGProblem:
    return MFGProblem(
        xmin=0.0,
        xmax=1.0,
        Nx=101,
        T=1.0,
        Nt=50,
        sigma=0.2,
        control_cost=1.0,
        running_cost=lambda x, m, t: 0.2 * m,  # congestion aversion
        terminal_cost=lambda x: 2 * (x - 0.8) ** 2,  # agents head for x = 0.8
        initial_density=lambda x: np.exp(-50 * (x - 0.3) ** 2),
        boundary="noflux",
    )


def plot(result, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # write a file; no display needed
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_u, ax_r) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")

    image = ax_m.pcolormesh(result.x, result.t, result.M, shading="auto", cmap="viridis")
    fig.colorbar(image, ax=ax_m, label="m(t, x)")
    ax_m.set(xlabel="x", ylabel="t", title="Density of agents")

    for n in np.linspace(0, len(result.t) - 1, 5).astype(int):
        ax_u.plot(result.x, result.U[n], label=f"t = {result.t[n]:.2f}")
    ax_u.set(xlabel="x", ylabel="u(t, x)", title="Value function")
    ax_u.legend(fontsize="small")

    k = np.arange(1, result.iterations + 1)
    ax_r.semilogy(k, result.residuals["U"], "o-", ms=3, label="U")
    ax_r.semilogy(k, result.residuals["M"], "s-", ms=3, label="M")
    ax_r.set(xlabel="iteration", ylabel="relative L2 change", title="Fixed-point residuals")
    ax_r.legend()

    status = "converged" if result.converged else "NOT converged"
    fig.suptitle(
        f"{result.solver}: {status} in {result.iterations} iterations, "
        f"{result.timings['total']:.2f} s on {result.device}"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None, help="numpy, numba, jax or torch")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("mfg_pde").setLevel(logging.INFO)  # says which backend was chosen

    result = solve_mfg(
        make_problem(),
        backend=args.backend,
        use_anderson=True,
        max_iterations=200,
        tolerance=1e-6,
    )
    print(result)
    mass = result.mass
    print(f"mass: min {mass.min():.15f}, max {mass.max():.15f}")
    dx = result.x[1] - result.x[0]
    print(f"mean position at t = T: {(result.M[-1] * result.x).sum() * dx:.4f}")
    plot(result, args.output)
    print(f"figure: {args.output}")
    if not result.converged:
        raise SystemExit(f"did not converge: {result.reason}")


if __name__ == "__main__":
    main()
