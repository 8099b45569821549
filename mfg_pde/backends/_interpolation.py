"""Finite differences and interpolation on the Array API: part of :class:`BaseBackend`.

Written once on ``self.xp``; numpy overrides them with its own (``np.interp``,
``np.gradient``) and numba kernels.
"""

from __future__ import annotations

from typing import Any


class Interpolation:
    """:class:`~mfg_pde.backends.BaseBackend`'s differences and interpolation."""

    xp: Any

    def gradient(self, f: Any, dx: float, axis: int = -1) -> Any:
        """Central differences inside, one-sided first differences at the two ends.

        Same convention as ``numpy.gradient(f, dx, axis=axis, edge_order=1)``.
        """
        xp = self.xp
        f = xp.moveaxis(f, axis, -1)
        inner = (f[..., 2:] - f[..., :-2]) / (2.0 * dx)
        first = (f[..., 1:2] - f[..., 0:1]) / dx
        last = (f[..., -1:] - f[..., -2:-1]) / dx
        return xp.moveaxis(xp.concat([first, inner, last], axis=-1), -1, axis)

    def interp(self, x: Any, grid: Any, values: Any) -> Any:
        """Piecewise-linear interpolation of ``values`` given at increasing ``grid``.

        Like ``numpy.interp``: points outside the grid take the end values.
        """
        xp = self.xp
        n = grid.shape[0]
        shape = x.shape
        x = xp.reshape(x, (-1,))  # the Array API's take needs 1D indices
        idx = xp.searchsorted(grid, x, side="right")
        idx = xp.clip(idx, 1, n - 1)
        x0 = xp.take(grid, idx - 1)
        x1 = xp.take(grid, idx)
        w = xp.clip((x - x0) / (x1 - x0), 0.0, 1.0)
        return xp.reshape((1.0 - w) * xp.take(values, idx - 1) + w * xp.take(values, idx), shape)

    def interp_uniform(self, x: Any, start: float, spacing: float, values: Any) -> Any:
        """As :meth:`interp` for the grid ``start + spacing * arange(len(values))``.

        Finds cells by arithmetic instead of a search: the particle solvers call this
        for every particle at every step.
        """
        xp = self.xp
        n = values.shape[0]
        s = xp.clip((x - start) / spacing, 0.0, float(n - 1))
        cell = xp.clip(xp.astype(xp.floor(s), xp.int64), 0, n - 2)
        w = s - xp.astype(cell, s.dtype)
        return (1.0 - w) * xp.take(values, cell) + w * xp.take(values, cell + 1)

    def interp_uniform_2d(
        self,
        x: Any,
        y: Any,
        start: tuple[float, float],
        spacing: tuple[float, float],
        values: Any,
    ) -> Any:
        """Bilinear interpolation on the grid ``start[a] + spacing[a] * arange(n_a)``.

        ``values`` is ``(nx, ny)`` or a stack ``(k, nx, ny)`` of fields read at the same
        points (the two components of a drift); returns ``(N,)`` or ``(k, N)`` for points
        ``x``, ``y`` of shape ``(N,)``. Per axis as :meth:`interp_uniform`: coordinates
        are clipped to the grid, so points outside take the values on its edge.
        """
        xp = self.xp
        stacked = values.ndim == 3
        fields = values if stacked else values[None]
        k, nx, ny = (int(n) for n in fields.shape)
        cells, fracs = [], []
        for p, lo, d, n in ((x, start[0], spacing[0], nx), (y, start[1], spacing[1], ny)):
            s = xp.clip((p - lo) / d, 0.0, float(n - 1))
            cell = xp.clip(xp.astype(xp.floor(s), xp.int64), 0, n - 2)
            cells.append(cell)
            fracs.append(s - xp.astype(cell, s.dtype))
        (cx, cy), (wx, wy) = cells, fracs
        flat = xp.reshape(fields, (k, nx * ny))
        corner = cx * ny + cy

        def at(offset: int) -> Any:
            return xp.take(flat, corner + offset, axis=1)

        low = (1.0 - wy) * at(0) + wy * at(1)  # along y at x_i ...
        high = (1.0 - wy) * at(ny) + wy * at(ny + 1)  # ... and at x_{i+1}
        out = (1.0 - wx) * low + wx * high
        return out if stacked else out[0]

    def fold_into_interval(self, x: Any, lo: float, hi: float, periodic: bool = False) -> Any:
        """Map points into ``[lo, hi]``: reflect at both ends (any number of times) or,
        with ``periodic``, wrap onto ``[lo, hi)`` (``hi`` may come out for points a few
        ulps below ``lo``; it is the image of ``lo``).

        ``y - floor(y)`` rather than ``remainder``: NumPy's float remainder costs ~15 ns
        per value, ``floor`` ~0.5 ns.
        """
        xp = self.xp
        length = hi - lo
        if periodic:
            y = (x - lo) * (1.0 / length)
            return lo + length * (y - xp.floor(y))
        # Position on the circle of length 2L that unfolds the reflections, then fold.
        y = (x - lo) * (0.5 / length)
        return hi - xp.abs((2.0 * length) * (y - xp.floor(y)) - length)
