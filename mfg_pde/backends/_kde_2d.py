"""The 2D Gaussian KDE on a uniform grid: exact along x, binned along y, planned once.

The 2D kernel is a product, ``K(x, y) = K_x(x) K_y(y)``, so

    density(x_i, y_j) = sum_k w_k K_x(x_i - X_k) K_y(y_j - Y_k).

Binning both axes onto a fine grid (spacing ``~h/50`` per axis for the default bound)
and convolving it costs O(fine grid) = O((L / h)^2 2500) whatever N is: 10^7 points and
0.3-2 s at h = 0.02 on the unit square, most of them empty. :class:`BinnedKDE2D` instead

1. evaluates ``K_x`` exactly at the ``window = 2 ceil(8 h_x / dx) + 2`` output x-points
   around each particle (the kernel is cut at ``8 h``, relative size 1.3e-14, as
   everywhere) and bins the particle linearly along y only, onto the fine y grid of the
   1D plan: ``2 window`` shares per particle into an array ``(Gx + 2 pad_x, F_y)``
   (:meth:`~mfg_pde.backends.BaseBackend.separable_binning`);
2. adds the images: along y on the fine grid (:meth:`BinnedKDE.add_images`, the 1D
   flips and shifts), along x on the padded output axis, whose nodes past a wall are
   the mirror (or periodic) images of nodes inside; folding both axes gives the corner
   images as the product of the two axes' images;
3. convolves along y only, row by row (:meth:`BinnedKDE.smooth`: the banded product or
   the FFT), reading the output y-points.

The binning error is the y-axis one: at most ``binning_rtol`` times the kernel's peak
(``K_x <= 1 / (h_x sqrt(2 pi))`` times the 1D bound), the bound of
:meth:`~mfg_pde.backends.BaseBackend.gaussian_kde`; along x the sum is exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfg_pde.backends._kde import (
    IMAGES,
    KDE_CUTOFF,
    MAX_BINNING_POINTS,
    BinnedKDE,
    fine_grid,
    uniform_spacing,
)


def x_window(axis: np.ndarray, h: float) -> tuple[int, int, float]:
    """``(window, pad, spacing)`` of the exact axis.

    A particle at grid coordinate ``s`` adds its kernel to the ``window = 2 half + 2``
    nodes ``floor(s) - half ... floor(s) + half + 1`` (``half = ceil(8 h / spacing)``):
    every node within ``8 h`` of it. The padded axis has ``pad = half + 1`` extra nodes
    on both sides, so the window of a particle inside the grid is never clipped.
    """
    spacing = uniform_spacing(axis, h)
    half = math.ceil(KDE_CUTOFF * h / spacing)
    return 2 * half + 2, half + 1, spacing


def work_points(axes: list[np.ndarray], bandwidth: tuple[float, float], rtol: float) -> int:
    """Size of the plan's deposit array ``(Gx + 2 pad_x) x F_y`` (the cost model's grid)."""
    _, pad, _ = x_window(axes[0], bandwidth[0])
    return (axes[0].shape[0] + 2 * pad) * fine_grid(axes[1], bandwidth[1], rtol)[0]


class BinnedKDE2D:
    """Gaussian KDE on a fixed uniform 2D grid: exact along x, binned along y.

    ``density(x, y) = sum_k w_k exp(-(x - X_k)^2 / (2 h_x^2) - (y - Y_k)^2 / (2 h_y^2))
    / (2 pi h_x h_y)`` on the grid ``(Gx, Gy)``; see the module docstring for the method.
    Costs ``O(N window)`` for the deposit plus ``O(Gx F_y q)`` for the smoothing (``q ~
    16 h_y / dy`` with the banded product), with ``window ~ 16 h_x / dx``.

    Parameters
    ----------
    backend : BaseBackend
    axes : pair of 1D host arrays
        The output grid, uniform per axis.
    bandwidth : pair of float
        ``(h_x, h_y)``.
    binning_rtol : float
        Bound of the y-binning error relative to the kernel's peak.
    images : None, one of {"reflect", "periodic"}, or a pair (one per axis)
        As in :class:`~mfg_pde.backends._kde.BinnedKDE`, per axis; the particles must
        then lie in the domain. Walls are the first and last node (``"reflect"``), the
        period is ``G`` spacings (``"periodic"``). A particle near a corner of two
        reflecting walls gets three images (the two mirrors and the corner's), as the
        9N-point sum over the product of both axes' images.
    smoothing : {"auto", "fft", "banded"}
        How the y-axis convolution is done (see :class:`BinnedKDE`).
    """

    def __init__(
        self,
        backend: Any,
        axes: list[np.ndarray],
        bandwidth: tuple[float, float],
        binning_rtol: float,
        images: str | tuple[str | None, str | None] | None = None,
        smoothing: str = "auto",
    ) -> None:
        if len(axes) != 2:
            raise ValueError(f"BinnedKDE2D needs 2 axes, got {len(axes)}")
        per_axis = tuple(images) if isinstance(images, (tuple, list)) else (images, images)
        if len(per_axis) != 2 or any(kind not in IMAGES for kind in per_axis):
            raise ValueError(
                f"images must be one of {IMAGES} or a pair of them (one per axis), got {images!r}"
            )
        self.backend = backend
        self.dim = 2
        self.images = per_axis
        self.out_shape = tuple(int(a.shape[0]) for a in axes)
        self.window, self.pad_x, self.dx = x_window(axes[0], bandwidth[0])
        self.hx = float(bandwidth[0])
        self.x_size = self.out_shape[0] + 2 * self.pad_x
        self.x_start = float(axes[0][0]) - self.pad_x * self.dx
        # The y axis is the 1D plan: fine grid, y images, smoothing.
        self.y_plan = BinnedKDE(
            backend, [axes[1]], (bandwidth[1],), binning_rtol, per_axis[1], smoothing
        )
        self.smoothing = self.y_plan.smoothing
        if self.work_points > MAX_BINNING_POINTS:
            raise ValueError(
                f"the deposit grid would have {self.work_points} points; raise "
                "binning_rtol or use method='exact'"
            )
        self._norm_x = 1.0 / (self.hx * math.sqrt(2.0 * math.pi))

    @property
    def work_points(self) -> int:
        """Points of the deposit array ``(Gx + 2 pad_x, F_y)``."""
        return self.x_size * self.y_plan.shape[0]

    def __call__(self, particles: Any, weights: Any | None = None) -> Any:
        """Density ``(Gx, Gy)`` of particles ``(N, 2)`` or a pair of arrays ``(N,)``.

        Weights default to ``1/N`` each (then no weight array is formed).
        """
        if isinstance(particles, (tuple, list)):
            px, py = particles
        else:
            px, py = particles[:, 0], particles[:, 1]
        y = self.y_plan
        deposit = self.backend.separable_binning(
            px,
            py,
            x_grid=(self.x_start, self.dx, self.x_size),
            window=self.window,
            bandwidth=self.hx,
            y_grid=(y.starts[0], y.deltas[0], y.shape[0]),
            weights=weights,
        )
        density = y.smooth(y.add_images(self.fold_x(deposit)))
        scale = self._norm_x
        if weights is None:  # the smoothing is linear: scale G values, not N weights
            scale = scale / max(int(px.shape[0]), 1)
        return density * scale

    def fold_x(self, deposit: Any) -> Any:
        """Add the x images and keep the output rows: ``(Gx + 2 pad, F) -> (Gx, F)``.

        Padded row ``pad + i`` holds the particles' kernel at ``x_i``, also for nodes
        ``i < 0`` and ``i >= Gx`` past the ends. Mirror image across the wall ``x_0`` at
        ``x_i``: ``K(x_i - (2 x_0 - X)) = K(x_{-i} - X)``, row ``pad - i``; across
        ``x_E`` (``E = Gx - 1``): row ``pad + 2E - i``. Periodic images at ``x_i``:
        ``K(x_i - (X -+ L)) = K(x_{i +- Gx} - X)``, rows ``pad + i +- Gx``.
        """
        xp, b = self.backend.xp, self.backend
        g, pad = self.out_shape[0], self.pad_x
        inside = deposit[pad : pad + g]
        kind = self.images[0]
        if kind is None:
            return inside
        rest = tuple(deposit.shape[1:])
        reach = min(pad, g - 1) if kind == "reflect" else min(pad, g)

        def zeros(n: int) -> Any:
            return b.zeros((n, *rest))

        if kind == "reflect":
            end = pad + g - 1
            left = xp.flip(deposit[pad - reach : pad + 1], axis=0)  # rows pad ... pad - reach
            right = xp.flip(deposit[end : end + reach + 1], axis=0)  # rows end + reach ... end
            return (
                inside
                + xp.concat([left, zeros(g - reach - 1)], axis=0)
                + xp.concat([zeros(g - reach - 1), right], axis=0)
            )
        above = deposit[pad + g : pad + g + reach]  # x_{i + Gx}, i = 0 ... reach - 1
        below = deposit[pad - reach : pad]  # x_{i - Gx}, i = Gx - reach ... Gx - 1
        return (
            inside
            + xp.concat([above, zeros(g - reach)], axis=0)
            + xp.concat([zeros(g - reach), below], axis=0)
        )
