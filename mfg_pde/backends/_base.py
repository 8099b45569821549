"""The abstract backend: every operation that differs between array libraries.

Solver code computes through ``backend.xp`` (an Array-API namespace) and the
methods of :class:`BaseBackend`; it never calls numpy, scipy, jax or torch
itself. Methods that can be written once on the Array API live here; each
backend overrides only what its library does natively and better.
"""

from __future__ import annotations

import abc
import copy
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mfg_pde.backends._kde import (  # noqa: F401  (re-exported for tests and users)
    BINNING_RTOL,
    IMAGES,
    KDE_CUTOFF,
    MAX_BINNING_POINTS,
    SMOOTHINGS,
    BinnedKDE,
)
from mfg_pde.backends._kde_2d import BinnedKDE2D

#: Capabilities every backend answers in :meth:`BaseBackend.has_capability`.
CAPABILITIES = ("parallel_kde", "jit_compilation", "kernel_fusion", "low_latency", "gpu")


class BaseBackend(abc.ABC):
    """Array operations for the solvers, implemented natively by each library.

    Attributes
    ----------
    name : str
        Registry name ("numpy", "numba", "jax", "torch").
    xp : module
        Array-API namespace; ``array_module`` is the same object.
    device : str
        Where arrays live ("cpu", "cuda:0", "mps", "gpu:0").
    dtype :
        The namespace's float64 (float32 only on devices without float64, with a warning).
    """

    name: str = "abstract"
    #: False on the view returned by :meth:`eager`.
    compiled: bool = True
    #: Whether compiled code wants a few fixed array shapes: every new shape compiles
    #: again (jax), so callers pad data of varying length to bucketed lengths.
    fixed_shapes: bool = False
    #: Whether reading a value back to the host stalls the queue of work behind it
    #: (torch, on any device: a convergence test per time step costs a sync each), so
    #: that loops run a fixed count instead of testing convergence as they go.
    syncs_cost: bool = False
    #: Whether the arrays are NumPy arrays in host memory, which host-side SciPy code
    #: (the Newton iteration) uses without a copy.
    is_host_numpy: bool = False

    def __init__(self) -> None:
        self.xp = self._namespace()

    # -- identity -----------------------------------------------------------------
    @abc.abstractmethod
    def _namespace(self) -> Any:
        """Return the Array-API namespace of this backend."""

    @property
    def array_module(self) -> Any:
        """Alias of :attr:`xp`."""
        return self.xp

    @property
    def dtype(self) -> Any:
        return self.xp.float64

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def eps(self) -> float:
        """Machine epsilon of :attr:`dtype`."""
        return float(self.xp.finfo(self.dtype).eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"

    # -- creation and transfer --------------------------------------------------------
    def zeros(self, shape: int | Sequence[int]) -> Any:
        return self.xp.zeros(shape, dtype=self.dtype)

    def ones(self, shape: int | Sequence[int]) -> Any:
        return self.xp.ones(shape, dtype=self.dtype)

    def array(self, obj: Any) -> Any:
        """Make a float array of :attr:`dtype` on :attr:`device` from any array-like."""
        if self.is_array(obj):
            return self.xp.astype(obj, self.dtype)
        return self.from_numpy(np.asarray(obj, dtype=np.float64))

    @abc.abstractmethod
    def from_numpy(self, arr: np.ndarray) -> Any:
        """Copy a NumPy array to this backend (as :attr:`dtype`, on :attr:`device`)."""

    @abc.abstractmethod
    def to_numpy(self, arr: Any) -> np.ndarray:
        """Copy an array of this backend to a NumPy array on the host."""

    @abc.abstractmethod
    def is_array(self, obj: Any) -> bool:
        """Whether ``obj`` is an array of this backend's library."""

    # -- differential operators and interpolation -------------------------------------------
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

    # -- linear algebra -------------------------------------------------------------
    def solve_tridiagonal(self, lower: Any, diag: Any, upper: Any, rhs: Any) -> Any:
        """Solve tridiagonal systems, batched over leading axes.

        Row ``i`` reads ``lower[i]*x[i-1] + diag[i]*x[i] + upper[i]*x[i+1] = rhs[i]``;
        ``lower[..., 0]`` and ``upper[..., -1]`` are ignored (LAPACK gtsv convention).
        All four arguments have the same shape ``(..., n)``.

        The Array API has no tridiagonal solve, so this is the hook a new backend
        implements with its library's own (numpy: LAPACK ``dgtsv``; jax: a compiled
        Thomas scan). The default is parallel cyclic reduction on the namespace:
        ``ceil(log2 n)`` levels of about 15 vectorised operations, each level
        eliminating the couplings at twice the distance of the last; stable without
        pivoting for the diagonally dominant systems the schemes produce. Torch runs it
        on a GPU.
        """
        xp = self.xp
        lower, diag, upper, rhs = xp.broadcast_arrays(lower, diag, upper, rhs)
        n = int(diag.shape[-1])
        zero = xp.zeros_like(diag[..., :1])
        # Rows a, b, c, d of one stacked array, so that each level shifts once per side.
        abcd = xp.stack(
            [
                xp.concat([zero, lower[..., 1:]], axis=-1),
                diag,
                xp.concat([upper[..., :-1], zero], axis=-1),
                rhs,
            ]
        )
        # Rows out of range read as the identity equation 1 * x = 0.
        zeros = xp.zeros_like(diag)
        identity = xp.stack([zeros, zeros + 1.0, zeros, zeros])
        stride = 1
        while stride < n:
            fill = identity[..., :stride]
            a_lo, b_lo, c_lo, d_lo = xp.unstack(xp.concat([fill, abcd[..., : n - stride]], axis=-1))
            a_hi, b_hi, c_hi, d_hi = xp.unstack(xp.concat([abcd[..., stride:], fill], axis=-1))
            a, b, c, d = xp.unstack(abcd)
            alpha = -a / b_lo  # eliminates x[i - stride] with row i - stride
            gamma = -c / b_hi  # eliminates x[i + stride] with row i + stride
            abcd = xp.stack(
                [
                    alpha * a_lo,
                    b + alpha * c_lo + gamma * a_hi,
                    gamma * c_hi,
                    d + alpha * d_lo + gamma * d_hi,
                ]
            )
            stride *= 2
        _, b, _, d = xp.unstack(abcd)
        return d / b

    def factor_tridiagonal(self, lower: Any, diag: Any, upper: Any) -> Callable[[Any], Any]:
        """``rhs -> x`` solving the (batched) systems of :meth:`solve_tridiagonal`, for
        matrices used with many right-hand sides (the 2D alternating-line preconditioner).

        Backends that can factor once and solve cheaply override this (numpy); the
        default calls :meth:`solve_tridiagonal` each time. The matrices must be
        diagonally dominant where a backend factors without pivoting (numba's Thomas).
        """
        return lambda rhs: self.solve_tridiagonal(lower, diag, upper, rhs)

    def upwind_terms_2d(self, u: Any, c: Any, counts: tuple, periodic: tuple) -> Any:
        """:func:`~mfg_pde.alg.numerical._grid2d.hjb_terms` of one level ``u`` (nx, ny) by
        a compiled kernel, or None (the default) to use the array version.

        Backends that run array operations one by one on the CPU gain from doing the
        ~40 operations in one pass (numpy with numba: 1.4 ms -> 0.4-0.5 ms at 128²);
        the results must equal the array version's.
        """
        return None

    def ordered_grid_solver(
        self, diag0: Any, lines: tuple, periodic: tuple, order_key: Any, transpose: bool
    ) -> Callable[..., tuple] | None:
        """A compiled solver of the 2D upwind systems of
        :mod:`mfg_pde.alg.numerical._grid2d`, or None (the default) to use the generic
        line-preconditioned BiCGSTAB.

        The matrix is ``A = diag0 I`` plus the per-axis ``lines`` (arrays (nx, ny)), or
        ``A^T`` with ``transpose=True`` (the FP step). ``order_key`` (nx, ny), the value
        function, orders the unknowns so that the upwind couplings point to earlier
        ones: ascending for ``A``, descending for ``A^T``. Returns
        ``solve(rhs, x0, atol, max_iterations) -> (x, iterations, converged)`` with the
        contract of :func:`~mfg_pde.alg.numerical._krylov.bicgstab`. A Gauss-Seidel
        sweep in that order is sequential: only the numpy backend with numba provides
        one.
        """
        return None

    def march_tridiagonal(
        self,
        lower: Any,
        diag: Any,
        upper: Any,
        rhs: Any,
        coupling: float,
        reverse: bool = False,
        periodic: bool = False,
    ) -> Any:
        """Solve a block bidiagonal system level by level: arrays ``(levels, n)``, and
        ``x`` with ``T_k x_k = rhs_k + coupling * x_{k-1}`` (``x_{k+1}``, from the last
        level down, with ``reverse``), ``T_k`` row ``k``'s (cyclic with ``periodic``)
        tridiagonal matrix in the convention of :meth:`solve_tridiagonal`.

        This is a linearised implicit march (``coupling = 1/dt``): the HJB one backward,
        the FP one forward. The default solves one level at a time; backends with a
        compiled loop override it (numpy with numba: one call for the whole march).
        """
        solve = self.solve_cyclic_tridiagonal if periodic else self.solve_tridiagonal
        levels = int(diag.shape[0])
        out: list[Any] = [None] * levels
        previous = None
        for k in reversed(range(levels)) if reverse else range(levels):
            r = rhs[k, ...] if previous is None else rhs[k, ...] + coupling * previous
            out[k] = previous = solve(lower[k, ...], diag[k, ...], upper[k, ...], r)
        return self.xp.stack(out)

    def solve_cyclic_tridiagonal(self, lower: Any, diag: Any, upper: Any, rhs: Any) -> Any:
        """Solve periodic tridiagonal systems (Sherman–Morrison on two tridiagonal solves).

        As :meth:`solve_tridiagonal`, but ``lower[..., 0]`` couples row 0 to ``x[n-1]``
        and ``upper[..., -1]`` couples row ``n-1`` to ``x[0]``. Needs ``n >= 3``.
        """
        xp = self.xp
        a0 = lower[..., 0:1]  # A[0, n-1]
        cn = upper[..., -1:]  # A[n-1, 0]
        b0 = diag[..., 0:1]
        gamma = -b0
        # A = B + u v^T with u = (gamma, 0, ..., 0, cn), v = (1, 0, ..., 0, a0 / gamma).
        diag_b = xp.concat([b0 - gamma, diag[..., 1:-1], diag[..., -1:] - cn * a0 / gamma], axis=-1)
        zeros = xp.zeros_like(diag[..., 1:-1])
        u = xp.concat([gamma, zeros, cn], axis=-1)
        y = self.solve_tridiagonal(lower, diag_b, upper, rhs)
        z = self.solve_tridiagonal(lower, diag_b, upper, u)
        vy = y[..., 0:1] + (a0 / gamma) * y[..., -1:]
        vz = z[..., 0:1] + (a0 / gamma) * z[..., -1:]
        return y - z * (vy / (1.0 + vz))

    # -- scatter, density estimation ------------------------------------------------------
    def scatter_add(self, target: Any, indices: Any, values: Any) -> Any:
        """Return a copy of 1D ``target`` with ``values`` added at integer ``indices``.

        Repeated indices accumulate. ``target`` itself is not modified.

        The Array API has no scatter, so this is a hook a new backend implements with
        its library's own (``np.add.at``, ``.at[].add``, ``index_add``). The default is
        a segmented sum on the namespace: sort the values by index, add within runs of
        equal indices by doubling (Hillis-Steele: ``ceil(log2 r)`` vectorised steps for
        runs of at most ``r`` values), and read each run's last partial sum at the
        position ``searchsorted`` finds. Each sum carries the round-off of a pairwise
        sum of its own values only (about ``log2(r) * eps`` relative), and the one host
        read (``r``) happens once per call.
        """
        xp = self.xp
        n = int(target.shape[0])
        indices = xp.reshape(indices, (-1,))
        values = xp.reshape(xp.astype(values, target.dtype), (-1,))
        count = int(indices.shape[0])
        if count == 0 or n == 0:
            return target + 0.0
        order = xp.argsort(indices, stable=True)
        keys = xp.take(indices, order)
        sums = xp.take(values, order)
        bins = xp.arange(n, dtype=keys.dtype, **self._device_kw())
        first = xp.searchsorted(keys, bins, side="left")
        last = xp.searchsorted(keys, bins, side="right")
        longest = int(xp.max(last - first))
        shift = 1
        while shift < longest:
            same = keys[shift:] == keys[:-shift]
            step = xp.where(same, sums[:-shift], 0.0)
            sums = xp.concat([sums[:shift], sums[shift:] + step])
            shift *= 2
        at_end = xp.take(sums, xp.clip(last - 1, 0, count - 1))
        return target + xp.where(last > first, at_end, 0.0)

    def gaussian_kde(
        self,
        grid: Any,
        particles: Any,
        bandwidth: float | Sequence[float],
        method: str = "binned",
        weights: Any | None = None,
        binning_rtol: float | None = None,
    ) -> Any:
        """Gaussian kernel density estimate of particles, evaluated on a grid.

        ``density(x) = sum_k w_k exp(-|x - X_k|^2 / (2 h^2)) / (h sqrt(2 pi))^d`` with
        weights ``w_k = 1/N`` unless given; ``h`` is the absolute kernel width (one per
        axis in 2D). Particles outside the grid still count through their tails.

        Parameters
        ----------
        grid : array (G,) in 1D, or a pair of arrays (Gx,), (Gy,) in 2D
            Evaluation points; uniform spacing for ``method="binned"``.
        particles : array (N,) in 1D, (N, 2) in 2D
        bandwidth : float, or a pair of floats in 2D
        method : "binned" (default) or "exact"
            "exact" is the dense O(N·G) sum, done in chunks to bound memory.
            "binned" is linear binning onto a fine grid plus a convolution,
            O(N + G_f log G_f) (1D). The fine grid contains the output points and has
            spacing ``delta <= h * sqrt(8 * binning_rtol)``; the linear-binning error
            of one particle is at most ``delta^2 / 8 * max|K''| = delta^2 / (8 h^2)``
            times the kernel's peak value ``1 / (h sqrt(2 pi))``, and a weighted sum of
            particles keeps that bound: ``|binned - exact| <= binning_rtol *
            max_kernel``. In 2D the kernel is summed exactly along x at the output
            points near each particle and binned along y only (same bound with the 2D
            peak ``1 / (2 pi h_x h_y)``; :class:`~mfg_pde.backends._kde_2d.BinnedKDE2D`),
            O(N h_x / dx + Gx G_f,y q). The kernel is cut at ``8 h`` (relative size
            1.3e-14).
        weights : array (N,), optional
            Particle weights (default ``1/N`` each).
        binning_rtol : float, optional
            Bound above; default 1e-6 in 1D and 1e-4 in 2D.

        Returns
        -------
        array (G,) or (Gx, Gy)
        """
        dim = 2 if isinstance(grid, (tuple, list)) else 1
        axes = tuple(grid) if dim == 2 else (grid,)
        h = tuple(float(b) for b in bandwidth) if np.ndim(bandwidth) else (float(bandwidth),) * dim
        if len(h) != dim or min(h) <= 0 or not all(math.isfinite(b) for b in h):
            raise ValueError(f"bandwidth must be {dim} positive finite value(s), got {bandwidth!r}")
        pts = particles if dim == 2 else particles[:, None]
        if pts.ndim != 2 or pts.shape[1] != dim:
            raise ValueError(
                "particles must have shape (N,) in 1D or (N, 2) in 2D, "
                f"got {tuple(particles.shape)}"
            )
        n = pts.shape[0]
        if method == "exact":
            if weights is None:
                weights = self.xp.full((n,), 1.0 / max(n, 1), dtype=self.dtype, **self._device_kw())
            return self._kde_exact(axes, pts, h, weights)
        if method == "binned":
            rtol = BINNING_RTOL[dim] if binning_rtol is None else float(binning_rtol)
            if not 0 < rtol < 1:
                raise ValueError(f"binning_rtol must be in (0, 1), got {binning_rtol!r}")
            return self._kde_binned(axes, pts, h, weights, rtol)
        raise ValueError(f"method must be 'binned' or 'exact', got {method!r}")

    def _device_kw(self) -> dict:
        """Keyword arguments that put a new array on :attr:`device` (none for NumPy)."""
        return {}

    def _kde_exact(self, axes, pts, h, weights):
        xp = self.xp
        norm = 1.0
        for hi in h:
            norm *= hi * math.sqrt(2.0 * math.pi)
        total_grid = math.prod(int(a.shape[0]) for a in axes)
        chunk = max(1, int(2**22 // max(total_grid, 1)))
        n = pts.shape[0]
        out = None
        for start in range(0, n, chunk):
            p = pts[start : start + chunk]
            w = weights[start : start + chunk]
            # One factor per axis; their outer product is the product kernel.
            factors = [
                xp.exp(-0.5 * ((a[None, :] - p[:, i : i + 1]) / h[i]) ** 2)
                for i, a in enumerate(axes)
            ]
            if len(axes) == 1:
                part = xp.sum(w[:, None] * factors[0], axis=0)
            else:
                part = self._small_matmul(xp.matrix_transpose(w[:, None] * factors[0]), factors[1])
            out = part if out is None else out + part
        if out is None:
            out = self.zeros(tuple(int(a.shape[0]) for a in axes))
        return out / norm

    def _kde_binned(self, axes, pts, h, weights, rtol):
        host_axes = [self.to_numpy(a) for a in axes]
        if len(axes) == 2:
            return BinnedKDE2D(self, host_axes, h, rtol)(pts, weights)
        return BinnedKDE(self, host_axes, h, rtol)(pts[:, 0], weights)

    def binned_kde(
        self,
        grid: Any,
        bandwidth: float | Sequence[float],
        binning_rtol: float | None = None,
        images: str | None = None,
        smoothing: str = "auto",
    ) -> BinnedKDE | BinnedKDE2D:
        """Plan the binned Gaussian KDE on ``grid`` once; apply it to particles many times.

        ``kde = backend.binned_kde(grid, h)`` then ``kde(particles)`` equals
        ``gaussian_kde(grid, particles, h, method="binned")`` (same bound), but the fine
        grid, the kernel and its spectrum are computed once, on the host, and then live
        on :attr:`device`: applying the plan never copies to the host, so it can run
        inside a compiled or GPU time march. ``images`` adds reflected or periodic
        images of particles that lie in the domain (in 2D one kind for both axes or a
        pair; see :class:`~mfg_pde.backends._kde.BinnedKDE` and
        :class:`~mfg_pde.backends._kde_2d.BinnedKDE2D`), ``smoothing`` chooses between
        the FFT convolution and the banded product ("auto": the cheaper by flop count;
        in 2D along y, the binned axis).
        """
        dim = 2 if isinstance(grid, (tuple, list)) else 1
        axes = [
            np.asarray(a if isinstance(a, np.ndarray) else self.to_numpy(a), dtype=np.float64)
            for a in (grid if dim == 2 else [grid])
        ]
        h = tuple(float(b) for b in bandwidth) if np.ndim(bandwidth) else (float(bandwidth),) * dim
        if len(h) != dim or min(h) <= 0 or not all(math.isfinite(b) for b in h):
            raise ValueError(f"bandwidth must be {dim} positive finite value(s), got {bandwidth!r}")
        rtol = BINNING_RTOL[dim] if binning_rtol is None else float(binning_rtol)
        if not 0 < rtol < 1:
            raise ValueError(f"binning_rtol must be in (0, 1), got {binning_rtol!r}")
        if dim == 2:
            return BinnedKDE2D(self, axes, h, rtol, images=images, smoothing=smoothing)
        return BinnedKDE(self, axes, h, rtol, images=images, smoothing=smoothing)

    def _small_matmul(self, a: Any, b: Any) -> Any:
        """Product of small matrices (the banded KDE smoothing, batched over leading axes in
        2D; the chunks of the exact 2D KDE): ~10^6-10^7 flops."""
        return self.xp.matmul(a, b)

    def linear_binning(
        self, points: Any, start: float, spacing: float, size: int, weights: Any | None = None
    ) -> Any:
        """Linear binning of 1D points onto ``start + spacing * arange(size)``.

        A point at grid coordinate ``s = (x - start) / spacing`` adds ``w (1 - f)`` to bin
        ``floor(s)`` and ``w f`` to bin ``floor(s) + 1`` (``f = s - floor(s)``, ``w`` its
        weight, 1 when ``weights`` is None); shares that fall outside the grid are
        dropped, so a point farther than one spacing outside adds nothing. A NaN point
        makes bin 0 NaN rather than vanish. Returns an array ``(size,)``.
        """
        xp = self.xp
        s = xp.clip((points - start) / spacing, -1.0, float(size))
        c = xp.floor(s)
        upper = s - c if weights is None else weights * (s - c)
        lower = 1.0 - (s - c) if weights is None else weights - upper
        # Row c + 1 of ``pairs`` collects the (lower, upper) shares of the points in cell
        # c, which go to bins c and c + 1; rows 0 and size + 1 hold the cells left and
        # right of the grid. NaN casts to an arbitrary integer: the clip keeps it in.
        idx = xp.clip(xp.astype(c, xp.int64) + 1, 0, size + 1)
        pairs = self._scatter_add_rows(size + 2, idx, xp.stack([lower, upper], axis=1))
        return pairs[1 : size + 1, 0] + pairs[:size, 1]

    def separable_binning(
        self,
        px: Any,
        py: Any,
        x_grid: tuple[float, float, int],
        window: int,
        bandwidth: float,
        y_grid: tuple[float, float, int],
        weights: Any | None = None,
    ) -> Any:
        """Kernel values along x times linear binning along y: the 2D KDE's deposit.

        With ``x_grid = (x_start, dx, Sx)``, ``y_grid = (y_start, dy, Sy)`` and
        ``s = (px - x_start) / dx``, a particle adds
        ``w exp(-((i - s) dx)^2 / (2 h^2))`` times its linear-binning shares along y
        (as :meth:`linear_binning`: ``1 - f`` to ``floor(t)``, ``f`` to ``floor(t) + 1``,
        ``t = (py - y_start) / dy``, shares outside dropped) to the rows ``i`` of the
        ``window`` nodes from ``clip(floor(s) - (window - 2) // 2, 0, Sx - window)``
        (``h = bandwidth``, ``w`` its weight, 1 when ``weights`` is None). The kernel
        is not normalised. A NaN coordinate makes some entry NaN rather than vanish.
        Returns ``(Sx, Sy)``.
        """
        xp = self.xp
        x_start, dx, x_size = x_grid
        y_start, dy, y_size = y_grid
        half = (window - 2) // 2
        s = (px - x_start) / dx
        first = xp.clip(xp.floor(s) - half, 0.0, float(x_size - window))
        # exp(-d^2 / 2) with d = (first + j - s) dx / h, as exp(-(b + o_j)^2) after
        # scaling by 1/sqrt(2): one full-size (N, window) operation per step (torch pays
        # per operation: 4 instead of 13 of them halved its deposit time).
        scale = (dx / bandwidth) * math.sqrt(0.5)
        offsets = xp.arange(window, dtype=self.dtype, **self._device_kw()) * scale
        kernel = xp.exp(-xp.square(((first - s) * scale)[:, None] + offsets[None, :]))
        t = xp.clip((py - y_start) / dy, -1.0, float(y_size))
        c = xp.floor(t)
        upper = t - c if weights is None else weights * (t - c)
        lower = 1.0 - (t - c) if weights is None else weights - upper
        # Row c + 1 of a (Sy + 2)-row block collects the shares of cell c (as in
        # linear_binning); y-major, so that a particle's window is contiguous. NaN casts
        # to an arbitrary integer: the clips keep it in.
        rows = y_size + 2
        iy = xp.clip(xp.astype(c, xp.int64) + 1, 0, y_size + 1)
        ix = xp.clip(xp.astype(first, xp.int64), 0, x_size - window)
        start = iy * x_size + ix
        size = rows * x_size
        low = self._scatter_add_windows(size, start, kernel * lower[:, None])
        high = self._scatter_add_windows(size, start, kernel * upper[:, None])
        low, high = xp.reshape(low, (rows, x_size)), xp.reshape(high, (rows, x_size))
        return xp.matrix_transpose(low[1 : y_size + 1] + high[:y_size])

    def _scatter_add_windows(self, size: int, starts: Any, windows: Any) -> Any:
        """``zeros(size)`` with each row of ``windows`` (n, w) added at ``starts[k] ...
        starts[k] + w - 1`` (in range). One scatter of whole windows where the library
        has it (JAX: 11 ms instead of 137 ms for 10^5 windows of 104 values)."""
        xp = self.xp
        width = windows.shape[1]
        steps = xp.arange(width, dtype=xp.int64, **self._device_kw())
        index = xp.reshape(starts[:, None] + steps[None, :], (-1,))
        return self.scatter_add(self.zeros(size), index, xp.reshape(windows, (-1,)))

    def _scatter_add_rows(self, rows: int, indices: Any, values: Any) -> Any:
        """``zeros((rows, k))`` with the rows of ``values`` (n, k) added at ``indices``.

        One scatter of k-wide rows costs about as much as one scalar scatter (measured
        on JAX: 4.3 ms against 6.2 for two scalar scatters of 10^6 points).
        """
        k = values.shape[1]
        flat = self.zeros(rows * k)
        for j in range(k):
            flat = self.scatter_add(flat, indices * k + j, values[:, j])
        return self.xp.reshape(flat, (rows, k))

    # -- control flow ------------------------------------------------------------------
    def scan(
        self, step: Callable, carry: Any, xs: Any = None, length: int | None = None
    ) -> tuple[Any, Any]:
        """``lax.scan`` semantics: ``carry, y = step(carry, x)`` over the leading axis of xs.

        ``xs`` may be an array, a tuple of arrays, or None (then ``length`` steps with
        ``x = None``). Returns the final carry and the stacked ``y`` (a tuple when ``step``
        returns a tuple, None when it returns None).
        """
        n = _leading_length(xs, length)
        ys = []
        for k in range(n):
            x = None if xs is None else _index_tree(xs, k)
            carry, y = step(carry, x)
            ys.append(y)
        return carry, self._stack_tree(ys)

    def _stack_tree(self, ys: list) -> Any:
        if not ys or ys[0] is None:
            return None
        if isinstance(ys[0], tuple):
            return tuple(self.xp.stack([y[i] for y in ys]) for i in range(len(ys[0])))
        return self.xp.stack(ys)

    def while_loop(self, cond: Callable, body: Callable, state: Any) -> Any:
        """``lax.while_loop`` semantics: ``while cond(state): state = body(state)``."""
        while bool(cond(state)):
            state = body(state)
        return state

    def jit(self, fn: Callable, **kwargs: Any) -> Callable:
        """Compile ``fn`` where the backend can; elsewhere return it unchanged."""
        return fn

    def vmap(self, fn: Callable) -> Callable:
        """``fn`` mapped over the leading axis of its first argument, the other
        arguments shared: ``vmap(fn)(xs, *rest)[i] == fn(xs[i], *rest)``.

        Default: a Python loop and a stack; jax maps it in one traced program
        (``jax.vmap``)."""
        xp = self.xp

        def looped(first: Any, *rest: Any) -> Any:
            return xp.stack([fn(first[i, ...], *rest) for i in range(first.shape[0])])

        return looped

    def synchronize(self, x: Any) -> Any:
        """Block until the device has computed ``x`` (an array or a tuple of them) and
        return it, so that a timer stopped afterwards covers the work.

        Default: nothing to wait for (the work ran when it was called); jax waits for
        its asynchronous dispatch, torch for a CUDA or MPS device."""
        return x

    def eager(self) -> BaseBackend:
        """This backend with Python ``scan``, ``while_loop``, ``vmap`` and a no-op ``jit``.

        The arrays and primitives are the same; only the control flow runs op by op, so
        code that cannot be traced (a running cost with Python ``if`` on array values)
        still runs, and compiled results can be checked against it.
        """
        overridden = any(
            getattr(type(self), name) is not getattr(BaseBackend, name)
            for name in ("scan", "while_loop", "jit", "vmap")
        )
        if not overridden:
            return self
        view = copy.copy(self)
        for name in ("scan", "while_loop", "jit", "vmap"):
            setattr(view, name, functools.partial(getattr(BaseBackend, name), view))
        view.compiled = False
        return view

    # -- random numbers ------------------------------------------------------------------
    @abc.abstractmethod
    def random_key(self, seed: int) -> Any:
        """A seeded random stream: a NumPy Generator, a torch Generator or a JAX key."""

    @abc.abstractmethod
    def normal(self, key: Any, shape: Sequence[int]) -> tuple[Any, Any]:
        """Standard normal variates: returns ``(new_key, sample)``."""

    @abc.abstractmethod
    def uniform(self, key: Any, shape: Sequence[int]) -> tuple[Any, Any]:
        """Uniform variates on [0, 1): returns ``(new_key, sample)``."""

    # -- what the backend can do ---------------------------------------------------------
    @abc.abstractmethod
    def has_capability(self, name: str) -> bool:
        """Whether the backend offers ``name`` (one of :data:`CAPABILITIES`)."""

    @abc.abstractmethod
    def get_performance_hints(self) -> dict:
        """Rough costs for strategy selection.

        Keys: ``device_type`` ("cpu"/"gpu"), ``kernel_overhead_s`` (fixed cost of one
        operation or launch), ``memory_bandwidth_gbs``, ``compiled_loops`` (whether
        Python-level loops are compiled away), ``normal_variate_s`` (cost of one draw),
        ``particle_step_s`` (one particle's share of an FP-particle time step: draw,
        drift, reflection, binning), ``step_overhead_s`` (the part of a particle time
        step that does not grow with N: dispatch or kernel launches, the KDE on a
        ~100-point grid), ``host_transfer_gbs`` (copies between this device and the
        host). The CPU values were measured on a 2-core EPYC (docs/particles.md).
        """

    def counterpart(self, device_type: str) -> BaseBackend | None:
        """A backend of the same library on a ``"cpu"`` or ``"gpu"`` device, or None.

        This backend itself when it is on that kind of device already; the particle
        strategies use this to move a march between a GPU and the host.
        """
        if device_type not in ("cpu", "gpu"):
            raise ValueError(f"device_type must be 'cpu' or 'gpu', got {device_type!r}")
        return self if self.get_performance_hints()["device_type"] == device_type else None

    def _check_capability(self, name: str) -> None:
        if name not in CAPABILITIES:
            raise ValueError(f"unknown capability {name!r}; known: {', '.join(CAPABILITIES)}")


def _leading_length(xs: Any, length: int | None) -> int:
    if xs is None:
        if length is None:
            raise ValueError("scan needs xs or length")
        return int(length)
    first = xs[0] if isinstance(xs, tuple) else xs
    return int(first.shape[0])


def _index_tree(xs: Any, k: int) -> Any:
    """``xs[k]`` for an array or a tuple of arrays; None entries stay None (as in JAX)."""
    if isinstance(xs, tuple):
        return tuple(None if x is None else x[k, ...] for x in xs)
    return xs[k, ...]
