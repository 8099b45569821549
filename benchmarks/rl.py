"""The actor-critic solver against the PDE: accuracy, wall time, agents per second.

    python benchmarks/rl.py                    # CPU: LQ and quickstart, ~3-5 min on 2 cores
    python benchmarks/rl.py --quick            # a smoke run (tiny sizes, numbers meaningless)
    python benchmarks/rl.py --agents 1000000   # the 10^6-agent run (meant for a GPU)

Sections (all on the torch backend, on its best device):

- ``simulate``: agents per second of one environment step with the policy's forward
  pass (the population simulation's inner loop), for 10^4, 10^5 (and ``--agents``)
  agents, best of 3 after a warm-up, synchronised.
- ``quickstart``: the design brief's congestion problem on a 101 x 50 grid, trained
  with the solver's defaults (and ``--agents`` population agents); after every outer
  iteration the L1 distance (max over t) of the agents' density (``num_agents``) to a
  grid-converged FDM equilibrium (401 x 200, sampled at the coarse points), the relative
  exploitability and the density-weighted control error of the iterate; then the same
  for the returned result (the averaged policy, its density from ``final_agents``
  agents), the wall time of the whole solve, whether L1 <= 0.05 (target: within 2
  minutes on 2 CPU cores), and the histogram's own sampling error at ``final_agents``
  (the L1 between two independent estimates of the returned policy's density, / sqrt 2).
- ``lq``: the linear-quadratic game with an exact solution (61 x 25 on [-1.5, 1.5]):
  the same metrics against the exact density and control.

Writes ``benchmarks/results/rl-<cpu|gpu>-<cores>core.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kernels import write_record  # noqa: E402

from mfg_pde import solve_mfg  # noqa: E402
from mfg_pde.problems import design_example  # noqa: E402

PRESENT = 1e-3
#: --quick: a smoke run, numbers meaningless.
QUICK = dict(
    outer_iterations=2, critic_steps=5, actor_steps=5, warmup=1, averaging=2, final_agents=2000
)


def control_error(control, reference, density):
    c, r, m = control[:-1], reference[:-1], density[:-1]
    mask = m > PRESENT
    return float(np.sqrt(np.sum(m[mask] * (c - r)[mask] ** 2) / np.sum(m[mask] * r[mask] ** 2)))


def density_l1(M, reference, dx):
    return float(np.max(np.sum(np.abs(M - reference), axis=1) * dx))


def simulate_rate(num_agents: int, repeats: int = 3) -> dict:
    """Agents per second of one step: policy forward, noise, dynamics, reward."""
    from mfg_pde.alg.rl import ActorCriticSolver

    problem = design_example(Nx=101, Nt=50)
    solver = ActorCriticSolver(problem, num_agents=max(num_agents, 100))
    b, env = solver.backend, solver.env
    key, x = env.initial_positions(b.random_key(0), num_agents)
    import torch

    def one_step(x, key):
        with torch.no_grad():
            key, xi = b.normal(key, x.shape)
            x, _ = env.step(10, x, solver.policy.mean(env.times[10], x), xi)
        return x, key

    x, key = one_step(x, key)
    best = float("inf")
    for _ in range(repeats):
        b.synchronize(x) if hasattr(b, "synchronize") else None
        start = time.perf_counter()
        for _ in range(10):
            x, key = one_step(x, key)
        if hasattr(b, "synchronize"):
            b.synchronize(x)
        best = min(best, (time.perf_counter() - start) / 10)
    return {"agents": num_agents, "step_s": best, "agents_per_s": num_agents / best}


def train(problem, reference_M, reference_control, options: dict, target: float) -> dict:
    """Train with ``options``; per outer iteration: seconds, L1, exploitability, control."""
    from mfg_pde.alg.rl import ActorCriticSolver

    solver = ActorCriticSolver(problem, **options)
    rows, start = [], time.perf_counter()

    def record(k, metrics):
        M = solver.backend.to_numpy(solver.last_density)
        control = solver.backend.to_numpy(solver.control_on_grid())
        rows.append(
            {
                "iteration": k,
                "seconds": time.perf_counter() - start,
                "l1": density_l1(M, reference_M, problem.dx),
                "relative_exploitability": float(metrics["exploitability"]),
                "control_error": control_error(control, reference_control, reference_M),
            }
        )
        r = rows[-1]
        print(
            f"  {k:3d} {r['seconds']:7.1f} s  L1 {r['l1']:.4f}  exploitability "
            f"{r['relative_exploitability']:.2%}  control {r['control_error']:.3f}",
            flush=True,
        )

    result = solver.solve(callback=record)
    seconds = time.perf_counter() - start
    final = {
        "seconds": seconds,
        "l1": density_l1(result.M, reference_M, problem.dx),
        "relative_exploitability": result.relative_exploitability,
        "control_error": control_error(result.control, reference_control, reference_M),
        "sampling_l1": sampling_error(solver, problem.dx),
    }
    print(
        f"  result (policy averaged over {solver.averaging} iterations, density of "
        f"{solver.final_agents:,d} agents): {seconds:.1f} s  L1 {final['l1']:.4f} (its "
        f"sampling error {final['sampling_l1']:.4f})  exploitability "
        f"{final['relative_exploitability']:.2%}  control {final['control_error']:.3f}",
        flush=True,
    )
    return {
        "options": {k: v for k, v in solver.options().items()},
        "device": result.device,
        "iterations": rows,
        "final": final,
        "seconds_to_l1_target": seconds if final["l1"] <= target else None,
        "l1_target": target,
        "timings": result.timings,
    }


def sampling_error(solver, dx) -> float:
    """L1 (max over t) between two independent ``final_agents`` estimates of the returned
    policy's density, divided by sqrt 2: the sampling error of one estimate."""
    from mfg_pde.alg.rl._result import averaged_policy, final_density

    policy, seed = averaged_policy(solver), solver.seed
    estimates = []
    for other in (seed + 100, seed + 101):
        solver.seed = other  # final_density draws from the stream of seed + 2
        estimates.append(solver.backend.to_numpy(final_density(solver, policy)))
    solver.seed = seed
    return density_l1(estimates[0], estimates[1], dx) / np.sqrt(2.0)


def agent_options(args) -> dict:
    """``--agents N``: N population agents, and at least N for the returned density."""
    if not args.agents:
        return {}
    return {"num_agents": args.agents, "final_agents": max(200_000, args.agents)}


def quickstart(args) -> dict:
    scale = 1 if args.quick else 4
    Nx, Nt = (41, 10) if args.quick else (101, 50)
    problem = design_example(Nx=Nx, Nt=Nt)
    fine = solve_mfg(
        design_example(Nx=scale * (Nx - 1) + 1, Nt=scale * Nt),
        backend="numpy",
        use_anderson=True,
        tolerance=1e-9,
        max_iterations=300,
    )
    M, U = fine.M[::scale, ::scale], fine.U[::scale, ::scale]
    control = -np.gradient(U, problem.dx, axis=1) / problem.control_cost
    options = agent_options(args)
    if args.quick:
        options.update(QUICK)
    print(f"quickstart {Nx} x {Nt}, reference FDM {scale * (Nx - 1) + 1} x {scale * Nt}")
    return train(problem, M, control, options, target=0.05)


def lq(args) -> dict:
    from exact_solutions import LinearQuadratic

    game = LinearQuadratic()
    Nx, Nt = (31, 10) if args.quick else (61, 25)
    problem = game.problem(Nx, Nt, xmin=-1.5, xmax=1.5)
    M = game.density(problem.t, problem.x)
    control = -np.gradient(game.value(problem.t, problem.x), problem.dx, axis=1)
    options = agent_options(args)
    if args.quick:
        options.update(QUICK)
    else:  # as in tests/test_rl.py: the LQ value is a quadratic, its critic fits faster
        options.update(outer_iterations=16, critic_steps=60, actor_steps=60, averaging=4)
    print(f"linear-quadratic {Nx} x {Nt} against the exact solution")
    return train(problem, M, control / problem.control_cost, options, target=0.05)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--agents", type=int, default=None, help="population agents")
    parser.add_argument("--sections", default="simulate,quickstart,lq")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    from mfg_pde.backends import create_backend

    device = create_backend("torch").get_performance_hints()["device_type"]
    results: dict = {}
    sections = args.sections.split(",")
    if "simulate" in sections:
        counts = [1_000] if args.quick else [10_000, 100_000]
        if args.agents and args.agents not in counts:
            counts.append(args.agents)
        results["simulate"] = [simulate_rate(n) for n in counts]
        for row in results["simulate"]:
            print(f"simulate {row['agents']:>9,d} agents: {row['agents_per_s']:.3g} agents/s")
    if "quickstart" in sections:
        results["quickstart"] = quickstart(args)
    if "lq" in sections:
        results["lq"] = lq(args)
    output = (
        args.output or ROOT / "benchmarks" / "results" / f"rl-{device}-{os.cpu_count()}core.json"
    )
    note = "torch backend; the machine is shared with other jobs, timings are noisy"
    write_record(output, args, load_before, note, results)
    return results


if __name__ == "__main__":
    main()
