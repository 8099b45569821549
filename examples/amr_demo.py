"""Adapt a quadtree mesh to a 2D crowd density with a sharp front; save a picture.

The density is a crowd pressed against an exit: a smooth bulk whose edge is a steep front
(width 0.004), plus a faint background. It is given as cell averages on a uniform
1024 x 1024 grid; the mesh starts at 8 x 8 leaves and adapts until it stops changing,
each pass moving the density to the leaves conservatively. The picture shows the leaves
over the field and goes to ``examples/output/amr_demo.png``.

Run: ``python examples/amr_demo.py [--backend numpy|numba|jax|torch] [--small]`` (a few
seconds). ``--small`` (or ``MFG_PDE_EXAMPLE_SMALL=1``) uses 256 x 256 data;
``MFG_PDE_EXAMPLE_OUTPUT`` sets the output folder.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

from mfg_pde.geometry import AdaptiveMesh, AMRRefinementCriteria  # noqa: E402

OUTPUT = (
    Path(os.environ.get("MFG_PDE_EXAMPLE_OUTPUT", Path(__file__).resolve().parent / "output"))
    / "amr_demo.png"
)
SMALL = os.environ.get("MFG_PDE_EXAMPLE_SMALL", "") not in ("", "0")


def crowd_density(x, y):
    """A crowd heading for an exit at (1, 0.5): a sharp front on a smooth bulk."""
    distance = np.hypot((x - 1.0) / 1.4, y - 0.5)
    bulk = np.exp(-3.0 * distance**2)
    front = 0.5 * (1.0 - np.tanh((distance - 0.45) / 0.004))
    return 0.05 + bulk * front


def main(backend: str | None = None, small: bool = SMALL) -> None:
    grid_level = 8 if small else 10  # the data: 256² or 1024² cell averages
    n = 2**grid_level
    centres = (np.arange(n) + 0.5) / n
    grid = crowd_density(centres[:, None], centres[None, :])  # grid[i, j]: i along x
    criteria = AMRRefinementCriteria(error_threshold=0.05, max_refinement_levels=grid_level)
    mesh = AdaptiveMesh((0.0, 1.0, 0.0, 1.0), criteria, base_level=3, backend=backend)
    start = time.perf_counter()
    for step in range(20):
        density = mesh.from_uniform(grid)  # conservative: leaf averages of the grid
        stats = mesh.adapt({"M": density})
        print(
            f"pass {step}: refined {stats.refined} (balance {stats.balance}), "
            f"merged {stats.coarsened}, {stats.leaves} leaves, deepest level {stats.levels}"
        )
        if not stats.changed:
            break
    elapsed = time.perf_counter() - start
    density = mesh.from_uniform(grid)
    m = mesh.backend.to_numpy(density)
    mass_grid = grid.sum() / n**2
    mass_leaves = float(np.sum(m * mesh.leaves.areas()))
    stats = mesh.statistics()
    print(
        f"{mesh.n_leaves} leaves instead of {4**mesh.max_level} uniform cells at level "
        f"{mesh.max_level} ({mesh.n_leaves / 4**mesh.max_level:.1%}); adapted in {elapsed:.2f} s"
    )
    print(f"mass on the grid {mass_grid:.15f}, on the leaves {mass_leaves:.15f}")
    perf = stats["performance"]
    print(
        f"array kernels {perf['array_kernel_s']:.3f} s ({perf['backend']}), tree kernels "
        f"{perf['tree_kernel_s']:.3f} s ({perf['tree_kernel_impl']})"
    )

    fig, axes = plt.subplots(1, 2, figsize=(13, 6), constrained_layout=True)
    image = axes[0].imshow(grid.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
    fig.colorbar(image, ax=axes[0], label=f"density (uniform {n} x {n} data)")
    x0, x1, y0, y1 = mesh.leaf_bounds().T
    boxes = np.stack([np.c_[x0, y0], np.c_[x1, y0], np.c_[x1, y1], np.c_[x0, y1]], axis=1)
    axes[0].add_collection(PolyCollection(boxes, facecolors="none", edgecolors="w", linewidths=0.2))
    axes[0].set_title(f"{mesh.n_leaves} leaves over the density")
    cells = PolyCollection(boxes, array=m, cmap="viridis", edgecolors="k", linewidths=0.1)
    axes[1].add_collection(cells)
    fig.colorbar(cells, ax=axes[1], label="leaf average")
    axes[1].set_title("density averaged on the leaves (mass kept to round-off)")
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUTPUT, dpi=130)
    print(f"saved {OUTPUT}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default=None, help="numpy, numba, jax or torch")
    parser.add_argument("--small", action="store_true", help="256 x 256 data (fast)")
    args = parser.parse_args()
    main(args.backend, args.small or SMALL)
