"""A device check ready to run when a GPU machine is lent: torch-cuda and jax-gpu against numpy.

    python benchmarks/device_check.py [--smoke] [--budget 220] [--output PATH]

Times, on every backend this machine has (numpy always; torch when it sees CUDA; jax
when it sees a GPU), each on the same machine:

* ``hello``: the 1D hello problem (101 x 50, FDM, tol 1e-6): first solve and best of 3;
* ``hello_2d``: the 2D hello problem at 256² x 20 steps (FDM): one solve;
* ``particles``: the 1D hello problem with 10^6 particles x 100 time steps, 3 fixed-point
  iterations: one solve;
* ``batch``: ``solve_mfg_batch`` over 1,000 values of σ on the hello problem (numpy: the
  first 20 members, reported per member, since its batch is a loop);
* ``newton``: ``NewtonSolver`` on the congestion hello problem (f = +0.5 m, 101 x 50,
  residuals ≤ 1e-8), which torch and jax run on their own arrays: first solve, best of
  2 later ones, Newton steps, steps the host LU took, and the largest difference of U
  and M from numpy's solution.

Each row records the device the result says it ran on (``result.device``), so a jax row
that fell back to the CPU shows it. numpy runs first in each section, as the baseline
of the same machine. Sections stop starting new work once ``--budget`` seconds have
passed (default 220 s: a lease's 4 minutes with room for the start); skipped rows say
so. Writes ``benchmarks/results/device-check-<device>.json``. ``--smoke`` runs tiny sizes
on any machine (the test suite and a CPU check; its JSON goes to a temporary name
unless ``--output`` is given). CI never runs it.
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

from mfg_pde import solve_mfg, solve_mfg_batch  # noqa: E402
from mfg_pde.alg.numerical import NewtonSolver  # noqa: E402
from mfg_pde.backends import available_backends, create_backend  # noqa: E402
from mfg_pde.problems import hello_2d_example, hello_example  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"

SIZES = {
    "full": {"nx_2d": 256, "nt_2d": 20, "particles": 10**6, "nt_particles": 100,
             "members": 1000, "numpy_members": 20, "newton": (101, 50)},
    "smoke": {"nx_2d": 16, "nt_2d": 4, "particles": 10**4, "nt_particles": 10,
              "members": 8, "numpy_members": 4, "newton": (21, 10)},
}  # fmt: skip


def gpu_backends() -> list[str]:
    """numpy, then torch and jax where they see a GPU."""
    names = ["numpy"]
    info = available_backends()
    if any(d.startswith("cuda") for d in info.get("torch", {}).get("devices", [])):
        names.append("torch")
    if any(d.startswith(("gpu", "cuda")) for d in info.get("jax", {}).get("devices", [])):
        names.append("jax")
    return names


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and the seconds it took."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def row(section: str, backend: str, result: Any, seconds: float, **extra: Any) -> dict:
    first = result[0] if isinstance(result, list) else result
    return {
        "section": section,
        "backend": backend,
        "device": getattr(first, "device", None),
        "seconds": seconds,
        "converged": bool(getattr(first, "converged", False)),
        "iterations": int(getattr(first, "iterations", 0)),
        **extra,
    }


def run(names: list[str], sizes: dict, budget: float) -> list[dict]:
    start = time.perf_counter()
    rows: list[dict] = []

    def over() -> bool:
        return time.perf_counter() - start > budget

    sections = ("hello", "hello_2d", "particles", "batch", "newton")
    reference: dict[str, Any] = {}
    for section in sections:
        for name in names:
            if over():
                rows.append({"section": section, "backend": name, "skipped": "budget spent"})
                continue
            b = create_backend(name)
            if section == "hello":
                p = hello_example()
                first, t_first = timed(solve_mfg, p, backend=b)
                steady = min(timed(solve_mfg, p, backend=b)[1] for _ in range(3))
                rows.append(row(section, name, first, steady, first_seconds=t_first))
            elif section == "hello_2d":
                n = sizes["nx_2d"]
                p = hello_2d_example(Nx=(n, n), Nt=sizes["nt_2d"])
                result, seconds = timed(solve_mfg, p, backend=b)
                rows.append(row(section, name, result, seconds, grid=f"{n}x{n}"))
            elif section == "particles":
                p = hello_example(Nt=sizes["nt_particles"])
                result, seconds = timed(
                    solve_mfg,
                    p,
                    method="particle",
                    backend=b,
                    num_particles=sizes["particles"],
                    max_iterations=3,
                )
                rows.append(row(section, name, result, seconds, particles=sizes["particles"]))
            elif section == "newton":
                nx, nt = sizes["newton"]
                p = hello_example(Nx=nx, Nt=nt, running_cost=_congestion)
                solver = NewtonSolver(p, backend=b)
                first, t_first = timed(solver.solve, tolerance=1e-8)
                steady = min(timed(solver.solve, tolerance=1e-8)[1] for _ in range(2))
                reference.setdefault("newton", first)
                gap = max(
                    float(np.max(np.abs(first[k] - reference["newton"][k]))) for k in ("U", "M")
                )
                linear = [s for stage in first.stages for s in stage["linear"]]
                rows.append(
                    row(
                        section,
                        name,
                        first,
                        steady,
                        first_seconds=t_first,
                        host_lu_steps=sum(bool(s.get("host")) for s in linear),
                        max_diff_from_numpy=gap,
                    )  # fmt: skip
                )
            else:
                members = sizes["numpy_members"] if name == "numpy" else sizes["members"]
                sigmas = np.linspace(0.1, 0.3, members)
                result, seconds = timed(
                    solve_mfg_batch, hello_example(), {"sigma": sigmas}, backend=b
                )
                per_member = seconds / members
                rows.append(
                    row(section, name, result, seconds, members=members, per_member=per_member)
                )
            print(rows[-1], flush=True)
    return rows


def _congestion(x: Any, m: Any, t: Any) -> Any:
    return 0.5 * m


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any machine")
    parser.add_argument("--budget", type=float, default=220.0, help="seconds to start work in")
    parser.add_argument("--backends", default=None, help="default: numpy + GPU backends")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    names = args.backends.split(",") if args.backends else gpu_backends()
    sizes = SIZES["smoke" if args.smoke else "full"]
    load_before = os.getloadavg()
    rows = run(names, sizes, args.budget)
    if args.output is None:
        devices = sorted({r["device"] for r in rows if r.get("device") and r["backend"] != "numpy"})
        tag = "smoke" if args.smoke else ("-".join(devices) or "cpu").replace(":", "")
        args.output = RESULTS / f"device-check-{tag}.json"
        if args.smoke:
            args.output = Path(os.environ.get("TMPDIR", "/tmp")) / args.output.name
    write_record(args.output, args, load_before, "device check; numpy is the same machine", rows)
    return rows


if __name__ == "__main__":
    main()
