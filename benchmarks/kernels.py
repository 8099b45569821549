"""Benchmark the backend kernels: Gaussian KDE and batched tridiagonal solves.

Run ``python benchmarks/kernels.py [--quick] [--backends numpy,numba,jax,torch]``.
Every installed backend is timed on the same inputs. For each cell the first call
(for JAX: trace + compile + run of a ``jax.jit`` of the kernel call with static
shapes; for the others: the first call in the process) is timed apart from the
steady state, the best of k later calls, with k chosen so that a cell costs about
``cell_seconds``. Results are synchronised before the clock stops
(``jax.block_until_ready``; ``torch.cuda.synchronize`` on cuda). Combinations whose
estimated cost (scaled linearly from the previous, smaller size) exceeds a budget
are skipped and reported as such. Tables go to stdout, everything to a JSON file
under ``benchmarks/results/`` (see ``benchmarks/README.md``).

Each row also shows a physical floor: the bytes that must move divided by an
assumed memory bandwidth, or the operations divided by an assumed peak, whichever
is larger. Both assumptions are options and are written to the JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mfg_pde.backends import available_backends, create_backend

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Sizes and budgets. Particles ~ N(0.5, 0.15^2) on grids over [0, 1] (per axis in 2D).
FULL = {
    "kde_particles": (10**4, 10**5, 10**6),
    "kde_grid_1d": (100, 1000),
    "kde_grid_2d": (32, 100),  # points per axis: 1024 and 10^4 output points
    "bandwidth_1d": 0.02,
    "bandwidth_2d": 0.05,  # per axis
    "tri_size": (10**2, 10**3, 10**4, 10**5),
    "tri_batch": (1, 100, 1000),
    "cell_seconds": 1.0,  # time spent on the steady repeats of one cell
    "once_seconds": 2.0,  # a first call longer than this is not repeated
    "max_call_seconds": 20.0,  # skip a cell whose first call is estimated to take longer
}
QUICK = {
    "kde_particles": (10**3, 10**4),
    "kde_grid_1d": (50,),
    "kde_grid_2d": (16,),
    "bandwidth_1d": 0.05,
    "bandwidth_2d": 0.2,  # a wide kernel keeps the 2D binning grid small
    "tri_size": (10**2, 10**3),
    "tri_batch": (1, 10),
    "cell_seconds": 0.02,
    "once_seconds": 0.5,
    "max_call_seconds": 2.0,
}

#: Above this many unknowns a tridiagonal path slower than SLOW_PATH_NS per unknown
#: (measured at the previous size) is skipped: it would only measure a Python loop longer.
SLOW_PATH_UNKNOWNS = 10**7
SLOW_PATH_NS = 20.0

#: Cost model of the floors: one Gaussian kernel value = one exp (~15 flops as a
#: vectorised polynomial with range reduction) + ~5 flops of arithmetic.
FLOPS_PER_KERNEL_VALUE = 20.0
#: Thomas algorithm: 2 divisions + 3 multiply-adds forward, 1 multiply-add back.
FLOPS_PER_UNKNOWN = 8.0
#: Linear binning per particle and axis: scale, floor, fraction, 2 weights, 2 adds.
FLOPS_PER_BINNED_COORD = 10.0


# -- machine and backend description ---------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes(kind: str) -> int | None:
    """Total ("SC_PHYS_PAGES") or available ("SC_AVPHYS_PAGES") physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf(kind)
    except (ValueError, OSError, AttributeError):
        return None


def _version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", None)
    except ImportError:
        return None


def machine_description() -> dict[str, Any]:
    total = _memory_bytes("SC_PHYS_PAGES")
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gb": round(total / 2**30, 1) if total else None,
        "python": platform.python_version(),
        "versions": {
            m: _version(m) for m in ("mfg_pde", "numpy", "scipy", "numba", "jax", "jaxlib", "torch")
        },
    }


def source_state() -> dict[str, Any]:
    """The commit benchmarked and any uncommitted changes to the library (read-only git)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    status = git("status", "--porcelain", "--", "mfg_pde")
    return {
        "commit": git("rev-parse", "HEAD"),
        "uncommitted_library_files": None if status is None else status.splitlines(),
    }


def write_record(path: Path, args: Any, load_before: Any, note: str, results: Any) -> None:
    """Write a benchmark's JSON record: machine, source state, settings, load, results."""
    record = {
        "machine": machine_description(),
        "source": source_state(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "note": note,
        "results": results,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# -- one backend under test -------------------------------------------------------------------
@dataclass
class Runner:
    """A backend plus how to compile a kernel call and how to wait for its result."""

    name: str
    backend: Any
    compiles: bool  # whether the first call includes a compilation (jax.jit)
    prepare: Callable[[Callable], Callable]
    sync: Callable[[Any], None]
    info: dict[str, Any] = field(default_factory=dict)


def make_runner(name: str) -> Runner:
    backend = create_backend(name)
    info: dict[str, Any] = {"device": backend.device}
    if name == "jax":
        import jax

        info["xla_flags"] = os.environ.get("XLA_FLAGS", "")
        return Runner(name, backend, True, jax.jit, jax.block_until_ready, info)
    if name == "torch":
        import torch

        info["threads"] = torch.get_num_threads()
        device = backend.device

        def sync(_: Any) -> None:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            elif device == "mps":
                torch.mps.synchronize()

        return Runner(name, backend, False, lambda f: f, sync, info)
    if name == "numba":
        import numba

        info["threads"] = 1  # the kernels are compiled with parallel=False
        info["numba_threading_layer_threads"] = numba.get_num_threads()
    return Runner(name, backend, False, lambda f: f, lambda _: None, info)


# -- timing -------------------------------------------------------------------------------
def time_call(runner: Runner, fn: Callable, args: tuple, cfg: dict) -> dict:
    """Time the first call, then the best of k steady calls (k adaptive).

    k grows until the cell has spent about ``cfg["cell_seconds"]`` (at most 200). A
    non-compiling call whose first run exceeds ``cfg["once_seconds"]`` is run only
    once: its steady time is that run (``repeats = 0``).
    """
    call = runner.prepare(fn)
    start = time.perf_counter()
    out = call(*args)
    runner.sync(out)
    first = time.perf_counter() - start
    times: list[float] = []
    if runner.compiles or first <= cfg["once_seconds"]:
        deadline = time.perf_counter() + cfg["cell_seconds"]
        while len(times) < 200:
            start = time.perf_counter()
            out = call(*args)
            runner.sync(out)
            times.append(time.perf_counter() - start)
            if time.perf_counter() + min(times) > deadline:
                break
    load = _load_average()
    return {
        "first_s": first,
        "steady_s": min(times) if times else first,
        "repeats": len(times),
        "load_1min": load[0] if load else None,
        "output": runner.backend.to_numpy(out),
    }


def estimate_first_call(history: list[dict], units: float, compiles: bool) -> float | None:
    """Predicted cost of the first call at ``units``, from the same cell at smaller sizes.

    The run time follows ``a + b * units`` (a, b >= 0) through the last two sizes, or
    is scaled linearly from a single one (every kernel here is at most linear in the
    scaled size, so this errs high). A compile time (first minus steady call) follows
    a power law through the last two sizes, exponent clipped to [0, 1]: constant for
    the binned KDE, growing with the number of chunks of the exact one.
    """
    if not history:
        return None
    last = history[-1]
    slope = last["steady_s"] / last["units"]
    if len(history) >= 2:
        prev = history[-2]
        slope = max((last["steady_s"] - prev["steady_s"]) / (last["units"] - prev["units"]), 0.0)
    run = max(last["steady_s"] - slope * last["units"], 0.0) + slope * units
    if not compiles:
        return run
    compile_s = [max(r["first_s"] - r["steady_s"], 0.0) for r in history[-2:]]
    exponent = 0.0
    if len(history) >= 2 and min(compile_s) > 0:
        ratio = history[-1]["units"] / history[-2]["units"]
        exponent = min(max(math.log(compile_s[1] / compile_s[0]) / math.log(ratio), 0.0), 1.0)
    return run + compile_s[-1] * (units / last["units"]) ** exponent


# -- floors ---------------------------------------------------------------------------------
def floor_seconds(bytes_moved: float, flops: float, model: dict) -> float:
    return max(bytes_moved / model["bandwidth_bytes_s"], flops / model["peak_flops"])


def kde_floor(dim: int, n: int, points: int, grid: int, method: str, model: dict) -> float:
    bytes_moved = 8.0 * (dim * n + points)
    if method == "exact":
        # 1D: N*G kernel values. 2D: separable, N*(Gx+Gy) kernel values and a
        # (Gx, N) @ (N, Gy) product of 2*N*Gx*Gy flops.
        flops = n * dim * grid * FLOPS_PER_KERNEL_VALUE
        if dim == 2:
            flops += 2.0 * n * points
    else:
        # Binning only; the FFT of the fine grid is an implementation cost (see docs).
        flops = n * dim * FLOPS_PER_BINNED_COORD
    return floor_seconds(bytes_moved, flops, model)


def tridiagonal_floor(unknowns: int, model: dict) -> float:
    # Read lower, diag, upper, rhs and write x: 40 bytes per unknown.
    return floor_seconds(40.0 * unknowns, FLOPS_PER_UNKNOWN * unknowns, model)


# -- the benchmarks -------------------------------------------------------------------------
def _skip_row(base: dict, reason: str, runner_name: str) -> dict:
    print(f"  {runner_name:6s} {base['label']}: {reason}", flush=True)
    return {**base, "backend": runner_name, "skipped": reason}


def bench_kde(runners: list[Runner], cfg: dict, model: dict, rng) -> list[dict]:
    rows: list[dict] = []
    done: dict[tuple, list[dict]] = {}  # measured rows per (backend, dim, method, grid)
    n_max = max(cfg["kde_particles"])
    cloud = {1: rng.normal(0.5, 0.15, n_max), 2: rng.normal(0.5, 0.15, (n_max, 2))}
    for dim, grids, bandwidth in (
        (1, cfg["kde_grid_1d"], cfg["bandwidth_1d"]),
        (2, cfg["kde_grid_2d"], cfg["bandwidth_2d"]),
    ):
        for g in grids:
            axis = np.linspace(0.0, 1.0, g)
            points = g**dim
            for n in cfg["kde_particles"]:
                particles_host = cloud[dim][:n]
                reference = None  # the first exact result: what the binned ones are compared to
                for method in ("exact", "binned"):
                    label = f"KDE {dim}D {method} N={n:.0e} G={g}{'^2' if dim == 2 else ''}"
                    base = {
                        "kernel": "kde",
                        "label": label,
                        "dim": dim,
                        "method": method,
                        "particles": n,
                        "grid_per_axis": g,
                        "grid_points": points,
                        "bandwidth": bandwidth,
                        "floor_s": kde_floor(dim, n, points, g, method, model),
                    }
                    for runner in runners:
                        history = done.setdefault((runner.name, dim, method, g), [])
                        est = estimate_first_call(history, n, runner.compiles)
                        if est is not None and est > cfg["max_call_seconds"]:
                            rows.append(_skip_row(base, f"skipped (est. {est:.0f} s)", runner.name))
                            continue
                        be = runner.backend
                        grid = (
                            be.from_numpy(axis)
                            if dim == 1
                            else (be.from_numpy(axis), be.from_numpy(axis))
                        )
                        particles = be.from_numpy(particles_host)

                        def kde(p, grid=grid, method=method, be=be, h=bandwidth):
                            return be.gaussian_kde(grid, p, h, method=method)

                        res = time_call(runner, kde, (particles,), cfg)
                        out = res.pop("output")
                        if reference is None and method == "exact":
                            reference = out
                        row = {
                            **base,
                            **res,
                            "backend": runner.name,
                            "units": n,
                            "unit": "particle" if method == "binned" else "kernel value",
                            "rel_diff_vs_exact": None
                            if reference is None
                            else float(np.max(np.abs(out - reference)) / np.max(reference)),
                        }
                        per = n if method == "binned" else n * points
                        row["per_unit_ns"] = row["steady_s"] / per * 1e9
                        rows.append(row)
                        history.append(row)
                        _print_progress(runner.name, row)
    return rows


def _tridiagonal_system(n: int, batch: int, rng) -> tuple[np.ndarray, ...]:
    shape = (n,) if batch == 1 else (batch, n)
    lower = rng.uniform(-1.0, 1.0, shape)
    upper = rng.uniform(-1.0, 1.0, shape)
    diag = 4.0 + rng.random(shape)  # strictly diagonally dominant: no pivoting needed
    rhs = rng.standard_normal(shape)
    return lower, diag, upper, rhs


def _relative_residual(lower, diag, upper, rhs, x, systems: int = 4) -> float:
    lower, diag, upper, rhs, x = (np.atleast_2d(a)[:systems] for a in (lower, diag, upper, rhs, x))
    ax = diag * x
    ax[:, 1:] += lower[:, 1:] * x[:, :-1]
    ax[:, :-1] += upper[:, :-1] * x[:, 1:]
    return float(np.max(np.abs(ax - rhs)) / np.max(np.abs(rhs)))


def bench_tridiagonal(runners: list[Runner], cfg: dict, model: dict, rng) -> list[dict]:
    rows: list[dict] = []
    done: dict[tuple, list[dict]] = {}  # measured rows per (backend, batch)
    available = _memory_bytes("SC_AVPHYS_PAGES")
    for batch in cfg["tri_batch"]:
        for n in cfg["tri_size"]:
            unknowns = n * batch
            label = f"tridiagonal n={n:.0e} batch={batch}"
            base = {
                "kernel": "tridiagonal",
                "label": label,
                "size": n,
                "batch": batch,
                "unknowns": unknowns,
                "floor_s": tridiagonal_floor(unknowns, model),
            }
            # Inputs, copies on the backend, output and Thomas scratch: ~12 arrays.
            if available is not None and 12 * 8 * unknowns > 0.5 * available:
                for runner in runners:
                    rows.append(_skip_row(base, "skipped (memory)", runner.name))
                continue
            system = _tridiagonal_system(n, batch, rng)
            for runner in runners:
                history = done.setdefault((runner.name, batch), [])
                previous = history[-1] if history else None
                est = estimate_first_call(history, unknowns, runner.compiles)
                if (
                    unknowns > SLOW_PATH_UNKNOWNS
                    and previous is not None
                    and previous["per_unit_ns"] > SLOW_PATH_NS
                ):
                    reason = (
                        f"skipped (slow path: {previous['per_unit_ns']:.0f} ns/unknown at "
                        f"n={previous['size']:.0e}, est. {est:.0f} s)"
                    )
                    rows.append(_skip_row(base, reason, runner.name))
                    continue
                if est is not None and est > cfg["max_call_seconds"]:
                    rows.append(_skip_row(base, f"skipped (est. {est:.0f} s)", runner.name))
                    continue
                args = tuple(runner.backend.from_numpy(a) for a in system)
                res = time_call(runner, runner.backend.solve_tridiagonal, args, cfg)
                del args
                x = res.pop("output")
                row = {
                    **base,
                    **res,
                    "backend": runner.name,
                    "units": unknowns,
                    "unit": "unknown",
                    "per_unit_ns": res["steady_s"] / unknowns * 1e9,
                    "relative_residual": _relative_residual(*system, x),
                }
                rows.append(row)
                history.append(row)
                _print_progress(runner.name, row)
            del system
    return rows


# -- output --------------------------------------------------------------------------------
def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def _print_progress(name: str, row: dict) -> None:
    print(
        f"  {name:6s} {row['label']}: first {_fmt_time(row['first_s'])}, "
        f"steady {_fmt_time(row['steady_s'])} ({row['repeats']} repeats)",
        flush=True,
    )


def _table(title: str, size_cols: list[tuple[str, Callable[[dict], str]]], rows: list[dict]):
    cols = [
        *size_cols,
        ("backend", lambda r: r["backend"]),
        ("first call", lambda r: _fmt_time(r["first_s"])),
        ("steady", lambda r: _fmt_time(r["steady_s"])),
        ("per unit", lambda r: f"{r['per_unit_ns']:.3g} ns/{r['unit']}"),
        ("floor", lambda r: _fmt_time(r["floor_s"])),
        ("x floor", lambda r: f"{r['steady_s'] / r['floor_s']:.3g}"),
        ("repeats", lambda r: str(r["repeats"])),
    ]
    keep = len(size_cols) + 1  # a skipped row shows its sizes, backend and reason only
    cells = [
        [f(r) for _, f in cols[:keep]] + [r["skipped"]]
        if r.get("skipped")
        else [f(r) for _, f in cols]
        for r in rows
    ]
    widths = [
        max([len(h)] + [len(c[i]) for c in cells if len(c) == len(cols) or i < keep])
        for i, (h, _) in enumerate(cols)
    ]
    header = "  ".join(h.ljust(w) for (h, _), w in zip(cols, widths, strict=True))
    print(f"\n{title}\n{header}\n{'-' * len(header)}")
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=False)).rstrip())


def print_tables(rows: list[dict]) -> None:
    kde = [r for r in rows if r["kernel"] == "kde"]
    for dim in (1, 2):
        for method in ("binned", "exact"):
            sel = [r for r in kde if r["dim"] == dim and r["method"] == method]
            if not sel:
                continue
            sel.sort(key=lambda r: (r["grid_per_axis"], r["particles"]))
            grid = "G" if dim == 1 else "G per axis"
            _table(
                f"Gaussian KDE, {dim}D, method={method!r}, bandwidth {sel[0]['bandwidth']}",
                [
                    (grid, lambda r: str(r["grid_per_axis"])),
                    ("N", lambda r: f"{r['particles']:.0e}"),
                ],
                sel,
            )
    tri = sorted(
        (r for r in rows if r["kernel"] == "tridiagonal"), key=lambda r: (r["batch"], r["size"])
    )
    if tri:
        _table(
            "Tridiagonal solve (per unit = per unknown, n x batch unknowns)",
            [("batch", lambda r: str(r["batch"])), ("n", lambda r: f"{r['size']:.0e}")],
            tri,
        )


def default_output() -> Path:
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "cpu"
    return RESULTS_DIR / f"kernels-{host}-{dt.date.today().isoformat()}.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (< 30 s), a smoke run")
    parser.add_argument(
        "--backends",
        default=None,
        help="comma-separated backends (default: every installed one of numpy,numba,jax,torch)",
    )
    parser.add_argument("--kernels", default="kde,tridiagonal", help="kde, tridiagonal or both")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (default: results/)")
    parser.add_argument("--no-json", action="store_true", help="print the tables only")
    parser.add_argument("--bandwidth-gbs", type=float, default=10.0, help="floor model, GB/s")
    parser.add_argument(
        "--peak-gflops",
        type=float,
        default=39.2,
        help="floor model: float64 peak of one core, GFLOP/s (2.45 GHz x 16 for AVX2 + 2 FMA)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    model = {
        "bandwidth_bytes_s": args.bandwidth_gbs * 1e9,
        "peak_flops": args.peak_gflops * 1e9,
        "flops_per_kernel_value": FLOPS_PER_KERNEL_VALUE,
        "flops_per_unknown": FLOPS_PER_UNKNOWN,
        "flops_per_binned_coordinate": FLOPS_PER_BINNED_COORD,
    }
    installed = {k: v for k, v in available_backends().items() if v["installed"]}
    names = list(installed) if args.backends is None else args.backends.split(",")
    unknown = [n for n in names if n not in installed]
    if unknown:
        raise SystemExit(
            f"--backends: {', '.join(unknown)} not installed; installed: {', '.join(installed)}"
        )
    if args.threads is not None and "torch" in names:
        import torch

        torch.set_num_threads(args.threads)
    kernels = args.kernels.split(",")
    if not set(kernels) <= {"kde", "tridiagonal"}:
        raise SystemExit(f"--kernels must be kde and/or tridiagonal, got {args.kernels!r}")

    machine = machine_description()
    runners = [make_runner(n) for n in names]
    print(
        f"{machine['cpu_model']}, {machine['cpu_count']} CPUs, {machine['ram_gb']} GB; "
        f"load average {_load_average()}; backends: "
        + ", ".join(f"{r.name} ({r.info['device']})" for r in runners),
        flush=True,
    )
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    load_before = _load_average()
    rows: list[dict] = []
    if "kde" in kernels:
        rows += bench_kde(runners, cfg, model, rng)
    if "tridiagonal" in kernels:
        rows += bench_tridiagonal(runners, cfg, model, rng)
    print_tables(rows)
    report = {
        "schema": 1,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "mode": "quick" if args.quick else "full",
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average_before": load_before,
        "load_average_after": _load_average(),
        "machine": machine,
        "source": source_state(),
        "backends": {r.name: {"version": installed[r.name]["version"], **r.info} for r in runners},
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "floor_model": model,
        "results": [{k: v for k, v in r.items() if k != "label"} for r in rows],
    }
    print(f"\nwall time {report['wall_seconds']} s, load average after {_load_average()}")
    if not args.no_json:
        path = args.output or default_output()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n")
        print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
