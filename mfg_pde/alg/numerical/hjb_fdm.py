"""Implicit monotone upwind scheme for the HJB equation, Newton's method per time step."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde.alg.numerical import _grid2d as g2
from mfg_pde.alg.numerical import _stencils as st
from mfg_pde.alg.numerical._base import (
    BaseSolver,
    check_krylov_options,
    compiled_program,
    running_costs,
)
from mfg_pde.backends import BaseBackend

#: Newton iterations a sync-free march (torch) runs unconditionally per time step before
#: it checks, once after the march, whether every step converged.
SYNC_FREE_NEWTON_ITERATIONS = 4


class HJBFDMSolver(BaseSolver):
    r"""Backward HJB solve on a fixed density path (Achdou & Capuzzo-Dolcetta 2010).

    For ``n = Nt-1, ..., 0`` it solves, for ``U^n``,

    .. math::
        \frac{U^n_i - U^{n+1}_i}{\Delta t} - \nu (\Delta_h U^n)_i
            + H(D^+U^n_i, D^-U^n_i) = f(x_i, M^{n+1}, t_{n+1}),

    with the Godunov Hamiltonian of :func:`~mfg_pde.alg.numerical._stencils.upwind_derivatives`
    and ``U^{Nt} = g``. Each step is a nonlinear system with a tridiagonal (cyclic when
    periodic) M-matrix Jacobian, solved by Newton's method. The scheme is monotone and
    first order in ``dx`` and ``dt``.

    Newton starts from ``U^{n+1}``, or from a guess of the whole path (the fixed-point
    iterator passes its current iterate, which is within the last Picard change of the
    answer, so late iterations need two Newton steps). It stops when the error estimate
    of the last step is below the tolerance: ``|δ_k| <= tol`` or, once the contraction
    rate ``ρ = |δ_k| / |δ_{k-1}| < 1/2`` is measured, ``2 ρ |δ_k| <= tol`` (the usual
    ``ρ/(1-ρ) |δ_k|`` bound; Kelley, *Iterative Methods for Linear and Nonlinear
    Equations*, 1995), with ``tol = newton_tolerance * max(1, max|U^{n+1}|)``.

    On torch the march never waits for the device: each time step runs a fixed number
    of Newton steps (``SYNC_FREE_NEWTON_ITERATIONS`` at first, then one more than the
    hardest step of the previous solve needed), and one check after the march reruns
    it with more steps if any time step had not converged.

    Parameters
    ----------
    problem : MFGProblem
    backend : str, BaseBackend or None
        None chooses automatically (torch > jax > numpy).
    newton_tolerance : float
        Relative tolerance of the Newton error estimate, in (0, 1).
    max_newton_iterations : int
        Cap per time step. Steps that hit it are counted in :attr:`last_newton_failures`.
    krylov_tolerance : float
        2D only: each Newton step's linear system (5-point, see
        :mod:`~mfg_pde.alg.numerical._grid2d`) is solved by preconditioned BiCGSTAB
        to ``krylov_tolerance`` times the size of the Newton residual, or to
        ``tol / (10 dt)`` if that is larger (an inexact Newton method: the outer Newton
        test decides when the step is solved).
    max_krylov_iterations : int
        2D only: BiCGSTAB iterations per linear solve.

    Notes
    -----
    In 1D each Newton step is one tridiagonal solve. In 2D it is a Krylov solve
    preconditioned by a Gauss-Seidel sweep ordered along the flow (numpy with numba) or
    by two batched tridiagonal solves, one along each axis (the other backends);
    :attr:`last_krylov_iterations` counts the BiCGSTAB iterations of the last march.
    A sparse direct solve (SuperLU) was measured slower at every size that matters
    (docs/two_d.md).
    """

    def __init__(
        self,
        problem: MFGProblem,
        backend: str | BaseBackend | None = None,
        newton_tolerance: float = 1e-11,
        max_newton_iterations: int = 30,
        krylov_tolerance: float = 1e-4,
        max_krylov_iterations: int = 200,
    ) -> None:
        if not (isinstance(newton_tolerance, (int, float)) and 0 < newton_tolerance < 1):
            raise ValueError(f"newton_tolerance must be in (0, 1), got {newton_tolerance!r}")
        if isinstance(max_newton_iterations, bool) or not isinstance(max_newton_iterations, int):
            raise TypeError(f"max_newton_iterations must be an int, got {max_newton_iterations!r}")
        if max_newton_iterations < 1:
            raise ValueError(f"max_newton_iterations must be >= 1, got {max_newton_iterations}")
        check_krylov_options(krylov_tolerance, max_krylov_iterations)
        self.newton_tolerance = float(newton_tolerance)
        self.max_newton_iterations = max_newton_iterations
        self.krylov_tolerance = float(krylov_tolerance)
        self.max_krylov_iterations = max_krylov_iterations
        self._failures: Any = 0
        self._krylov_iterations: Any = 0
        super().__init__(problem, backend)

    @property
    def last_newton_failures(self) -> int:
        """Time steps of the last solve whose Newton iteration did not converge."""
        return int(self.backend.to_numpy(self._failures))

    @property
    def last_krylov_iterations(self) -> int:
        """2D: BiCGSTAB iterations of the last solve, summed over time steps and Newton
        steps (0 in 1D)."""
        return int(self.backend.to_numpy(self._krylov_iterations))

    @property
    def sync_free(self) -> bool:
        """Whether the march runs a fixed Newton count instead of waiting on the device
        (where a host read costs a sync, :attr:`BaseBackend.syncs_cost`, in 1D; a 2D
        step's Krylov loop checks its residual anyway)."""
        return self.backend.syncs_cost and self.problem.dim == 1

    def _build(self) -> None:
        self._arrays = self.problem_arrays()
        self._newton_count = min(SYNC_FREE_NEWTON_ITERATIONS, self.max_newton_iterations)

    def march_program(self, newton_count: int | None = None) -> Any:
        """The compiled march ``(arrays, M, U_guess) -> (U, failures, most)`` (see
        :func:`make_hjb_march`) of this problem's structure.

        ``newton_count``: None runs Newton to convergence (a data-dependent loop);
        an int runs exactly that many steps per time level (no host synchronisation).
        """
        p = self.problem
        key = (
            "hjb",
            p.grid_shape,
            p.Nt,
            p.boundaries,
            p.running_cost,
            tuple(p.cost_parameters),
            self.newton_tolerance,
            self.max_newton_iterations,
            newton_count,
            *((self.krylov_tolerance, self.max_krylov_iterations) if p.dim == 2 else ()),
        )
        return compiled_program(self.backend, key, lambda: self.make_march(newton_count))[0]

    def make_march(self, newton_count: int | None = None) -> Any:
        """The uncompiled march of this problem's dimension (see :meth:`march_program`)."""
        p = self.problem
        if p.dim == 2:
            return make_hjb_march_2d(
                self.backend,
                p.running_cost,
                p.periodic,
                self.newton_tolerance,
                self.max_newton_iterations,
                self.krylov_tolerance,
                self.max_krylov_iterations,
            )
        return make_hjb_march(
            self.backend,
            p.running_cost,
            p.boundary == "periodic",
            self.newton_tolerance,
            self.max_newton_iterations,
            newton_count,
        )

    def solve(self, M: Any = None, U_guess: Any = None) -> np.ndarray:
        """Value function on a given density path.

        Parameters
        ----------
        M : array (Nt + 1, Nx) or (Nt + 1, nx, ny), optional
            Density at every time level (NumPy or backend array). Default: the initial
            density frozen in time, ``M[n] = m0``.
        U_guess : array of U's shape, optional
            Newton's starting point at each time level (default ``U^{n+1}``). It changes
            the work, not the answer (beyond the Newton tolerance).

        Returns
        -------
        numpy.ndarray (Nt + 1, Nx) or (Nt + 1, nx, ny)
        """
        return self.backend.to_numpy(self.solve_backend(M, U_guess))

    def solve_backend(self, M: Any = None, U_guess: Any = None) -> Any:
        """As :meth:`solve`, returning a backend array (no transfer to the host).

        On jax the failure count stays on the device until :attr:`last_newton_failures`
        is read; on torch one synchronisation checks it after the march.
        """
        p = self.problem
        if M is None:
            M = self.xp.broadcast_to(self._arrays["m0"][None, ...], p.shape)
        M = self._as_backend(M, "M", p.shape)
        if U_guess is not None:
            U_guess = self._as_backend(U_guess, "U_guess", p.shape)
        if p.dim == 2:
            U, self._failures, _, self._krylov_iterations = self.march_program()(
                self._arrays, M, U_guess
            )
            return U
        if not self.sync_free:
            U, self._failures, _ = self.march_program()(self._arrays, M, U_guess)
            return U
        while True:
            U, self._failures, most = self.march_program(self._newton_count)(
                self._arrays, M, U_guess
            )
            failures, most = (
                int(v) for v in self.backend.to_numpy(self.xp.stack([self._failures, most]))
            )
            if failures and self._newton_count < self.max_newton_iterations:
                # Some step needed more Newton steps: rerun with more.
                self._newton_count = min(self._newton_count + 2, self.max_newton_iterations)
                continue
            # Next time run as many as the hardest step needed now (plus one to spare:
            # a rerun costs a whole march, one more step a quarter of one).
            self._newton_count = min(max(most + 1, 2), self.max_newton_iterations)
            return U


def make_hjb_march(
    backend: BaseBackend,
    running_cost: Any,
    periodic: bool,
    tolerance: float,
    max_iterations: int,
    newton_count: int | None = None,
):
    """The backward march, a pure function ``(arrays, M, U_guess) -> (U, failures, most)``.

    ``arrays`` is :func:`~mfg_pde.alg.numerical._base.problem_arrays`; everything that
    may change between problems of one shape is read from it, so the function compiles
    once per shape and boundary. ``failures`` (a 0-d integer array) counts the time steps
    whose Newton iteration did not converge, ``most`` is the largest number of Newton
    steps a time step needed. See :class:`HJBFDMSolver`.
    """
    b, xp = backend, backend.xp
    solve_linear = b.solve_cyclic_tridiagonal if periodic else b.solve_tridiagonal
    kernel = None if periodic or newton_count is not None else b.hjb_march_kernel()

    def compiled_march(arrays: dict, M: Any, U_guess: Any) -> tuple[Any, Any, Any]:
        """The march in one call of the backend's kernel; the running cost (a Python
        callable) is evaluated level by level first, as the array version does."""
        c = arrays["c"]
        f = running_costs(b, running_cost, arrays, M[1:, ...], arrays["t"][1:])
        diag0 = 1.0 / c.dt + (c.nu / (c.dx * c.dx)) * np.asarray(arrays["counts"])
        guess = np.zeros((1, 1)) if U_guess is None else np.ascontiguousarray(U_guess)
        U, failures, most = kernel(
            np.ascontiguousarray(arrays["g"], dtype=np.float64),
            np.ascontiguousarray(f, dtype=np.float64),
            guess,
            U_guess is not None,
            float(c.dx),
            float(c.dt),
            float(c.nu),
            float(c.control_cost),
            np.ascontiguousarray(diag0, dtype=np.float64),
            float(tolerance),
            int(max_iterations),
        )
        return b.from_numpy(U), b.from_numpy(np.asarray(failures)), b.from_numpy(np.asarray(most))

    def march(arrays: dict, M: Any, U_guess: Any) -> tuple[Any, Any]:
        if kernel is not None:
            return compiled_march(arrays, M, U_guess)
        c, x, cost = arrays["c"], arrays["x"], arrays["cost"]
        diag0 = 1.0 / c.dt + (c.nu / (c.dx * c.dx)) * arrays["counts"]
        zero = xp.zeros_like(x)
        newton_init = _newton_counters(b)

        def newton_step(state, rhs, tol):
            u, it, step, done_before, used = state
            a, bb, d = st.upwind_derivatives(xp, u, c, periodic)
            hamiltonian = (0.5 * c.control_cost) * (a * a + bb * bb)
            diffusion = (c.nu / c.dx) * (d[1:] - d[:-1])
            residual = u / c.dt - diffusion + hamiltonian - rhs
            delta = solve_linear(*st.hjb_jacobian_from_slopes(a, bb, diag0, c), residual)
            new_step = xp.max(xp.abs(delta))
            done = _newton_done(it, step, new_step, tol)
            if newton_count is not None:
                # Steps taken until converged (a fixed-count loop goes on past that point;
                # a while loop stops there, and its count `it` is the same number).
                used = used + xp.astype(~done_before, used.dtype)
            return u - delta, it + 1, new_step, done, used

        def time_step(u_next, inputs):
            m, t, guess, guess_next = inputs
            rhs = u_next / c.dt + (zero + running_cost(x, m, t, **cost))
            tol = tolerance * xp.maximum(xp.max(xp.abs(u_next)), 1.0)
            # From a guess of the path, predict by the change just made at level n + 1.
            start = u_next if guess is None else guess + (u_next - guess_next)
            state = (start, *newton_init)
            if newton_count is None:
                state = b.while_loop(
                    lambda s: (s[1] < max_iterations) & ~s[3],
                    lambda s: newton_step(s, rhs, tol),
                    state,
                )
            else:
                for _ in range(newton_count):
                    state = newton_step(state, rhs, tol)
            u, it, _, done, used = state
            return u, (u, ~done, it if newton_count is None else used)

        inputs = _backward_inputs(xp, arrays, M, U_guess)
        _, (values, failed, used) = b.scan(time_step, arrays["g"], inputs)
        U = xp.concat([xp.flip(values, axis=0), arrays["g"][None, :]], axis=0)
        return U, xp.sum(xp.astype(failed, xp.int64)), xp.max(used)

    return march


def _backward_inputs(xp: Any, arrays: dict, M: Any, U_guess: Any) -> tuple:
    """What a backward march scans over, level ``n = Nt-1, ..., 0``: ``M^{n+1}``,
    ``t_{n+1}``, and the guesses ``U_guess^n``, ``U_guess^{n+1}`` (None without a guess)."""
    guesses = guesses_next = None
    if U_guess is not None:
        guesses = xp.flip(U_guess[:-1, ...], axis=0)
        guesses_next = xp.flip(U_guess[1:, ...], axis=0)
    return (xp.flip(M[1:, ...], axis=0), xp.flip(arrays["t"][1:], axis=0), guesses, guesses_next)


def _newton_counters(backend: BaseBackend) -> tuple:
    """Newton's counters (iterations, last step size, converged, steps used), made once
    per march."""
    xp, dev = backend.xp, backend._device_kw()
    return (
        xp.asarray(0, **dev),
        xp.asarray(math.inf, dtype=backend.dtype, **dev),
        xp.asarray(False, **dev),
        xp.asarray(0, **dev),
    )


def _newton_done(it: Any, step: Any, new_step: Any, tol: Any) -> Any:
    """Kelley's test on Newton's error estimate (see :class:`HJBFDMSolver`).

    ``step`` is the previous step's size (inf before the first step, so the measured
    rate is not trusted then), ``new_step`` this one's; the estimate is ``|δ|`` itself,
    or ``2ρ|δ|`` once a contraction rate ``ρ < 1/2`` is seen.
    """
    rate = new_step / step
    return (new_step <= tol) | ((it >= 1) & (rate < 0.5) & (2.0 * rate * new_step <= tol))


def make_hjb_march_2d(
    backend: BaseBackend,
    running_cost: Any,
    periodic: tuple[bool, bool],
    tolerance: float,
    max_iterations: int,
    krylov_tolerance: float,
    max_krylov_iterations: int,
):
    """The 2D backward march ``(arrays, M, U_guess) -> (U, failures, most, krylov)``.

    As :func:`make_hjb_march` (same Newton iteration, start and stopping test), with
    the 5-point operator of :mod:`~mfg_pde.alg.numerical._grid2d` and each Newton step's
    linear system solved by preconditioned BiCGSTAB
    (:func:`~mfg_pde.alg.numerical._grid2d.solve`) to ``krylov_tolerance`` times the
    Newton residual (see :class:`HJBFDMSolver`). ``krylov`` counts the BiCGSTAB
    iterations of the whole march.
    """
    b, xp = backend, backend.xp
    kernel = b.hjb_march_2d_kernel()

    def compiled_march(arrays: dict, M: Any, U_guess: Any) -> tuple:
        """The march in one call of the backend's kernel; the running cost (a Python
        callable) is evaluated for all levels first, as the 1D compiled march does."""
        c = arrays["c"]
        f = running_costs(b, running_cost, arrays, M[1:, ...], arrays["t"][1:])
        constants = (c.dx, c.dy, c.dt, c.nu, c.control_cost)
        options = (tolerance, max_iterations, krylov_tolerance, max_krylov_iterations)
        return kernel(arrays["g"], f, U_guess, constants, periodic, *options)

    def march(arrays: dict, M: Any, U_guess: Any) -> tuple:
        if kernel is not None:
            return compiled_march(arrays, M, U_guess)
        c, coords, cost, counts = arrays["c"], arrays["coords"], arrays["cost"], arrays["counts"]
        diag0 = 1.0 / c.dt
        zero = xp.zeros_like(coords[0])
        newton_init = _newton_counters(b)

        def newton_step(state, rhs, tol):
            u, it, step, _, krylov = state
            hamiltonian, diffusion, lines = g2.level_terms(b, u, c, counts, periodic)
            residual = u / c.dt - diffusion + hamiltonian - rhs
            delta, used, _ = g2.solve(
                b,
                diag0,
                lines,
                periodic,
                residual,
                xp.zeros_like(residual),
                # Relative to the residual, but no finer than Newton itself needs:
                # ||A^-1||_inf <= dt (row sums 1/dt, M-matrix), so a linear residual
                # below tol / (10 dt) moves the step by less than tol / 10. A time step
                # already solved to that accuracy costs no Krylov iteration.
                xp.maximum(krylov_tolerance * xp.max(xp.abs(residual)), (0.1 / c.dt) * tol),
                max_krylov_iterations,
                order_key=u,
            )
            new_step = xp.max(xp.abs(delta))
            done = _newton_done(it, step, new_step, tol)
            return u - delta, it + 1, new_step, done, krylov + used

        def time_step(carry, inputs):
            u_next, krylov = carry
            m, t, guess, guess_next = inputs
            rhs = u_next / c.dt + (zero + running_cost(*coords, m, t, **cost))
            tol = tolerance * xp.maximum(xp.max(xp.abs(u_next)), 1.0)
            start = u_next if guess is None else guess + (u_next - guess_next)
            state = b.while_loop(
                lambda s: (s[1] < max_iterations) & ~s[3],
                lambda s: newton_step(s, rhs, tol),
                (start, *newton_init[:3], krylov),
            )
            u, it, _, done, krylov = state
            return (u, krylov), (u, ~done, it)

        inputs = _backward_inputs(xp, arrays, M, U_guess)
        (_, krylov), (values, failed, used) = b.scan(
            time_step, (arrays["g"], newton_init[3]), inputs
        )
        U = xp.concat([xp.flip(values, axis=0), arrays["g"][None, ...]], axis=0)
        return U, xp.sum(xp.astype(failed, xp.int64)), xp.max(used), krylov

    return march
