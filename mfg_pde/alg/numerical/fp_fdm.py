"""Fokker–Planck finite differences: the discrete adjoint of the linearised HJB scheme."""

from __future__ import annotations

from typing import Any

import numpy as np

from mfg_pde.alg.numerical import _fdm1d_host as fdm1d
from mfg_pde.alg.numerical import _grid2d as g2
from mfg_pde.alg.numerical import _stencils as st
from mfg_pde.alg.numerical._base import BaseSolver, check_krylov_options, compiled_program
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

    In 1D the matrices of all time levels are built at once (vectorised over time) and
    only the tridiagonal solves run in sequence. In 2D each step builds its operator
    from ``U^n`` (one level's arrays stay in cache) and solves it by preconditioned
    BiCGSTAB (:func:`~mfg_pde.alg.numerical._grid2d.solve`) from ``M^n``, to
    ``krylov_tolerance`` times ``max |M^n| / dt``.

    In 2D an exact solve would conserve mass to round-off; the Krylov solve stops at its
    tolerance, and the mass it is off by (at most ``dt`` times the residual's sum,
    ~1e-13 relative) is removed by rescaling ``M^{n+1}``, a change within the solve's
    own error, so ``sum(M^n) dx dy`` is conserved to round-off at every level.

    Parameters
    ----------
    problem : MFGProblem
    backend : str, BaseBackend or None
    krylov_tolerance : float
        2D only: relative tolerance of each step's linear solve.
    max_krylov_iterations : int
        2D only: BiCGSTAB iterations per time step.
    """

    def __init__(
        self,
        problem: Any,
        backend: str | BaseBackend | None = None,
        krylov_tolerance: float = 1e-12,
        max_krylov_iterations: int = 200,
    ) -> None:
        check_krylov_options(krylov_tolerance, max_krylov_iterations)
        self.krylov_tolerance = float(krylov_tolerance)
        self.max_krylov_iterations = max_krylov_iterations
        super().__init__(problem, backend)

    def _build(self) -> None:
        self._arrays = self.problem_arrays()

    def march_program(self) -> Any:
        """The compiled ``(arrays, U) -> M`` of this problem's structure."""
        p = self.problem
        key = ("fp", p.grid_shape, p.Nt, p.boundaries)
        if p.dim == 2:
            key += (self.krylov_tolerance, self.max_krylov_iterations)
        return compiled_program(self.backend, key, self.make_march)[0]

    def make_march(self) -> Any:
        """The uncompiled march of this problem's dimension."""
        p = self.problem
        if p.dim == 2:
            return make_fp_march_2d(
                self.backend, p.periodic, self.krylov_tolerance, self.max_krylov_iterations
            )
        return make_fp_march(self.backend, p.boundary == "periodic")

    def solve(self, U: Any = None) -> np.ndarray:
        """Density path for a given value function.

        Parameters
        ----------
        U : array (Nt + 1, Nx) or (Nt + 1, nx, ny), optional
            Value function at every time level. Default: the terminal cost at every
            time, ``U[n] = g`` (agents follow ``-g'/λ``).

        Returns
        -------
        numpy.ndarray of U's shape
        """
        return self.backend.to_numpy(self.solve_backend(U))

    def solve_backend(self, U: Any = None) -> Any:
        """As :meth:`solve`, returning a backend array."""
        p = self.problem
        if U is None:
            U = self.xp.broadcast_to(self._arrays["g"][None, ...], p.shape)
        return self.march_program()(self._arrays, self._as_backend(U, "U", p.shape))


def make_fp_march(backend: BaseBackend, periodic: bool):
    """The forward march as a pure function ``(arrays, U) -> M`` (see :class:`FPFDMSolver`)."""
    b, xp = backend, backend.xp
    kernels = b.fdm_1d_kernels()

    def march(arrays: dict, U: Any) -> Any:
        if kernels is not None:  # one compiled pass, the same numbers (numpy, torch on CPU)
            return fdm1d.fp_march(kernels, b, arrays, U, periodic)
        c = arrays["c"]
        diag0 = 1.0 / c.dt + (c.nu / (c.dx * c.dx)) * arrays["counts"]
        a, bb, _ = st.upwind_derivatives(xp, U[:-1, ...], c, periodic)
        lower, diag, upper = st.transpose(xp, *st.hjb_jacobian_from_slopes(a, bb, diag0, c))
        # T_n m^{n+1} = m^n / dt: a march with m^0 / dt as the first level's right side.
        m0 = arrays["m0"]
        rhs = xp.concat([m0[None, :] / c.dt, xp.zeros_like(diag[1:, ...])], axis=0)
        densities = b.march_tridiagonal(lower, diag, upper, rhs, 1.0 / c.dt, periodic=periodic)
        return xp.concat([m0[None, :], densities], axis=0)

    return march


def make_fp_march_2d(
    backend: BaseBackend, periodic: tuple[bool, bool], krylov_tolerance: float, max_krylov: int
):
    """The 2D forward march ``(arrays, U) -> M`` (see :class:`FPFDMSolver`); in one call
    of the backend's compiled march where it has one
    (:meth:`~mfg_pde.backends.BaseBackend.fp_march_2d_kernel`)."""
    b, xp = backend, backend.xp
    kernel = b.fp_march_2d_kernel()

    def march(arrays: dict, U: Any) -> Any:
        c = arrays["c"]
        if kernel is not None:
            constants = (c.dx, c.dy, c.dt, c.nu, c.control_cost)
            return kernel(U, arrays["m0"], constants, periodic, krylov_tolerance, max_krylov)
        diag0 = 1.0 / c.dt

        def time_step(m, u):
            # The operator of level n from U^n, here rather than for all levels at once:
            # one level's arrays stay in cache on the CPU (0.085 s of 0.25 s per march
            # at 128^2 x 100 on numpy, measured), and U^n orders the unknowns along the
            # flow for the ordered solver.
            _, _, lines = g2.level_terms(b, u, c, arrays["counts"], periodic, values=False)
            rhs = m / c.dt
            m_next, _, _ = g2.solve(
                b,
                diag0,
                lines,
                periodic,
                rhs,
                m,
                krylov_tolerance * xp.max(xp.abs(rhs)),
                max_krylov,
                order_key=u,
                transpose=True,
            )
            m_next = m_next * (xp.sum(m) / xp.sum(m_next))
            return m_next, m_next

        _, densities = b.scan(time_step, arrays["m0"], U[:-1])
        return xp.concat([arrays["m0"][None, ...], densities], axis=0)

    return march
