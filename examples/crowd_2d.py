"""A crowd leaving a room: a 2D Mean Field Game solved by finite differences.

The room is the unit square with no-flux walls and an exit in the middle of the right
wall, at (1, 0.5). Agents start in a blob around (0.3, 0.5), pay their distance to the
exit at T = 1 and ``c * m`` per unit time for standing in a crowd
(:func:`mfg_pde.problems.crowd_2d_example`, here with σ = 0.15, twice the
distance as terminal cost and congestion c = 0.3, so the crowd visibly travels; the
fixed point uses Anderson acceleration, as damped Picard cycles on this problem).
The example solves the game on a uniform grid, then again on an adaptive quadtree
(:mod:`mfg_pde.geometry`, ``solve_mfg(problem, mesh=...)``): finite volumes on the
leaves, the mesh adapted to the density while the equilibrium forms, and compares the
leaves, the time and the density with the uniform grid of the same finest cell.

Writes to ``examples/output/``: ``crowd_2d_density.png`` (density snapshots),
``crowd_2d.png`` (the standard result figure), ``crowd_2d_mesh.png`` (the adaptive
solve: its density with the leaves over it, u, and the leaves per adapt) and
``crowd_2d.npz`` (the uniform result).

Run: ``python examples/crowd_2d.py [--backend numpy|numba|jax|torch] [--small]``.
The default 64 x 64 grid with 50 steps takes about a minute with numpy on a 2-core
machine (jax: seconds after its compile); ``--small`` (or ``MFG_PDE_EXAMPLE_SMALL=1``)
uses 24 x 24 and 16 steps; ``MFG_PDE_EXAMPLE_OUTPUT`` sets the output folder.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

from mfg_pde import solve_mfg  # noqa: E402
from mfg_pde.geometry import AdaptiveMesh, AMRRefinementCriteria  # noqa: E402
from mfg_pde.problems import crowd_2d_example  # noqa: E402

OUTPUT = Path(os.environ.get("MFG_PDE_EXAMPLE_OUTPUT", Path(__file__).resolve().parent / "output"))
SMALL = os.environ.get("MFG_PDE_EXAMPLE_SMALL", "") not in ("", "0")


def _exit_cost(x, y):
    """Twice the distance to the exit: agents care about reaching it."""
    return 2.0 * np.sqrt((x - 1.0) ** 2 + (y - 0.5) ** 2)


def main(backend: str | None = None, small: bool = SMALL, output: Path = OUTPUT) -> None:
    n, steps = (24, 16) if small else (64, 50)
    problem = crowd_2d_example(
        Nx=(n, n), Nt=steps, sigma=0.15, terminal_cost=_exit_cost, cost_parameters={"c": 0.3}
    )
    result = solve_mfg(problem, backend=backend, use_anderson=True, max_iterations=200)
    print(result.summary())
    if not result.converged:
        print(f"NOT converged: {result.reason}")

    output.mkdir(parents=True, exist_ok=True)
    result.plot_density(path=output / "crowd_2d_density.png")
    result.plot(path=output / "crowd_2d.png")
    result.save(output / "crowd_2d.npz")

    # The same game on the quadtree: leaves from level 2 up to the uniform grid's level,
    # refined where the density varies, while the fixed point converges.
    level = 5 if small else 6
    criteria = AMRRefinementCriteria(error_threshold=0.1, max_refinement_levels=level)
    mesh = AdaptiveMesh((0.0, 1.0, 0.0, 1.0), criteria, base_level=2, backend=backend)
    start = time.perf_counter()
    adaptive = solve_mfg(
        problem, mesh=mesh, adapt_on="M", use_anderson=True, max_iterations=200, tolerance=1e-6
    )
    seconds = time.perf_counter() - start
    print(adaptive)
    if not adaptive.converged:
        print(f"NOT converged on the quadtree: {adaptive.reason}")
    uniform = 4**level
    print(
        f"quadtree: {adaptive.n_leaves} leaves (levels {adaptive.levels.min()}-"
        f"{adaptive.levels.max()}) against {uniform} cells of the uniform {2**level} x "
        f"{2**level} grid of the same finest cell ({adaptive.n_leaves / uniform:.1%}), "
        f"{seconds:.1f} s; mass {adaptive.mass()[-1]:.15f}; leaves per adapt "
        f"{[entry['leaves'] for entry in adaptive.history]}"
    )
    adaptive.plot(path=output / "crowd_2d_mesh.png")
    print(f"saved crowd_2d_density.png, crowd_2d.png, crowd_2d_mesh.png, crowd_2d.npz in {output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default=None, help="numpy, numba, jax or torch")
    parser.add_argument("--small", action="store_true", help="24 x 24 grid, 16 steps")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    main(args.backend, args.small or SMALL, args.output)
