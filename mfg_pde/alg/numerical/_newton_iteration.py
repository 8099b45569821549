"""One damped Newton attempt on the discrete MFG system, written once on the namespace.

:class:`~mfg_pde.alg.numerical.newton.NewtonSolver` runs this loop on host NumPy
arrays (numpy and numba backends: the SciPy reference path) or on the backend's own
arrays (jax, torch: :mod:`~mfg_pde.alg.numerical._newton_device`); the arithmetic is
the same ``xp`` code either way. The iterates ``U``, ``M`` stay where the backend keeps
them; what crosses to the host per Newton iteration is a few scalars: the residual
norm and its maxima per line-search trial (one read of three numbers) and the relative
step sizes (one read of two).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mfg_pde.backends import BaseBackend

#: Armijo constant of the backtracking line search on ``||R||_2``.
ARMIJO = 1e-4
#: Step halvings before the line search gives up (smallest step 2**-12).
MAX_HALVINGS = 12
#: Eisenstat-Walker forcing terms ("choice 2"): the linear solve of Newton step k stops
#: at a relative residual eta_k = EW_GAMMA (|R_k| / |R_{k-1}|)^2, safeguarded and at
#: most EW_MAX (EW_MAX at the first step). Loose far from the solution, tight near it:
#: the outer iteration stays quadratic.
EW_GAMMA, EW_MAX = 0.9, 1e-2


def residual_sizes(backend: BaseBackend, F: Any, G: Any) -> tuple[float, float, float]:
    """``(|(F, G)|_2, max|F|, max|G|)`` as floats, in one read from the device."""
    xp = backend.xp
    sizes = xp.stack([xp.sqrt(xp.sum(F * F) + xp.sum(G * G)), xp.max(xp.abs(F)), xp.max(xp.abs(G))])
    norm, rh, rf = (float(v) for v in backend.to_numpy(sizes))
    return norm, rh, rf


def newton_attempt(
    backend: BaseBackend,
    residual: Callable[[Any, Any], tuple[Any, Any]],
    linear_step: Callable[..., tuple[Any, Any, dict]],
    sigma: float,
    U: Any,
    M: Any,
    tolerance: float,
    limit: int,
    history: dict,
    progress: Any,
) -> dict:
    """Damped Newton from ``(U, M)`` (backend arrays ``(Nt + 1, Nx)``), at most ``limit``
    steps; ``residual(U, M) -> (F, G)``, ``linear_step(U, M, F, G, rtol, atol) ->
    (dU, dM, info)`` solving ``J s = -(F, G)`` for the free levels. Appends the accepted
    steps to ``history`` (``"U"``, ``"M"``, ``"hjb"``, ``"fp"``) and returns the
    attempt's outcome (see :meth:`NewtonSolver.solve`'s ``stages``)."""
    xp = backend.xp
    F, G = residual(U, M)
    norm, rh, rf = residual_sizes(backend, F, G)
    hjb, fp, steps, linear = [], [], [], []
    eta, previous_norm = EW_MAX, norm
    reason, stopped, finite = "", False, norm == norm and abs(norm) != float("inf")
    k = 0
    while True:
        if not finite:
            reason = "non-finite residual at the starting point"
            break
        if rh <= tolerance and rf <= tolerance:
            return {
                "U": U, "M": M, "converged": True, "iterations": k, "reason": "converged",
                "hjb": hjb, "fp": fp, "steps": steps, "stopped": False, "finite": True,
                "linear": linear,
            }  # fmt: skip
        if k >= limit:
            reason = f"{limit} Newton iterations at sigma={sigma:g} left residuals HJB {rh:.2e}, "
            reason += f"FP {rf:.2e}"
            break
        if linear:  # Eisenstat-Walker choice 2, with its safeguard
            eta_next = EW_GAMMA * (norm / previous_norm) ** 2
            if EW_GAMMA * eta**2 > 0.1:
                eta_next = max(eta_next, EW_GAMMA * eta**2)
            eta = min(EW_MAX, eta_next)
        try:
            dU_n, dM_n, info = linear_step(U, M, F, G, eta, 0.1 * tolerance)
        except RuntimeError as err:  # exactly singular factor
            reason = f"singular Jacobian at sigma={sigma:g} ({err})"
            break
        linear.append(info)
        zero = xp.zeros_like(dU_n[:1, ...])
        dU = xp.concat([dU_n, zero])
        dM = xp.concat([zero, dM_n])
        alpha, accepted = 1.0, False
        for _ in range(MAX_HALVINGS + 1):
            U_try, M_try = U + alpha * dU, M + alpha * dM
            F_try, G_try = residual(U_try, M_try)
            norm_try, rh_try, rf_try = residual_sizes(backend, F_try, G_try)
            if norm_try == norm_try and norm_try <= (1.0 - ARMIJO * alpha) * norm:
                accepted = True
                break
            alpha *= 0.5
        k += 1
        if not accepted:
            reason = f"line search stalled at sigma={sigma:g} (no decrease down to step 2^-"
            reason += f"{MAX_HALVINGS}; residual norm {norm:.2e})"
            break
        sizes = xp.stack([_norm(xp, dU), _norm(xp, U_try), _norm(xp, dM), _norm(xp, M_try)])
        du, u, dm, m = (float(v) for v in backend.to_numpy(sizes))
        history["U"].append(alpha * du / max(u, 1e-300))
        history["M"].append(alpha * dm / max(m, 1e-300))
        previous_norm = norm
        U, M, F, G, norm, rh, rf = U_try, M_try, F_try, G_try, norm_try, rh_try, rf_try
        for record in (history["hjb"], hjb):
            record.append(rh)
        for record in (history["fp"], fp):
            record.append(rf)
        steps.append(alpha)
        if progress.active and progress.update(len(history["hjb"]), {"hjb": rh, "fp": rf}):
            reason, stopped = progress.stop_reason, True
            break
    return {
        "U": U, "M": M, "converged": False, "iterations": k, "reason": reason,
        "hjb": hjb, "fp": fp, "steps": steps, "stopped": stopped, "finite": finite,
        "linear": linear,
    }  # fmt: skip


def _norm(xp: Any, v: Any) -> Any:
    return xp.sqrt(xp.sum(v * v))
