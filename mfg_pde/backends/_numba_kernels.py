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

import numba
import numpy as np


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
