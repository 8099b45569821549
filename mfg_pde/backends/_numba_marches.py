"""A numba kernel for the whole 1D HJB march: Newton per time step, compiled in one call.

The array version (:func:`mfg_pde.alg.numerical.hjb_fdm.make_hjb_march`) runs about 20
NumPy operations per Newton step on arrays of ~100 values, each paying ~1-2 µs of
dispatch; here one call marches all levels. Same scheme, start, tolerance and Kelley
test; the tridiagonal systems by Thomas (no pivoting: the Jacobians are diagonally
dominant M-matrices) instead of LAPACK's ``dgtsv``, so results agree to round-off.
No-flux grids only (the periodic march keeps the array version). Importing this
module imports numba; callers import it lazily.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from mfg_pde.backends._numba_kernels import _thomas_in_place


@numba.njit(cache=True)
def hjb_march_noflux(
    g, f, guess, use_guess, dx, dt, nu, control_cost, diag0, tolerance, max_iterations
):  # pragma: no cover - compiled
    """``(U, failures, most)`` of the backward march on a no-flux grid.

    ``f[k]`` is the running cost at level ``k + 1`` (``M^{k+1}``, ``t_{k+1}``), ``g`` the
    terminal value, ``guess`` a path ``(Nt + 1, n)`` used when ``use_guess``; ``diag0``
    is ``1/dt + ν counts / dx²``. Each level: Newton from ``U^{n+1}`` (or the guess
    shifted by the change just made at ``n + 1``), stopped by Kelley's test with
    ``tol = tolerance * max(1, max |U^{n+1}|)``; ``failures`` counts levels that hit
    ``max_iterations``, ``most`` is the largest Newton count of a level.
    """
    levels, n = f.shape
    U = np.empty((levels + 1, n))
    U[levels] = g
    lower = np.empty(n)
    diag = np.empty(n)
    upper = np.empty(n)
    residual = np.empty(n)
    delta = np.empty(n)
    scratch = np.empty(n)
    u = np.empty(n)
    k_diff = nu / (dx * dx)
    failures = 0
    most = 0
    for k in range(levels - 1, -1, -1):
        size = 1.0
        for i in range(n):
            size = max(size, abs(U[k + 1, i]))
            u[i] = guess[k, i] + (U[k + 1, i] - guess[k + 1, i]) if use_guess else U[k + 1, i]
        tol = tolerance * size
        it = 0
        step = math.inf
        done = False
        while it < max_iterations and not done:
            for i in range(n):
                behind = (u[i] - u[i - 1]) / dx if i > 0 else 0.0
                ahead = (u[i + 1] - u[i]) / dx if i < n - 1 else 0.0
                a = min(ahead, 0.0) / control_cost
                b = max(behind, 0.0) / control_cost
                hamiltonian = (0.5 * control_cost) * (a * a + b * b)
                diffusion = (nu / dx) * (ahead - behind)
                rhs = U[k + 1, i] / dt + f[k, i]
                residual[i] = u[i] / dt - diffusion + hamiltonian - rhs
                lower[i] = -k_diff - b / dx
                upper[i] = a / dx - k_diff
                diag[i] = diag0[i] + (b - a) / dx
            _thomas_in_place(lower, diag, upper, residual, delta, scratch, diag[0], diag[n - 1])
            new_step = 0.0
            for i in range(n):
                value = abs(delta[i])
                if value > new_step or value != value:
                    new_step = value
                u[i] -= delta[i]
            rate = new_step / step
            done = new_step <= tol or (it >= 1 and rate < 0.5 and 2.0 * rate * new_step <= tol)
            step = new_step
            it += 1
        U[k] = u
        if not done:
            failures += 1
        most = max(most, it)
    return U, failures, most


@numba.njit(cache=True)
def particle_march_1d(
    x0, increments, shift, start, spacing, lo, hi, periodic, bin_start, bin_spacing, out
):  # pragma: no cover - compiled
    """The whole 1D particle march in one pass per step: move, fold, bin.

    ``x0`` (N,) are the initial positions, ``increments`` (Nt, N) the Brownian steps
    already scaled by ``σ √dt``, ``shift`` (Nt, G) the drift ``-∇u dt / λ`` on the grid
    ``start + spacing * j`` per step (periodic grids close it with their seam value).
    Step n moves each particle by ``interp(shift[n]) + increments[n]``, folds it into
    ``[lo, hi]`` and bins it linearly into ``out[n]`` (fine grid ``bin_start +
    bin_spacing * i``, unit weights). The arithmetic is that of
    :func:`~mfg_pde.backends._numba_kernels.interp_uniform`,
    :func:`~mfg_pde.backends._numba_kernels.fold_into_interval` and
    :func:`~mfg_pde.backends._numba_kernels.linear_binning`, in the same order, so the
    result equals the step-by-step march to the bit.
    """
    n_particles = x0.shape[0]
    n_grid = shift.shape[1]
    last = float(n_grid - 1)
    length = hi - lo
    size = out.shape[1]
    upper = float(size)
    x = x0.copy()
    for n in range(shift.shape[0]):
        row = out[n]
        for k in range(n_particles):
            v = x[k]
            s = (v - start) / spacing
            if s != s:
                drift = s
            else:
                s = min(max(s, 0.0), last)
                cell = min(int(s), n_grid - 2)
                w = s - cell
                drift = (1.0 - w) * shift[n, cell] + w * shift[n, cell + 1]
            v = v + drift + increments[n, k]
            if lo <= v < hi:
                pass
            elif periodic:
                y = (v - lo) * (1.0 / length)
                v = lo + length * (y - math.floor(y))
            elif v == hi:
                pass
            else:
                y = (v - lo) * (0.5 / length)
                v = hi - abs((2.0 * length) * (y - math.floor(y)) - length)
            x[k] = v
            b = (v - bin_start) / bin_spacing
            if b >= -1.0 and b <= upper:
                c = math.floor(b)
                f = b - c
                i = int(c)
                if 0 <= i < size:
                    row[i] += 1.0 - f
                if i + 1 < size:
                    row[i + 1] += f
            elif b != b:
                row[0] += b
