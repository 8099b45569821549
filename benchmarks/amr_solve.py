"""Adaptive against uniform: the MFG solved on the quadtree vs uniform grids of its finest level.

    python benchmarks/amr_solve.py [--quick] [--levels 5,6,7] [--problems crowd,gather]

For each problem (``crowd_2d_example``: a crowd heading for an exit;
``gather_2d_example``: a crowd that gathers at a point, its density in a small region
at every time) and each level L:

* **uniform**: the uniform 2D solver (``solve_mfg``, numpy with numba: its fastest CPU
  path) on the ``2^L x 2^L`` grid whose nodes are the centres of the level-L cells of
  the unit square (the grid on ``[h/2, 1 - h/2]``);
* **adaptive**: ``solve_mfg(problem, mesh=AdaptiveMesh(...))`` from level ``L - 3``,
  refined up to level L from the indicator of M (threshold 0.1), numpy with numba.

Both are measured against a **reference**: the uniform solver one level finer than the
finest level compared (``--reference-level``). The error is the L1 norm of ``M(T)``
against the reference, both as cell averages on the reference grid
(``sum |M - M_ref| h_ref^2``). Time discretisation (Nt = 20) and tolerance (1e-6) are the
same everywhere, so the errors are the meshes' own. One solve per entry (no repeats:
the solves take seconds to minutes); the machine is shared, so compare within a run.

``--quick`` runs levels 4 and 5 against level 6, in well under a minute.
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

from mfg_pde import solve_mfg  # noqa: E402
from mfg_pde.geometry import AdaptiveMesh, AMRRefinementCriteria  # noqa: E402
from mfg_pde.problems import crowd_2d_example, gather_2d_example  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "amr-solve-cpu-2core.json"
PROBLEMS = {"crowd": crowd_2d_example, "gather": gather_2d_example}
#: Shared by every solve of the benchmark.
NT, TOLERANCE = 20, 1e-6
#: The adaptive mesh: threshold of the M indicator, levels below the finest to start at.
THRESHOLD, START_BELOW = 0.1, 3


def uniform_solve(make: Any, level: int) -> tuple[np.ndarray, dict]:
    """The uniform solver on the cell centres of level ``level``; ``M(T)`` and a record."""
    n = 2**level
    h = 1.0 / n
    problem = make(Nx=(n, n), Nt=NT, domain=[(h / 2, 1 - h / 2)] * 2)
    start = time.perf_counter()
    result = solve_mfg(problem, backend="numpy", tolerance=TOLERANCE)
    seconds = time.perf_counter() - start
    record = {
        "cells": n * n,
        "seconds": seconds,
        "iterations": result.iterations,
        "converged": bool(result.converged),
    }
    return np.asarray(result.M[-1]), record


def adaptive_solve(make: Any, level: int, reference_level: int) -> tuple[np.ndarray, dict]:
    criteria = AMRRefinementCriteria(error_threshold=THRESHOLD, max_refinement_levels=level)
    base = max(1, level - START_BELOW)
    mesh = AdaptiveMesh((0.0, 1.0, 0.0, 1.0), criteria, base_level=base, backend="numpy")
    start = time.perf_counter()
    result = solve_mfg(make(Nt=NT), mesh=mesh, adapt_on="M", tolerance=TOLERANCE)
    seconds = time.perf_counter() - start
    record = {
        "cells": result.n_leaves,
        "seconds": seconds,
        "iterations": result.iterations,
        "converged": bool(result.converged),
        "levels": [int(result.levels.min()), int(result.levels.max())],
        "leaves_per_adapt": [entry["leaves"] for entry in result.history],
        "mass_error": float(np.abs(result.mass() - 1.0).max()),
        "equation_residuals": result.equation_residuals,
    }
    on_reference = np.asarray(mesh.to_uniform(result.M[-1], reference_level))
    return on_reference, record


def l1_error(values: np.ndarray, reference: np.ndarray) -> float:
    """``sum |values - reference| h^2`` on the reference grid (``values`` of any coarser
    power-of-two grid are first spread to it as cell averages)."""
    k = reference.shape[0] // values.shape[0]
    spread = np.kron(values, np.ones((k, k)))
    return float(np.sum(np.abs(spread - reference)) / reference.size)


def run(args: argparse.Namespace) -> dict:
    out: dict[str, Any] = {}
    for name in args.problems:
        make = PROBLEMS[name]
        reference, ref_record = uniform_solve(make, args.reference_level)
        print(
            f"{name}: reference {2**args.reference_level}^2 in {ref_record['seconds']:.1f} s",
            flush=True,
        )
        rows = []
        for level in args.levels:
            values, uniform = uniform_solve(make, level)
            uniform["l1_error"] = l1_error(values, reference)
            values, adaptive = adaptive_solve(make, level, args.reference_level)
            adaptive["l1_error"] = l1_error(values, reference)
            rows.append({"level": level, "uniform": uniform, "adaptive": adaptive})
            print(row_text(name, rows[-1]), flush=True)
        out[name] = {"reference": ref_record, "rows": rows}
    return out


def row_text(name: str, row: dict) -> str:
    u, a = row["uniform"], row["adaptive"]
    n = 2 ** row["level"]
    return (
        f"{name} | {n}^2 | {u['cells']} | {u['l1_error']:.3e} | {u['seconds']:.2f} s | "
        f"{a['cells']} ({a['cells'] / u['cells']:.0%}) | {a['l1_error']:.3e} | "
        f"{a['seconds']:.2f} s | {a['seconds'] / u['seconds']:.2f}"
    )


def table(results: dict) -> str:
    lines = [
        "problem | finest grid | uniform cells | uniform L1 | uniform time | adaptive leaves "
        "(share) | adaptive L1 | adaptive time | time ratio",
        "--- | --- | --- | --- | --- | --- | --- | --- | ---",
    ]
    for name, entry in results.items():
        lines += [row_text(name, row) for row in entry["rows"]]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    for ax, (name, entry) in zip(axes[0], results.items(), strict=True):
        for kind, marker in (("uniform", "s-"), ("adaptive", "o-")):
            cells = [row[kind]["cells"] for row in entry["rows"]]
            errors = [row[kind]["l1_error"] for row in entry["rows"]]
            ax.loglog(cells, errors, marker, label=kind)
        ax.set_xlabel("cells (leaves)")
        ax.set_ylabel("L1 error of M(T)")
        ax.set_title(f"{name}: error against cells")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="levels 4, 5 against 6")
    parser.add_argument("--levels", default="5,6,7")
    parser.add_argument("--reference-level", type=int, default=None)
    parser.add_argument("--problems", default="crowd,gather")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=None, help="error-vs-cells picture")
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    args.levels = [4, 5] if args.quick else [int(v) for v in args.levels.split(",")]
    args.problems = [p.strip() for p in args.problems.split(",")]
    unknown = sorted(set(args.problems) - set(PROBLEMS))
    if unknown:
        parser.error(f"unknown problem(s) {unknown}; known: {sorted(PROBLEMS)}")
    if args.reference_level is None:
        args.reference_level = max(args.levels) + 1
    if args.reference_level <= max(args.levels):
        parser.error("--reference-level must be finer than every level compared")
    if args.quick and args.output == RESULTS:
        args.no_json = True
    load_before = os.getloadavg()
    results = run(args)
    print(table(results))
    if args.plot is not None:
        plot(results, args.plot)
        print(f"wrote {args.plot}")
    if not args.no_json:
        write_record(
            args.output,
            args,
            load_before,
            "2-core CPU shared with other jobs; one solve per entry",
            results,
        )


if __name__ == "__main__":
    main()
