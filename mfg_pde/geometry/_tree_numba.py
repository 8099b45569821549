"""Tree kernels of the quadtree as loops compiled by numba.

Imported only when the numba path is selected, so ``import mfg_pde.geometry`` does not
import numba. Each function is the twin of the one of the same name in
``_tree_numpy.py`` (see there for the conventions) and returns identical results.
The kernels are serial: they are dominated by dependent memory reads (binary searches,
work lists), and numba's thread pool next to torch's oversubscribes small machines.
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from mfg_pde._numba_cache import drop_stale_caches
from mfg_pde.geometry._tree_numpy import FINEST, KEY_LEVEL, spread_bits

# spread_bits is compiled here but cached under _tree_numpy's name (see _numba_cache).
drop_stale_caches(Path(__file__).parent, ("_tree_numba", "_tree_numpy"))

_spread = numba.njit(cache=True)(spread_bits)


@numba.njit(cache=True)
def _key(fx, fy):  # pragma: no cover - compiled
    return _spread(fx) | (_spread(fy) << 1)


@numba.njit(cache=True)
def _find(keys, fx, fy):  # pragma: no cover - compiled
    """Index of the last key not larger than the key of finest cell (fx, fy)."""
    key = _key(fx, fy)
    lo = 0
    hi = keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] <= key:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@numba.njit(cache=True)
def _inside(fx, fy):  # pragma: no cover - compiled
    return fx >= 0 and fx < FINEST and fy >= 0 and fy < FINEST


@numba.njit(cache=True)
def locate_cells(keys, fx, fy):  # pragma: no cover - compiled
    out = np.empty(fx.shape[0], np.int64)
    for p in range(fx.shape[0]):
        if fx[p] < 0 or fy[p] < 0:
            out[p] = -1
        else:
            out[p] = _find(keys, fx[p], fy[p])
    return out


@numba.njit(cache=True)
def leaf_order(first_child, level, ix, iy):  # pragma: no cover - compiled
    """Depth-first traversal from the root, children in Z order: leaves come out sorted."""
    out = np.empty(first_child.shape[0], np.int64)
    count = 0
    stack = np.empty(4 * (KEY_LEVEL + 2), np.int64)
    top = 1
    stack[0] = 0
    while top > 0:
        top -= 1
        node = stack[top]
        child = first_child[node]
        if child < 0:
            out[count] = node
            count += 1
        else:
            for q in range(3, -1, -1):  # pushed in reverse so quadrant 0 pops first
                stack[top] = child + q
                top += 1
    return out[:count]


@numba.njit(cache=True)
def refine_candidates(indicator, threshold, level, max_level):  # pragma: no cover - compiled
    out = np.empty(indicator.shape[0], np.bool_)
    for k in range(indicator.shape[0]):
        out[k] = indicator[k] > threshold[k] and level[k] < max_level
    return out


@numba.njit(cache=True)
def balance_refinement(flags, level, ix, iy, keys):  # pragma: no cover - compiled
    n = flags.shape[0]
    out = flags.copy()
    stack = np.empty(n, np.int64)  # a leaf is pushed at most once: when it becomes flagged
    top = 0
    for k in range(n):
        if out[k]:
            stack[top] = k
            top += 1
    while top > 0:
        top -= 1
        k = stack[top]
        lev = level[k]
        shift = KEY_LEVEL - lev
        size = np.int64(1) << shift
        ax = ix[k] << shift
        ay = iy[k] << shift
        for d in range(4):
            nx = ax - size if d == 0 else (ax + size if d == 1 else ax)
            ny = ay - size if d == 2 else (ay + size if d == 3 else ay)
            if not _inside(nx, ny):
                continue
            m = _find(keys, nx, ny)
            if level[m] < lev and not out[m]:
                out[m] = True
                stack[top] = m
                top += 1
    return out


@numba.njit(cache=True)
def _blocked(k, out, level, ix, iy, keys):  # pragma: no cover - compiled
    """Whether merging the parent of leaf k would leave a neighbour two levels finer."""
    lev = level[k]
    shift = KEY_LEVEL - lev
    size = np.int64(1) << shift
    ax = ix[k] << shift
    ay = iy[k] << shift
    ox = ax + size if ix[k] & 1 else ax - 1
    oy = ay + size if iy[k] & 1 else ay - 1
    for e in range(4):
        if e < 2:
            fx = ox
            fy = ay if e == 0 else ay + size - 1
        else:
            fy = oy
            fx = ax if e == 2 else ax + size - 1
        if _inside(fx, fy):
            m = _find(keys, fx, fy)
            if level[m] - (1 if out[m] else 0) > lev:
                return True
    return False


@numba.njit(cache=True)
def coarsen_candidates(
    want, leaf_node, level, ix, iy, keys, parent, first_child, node_leaf, min_level
):  # pragma: no cover - compiled
    n = want.shape[0]
    out = np.zeros(n, np.bool_)
    for k in range(n):
        if not want[k] or level[k] <= min_level:
            continue
        c0 = first_child[parent[leaf_node[k]]]
        ok = True
        for q in range(4):
            c = c0 + q
            if first_child[c] >= 0 or not want[node_leaf[c]]:
                ok = False
                break
        out[k] = ok
    changed = True
    while changed:
        changed = False
        for k in range(n):
            if out[k] and _blocked(k, out, level, ix, iy, keys):
                c0 = first_child[parent[leaf_node[k]]]
                for q in range(4):
                    out[node_leaf[c0 + q]] = False
                changed = True
    return out


@numba.njit(cache=True)
def level_counts(level, n_levels):  # pragma: no cover - compiled
    out = np.zeros(n_levels, np.int64)
    for k in range(level.shape[0]):
        if level[k] < n_levels:
            out[level[k]] += 1
    return out
