"""Fokker–Planck by interacting particles: Euler–Maruyama plus kernel density estimation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde.alg.numerical import _particle_draws as pd
from mfg_pde.alg.numerical import _stencils as st
from mfg_pde.alg.numerical._base import BaseSolver
from mfg_pde.alg.numerical._particle_sharding import ParticleSharding
from mfg_pde.alg.numerical.particle_strategy import (
    STRATEGY_NAMES,
    ParticleProblemSize,
    ParticleStrategy,
    select_particle_strategy,
)
from mfg_pde.backends import BaseBackend
from mfg_pde.backends._kde import BINNING_RTOL, fine_grid
from mfg_pde.backends._kde_2d import work_points


class FPParticleSolver(BaseSolver):
    r"""Density path from ``num_particles`` agents following the feedback ``-∇u / λ``.

    ``X_{n+1} = X_n - ∇u(t_n, X_n) dt / λ + σ sqrt(dt) Z_n`` with ``∇u`` the central
    difference of ``U^n`` along each axis, interpolated linearly (bilinearly in 2D) to
    the particles; per axis, particles are reflected at no-flux walls and wrapped on
    periodic axes. ``M^0 = m0`` on the grid; later levels are the Gaussian KDE of the
    particles with mirror images across the walls (or periodic images; in 2D per axis,
    and their products at corners), so no mass leaks through a boundary, renormalised
    to the mass of ``m0`` (``sum(M^n) * cell_volume = 1``).

    Works on 1D and 2D problems (``problem.dim``); :meth:`solve` takes and returns
    arrays of ``problem.shape``: ``(Nt + 1, Nx)`` or ``(Nt + 1, nx, ny)``. In 2D the
    initial positions are drawn from ``m0`` seen as constant on the cell of each node
    (a cell chosen with probability ``m0 * cell_volume``, then a uniform point in it,
    folded into the domain), as the 1D inverse CDF does; the march keeps the
    coordinates as one ``(N,)`` array per axis, so the per-axis kernels read
    contiguous memory.

    Every :meth:`solve` restarts the random stream from ``seed`` (common random
    numbers), so the map ``U -> M`` is deterministic and a fixed-point iteration on it
    can converge; the result carries sampling error of order
    ``(N h)^{-1/2}`` against the PDE solution, not visible in the fixed-point residual.

    Parameters
    ----------
    problem : MFGProblem
    backend : str, BaseBackend or None
    num_particles : int
        Number of particles N (>= 10).
    seed : int
        Seed of the random stream (initial positions and Brownian increments).
    kde_method : {"binned", "exact"}
        See :meth:`~mfg_pde.backends.BaseBackend.gaussian_kde`. ``"exact"`` sums the
        kernel over all 3N (2D: 9N) image points, ``O(N · grid)``: for checks.
    bandwidth : float, pair of floats (2D) or "scott"
        Kernel width h (2D: one per axis; a float is used on both). ``"scott"``:
        ``max(std(m0) N^{-1/5}, dx)`` in 1D and per axis ``max(std_a(m0) N^{-1/6},
        spacing_a)`` in 2D, with ``std_a`` the standard deviation of ``m0``'s marginal
        along axis ``a`` (Scott's rule ``N^{-1/(d+4)}`` on the initial density, never
        below the grid spacing). Fixed for the whole solve so that compiled kernels keep
        static shapes; :attr:`bandwidth` is a float in 1D and a pair in 2D.
    strategy : "auto", "cpu", "gpu" or ParticleStrategy
        Where the march runs (see :mod:`mfg_pde.alg.numerical.particle_strategy`):
        ``"auto"`` picks the cheaper of the CPU and GPU strategies by their cost model
        for this N, Nt and grid; ``"gpu"`` raises ValueError where the backend's library
        has no GPU. The chosen strategy is :attr:`strategy`, its backend
        :attr:`march_backend`.
    devices : None, int, sequence of jax.Device or jax.sharding.Mesh
        Split the particles over several JAX devices (a JAX backend only): an int ``n``
        takes the first ``n`` devices of the march backend's platform, a sequence takes
        those devices, a ``Mesh`` is used as given (the particles are split over all its
        axes). Each device draws, moves and bins its own particles; the densities are
        summed over the devices with one ``psum`` per time level. The draws do not
        depend on the split (JAX's partitionable threefry, the default since jax 0.5),
        so the density path equals the unsharded one up to the order of the sums
        (round-off). ``num_particles`` must be a multiple of the number of devices.
        None (the default): one device, as before.

    Notes
    -----
    With ``kde_method="binned"`` (the default) a time step costs O(N) plus O(fine grid):
    the particles are binned once onto the KDE's fine grid, and their mirror (no-flux)
    or periodic images are added there by reflecting or shifting the binned weights
    (:meth:`~mfg_pde.backends.BaseBackend.binned_kde`), which equals binning the 3N
    image points. ``kde_method="exact"`` sums the kernel over the 3N points, O(N·Nx).
    In 2D the KDE is :class:`~mfg_pde.backends._kde_2d.BinnedKDE2D` (exact along x
    near each particle, binned along y), O(N · 16 h_x / dx) plus O(nx · fine y grid);
    the images of each axis are added by folding its padded axis, the corner images
    by folding both.
    """

    def __init__(
        self,
        problem: MFGProblem,
        backend: str | BaseBackend | None = None,
        num_particles: int = 10_000,
        seed: int = 0,
        kde_method: str = "binned",
        bandwidth: float | str = "scott",
        strategy: str | ParticleStrategy = "auto",
        devices: Any = None,
    ) -> None:
        if isinstance(num_particles, bool) or not isinstance(num_particles, (int, np.integer)):
            raise TypeError(f"num_particles must be an int, got {num_particles!r}")
        if num_particles < 10:
            raise ValueError(f"num_particles must be >= 10, got {num_particles}")
        if kde_method not in ("binned", "exact"):
            raise ValueError(f"kde_method must be 'binned' or 'exact', got {kde_method!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if not isinstance(strategy, ParticleStrategy) and strategy not in STRATEGY_NAMES:
            raise ValueError(
                f"strategy must be one of {', '.join(map(repr, STRATEGY_NAMES))} or a "
                f"ParticleStrategy instance, got {strategy!r}"
            )
        self.num_particles = int(num_particles)
        self.seed = int(seed)
        self.kde_method = kde_method
        self.requested_strategy = strategy
        self.devices = devices
        self.bandwidth = _bandwidth(problem, bandwidth, self.num_particles)
        super().__init__(problem, backend)

    @property
    def problem_size(self) -> ParticleProblemSize:
        """N, Nt, Nx and the KDE's fine grid: what the strategies' cost model needs."""
        p = self.problem
        fine = 0
        if self.kde_method == "binned" and p.dim == 1:
            fine = fine_grid(p.x, self.bandwidth, BINNING_RTOL[1])[0]
        elif self.kde_method == "binned":
            fine = work_points(list(p.axes), self.bandwidth, BINNING_RTOL[2])
        return ParticleProblemSize(self.num_particles, p.Nt, math.prod(p.grid_shape), fine)

    def _plan_kde(self, b: BaseBackend, smoothing: str = "auto"):
        p = self.problem
        images = tuple("periodic" if periodic else "reflect" for periodic in p.periodic)
        grid = p.x if p.dim == 1 else tuple(p.axes)
        kinds = images[0] if p.dim == 1 else images
        return b.binned_kde(grid, self.bandwidth, images=kinds, smoothing=smoothing)

    def _build(self) -> None:
        p = self.problem
        self.strategy = select_particle_strategy(
            self.backend, self.problem_size, self.requested_strategy
        )
        b = self.march_backend = self.strategy.march_backend
        self._axes = tuple(b.from_numpy(a) for a in p.axes)
        self._m0 = b.from_numpy(p.m0)
        self._g = b.from_numpy(p.g)
        # Inverse CDF of m0, seen as constant on the cell around each node (in 2D over
        # the cells in C order; the cell's position then follows from its index).
        cdf = np.concatenate([[0.0], np.cumsum(p.m0.reshape(-1))])
        self._cdf = b.from_numpy(cdf / cdf[-1])
        if p.dim == 1:
            edges = np.concatenate([p.x - 0.5 * p.dx, [p.x[-1] + 0.5 * p.dx]])
            self._cdf_edges = b.from_numpy(edges)
        self._kde = self._plan_kde(b) if self.kde_method == "binned" else None
        self._sharding = None
        if self.devices is not None:
            self._sharding = ParticleSharding(b, self.devices, self.num_particles)
        self._march_compiled = b.jit(self._march)
        self._draws: Any = None  # made by the first march that can keep them
        self._compiled_1d: Any = None

    def solve(self, U: Any = None) -> np.ndarray:
        """Density path ``problem.shape`` for a value function (default: ``U[n] = g``).

        ``(Nt + 1, Nx)`` in 1D, ``(Nt + 1, nx, ny)`` in 2D, as U.
        """
        return self.march_backend.to_numpy(self._solve_march(U))

    def solve_backend(self, U: Any = None) -> Any:
        """As :meth:`solve`, on the solver's backend (one copy if the march ran elsewhere)."""
        M = self._solve_march(U)
        if self.march_backend is self.backend:
            return M
        return self.backend.from_numpy(self.march_backend.to_numpy(M))

    def _solve_march(self, U: Any) -> Any:
        p, b = self.problem, self.march_backend
        if U is None:
            U = b.xp.broadcast_to(self._g[None, ...], p.shape)
        elif b is not self.backend and not b.is_array(U):
            U = self.backend.to_numpy(self._as_backend(U, "U", p.shape))
        U = b.array(U)
        if tuple(U.shape) != p.shape:
            raise ValueError(f"U must have shape {p.shape}, got {tuple(U.shape)}")
        if self._sharding is not None:
            return self._sharding.run(self._march, U, b.random_key(self.seed))
        if not pd.draws_fit(self.num_particles, p.Nt, p.dim):
            return self._march_compiled(U, b.random_key(self.seed))
        if self._draws is None:
            self._draws = pd.make_draws(self)
            kernel = b.particle_march_kernel() if self._kde is not None else None
            if kernel is not None and p.dim == 1:
                self._compiled_1d = b.jit(pd.compiled_march_1d(self, kernel, self._draws))
        if self._compiled_1d is not None:
            return self._compiled_1d(U)
        return self._march_compiled(U, None, self._draws)

    def _wrap_into_domain(self, X: Any, axis: int = 0) -> Any:
        """Reflect at no-flux walls (any number of times) or wrap periodically, along
        ``axis`` (``X`` holds that coordinate of every particle)."""
        lo, hi = self.problem.bounds[axis]
        return self.march_backend.fold_into_interval(
            X, lo, hi, periodic=self.problem.periodic[axis]
        )

    def _initial_positions(self, key: Any) -> tuple[Any, tuple[Any, ...]]:
        """``(key, X0)``: positions drawn from m0, one ``(N,)`` array per axis.

        The uniforms that place the particles are sorted first, so the particles come
        in the order of their position (1D) or of their cell (2D, C order). Their law
        is unchanged: the particles are exchangeable, and their Brownian increments are
        drawn independently of the positions. The order is what makes the binning fast:
        neighbours in memory bin onto neighbouring fine-grid points, and the compiled
        march's chunks of particles (one thread each) bin onto different parts of the
        grid (measured on the hello problem, 10^5 particles in two threads: 13 ms
        per march against 24 ms in the order drawn).
        """
        b, p = self.march_backend, self.problem
        xp, n = b.xp, self.num_particles
        if p.dim == 1:
            key, u01 = b.uniform(key, (n,))
            u01 = self._split(xp.sort(u01))
            return key, (self._wrap_into_domain(b.interp(u01, self._cdf, self._cdf_edges)),)
        key, u = b.uniform(key, (2, n))
        u = self._split(xp.stack([xp.sort(u[0]), u[1]]), axis=1)
        cells = int(self._cdf.shape[0]) - 1
        # cdf[c] <= u < cdf[c + 1] picks cell c with probability m0_c / sum(m0); where u
        # sits in that step is uniform on [0, 1): the position along x inside the cell.
        cell = xp.clip(xp.searchsorted(self._cdf, u[0], side="right") - 1, 0, cells - 1)
        below = xp.take(self._cdf, cell)
        along_x = xp.clip((u[0] - below) / (xp.take(self._cdf, cell + 1) - below), 0.0, 1.0)
        ny = p.grid_shape[1]
        node = (xp.astype(cell // ny, b.dtype), xp.astype(cell % ny, b.dtype))
        X0 = tuple(
            self._wrap_into_domain(float(p.axes[a][0]) + (node[a] + frac - 0.5) * p.spacing[a], a)
            for a, frac in enumerate((along_x, u[1]))
        )
        return key, X0

    def _drift(self, u: Any, X: tuple[Any, ...], step_scale: float) -> tuple[Any, ...]:
        """``-∇u dt / λ`` at the particles, one ``(N,)`` array per axis."""
        b, p = self.march_backend, self.problem
        xp = b.xp
        if p.dim == 1:
            periodic = p.periodic[0]
            # Scale on the grid (Nx values) rather than per particle (N values).
            shift = st.central_gradient(xp, u, p.dx, periodic) * step_scale
            if periodic:  # close the grid with its image at xmax to interpolate across the seam
                shift = xp.concat([shift, shift[:1]])
            return (b.interp_uniform(X[0], p.xmin, p.dx, shift),)
        components = []
        for a in range(2):
            along = st.central_gradient(xp, xp.moveaxis(u, a, -1), p.spacing[a], p.periodic[a])
            components.append(xp.moveaxis(along * step_scale, -1, a))
        field = xp.stack(components)  # (2, nx, ny)
        for a in range(2):
            if p.periodic[a]:  # close the grid with its image at the far side, as in 1D
                seam = field[:, :1] if a == 0 else field[:, :, :1]
                field = xp.concat([field, seam], axis=a + 1)
        starts = tuple(float(axis[0]) for axis in p.axes)
        shift = b.interp_uniform_2d(X[0], X[1], starts, p.spacing, field)
        return shift[0], shift[1]

    def _split(self, values: Any, axis: int = 0) -> Any:
        """Particle values split over the devices along ``axis`` (unchanged unsharded)."""
        return values if self._sharding is None else self._sharding.split(values, axis)

    def _density(self, X: tuple[Any, ...]) -> Any:
        """The KDE of the particles on the grid, normalised to the mass of m0."""
        if self._sharding is None:
            density = self._kde_sum(X)
        else:  # each device's particles, then one sum over the devices
            density = self._sharding.sum_over_devices(self._kde_sum, X)
        return density / (self.march_backend.xp.sum(density) * self.problem.cell_volume)

    def _kde_sum(self, X: tuple[Any, ...]) -> Any:
        """The particles' KDE up to a constant factor (``_density`` normalises it)."""
        b, p = self.march_backend, self.problem
        xp = b.xp
        if self._kde is not None:
            density = self._kde(X[0] if p.dim == 1 else X)
        else:
            images = []
            for a, coord in enumerate(X):
                lo, hi = p.bounds[a]
                if p.periodic[a]:
                    images.append([coord - (hi - lo), coord, coord + (hi - lo)])
                else:
                    images.append([2.0 * lo - coord, coord, 2.0 * hi - coord])
            if p.dim == 1:
                particles = xp.concat(images[0])
            else:  # all 9 combinations: the corner images are products of both axes'
                xs, ys = images
                particles = xp.stack(
                    [
                        xp.concat([x for x in xs for _ in ys]),
                        xp.concat([y for _ in xs for y in ys]),
                    ],
                    axis=1,
                )
            n = X[0].shape[0]
            weights = xp.full((particles.shape[0],), 1.0 / n, dtype=b.dtype, **b._device_kw())
            grid = self._axes[0] if p.dim == 1 else self._axes
            density = b.gaussian_kde(
                grid, particles, self.bandwidth, method="exact", weights=weights
            )
        return density

    def _march(
        self,
        U: Any,
        key: Any,
        draws: tuple | None = None,
        scales: tuple[Any, Any] | None = None,
        m0: Any = None,
    ) -> Any:
        """The density path; the random inputs drawn from ``key``, or read from
        ``draws = (X0, Z)`` (:func:`~mfg_pde.alg.numerical._particle_draws.make_draws`;
        ``Z`` None: X0 given, the normals drawn from ``key``). ``scales``: the noise
        ``σ √dt`` and the drift ``-dt / λ`` (default: the problem's, as floats; the
        compiled fixed-point program passes them traced); ``m0``: the first level
        (default the problem's)."""
        b, p = self.march_backend, self.problem
        xp = b.xp
        normals = None
        if draws is None:
            key, X0 = self._initial_positions(key)
        else:
            X0, normals = draws
        inputs = U[:-1] if normals is None else (U[:-1], normals)
        if scales is None:
            scales = (p.sigma * math.sqrt(p.dt), -p.dt / p.control_cost)
        noise_scale, step_scale = scales  # step_scale: the drift -∇u / λ over one step

        def time_step(carry, step_inputs):
            X, key = carry
            u = step_inputs if normals is None else step_inputs[0]
            # The density of the positions at the start of the step, X^n: on JAX a
            # loop-carried array is materialised, while the freshly computed X^{n+1}
            # would be fused into the binning's index and weight computations, and the
            # normal transform with it, once per consumer (measured: 7 ms instead of
            # 0.5 ms per step for 10^5 particles). The density of X^0 is replaced by m0.
            density = self._density(X)
            shift = self._drift(u, X, step_scale)
            moved = []
            for a in range(p.dim):
                if normals is None:
                    key, z = b.normal(key, (self.num_particles,))
                    z = self._split(z)
                else:
                    z = step_inputs[1][a]
                moved.append(self._wrap_into_domain(X[a] + shift[a] + noise_scale * z, a))
            return (tuple(moved), key), density

        (X, _), densities = b.scan(time_step, (X0, key), inputs)
        first = self._m0 if m0 is None else m0
        return xp.concat([first[None, ...], densities[1:], self._density(X)[None, ...]], axis=0)

    # -- inside the compiled fixed-point program ----------------------------------------
    @property
    def compiles_in_program(self) -> bool:
        """Whether :class:`~mfg_pde.alg.numerical.FixedPointIterator` can compile this
        march into its one program (a ``scan`` over steps inside the ``while_loop`` over
        iterations): on a backend that fuses kernels (jax), unsharded, where the march
        runs as a ``scan`` anyway. Not where the backend has a compiled host march for
        this solver (jax on the CPU, 1D, binned, draws kept): there the draws stay on
        the host beside that march, since passing them into a host callback at every
        iteration would copy them (measured: 30 ms for 10^5 particles x 50 steps,
        more than the march)."""
        b, p = self.march_backend, self.problem
        if self.devices is not None or b is not self.backend:
            return False
        if not b.has_capability("kernel_fusion"):
            return False
        host_march = (
            p.dim == 1
            and self._kde is not None
            and pd.draws_fit(self.num_particles, p.Nt, p.dim)
            and b.particle_march_kernel() is not None
        )
        return not host_march

    def program_key(self) -> tuple:
        """What :meth:`make_march`'s function closes over, for the program cache: the
        grid's geometry (the drift's interpolation, the KDE plan), the bandwidth, N,
        the KDE method and whether the draws are kept or drawn inside."""
        p = self.problem
        kept = pd.draws_fit(self.num_particles, p.Nt, p.dim)
        bandwidth = self.bandwidth if p.dim == 1 else tuple(self.bandwidth)
        return ("particles", p.bounds, self.num_particles, bandwidth, self.kde_method, kept)

    def program_arrays(self) -> dict[str, Any]:
        """The march's inputs to the compiled program: ``{"particles": {"x0", "z"}}``
        (the draws, made once and kept) or, where they do not fit
        :data:`~mfg_pde.alg.numerical._particle_draws.DRAWS_CACHE_BYTES`,
        ``{"particles": {"x0", "key"}}`` (the normals drawn inside from ``key``)."""
        b, p = self.march_backend, self.problem
        if pd.draws_fit(self.num_particles, p.Nt, p.dim):
            if self._draws is None:
                self._draws = pd.make_draws(self)
            return {"particles": {"x0": self._draws[0], "z": self._draws[1]}}
        key, X0 = self._initial_positions(b.random_key(self.seed))
        return {"particles": {"x0": X0, "key": key}}

    def make_march(self) -> Any:
        """The march as a pure function ``(arrays, U) -> M`` of the compiled program:
        the draws from ``arrays["particles"]`` (:meth:`program_arrays`), the noise and
        drift scales from ``arrays["c"]`` (so a batch over σ or λ shares the draws and
        the program), the first level from ``arrays["m0"]``."""
        xp = self.march_backend.xp

        def march(arrays: dict, U: Any) -> Any:
            c, particles = arrays["c"], arrays["particles"]
            scales = (xp.sqrt(2.0 * c.nu * c.dt), -c.dt / c.control_cost)
            draws = (particles["x0"], particles.get("z"))
            return self._march(U, particles.get("key"), draws, scales, arrays["m0"])

        return march


def _bandwidth(problem: MFGProblem, bandwidth: Any, num_particles: int) -> Any:
    """The kernel width: a float in 1D, a pair in 2D (see :class:`FPParticleSolver`)."""
    p = problem
    if isinstance(bandwidth, str) and bandwidth == "scott":
        widths = []
        for a, (axis, spacing) in enumerate(zip(p.axes, p.spacing, strict=True)):
            marginal = p.m0.sum(axis=tuple(i for i in range(p.dim) if i != a))
            mean = np.sum(axis * marginal) / np.sum(marginal)
            std = math.sqrt(np.sum((axis - mean) ** 2 * marginal) / np.sum(marginal))
            widths.append(max(std * num_particles ** (-1.0 / (p.dim + 4)), spacing))
        return widths[0] if p.dim == 1 else tuple(widths)
    values = np.ravel(np.asarray(bandwidth, dtype=object))
    ok = values.size in ((1,) if p.dim == 1 else (1, p.dim))
    try:
        widths = [float(h) for h in values]
    except (TypeError, ValueError):
        ok = False
    if not ok or not all(math.isfinite(h) and h > 0 for h in widths):
        accepted = "a positive number" + (" or a pair of them" if p.dim == 2 else "")
        raise ValueError(f"bandwidth must be 'scott' or {accepted}, got {bandwidth!r}")
    if p.dim == 1:
        return widths[0]
    return tuple(widths * 2) if len(widths) == 1 else tuple(widths)
