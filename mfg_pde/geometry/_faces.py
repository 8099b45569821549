"""The faces between the leaves of a 2:1-balanced quadtree: what finite volumes sum over.

A face is a segment of an edge shared by two leaves. Where the two leaves have the same
level it is their whole common edge; where they differ (by one level, in a balanced
tree) it is the fine leaf's edge, and the coarse leaf has two faces on that side. Each
face is listed once, oriented along +x or +y: ``left`` is the leaf on the lower side,
``right`` the leaf on the upper side. Edges on the boundary of the rectangle are not
faces (no-flux walls).

The list is read off the neighbour table of
:meth:`~mfg_pde.geometry.QuadTree.neighbours` (built by the tree kernels, numba or
NumPy): every face is the +x or +y side of its ``left`` leaf, where the table holds one
neighbour (same or coarser level) or two (finer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mfg_pde.geometry._quadtree import LeafSet

#: Directions of the neighbour table: -x, +x, -y, +y.
PLUS_X, PLUS_Y = 1, 3


@dataclass(frozen=True)
class Faces:
    """The faces of a leaf set (arrays of length ``n_faces``, host NumPy).

    Attributes
    ----------
    left, right : int64
        Leaf below / above the face along its axis.
    axis : int64
        0 for faces normal to x (between x-neighbours), 1 for faces normal to y.
    length : float64
        Length of the face (the finer leaf's side).
    distance : float64
        Distance between the two centres along ``axis``.
    offset : float64
        Transverse position of ``right``'s centre minus ``left``'s: 0 between leaves of
        one level, ``±h/2`` (h the finer side) across a coarse-fine face.
    """

    left: np.ndarray
    right: np.ndarray
    axis: np.ndarray
    length: np.ndarray
    distance: np.ndarray
    offset: np.ndarray

    def __len__(self) -> int:
        return int(self.left.shape[0])

    @property
    def coarse_fine(self) -> np.ndarray:
        """Whether each face joins leaves of different levels."""
        return self.offset != 0.0


def leaf_faces(leaves: LeafSet, table: np.ndarray) -> Faces:
    """The faces of ``leaves`` from their neighbour table ``(n, 4, 2)`` (-1: none)."""
    n = len(leaves)
    table = np.asarray(table, dtype=np.int64)
    if table.shape != (n, 4, 2):
        raise ValueError(f"neighbour table must have shape ({n}, 4, 2), got {table.shape}")
    centres, sizes = leaves.centres(), leaves.sizes()
    parts = []
    for axis, direction in ((0, PLUS_X), (1, PLUS_Y)):
        for slot in (0, 1):
            right = table[:, direction, slot]
            left = np.flatnonzero(right >= 0)
            parts.append((left, right[left], np.full(left.shape, axis)))
    left = np.concatenate([p[0] for p in parts])
    right = np.concatenate([p[1] for p in parts])
    axis = np.concatenate([p[2] for p in parts])
    # One order for every caller: by axis, then by the left leaf, then by the right.
    order = np.lexsort((right, left, axis))
    left, right, axis = left[order], right[order], axis[order]
    across = 1 - axis
    length = np.minimum(sizes[left, across], sizes[right, across])
    distance = 0.5 * (sizes[left, axis] + sizes[right, axis])
    offset = centres[right, across] - centres[left, across]
    # Round-off in the centres must not make a conforming face look coarse-fine.
    offset = np.where(leaves.level[left] == leaves.level[right], 0.0, offset)
    return Faces(left, right, axis.astype(np.int64), length, distance, offset)
