"""Numba kernels for the per-particle work (binning, the 2D KDE deposit, interpolation)
and for tridiagonal systems solved with many right-hand sides.

Used by the numba backend, and by the numpy backend when numba is installed (the numpy
backend falls back to ``np.bincount`` and vectorised NumPy otherwise). Importing this
module imports numba; callers import it lazily.

The kernels are serial: numba's threading layer next to torch's pool oversubscribes
small machines (DESIGN.md §5), and one pass over the particles is memory-bound anyway.
Each kernel reads every particle once and writes nothing but its output, where the
equivalent NumPy expression makes 8-10 passes with temporaries.
"""

from __future__ import annotations

import math
from pathlib import Path

import numba
import numpy as np

from mfg_pde._numba_cache import drop_stale_caches

#: The kernel modules that call one another's compiled functions (all import this one
#: first): numba checks a cached kernel against its own file only, so their caches are
#: dropped together when any of them changed (see :mod:`mfg_pde._numba_cache`).
KERNEL_MODULES = ("_numba_fdm1d", "_numba_kernels", "_numba_marches", "_numba_rows")
drop_stale_caches(Path(__file__).parent, KERNEL_MODULES)


@numba.njit(cache=True)
def linear_binning(points, start, spacing, weights, out):  # pragma: no cover - compiled
    """Add ``weights`` (or 1 when ``weights`` has length 0) linearly into ``out``.

    A point at grid coordinate ``s = (x - start) / spacing`` gives ``w (1 - f)`` to
    bin ``floor(s)`` and ``w f`` to ``floor(s) + 1`` (``f = s - floor(s)``); shares that
    fall outside ``out`` are dropped. A NaN point makes ``out[0]`` NaN (it is never
    silently lost).
    """
    size = out.shape[0]
    weighted = weights.shape[0] > 0
    upper = float(size)
    for k in range(points.shape[0]):
        s = (points[k] - start) / spacing
        w = weights[k] if weighted else 1.0
        if s >= -1.0 and s <= upper:
            c = math.floor(s)
            f = s - c
            i = int(c)
            if 0 <= i < size:
                out[i] += w - w * f
            if i + 1 < size:
                out[i + 1] += w * f
        elif s != s:
            out[0] += s
        # farther than one bin outside the grid: nothing reaches it


@numba.njit(cache=True)
def interp_uniform(x, start, spacing, values, out):  # pragma: no cover - compiled
    """``out[k]``: piecewise-linear interpolation of ``values`` on ``start + spacing * j``.

    Points outside the grid take the end values; the same formula as
    :meth:`mfg_pde.backends.BaseBackend.interp_uniform`.
    """
    n = values.shape[0]
    last = float(n - 1)
    for k in range(x.shape[0]):
        s = (x[k] - start) / spacing
        if s != s:
            out[k] = s
            continue
        s = min(max(s, 0.0), last)
        cell = min(int(s), n - 2)
        w = s - cell
        out[k] = (1.0 - w) * values[cell] + w * values[cell + 1]


@numba.njit(cache=True)
def fold_into_interval(x, lo, hi, periodic, out):  # pragma: no cover - compiled
    """Reflect into ``[lo, hi]`` or wrap onto ``[lo, hi)``: the formulas of
    :meth:`mfg_pde.backends.BaseBackend.fold_into_interval`, skipped for points inside."""
    length = hi - lo
    for k in range(x.shape[0]):
        v = x[k]
        if lo <= v < hi:
            out[k] = v
        elif periodic:
            y = (v - lo) * (1.0 / length)
            out[k] = lo + length * (y - math.floor(y))
        elif v == hi:
            out[k] = v
        else:
            y = (v - lo) * (0.5 / length)
            out[k] = hi - abs((2.0 * length) * (y - math.floor(y)) - length)


@numba.njit(cache=True)
def thomas_factor(lower, diag, upper, c_prime, inverse):  # pragma: no cover - compiled
    """The Thomas elimination of one long system: ``c'`` and the inverse pivots.

    Many independent systems are passed as one, concatenated with ``lower = 0`` at the
    start and ``upper = 0`` at the end of each (no coupling across). No pivoting: for
    the diagonally dominant M-matrices the schemes produce, Thomas is stable.
    """
    n = diag.shape[0]
    inverse[0] = 1.0 / diag[0]
    c_prime[0] = upper[0] * inverse[0]
    for i in range(1, n):
        inverse[i] = 1.0 / (diag[i] - lower[i] * c_prime[i - 1])
        c_prime[i] = upper[i] * inverse[i]


@numba.njit(cache=True)
def thomas_solve(lower, c_prime, inverse, rhs, out):  # pragma: no cover - compiled
    """Forward and back substitution with the factors of :func:`thomas_factor`."""
    n = rhs.shape[0]
    out[0] = rhs[0] * inverse[0]
    for i in range(1, n):
        out[i] = (rhs[i] - lower[i] * out[i - 1]) * inverse[i]
    for i in range(n - 2, -1, -1):
        out[i] -= c_prime[i] * out[i + 1]


@numba.njit(cache=True)
def separable_binning(
    px, py, x_start, dx, window, scale, y_start, dy, weights, out
):  # pragma: no cover - compiled
    """The 2D KDE's deposit: the formulas of
    :meth:`mfg_pde.backends.BaseBackend.separable_binning` (``scale = dx / h``), one
    pass over the particles; a NaN coordinate makes ``out[0, 0]`` NaN."""
    x_size, y_size = out.shape
    half = (window - 2) // 2
    weighted = weights.shape[0] > 0
    last = float(x_size - window)
    # steps[j] = c_j / c_{j-1} = exp(-(2 j - 1) a^2 / 2) (see below)
    steps = np.exp(-0.5 * (2.0 * np.arange(window) - 1.0) * scale * scale)
    upper = float(y_size)
    for k in range(px.shape[0]):
        s = (px[k] - x_start) / dx
        t = (py[k] - y_start) / dy
        if s != s or t != t:
            out[0, 0] += s + t
            continue
        t = min(max(t, -1.0), upper)
        c = math.floor(t)
        f = t - c
        iy = int(c)
        first = min(max(math.floor(s) - half, 0.0), last)
        i0 = int(first)
        w = weights[k] if weighted else 1.0
        # exp(-(d0 + j a)^2 / 2) = exp(-d0^2 / 2) g^j c_j with g = exp(-d0 a) and
        # c_j = exp(-(j a)^2 / 2): two exponentials per particle instead of `window`.
        # |d0| <~ 8 + a and j a <~ 16, so g^j < e^150 and c_j > e^-150 stay in range;
        # the products lose ~j ulps (1e-14 relative), not a visible difference.
        d0 = (first - s) * scale
        kv = math.exp(-0.5 * (d0 * d0)) * w
        g = math.exp(-d0 * scale)
        for j in range(window):
            if j > 0:
                kv *= g * steps[j]
            if 0 <= iy < y_size:
                out[i0 + j, iy] += kv - kv * f
            if iy + 1 < y_size:
                out[i0 + j, iy + 1] += kv * f


@numba.njit(cache=True)
def interp_uniform_2d(x, y, x_start, dx, y_start, dy, values, out):  # pragma: no cover - compiled
    """Bilinear interpolation of the fields ``values`` (k, nx, ny) at the points: the
    formulas of :meth:`mfg_pde.backends.BaseBackend.interp_uniform_2d`."""
    k, nx, ny = values.shape
    for p in range(x.shape[0]):
        s = (x[p] - x_start) / dx
        t = (y[p] - y_start) / dy
        if s != s or t != t:
            for c in range(k):
                out[c, p] = s + t
            continue
        s = min(max(s, 0.0), nx - 1.0)
        t = min(max(t, 0.0), ny - 1.0)
        i = min(int(s), nx - 2)
        j = min(int(t), ny - 2)
        wx = s - i
        wy = t - j
        for c in range(k):
            low = (1.0 - wy) * values[c, i, j] + wy * values[c, i, j + 1]
            high = (1.0 - wy) * values[c, i + 1, j] + wy * values[c, i + 1, j + 1]
            out[c, p] = (1.0 - wx) * low + wx * high


@numba.njit(cache=True)
def bucket_order(key, descending):  # pragma: no cover - compiled
    """A permutation that sorts ``key`` into as many equal-width buckets as it has
    entries (ascending, or descending), by counting sort: O(n), 5x faster than
    ``np.argsort`` at 128^2, and as good an ordering for the Gauss-Seidel sweep (equal
    BiCGSTAB iterations measured on the 2D hello problem). Within a bucket the order is
    the grid's. Non-finite keys go into the first bucket.
    """
    size = key.shape[0]
    lo = math.inf
    hi = -math.inf
    for k in range(size):
        if math.isfinite(key[k]):
            lo = min(lo, key[k])
            hi = max(hi, key[k])
    scale = (size - 1) / (hi - lo) if hi > lo else 0.0
    bucket = np.zeros(size, dtype=np.int64)
    starts = np.zeros(size + 1, dtype=np.int64)
    for k in range(size):
        if math.isfinite(key[k]):
            b = min(max(int((key[k] - lo) * scale), 0), size - 1)
            bucket[k] = size - 1 - b if descending else b
        starts[bucket[k] + 1] += 1
    for b in range(size):
        starts[b + 1] += starts[b]
    order = np.empty(size, dtype=np.int64)
    for k in range(size):
        order[starts[bucket[k]]] = k
        starts[bucket[k]] += 1
    return order


@numba.njit(cache=True)
def ordered_five_point(diag0, lines, periodic_x, periodic_y, transpose, order):  # pragma: no cover
    """The 5-point matrix of :mod:`mfg_pde.alg.numerical._grid2d` (or its transpose),
    with its unknowns renumbered in ``order`` (a permutation of the flat indices
    ``k = i ny + j``).

    ``lines`` is ``(lower_x, diag_x, upper_x, lower_y, diag_y, upper_y)``, each (nx, ny),
    and the matrix is ``diag0 I`` plus the lines. Returns ``(center, coefficients,
    neighbours)`` indexed by position q in the order: ``coefficients[q, d]`` multiplies
    the unknown at position ``neighbours[q, d]`` (d = west, east, south, north). A
    missing neighbour at a no-flux wall is q itself with coefficient 0, so the stray end
    values of the lines are never read. Working in this numbering makes the
    Gauss-Seidel sweep below a pass in memory order (measured 1.7x faster than gathering
    through the permutation at 128^2). ``transpose``: the entries of ``A^T`` (row k's
    coupling to its west neighbour is that neighbour's coupling to k, eastwards, ...),
    without forming the transposed lines.
    """
    lx, dx, ux, ly, dy, uy = lines
    nx, ny = dx.shape
    size = nx * ny
    coupling = (lx.reshape(size), ux.reshape(size), ly.reshape(size), uy.reshape(size))
    across = (1, 0, 3, 2)  # the direction that points back: west <-> east, south <-> north
    diagonal = (dx.reshape(size), dy.reshape(size))
    rank = np.empty(size, dtype=np.int64)
    for q in range(size):
        rank[order[q]] = q
    center = np.empty(size)
    coefficients = np.zeros((size, 4))
    neighbours = np.empty((size, 4), dtype=np.int64)
    other = np.empty(4, dtype=np.int64)
    # In grid order: the reads stream, the scattered writes do not stall.
    for i in range(nx):
        for j in range(ny):
            k = i * ny + j
            q = rank[k]
            center[q] = diag0 + diagonal[0][k] + diagonal[1][k]
            other[0] = k - ny if i > 0 else (k + (nx - 1) * ny if periodic_x else -1)
            other[1] = k + ny if i < nx - 1 else (j if periodic_x else -1)
            other[2] = k - 1 if j > 0 else (k + ny - 1 if periodic_y else -1)
            other[3] = k + 1 if j < ny - 1 else (k - ny + 1 if periodic_y else -1)
            for d in range(4):
                if other[d] < 0:
                    neighbours[q, d] = q
                    coefficients[q, d] = 0.0
                else:
                    neighbours[q, d] = rank[other[d]]
                    if transpose:
                        coefficients[q, d] = coupling[across[d]][other[d]]
                    else:
                        coefficients[q, d] = coupling[d][k]
    return center, coefficients, neighbours


@numba.njit(cache=True, inline="always")
def _max_abs(current, value):  # pragma: no cover - compiled
    """``max(current, |value|)`` that keeps a NaN (Python's ``max`` would drop it and a
    NaN residual would pass for converged)."""
    size = abs(value)
    return size if (size > current or size != size) else current


@numba.njit(cache=True)
def _apply_dots(center, coefficients, neighbours, v, out, w):  # pragma: no cover - compiled
    """``out = A v`` (the matrix of :func:`ordered_five_point`); returns
    ``(w . out, out . out)``."""
    dot = 0.0
    square = 0.0
    for q in range(center.shape[0]):
        s = center[q] * v[q]
        for d in range(4):
            s += coefficients[q, d] * v[neighbours[q, d]]
        out[q] = s
        dot += w[q] * s
        square += s * s
    return dot, square


@numba.njit(cache=True)
def _combine_and_sweep(
    inverse_center, earlier, neighbours, a, b, scale_b, c, scale_c, combined, z
):  # pragma: no cover - compiled
    """``combined = a + scale_b b + scale_c c``, then one Gauss-Seidel sweep
    ``(D + L) z = combined`` (``L``: the couplings to unknowns earlier in the
    numbering: ``earlier``, with ``1 / D`` as ``inverse_center``), in one pass over
    memory. ``combined`` may be ``b`` (updated in place); ``z`` must hold finite values
    (they are multiplied by zero).
    """
    for q in range(inverse_center.shape[0]):
        value = a[q] + scale_b * b[q] + scale_c * c[q]
        combined[q] = value
        for d in range(4):
            # Branch-free: the couplings to later unknowns are zeroed in `earlier`.
            value -= earlier[q, d] * z[neighbours[q, d]]
        z[q] = value * inverse_center[q]


@numba.njit(cache=True)
def ordered_bicgstab(
    center, coefficients, neighbours, order, rhs, x0, atol, max_iterations
):  # pragma: no cover - compiled
    """Right-preconditioned BiCGSTAB on the system of :func:`ordered_five_point`,
    preconditioned by one Gauss-Seidel sweep in its numbering: the iteration of
    :func:`mfg_pde.alg.numerical._krylov.bicgstab` (same start, stopping test on the
    max norm of the recursively updated residual, and breakdown rule) in one compiled
    loop, its vector updates fused into the sweeps and products (6 passes over memory
    per iteration instead of 11). ``rhs``, ``x0`` and the returned ``x`` are in the
    grid's flat numbering. Returns ``(x, iterations, residual max norm)``."""
    size = rhs.shape[0]
    x = np.empty(size)
    r = np.empty(size)
    for q in range(size):
        x[q] = x0[order[q]]
    _apply_dots(center, coefficients, neighbours, x, r, r)
    r_norm = 0.0
    rho_new = 0.0
    for q in range(size):
        r[q] = rhs[order[q]] - r[q]
        r_norm = _max_abs(r_norm, r[q])
        rho_new += r[q] * r[q]
    r_hat = r.copy()
    p = np.zeros(size)
    v = np.zeros(size)
    p_hat = np.zeros(size)
    s_vec = np.empty(size)
    s_hat = np.zeros(size)
    inverse_center = 1.0 / center
    earlier = np.empty_like(coefficients)
    for q in range(size):
        for d in range(4):
            earlier[q, d] = coefficients[q, d] if neighbours[q, d] < q else 0.0
    t = np.empty(size)
    rho = alpha = omega = 1.0
    iterations = 0
    while iterations < max_iterations and r_norm > atol:
        beta = (rho_new / rho) * (alpha / omega)
        # p = r + beta (p - omega v), p_hat = P^-1 p
        _combine_and_sweep(
            inverse_center, earlier, neighbours, r, p, beta, v, -beta * omega, p, p_hat
        )
        alpha = rho_new / _apply_dots(center, coefficients, neighbours, p_hat, v, r_hat)[0]
        # s = r - alpha v, s_hat = P^-1 s
        _combine_and_sweep(inverse_center, earlier, neighbours, r, v, -alpha, v, 0.0, s_vec, s_hat)
        ts, tt = _apply_dots(center, coefficients, neighbours, s_hat, t, s_vec)
        omega = ts / tt if tt > 0.0 else 0.0
        new_norm = 0.0
        for q in range(size):
            new_norm = _max_abs(new_norm, s_vec[q] - omega * t[q])
        iterations += 1
        converged = new_norm <= atol
        broke = not (math.isfinite(new_norm) and omega != 0.0 and rho_new != 0.0)
        if broke and not converged:
            break  # keep the last good iterate (as the array-namespace version)
        rho = rho_new
        rho_new = 0.0
        for q in range(size):
            x[q] += alpha * p_hat[q] + omega * s_hat[q]
            r[q] = s_vec[q] - omega * t[q]
            rho_new += r_hat[q] * r[q]
        r_norm = new_norm
    out = np.empty(size)
    for q in range(size):
        out[order[q]] = x[q]
    return out, iterations, r_norm


@numba.njit(cache=True, inline="always")
def _axis_terms(here, behind_value, ahead_value, h, nu, control_cost, count):  # pragma: no cover
    """One axis of :func:`upwind_terms_2d` at one node: the operations of
    ``axis_upwind``, ``hjb_jacobian_from_slopes`` and ``hjb_terms``, in their order."""
    behind = (here - behind_value) / h
    ahead = (ahead_value - here) / h
    a = min(ahead, 0.0) / control_cost
    b = max(behind, 0.0) / control_cost
    k = nu / (h * h)
    lower = -k - b / h
    diag = (nu / (h * h)) * count + (b - a) / h
    upper = a / h - k
    hamiltonian = (0.5 * control_cost) * (a * a + b * b)
    diffusion = (nu / h) * (ahead - behind)
    return lower, diag, upper, hamiltonian, diffusion


@numba.njit(cache=True, inline="always")
def _upwind_node(
    here, above, below, left, right, dx, dy, nu, control_cost, cx, cy
):  # pragma: no cover - compiled
    """One node of :func:`upwind_terms_2d` from its value and its four neighbours:
    ``(hamiltonian, diffusion, lx, gx, ux, ly, gy, uy)``."""
    lx, gx, ux, hx, fx = _axis_terms(here, above, below, dx, nu, control_cost, cx)
    ly, gy, uy, hy, fy = _axis_terms(here, left, right, dy, nu, control_cost, cy)
    return hx + hy, fx + fy, lx, gx, ux, ly, gy, uy


@numba.njit(cache=True)
def upwind_terms_2d(
    u, dx, dy, nu, control_cost, count_x, count_y, periodic_x, periodic_y
):  # pragma: no cover - compiled
    """:func:`mfg_pde.alg.numerical._grid2d.hjb_terms` for one level ``u`` (nx, ny), in
    one pass: the same formulas, in the same order of operations (the results are
    bitwise equal, which ``tests/test_grid2d_solve.py`` checks), without the ~40
    temporaries of the array version. Returns ``(hamiltonian, diffusion, lx, dx, ux,
    ly, dy, uy)``.
    """
    nx, ny = u.shape
    hamiltonian = np.empty((nx, ny))
    diffusion = np.empty((nx, ny))
    lx = np.empty((nx, ny))
    gx = np.empty((nx, ny))
    ux = np.empty((nx, ny))
    ly = np.empty((nx, ny))
    gy = np.empty((nx, ny))
    uy = np.empty((nx, ny))
    for i in range(nx):
        im = i - 1 if i > 0 else (nx - 1 if periodic_x else 0)
        ip = i + 1 if i < nx - 1 else (0 if periodic_x else nx - 1)
        H, D, LX, GX, UX = hamiltonian[i], diffusion[i], lx[i], gx[i], ux[i]
        LY, GY, UY = ly[i], gy[i], uy[i]
        row, above, below = u[i], u[im], u[ip]
        # The interior of the row without a branch, so the compiler vectorises it (its
        # ~20 divisions per node: 285 -> 93 µs at 128^2, the same values); then the ends.
        for j in range(1, ny - 1):
            H[j], D[j], LX[j], GX[j], UX[j], LY[j], GY[j], UY[j] = _upwind_node(
                row[j], above[j], below[j], row[j - 1], row[j + 1],
                dx, dy, nu, control_cost, count_x[i], count_y[j],
            )  # fmt: skip
        for j in range(0, ny, max(ny - 1, 1)):
            jm = j - 1 if j > 0 else (ny - 1 if periodic_y else 0)
            jp = j + 1 if j < ny - 1 else (0 if periodic_y else ny - 1)
            H[j], D[j], LX[j], GX[j], UX[j], LY[j], GY[j], UY[j] = _upwind_node(
                row[j], above[j], below[j], row[jm], row[jp],
                dx, dy, nu, control_cost, count_x[i], count_y[j],
            )  # fmt: skip
    return hamiltonian, diffusion, lx, gx, ux, ly, gy, uy


@numba.njit(cache=True, inline="always")
def _thomas_in_place(lower, diag, upper, rhs, out, scratch, first, last):  # pragma: no cover
    """One tridiagonal system with its first and last diagonal entries replaced; the
    ``lower[0]`` and ``upper[-1]`` entries are ignored."""
    n = diag.shape[0]
    out[0] = rhs[0] / first
    scratch[0] = upper[0] / first
    for i in range(1, n):
        d = (last if i == n - 1 else diag[i]) - lower[i] * scratch[i - 1]
        scratch[i] = upper[i] / d
        out[i] = (rhs[i] - lower[i] * out[i - 1]) / d
    for i in range(n - 2, -1, -1):
        out[i] -= scratch[i] * out[i + 1]


@numba.njit(cache=True)
def tridiagonal_march(lower, diag, upper, rhs, coupling, reverse, periodic):  # pragma: no cover
    """``x`` (levels, n) with ``T_k x_k = rhs_k + coupling x_{k-1}`` level by level
    (``x_{k+1}`` and from the last level down with ``reverse``), ``T_k`` the (cyclic,
    with ``periodic``) tridiagonal matrix of row ``k`` of ``lower, diag, upper``.

    The block bidiagonal systems of a linearised implicit march: Thomas without
    pivoting (the schemes' matrices are diagonally dominant M-matrices), the cyclic
    corners by Sherman-Morrison (as :meth:`BaseBackend.solve_cyclic_tridiagonal`).
    """
    levels, n = diag.shape
    out = np.empty((levels, n))
    r = np.empty(n)
    y = np.empty(n)
    z = np.empty(n)
    u = np.zeros(n)
    scratch = np.empty(n)
    for step in range(levels):
        k = levels - 1 - step if reverse else step
        prev = k + 1 if reverse else k - 1
        for i in range(n):
            r[i] = rhs[k, i] + (coupling * out[prev, i] if step > 0 else 0.0)
        if not periodic:
            first, last = diag[k, 0], diag[k, n - 1]
            _thomas_in_place(lower[k], diag[k], upper[k], r, out[k], scratch, first, last)
            continue
        # A = B + u v^T, u = (gamma, 0, ..., 0, c), v = (1, 0, ..., 0, a / gamma).
        a, c, gamma = lower[k, 0], upper[k, n - 1], -diag[k, 0]
        first, last = diag[k, 0] - gamma, diag[k, n - 1] - c * a / gamma
        _thomas_in_place(lower[k], diag[k], upper[k], r, y, scratch, first, last)
        u[0], u[n - 1] = gamma, c
        _thomas_in_place(lower[k], diag[k], upper[k], u, z, scratch, first, last)
        factor = (y[0] + (a / gamma) * y[n - 1]) / (1.0 + z[0] + (a / gamma) * z[n - 1])
        for i in range(n):
            out[k, i] = y[i] - factor * z[i]
    return out
