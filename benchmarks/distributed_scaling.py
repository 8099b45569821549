"""Benchmark running beyond one process: Dask sweeps and particles sharded over devices.

Run ``python benchmarks/distributed_scaling.py [--quick] [--members 200] [--output PATH]``.

**Sweep** (:func:`mfg_pde.distributed.sweep`): ``--members`` problems that differ in the
congestion cost ``c`` in [0, 0.1] (FDM on numpy, Nx = 51, Nt = 30, tolerance 1e-6), solved

- in this process by :func:`mfg_pde.solve_mfg_batch` (no saving): the serial floor;
- by ``sweep(client=None)``: the same, plus saving every member to disk;
- by two plain spawned processes solving half each (no Dask, no saving): what two
  processes can gain on the machine at that moment, the ceiling for the cluster;
- by ``sweep(client=...)`` on a ``LocalCluster(n_workers=2, processes=True,
  threads_per_worker=1)`` for several chunk sizes. Each run writes to a fresh
  directory; the workers have solved once before (numba kernels loaded), and the
  cluster's start-up is reported apart.

The per-task overhead is measured twice: as the wall time per task of ``--members``
no-op tasks through the same cluster, and from the sweeps themselves, as
``(T(chunk) - T_serial / workers) / tasks`` for chunk size 1. The chunk size that
amortises it is the smallest whose sweep is within 10% of the fastest.

**Particles** (``FPParticleSolver(devices=n)``): ``--particles`` particles x ``--steps``
time steps on jax, in a subprocess per forced host device count
(``XLA_FLAGS=--xla_force_host_platform_device_count=n``, n = 1, 2, 4), with XLA's
default CPU threading and with one thread per device; the first solve (compiling) is
reported apart from the best of ``--repeats`` later ones. ``devices=None`` (unsharded)
runs in the n = 1 process.

The machine is a shared 2-core VM: the client, the scheduler and two workers share its
two cores, and other jobs run beside them (the load average before and after is in the
record). Results go to stdout and to JSON (default
``benchmarks/results/distributed-cpu-2core.json``).

(Not named ``distributed.py``: with ``benchmarks/`` on the import path, as the benchmark
tests put it, that file would stand in for the ``distributed`` package that dask imports.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernels import write_record  # noqa: E402

from mfg_pde import MFGProblem, solve_mfg_batch  # noqa: E402
from mfg_pde.distributed import sweep  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "distributed-cpu-2core.json"

PARTICLE_SCRIPT = """
import json, sys, time
import numpy as np
import jax
from mfg_pde import MFGProblem
from mfg_pde.alg.numerical import FPParticleSolver

n_particles, steps, repeats, count = map(int, sys.argv[1:5])
p = MFGProblem(Nx=101, Nt=steps, sigma=0.2, terminal_cost=lambda x: (x - 0.7) ** 2,
               initial_density=lambda x: np.exp(-40 * (x - 0.3) ** 2))
U = np.array([p.g * (1.0 + 0.1 * k / steps) for k in range(steps + 1)])
rows = []
for devices in ([None, 1] if count == 1 else [count]):
    solver = FPParticleSolver(p, backend="jax", num_particles=n_particles, seed=0,
                              devices=devices)
    start = time.perf_counter()
    solver.solve(U)  # solve returns NumPy: the march has finished
    first = time.perf_counter() - start
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        solver.solve(U)
        best = min(best, time.perf_counter() - start)
    rows.append({"host_devices": count, "devices": devices, "first_s": first,
                 "best_s": best, "steps_per_s": steps / best,
                 "particle_steps_per_s": n_particles * steps / best})
print("RESULT" + json.dumps(rows))
"""


def sweep_problem() -> MFGProblem:
    return MFGProblem(
        Nx=51,
        Nt=30,
        sigma=0.2,
        running_cost=lambda x, m, t, c: c * m,
        terminal_cost=lambda x: (x - 0.7) ** 2,
        initial_density=lambda x: np.exp(-40 * (x - 0.3) ** 2),
        cost_parameters={"c": 0.2},
    )


def _noop(i: int) -> int:
    return i


def _solve_part(values) -> int:
    """Solve part of the batch in a plain worker process (the no-Dask baseline)."""
    results = solve_mfg_batch(sweep_problem(), {"c": values}, backend="numpy")
    return len(results)


def two_plain_processes(values, repeats: int) -> float:
    """Best wall time of two spawned processes solving half the members each."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    halves = [values[: len(values) // 2], values[len(values) // 2 :]]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        list(pool.map(_solve_part, [values[:2], values[2:4]]))  # start, load numba kernels
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            list(pool.map(_solve_part, halves))
            best = min(best, time.perf_counter() - start)
    return best


def bench_sweep(args) -> dict:
    from dask.distributed import Client, LocalCluster

    problem = sweep_problem()
    batch = {"c": np.linspace(0.0, 0.1, args.members)}
    solve_mfg_batch(problem, {"c": batch["c"][:2]}, backend="numpy")  # numba kernels loaded
    serial_s = np.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        serial = solve_mfg_batch(problem, batch, backend="numpy")
        serial_s = min(serial_s, time.perf_counter() - start)
    iterations = [r.iterations for r in serial]
    print(f"serial solve_mfg_batch: {serial_s:.2f} s ({1e3 * serial_s / args.members:.1f} ms "
          f"per member, {min(iterations)}-{max(iterations)} iterations)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        sweep(problem, batch, Path(tmp) / "here", backend="numpy", progress=False)
        here_s = time.perf_counter() - start
    print(f"sweep(client=None), saving each member: {here_s:.2f} s")
    plain_s = two_plain_processes(batch["c"], args.repeats)
    print(
        f"two plain processes, half each (no Dask, no saving): {plain_s:.2f} s "
        f"({serial_s / plain_s:.2f}x serial: what 2 processes get on this machine now)"
    )

    start = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    client = Client(cluster)
    startup_s = time.perf_counter() - start
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            sweep(problem, {"c": [0.1, 0.2]}, Path(tmp), backend="numpy", client=client,
                  chunk_size=1, progress=False)  # fmt: skip
        client.run(lambda: None)
        futures = client.map(_noop, range(args.members), pure=False)  # warm the task path
        client.gather(futures)
        start = time.perf_counter()
        client.gather(client.map(_noop, range(args.members), pure=False))
        noop_ms = 1e3 * (time.perf_counter() - start) / args.members
        print(f"cluster start-up {startup_s:.2f} s; a no-op task: {noop_ms:.2f} ms each")
        for chunk in args.chunks:
            seconds = np.inf
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    result = sweep(problem, batch, Path(tmp), backend="numpy", client=client,
                                   chunk_size=chunk, progress=False)  # fmt: skip
                    seconds = min(seconds, time.perf_counter() - start)
            assert all(r["converged"] for r in result.summary) == all(r.converged for r in serial)
            tasks = -(-args.members // chunk)
            overhead = 1e3 * (seconds - serial_s / 2) / tasks
            rows.append({"chunk_size": chunk, "tasks": tasks, "seconds": seconds,
                         "speedup_vs_serial": serial_s / seconds,
                         "overhead_ms_per_task": overhead})  # fmt: skip
            print(f"chunk {chunk:4d}: {tasks:4d} tasks, {seconds:6.2f} s, "
                  f"{serial_s / seconds:4.2f}x serial, "
                  f"(T - T_serial/2) / tasks = {overhead:6.1f} ms")  # fmt: skip
    finally:
        client.close()
        cluster.close()
    fastest = min(r["seconds"] for r in rows)
    amortised = min(r["chunk_size"] for r in rows if r["seconds"] <= 1.1 * fastest)
    print(f"smallest chunk within 10% of the fastest sweep: {amortised}")
    return {
        "members": args.members,
        "serial_batch_s": serial_s,
        "serial_sweep_with_saving_s": here_s,
        "two_plain_processes_s": plain_s,
        "cluster_startup_s": startup_s,
        "noop_task_ms": noop_ms,
        "cluster": rows,
        "chunk_within_10pct_of_fastest": amortised,
    }


#: XLA's CPU threading: its default (a device's ops may use the machine's threads), or
#: one thread per device, where only the devices run side by side.
THREADING = {
    "xla default": "",
    "1 thread per device": " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


def bench_particles(args) -> list[dict]:
    rows = []
    for threading, flags in THREADING.items():
        for count in (1, 2, 4):
            env = {
                **os.environ,
                "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}{flags}",
            }
            argv = [str(args.particles), str(args.steps), str(args.repeats), str(count)]
            proc = subprocess.run(
                [sys.executable, "-c", PARTICLE_SCRIPT, *argv],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
            if proc.returncode or not lines:
                raise RuntimeError(f"particle run with {count} devices failed:\n{proc.stderr}")
            rows += [{**r, "threading": threading} for r in json.loads(lines[-1][6:])]
    print(f"\n{args.particles} particles x {args.steps} steps on jax (forced host devices)")
    print("threading            host devices  devices  first (s)  best (s)  steps/s  vs None")
    for r in rows:
        base = next(b for b in rows if b["devices"] is None and b["threading"] == r["threading"])
        r["speedup_vs_unsharded"] = base["best_s"] / r["best_s"]
        print(
            f"{r['threading']:20s} {r['host_devices']:13d}  {str(r['devices']):>7} "
            f"{r['first_s']:10.2f} {r['best_s']:9.3f} {r['steps_per_s']:8.1f} "
            f"{r['speedup_vs_unsharded']:7.2f}x"
        )
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--members", type=int, default=200)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 2, 5, 10, 25, 50, 100])
    parser.add_argument("--particles", type=int, default=1_000_000)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="best of, per timing")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.chunks = 8, [1, 4]
        args.particles, args.steps, args.repeats = 4000, 5, 1
    load_before = os.getloadavg()
    results = {"sweep": bench_sweep(args), "particles": bench_particles(args)}
    if not args.no_json:
        note = (
            "shared 2-core VM (other agents' jobs running): the client, the scheduler and "
            "2 workers share 2 cores; OMP/OPENBLAS threads as set in the environment"
        )
        write_record(args.output, args, load_before, note, results)
    return results


if __name__ == "__main__":
    main()
