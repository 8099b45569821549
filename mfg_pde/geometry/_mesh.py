"""The adaptive mesh: a quadtree, refinement criteria, and fields on the leaves.

``AdaptiveMesh.adapt`` joins the two halves of the AMR: array kernels on the backend
(error indicators, thresholds) decide what each leaf wants, tree kernels (candidate
collection, 2:1 balance, merging) change the tree. Transfers move fields between the
leaves of successive meshes, and between the leaves and a uniform grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mfg_pde.backends import BaseBackend, create_backend
from mfg_pde.geometry._amr_kernels import (
    LeafGeometry,
    Pieces,
    amr_kernels,
    leaf_geometry,
    pieces_on,
)
from mfg_pde.geometry._quadtree import LeafSet, QuadTree
from mfg_pde.geometry._tree_numpy import KEY_LEVEL


@dataclass(frozen=True)
class AMRRefinementCriteria:
    """When leaves are refined and merged.

    A leaf is refined when its error indicator exceeds ``error_threshold *
    level_scaling**level``; four sibling leaves are merged when all their indicators are
    below ``coarsening_threshold`` times that.

    Parameters
    ----------
    error_threshold : float > 0
        Refinement threshold of the (dimensionless) indicator at level 0.
    max_refinement_levels : int in [0, 30]
        Deepest level a leaf may reach (the root is level 0).
    min_cell_size : float >= 0
        No leaf is refined into children whose shorter side is below this.
    coarsening_threshold : float in [0, 1)
        Fraction of the refinement threshold below which leaves may merge; below 1 so that
        a leaf just refined is not merged at once (hysteresis).
    gradient_weight, curvature_weight : float >= 0
        Weights of ``h |grad f|`` and ``h^2 |curv f|`` in the indicator.
    level_scaling : float > 0
        Growth of the threshold per level; above 1 makes deep levels harder to reach.
    """

    error_threshold: float = 0.05
    max_refinement_levels: int = 8
    min_cell_size: float = 0.0
    coarsening_threshold: float = 0.25
    gradient_weight: float = 1.0
    curvature_weight: float = 1.0
    level_scaling: float = 1.0

    def __post_init__(self) -> None:
        def bad(name: str, accepted: str) -> ValueError:
            return ValueError(f"{name} must be {accepted}, got {getattr(self, name)!r}")

        if not (np.isfinite(self.error_threshold) and self.error_threshold > 0):
            raise bad("error_threshold", "a positive finite number")
        levels = self.max_refinement_levels
        if not isinstance(levels, (int, np.integer)) or not 0 <= levels <= KEY_LEVEL:
            raise bad("max_refinement_levels", f"an integer in [0, {KEY_LEVEL}]")
        if not (np.isfinite(self.min_cell_size) and self.min_cell_size >= 0):
            raise bad("min_cell_size", "a finite number >= 0")
        if not 0 <= self.coarsening_threshold < 1:
            raise bad("coarsening_threshold", "in [0, 1)")
        for name in ("gradient_weight", "curvature_weight"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise bad(name, "a finite number >= 0")
        if not (np.isfinite(self.level_scaling) and self.level_scaling > 0):
            raise bad("level_scaling", "a positive finite number")

    def max_level(self, bounds: tuple[float, float, float, float]) -> int:
        """Deepest level allowed by ``max_refinement_levels`` and ``min_cell_size``."""
        side = min(bounds[1] - bounds[0], bounds[3] - bounds[2])
        level = int(self.max_refinement_levels)
        while level > 0 and side / 2**level < self.min_cell_size:
            level -= 1
        return level


@dataclass(frozen=True)
class AdaptStats:
    """What one :meth:`AdaptiveMesh.adapt` did.

    ``refined``: leaves subdivided (``balance`` of them only for the 2:1 rule);
    ``coarsened``: parents merged; ``leaves`` and ``levels`` (deepest level) afterwards;
    ``previous``: the leaves before, for :meth:`AdaptiveMesh.transfer_density` and
    :meth:`AdaptiveMesh.transfer_value`; seconds spent in array and tree kernels.
    """

    refined: int
    balance: int
    coarsened: int
    leaves: int
    levels: int
    previous: LeafSet = field(repr=False)
    array_kernel_s: float
    tree_kernel_s: float

    @property
    def changed(self) -> bool:
        return self.refined > 0 or self.coarsened > 0


class AdaptiveMesh:
    """A quadtree mesh of a rectangle that adapts to fields given on its leaves.

    Fields are arrays with one value per leaf in the order of :attr:`leaves` (Morton
    order): cell averages for densities, cell-centre values for value functions. A
    leading batch axis ``(B, n_leaves)`` is accepted by the indicator and transfers.

    Parameters
    ----------
    bounds : (xmin, xmax, ymin, ymax)
    criteria : AMRRefinementCriteria, optional
    base_level : int
        Start uniform with ``4**base_level`` leaves; never merged below that.
    backend : str, BaseBackend or None
        Where the array kernels run (``create_backend`` rules; None = automatic).
    tree_kernels : "auto", "numba" or "numpy"
        Implementation of the tree kernels (identical results).
    """

    def __init__(
        self,
        bounds: Any = (0.0, 1.0, 0.0, 1.0),
        criteria: AMRRefinementCriteria | None = None,
        base_level: int = 2,
        backend: str | BaseBackend | None = None,
        tree_kernels: str = "auto",
    ) -> None:
        self.criteria = AMRRefinementCriteria() if criteria is None else criteria
        if not isinstance(self.criteria, AMRRefinementCriteria):
            raise TypeError(
                f"criteria must be an AMRRefinementCriteria, got {type(criteria).__name__}"
            )
        self.tree = QuadTree(bounds, base_level, tree_kernels)
        deepest = self.criteria.max_level(self.tree.bounds)
        if deepest < self.tree.leaves.max_level:
            raise ValueError(
                f"the criteria allow leaves down to level {deepest} (max_refinement_levels="
                f"{self.criteria.max_refinement_levels}, min_cell_size="
                f"{self.criteria.min_cell_size}), but base_level={base_level} starts deeper; "
                "lower base_level or relax the criteria"
            )
        self.backend = create_backend(backend)
        self.kernels = amr_kernels(self.backend)
        #: Seconds and calls per array kernel (tree kernels: ``self.tree.timings``).
        self.array_timings: dict[str, list[float]] = {}
        self._geometry: list[tuple[LeafSet, LeafGeometry]] = []
        self._grids: dict[int, tuple[LeafSet, np.ndarray]] = {}

    def __repr__(self) -> str:
        return (
            f"AdaptiveMesh({self.n_leaves} leaves, levels {self.tree.leaves.level.min()}"
            f"-{self.max_level}, backend={self.backend.name}, tree_kernels="
            f"{self.tree.tree_kernels})"
        )

    # -- the mesh ------------------------------------------------------------------------
    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.tree.bounds

    @property
    def leaves(self) -> LeafSet:
        """The current leaves (a snapshot: adapting makes a new one)."""
        return self.tree.leaves

    @property
    def n_leaves(self) -> int:
        return self.tree.n_leaves

    @property
    def max_level(self) -> int:
        return self.tree.max_level

    def leaf_centres(self) -> np.ndarray:
        """Centres ``(n_leaves, 2)`` (NumPy)."""
        return self.leaves.centres()

    def leaf_sizes(self) -> np.ndarray:
        """Sides ``(n_leaves, 2)`` (NumPy)."""
        return self.leaves.sizes()

    def leaf_bounds(self) -> np.ndarray:
        """``(n_leaves, 4)`` rows (xmin, xmax, ymin, ymax), e.g. to draw the mesh."""
        lo, h = self.leaves.lower_left(), self.leaves.sizes()
        return np.stack([lo[:, 0], lo[:, 0] + h[:, 0], lo[:, 1], lo[:, 1] + h[:, 1]], axis=1)

    def locate(self, points: Any) -> np.ndarray:
        """Leaf index of each point ``(P, 2)``, -1 outside the rectangle."""
        return self.tree.locate(points)

    def sample(self, func: Any) -> Any:
        """``func(x, y)`` (NumPy in, NumPy out) at the leaf centres, as a backend array."""
        c = self.leaf_centres()
        values = np.asarray(func(c[:, 0], c[:, 1]), dtype=np.float64)
        if values.shape != (self.n_leaves,):
            raise ValueError(
                f"func must return one value per point, shape ({self.n_leaves},); "
                f"got {values.shape}"
            )
        return self.backend.from_numpy(values)

    def statistics(self) -> dict[str, Any]:
        """Tree statistics (see :meth:`QuadTree.statistics`) plus the kernel timings."""
        return {**self.tree.statistics(), "performance": self.performance()}

    def performance(self) -> dict[str, Any]:
        """Seconds spent in array kernels (backend) and tree kernels, in total and per kernel."""
        array_s = sum(t for t, _ in self.array_timings.values())
        tree_s = sum(t for t, _ in self.tree.timings.values())
        return {
            "array_kernel_s": array_s,
            "tree_kernel_s": tree_s,
            "array_fraction": array_s / (array_s + tree_s) if array_s + tree_s > 0 else 0.0,
            "array_kernels": {k: {"s": t, "calls": c} for k, (t, c) in self.array_timings.items()},
            "tree_kernels": {k: {"s": t, "calls": c} for k, (t, c) in self.tree.timings.items()},
            "backend": self.backend.name,
            "tree_kernel_impl": self.tree.tree_kernels,
        }

    def _timed(self, name: str, fn: Any, *args: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args)
        self.backend.synchronize(out)  # so that timings cover asynchronous devices' work
        entry = self.array_timings.setdefault(name, [0.0, 0])
        entry[0] += time.perf_counter() - start
        entry[1] += 1
        return out

    def _stencils(self, leaves: LeafSet | None = None) -> LeafGeometry:
        """Stencils of ``leaves`` (default: the current ones), cached for the last two meshes."""
        leaves = self.leaves if leaves is None else leaves
        for cached, geo in self._geometry:
            if cached is leaves:
                return geo
        geo = leaf_geometry(leaves, self.tree.neighbours(leaves), self.backend)
        self._geometry = [*self._geometry[-1:], (leaves, geo)]
        return geo

    def _field(self, values: Any, name: str, n: int | None = None) -> Any:
        n = self.n_leaves if n is None else n
        arr = values if self.backend.is_array(values) else self.backend.from_numpy(values)
        arr = self.backend.xp.astype(arr, self.backend.dtype)
        if arr.ndim not in (1, 2) or arr.shape[-1] != n:
            raise ValueError(
                f"{name} must have one value per leaf, shape ({n},) or (B, {n}); "
                f"got {tuple(arr.shape)}"
            )
        return arr

    # -- indicators and adaptation -------------------------------------------------------
    def error_indicator(self, solution: Any) -> Any:
        """Error indicator per leaf from a field or fields on the leaves.

        ``solution``: one array (n_leaves,), a dict with "U" and/or "M", or a pair
        ``(U, M)``. Each field's indicator is ``(gw h |grad f| + cw h^2 |curv f|) / range``
        with ``h`` the leaf's longer side; the result is their maximum (a backend array).
        A batch ``(B, n_leaves)`` gives ``(B, n_leaves)``.
        """
        fields = _fields(solution)
        geo = self._stencils()
        c = self.criteria
        xp = self.backend.xp
        eta = None
        for name, values in fields.items():
            f = self._field(values, name)
            part = self._timed(
                "indicator",
                self.kernels.indicator,
                f,
                geo,
                c.gradient_weight,
                c.curvature_weight,
            )
            eta = part if eta is None else xp.maximum(eta, part)
        return eta

    def refinement_threshold(self) -> Any:
        """Per-leaf refinement threshold ``error_threshold * level_scaling**level``."""
        c = self.criteria
        geo = self._stencils()
        return self._timed(
            "threshold", self.kernels.threshold, geo, c.error_threshold, c.level_scaling
        )

    def adapt(self, solution: Any) -> AdaptStats:
        """Refine where the error indicator is large, merge where it is small.

        One pass: leaves whose indicator exceeds the threshold are subdivided (one level),
        with the 2:1 balance closure; then groups of four sibling leaves that existed
        before and all lie below ``coarsening_threshold`` times the threshold are merged,
        where the balance allows. Fields must then be moved to the new leaves with
        :meth:`transfer_density` / :meth:`transfer_value` and ``stats.previous``. Fields
        given as batches ``(B, n_leaves)`` (a solution's time levels) are judged by the
        largest indicator over the batch.
        """
        tree_before = sum(t for t, _ in self.tree.timings.values())
        array_before = sum(t for t, _ in self.array_timings.values())
        previous = self.leaves
        eta = self.error_indicator(solution)
        if eta.ndim != 1:  # a batch (time levels): one mesh must serve them all
            eta = self.backend.xp.max(eta, axis=0)
        threshold = self.refinement_threshold()
        eta_host = self.backend.to_numpy(eta)
        threshold_host = self.backend.to_numpy(threshold)
        max_level = self.criteria.max_level(self.bounds)
        refine = self.tree._call(
            "refine_candidates", eta_host, threshold_host, previous.level, max_level
        )
        refined, balance = self.tree.refine(refine, max_level=max_level)
        # Leaves that were not subdivided keep their indicator; new leaves never merge.
        want_prev = eta_host < self.criteria.coarsening_threshold * threshold_host
        ov_idx = self.tree._call(
            "locate_cells", previous.keys, *self.leaves.anchors()
        )  # previous leaf containing each current leaf
        unchanged = previous.level[ov_idx] == self.leaves.level
        coarsened = self.tree.coarsen(unchanged & want_prev[ov_idx])
        return AdaptStats(
            refined=refined,
            balance=balance,
            coarsened=coarsened,
            leaves=self.n_leaves,
            levels=self.max_level,
            previous=previous,
            array_kernel_s=sum(t for t, _ in self.array_timings.values()) - array_before,
            tree_kernel_s=sum(t for t, _ in self.tree.timings.values()) - tree_before,
        )

    def refine(self, mask: Any) -> tuple[int, int]:
        """Subdivide the leaves in ``mask`` (bool per leaf) and those the balance needs."""
        return self.tree.refine(np.asarray(mask), self.criteria.max_level(self.bounds))

    def coarsen(self, want: Any) -> int:
        """Merge sibling leaves that all are in ``want`` where the balance allows."""
        return self.tree.coarsen(np.asarray(want))

    # -- transfers -----------------------------------------------------------------------
    def _pieces(self, source: LeafSet, target: LeafSet) -> Pieces:
        return pieces_on(self.tree.overlap(source, target), self.backend)

    def transfer_density(self, density: Any, source: LeafSet, target: LeafSet | None = None):
        """Move cell averages from ``source`` leaves to ``target`` (default: the current ones).

        Conservative: a leaf inside a coarser source leaf takes its average, a leaf
        covering finer source leaves takes their area-weighted mean, so the total mass
        ``sum(density * area)`` is kept to round-off and positivity is kept.
        """
        target = self.leaves if target is None else target
        f = self._field(density, "density", len(source))
        return self._timed(
            "transfer_density", self.kernels.conservative, f, self._pieces(source, target)
        )

    def transfer_value(self, value: Any, source: LeafSet) -> Any:
        """Move a value function from ``source`` leaves (a previous mesh) to the current ones.

        Gradient-preserving: refined leaves sample the source leaf's limited linear
        reconstruction (exact for linear functions, no new extrema), merged leaves take
        the area-weighted mean.
        """
        f = self._field(value, "value", len(source))
        geo = self._stencils(source)
        pieces = self._pieces(source, self.leaves)
        return self._timed("transfer_value", self.kernels.smooth, f, geo, pieces)

    def from_uniform(self, density: Any) -> Any:
        """Cell averages on the leaves from cell averages on a uniform ``(2**L, 2**L)`` grid.

        The grid's cells must be quadtree cells of level ``L`` (``density[i, j]`` is the
        cell ``[x_i, x_{i+1}] x [y_j, y_{j+1}]``, i along x). Conservative.
        """
        grid, order = self._uniform(density)
        flat = self.backend.xp.reshape(self._as_backend(density), (-1,))
        values = self.backend.xp.take(flat, self.backend.from_numpy(order), axis=0)
        return self.transfer_density(values, grid, self.leaves)

    def to_uniform(self, density: Any, level: int) -> Any:
        """Cell averages on the uniform ``(2**level, 2**level)`` grid from the leaves."""
        if not isinstance(level, (int, np.integer)) or not 0 <= level <= 14:
            raise ValueError(f"level must be an integer in [0, 14], got {level!r}")
        grid, row_major = self._uniform_grid(int(level))
        values = self.transfer_density(density, self.leaves, grid)
        n = 1 << level
        # Grid cells in Morton order -> row-major (i along x).
        inverse = np.empty_like(row_major)
        inverse[row_major] = np.arange(row_major.size)
        out = self.backend.xp.take(values, self.backend.from_numpy(inverse), axis=0)
        return self.backend.xp.reshape(out, (n, n))

    def _as_backend(self, values: Any) -> Any:
        arr = values if self.backend.is_array(values) else self.backend.from_numpy(values)
        return self.backend.xp.astype(arr, self.backend.dtype)

    def _uniform(self, density: Any) -> tuple[LeafSet, np.ndarray]:
        shape = tuple(density.shape)
        n = shape[0] if len(shape) == 2 else 0
        if len(shape) != 2 or shape[0] != shape[1] or n < 1 or n & (n - 1):
            raise ValueError(
                "density must be a square (2**L, 2**L) grid aligned with the quadtree, "
                f"got shape {shape}"
            )
        return self._uniform_grid(n.bit_length() - 1)

    def _uniform_grid(self, level: int) -> tuple[LeafSet, np.ndarray]:
        """The grid of level ``level`` as a leaf set, and each cell's row-major index."""
        n = 1 << level
        if level not in self._grids:  # building a large grid's leaf set sorts its keys
            grid = LeafSet.uniform(self.bounds, level)
            self._grids = {level: (grid, (grid.ix * n + grid.iy).astype(np.int64))}
        return self._grids[level]


def _fields(solution: Any) -> dict[str, Any]:
    if isinstance(solution, dict):
        fields = {k: v for k, v in solution.items() if v is not None}
        unknown = set(fields) - {"U", "M"}
        if unknown or not fields:
            raise ValueError(f"solution dict must have keys 'U' and/or 'M', got {sorted(solution)}")
        return fields
    if isinstance(solution, tuple):
        if len(solution) != 2:
            raise ValueError(f"a solution tuple must be (U, M), got {len(solution)} items")
        return {k: v for k, v in zip(("U", "M"), solution, strict=True) if v is not None}
    return {"field": solution}
