"""Implicit monotone upwind scheme for the HJB equation, Newton's method per time step."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde.alg.numerical import _stencils as st
from mfg_pde.alg.numerical._base import BaseSolver
from mfg_pde.backends import BaseBackend


class HJBFDMSolver(BaseSolver):
    r"""Backward HJB solve on a fixed density path (Achdou & Capuzzo-Dolcetta 2010).

    For ``n = Nt-1, ..., 0`` it solves, for ``U^n``,

    .. math::
        \frac{U^n_i - U^{n+1}_i}{\Delta t} - \nu (\Delta_h U^n)_i
            + H(D^+U^n_i, D^-U^n_i) = f(x_i, M^{n+1}, t_{n+1}),

    with the Godunov Hamiltonian of :func:`~mfg_pde.alg.numerical._stencils.hamiltonian`
    and ``U^{Nt} = g``. Each step is a nonlinear system with a tridiagonal (cyclic when
    periodic) M-matrix Jacobian, solved by Newton's method from ``U^{n+1}``. The scheme
    is monotone and first order in ``dx`` and ``dt``.

    Parameters
    ----------
    problem : MFGProblem
    backend : str, BaseBackend or None
        None chooses automatically (torch > jax > numpy).
    newton_tolerance : float
        Stop Newton when ``max|δU| <= newton_tolerance * max(1, max|U|)``.
    max_newton_iterations : int
        Cap per time step. Steps that hit it are counted in :attr:`last_newton_failures`.
    """

    def __init__(
        self,
        problem: MFGProblem,
        backend: str | BaseBackend | None = None,
        newton_tolerance: float = 1e-11,
        max_newton_iterations: int = 30,
    ) -> None:
        if not (isinstance(newton_tolerance, (int, float)) and 0 < newton_tolerance < 1):
            raise ValueError(f"newton_tolerance must be in (0, 1), got {newton_tolerance!r}")
        if isinstance(max_newton_iterations, bool) or not isinstance(max_newton_iterations, int):
            raise TypeError(f"max_newton_iterations must be an int, got {max_newton_iterations!r}")
        if max_newton_iterations < 1:
            raise ValueError(f"max_newton_iterations must be >= 1, got {max_newton_iterations}")
        self.newton_tolerance = float(newton_tolerance)
        self.max_newton_iterations = max_newton_iterations
        self.last_newton_failures = 0
        super().__init__(problem, backend)

    def _build(self) -> None:
        b, p = self.backend, self.problem
        self._x = b.from_numpy(p.x)
        self._t = b.from_numpy(p.t)
        self._g = b.from_numpy(p.g)
        self._m0 = b.from_numpy(p.m0)
        self._march_compiled = b.jit(self._march)

    def solve(self, M: Any = None) -> np.ndarray:
        """Value function on a given density path.

        Parameters
        ----------
        M : array (Nt + 1, Nx), optional
            Density at every time level (NumPy or backend array). Default: the initial
            density frozen in time, ``M[n] = m0``.

        Returns
        -------
        numpy.ndarray (Nt + 1, Nx)
        """
        return self.backend.to_numpy(self.solve_backend(M))

    def solve_backend(self, M: Any = None) -> Any:
        """As :meth:`solve`, returning a backend array (no transfer to the host)."""
        p = self.problem
        if M is None:
            M = self.xp.broadcast_to(self._m0[None, :], p.shape)
        M = self._as_backend(M, "M", p.shape)
        U, failures = self._march_compiled(M)
        self.last_newton_failures = int(self.backend.to_numpy(failures))
        return U

    def _march(self, M: Any) -> tuple[Any, Any]:
        xp, b, p = self.xp, self.backend, self.problem
        dt, dx, nu, lam = p.dt, p.dx, p.nu, p.control_cost
        periodic = p.boundary == "periodic"
        solve_linear = b.solve_cyclic_tridiagonal if periodic else b.solve_tridiagonal
        x, zero = self._x, xp.zeros_like(self._x)
        tol, max_it = self.newton_tolerance, self.max_newton_iterations

        def time_step(u_next, inputs):
            m, t = inputs
            rhs = u_next / dt + (zero + p.running_cost(x, m, t))

            def cond(state):
                _, it, step = state
                return (it < max_it) & (step > tol)

            def body(state):
                u, it, _ = state
                h, dh_plus, dh_minus = st.hamiltonian(xp, u, dx, lam, periodic)
                residual = u / dt - nu * st.laplacian(xp, u, dx, periodic) + h - rhs
                lower, diag, upper = st.hjb_jacobian(xp, dh_plus, dh_minus, dx, nu, dt, periodic)
                delta = solve_linear(lower, diag, upper, residual)
                u = u - delta
                step = xp.max(xp.abs(delta)) / xp.maximum(xp.max(xp.abs(u)), 1.0)
                # NaN must stop the loop: (nan > tol) is False, so map NaN to "failed".
                step = xp.where(xp.isnan(step), xp.asarray(math.inf, dtype=b.dtype), step)
                return u, it + 1, step

            init = (u_next, xp.asarray(0), xp.asarray(math.inf, dtype=b.dtype))
            u, _, step = b.while_loop(cond, body, init)
            return u, (u, step > tol)

        inputs = (xp.flip(M[1:], axis=0), xp.flip(self._t[1:], axis=0))
        _, (values, failed) = b.scan(time_step, self._g, inputs)
        U = xp.concat([xp.flip(values, axis=0), self._g[None, :]], axis=0)
        return U, xp.sum(xp.astype(failed, xp.int64))
