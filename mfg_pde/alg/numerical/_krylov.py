"""Preconditioned BiCGSTAB written once on the array namespace (compiles on jax).

The 2D finite-difference schemes solve, at every time step, a linear system whose
matrix is a nonsymmetric M-matrix (the implicit upwind operator or its transpose).
BiCGSTAB (van der Vorst 1992) needs no stored Krylov basis, so its state has a fixed
shape and the loop runs under ``backend.while_loop``: a ``lax.while_loop`` on jax, a
Python loop (one host check per iteration) elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mfg_pde.backends import BaseBackend


def bicgstab(
    backend: BaseBackend,
    matvec: Callable[[Any], Any],
    precondition: Callable[[Any], Any],
    rhs: Any,
    x0: Any,
    atol: Any,
    max_iterations: int,
) -> tuple[Any, Any, Any]:
    """Solve ``A x = rhs`` by right-preconditioned BiCGSTAB.

    Parameters
    ----------
    backend : BaseBackend
    matvec : callable ``v -> A v``
    precondition : callable ``v -> P^{-1} v``, with ``P ≈ A`` cheap to invert
    rhs, x0 : arrays of one shape (any number of axes)
    atol : float or 0-d array
        Stop when ``max |rhs - A x| <= atol`` (the recursively updated residual).
    max_iterations : int

    Returns
    -------
    x, iterations, converged
        ``converged`` is a 0-d boolean array. On a breakdown (a zero denominator, or
        non-finite values) the loop stops with the last finite iterate and
        ``converged = False``.
    """
    xp = backend.xp
    dev = backend._device_kw()

    def dot(u: Any, v: Any) -> Any:
        return xp.sum(u * v)

    def norm(r: Any) -> Any:
        return xp.max(xp.abs(r))

    r = rhs - matvec(x0)
    one = xp.asarray(1.0, dtype=backend.dtype, **dev)
    zero_vec = xp.zeros_like(r)
    state = (
        x0,
        r,
        r,  # the shadow residual r̂, fixed
        zero_vec,  # p
        zero_vec,  # v
        one,  # rho
        one,  # alpha
        one,  # omega
        xp.asarray(0, **dev),
        norm(r),
        xp.asarray(False, **dev),  # broke down
    )

    def running(s: tuple) -> Any:
        return (s[8] < max_iterations) & (s[9] > atol) & ~s[10]

    def step(s: tuple) -> tuple:
        x, r, r_hat, p, v, rho, alpha, omega, it, _, _ = s
        rho_new = dot(r_hat, r)
        beta = (rho_new / rho) * (alpha / omega)
        p = r + beta * (p - omega * v)
        p_hat = precondition(p)
        v = matvec(p_hat)
        alpha = rho_new / dot(r_hat, v)
        s_vec = r - alpha * v
        s_hat = precondition(s_vec)
        t = matvec(s_hat)
        tt = dot(t, t)
        # t = 0 only when s = 0: then x + alpha p_hat is exact and omega is irrelevant.
        omega = xp.where(tt > 0, dot(t, s_vec) / xp.where(tt > 0, tt, 1.0), 0.0)
        x_new = x + alpha * p_hat + omega * s_hat
        r_new = s_vec - omega * t
        r_norm = norm(r_new)
        # rho or omega = 0 (or a NaN) would poison the next step: stop with the last
        # good iterate instead.
        broke = ~(xp.isfinite(r_norm) & (omega != 0) & (rho_new != 0))
        converged_now = r_norm <= atol
        keep = broke & ~converged_now
        return (
            xp.where(keep, x, x_new),
            xp.where(keep, r, r_new),
            r_hat,
            p,
            v,
            rho_new,
            alpha,
            omega,
            it + 1,
            xp.where(keep, s[9], r_norm),
            keep,
        )

    s = backend.while_loop(running, step, state)
    return s[0], s[8], s[9] <= atol
