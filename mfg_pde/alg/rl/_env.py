"""The representative agent's MDP for a given population flow, vectorised over agents.

The environment is the best-response problem of one agent facing a fixed population:
state ``(t_n, x)``, action ``α`` (a velocity), dynamics

    x_{n+1} = fold(x_n + α dt + σ √dt ξ),   ξ ~ N(0, 1),

where ``fold`` reflects at no-flux walls and wraps on a periodic domain, reward
``-(λ α² / 2 + f(x_n, m_n, t_n)) dt`` per step and ``-g(x_{Nt})`` at the end. ``m`` is
the population's density on the problem's grid at every time level; ``f`` is evaluated
on the grid with the problem's own ``running_cost`` and interpolated (linearly) at the
agents' positions, and so is ``g``. Everything is arithmetic on the backend's array
namespace: on torch it runs on the backend's device and is differentiable in ``x`` and
``α`` (the actor-critic solver differentiates through :meth:`MeanFieldEnv.step`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde.backends import BaseBackend, create_backend


def check_one_dimensional(problem: Any) -> None:
    """Refuse anything but a one-dimensional :class:`~mfg_pde.MFGProblem`, clearly."""
    if not isinstance(problem, MFGProblem):
        raise TypeError(f"problem must be an MFGProblem, got {type(problem).__name__}")
    if problem.dim != 1:
        raise NotImplementedError(
            f"mfg_pde.alg.rl solves one-dimensional problems; this problem is {problem.dim}D "
            f"(grid {problem.grid_shape}). Use the PDE solvers (solve_mfg) in 2D."
        )


class MeanFieldEnv:
    """Many independent agents facing one population flow, on any backend.

    Parameters
    ----------
    problem : MFGProblem
        One-dimensional; its grid, ``dt``, ``sigma``, ``control_cost``, costs and boundary.
    population : array (Nt + 1, Nx), optional
        The population's density at every time level (NumPy or backend array). Default:
        ``m0`` frozen in time. Change it with :meth:`set_population`.
    backend : str, BaseBackend or None
        Where the agents live (None: automatic, as everywhere in mfg_pde).

    Notes
    -----
    Time is the index ``n`` of the level ``t_n = n dt``; an episode is ``Nt`` steps.
    The rewards follow the RL convention (larger is better); the value an agent
    expects is minus the PDE's cost-to-go ``u``.
    """

    def __init__(
        self,
        problem: MFGProblem,
        population: Any = None,
        backend: str | BaseBackend | None = None,
    ) -> None:
        check_one_dimensional(problem)
        self.problem = problem
        self.backend = create_backend(backend)
        b, p = self.backend, problem
        self.xp = b.xp
        self.periodic = p.boundary == "periodic"
        self.grid = b.from_numpy(p.x)
        self.times = [float(t) for t in p.t]
        self.noise_scale = p.sigma * math.sqrt(p.dt)
        self._g = self._extended(b.from_numpy(p.g))
        cdf = np.cumsum(p.m0)
        self._cdf = b.from_numpy(cdf / cdf[-1])
        self.set_population(population)

    # -- the population ------------------------------------------------------------------
    def set_population(self, population: Any = None) -> None:
        """Set the density flow ``m`` (array ``(Nt + 1, Nx)``) the agents face."""
        b, p, xp = self.backend, self.problem, self.xp
        if population is None:
            population = np.broadcast_to(p.m0, p.shape)
        m = b.array(population)
        if tuple(m.shape) != p.shape:
            raise ValueError(
                f"population must have shape (Nt + 1, Nx) = {p.shape}, got {tuple(m.shape)}"
            )
        zero = xp.zeros_like(self.grid)
        costs = [
            zero + p.running_cost(self.grid, m[n], self.times[n], **p.cost_parameters)
            for n in range(p.Nt + 1)
        ]
        self.population = m
        self.running_cost_grid = xp.stack(costs)
        if not bool(xp.all(xp.isfinite(self.running_cost_grid))):
            raise ValueError("the running cost is not finite for this population flow")
        self._f = [self._extended(f) for f in costs]
        self._f_table = self.table(self.running_cost_grid)

    # -- sampling ------------------------------------------------------------------------
    def initial_positions(self, key: Any, num_agents: int) -> tuple[Any, Any]:
        """``(key, x)``: ``num_agents`` positions drawn from ``m0``.

        Node ``i`` carries mass ``m0_i dx``; a draw picks a node by the inverse of the
        cumulative mass and spreads uniformly over its cell ``[x_i - dx/2, x_i + dx/2]``
        (folded into the domain), the density whose grid values are ``m0``.
        """
        b, xp, p = self.backend, self.xp, self.problem
        key, u = b.uniform(key, (num_agents,))
        key, jitter = b.uniform(key, (num_agents,))
        node = xp.clip(xp.searchsorted(self._cdf, u, side="right"), 0, p.Nx - 1)
        x = xp.take(self.grid, node) + p.dx * (jitter - 0.5)
        return key, self.fold(x)

    def uniform_positions(self, key: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
        """``(key, x)``: positions uniform on the domain (exploring starts)."""
        key, u = self.backend.uniform(key, shape)
        return key, self.problem.xmin + self.problem.length * u

    # -- dynamics and rewards ------------------------------------------------------------
    def fold(self, x: Any) -> Any:
        """Reflect at no-flux walls, wrap on a periodic domain."""
        p = self.problem
        return self.backend.fold_into_interval(x, p.xmin, p.xmax, periodic=self.periodic)

    def step(self, n: int, x: Any, alpha: Any, noise: Any) -> tuple[Any, Any]:
        """One step from level ``n``: ``(x_next, reward)`` for positions, actions and
        standard normal ``noise`` of one shape."""
        p = self.problem
        reward = -(0.5 * p.control_cost * alpha * alpha + self.running_cost(n, x)) * p.dt
        x_next = self.fold(x + alpha * p.dt + self.noise_scale * noise)
        return x_next, reward

    def running_cost(self, n: int, x: Any) -> Any:
        """``f(x, m_n, t_n)`` at positions ``x`` (linear interpolation from the grid)."""
        return self._interp(self._f[n], x)

    def running_cost_at(self, level: Any, x: Any) -> Any:
        """``f(x_k, m_{n_k}, t_{n_k})`` for positions ``x`` at integer levels ``level``."""
        return self.at_levels(self._f_table, level, x)

    def table(self, values: Any) -> Any:
        """Grid values ``(levels, Nx)`` laid out for :meth:`at_levels`."""
        if self.periodic:
            values = self.xp.concat([values, values[:, :1]], axis=1)
        return self.xp.matrix_transpose(values)

    def at_levels(self, table: Any, level: Any, x: Any) -> Any:
        """Linear interpolation in ``x`` of a :meth:`table` at integer ``level`` per point."""
        p, xp = self.problem, self.xp
        shape = x.shape
        n = xp.reshape(xp.astype(level, x.dtype), (-1,))
        flat = xp.reshape(x, (-1,))
        out = self.backend.interp_uniform_2d(flat, n, (p.xmin, 0.0), (p.dx, 1.0), table)
        return xp.reshape(out, shape)

    def terminal_reward(self, x: Any) -> Any:
        """``-g(x)`` at positions ``x`` (linear interpolation from the grid)."""
        return -self._interp(self._g, x)

    def _extended(self, values: Any) -> Any:
        """Grid values with, on a periodic domain, the first repeated at ``xmax``."""
        if self.periodic:
            return self.xp.concat([values, values[:1]])
        return values

    def _interp(self, values: Any, x: Any) -> Any:
        return self.backend.interp_uniform(x, self.problem.xmin, self.problem.dx, values)
