"""Numba kernels of the 1D finite-difference scheme over a stack of members.

The FP march (:func:`mfg_pde.alg.numerical.fp_fdm.make_fp_march`) and the equation
residual (:func:`mfg_pde.alg.numerical._residual.make_equation_residual`) in one compiled
pass each, on arrays ``(Nt + 1, B, n)``: ``B`` problems that share the grid and differ in
ν and λ (one problem is ``B = 1``). The arithmetic is the array version's, operation by
operation and in the same order, so the results are the same to the bit; the array
version makes ~15 passes over ``(Nt, n)`` arrays (0.26 ms per residual on the hello
problem), these make one.

Each kernel fills the members ``start..stop - 1`` of an output it is given and releases
the GIL, so that a batch can run two halves of its members in two threads
(:mod:`mfg_pde.alg.numerical._stacked_batch`). Importing this module imports numba;
callers import it lazily.
"""

from __future__ import annotations

import numba
import numpy as np

from mfg_pde.backends._numba_kernels import _thomas_in_place
from mfg_pde.backends._numba_marches import hjb_march_noflux


@numba.njit(cache=True, inline="always")
def _operator(
    u, dx, dt, nu, lam, counts, periodic, lower, diag, upper, hamiltonian, diffusion
):  # pragma: no cover
    """The rows of ``I/dt - ν Δ + L(u)`` at one level; with ``hamiltonian`` and
    ``diffusion`` of length n (not 0) also ``H(u)`` and ``ν Δ u`` there."""
    n = u.shape[0]
    k_diff = nu / (dx * dx)
    for i in range(n):
        if periodic:
            behind = (u[i] - u[i - 1 if i > 0 else n - 1]) / dx
            ahead = (u[i + 1 if i < n - 1 else 0] - u[i]) / dx
        else:
            behind = (u[i] - u[i - 1]) / dx if i > 0 else 0.0
            ahead = (u[i + 1] - u[i]) / dx if i < n - 1 else 0.0
        a = min(ahead, 0.0) / lam
        b = max(behind, 0.0) / lam
        lower[i] = -k_diff - b / dx
        upper[i] = a / dx - k_diff
        diag[i] = (1.0 / dt + k_diff * counts[i]) + (b - a) / dx
        if hamiltonian.shape[0] == n:
            hamiltonian[i] = (0.5 * lam) * (a * a + b * b)
            diffusion[i] = (nu / dx) * (ahead - behind)


@numba.njit(cache=True, nogil=True)
def fp_march_1d(U, m0, dx, dt, nu, lam, counts, periodic, out, start, stop):  # pragma: no cover
    """``out[:, j]`` = the density path of member ``j`` for ``start <= j < stop``:
    ``A(U^n)^T M^{n+1} = M^n / dt`` level by level from ``M^0 = m0[j]``, Thomas (and
    Sherman–Morrison on periodic grids) as :func:`~._numba_kernels.tridiagonal_march`."""
    levels, n = U.shape[0] - 1, U.shape[2]
    lower, diag, upper = np.empty(n), np.empty(n), np.empty(n)
    low_t, up_t, r = np.empty(n), np.empty(n), np.empty(n)
    x, y, z, v = np.empty(n), np.empty(n), np.zeros(n), np.empty(0)
    scratch = np.empty(n)
    coupling = 1.0 / dt
    for j in range(start, stop):
        out[0, j] = m0[j]
        for k in range(levels):
            _operator(U[k, j], dx, dt, nu[j], lam[j], counts, periodic, lower, diag, upper, v, v)
            for i in range(n):  # the transpose: A^T[i, i-1] = A[i-1, i], A^T[i, i+1] = A[i+1, i]
                low_t[i] = upper[i - 1] if i > 0 else upper[n - 1]
                up_t[i] = lower[i + 1] if i < n - 1 else lower[0]
                r[i] = m0[j, i] / dt + 0.0 if k == 0 else 0.0 + coupling * out[k, j, i]
            if not periodic:
                _thomas_in_place(low_t, diag, up_t, r, x, scratch, diag[0], diag[n - 1])
            else:  # A = B + u v^T, u = (gamma, 0, ..., 0, c), v = (1, 0, ..., 0, a / gamma)
                a, c, gamma = low_t[0], up_t[n - 1], -diag[0]
                first, last = diag[0] - gamma, diag[n - 1] - c * a / gamma
                _thomas_in_place(low_t, diag, up_t, r, y, scratch, first, last)
                z[:] = 0.0
                z[0], z[n - 1] = gamma, c
                _thomas_in_place(low_t, diag, up_t, z, x, scratch, first, last)
                factor = (y[0] + (a / gamma) * y[n - 1]) / (1.0 + x[0] + (a / gamma) * x[n - 1])
                for i in range(n):
                    x[i] = y[i] - factor * x[i]
            out[k + 1, j] = x


@numba.njit(cache=True, nogil=True)
def equation_residual_1d(
    U, M, f, dx, dt, nu, lam, counts, periodic, F, G, start, stop
):  # pragma: no cover
    """``F[:, j]``, ``G[:, j]`` of :func:`~mfg_pde.alg.numerical._residual.make_equation_residual`
    for the members ``start <= j < stop`` (``f[k, j]``: member j's running cost at
    level ``k + 1``)."""
    levels, n = U.shape[0] - 1, U.shape[2]
    lower, diag, upper = np.empty(n), np.empty(n), np.empty(n)
    hamiltonian, diffusion = np.empty(n), np.empty(n)
    for j in range(start, stop):
        for k in range(levels):
            u, v = U[k, j], M[k + 1, j]
            _operator(
                u,
                dx,
                dt,
                nu[j],
                lam[j],
                counts,
                periodic,
                lower,
                diag,
                upper,
                hamiltonian,
                diffusion,
            )
            for i in range(n):
                time_part = (u[i] - U[k + 1, j, i]) / dt
                F[k, j, i] = time_part - diffusion[i] + hamiltonian[i] - f[k, j, i]
                low_t = upper[i - 1] if i > 0 else upper[n - 1]
                up_t = lower[i + 1] if i < n - 1 else lower[0]
                if periodic:
                    left, right = v[i - 1 if i > 0 else n - 1], v[i + 1 if i < n - 1 else 0]
                else:
                    left = v[i - 1] if i > 0 else 0.0
                    right = v[i + 1] if i < n - 1 else 0.0
                G[k, j, i] = (low_t * left + diag[i] * v[i] + up_t * right) - M[k, j, i] / dt


@numba.njit(cache=True, nogil=True)
def hjb_march_members(
    g, f, guess, dx, dt, nu, lam, counts, tolerance, max_iterations, out, failures, start, stop
):  # pragma: no cover
    """:func:`~._numba_marches.hjb_march_noflux` from a guess for the members
    ``start <= j < stop`` of a stack (``g`` (B, n); ``f`` (Nt, B, n); ``guess``, ``out``
    (Nt + 1, B, n)); ``failures[j]`` counts member j's levels that hit the cap."""
    for j in range(start, stop):
        diag0 = 1.0 / dt + (nu[j] / (dx * dx)) * counts
        U, failed, _ = hjb_march_noflux(  # contiguous copies: strided reads cost 35%
            g[j],
            np.ascontiguousarray(f[:, j]),
            np.ascontiguousarray(guess[:, j]),
            True,
            dx,
            dt,
            nu[j],
            lam[j],
            diag0,
            tolerance,
            max_iterations,
        )
        out[:, j] = U
        failures[j] = failed
