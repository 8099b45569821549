"""Newton on every backend: the same iteration, where the arrays live.

    python benchmarks/newton_backends.py [--repeats 3] [--backends numpy,torch,jax]
                                         [--output PATH] [--quick]

On numpy (and numba) Newton takes the SciPy reference path (the Jacobian assembled as a
sparse matrix, GMRES from SciPy); on torch and jax the whole iteration runs on the
backend's arrays (matrix-free Jacobian-vector products, the decoupled marches as the
preconditioner, GMRES on the device; ``mfg_pde/alg/numerical/_newton_device.py``).
For each problem and backend: converged, Newton steps, GMRES iterations in all, best
wall time of ``--repeats`` steady solves (after one warm-up solve that compiles), and
the largest difference of U and M from numpy's solution. Residual tolerance 1e-8.

Problems: ``hello-congestion`` (the hello example with f = +0.5 m, 101 x 50) and
``wave-kappa30`` (the periodic travelling wave of ``tests/exact_solutions.py`` at
κ = 30, 100 x 40, where damped Picard fails). ``--quick``: 41 x 20 and 40 x 16.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from exact_solutions import TravellingWave  # noqa: E402
from kernels import write_record  # noqa: E402

from mfg_pde.alg.numerical.newton import NewtonSolver  # noqa: E402
from mfg_pde.problems import hello_example  # noqa: E402


def congestion(x, m, t):
    return 0.5 * m


def problems(quick: bool) -> dict:
    (nx, nt), (wx, wt) = ((41, 20), (40, 16)) if quick else ((101, 50), (100, 40))
    return {
        f"hello-congestion {nx}x{nt}": hello_example(running_cost=congestion, Nx=nx, Nt=nt),
        f"wave-kappa30 {wx}x{wt}": TravellingWave(kappa=30.0).problem(wx, wt),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="numpy,torch,jax")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--output", type=Path, default=HERE / "results" / "newton-backends-cpu-2core.json"
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    rows = []
    for name, problem in problems(args.quick).items():
        reference = None
        for backend in args.backends.split(","):
            solver = NewtonSolver(problem, backend=backend)
            solver.solve(tolerance=1e-8)  # compiles where the backend compiles
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                result = solver.solve(tolerance=1e-8)
                times.append(time.perf_counter() - t0)
            reference = result if reference is None else reference
            gap = max(np.abs(result.U - reference.U).max(), np.abs(result.M - reference.M).max())
            linear = [s for stage in result.stages for s in stage["linear"]]
            row = {
                "problem": name,
                "backend": backend,
                "converged": bool(result.converged),
                "newton_steps": int(result.iterations),
                "gmres_iterations": int(sum(s.get("iterations", 0) for s in linear)),
                "host_lu_steps": int(sum(bool(s.get("host")) for s in linear)),
                "best_s": min(times),
                "max_diff_from_first": float(gap),
            }
            rows.append(row)
            print(
                f"{name:24s} {backend:6s} converged={row['converged']!s:5s} "
                f"newton={row['newton_steps']:3d} gmres={row['gmres_iterations']:4d} "
                f"best={row['best_s'] * 1e3:8.1f} ms  |diff|={gap:.1e}",
                flush=True,
            )
    note = "differences are against the first backend listed (numpy by default)"
    write_record(args.output, args, load_before, note, rows)
    return rows


if __name__ == "__main__":
    main()
