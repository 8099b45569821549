"""What an MFG solve on the adaptive quadtree returns: fields per leaf, the mesh, its history."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mfg_pde._plot import _finish
from mfg_pde._problem import MFGProblem


@dataclass
class AdaptiveMFGResult:
    """The solution on the leaves of the final mesh.

    Attributes
    ----------
    U, M : arrays ``(Nt + 1, n_leaves)``
        Value function (at the leaf centres) and density (leaf averages) per time level,
        leaves in the mesh's (Morton) order.
    converged : bool
        The iterate converged on a mesh that the last adapt left unchanged.
    reason : str
        Why the solve stopped (converged, non-finite values, the iteration cap).
    iterations : int
        Fixed-point iterations done, on all meshes together.
    residuals : dict
        Per iteration: ``"U"``, ``"M"`` (relative changes), ``"hjb"``, ``"fp"`` (max of
        the discrete equation residuals of the new iterate).
    equation_residuals : dict
        ``{"hjb": max|F|, "fp": max|G|}`` of the returned ``(U, M)`` on the final mesh.
    history : list of dict
        One entry per adapt (and one for the start): ``iteration``, ``leaves``,
        ``refined``, ``coarsened``.
    mesh : AdaptiveMesh
        The final mesh (adapted in place during the solve).
    """

    problem: MFGProblem
    mesh: Any
    system: Any
    U: np.ndarray
    M: np.ndarray
    converged: bool
    reason: str
    iterations: int
    residuals: dict
    equation_residuals: dict
    history: list
    solver: str
    backend: str
    device: str
    seconds: float
    timings: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"AdaptiveMFGResult(converged={self.converged}, iterations={self.iterations}, "
            f"leaves={self.n_leaves}, levels {self.levels.min()}-{self.levels.max()}, "
            f"hjb={self.equation_residuals['hjb']:.2e}, fp={self.equation_residuals['fp']:.2e}, "
            f"backend={self.backend!r})"
        )

    # -- the leaves -----------------------------------------------------------------------
    @property
    def leaves(self) -> Any:
        return self.mesh.leaves

    @property
    def n_leaves(self) -> int:
        return int(self.U.shape[1])

    @property
    def centres(self) -> np.ndarray:
        """Leaf centres ``(n, 2)``."""
        return self.system.centres

    @property
    def sizes(self) -> np.ndarray:
        """Leaf sides ``(n, 2)``."""
        return self.leaves.sizes()

    @property
    def areas(self) -> np.ndarray:
        return self.system.areas

    @property
    def levels(self) -> np.ndarray:
        return self.leaves.level

    @property
    def t(self) -> np.ndarray:
        return self.problem.t

    def mass(self) -> np.ndarray:
        """``sum(M * area)`` per time level (1 up to round-off)."""
        return self.M @ self.areas

    # -- on a uniform grid ----------------------------------------------------------------
    def sample(self, level: int, time_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(U, M)`` on the uniform ``(2**level, 2**level)`` grid of the mesh's rectangle
        (``[i, j]``: the cell i along x, j along y), at one time level or, by default, all
        of them (``(Nt + 1, 2**level, 2**level)``).

        ``M`` is moved conservatively (cell averages: the mass is kept), ``U`` by each
        leaf's limited linear reconstruction (exact for linear functions).
        """
        from mfg_pde.geometry._amr_kernels import pieces_on
        from mfg_pde.geometry._quadtree import LeafSet

        if not isinstance(level, (int, np.integer)) or not 0 <= level <= 12:
            raise ValueError(f"level must be an integer in [0, 12], got {level!r}")
        mesh, b = self.mesh, self.mesh.backend
        if time_index is None:
            rows = slice(None)
        else:
            rows = int(np.arange(self.U.shape[0])[time_index])
        U, M = np.atleast_2d(self.U[rows]), np.atleast_2d(self.M[rows])
        n = 1 << int(level)
        grid = LeafSet.uniform(mesh.bounds, int(level))
        order = (grid.ix * n + grid.iy).astype(np.int64)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        dens = b.to_numpy(mesh.transfer_density(M, mesh.leaves, grid))[:, inverse]
        geo = mesh._stencils(mesh.leaves)
        pieces = pieces_on(mesh.tree.overlap(mesh.leaves, grid), b)
        vals = b.to_numpy(mesh.kernels.smooth(b.from_numpy(U), geo, pieces))[:, inverse]
        shape = (-1, n, n) if time_index is None else (n, n)
        return vals.reshape(shape), dens.reshape(shape)

    # -- pictures -------------------------------------------------------------------------
    def plot(
        self,
        time_index: int = -1,
        path: str | os.PathLike | None = None,
        **savefig_kwargs: Any,
    ) -> Any:
        """Draw the density at one time level with the leaves over it, the value function
        at t = 0, and the number of leaves through the adapts.

        ``path`` and ``savefig_kwargs`` as :meth:`mfg_pde.MFGResult.plot`.
        """
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection, PolyCollection

        fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
        low = self.leaves.lower_left()
        h = self.sizes
        corners = np.stack([low, low + h * [1, 0], low + h, low + h * [0, 1]], axis=1)  # (n, 4, 2)
        k = int(np.arange(self.M.shape[0])[time_index])
        for ax, values, title in (
            (axes[0], self.M[k], f"density m, t = {self.t[k]:.3g}, leaves over it"),
            (axes[1], self.U[0], "value function u, t = 0"),
        ):
            cells = PolyCollection(corners, array=values, cmap="viridis", edgecolors="none")
            ax.add_collection(cells)
            fig.colorbar(cells, ax=ax, shrink=0.85)
            ax.set_title(title)
            ax.set_aspect("equal")
            xmin, xmax, ymin, ymax = self.mesh.bounds
            ax.set_xlim(xmin, xmax)
            ax.set_ylim(ymin, ymax)
        edges = np.concatenate([corners, corners[:, :1]], axis=1)
        axes[0].add_collection(LineCollection(edges, colors="white", linewidths=0.3, alpha=0.6))
        its = [e["iteration"] for e in self.history]
        leaves = [e["leaves"] for e in self.history]
        axes[2].step(its, leaves, where="post", marker="o")
        axes[2].set_xlabel("fixed-point iteration")
        axes[2].set_ylabel("leaves")
        axes[2].set_title(f"adapts ({len(self.history) - 1}), final {self.n_leaves} leaves")
        fig.tight_layout()
        return _finish(fig, path, savefig_kwargs)
