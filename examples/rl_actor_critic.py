"""Learn the quickstart equilibrium by reinforcement learning and compare it with the PDE.

An actor-critic (mfg_pde.alg.rl.ActorCriticSolver, on torch) learns the congestion game
of examples/quickstart.py from simulated agents; the finite-difference solution on the
same grid is the referee. Prints the L1 distance of the densities, the exploitability
per outer iteration and the control error, and saves the picture: the learned density,
the critic, the exploitability against the iteration and the learned control against
-dU/dx / control_cost of the PDE solution.

    python examples/rl_actor_critic.py            # 101 x 50 grid, ~1 minute on 2 CPU cores
    python examples/rl_actor_critic.py --small    # a few seconds

``--small`` (or ``MFG_PDE_EXAMPLE_SMALL=1``) trains briefly on a coarse grid (the numbers
are then far from converged); ``MFG_PDE_EXAMPLE_OUTPUT`` sets the output folder. The
learning solver runs on torch whatever ``MFG_PDE_BACKEND`` says (it has no other backend).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from mfg_pde import solve_mfg
from mfg_pde.alg.rl import ActorCriticSolver
from mfg_pde.problems import design_example

OUTPUT = Path(os.environ.get("MFG_PDE_EXAMPLE_OUTPUT", Path(__file__).resolve().parent / "output"))
SMALL = os.environ.get("MFG_PDE_EXAMPLE_SMALL", "") not in ("", "0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=OUTPUT, help="folder for the picture")
    parser.add_argument("--small", action="store_true", default=SMALL, help="short run")
    args = parser.parse_args()

    problem = design_example(Nx=41, Nt=10) if args.small else design_example(Nx=101, Nt=50)
    small = dict(outer_iterations=3, warmup=2, critic_steps=60, actor_steps=60)
    options = dict(small, final_agents=20_000) if args.small else {}
    solver = ActorCriticSolver(problem, "torch", **options)
    result = solver.solve(verbose=True)
    pde = solve_mfg(problem, use_anderson=True, tolerance=1e-8, max_iterations=300)

    l1 = np.max(np.sum(np.abs(result.M - pde.M), axis=1) * problem.dx)
    reference = -np.gradient(pde.U, problem.dx, axis=1) / problem.control_cost
    present = pde.M[:-1] > 1e-3
    weights = pde.M[:-1][present]
    error = result.control[:-1][present] - reference[:-1][present]
    control_error = np.sqrt(
        np.sum(weights * error**2) / np.sum(weights * reference[:-1][present] ** 2)
    )
    print(result.summary())
    print("exploitability per outer iteration (fraction of the value range):")
    print("  " + " ".join(f"{v:.2%}" for v in result.metrics["relative_exploitability"]))
    print(f"density L1 to the FDM solution on the same grid (max over t): {l1:.4f}")
    print(f"control error (density-weighted relative L2 where m > 1e-3): {control_error:.3f}")
    figure = args.output / "rl_actor_critic.png"
    result.plot(figure, reference=pde)
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
