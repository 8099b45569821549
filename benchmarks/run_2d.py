"""Benchmark of issue 7: the 2D hello problem, FDM-FDM, on every backend.

    python benchmarks/run_2d.py [--n 128] [--nt 100] [--backends numpy,jax,torch]
                                [--max-iterations 200] [--output PATH]

The problem is :func:`mfg_pde.problems.hello_2d_example` (the 2D analogue of the 1D
hello problem: [0, 1]^2 no-flux, T = 1, σ = 0.1, λ = 1, f = -0.5 m,
g = |x - (0.5, 0.5)|², m0 ∝ exp(-50 |x - (0.5, 0.5)|²)), n x n points and nt steps,
damped Picard θ = 0.5, tolerance 1e-6 (the solve_mfg defaults). Per backend it reports
the first solve in the process (jax compiles its program there, and numpy, the first
backend of a fresh clone, numba's kernels) and, for those two, a second one; the
iterations, seconds per iteration, the split between the HJB and FP
marches (host loop) and the BiCGSTAB iterations of one HJB and one FP march at the
converged density. The issue's target: a full solve in under 30 s on numpy on a 2-core
machine at n = 128, nt = 100. Writes ``benchmarks/results/run-2d-<device>.json``.

``--compare-march-kernels`` instead times, per backend, the whole solve with the
compiled 2D marches (``hjb_march_2d_kernel``, ``fp_march_2d_kernel``) and without them
(the step-by-step marches), alternating ``--rounds`` times in one process so that the
machine's drift falls on both alike; writes ``run-2d-march-kernels-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernels  # noqa: E402  (benchmarks/kernels.py: machine description)

from mfg_pde import available_backends, create_backend, solve_mfg  # noqa: E402
from mfg_pde.alg.numerical import HJBFDMSolver  # noqa: E402
from mfg_pde.problems import hello_2d_example  # noqa: E402


def bench(backend: str, n: int, nt: int, max_iterations: int, repeat: bool) -> dict:
    problem = hello_2d_example(Nx=(n, n), Nt=nt)
    runs, compile_s = [], 0.0
    for _ in range(2 if repeat else 1):
        start = time.perf_counter()
        result = solve_mfg(problem, backend=backend, max_iterations=max_iterations)
        runs.append(time.perf_counter() - start)
        compile_s = max(compile_s, result.timings.get("compile", 0.0))
    hjb = HJBFDMSolver(problem, backend=backend)
    hjb.solve(result.M)
    row = {
        "backend": backend,
        "device": result.device,
        "n": n,
        "nt": nt,
        "converged": result.converged,
        "iterations": result.iterations,
        "first_s": round(runs[0], 3),
        "second_s": round(runs[-1], 3) if repeat else None,
        "compile_s": round(compile_s, 3),
        "per_iteration_s": round(runs[-1] / max(result.iterations, 1), 4),
        "hjb_s": round(result.timings.get("hjb", float("nan")), 3),
        "fp_s": round(result.timings.get("fp", float("nan")), 3),
        "krylov_per_hjb_march": hjb.last_krylov_iterations,
        "mass_error": float(np.abs(result.M.sum(axis=(1, 2)) * problem.cell_volume - 1).max()),
        "reason": result.reason,
    }
    print(
        f"{backend:6s} {row['device']:5s} it {row['iterations']:3d} "
        f"first {row['first_s']:8.2f} s  second {row['second_s'] or float('nan'):8.2f} s  "
        f"compile {row['compile_s']:6.2f} s  per it {row['per_iteration_s']:.3f} s  "
        f"hjb {row['hjb_s']} fp {row['fp_s']}  krylov/HJB march {row['krylov_per_hjb_march']}"
        f"  converged {row['converged']}",
        flush=True,
    )
    return row


def compare_march_kernels(backend: str, n: int, nt: int, max_iterations: int, rounds: int):
    """Whole solves with and without the compiled 2D marches, alternating (see module)."""
    import mfg_pde.alg.numerical._base as base
    from mfg_pde.backends import create_backend

    cls = type(create_backend(backend))
    hooks = {name: getattr(cls, name) for name in ("hjb_march_2d_kernel", "fp_march_2d_kernel")}
    problem = hello_2d_example(Nx=(n, n), Nt=nt)
    rows = []
    try:
        # Warm up both paths on a small grid: numba compiles (or loads from its cache)
        # the kernels of each once per process, which is not what is compared.
        for compiled in (True, False):
            for name, hook in hooks.items():
                setattr(cls, name, hook if compiled else (lambda self: None))
            base._compiled.clear()
            solve_mfg(hello_2d_example(Nx=(16, 16), Nt=4), backend=backend)
        for _ in range(rounds):
            for compiled in (True, False):
                for name, hook in hooks.items():
                    setattr(cls, name, hook if compiled else (lambda self: None))
                base._compiled.clear()  # programs are cached by structure, not by path
                times = []
                for _ in range(2 if backend == "jax" else 1):
                    start = time.perf_counter()
                    result = solve_mfg(problem, backend=backend, max_iterations=max_iterations)
                    times.append(round(time.perf_counter() - start, 3))
                rows.append(
                    {
                        "backend": backend,
                        "march_kernels": compiled,
                        "seconds": times,
                        "iterations": result.iterations,
                        "converged": result.converged,
                    }
                )
                print(
                    f"{backend:6s} {'march kernels' if compiled else 'step by step ':13s} "
                    + " ".join(f"{t:7.2f} s" for t in times),
                    flush=True,
                )
    finally:
        for name, hook in hooks.items():
            setattr(cls, name, hook)
        base._compiled.clear()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--nt", type=int, default=100)
    parser.add_argument("--backends", default=",".join(available_backends()))
    parser.add_argument("--max-iterations", type=int, default=200)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--compare-march-kernels", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    machine = kernels.machine_description()
    load_before = kernels._load_average()
    print(f"{machine['cpu_model']}, {machine['cpu_count']} CPUs; load {load_before}", flush=True)
    if args.compare_march_kernels:
        rows = [
            row
            for name in args.backends.split(",")
            for row in compare_march_kernels(
                name, args.n, args.nt, args.max_iterations, args.rounds
            )
        ]
        device = create_backend(args.backends.split(",")[0]).device.split(":")[0]
        stem = "run-2d-march-kernels"
    else:
        rows = [
            # jax compiles its program in the first solve, and numpy (the first backend
            # of a fresh clone) compiles numba's kernels: their second solve is steady.
            bench(name, args.n, args.nt, args.max_iterations, repeat=name in ("numpy", "jax"))
            for name in args.backends.split(",")
        ]
        device = "cpu" if all(r["device"].startswith("cpu") for r in rows) else "gpu"
        stem = "run-2d"
    output = args.output or (
        Path(__file__).resolve().parent
        / "results"
        / f"{stem}-{device}-{machine['cpu_count']}core.json"
    )
    report = {
        "problem": "hello_2d_example",
        "machine": machine,
        "source": kernels.source_state(),
        "command": "run_2d.py " + " ".join(sys.argv[1:]),
        "load_average_before": load_before,
        "load_average_after": kernels._load_average(),
        "rows": rows,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
