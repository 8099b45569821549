"""Time the particle Fokker–Planck solve on numpy, numba, jax and torch; write a JSON file.

    python benchmarks/jax_vs_pytorch_comparison.py                  # N=5e4, Nx=100, Nt=50
    python benchmarks/jax_vs_pytorch_comparison.py --target     # + 1e6 x 100 steps x 1000 points
    python benchmarks/jax_vs_pytorch_comparison.py --scaling        # + per-step cost vs N
    python benchmarks/jax_vs_pytorch_comparison.py --breakdown      # + where a step goes

What is timed: ``FPParticleSolver.solve(U)`` on a fixed value function ``U[n] = g``
(the DESIGN.md example's terminal cost, so agents drift towards x = 0.8), binned KDE,
the solver's default strategy. "first" is the construction of the solver plus its first
solve in the process (for JAX: tracing and XLA compilation of the whole march); "steady"
is the best of ``--repeats`` later solves. ``solve`` returns a NumPy array, so every
timing includes the device synchronisation. Speed-ups are relative to numpy's steady
time. Results go to ``benchmarks/results/particles-cpu-2core.json`` (``--output``),
with the machine (platform, CPU model, cores, load average) and each backend's device.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels import _load_average, machine_description, source_state  # noqa: E402

from mfg_pde import MFGProblem  # noqa: E402
from mfg_pde.alg.numerical import FPParticleSolver  # noqa: E402
from mfg_pde.backends import available_backends, create_backend  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "particles-cpu-2core.json"


def problem(Nx: int, Nt: int) -> MFGProblem:
    """The DESIGN.md example on [0, 1] (no-flux), with the grid and steps asked for."""
    return MFGProblem(Nx=Nx, Nt=Nt)


def time_solve(backend: Any, N: int, Nx: int, Nt: int, repeats: int) -> dict:
    p = problem(Nx, Nt)
    U = np.broadcast_to(p.g, p.shape)
    t0 = time.perf_counter()
    fp = FPParticleSolver(p, backend=backend, num_particles=N, seed=0)
    M = fp.solve(U)
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        M = fp.solve(U)
        times.append(time.perf_counter() - t0)
    steady = min(times)
    mass = M.sum(axis=1) * p.dx
    return {
        "backend": backend.name,
        "device": fp.march_backend.device,
        "strategy": fp.strategy.device_type,
        "smoothing": fp._kde.smoothing,
        "fine_points": fp._kde.shape[0],
        "num_particles": N,
        "Nx": Nx,
        "Nt": Nt,
        "first_s": first,
        "steady_s": steady,
        "repeats": repeats,
        "all_s": times,
        "per_step_ms": 1e3 * steady / Nt,
        "per_particle_step_ns": 1e9 * steady / (Nt * N),
        "max_mass_error": float(np.abs(mass - 1.0).max()),
        "M_final_mean": float((p.x * M[-1]).sum() * p.dx),
        "load_1min": _load_average()[0] if _load_average() else None,
    }


def breakdown(backend: Any, N: int, Nx: int, repeats: int = 7) -> dict:
    """Seconds of each part of one step, each timed alone (jitted alone on JAX)."""
    p = problem(Nx, 10)
    fp = FPParticleSolver(p, backend=backend, num_particles=N, seed=0)
    b, kde = fp.march_backend, fp._kde
    rng = np.random.default_rng(0)
    X = b.from_numpy(np.clip(rng.normal(0.4, 0.15, N), 0.0, 1.0))
    shift = b.from_numpy(np.gradient(p.g, p.dx) * -p.dt)
    binned = kde.bin(X)
    imaged = kde.add_images(binned)
    key = b.random_key(0)
    parts = {
        "normal": (lambda k: b.normal(k, (N,))[1], key),
        "interp_drift": (lambda x: b.interp_uniform(x, p.xmin, p.dx, shift), X),
        "reflect": (lambda x: b.fold_into_interval(x + 1e-3, p.xmin, p.xmax), X),
        "bin": (lambda x: kde.bin(x), X),
        "images": (lambda f: kde.add_images(f), binned),
        "smooth": (lambda f: kde.smooth(f), imaged),
    }
    out = {}
    for name, (fn, arg) in parts.items():
        if b.name == "jax":
            import jax

            jitted = jax.jit(fn)

            def call(jitted=jitted, arg=arg):
                return jax.block_until_ready(jitted(arg))
        else:

            def call(fn=fn, arg=arg):
                return fn(arg)

        call()
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - t0)
        out[name] = best
    return out


def print_table(title: str, rows: list[dict]) -> None:
    base = {r["num_particles"]: r["steady_s"] for r in rows if r["backend"] == "numpy"}
    print(f"\n{title}")
    header = "backend  device   N        first     steady    per step   ns/particle/step  vs numpy"
    print(header)
    print("-" * len(header))
    for r in rows:
        ref = base.get(r["num_particles"])
        speed = f"{ref / r['steady_s']:.2f}x" if ref else "-"
        print(
            f"{r['backend']:8s} {r['device']:8s} {r['num_particles']:<8.0e} "
            f"{r['first_s']:7.3f} s {r['steady_s']:7.3f} s {r['per_step_ms']:7.2f} ms "
            f"{r['per_particle_step_ns']:10.1f}        {speed}"
        )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    installed = [n for n, info in available_backends().items() if info["installed"]]
    parser.add_argument("--backends", default=",".join(installed))
    parser.add_argument("--particles", type=float, default=5e4)
    parser.add_argument("--Nx", type=int, default=100)
    parser.add_argument("--Nt", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--target", action="store_true", help="1e6 particles x 100 steps x 1000 points"
    )
    parser.add_argument("--scaling", action="store_true", help="per-step cost for N = 1e4 ... 1e6")
    parser.add_argument("--breakdown", action="store_true", help="time the parts of a step")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.backends.split(",") if n.strip()]
    backends = {name: create_backend(name) for name in names}

    report: dict[str, Any] = {
        "machine": machine_description(),
        "source": source_state(),
        "load_average_before": _load_average(),
        "note": "2-core machine shared with other jobs: best-of-repeats, see load_1min",
        "backends": {
            n: {"device": b.device, "hints": b.get_performance_hints()} for n, b in backends.items()
        },
        "comparison": [],
    }
    N = int(args.particles)
    for name, b in backends.items():
        row = time_solve(b, N, args.Nx, args.Nt, args.repeats)
        report["comparison"].append(row)
        print(f"  {name}: first {row['first_s']:.3f} s, steady {row['steady_s']:.3f} s", flush=True)
    print_table(f"FP particle solve, N={N:.0e}, Nx={args.Nx}, Nt={args.Nt}", report["comparison"])

    if args.breakdown:
        report["breakdown"] = {}
        for n_particles, nx in ((10**5, 101), (10**6, 1000)):
            for name, b in backends.items():
                parts = breakdown(b, n_particles, nx)
                report["breakdown"][f"{name}/N={n_particles}/Nx={nx}"] = parts
                text = ", ".join(f"{k} {1e3 * v:.2f}" for k, v in parts.items())
                print(f"  breakdown {name} N={n_particles:.0e} Nx={nx} (ms): {text}", flush=True)

    if args.scaling:
        report["scaling"] = []
        for name, b in backends.items():
            for n_particles in (10**4, 3 * 10**4, 10**5, 3 * 10**5, 10**6):
                row = time_solve(b, n_particles, 1000, 20, 3)
                report["scaling"].append(row)
                print(
                    f"  scaling {name} N={n_particles:.0e}: {row['per_step_ms']:.2f} ms/step, "
                    f"{row['per_particle_step_ns']:.1f} ns/particle/step",
                    flush=True,
                )

    if args.target:
        report["target"] = []
        for name, b in backends.items():
            row = time_solve(b, 10**6, 1000, 100, 2)
            row["meets_10s"] = row["steady_s"] < 10.0
            report["target"].append(row)
            print(
                f"  target {name}: {row['steady_s']:.2f} s (first {row['first_s']:.2f} s)",
                flush=True,
            )
        print_table("Target: 1e6 particles x 100 steps onto 1000 points (< 10 s)", report["target"])

    report["load_average_after"] = _load_average()
    if not args.no_json:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1, default=str) + "\n")
        print(f"\nwrote {os.path.relpath(args.output)}")
    return report


if __name__ == "__main__":
    main()
