"""Fokker–Planck finite differences: the discrete adjoint of the linearised HJB scheme."""

from __future__ import annotations

from typing import Any

import numpy as np

from mfg_pde.alg.numerical import _stencils as st
from mfg_pde.alg.numerical._base import BaseSolver, compiled_program
from mfg_pde.backends import BaseBackend


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

    The matrices of all time levels are built at once (vectorised over time); only the
    tridiagonal solves run in sequence.

    Parameters
    ----------
    problem : MFGProblem
    backend : str, BaseBackend or None
    """

    def _build(self) -> None:
        self._arrays = self.problem_arrays()

    def march_program(self) -> Any:
        """The compiled ``(arrays, U) -> M`` of this problem's structure."""
        p = self.problem
        key = ("fp", p.Nx, p.Nt, p.boundary)
        return compiled_program(
            self.backend, key, lambda: make_fp_march(self.backend, p.boundary == "periodic")
        )[0]

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
            U = self.xp.broadcast_to(self._arrays["g"][None, :], p.shape)
        return self.march_program()(self._arrays, self._as_backend(U, "U", p.shape))


def make_fp_march(backend: BaseBackend, periodic: bool):
    """The forward march as a pure function ``(arrays, U) -> M`` (see :class:`FPFDMSolver`)."""
    b, xp = backend, backend.xp
    solve_linear = b.solve_cyclic_tridiagonal if periodic else b.solve_tridiagonal

    def march(arrays: dict, U: Any) -> Any:
        c = arrays["c"]
        diag0 = 1.0 / c.dt + (c.nu / (c.dx * c.dx)) * arrays["counts"]
        a, bb, _ = st.upwind_derivatives(xp, U[:-1], c, periodic)
        matrices = st.transpose(xp, *st.hjb_jacobian_from_slopes(a, bb, diag0, c))

        def time_step(m, matrix):
            m_next = solve_linear(*matrix, m / c.dt)
            return m_next, m_next

        _, densities = b.scan(time_step, arrays["m0"], matrices)
        return xp.concat([arrays["m0"][None, :], densities], axis=0)

    return march
