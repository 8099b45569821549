"""Benchmark suite of issue 4: kernels, full solves, scaling, compile payoff, batches.

    python benchmarks/run.py [--quick] [--sections kernels,solves,scaling,batch]
                             [--backends numpy,numba,jax,torch] [--output PATH]

Prints backend x size tables and writes one JSON file to ``benchmarks/results/``
naming the machine (CPU model, cores, load average before and after) and each backend's
device. Run it on an otherwise idle machine; ``--quick`` is a smoke run (< 1 minute).

Sections
--------
kernels
    ``benchmarks/kernels.py`` (Gaussian KDE exact/binned, batched tridiagonal solves),
    with its first-call and steady columns and the physical floor of each cell.
solves
    The hello problem of issue 4 (the public peer's tutorial: [0, 1] no-flux, T = 1,
    σ = 0.1, λ = 1, f = -0.5 m, g = (x - 0.5)², m0 ∝ exp(-50 (x - 0.5)²), Nx = 101,
    Nt = 50, damped Picard θ = 0.5, tolerance 1e-6) by FDM-FDM and FDM-particle on every
    backend: the first solve in the process (jax compiles here: ``compile`` is the
    compile time the result reports), the best of k later ones, iterations, time per
    iteration, the speed-up over the peer's 17.6 s, and a floor (operations ÷ peak).
    For jax also the number of solves after which compiling pays off against numpy
    and against running jax eagerly.
scaling
    Seconds per Picard iteration against Nx·Nt, up to Nx = 10^4 and Nt = 10^3 (numpy
    and jax): linear cost means a flat ns per (point x step) column.
batch
    A σ-sweep of the hello problem (100 members) solved with ``solve_mfg_batch``
    against one ``solve_mfg`` per member, on every backend: jax vmaps its compiled
    program, numpy, numba and torch on the CPU stack the members' iterations (two
    ranges of members in two threads).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kernels  # noqa: E402  (benchmarks/kernels.py)

from mfg_pde import MFGProblem, available_backends, solve_mfg, solve_mfg_batch  # noqa: E402
from mfg_pde.problems import hello_example  # noqa: E402

#: The public peer's fastest path on the hello problem (issue 4), on this kind of machine.
PEER_SECONDS = 17.6
#: Floor model of one Picard iteration per grid unknown: two Newton steps (the fewest
#: that verify convergence) of ~40 flops (stencil, Hamiltonian, Jacobian, update) plus
#: a Thomas solve (8), and an FP step (~20 flops of matrix assembly + 8 of Thomas).
FLOPS_PER_UNKNOWN_ITERATION = 2 * (40 + 8) + 28
#: Floor model of one particle step: a normal variate (~20 flops), the drift's linear
#: interpolation (~8), the Euler step and reflection (~6), linear binning (~10).
FLOPS_PER_PARTICLE_STEP = 44

FULL = {
    "repeats": 5,
    "particles": 100_000,
    "particle_iterations": 20,
    "particle_repeats": 3,
    "scaling": ((101, 50), (1001, 100), (1001, 1000), (10001, 100), (10001, 1000)),
    "scaling_iterations": 3,
    "batch": 100,
}
QUICK = {
    "repeats": 2,
    "particles": 5_000,
    "particle_iterations": 3,
    "particle_repeats": 1,
    "scaling": ((101, 50), (1001, 100)),
    "scaling_iterations": 2,
    "batch": 4,
}


def hello(Nx: int = 101, Nt: int = 50) -> MFGProblem:
    """Issue 4's reference problem (:func:`mfg_pde.problems.hello_example`)."""
    return hello_example(Nx=Nx, Nt=Nt)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def floor_seconds(Nx: int, Nt: int, iterations: int, model: dict) -> float:
    return Nx * Nt * iterations * FLOPS_PER_UNKNOWN_ITERATION / model["peak_flops"]


def _hjb_floor(problem: MFGProblem, iterations: int, model: dict) -> float:
    """The HJB part of :func:`floor_seconds` (two Newton steps of 48 flops per unknown)."""
    return problem.Nx * problem.Nt * iterations * 2 * (40 + 8) / model["peak_flops"]


# -- sections ---------------------------------------------------------------------------------
def bench_solves(names: list[str], cfg: dict, model: dict) -> list[dict]:
    rows = []
    problem = hello()
    reference = None
    for method in ("fdm", "particle"):
        options: dict[str, Any] = {"thetaUM": 0.5, "tolerance": 1e-6}
        if method == "particle":
            options.update(
                num_particles=cfg["particles"], seed=0, max_iterations=cfg["particle_iterations"]
            )
        for name in names:
            first, t_first = _timed(lambda: solve_mfg(problem, method, name, **options))  # noqa: B023
            repeats = cfg["repeats"] if method == "fdm" else cfg["particle_repeats"]
            best = min(
                _timed(lambda: solve_mfg(problem, method, name, **options))[1]  # noqa: B023
                for _ in range(repeats)
            )
            if method == "fdm" and reference is None:
                reference = first
            row = {
                "section": "solves",
                "method": method,
                "backend": name,
                "device": first.device,
                "iterations": first.iterations,
                "converged": first.converged,
                "first_s": t_first,
                "compile_s": first.timings.get("compile"),
                "steady_s": best,
                "per_iteration_s": best / max(first.iterations, 1),
                "vs_peer": PEER_SECONDS / best,
                "floor_s": floor_seconds(problem.Nx, problem.Nt, first.iterations, model),
            }
            if method == "particle":
                row["floor_s"] = (
                    _hjb_floor(problem, first.iterations, model)
                    + (cfg["particles"] * problem.Nt * first.iterations * FLOPS_PER_PARTICLE_STEP)
                    / model["peak_flops"]
                )
            if method == "fdm":
                row["max_rel_diff_vs_numpy"] = max(
                    float(np.abs(first[k] - reference[k]).max() / np.abs(reference[k]).max())
                    for k in ("U", "M")
                )
            else:
                row["particles"] = cfg["particles"]
                row["l1_vs_fdm"] = float(
                    (np.abs(first.M - reference.M).sum(axis=1) * problem.dx).max()
                )
            rows.append(row)
            print(
                f"  {method:8s} {name:6s} first {t_first:7.3f} s  steady {best:7.3f} s  "
                f"{first.iterations} it",
                flush=True,
            )
    rows += _payoff(rows, names, problem)
    return rows


def _payoff(rows: list[dict], names: list[str], problem: MFGProblem) -> list[dict]:
    """Solves after which jax's compile time is repaid (vs numpy, vs eager jax)."""
    if "jax" not in names:
        return []
    fdm = {r["backend"]: r for r in rows if r["method"] == "fdm"}
    jax_row = fdm["jax"]
    # Eager jax: two iterations timed, scaled to the compiled run's iteration count.
    eager, t_eager = _timed(
        lambda: solve_mfg(problem, "fdm", "jax", compile=False, max_iterations=2)
    )
    eager_solve = t_eager / eager.iterations * jax_row["iterations"]
    out = {
        "section": "payoff",
        "backend": "jax",
        "compile_s": jax_row["compile_s"],
        "steady_s": jax_row["steady_s"],
        "eager_solve_s": eager_solve,
        "solves_to_pay_off_vs_eager": jax_row["compile_s"] / (eager_solve - jax_row["steady_s"]),
    }
    if "numpy" in fdm:
        gain = fdm["numpy"]["steady_s"] - jax_row["steady_s"]
        out["numpy_steady_s"] = fdm["numpy"]["steady_s"]
        out["solves_to_pay_off_vs_numpy"] = jax_row["compile_s"] / gain if gain > 0 else None
    return [out]


def bench_scaling(names: list[str], cfg: dict, model: dict) -> list[dict]:
    rows = []
    iterations = cfg["scaling_iterations"]
    for name in [n for n in names if n in ("numpy", "jax")]:
        for Nx, Nt in cfg["scaling"]:
            problem = hello(Nx=Nx, Nt=Nt)
            # A tolerance no iterate meets: exactly `iterations` iterations are timed.
            options = dict(max_iterations=iterations, tolerance=1e-300)
            first, t_first = _timed(lambda: solve_mfg(problem, "fdm", name, **options))  # noqa: B023
            result, seconds = _timed(lambda: solve_mfg(problem, "fdm", name, **options))  # noqa: B023
            per_iteration = seconds / result.iterations
            rows.append(
                {
                    "section": "scaling",
                    "backend": name,
                    "Nx": Nx,
                    "Nt": Nt,
                    "first_s": t_first,
                    "per_iteration_s": per_iteration,
                    "ns_per_unknown": per_iteration / (Nx * Nt) * 1e9,
                    "floor_per_iteration_s": floor_seconds(Nx, Nt, 1, model),
                }
            )
            print(
                f"  {name:6s} Nx={Nx:6d} Nt={Nt:5d}  {per_iteration * 1e3:9.2f} ms/iteration  "
                f"{rows[-1]['ns_per_unknown']:6.1f} ns per point-step",
                flush=True,
            )
    return rows


def bench_batch(names: list[str], cfg: dict) -> list[dict]:
    rows = []
    problem = hello()
    for name in names:
        size = cfg["batch"]
        sigmas = np.linspace(0.1, 0.3, size)
        _, t_first = _timed(lambda: solve_mfg_batch(problem, {"sigma": sigmas}, backend=name))  # noqa: B023
        batch, t_batch = _timed(lambda: solve_mfg_batch(problem, {"sigma": sigmas}, backend=name))  # noqa: B023
        for s in sigmas[:1]:  # compile the single-solve program before timing
            solve_mfg(problem.replace(sigma=float(s)), backend=name)
        singles, t_singles = _timed(
            lambda: [solve_mfg(problem.replace(sigma=float(s)), backend=name) for s in sigmas]  # noqa: B023
        )
        diff = max(float(np.abs(a.U - b.U).max()) for a, b in zip(batch, singles, strict=True))
        rows.append(
            {
                "section": "batch",
                "backend": name,
                "members": size,
                "batch_first_s": t_first,
                "batch_s": t_batch,
                "singles_s": t_singles,
                "singles_over_batch": t_singles / t_batch,
                "iterations": [r.iterations for r in batch],
                "max_abs_diff_U": diff,
            }
        )
        print(
            f"  {name:6s} {size} members: batch {t_batch:.3f} s, singles {t_singles:.3f} s "
            f"(ratio {t_singles / t_batch:.2f})",
            flush=True,
        )
    return rows


# -- tables ---------------------------------------------------------------------------------
def _s(value: float | None) -> str:
    return "-" if value is None else kernels._fmt_time(value)


def print_tables(rows: list[dict]) -> None:
    solves = [r for r in rows if r["section"] == "solves"]
    if solves:
        print("\nHello problem (Nx = 101, Nt = 50, θ = 0.5, tol 1e-6); peer: 17.6 s")
        print(
            "(the FDM density concentrates to a spike 1-2 cells wide, peak ~89, that a KDE "
            "of bandwidth >= dx cannot resolve: the particle L1 column measures that, not "
            "sampling error)"
        )
        print(
            "method | backend | device | iterations | first | compile | steady | "
            "per iteration | vs peer | floor | check"
        )
        print(" | ".join(["---"] * 11))
        for r in solves:
            check = (
                f"{r['max_rel_diff_vs_numpy']:.1e} rel vs numpy"
                if r["method"] == "fdm"
                else f"L1 {r['l1_vs_fdm']:.3f} vs FDM, N = {r['particles']}"
            )
            print(
                f"{r['method']} | {r['backend']} | {r['device']} | {r['iterations']} | "
                f"{_s(r['first_s'])} | {_s(r['compile_s'])} | {_s(r['steady_s'])} | "
                f"{_s(r['per_iteration_s'])} | {r['vs_peer']:.0f}x | {_s(r['floor_s'])} | {check}"
            )
    for r in (r for r in rows if r["section"] == "payoff"):
        print(
            f"\njax compile {_s(r['compile_s'])}, steady {_s(r['steady_s'])}, eager solve "
            f"{_s(r['eager_solve_s'])}: compiling pays off after "
            f"{r['solves_to_pay_off_vs_eager']:.2f} solves against eager jax"
            + (
                f" and {r['solves_to_pay_off_vs_numpy']:.1f} solves against numpy"
                if r.get("solves_to_pay_off_vs_numpy")
                else " (never against numpy: numpy is faster)"
            )
        )
    scaling = [r for r in rows if r["section"] == "scaling"]
    if scaling:
        print("\nCost per Picard iteration (hello problem)")
        print("backend | Nx | Nt | Nx·Nt | per iteration | ns per point-step | floor")
        print(" | ".join(["---"] * 7))
        for r in scaling:
            print(
                f"{r['backend']} | {r['Nx']} | {r['Nt']} | {r['Nx'] * r['Nt']:.0e} | "
                f"{_s(r['per_iteration_s'])} | {r['ns_per_unknown']:.1f} | "
                f"{_s(r['floor_per_iteration_s'])}"
            )
    batch = [r for r in rows if r["section"] == "batch"]
    if batch:
        print("\nσ-sweep of the hello problem: solve_mfg_batch vs one solve_mfg per member")
        print("backend | members | batch | singles | singles / batch | max |ΔU|")
        print(" | ".join(["---"] * 6))
        for r in batch:
            print(
                f"{r['backend']} | {r['members']} | {_s(r['batch_s'])} | {_s(r['singles_s'])} | "
                f"{r['singles_over_batch']:.2f} | {r['max_abs_diff_U']:.1e}"
            )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--sections", default="kernels,solves,scaling,batch")
    parser.add_argument("--backends", default=None, help="default: every installed backend")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--no-json", action="store_true")
    parser.add_argument("--peak-gflops", type=float, default=39.2, help="floor model (per core)")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    installed = [n for n, info in available_backends().items() if info["installed"]]
    names = installed if args.backends is None else args.backends.split(",")
    missing = sorted(set(names) - set(installed))
    if missing:
        parser.error(f"--backends: {', '.join(missing)} not installed")
    sections = args.sections.split(",")
    unknown = sorted(set(sections) - {"kernels", "solves", "scaling", "batch"})
    if unknown:
        parser.error(f"--sections: unknown {', '.join(unknown)}")
    model = {"peak_flops": args.peak_gflops * 1e9}

    machine = kernels.machine_description()
    load_before = kernels._load_average()
    print(
        f"{machine['cpu_model']}, {machine['cpu_count']} CPUs; load {load_before}; "
        f"backends {', '.join(names)}",
        flush=True,
    )
    started = time.perf_counter()
    rows: list[dict] = []
    kernel_report = None
    if "kernels" in sections:
        kernel_args = ["--no-json", "--backends", ",".join(names)]
        kernel_report = kernels.main(kernel_args + (["--quick"] if args.quick else []))
    if "solves" in sections:
        rows += bench_solves(names, cfg, model)
    if "scaling" in sections:
        rows += bench_scaling(names, cfg, model)
    if "batch" in sections:
        rows += bench_batch(names, cfg)
    print_tables(rows)
    devices = {}
    for name in names:
        from mfg_pde.backends import create_backend

        devices[name] = create_backend(name).device
    report = {
        "schema": 1,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["run.py", *(argv if argv is not None else sys.argv[1:])]),
        "mode": "quick" if args.quick else "full",
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average_before": load_before,
        "load_average_after": kernels._load_average(),
        "machine": machine,
        "devices": devices,
        "source": kernels.source_state(),
        "floor_model": {**model, "flops_per_unknown_iteration": FLOPS_PER_UNKNOWN_ITERATION},
        "results": rows,
        "kernels": None if kernel_report is None else kernel_report["results"],
    }
    print(f"\nwall time {report['wall_seconds']} s, load average after {_load_after(report)}")
    if not args.no_json:
        kind = "gpu" if any(not d.startswith("cpu") for d in devices.values()) else "cpu"
        path = args.output or kernels.RESULTS_DIR / f"run-{kind}-{machine['cpu_count']}core.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {path}")
    return report


def _load_after(report: dict) -> Any:
    return report["load_average_after"]


if __name__ == "__main__":
    main()
