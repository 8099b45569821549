"""Benchmark the quadtree AMR: refinement and point location at 10^6 leaves.

Run ``python benchmarks/amr.py [--quick] [--leaves 1000000] [--output PATH]``.

Measured, for the numba and the NumPy tree kernels:

- **refine**: ``QuadTree.refine(mask)`` on a mesh of ~``--leaves`` leaves with 10% of the
  leaves flagged at random. The time covers the 2:1 balance closure, the subdivision and
  the new Morton ordering of the leaves; "cells refined" counts every leaf subdivided
  (flagged ones and those the balance added). Each repeat starts from a copy of the same
  tree (the copy is not timed).
- **locate**: ``QuadTree.locate(points)`` for 10^6 uniform random points on that mesh.
- **adapt**: ``AdaptiveMesh.adapt`` passes (numpy backend) on a field with a sharp front
  until the mesh stops changing, each split into the time spent in array kernels
  (indicator, threshold) and in tree kernels, as reported by ``AdaptStats``; the table
  shows the pass on the largest mesh. The tree kernels' time includes building the
  stencil neighbour tables (lookups) and the new leaf ordering; "other" is the rest of
  the pass (host-side stencil arithmetic, subdivision and compaction of the node arrays,
  copies to the backend).

The plain-Python reference is a tree of Python node objects (``PyNode``: children lists,
point location by descent from the root, refinement with the same balance ripple) built
from the same mesh. It is timed on 10^4 points and 10^4 flagged leaves and the rate per
item is reported (its per-item cost depends on the depth, which is the same mesh's).

Steady times are the best of ``--repeats`` runs; the first call (numba: loading or
compiling the cached kernels) is reported apart. Results go to stdout and to JSON
(default ``benchmarks/results/amr-cpu-2core.json``) with the machine description.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels import write_record  # noqa: E402

from mfg_pde.geometry import AdaptiveMesh, AMRRefinementCriteria, QuadTree  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "amr-cpu-2core.json"


def build_tree(n_leaves: int, kernels: str, seed: int = 0) -> QuadTree:
    """A balanced, graded tree with about ``n_leaves`` leaves (random refinement)."""
    rng = np.random.default_rng(seed)
    tree = QuadTree((0.0, 1.0, 0.0, 1.0), base_level=6, tree_kernels=kernels)
    while tree.n_leaves < n_leaves:
        missing = (n_leaves - tree.n_leaves) / 3  # each subdivision adds 3 leaves
        p = min(0.5, missing / tree.n_leaves)
        tree.refine(rng.random(tree.n_leaves) < p, max_level=14)
    return tree


def best_of(fn, repeats: int, setup=None) -> tuple[float, float, Any]:
    """(first call seconds, best seconds of the later calls, last result)."""
    times, out = [], None
    for _ in range(repeats + 1):
        arg = setup() if setup else None
        start = time.perf_counter()
        out = fn(arg)
        times.append(time.perf_counter() - start)
    return times[0], min(times[1:]), out


# -- the plain-Python reference ------------------------------------------------------------


class PyNode:
    """One cell of a quadtree built from Python objects (the design AMR codes often start with)."""

    __slots__ = ("level", "ix", "iy", "children", "parent")

    def __init__(self, level, ix, iy, parent=None):
        self.level, self.ix, self.iy, self.parent = level, ix, iy, parent
        self.children = None

    def subdivide(self):
        self.children = [
            PyNode(self.level + 1, 2 * self.ix + (q & 1), 2 * self.iy + (q >> 1), self)
            for q in range(4)
        ]


def py_tree_from(tree: QuadTree) -> PyNode:
    nodes = [PyNode(0, 0, 0)]
    stack = [(0, nodes[0])]
    while stack:
        idx, node = stack.pop()
        child = int(tree.first_child[idx])
        if child >= 0:
            node.subdivide()
            stack.extend((child + q, node.children[q]) for q in range(4))
    return nodes[0]


def py_locate(root: PyNode, x: float, y: float) -> PyNode:
    node = root
    while node.children is not None:
        s = 1 << (node.level + 1)
        qx = int(x * s) - 2 * node.ix
        qy = int(y * s) - 2 * node.iy
        node = node.children[min(max(qx, 0), 1) + 2 * min(max(qy, 0), 1)]
    return node


def py_refine(root: PyNode, leaves: list[PyNode]) -> int:
    """Subdivide ``leaves`` and, first, every coarser neighbour the 2:1 balance needs."""
    flagged = {id(leaf): leaf for leaf in leaves}
    work = list(leaves)
    while work:
        leaf = work.pop()
        h = 1.0 / (1 << leaf.level)
        cx, cy = (leaf.ix + 0.5) * h, (leaf.iy + 0.5) * h
        for dx, dy in ((-h, 0.0), (h, 0.0), (0.0, -h), (0.0, h)):
            x, y = cx + dx, cy + dy
            if 0.0 <= x < 1.0 and 0.0 <= y < 1.0:
                other = py_locate(root, x, y)
                if other.level < leaf.level and id(other) not in flagged:
                    flagged[id(other)] = other
                    work.append(other)
    for leaf in flagged.values():
        leaf.subdivide()
    return len(flagged)


def py_leaves(root: PyNode) -> list[PyNode]:
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.children is None:
            out.append(node)
        else:
            stack.extend(node.children)
    return out


# -- the runs ------------------------------------------------------------------------------


def run(args) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    results: dict[str, Any] = {"refine": {}, "locate": {}, "adapt": {}, "python_reference": {}}
    points = rng.random((args.points, 2))
    trees = {}
    for kernels in ("numba", "numpy"):
        start = time.perf_counter()
        tree = build_tree(args.leaves, kernels, args.seed)
        build_s = time.perf_counter() - start
        trees[kernels] = tree
        mask = np.random.default_rng(args.seed + 1).random(tree.n_leaves) < args.refine_fraction
        first, best, (refined, balance) = best_of(
            lambda t, mask=mask: t.refine(mask), args.repeats, setup=tree.copy
        )
        results["refine"][kernels] = {
            "leaves": tree.n_leaves,
            "flagged": int(mask.sum()),
            "refined": refined,
            "balance": balance,
            "first_s": first,
            "best_s": best,
            "cells_per_s": refined / best,
            "build_tree_s": build_s,
        }
        first, best, found = best_of(lambda _, tree=tree: tree.locate(points), args.repeats)
        results["locate"][kernels] = {
            "leaves": tree.n_leaves,
            "points": args.points,
            "first_s": first,
            "best_s": best,
            "points_per_s": args.points / best,
        }
        results["locate"][kernels]["_found"] = found
    same = np.array_equal(
        results["locate"]["numba"].pop("_found"), results["locate"]["numpy"].pop("_found")
    )
    results["locate"]["numba_equals_numpy"] = bool(same)

    # Plain-Python reference on the same mesh.
    tree = trees["numpy"]
    start = time.perf_counter()
    root = py_tree_from(tree)
    py_build = time.perf_counter() - start
    sample = points[: args.python_items]
    start = time.perf_counter()
    found = [py_locate(root, float(x), float(y)) for x, y in sample]
    py_loc = time.perf_counter() - start
    expected = tree.locate(sample)
    lv = tree.leaves
    agree = all(
        (n.level, n.ix, n.iy) == (int(lv.level[k]), int(lv.ix[k]), int(lv.iy[k]))
        for n, k in zip(found, expected, strict=True)
    )
    leaves = py_leaves(root)
    pick = np.random.default_rng(args.seed + 2).choice(
        len(leaves), args.python_items, replace=False
    )
    start = time.perf_counter()
    py_refined = py_refine(root, [leaves[i] for i in pick])
    py_ref = time.perf_counter() - start
    results["python_reference"] = {
        "leaves": tree.n_leaves,
        "build_objects_s": py_build,
        "locate_points": len(sample),
        "locate_s": py_loc,
        "points_per_s": len(sample) / py_loc,
        "locate_agrees_with_quadtree": bool(agree),
        "refine_flagged": int(args.python_items),
        "refined": py_refined,
        "refine_s": py_ref,
        "cells_per_s": py_refined / py_ref,
    }
    del root, leaves, found

    # Adapt passes on a sharp front until the mesh stops changing (or is large enough),
    # each split into array- and tree-kernel time; the table shows the largest pass.
    for kernels in ("numba", "numpy"):
        crit = AMRRefinementCriteria(error_threshold=1e-3, max_refinement_levels=12)
        mesh = AdaptiveMesh((0, 1, 0, 1), crit, base_level=6, backend="numpy", tree_kernels=kernels)
        front = lambda x, y: np.tanh((np.hypot(x - 0.5, y - 0.5) - 0.3) / 1e-3)  # noqa: E731
        passes = []
        while True:
            field = mesh.sample(front)
            start = time.perf_counter()
            stats = mesh.adapt({"M": field})
            total = time.perf_counter() - start
            passes.append(
                {
                    "leaves_before": len(stats.previous),
                    "leaves_after": stats.leaves,
                    "refined": stats.refined,
                    "coarsened": stats.coarsened,
                    "total_s": total,
                    "array_kernel_s": stats.array_kernel_s,
                    "tree_kernel_s": stats.tree_kernel_s,
                }
            )
            if not stats.changed or stats.leaves > args.adapt_leaves:
                break
        results["adapt"][kernels] = {
            "passes": passes,
            "largest": max(passes, key=lambda p: p["leaves_before"]),
            "performance": mesh.performance(),
        }
    return results


def table(results: dict[str, Any]) -> str:
    ref = results["refine"]
    loc = results["locate"]
    py = results["python_reference"]
    n = ref["numba"]["leaves"]
    lines = [
        f"Quadtree AMR, {n:,} leaves (best of repeats; first call in brackets)",
        f"{'':22}{'cells refined/s':>18}{'points located/s':>20}",
    ]
    for k in ("numba", "numpy"):
        lines.append(
            f"{k + ' tree kernels':22}{ref[k]['cells_per_s']:>18.3g}{loc[k]['points_per_s']:>20.3g}"
            f"   refine {ref[k]['best_s'] * 1e3:.0f} ms ({ref[k]['first_s'] * 1e3:.0f} ms),"
            f" locate {loc[k]['best_s'] * 1e3:.0f} ms ({loc[k]['first_s'] * 1e3:.0f} ms)"
        )
    lines.append(
        f"{'plain Python objects':22}{py['cells_per_s']:>18.3g}{py['points_per_s']:>20.3g}"
        f"   (measured on {py['refine_flagged']:,} flagged leaves / {py['locate_points']:,} points)"
    )
    lines.append(
        f"refined: {ref['numba']['refined']:,} of which balance {ref['numba']['balance']:,}"
    )
    for k, entry in results["adapt"].items():
        a = entry["largest"]
        lines.append(
            f"adapt ({k} tree kernels, numpy backend) {a['leaves_before']:,} -> "
            f"{a['leaves_after']:,} leaves: {a['total_s'] * 1e3:.0f} ms, array kernels "
            f"{a['array_kernel_s'] * 1e3:.0f} ms, tree kernels {a['tree_kernel_s'] * 1e3:.0f} ms, "
            f"other {(a['total_s'] - a['array_kernel_s'] - a['tree_kernel_s']) * 1e3:.0f} ms"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^4 leaves, a smoke run")
    parser.add_argument("--leaves", type=int, default=10**6)
    parser.add_argument("--points", type=int, default=10**6)
    parser.add_argument("--refine-fraction", type=float, default=0.1)
    parser.add_argument("--python-items", type=int, default=10**4)
    parser.add_argument("--adapt-leaves", type=int, default=10**6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.leaves, args.points, args.python_items, args.adapt_leaves = 10**4, 10**4, 10**3, 10**4
        if args.output == RESULTS:
            args.no_json = True
    load_before = os.getloadavg()
    results = run(args)
    print(table(results))
    if not args.no_json:
        write_record(
            args.output,
            args,
            load_before,
            "2-core CPU shared with other jobs while measuring; best of repeats",
            results,
        )


if __name__ == "__main__":
    main()
