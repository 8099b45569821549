"""Solve the same MFG on every installed backend: same answer, different speed.

    python examples/backend_comparison.py            # every installed backend
    python examples/backend_comparison.py --backends numpy,jax --small

For each backend, the DESIGN example (``mfg_pde.problems.design_example``) is solved
twice with Anderson acceleration: the first solve includes one-off costs (JAX traces and
compiles, numba loads its kernels), the second is the steady cost. Every solution is
compared with numpy's. Writes ``examples/output/backend_comparison.png``: the times per
backend and the final densities on top of each other. ``--small`` (or
``MFG_PDE_EXAMPLE_SMALL=1``) uses a coarse grid; ``MFG_PDE_EXAMPLE_OUTPUT`` sets the
output folder.

On a CPU and a 101-point grid, numpy and numba are fastest: jax and torch pay a fixed
cost per operation that such a small grid cannot hide (see docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from mfg_pde import available_backends, solve_mfg
from mfg_pde.problems import design_example

OUTPUT = Path(os.environ.get("MFG_PDE_EXAMPLE_OUTPUT", Path(__file__).resolve().parent / "output"))
SMALL = os.environ.get("MFG_PDE_EXAMPLE_SMALL", "") not in ("", "0")


def timed_solve(problem, backend):
    start = time.perf_counter()
    result = solve_mfg(problem, backend=backend, use_anderson=True, tolerance=1e-8)
    return result, time.perf_counter() - start


def main() -> None:
    installed = [name for name, info in available_backends().items() if info["installed"]]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(installed), help="comma-separated")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="folder for the figure")
    parser.add_argument("--small", action="store_true", default=SMALL, help="coarse grid")
    args = parser.parse_args()
    names = [name.strip() for name in args.backends.split(",") if name.strip()]
    problem = design_example(Nx=41, Nt=20) if args.small else design_example()

    rows = {}
    for name in names:
        first, first_s = timed_solve(problem, name)
        steady, steady_s = timed_solve(problem, name)
        if not steady.converged:
            raise SystemExit(f"{name}: did not converge: {steady.reason}")
        rows[name] = (steady, first_s, steady_s)
    reference = rows["numpy"][0] if "numpy" in rows else next(iter(rows.values()))[0]

    print(
        f"{'backend':<8} {'device':<8} {'iterations':>10} {'first':>9} {'steady':>9}  "
        "max |M - M_numpy| / max M"
    )
    for name, (result, first_s, steady_s) in rows.items():
        diff = np.max(np.abs(result.M - reference.M)) / np.max(np.abs(reference.M))
        print(
            f"{name:<8} {result.device:<8} {result.iterations:>10} {first_s:>8.3f}s "
            f"{steady_s:>8.3f}s  {diff:.1e}"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    position = np.arange(len(rows))
    ax_t.bar(position - 0.2, [r[1] for r in rows.values()], 0.4, label="first solve")
    ax_t.bar(position + 0.2, [r[2] for r in rows.values()], 0.4, label="steady solve")
    ax_t.set_xticks(position, [f"{n}\n({r[0].device})" for n, r in rows.items()])
    ax_t.set(ylabel="seconds", title=f"Solve time, Nx={problem.Nx}, Nt={problem.Nt}")
    ax_t.legend()
    styles = ["-", "--", ":", "-."]
    for (name, (result, _, _)), style in zip(rows.items(), styles * 2, strict=False):
        ax_m.plot(result.x, result.M[-1], style, lw=2, label=name)
    ax_m.plot(reference.x, reference.M[0], color="grey", lw=1, label="m0")
    ax_m.set(xlabel="x", ylabel="m(T, x)", title="Final density: one curve per backend")
    ax_m.legend()
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / "backend_comparison.png"
    fig.savefig(path, dpi=120)
    print(f"figure: {path}")


if __name__ == "__main__":
    main()
