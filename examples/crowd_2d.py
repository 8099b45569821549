"""A crowd leaving a room: a 2D Mean Field Game solved by finite differences.

The room is the unit square with no-flux walls and an exit in the middle of the right
wall, at (1, 0.5). Agents start in a blob around (0.3, 0.5), pay their distance to the
exit at T = 1 and ``c * m`` per unit time for standing in a crowd
(:func:`mfg_pde.problems.crowd_2d_example`, here with σ = 0.15, twice the
distance as terminal cost and congestion c = 0.3, so the crowd visibly travels; the
fixed point uses Anderson acceleration, as damped Picard cycles on this problem).
The example solves the game, then adapts a quadtree (:mod:`mfg_pde.geometry`) to the
final density and compares its leaf count with the uniform grid of the same finest cell.

Writes to ``examples/output/``: ``crowd_2d_density.png`` (density snapshots),
``crowd_2d.png`` (the standard result figure), ``crowd_2d_mesh.png`` (the adapted
leaves over the final density) and ``crowd_2d.npz`` (the result).

Run: ``python examples/crowd_2d.py [--backend numpy|numba|jax|torch] [--small]``.
The default 64 x 64 grid with 50 steps takes about a minute with numpy on a 2-core
machine (jax: seconds after its compile); ``--small`` (or ``MFG_PDE_EXAMPLE_SMALL=1``)
uses 24 x 24 and 16 steps; ``MFG_PDE_EXAMPLE_OUTPUT`` sets the output folder.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from scipy.interpolate import RegularGridInterpolator  # noqa: E402

from mfg_pde import solve_mfg  # noqa: E402
from mfg_pde.geometry import AdaptiveMesh, AMRRefinementCriteria  # noqa: E402
from mfg_pde.problems import crowd_2d_example  # noqa: E402

OUTPUT = Path(os.environ.get("MFG_PDE_EXAMPLE_OUTPUT", Path(__file__).resolve().parent / "output"))
SMALL = os.environ.get("MFG_PDE_EXAMPLE_SMALL", "") not in ("", "0")


def _exit_cost(x, y):
    """Twice the distance to the exit: agents care about reaching it."""
    return 2.0 * np.sqrt((x - 1.0) ** 2 + (y - 0.5) ** 2)


def adapt_to(density: np.ndarray, x: np.ndarray, y: np.ndarray, max_level: int, backend):
    """A quadtree adapted to ``density`` on the grid (bilinear between nodes)."""
    interpolate = RegularGridInterpolator((x, y), density)
    criteria = AMRRefinementCriteria(error_threshold=0.1, max_refinement_levels=max_level)
    mesh = AdaptiveMesh((x[0], x[-1], y[0], y[-1]), criteria, base_level=2, backend=backend)
    for _ in range(3 * max_level):
        values = mesh.sample(lambda px, py: interpolate(np.c_[px, py]))
        if not mesh.adapt({"M": values}).changed:
            break
    return mesh


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

    # The adapted mesh resolves the final crowd as finely as a 2^L x 2^L grid would.
    max_level = 5 if small else 7
    final = result.M[-1]
    mesh = adapt_to(final, result.x, result.y, max_level, backend)
    uniform = 4**max_level
    print(
        f"quadtree over the final density: {mesh.n_leaves} leaves against {uniform} cells of "
        f"the uniform {2**max_level} x {2**max_level} grid of the same finest cell "
        f"({mesh.n_leaves / uniform:.1%})"
    )

    fig, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
    image = ax.pcolormesh(result.x, result.y, final.T, shading="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label=f"m(T, x, y), T = {result.t[-1]:g}")
    x0, x1, y0, y1 = mesh.leaf_bounds().T
    boxes = np.stack([np.c_[x0, y0], np.c_[x1, y0], np.c_[x1, y1], np.c_[x0, y1]], axis=1)
    ax.add_collection(PolyCollection(boxes, facecolors="none", edgecolors="w", linewidths=0.3))
    ax.plot([1.0], [0.5], marker=">", color="tab:red", ms=12, label="exit")
    ax.set(
        xlabel="x",
        ylabel="y",
        aspect="equal",
        title=f"{mesh.n_leaves} quadtree leaves vs {uniform} uniform cells",
    )
    ax.legend(loc="upper left")
    fig.savefig(output / "crowd_2d_mesh.png", dpi=120)
    plt.close(fig)
    print(f"saved crowd_2d_density.png, crowd_2d.png, crowd_2d_mesh.png, crowd_2d.npz in {output}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default=None, help="numpy, numba, jax or torch")
    parser.add_argument("--small", action="store_true", help="24 x 24 grid, 16 steps")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    main(args.backend, args.small or SMALL, args.output)
