"""The :class:`~mfg_pde.MFGResult` of a fixed-point iteration's final state."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfg_pde._result import MFGResult
from mfg_pde.alg.numerical._fixed_point_iteration import (
    CONVERGED,
    NONFINITE_M,
    NONFINITE_U,
    RUNNING,
    STALLED,
    StallState,
)
from mfg_pde.alg.numerical._stall import STALL_IMPROVEMENT


def fixed_point_result(
    iterator, state, tolerances, max_iterations, timings, notes, problem=None, stopped=None
):
    """The :class:`MFGResult` of a final state (``problem``: a batch member's;
    ``stopped``: why a callback ended the solve)."""
    b = iterator.backend
    p = iterator.problem if problem is None else problem
    status = int(b.to_numpy(state.status))
    k = int(b.to_numpy(state.k))
    recorded = k - (1 if status in (NONFINITE_U, NONFINITE_M) else 0)
    converged = status == CONVERGED
    if converged:
        tolerance, equation_tolerance = tolerances
        reason = f"both residuals below tolerance={tolerance:g}"
        if math.isfinite(equation_tolerance):
            reason += f" and equation residuals below {equation_tolerance:g}"
    elif status == RUNNING:
        reason = stopped or f"reached max_iterations={max_iterations}"
    elif status == STALLED:
        reason = _stall_reason(iterator, state.stall, k, max_iterations)
    else:
        where = "U (HJB solve)" if status == NONFINITE_U else "M (FP solve)"
        n, i = _nonfinite_origin(b.to_numpy(state.bad), backward=status == NONFINITE_U)
        reason = (
            f"non-finite values in {where} at iteration {k}, time index {n} "
            f"(t={p.t[n]:.4g}), grid index {i} ({p._where(i)}); returning the last "
            "finite iterate"
        )
    newton_failures = int(b.to_numpy(state.newton_failures))
    if newton_failures and status not in (NONFINITE_U, NONFINITE_M):
        notes.append(
            f"HJB Newton hit its iteration cap on {newton_failures} time steps in the last solve"
        )
    return MFGResult(
        U=b.to_numpy(state.U).copy(),
        M=b.to_numpy(state.M).copy(),
        x=p.x.copy(),
        y=p.y.copy() if p.dim == 2 else None,
        t=p.t.copy(),
        converged=converged,
        iterations=recorded,
        residuals={
            "U": b.to_numpy(state.res_u)[:recorded].copy(),
            "M": b.to_numpy(state.res_m)[:recorded].copy(),
            "hjb": b.to_numpy(state.res_hjb)[:recorded].copy(),
            "fp": b.to_numpy(state.res_fp)[:recorded].copy(),
        },
        reason=reason,
        backend=b.name,
        device=b.device,
        timings=timings,
        solver=iterator.name,
        problem={
            **p.parameters(),
            "dx": p.dx,
            **({"dy": p.dy} if p.dim == 2 else {}),
            "dt": p.dt,
        },
        warnings=notes,
        method=iterator.method,
    )


def _stall_reason(iterator: Any, stall: StallState, k: int, max_iterations: int) -> str:
    b, w = iterator.backend, iterator.stall_window
    low, rate, remaining = (float(b.to_numpy(v)) for v in (stall.low, stall.rate, stall.remaining))
    if rate >= 1:
        trend = f"made no new low (by {1 - STALL_IMPROVEMENT:.0%}) in the last {w}"
        more = "it cycles or stagnates"
    else:
        trend = f"contracted by {rate:.3g} per iteration over the last {w}"
        more = f"at that rate it needs about {remaining:.0f} more, beyond {max_iterations}"
    return (
        f"stalled after {k} iterations: the residual, {low:.3g} times the tolerance at "
        f"its lowest, {trend}; {more}"
    )


def _nonfinite_origin(arr: np.ndarray, backward: bool) -> tuple[int, int]:
    """(time index, flat grid index) where a march first produced NaN/inf.

    A forward march's first bad level is the earliest, a backward one's the latest.
    """
    flat = arr.reshape(arr.shape[0], -1)
    bad = np.argwhere(~np.isfinite(flat))
    level = bad[:, 0].max() if backward else bad[:, 0].min()
    n, i = bad[bad[:, 0] == level][0]
    return int(n), int(i)
