"""Solve the DESIGN.md example MFG, print a summary, save the figure and the result.

Agents start around x = 0.3, want to reach x = 0.8 at time T = 1 (terminal cost
2 (x - 0.8)^2), pay |α|²/2 for moving and 0.2·m for standing in a crowd.

    python examples/quickstart.py                  # auto-selected backend
    python examples/quickstart.py --backend jax    # or numpy, numba, torch
    python examples/quickstart.py --output results --small

Writes ``examples/output/quickstart.png`` (the density m(t, x) as a heatmap, the value
function u(t, x) at a few times, the fixed-point residuals) and ``quickstart.npz`` (the
whole result; ``mfg_pde.load`` reads it back). ``--small`` (or the environment variable
``MFG_PDE_EXAMPLE_SMALL=1``) solves on a coarser grid; ``MFG_PDE_EXAMPLE_OUTPUT`` sets
the default output folder.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np

from mfg_pde import MFGProblem, solve_mfg

OUTPUT = Path(os.environ.get("MFG_PDE_EXAMPLE_OUTPUT", Path(__file__).resolve().parent / "output"))
SMALL = os.environ.get("MFG_PDE_EXAMPLE_SMALL", "") not in ("", "0")


def make_problem(Nx: int = 101, Nt: int = 50) -> MFGProblem:
    return MFGProblem(
        xmin=0.0,
        xmax=1.0,
        Nx=Nx,
        T=1.0,
        Nt=Nt,
        sigma=0.2,
        control_cost=1.0,
        running_cost=lambda x, m, t: 0.2 * m,  # congestion aversion
        terminal_cost=lambda x: 2 * (x - 0.8) ** 2,  # agents head for x = 0.8
        initial_density=lambda x: np.exp(-50 * (x - 0.3) ** 2),
        boundary="noflux",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=None, help="numpy, numba, jax or torch")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="folder for the files")
    parser.add_argument("--small", action="store_true", default=SMALL, help="coarse grid")
    args = parser.parse_args()
    logging.basicConfig(format="%(name)s: %(message)s")
    logging.getLogger("mfg_pde").setLevel(logging.INFO)  # says which backend was chosen

    problem = make_problem(Nx=41, Nt=20) if args.small else make_problem()
    result = solve_mfg(
        problem, backend=args.backend, use_anderson=True, max_iterations=200, tolerance=1e-6
    )
    print(result.summary())
    mean = (result.M[-1] * result.x).sum() * problem.dx
    print(f"mean position at t = T: {mean:.4f}")
    figure = args.output / "quickstart.png"
    result.plot(figure)
    saved = result.save(args.output / "quickstart.npz")
    print(f"figure: {figure}")
    print(f"result: {saved}")
    if not result.converged:
        raise SystemExit(f"did not converge: {result.reason}")


if __name__ == "__main__":
    main()
