"""Tridiagonal and banded solves: part of :class:`BaseBackend`.

The Array API has no banded solver. :meth:`LinearSolves.solve_tridiagonal` is therefore
the hook a new backend implements with its library's own; the default here (parallel
cyclic reduction) works on any conforming namespace. The marches and the 2D solvers
build on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class LinearSolves:
    """:class:`~mfg_pde.backends.BaseBackend`'s linear solves."""

    xp: Any

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
        sweep in that order is sequential: the numpy backend with numba provides one,
        and torch and jax on the CPU call it (on the tensors' memory; through
        ``jax.pure_callback``). On a GPU they return None.
        """
        return None

    def ordered_sparse_solver(
        self, indptr: Any, indices: Any, data: Any, order_key: Any, descending: bool
    ) -> Callable[..., tuple] | None:
        """A compiled solver of the CSR system ``(indptr, indices, data)`` (host NumPy
        arrays), or None (the default) to use another method.

        As :meth:`ordered_grid_solver` for any sparsity: BiCGSTAB preconditioned by one
        Gauss-Seidel sweep with the unknowns in ascending ``order_key`` (descending with
        ``descending``), returned as ``solve(rhs, x0, atol, max_iterations) -> (x,
        iterations, converged)``. The adaptive mesh's implicit steps use it, ordered by
        the value function as on the grid. Only the numpy backend with numba provides
        one.
        """
        return None

    def hjb_march_kernel(self) -> Callable[..., tuple] | None:
        """A compiled 1D HJB march on a no-flux grid (host NumPy arrays in and out), or
        None (the default) to run the array version.

        The signature and contract are those of
        :func:`mfg_pde.backends._numba_marches.hjb_march_noflux`: the whole backward march,
        Newton per level with Kelley's test, in one call. Backends that run array
        operations one at a time on a CPU gain most (numpy with numba provides it, and
        torch on the CPU calls it on the tensors' memory).
        """
        return None

    def fdm_1d_kernels(self) -> Any:
        """The compiled 1D FP march, equation residual and member-wise HJB march over a
        stack of problems, or None (the default) to run the array versions.

        Returns a namespace with ``fp_march_1d``, ``equation_residual_1d`` and
        ``hjb_march_members`` of the contracts in :mod:`mfg_pde.backends._numba_fdm1d`:
        host NumPy arrays ``(Nt + 1, B, n)``, equal to the array versions to the bit,
        each filling a range of members and releasing the GIL (a batch runs two ranges in
        two threads). numpy with numba provides it; torch on the CPU calls it on its
        tensors' memory; jax keeps its fused programs.
        """
        return None

    def hjb_march_2d_kernel(self) -> Callable[..., tuple] | None:
        """A compiled 2D HJB march, or None (the default) to run the array version
        (:func:`~mfg_pde.alg.numerical.hjb_fdm.make_hjb_march_2d`, which then calls
        :meth:`upwind_terms_2d` and :meth:`ordered_grid_solver` per Newton step).

        Returns ``march(g, f, guess, constants, periodic, tolerance, max_iterations,
        krylov_tolerance, max_krylov) -> (U, failures, most, krylov)`` on this backend's
        arrays: ``g`` (nx, ny), ``f`` (Nt, nx, ny) the running cost at levels 1..Nt,
        ``guess`` (Nt + 1, nx, ny) or None, ``constants = (dx, dy, dt, nu,
        control_cost)`` (traced values on jax). The contract is that of
        :func:`mfg_pde.backends._numba_marches.hjb_march_2d`: the whole march in one
        call, equal to the array version's to the bit. numpy with numba provides it;
        torch on the CPU calls it on the tensors' memory, jax on the CPU through one
        ``jax.pure_callback`` per march (instead of one per Newton step).
        """
        return None

    def fp_march_2d_kernel(self) -> Callable[..., Any] | None:
        """A compiled 2D FP march, or None (the default) to run the array version
        (:func:`~mfg_pde.alg.numerical.fp_fdm.make_fp_march_2d`).

        Returns ``march(U, m0, constants, periodic, krylov_tolerance, max_krylov) -> M``
        on this backend's arrays, ``constants = (dx, dy, dt, nu, control_cost)``; the
        contract of :func:`mfg_pde.backends._numba_marches.fp_march_2d` (the densities
        equal the array version's to round-off). numpy with numba provides it, torch and
        jax on the CPU call it as :meth:`hjb_march_2d_kernel` does.
        """
        return None

    def equation_residual_2d_kernel(self) -> Callable[..., tuple] | None:
        """The 2D equation residual ``(F, G)`` in one compiled pass, or None (the
        default) to evaluate the array version
        (:func:`~mfg_pde.alg.numerical._residual.make_equation_residual`).

        Returns ``residual(U, M, f, constants, periodic) -> (F, G)`` on this backend's
        arrays, ``f`` (Nt, nx, ny) the running cost at levels 1..Nt, ``constants =
        (dx, dy, dt, nu, control_cost)``; the contract of
        :func:`mfg_pde.backends._numba_marches.equation_residual_2d`. numpy with numba
        provides it, torch on the CPU calls it on the tensors' memory and jax on the
        CPU through one ``jax.pure_callback`` (the fields passed as separate arguments:
        ~30 ms per evaluation at 128^2 x 100 where XLA's fused array version takes ~53).
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
        the FP one forward. The default is a :meth:`scan` over the levels (one compiled
        loop on jax, one level at a time elsewhere); backends with a compiled CPU loop
        override it (numpy with numba: one call for the whole march).
        """
        xp = self.xp
        solve = self.solve_cyclic_tridiagonal if periodic else self.solve_tridiagonal
        levels = (lower, diag, upper, rhs)
        if reverse:
            levels = tuple(xp.flip(a, axis=0) for a in levels)

        def level(previous: Any, row: tuple) -> tuple[Any, Any]:
            lo, d, up, r = row
            x = solve(lo, d, up, r + coupling * previous)
            return x, x

        _, out = self.scan(level, xp.zeros_like(rhs[0, ...]), levels)
        return xp.flip(out, axis=0) if reverse else out

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
