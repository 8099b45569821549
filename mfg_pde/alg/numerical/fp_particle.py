"""Fokker–Planck by interacting particles: Euler–Maruyama plus kernel density estimation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde.alg.numerical import _stencils as st
from mfg_pde.alg.numerical._base import BaseSolver
from mfg_pde.backends import BaseBackend


class FPParticleSolver(BaseSolver):
    r"""Density path from ``num_particles`` agents following the feedback ``-u_x / λ``.

    ``X_{n+1} = X_n - u_x(t_n, X_n) dt / λ + σ sqrt(dt) Z_n`` with ``u_x`` the central
    difference of ``U^n`` interpolated linearly to the particles; particles are reflected
    at no-flux walls and wrapped on periodic domains. ``M^0 = m0`` on the grid; later
    levels are the Gaussian KDE of the particles with mirror images across the walls
    (or periodic images), so no mass leaks through a boundary, renormalised to the mass
    of ``m0``.

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
        See :meth:`~mfg_pde.backends.BaseBackend.gaussian_kde`.
    bandwidth : float or "scott"
        Kernel width h. ``"scott"``: ``max(std(m0) N^{-1/5}, dx)`` (Scott's rule on the
        initial density, never below the grid spacing), fixed for the whole solve so that
        compiled kernels keep static shapes.
    """

    def __init__(
        self,
        problem: MFGProblem,
        backend: str | BaseBackend | None = None,
        num_particles: int = 10_000,
        seed: int = 0,
        kde_method: str = "binned",
        bandwidth: float | str = "scott",
    ) -> None:
        if isinstance(num_particles, bool) or not isinstance(num_particles, (int, np.integer)):
            raise TypeError(f"num_particles must be an int, got {num_particles!r}")
        if num_particles < 10:
            raise ValueError(f"num_particles must be >= 10, got {num_particles}")
        if kde_method not in ("binned", "exact"):
            raise ValueError(f"kde_method must be 'binned' or 'exact', got {kde_method!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.num_particles = int(num_particles)
        self.seed = int(seed)
        self.kde_method = kde_method
        if bandwidth == "scott":
            x, m0 = problem.x, problem.m0
            mean = np.sum(x * m0) / np.sum(m0)
            std = math.sqrt(np.sum((x - mean) ** 2 * m0) / np.sum(m0))
            self.bandwidth = max(std * self.num_particles ** (-0.2), problem.dx)
        else:
            h = float(bandwidth)
            if not (math.isfinite(h) and h > 0):
                raise ValueError(
                    f"bandwidth must be 'scott' or a positive number, got {bandwidth!r}"
                )
            self.bandwidth = h
        super().__init__(problem, backend)

    def _build(self) -> None:
        b, p = self.backend, self.problem
        self._x = b.from_numpy(p.x)
        self._m0 = b.from_numpy(p.m0)
        self._g = b.from_numpy(p.g)
        # Inverse CDF of m0, seen as constant on cells of width dx around the nodes.
        edges = np.concatenate([p.x - 0.5 * p.dx, [p.x[-1] + 0.5 * p.dx]])
        cdf = np.concatenate([[0.0], np.cumsum(p.m0)])
        self._cdf = b.from_numpy(cdf / cdf[-1])
        self._cdf_edges = b.from_numpy(edges)
        self._march_compiled = b.jit(self._march)

    def solve(self, U: Any = None) -> np.ndarray:
        """Density path (Nt + 1, Nx) for a value function (default: ``U[n] = g``)."""
        return self.backend.to_numpy(self.solve_backend(U))

    def solve_backend(self, U: Any = None) -> Any:
        p = self.problem
        if U is None:
            U = self.xp.broadcast_to(self._g[None, :], p.shape)
        key = self.backend.random_key(self.seed)
        return self._march_compiled(self._as_backend(U, "U", p.shape), key)

    def _wrap_into_domain(self, X: Any) -> Any:
        """Reflect at no-flux walls (any number of times) or wrap periodically."""
        xp, p = self.xp, self.problem
        L = p.length
        if p.boundary == "periodic":
            return p.xmin + xp.remainder(X - p.xmin, L)
        y = xp.remainder(X - p.xmin, 2.0 * L)
        return p.xmin + L - xp.abs(y - L)

    def _density(self, X: Any) -> Any:
        xp, b, p = self.xp, self.backend, self.problem
        if p.boundary == "periodic":
            images = [X - p.length, X, X + p.length]
        else:
            images = [2.0 * p.xmin - X, X, 2.0 * p.xmax - X]
        particles = xp.concat(images)
        weights = xp.full(particles.shape, 1.0 / X.shape[0], dtype=b.dtype, **b._device_kw())
        density = b.gaussian_kde(
            self._x, particles, self.bandwidth, method=self.kde_method, weights=weights
        )
        return density / (xp.sum(density) * p.dx)

    def _march(self, U: Any, key: Any) -> Any:
        xp, b, p = self.xp, self.backend, self.problem
        periodic = p.boundary == "periodic"
        key, u01 = b.uniform(key, (self.num_particles,))
        X0 = self._wrap_into_domain(b.interp(u01, self._cdf, self._cdf_edges))
        noise_scale = p.sigma * math.sqrt(p.dt)

        def time_step(carry, u):
            X, key = carry
            grad = st.central_gradient(xp, u, p.dx, periodic)
            if periodic:  # close the grid with its image at xmax to interpolate across the seam
                grad = xp.concat([grad, grad[:1]])
            drift = -b.interp_uniform(X, p.xmin, p.dx, grad) / p.control_cost
            key, z = b.normal(key, (self.num_particles,))
            X = self._wrap_into_domain(X + drift * p.dt + noise_scale * z)
            return (X, key), self._density(X)

        _, densities = b.scan(time_step, (X0, key), U[:-1])
        return xp.concat([self._m0[None, :], densities], axis=0)
