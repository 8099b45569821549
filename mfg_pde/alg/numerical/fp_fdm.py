"""Fokker–Planck finite differences: the discrete adjoint of the linearised HJB scheme."""

from __future__ import annotations

from typing import Any

import numpy as np

from mfg_pde.alg.numerical import _stencils as st
from mfg_pde.alg.numerical._base import BaseSolver


class FPFDMSolver(BaseSolver):
    r"""Forward FP solve on a fixed value function (Achdou & Capuzzo-Dolcetta 2010).

    For ``n = 0, ..., Nt-1``:

    .. math::
        \left(\frac{I}{\Delta t} - \nu \Delta_h + L(U^n)\right)^{\!T} M^{n+1}
            = \frac{M^n}{\Delta t},

    where ``L(U^n)`` is the Jacobian of the numerical Hamiltonian at ``U^n`` (the same
    operator the HJB Newton step uses). The matrix in brackets is an M-matrix with zero
    row sums besides ``I/dt``, so its transpose preserves ``sum(M) * dx`` exactly (to
    round-off) and maps nonnegative densities to nonnegative densities.

    Parameters
    ----------
    problem : MFGProblem
    backend : str, BaseBackend or None
    """

    def _build(self) -> None:
        b = self.backend
        self._m0 = b.from_numpy(self.problem.m0)
        self._g = b.from_numpy(self.problem.g)
        self._march_compiled = b.jit(self._march)

    def solve(self, U: Any = None) -> np.ndarray:
        """Density path for a given value function.

        Parameters
        ----------
        U : array (Nt + 1, Nx), optional
            Value function at every time level. Default: the terminal cost at every
            time, ``U[n] = g`` (agents follow ``-g'/λ``).

        Returns
        -------
        numpy.ndarray (Nt + 1, Nx)
        """
        return self.backend.to_numpy(self.solve_backend(U))

    def solve_backend(self, U: Any = None) -> Any:
        """As :meth:`solve`, returning a backend array."""
        p = self.problem
        if U is None:
            U = self.xp.broadcast_to(self._g[None, :], p.shape)
        return self._march_compiled(self._as_backend(U, "U", p.shape))

    def _march(self, U: Any) -> Any:
        xp, b, p = self.xp, self.backend, self.problem
        periodic = p.boundary == "periodic"
        solve_linear = b.solve_cyclic_tridiagonal if periodic else b.solve_tridiagonal

        def time_step(m, u):
            _, dh_plus, dh_minus = st.hamiltonian(xp, u, p.dx, p.control_cost, periodic)
            matrix = st.hjb_jacobian(xp, dh_plus, dh_minus, p.dx, p.nu, p.dt, periodic)
            m_next = solve_linear(*st.transpose(xp, *matrix), m / p.dt)
            return m_next, m_next

        _, densities = b.scan(time_step, self._m0, U[:-1])
        return xp.concat([self._m0[None, :], densities], axis=0)
