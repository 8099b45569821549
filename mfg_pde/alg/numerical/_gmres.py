"""Restarted GMRES written on the array namespace: the vectors stay on the backend's device.

GMRES (Saad & Schultz 1986) for the Newton steps of
:class:`~mfg_pde.alg.numerical.newton.NewtonSolver` on backends whose arrays are not
host NumPy arrays (jax, torch). The Krylov basis vectors are backend arrays; the
operator (compiled by the caller where the backend compiles) is applied to them on
the device.

Orthogonalisation is classical Gram-Schmidt applied twice (CGS2, "twice is enough":
Giraud, Langou & Rozložník 2005), as orthogonal to working precision as modified
Gram-Schmidt, but two matrix-vector products with the stacked basis instead of ``j``
dot products and updates: a handful of operations per Arnoldi step whatever ``j``,
which is what a GPU (and torch's ~10 µs dispatch per operation on a CPU) wants.

The basis grows (step ``j`` stacks and reads its ``j + 1`` vectors). A fixed-shape
``(restart + 1, n)`` basis, one compiled Arnoldi step for every ``j``, was measured
against it on the 101 x 50 congestion problem (2-core EPYC, steady state, 17 Newton
steps, ~190 Arnoldi steps): torch 0.22 s fixed -> 0.16 s growing (~3 ms against
~0.7 ms per step: the fixed basis reads and rewrites all 51 rows every step, while
GMRES here needs 3-28), jax 0.51-0.57 s -> 0.34 s; jax's first solve pays more for the
growing basis (7.6 s against 5.9 s, a small program per basis size), hence this choice
for repeated solves.

The loop control stays on the host: after each Arnoldi step the ``j + 2`` Hessenberg
entries of the new column are read back (one small transfer, the only host read of
the step), the Givens rotations and the stopping test run in NumPy, and the
correction ``V^T z`` is formed on the device once per cycle. On a CPU that read costs
nothing (the work has already run); on a GPU it is one synchronisation per Arnoldi
step (~10-50 µs of latency on top of the step's kernels: the preconditioner's march
of ``Nt`` levels and a few vector operations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

from mfg_pde.backends import BaseBackend


def orthogonalise(xp: Any, W: Any, w: Any) -> tuple[Any, Any, Any]:
    """``w`` made orthogonal to the rows of ``W`` by classical Gram-Schmidt applied twice.

    Returns ``(v, h, size)``: ``v = w' / |w'|`` (``w'`` the orthogonalised vector; ``v``
    is zero when ``w'`` is), the projections ``h`` (one per row of ``W``; zero rows of
    ``W`` give zero) and ``|w'|``.
    """
    h = xp.matmul(W, w)
    w = w - xp.matmul(h, W)
    correction = xp.matmul(W, w)
    w = w - xp.matmul(correction, W)
    size = xp.sqrt(xp.sum(w * w))
    return w / xp.where(size > 0, size, xp.ones_like(size)), h + correction, size


def gmres(
    backend: BaseBackend,
    operator: Callable[[Any], Any],
    rhs: Any,
    rtol: float,
    atol: float,
    restart: int,
    cycles: int,
) -> tuple[Any, dict]:
    """Solve ``A y = rhs`` (``rhs`` a 1-D backend array) by GMRES(``restart``), from 0.

    Parameters
    ----------
    backend : BaseBackend
    operator : callable ``y -> A y`` (backend arrays of ``rhs``'s shape)
    rtol, atol : float
        Stop when ``|rhs - A y|_2 <= max(rtol |rhs|_2, atol)``.
    restart, cycles : int
        At most ``restart`` Arnoldi steps per cycle and ``cycles`` cycles.

    Returns
    -------
    y, info
        ``info``: ``"iterations"`` (applications of ``A``: Arnoldi steps and one
        residual per finished cycle), ``"residual"`` (the last true residual norm,
        ``|rhs - A y|_2``, recomputed at the end of every cycle) and ``"converged"``.
    """
    xp = backend.xp
    b_norm = float(xp.sqrt(xp.sum(rhs * rhs)))
    target = max(rtol * b_norm, atol)
    y = xp.zeros_like(rhs)
    info: dict[str, Any] = {"iterations": 0, "residual": b_norm, "converged": b_norm <= target}
    if info["converged"]:
        return y, info
    r, beta = rhs, b_norm
    for _ in range(cycles):
        basis = [r / beta]
        H = np.zeros((restart + 1, restart))
        cos, sin = np.zeros(restart), np.zeros(restart)
        g = np.zeros(restart + 1)
        g[0] = beta
        k = 0
        for j in range(restart):
            v, h, size = orthogonalise(xp, xp.stack(basis), operator(basis[j]))
            basis.append(v)
            h = xp.concat([h, size[None]])
            info["iterations"] += 1
            column = np.array(backend.to_numpy(h)[: j + 2], dtype=np.float64)
            for i in range(j):  # the earlier rotations
                column[i], column[i + 1] = (
                    cos[i] * column[i] + sin[i] * column[i + 1],
                    -sin[i] * column[i] + cos[i] * column[i + 1],
                )
            radius = float(np.hypot(column[j], column[j + 1]))
            if radius == 0.0 or not np.isfinite(radius):
                break
            cos[j], sin[j] = column[j] / radius, column[j + 1] / radius
            column[j], column[j + 1] = radius, 0.0
            g[j + 1], g[j] = -sin[j] * g[j], cos[j] * g[j]
            H[: j + 2, j] = column
            k = j + 1
            if abs(g[j + 1]) <= target:
                break
        if k == 0:
            break
        z = solve_triangular(H[:k, :k], g[:k], lower=False, check_finite=False)
        y = y + xp.matmul(backend.from_numpy(z), xp.stack(basis[:k]))
        r = rhs - operator(y)
        info["iterations"] += 1
        beta = float(xp.sqrt(xp.sum(r * r)))
        info["residual"] = beta
        if beta <= target:
            info["converged"] = True
            break
        if not np.isfinite(beta) or beta == 0.0:
            break
    return y, info
