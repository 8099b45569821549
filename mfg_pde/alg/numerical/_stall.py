"""When a fixed-point iteration has stalled: decided from the trend of its residual.

A fixed-point iteration that will not meet its tolerances within its budget usually
shows it early: it cycles (damped Picard on strongly coupled or weakly diffusive
problems returns to the same residuals again and again), or it contracts so slowly that
the budget cannot suffice. Both are read off the *progress* of iteration k,

    p_k = max(r_U / tol, r_M / tol, |F| / eq_tol, |G| / eq_tol),

which is <= 1 exactly when the iteration has converged (the relative changes and the
equation residuals in units of their tolerances). Let ``low_k`` be the lowest progress
after k iterations, where a new low must beat the previous one by the factor
:data:`STALL_IMPROVEMENT`: a cycle returns to (nearly) the same residuals, and whether
such a return lands a hair below the old low is decided by round-off, so it must not
count. With the window ``w`` (``stall_window``), from iteration ``2 w`` on the
contraction rate of the low over the last ``w`` iterations,
``rho = (low_k / low_{k-w})^(1/w)``, predicts ``log(low_k) / -log(rho)`` more
iterations; the iteration has stalled when with them the total exceeds the budget. A
cycle makes no new low (``rho = 1``: never), a slow contraction predicts too many.

The decision reads a trend over ``w`` iterations of residuals far above the rounding
level, never whether a budget of exactly N iterations happened to suffice, so a
different order of floating-point sums (threads, BLAS, compiler) does not flip it. The
waiting period ``2 w`` lets the first iterations' transient pass: from the default start
(U = g, M = m0 at every level) the residual of a converging iteration often rises for a
few iterations first. Measured with ``w = 5`` (Nx = 101, Nt = 50, tolerances 1e-6 and
1e-8): on the attractive hello problem damped Picard rises for 3 iterations, makes its
first new low at iteration 9, and at iteration 10 predicts 76 iterations in all (it
converges in 52); on the congestion problem and the κ = 30 wave it cycles between 2 and
8 times its first residual and stops after 10 iterations.

Everything is written with array operations on the iteration state, so it runs in the
compiled ``while_loop`` as in the host loop.
"""

from __future__ import annotations

import math
from typing import Any

#: A new low of the progress must be below this factor times the previous low.
STALL_IMPROVEMENT = 0.99


def progress(xp: Any, ru: Any, rm: Any, rh: Any, rf: Any, tolerances: Any) -> Any:
    """``p_k``: the largest residual in units of its tolerance (<= 1: converged)."""
    tolerance, equation_tolerance = tolerances
    changes = xp.maximum(ru, rm) / tolerance
    return xp.maximum(changes, xp.maximum(rh, rf) / equation_tolerance)


def stall_update(
    xp: Any, window: int, max_iterations: int, slots: Any, k: Any, p: Any, s: Any
) -> tuple[Any, Any, Any, Any, Any]:
    """One iteration's stall bookkeeping.

    ``slots``: ``arange(max_iterations)`` on the device, ``k``: iterations done before
    this one, ``p``: this iteration's progress, ``s``: the state's ``low`` and the history
    ``lows``. Returns ``(stalled, low, lows, rate, remaining)``: ``rate`` is the
    contraction rate per iteration over the last window (1 until it is judged, and when
    the low did not fall), ``remaining`` the iterations it predicts (inf: never).
    """
    new_low = p < STALL_IMPROVEMENT * s.low
    low = xp.where(new_low, p, s.low)
    lows = xp.where(slots == k, low, s.lows)
    judged = k + 1 >= 2 * window
    # low_{k-w} (per member of a stacked batch: one slot of each row is picked)
    back = xp.reshape(xp.sum(xp.where(slots == k - window, lows, 0.0), axis=-1), low.shape)
    falling = judged & (back > low)
    ratio = xp.where(falling, low / xp.where(falling, back, 1.0), 1.0)
    # -log(rho) = log(low_{k-w} / low_k) / w; the iterations still needed at that rate.
    needed = window * xp.log(xp.maximum(low, 1.0)) / -xp.log(xp.where(falling, ratio, 0.5))
    remaining = xp.where(falling, needed, math.inf)
    stalled = judged & (k + 1 + remaining > max_iterations)
    return stalled, low, lows, ratio ** (1.0 / window), remaining
