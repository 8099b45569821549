"""Newton vs the fixed point on easy and hard problems: iterations and wall time.

    python benchmarks/newton.py [--repeats 3] [--backend numpy] [--json PATH]

Problems (Nx = 101, Nt = 50 unless said):

* ``hello``: the built-in hello example (f = -0.5 m, a crowd that likes company);
* ``hello-congestion``: the same with f = +0.5 m, where damped Picard cycles;
* ``wave-kappa30``: the periodic travelling wave with f = V(t, x) + 30 m
  (``tests/exact_solutions.py``; Nx = 100, Nt = 40), where damped Picard fails.

Methods: damped Picard (θ = 0.5), adaptive damping, Anderson (depth 5, mixing 0.5),
safeguarded Anderson (adaptive mixing + residual-jump restart), Newton, and
``method="auto"``. Every fixed-point run asks for relative changes below 1e-10 AND
discrete equation residuals below 1e-8, with at most 1000 iterations; Newton for
residuals below 1e-8. Times are wall-clock around the solve: best of ``--repeats``
(one run for solves longer than 5 s). Also times the sparse LU of the Newton system
against the grid size. The machine is printed and written into the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla

from mfg_pde import MFGProblem, solve_mfg
from mfg_pde.alg.numerical import NewtonSolver
from mfg_pde.problems import hello_example

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent / "tests"))
from exact_solutions import TravellingWave  # noqa: E402

METHODS = {
    "picard (theta 0.5)": ("fdm", {}),
    "adaptive damping": ("fdm", {"adaptive_damping": True}),
    "anderson (5, 0.5)": ("fdm", {"use_anderson": True}),
    "safeguarded anderson": (
        "fdm",
        {"use_anderson": True, "adaptive_damping": True, "anderson_safeguard": 1.5},
    ),
    "newton": ("newton", {}),
    "auto": ("auto", {}),
}


def congestion(x, m, t):
    return 0.5 * m


def problems() -> dict[str, MFGProblem]:
    wave = TravellingWave(kappa=30.0)
    return {
        "hello": hello_example(),
        "hello-congestion": hello_example(running_cost=congestion),
        "wave-kappa30": wave.problem(Nx=100, Nt=40),
    }


def options_for(method: str, extra: dict) -> dict:
    if method == "fdm":
        return {**extra, "max_iterations": 1000, "tolerance": 1e-10, "equation_tolerance": 1e-8}
    if method == "newton":
        return {"tolerance": 1e-8}
    return {"equation_tolerance": 1e-8}


def run(problem, method, extra, backend, repeats):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = solve_mfg(problem, method, backend, **options_for(method, extra))
        times.append(time.perf_counter() - t0)
        if times[-1] > 5.0:
            break
    return result, min(times)


def lu_scaling() -> list[dict]:
    """Seconds of one sparse LU of the Newton Jacobian, at the solution, per grid."""
    rows = []
    for Nx, Nt in ((101, 25), (101, 50), (101, 100), (101, 200), (51, 25), (201, 100)):
        p = hello_example(running_cost=congestion, Nx=Nx, Nt=Nt)
        solver = NewtonSolver(p)
        result = solver.solve(tolerance=1e-8)
        J = solver.jacobian(result.U, result.M)
        best = min(_timed(lambda J=J: spla.splu(J, permc_spec="MMD_ATA")) for _ in range(3))
        lu = spla.splu(J, permc_spec="MMD_ATA")
        rows.append(
            {
                "Nx": Nx,
                "Nt": Nt,
                "unknowns": J.shape[0],
                "lu_seconds": best,
                "lu_nonzeros": int(lu.L.nnz + lu.U.nnz),
            }
        )
        print(f"  LU Nx={Nx} Nt={Nt}: {best * 1e3:.1f} ms, {rows[-1]['lu_nonzeros']:.2e} nnz")
    return rows


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--json", default=str(ROOT / "results" / "newton-cpu-2core.json"))
    args = parser.parse_args()

    cpu = platform.processor() or platform.machine()
    machine = f"{platform.node()}, {cpu}, {os.cpu_count()} CPUs; numpy {np.__version__}"
    print(f"machine: {machine}; backend {args.backend}")
    rows = []
    for name, problem in problems().items():
        solve_mfg(problem, "newton", args.backend, max_iterations=1)  # warm the caches
        for label, (method, extra) in METHODS.items():
            result, seconds = run(problem, method, extra, args.backend, args.repeats)
            # Of the arrays returned (for a failed run: its last iterate), not the history.
            F, G = NewtonSolver(problem).residual(result.U, result.M)
            residual = max(np.abs(F).max(), np.abs(G).max())
            row = {
                "problem": name,
                "method": label,
                "converged": bool(result.converged),
                "iterations": int(result.iterations),
                "equation_residual": float(residual),
                "seconds": seconds,
                "produced_by": result.method,
                "stages": [
                    f"{s['stage']} {s['iterations']} it "
                    f"{'ok' if s['converged'] else 'failed'} {s['time']:.2f} s"
                    for s in result.stages
                    if "time" in s
                ],
            }
            if method == "newton":
                row["linear_solve_seconds"] = result.timings["linear_solve"]
            rows.append(row)
            print(
                f"  {name:17s} {label:21s} converged={row['converged']!s:5s} "
                f"iterations={row['iterations']:4d} residual={residual:.1e} {seconds:.2f} s",
                flush=True,
            )
    lu = lu_scaling()

    print()
    print("problem | method | converged | iterations | equation residual | wall time")
    print("--- | --- | --- | --- | --- | ---")
    for r in rows:
        print(
            f"{r['problem']} | {r['method']} | {r['converged']} | {r['iterations']} | "
            f"{r['equation_residual']:.1e} | {r['seconds']:.2f} s"
        )
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {"machine": machine, "backend": args.backend, "solves": rows, "lu_scaling": lu},
            indent=1,
        )
    )
    print(f"\nwritten: {path}")


if __name__ == "__main__":
    main()
