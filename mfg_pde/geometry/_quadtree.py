"""A quadtree over a rectangle, stored as flat arrays, and its sets of leaves.

The tree is five int64 arrays indexed by node id: ``level``, ``ix``, ``iy`` (integer cell
coordinates at that level), ``parent`` (-1 for the root) and ``first_child`` (-1 for a
leaf; the four children are ``first_child + q`` with quadrant ``q = (ix & 1) + 2 (iy & 1)``
of the child). Node 0 is the root, the whole rectangle. The leaves, in Morton order, form
a :class:`LeafSet`, the mesh on which fields live: a field is an array with one value per
leaf, in that order.

Tree kernels (traversal, lookup, candidate collection, balance, statistics) come from
``_tree_numba`` (compiled loops) or ``_tree_numpy`` (vectorised); both give identical
results and ``tree_kernels=`` chooses. Subdividing and merging are array operations
shared by both paths.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from mfg_pde.geometry import _tree_numpy
from mfg_pde.geometry._tree_numpy import FINEST, KEY_LEVEL, anchor_keys

TREE_KERNELS = ("auto", "numba", "numpy")


def numba_available() -> bool:
    """Whether numba can be imported (without importing it). Tests patch this."""
    return importlib.util.find_spec("numba") is not None


def select_tree_kernels(name: str = "auto") -> tuple[str, ModuleType]:
    """The tree-kernel module for ``name``: "numba", "numpy", or "auto" (numba if installed)."""
    if name not in TREE_KERNELS:
        raise ValueError(f"tree_kernels must be one of {', '.join(TREE_KERNELS)}; got {name!r}")
    if name == "auto":
        name = "numba" if numba_available() else "numpy"
    if name == "numpy":
        return name, _tree_numpy
    if not numba_available():
        raise ImportError('tree_kernels="numba" needs numba: pip install "mfg_pde[numba]"')
    return name, importlib.import_module("mfg_pde.geometry._tree_numba")


def _check_bounds(bounds: Any) -> tuple[float, float, float, float]:
    try:
        xmin, xmax, ymin, ymax = (float(b) for b in bounds)
    except (TypeError, ValueError) as err:
        raise TypeError(f"bounds must be (xmin, xmax, ymin, ymax), got {bounds!r}") from err
    if not (np.isfinite([xmin, xmax, ymin, ymax]).all() and xmin < xmax and ymin < ymax):
        raise ValueError(f"bounds must be finite with xmin < xmax and ymin < ymax, got {bounds!r}")
    return xmin, xmax, ymin, ymax


def finest_cells(bounds: tuple[float, float, float, float], points: Any):
    """Integer finest-cell coordinates of points ``(P, 2)``; -1 for points outside.

    The rectangle is closed: a point on the upper or right wall belongs to the last cell.
    Points on an interior cell edge belong to the cell above / to the right of it.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must have shape (P, 2), got {pts.shape}")
    xmin, xmax, ymin, ymax = bounds
    u = (pts[:, 0] - xmin) / (xmax - xmin)
    v = (pts[:, 1] - ymin) / (ymax - ymin)
    inside = (u >= 0.0) & (u <= 1.0) & (v >= 0.0) & (v <= 1.0)  # False for NaN
    scale = float(FINEST)
    fx = np.minimum(np.floor(np.where(inside, u, 0.0) * scale), scale - 1).astype(np.int64)
    fy = np.minimum(np.floor(np.where(inside, v, 0.0) * scale), scale - 1).astype(np.int64)
    return np.where(inside, fx, -1), np.where(inside, fy, -1)


@dataclass(frozen=True, eq=False)
class LeafSet:
    """The leaves of a quadtree at one moment: the cells a field lives on.

    Attributes
    ----------
    bounds : (xmin, xmax, ymin, ymax)
    level, ix, iy : int64 arrays (n,)
        Level and integer coordinates of each leaf, in increasing Morton key order.
    keys : int64 array (n,)
        Morton keys of the leaves' anchors (sorted).
    """

    bounds: tuple[float, float, float, float]
    level: np.ndarray
    ix: np.ndarray
    iy: np.ndarray
    keys: np.ndarray

    @classmethod
    def from_cells(cls, bounds, level, ix, iy) -> LeafSet:
        """A leaf set from cells given in any order (they must tile the rectangle)."""
        level, ix, iy = (np.asarray(a, dtype=np.int64) for a in (level, ix, iy))
        keys = anchor_keys(level, ix, iy)
        order = np.argsort(keys, kind="stable")
        return cls(_check_bounds(bounds), level[order], ix[order], iy[order], keys[order])

    @classmethod
    def uniform(cls, bounds, level: int) -> LeafSet:
        """All ``4**level`` cells of one level."""
        n = 1 << int(level)
        ix, iy = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        return cls.from_cells(bounds, np.full(n * n, level), ix.ravel(), iy.ravel())

    def __len__(self) -> int:
        return int(self.level.shape[0])

    @property
    def max_level(self) -> int:
        return int(self.level.max())

    def sizes(self) -> np.ndarray:
        """Side lengths ``(n, 2)`` (hx, hy) of each leaf."""
        xmin, xmax, ymin, ymax = self.bounds
        frac = np.ldexp(1.0, -self.level)
        return np.stack([(xmax - xmin) * frac, (ymax - ymin) * frac], axis=1)

    def areas(self) -> np.ndarray:
        """Area of each leaf."""
        h = self.sizes()
        return h[:, 0] * h[:, 1]

    def lower_left(self) -> np.ndarray:
        """Lower-left corners ``(n, 2)``."""
        xmin, xmax, ymin, ymax = self.bounds
        frac = np.ldexp(1.0, -self.level)
        return np.stack(
            [xmin + (xmax - xmin) * self.ix * frac, ymin + (ymax - ymin) * self.iy * frac], 1
        )

    def centres(self) -> np.ndarray:
        """Centres ``(n, 2)`` of each leaf."""
        return self.lower_left() + 0.5 * self.sizes()

    def anchors(self) -> tuple[np.ndarray, np.ndarray]:
        """Finest-cell coordinates of each leaf's lower-left corner."""
        shift = KEY_LEVEL - self.level
        return self.ix << shift, self.iy << shift

    def same_cells(self, other: LeafSet) -> bool:
        """Whether two leaf sets hold exactly the same cells over the same rectangle."""
        return (
            self.bounds == other.bounds
            and len(self) == len(other)
            and bool(np.array_equal(self.level, other.level))
            and bool(np.array_equal(self.keys, other.keys))
        )


@dataclass(frozen=True)
class Overlap:
    """How the leaves of two leaf sets overlap: one piece per overlapping pair.

    Quadtree cells are nested or disjoint, so each piece is the finer cell of its pair.
    ``source`` and ``target`` index the two sets, ``weight`` is the piece's area over the
    target leaf's area (a power of 4, exact) and ``offset`` ``(pieces, 2)`` is the piece's
    centre minus the source leaf's centre (zero where the source leaf is the finer one).
    """

    source: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    offset: np.ndarray
    n_source: int
    n_target: int


def overlap(source: LeafSet, target: LeafSet, kernels: ModuleType) -> Overlap:
    """Pieces of the common refinement of two leaf sets over the same rectangle."""
    if source.bounds != target.bounds:
        raise ValueError(
            f"leaf sets cover different rectangles: {source.bounds} vs {target.bounds}"
        )
    # Target leaves at least as fine as the source leaf containing them: one piece each.
    tx, ty = target.anchors()
    src_of_t = kernels.locate_cells(source.keys, tx, ty)
    fine_t = source.level[src_of_t] <= target.level
    # Source leaves strictly finer than the target leaf containing them: one piece each.
    sx, sy = source.anchors()
    tgt_of_s = kernels.locate_cells(target.keys, sx, sy)
    fine_s = target.level[tgt_of_s] < source.level
    src = np.concatenate([src_of_t[fine_t], np.flatnonzero(fine_s)])
    tgt = np.concatenate([np.flatnonzero(fine_t), tgt_of_s[fine_s]])
    piece_level = np.concatenate([target.level[fine_t], source.level[fine_s]])
    weight = np.ldexp(1.0, 2 * (target.level[tgt] - piece_level))
    offset = np.zeros((src.shape[0], 2))
    n_t = int(fine_t.sum())
    offset[:n_t] = target.centres()[fine_t] - source.centres()[src[:n_t]]
    return Overlap(src, tgt, weight, offset, len(source), len(target))


class QuadTree:
    """A quadtree over a rectangle in flat arrays, refined and merged leaf by leaf.

    Parameters
    ----------
    bounds : (xmin, xmax, ymin, ymax)
        The rectangle. Cells of level ``l`` are the ``2**l x 2**l`` equal sub-rectangles.
    base_level : int
        The tree starts uniform at this level and is never merged below it.
    tree_kernels : "auto", "numba" or "numpy"
        Compiled loops (numba) or vectorised NumPy for the tree kernels; "auto" takes numba
        when it is installed. Both give identical trees.

    Notes
    -----
    Leaf indices (positions in :attr:`leaves`) change whenever the tree changes; node ids
    change when nodes are merged (the arrays are compacted).
    """

    def __init__(
        self,
        bounds: Any = (0.0, 1.0, 0.0, 1.0),
        base_level: int = 0,
        tree_kernels: str = "auto",
    ) -> None:
        self.bounds = _check_bounds(bounds)
        if not isinstance(base_level, (int, np.integer)) or not 0 <= base_level <= 12:
            raise ValueError(f"base_level must be an integer in [0, 12], got {base_level!r}")
        self.base_level = int(base_level)
        self.tree_kernels, self.kernels = select_tree_kernels(tree_kernels)
        #: Seconds and calls per tree kernel, accumulated over the tree's life.
        self.timings: dict[str, list[float]] = {}
        self.level = np.zeros(1, dtype=np.int64)
        self.ix = np.zeros(1, dtype=np.int64)
        self.iy = np.zeros(1, dtype=np.int64)
        self.parent = np.full(1, -1, dtype=np.int64)
        self.first_child = np.full(1, -1, dtype=np.int64)
        self._update_leaves()
        for _ in range(self.base_level):
            self._subdivide(self.leaf_node)

    # -- timing --------------------------------------------------------------------------
    def _call(self, name: str, *args: Any) -> Any:
        """Run tree kernel ``name`` and add its time to :attr:`timings`."""
        start = time.perf_counter()
        out = getattr(self.kernels, name)(*args)
        entry = self.timings.setdefault(name, [0.0, 0])
        entry[0] += time.perf_counter() - start
        entry[1] += 1
        return out

    def copy(self) -> QuadTree:
        """An independent copy (same kernels; arrays copied, timings restarted)."""
        out = object.__new__(QuadTree)
        out.__dict__.update(self.__dict__)
        for name in ("level", "ix", "iy", "parent", "first_child", "leaf_node", "node_leaf"):
            setattr(out, name, getattr(self, name).copy())
        out.timings = {}
        return out

    # -- leaves ------------------------------------------------------------------------
    def _update_leaves(self) -> None:
        self.leaf_node = self._call("leaf_order", self.first_child, self.level, self.ix, self.iy)
        lev = self.level[self.leaf_node]
        ix, iy = self.ix[self.leaf_node], self.iy[self.leaf_node]
        self.leaves = LeafSet(self.bounds, lev, ix, iy, anchor_keys(lev, ix, iy))
        self.node_leaf = np.full(self.level.shape[0], -1, dtype=np.int64)
        self.node_leaf[self.leaf_node] = np.arange(self.leaf_node.shape[0])

    @property
    def n_leaves(self) -> int:
        return len(self.leaves)

    @property
    def n_nodes(self) -> int:
        return int(self.level.shape[0])

    @property
    def max_level(self) -> int:
        return self.leaves.max_level

    def node(self, index: int) -> QuadTreeNode:
        """A read-only view of node ``index`` (0 is the root)."""
        if not 0 <= index < self.n_nodes:
            raise IndexError(f"node index {index} out of range [0, {self.n_nodes})")
        return QuadTreeNode(self, int(index))

    @property
    def root(self) -> QuadTreeNode:
        return QuadTreeNode(self, 0)

    # -- structure changes ---------------------------------------------------------------
    def _subdivide(self, nodes: np.ndarray) -> None:
        """Give each leaf node in ``nodes`` four children (appended at the end)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        if nodes.size == 0:
            return
        start = self.n_nodes
        q = np.tile(np.arange(4), nodes.size)
        rep = np.repeat(nodes, 4)
        self.first_child[nodes] = start + 4 * np.arange(nodes.size)
        self.level = np.concatenate([self.level, self.level[rep] + 1])
        self.ix = np.concatenate([self.ix, 2 * self.ix[rep] + (q & 1)])
        self.iy = np.concatenate([self.iy, 2 * self.iy[rep] + (q >> 1)])
        self.parent = np.concatenate([self.parent, rep])
        self.first_child = np.concatenate([self.first_child, np.full(rep.size, -1, np.int64)])
        self._update_leaves()

    def _merge(self, parents: np.ndarray) -> None:
        """Turn each node in ``parents`` (whose children are leaves) back into a leaf."""
        if parents.size == 0:
            return
        alive = np.ones(self.n_nodes, dtype=bool)
        alive[(self.first_child[parents][:, None] + np.arange(4)).ravel()] = False
        self.first_child[parents] = -1
        new_id = np.cumsum(alive) - 1
        self.level, self.ix, self.iy = self.level[alive], self.ix[alive], self.iy[alive]
        parent, child = self.parent[alive], self.first_child[alive]
        self.parent = np.where(parent >= 0, new_id[np.maximum(parent, 0)], -1)
        self.first_child = np.where(child >= 0, new_id[np.maximum(child, 0)], -1)
        self._update_leaves()

    def refine(self, mask: Any, max_level: int = KEY_LEVEL) -> tuple[int, int]:
        """Subdivide the leaves in ``mask`` and whatever the 2:1 balance then requires.

        Parameters
        ----------
        mask : bool array (n_leaves,)
            Leaves to subdivide (leaves at ``max_level`` are left alone).
        max_level : int
            No leaf finer than this is created.

        Returns
        -------
        (refined, balance) : number of leaves subdivided, of which ``balance`` only to keep
        neighbouring leaves within one level of each other.
        """
        mask = self._leaf_mask(mask, "mask") & (self.leaves.level < min(max_level, KEY_LEVEL))
        closed = self._call(
            "balance_refinement",
            mask,
            self.leaves.level,
            self.leaves.ix,
            self.leaves.iy,
            self.leaves.keys,
        )
        self._subdivide(self.leaf_node[closed])
        return int(closed.sum()), int(closed.sum() - mask.sum())

    def coarsening_set(self, want: Any) -> np.ndarray:
        """Leaves that :meth:`coarsen` would merge for the wish list ``want`` (bool per leaf)."""
        want = self._leaf_mask(want, "want")
        lv = self.leaves
        return self._call(
            "coarsen_candidates",
            want,
            self.leaf_node,
            lv.level,
            lv.ix,
            lv.iy,
            lv.keys,
            self.parent,
            self.first_child,
            self.node_leaf,
            self.base_level,
        )

    def coarsen(self, want: Any) -> int:
        """Merge every parent whose four children are leaves in ``want``, keeping 2:1 balance.

        Parents are merged one level per call, never below ``base_level``, and only where
        no neighbour would end up two levels finer. Returns the number of parents merged.
        """
        merged = self.coarsening_set(want)
        parents = np.unique(self.parent[self.leaf_node[merged]])
        self._merge(parents)
        return int(parents.size)

    def _leaf_mask(self, mask: Any, name: str) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != (self.n_leaves,) or mask.dtype != np.bool_:
            raise ValueError(
                f"{name} must be a boolean array with one entry per leaf, shape "
                f"({self.n_leaves},); got dtype {mask.dtype} and shape {mask.shape}"
            )
        return np.ascontiguousarray(mask)

    # -- queries -----------------------------------------------------------------------
    def locate(self, points: Any) -> np.ndarray:
        """Index of the leaf containing each point ``(P, 2)``; -1 outside the rectangle."""
        fx, fy = finest_cells(self.bounds, points)
        return self._call("locate_cells", self.leaves.keys, fx, fy)

    def neighbours(self, leaves: LeafSet | None = None) -> np.ndarray:
        """Edge neighbours of every leaf, ``(n_leaves, 4, 2)``, -1 where there is none.

        Directions -x, +x, -y, +y; per direction the leaves touching the two ends of that
        edge from outside (the second is -1 when it is the same leaf as the first). In a
        2:1-balanced tree these are all the edge neighbours. ``leaves`` defaults to the
        current leaves; any leaf set over the same rectangle (a previous mesh) works.
        """
        lv = self.leaves if leaves is None else leaves
        ax, ay = lv.anchors()
        size = np.left_shift(1, KEY_LEVEL - lv.level)
        fx = np.stack([ax - 1, ax - 1, ax + size, ax + size, ax, ax + size - 1, ax, ax + size - 1])
        fy = np.stack([ay, ay + size - 1, ay, ay + size - 1, ay - 1, ay - 1, ay + size, ay + size])
        inside = (fx >= 0) & (fx < FINEST) & (fy >= 0) & (fy < FINEST)
        fx, fy = np.where(inside, fx, -1).ravel(), np.where(inside, fy, -1).ravel()
        found = self._call("locate_cells", lv.keys, fx, fy)
        table = found.reshape(4, 2, -1).transpose(2, 0, 1).copy()
        table[:, :, 1] = np.where(table[:, :, 1] == table[:, :, 0], -1, table[:, :, 1])
        return table

    def overlap(self, source: LeafSet, target: LeafSet) -> Overlap:
        """Pieces of the common refinement of two leaf sets (see :func:`overlap`)."""
        start = time.perf_counter()
        out = overlap(source, target, self.kernels)
        entry = self.timings.setdefault("overlap", [0.0, 0])
        entry[0] += time.perf_counter() - start
        entry[1] += 1
        return out

    def is_balanced(self) -> bool:
        """Whether every pair of edge-adjacent leaves differs by at most one level."""
        table = self.neighbours()
        lev = self.leaves.level
        nbr_level = np.where(table >= 0, lev[np.maximum(table, 0)], lev[:, None, None])
        return bool(np.all(np.abs(nbr_level - lev[:, None, None]) <= 1))

    def statistics(self) -> dict[str, Any]:
        """Counts and sizes: leaves and nodes, leaves and covered area per level, depth."""
        lev = self.leaves.level
        n_levels = int(lev.max()) + 1
        counts = self._call("level_counts", lev, n_levels)
        area = counts * np.ldexp(1.0, -2 * np.arange(n_levels))
        return {
            "leaves": self.n_leaves,
            "nodes": self.n_nodes,
            "min_level": int(lev.min()),
            "max_level": n_levels - 1,
            "leaves_per_level": counts.tolist(),
            "area_fraction_per_level": area.tolist(),
            "uniform_equivalent_leaves": 4 ** (n_levels - 1),
            "memory_bytes": int(
                sum(a.nbytes for a in (self.level, self.ix, self.iy, self.parent, self.first_child))
            ),
        }


class QuadTreeNode:
    """Read-only view of one node of a :class:`QuadTree` (valid until the tree changes)."""

    __slots__ = ("tree", "index")

    def __init__(self, tree: QuadTree, index: int) -> None:
        self.tree = tree
        self.index = index

    def __repr__(self) -> str:
        kind = "leaf" if self.is_leaf else "node"
        return f"QuadTreeNode({kind} {self.index}, level={self.level}, ix={self.ix}, iy={self.iy})"

    @property
    def level(self) -> int:
        return int(self.tree.level[self.index])

    @property
    def ix(self) -> int:
        return int(self.tree.ix[self.index])

    @property
    def iy(self) -> int:
        return int(self.tree.iy[self.index])

    @property
    def is_leaf(self) -> bool:
        return bool(self.tree.first_child[self.index] < 0)

    @property
    def leaf_index(self) -> int:
        """Position in the tree's leaves, or -1 for an interior node."""
        return int(self.tree.node_leaf[self.index])

    @property
    def parent(self) -> QuadTreeNode | None:
        p = int(self.tree.parent[self.index])
        return None if p < 0 else QuadTreeNode(self.tree, p)

    @property
    def children(self) -> tuple[QuadTreeNode, ...]:
        c = int(self.tree.first_child[self.index])
        return () if c < 0 else tuple(QuadTreeNode(self.tree, c + q) for q in range(4))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, xmax, ymin, ymax) of the cell."""
        xmin, xmax, ymin, ymax = self.tree.bounds
        hx, hy = (xmax - xmin) / 2**self.level, (ymax - ymin) / 2**self.level
        return (
            xmin + self.ix * hx,
            xmin + (self.ix + 1) * hx,
            ymin + self.iy * hy,
            ymin + (self.iy + 1) * hy,
        )

    @property
    def centre(self) -> tuple[float, float]:
        x0, x1, y0, y1 = self.bounds
        return (0.5 * (x0 + x1), 0.5 * (y0 + y1))
