"""``solve_mfg(method="auto")``: Picard while it converges, then Newton, Anderson to rescue."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde._result import MFGResult
from mfg_pde.backends import BaseBackend

#: Options of the safeguarded Anderson stage (FixedPointIterator arguments).
ANDERSON_STAGE = {"use_anderson": True, "adaptive_damping": True, "anderson_safeguard": 1.5}
#: The window over which the Picard stage is judged to have stalled (see
#: :mod:`mfg_pde.alg.numerical._stall`): from iteration ``2 STALL_WINDOW`` on, it hands
#: over to Newton when its contraction rate over the last ``STALL_WINDOW`` iterations
#: cannot meet the tolerances within ``max_iterations`` (a cycle: never).
STALL_WINDOW = 5


def solve_auto(
    problem: MFGProblem,
    backend: BaseBackend,
    hjb_options: dict[str, Any],
    iterator_options: dict[str, Any],
    newton_options: dict[str, Any],
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    equation_tolerance: float = 1e-8,
    newton_iterations: int = 50,
    verbose: bool = False,
) -> MFGResult:
    """Damped Picard while it converges at a useful rate, then Newton (see :func:`solve_mfg`).

    1. **picard**: damped Picard (``thetaUM``, default 0.5), at most ``max_iterations``
       iterations, stopped early when it stalls (:data:`STALL_WINDOW`): when, from
       iteration 10 on, its contraction rate over the last 5 iterations predicts that it
       cannot converge within ``max_iterations`` (a cycle predicts never). Easy
       problems end here.
    2. **newton**: :class:`~mfg_pde.alg.numerical.NewtonSolver` (GMRES, line search,
       continuation in σ) from the iterate with the smallest equation residual so far, at
       most ``newton_iterations`` steps. In 1D a Newton step costs about one Picard
       iteration and converges quadratically near the solution, so once Picard has shown
       it will not converge in its budget Newton is the fast way on (measured,
       ``benchmarks/newton.py``: on the congestion hello problem and the κ = 30 wave
       `auto` takes 0.22 and 0.39 s, 10 Picard iterations then 9 and 7 Newton steps,
       against 0.22 and 0.26 s for Newton alone; running Picard and Anderson for their
       whole budgets first took 2.1 and 4.0 s).
    3. **anderson** (only when Newton failed): Anderson with adaptive mixing and the
       residual-jump safeguard (:data:`ANDERSON_STAGE`), ``max_iterations`` iterations
       from the best iterate so far, without stall detection (its progress comes in
       bursts between restarts). This is the rescue for a start too far out for
       Newton: Newton from the default start fails on the attractive hello problem,
       and converges in 3 steps from a fixed-point iterate whose residual is 0.2.
    4. **newton** again, from Anderson's iterate, when Anderson did not converge but
       came closer than any start Newton has had.

    Stages decide from trends, never from whether exactly N iterations happened to
    suffice, so a different order of floating-point sums (threads, BLAS) does not
    change the method mix; whatever stages run, the answer solves the same discrete
    equations to ``equation_tolerance``. A fixed-point stage succeeds when the relative
    changes are below ``tolerance`` and the equations hold to ``equation_tolerance``;
    Newton when they hold to ``equation_tolerance``. The result is the successful
    stage's, with ``method`` naming it and ``stages`` listing every stage run (method,
    iterations, outcome, reason, time and the per-iteration residual histories ``U``,
    ``M``, ``hjb``, ``fp``). When no stage succeeds, ``converged`` is False, ``reason``
    gives every stage's reason, and the arrays are those of the stage that came closest
    (smallest equation residual).
    """
    from mfg_pde.alg.numerical import (
        FixedPointIterator,
        FPFDMSolver,
        HJBFDMSolver,
        NewtonSolver,
    )

    start = time.perf_counter()
    stages: list[dict[str, Any]] = []
    results: list[MFGResult] = []

    def fixed_point(name: str, options: dict[str, Any]) -> MFGResult:
        hjb = HJBFDMSolver(problem, backend=backend, **hjb_options)
        fp = FPFDMSolver(problem, backend=backend)
        result = FixedPointIterator(problem, hjb, fp, **options).solve(
            max_iterations,
            tolerance,
            equation_tolerance=equation_tolerance,
            initial=_start(results),
            verbose=verbose,
        )
        stages.append(_stage(name, result))
        results.append(result)
        return result

    def newton() -> MFGResult:
        result = NewtonSolver(problem, backend=backend, **newton_options).solve(
            newton_iterations, equation_tolerance, initial=_start(results), verbose=verbose
        )
        stages.append({**_stage("newton", result), "continuation": result.stages})
        results.append(result)
        return result

    picard = {k: v for k, v in iterator_options.items() if k in ("thetaUM", "compile")}
    if fixed_point("picard", {**picard, "stall_window": STALL_WINDOW}).converged:
        return _finish(results[-1], stages, start)
    newton_start = _last_residual(min(results, key=_last_residual))
    if newton().converged:
        return _finish(results[-1], stages, start)
    anderson = fixed_point("anderson", {**iterator_options, **ANDERSON_STAGE})
    if anderson.converged:
        return _finish(anderson, stages, start)
    if _last_residual(anderson) < newton_start and newton().converged:
        return _finish(results[-1], stages, start)
    best = min(results, key=_last_residual)
    reasons = "; ".join(f"{s['stage']}: {s['reason']}" for s in stages)
    best.reason = f"no method converged within its limits ({reasons})"
    return _finish(best, stages, start)


def _start(results: list[MFGResult]) -> tuple[Any, Any] | None:
    """The iterate with the smallest equation residual so far (None: the default)."""
    if not results:
        return None
    best = min(results, key=_last_residual)
    return (best.U, best.M) if np.isfinite(_last_residual(best)) else None


def _last_residual(result: MFGResult) -> float:
    if not result.iterations:
        return float("inf")
    value = max(result.residuals["hjb"][-1], result.residuals["fp"][-1])
    return float(value) if np.isfinite(value) else float("inf")


def _stage(name: str, result: MFGResult) -> dict[str, Any]:
    return {
        "stage": name,
        "solver": result.solver,
        "converged": bool(result.converged),
        "iterations": int(result.iterations),
        "reason": result.reason,
        "time": float(result.timings.get("total", float("nan"))),
        **{key: [float(v) for v in series] for key, series in result.residuals.items()},
    }


def _finish(result: MFGResult, stages: list[dict[str, Any]], start: float) -> MFGResult:
    result.stages = stages
    result.timings = {**result.timings, "total": time.perf_counter() - start}
    result.solver = "auto[" + " -> ".join(s["stage"] for s in stages) + "]: " + result.solver
    return result
