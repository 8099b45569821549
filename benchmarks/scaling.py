"""Scaling curves: seconds per fixed-point iteration against grid size, every backend.

    python benchmarks/scaling.py [--quick] [--backends numpy,numba,jax,torch]
                                 [--sizes-1d 101,1001,10001] [--sizes-2d 32,64,128,256,512]
                                 [--budget 60] [--plot PATH] [--output PATH]

1D: the hello problem (:func:`mfg_pde.problems.hello_example`) with Nx points and
Nt = 100 steps; 2D: :func:`mfg_pde.problems.hello_2d_example` on n x n points with
Nt = 20 steps. Each cell times ``iterations`` damped Picard iterations (a tolerance no
iterate meets, so exactly that many run) after a first solve that compiles (jax) and
warms the caches, and reports the best of two timed solves divided by the iterations:
the cost of one HJB march, one FP march and the residual. Linear cost shows as a flat
``ns per unknown`` column (unknowns = grid points x time steps).

A backend stops before a size whose cell would cost more than ``--budget`` seconds,
predicted from the last cell and linear cost (the record lists the skipped sizes).
Writes ``benchmarks/results/scaling-<device>.json`` and the picture
``docs/images/scaling.png`` (two panels, 1D and 2D, log-log).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernels  # noqa: E402  (benchmarks/kernels.py: machine description, records)

from mfg_pde import available_backends, solve_mfg  # noqa: E402
from mfg_pde.problems import hello_2d_example, hello_example  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES_1D = (101, 316, 1001, 3162, 10001)
SIZES_2D = (32, 64, 128, 256, 512)
NT_1D, NT_2D = 100, 20


def time_cell(backend: str, problem, iterations: int) -> dict:
    """Best of two timed solves of ``iterations`` iterations, after a warm-up solve."""
    options = dict(max_iterations=iterations, tolerance=1e-300)
    start = time.perf_counter()
    first = solve_mfg(problem, "fdm", backend, **options)
    first_s = time.perf_counter() - start
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        result = solve_mfg(problem, "fdm", backend, **options)
        runs.append(time.perf_counter() - start)
    per_iteration = min(runs) / result.iterations
    unknowns = problem.Nt * int(problem.m0.size)
    return {
        "backend": backend,
        "device": first.device,
        "dim": problem.dim,
        "grid": list(problem.shape[1:]),
        "Nt": problem.Nt,
        "unknowns": unknowns,
        "iterations": result.iterations,
        "first_s": first_s,
        "per_iteration_s": per_iteration,
        "ns_per_unknown": per_iteration / unknowns * 1e9,
    }


def run(backends: list[str], sizes_1d, sizes_2d, iterations: int, budget: float) -> list[dict]:
    rows = []
    for dim, sizes in ((1, sizes_1d), (2, sizes_2d)):
        for name in backends:
            for n in sizes:
                if dim == 1:
                    problem = hello_example(Nx=n, Nt=NT_1D)
                else:
                    problem = hello_2d_example(Nx=(n, n), Nt=NT_2D)
                row = time_cell(name, problem, iterations)
                rows.append(row)
                print(
                    f"  {dim}D {name:6s} {'x'.join(map(str, row['grid'])):>9s} x {row['Nt']:4d}"
                    f"  {row['per_iteration_s'] * 1e3:10.2f} ms/iteration"
                    f"  {row['ns_per_unknown']:7.1f} ns/unknown  (first {row['first_s']:.1f} s)",
                    flush=True,
                )
                # The next size costs at least (its unknowns / these) times this cell.
                larger = [m for m in sizes if m > n]
                growth = (larger[0] / n) ** dim if larger else 1.0
                cell = row["first_s"] + 2 * row["per_iteration_s"] * iterations
                if cell * growth > budget:
                    skipped = larger
                    if skipped:
                        rows.append({"backend": name, "dim": dim, "skipped": skipped})
                        print(f"  {dim}D {name}: {skipped} would exceed the {budget:.0f} s budget")
                    break
    return rows


def plot(rows: list[dict], path: Path, machine: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, dim in zip(axes, (1, 2), strict=True):
        for name in dict.fromkeys(r["backend"] for r in rows if "unknowns" in r):
            cells = [r for r in rows if r.get("dim") == dim and r["backend"] == name]
            cells = [r for r in cells if "unknowns" in r]
            if cells:
                ax.loglog(
                    [r["unknowns"] for r in cells],
                    [r["per_iteration_s"] for r in cells],
                    "o-",
                    label=name,
                )
        ax.set_xlabel("unknowns (grid points x time steps)")
        ax.set_ylabel("seconds per fixed-point iteration")
        steps = NT_1D if dim == 1 else NT_2D
        ax.set_title(f"{dim}D hello problem, Nt = {steps}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"{machine['cpu_model']}, {machine['cpu_count']} CPUs (shared)", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--backends", default=",".join(available_backends()))
    parser.add_argument("--sizes-1d", type=_ints, default=SIZES_1D)
    parser.add_argument("--sizes-2d", type=_ints, default=SIZES_2D)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per cell")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes_1d, args.sizes_2d, args.iterations = (101, 201), (16, 24), 2
    backends = [b for b in args.backends.split(",") if b]
    machine = kernels.machine_description()
    load_before = kernels._load_average()
    print(f"{machine['cpu_model']}, {machine['cpu_count']} CPUs; load {load_before}")
    rows = run(backends, args.sizes_1d, args.sizes_2d, args.iterations, args.budget)
    if not args.quick or args.output is not None:
        device = rows[0]["device"].split(":")[0] if rows else "cpu"
        output = args.output or (
            kernels.RESULTS_DIR / f"scaling-{device}-{machine['cpu_count']}core.json"
        )
        note = "seconds per fixed-point iteration; best of 2 after a warm-up solve"
        kernels.write_record(output, args, load_before, note, rows)
    if args.plot is not None or not args.quick:
        plot(rows, args.plot or ROOT / "docs" / "images" / "scaling.png", machine)
    return {"rows": rows}


if __name__ == "__main__":
    main()
