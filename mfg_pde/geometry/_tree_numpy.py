"""Tree kernels of the quadtree, vectorised with NumPy (the path used without numba).

Every function here has a twin of the same name and signature in ``_tree_numba.py``,
written as loops and compiled by numba. The two are different algorithms (sorted search
against a loop of binary searches, frontier sweeps against work lists, ``argsort`` of
Morton keys against a depth-first traversal) with identical results; the tests compare
them on random meshes.

Conventions shared by both paths
--------------------------------
A cell of level ``l`` has integer coordinates ``(ix, iy)`` in ``[0, 2**l)``. Its *anchor*
is its lower-left finest cell ``(ix << (KEY_LEVEL - l), iy << (KEY_LEVEL - l))`` and its
*key* is the Morton (Z-order) key of the anchor, x in the even bits. Leaves are stored in
increasing key order; a leaf of level ``l`` owns the contiguous key range
``[key, key + 4**(KEY_LEVEL - l))``, so the leaf containing a finest cell is the last leaf
whose key is not larger than the cell's key.
"""

from __future__ import annotations

import numpy as np

#: Depth of the finest integer grid: keys interleave two 30-bit coordinates (60 bits).
KEY_LEVEL = 30
#: Number of finest cells along each axis.
FINEST = 1 << KEY_LEVEL


def spread_bits(v):
    """Insert a zero bit above each of the low 30 bits of ``v`` (scalar or int64 array)."""
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    v = (v | (v << 1)) & 0x5555555555555555
    return v


def morton_keys(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Morton keys of finest cells ``(fx, fy)`` (int64 arrays, values in ``[0, FINEST)``)."""
    fx = np.asarray(fx, dtype=np.int64)
    fy = np.asarray(fy, dtype=np.int64)
    return spread_bits(fx) | (spread_bits(fy) << 1)


def anchor_keys(level: np.ndarray, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """Keys of the anchors of cells ``(level, ix, iy)``."""
    shift = KEY_LEVEL - level
    return morton_keys(ix << shift, iy << shift)


def locate_cells(keys: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """Index of the leaf (in ``keys`` order) containing each finest cell; -1 where fx < 0."""
    inside = (fx >= 0) & (fy >= 0)
    query = morton_keys(np.where(inside, fx, 0), np.where(inside, fy, 0))
    found = np.searchsorted(keys, query, side="right") - 1
    return np.where(inside, found, -1).astype(np.int64)


def leaf_order(first_child: np.ndarray, level: np.ndarray, ix: np.ndarray, iy: np.ndarray):
    """Node ids of the leaves in increasing Morton key order."""
    leaves = np.flatnonzero(first_child < 0)
    order = np.argsort(anchor_keys(level[leaves], ix[leaves], iy[leaves]), kind="stable")
    return leaves[order].astype(np.int64)


def refine_candidates(
    indicator: np.ndarray, threshold: np.ndarray, level: np.ndarray, max_level: int
) -> np.ndarray:
    """Leaves whose indicator exceeds their threshold and whose level is below ``max_level``."""
    return (indicator > threshold) & (level < max_level)


def _same_size_neighbours(level, ix, iy):
    """Anchors of the four same-size neighbour cells (-x, +x, -y, +y), shape (4, n) each."""
    shift = KEY_LEVEL - level
    size = np.left_shift(1, shift)
    ax, ay = ix << shift, iy << shift
    nx = np.stack([ax - size, ax + size, ax, ax])
    ny = np.stack([ay, ay, ay - size, ay + size])
    return nx, ny


def _in_domain(fx, fy):
    return (fx >= 0) & (fx < FINEST) & (fy >= 0) & (fy < FINEST)


def balance_refinement(
    flags: np.ndarray, level: np.ndarray, ix: np.ndarray, iy: np.ndarray, keys: np.ndarray
) -> np.ndarray:
    """Close a set of leaves to refine under the 2:1 balance rule.

    A flagged leaf of level ``l`` gets children of level ``l + 1``; every neighbour leaf of
    level below ``l`` must then be refined too, and so on (a ripple towards coarse cells).
    Returns the closed set as a new boolean array (leaves in key order).
    """
    out = np.array(flags, dtype=bool)
    frontier = np.flatnonzero(out)
    while frontier.size:
        nx, ny = _same_size_neighbours(level[frontier], ix[frontier], iy[frontier])
        lev = np.broadcast_to(level[frontier], nx.shape)
        ok = _in_domain(nx, ny)
        hit = locate_cells(keys, nx[ok], ny[ok])
        hit = np.unique(hit[(level[hit] < lev[ok]) & ~out[hit]])
        out[hit] = True
        frontier = hit
    return out


def _outward_ends(level, ix, iy):
    """The finest cells just outside a child's two outer edges, at both ends of each edge.

    A child with ``ix`` even lies in the left half of its parent, so its outer x edge is
    the left one. Shape (4, n): x edge (two ends), then y edge (two ends).
    """
    shift = KEY_LEVEL - level
    size = np.left_shift(1, shift)
    ax, ay = ix << shift, iy << shift
    ox = np.where(ix & 1, ax + size, ax - 1)
    oy = np.where(iy & 1, ay + size, ay - 1)
    fx = np.stack([ox, ox, ax, ax + size - 1])
    fy = np.stack([ay, ay + size - 1, oy, oy])
    return fx, fy


def coarsen_candidates(
    want: np.ndarray,
    leaf_node: np.ndarray,
    level: np.ndarray,
    ix: np.ndarray,
    iy: np.ndarray,
    keys: np.ndarray,
    parent: np.ndarray,
    first_child: np.ndarray,
    node_leaf: np.ndarray,
    min_level: int,
) -> np.ndarray:
    """Leaves to merge into their parents, keeping the 2:1 balance.

    A parent is merged when its four children are leaves, all ``want`` it, and they are
    finer than ``min_level``; then it is dropped again while a neighbour leaf across its
    outer edges would stay more than one level finer than it (neighbours merging at the
    same time count at their new level). The sweep repeats until nothing is dropped: the
    result is the largest balanced subset, the same whatever the order of the drops.
    Returns a boolean per leaf (true for all four children of each merged parent).
    """
    n = want.shape[0]
    child_nodes = first_child[parent[leaf_node]][:, None] + np.arange(4)
    eligible = want & (level > min_level)
    all_leaves = np.all(first_child[child_nodes] < 0, axis=1)
    out = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(eligible & all_leaves)
    siblings = node_leaf[child_nodes[rows]]
    out[rows] = np.all(want[siblings], axis=1)
    cand = np.flatnonzero(out)
    if cand.size == 0:
        return out
    fx, fy = _outward_ends(level[cand], ix[cand], iy[cand])
    ok = _in_domain(fx, fy)
    nbr = np.full(fx.shape, -1, dtype=np.int64)
    nbr[ok] = locate_cells(keys, fx[ok], fy[ok])
    safe = np.where(ok, nbr, 0)
    lev = level[cand]
    while True:
        new_level = level[safe] - out[safe]
        bad = np.any(ok & (new_level > lev), axis=0) & out[cand]
        if not bad.any():
            return out
        out[node_leaf[child_nodes[cand[bad]]].ravel()] = False


def level_counts(level: np.ndarray, n_levels: int) -> np.ndarray:
    """Number of leaves on each level ``0 .. n_levels - 1``."""
    return np.bincount(level, minlength=n_levels)[:n_levels].astype(np.int64)
