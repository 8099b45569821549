"""The MFG solved on the leaves of an adaptive quadtree, the mesh following the solution.

:class:`AdaptiveMFGSolver` runs the damped fixed point of the uniform solvers (HJB
backward by Newton per step, FP forward as its discrete adjoint) on the finite volumes
of :mod:`~mfg_pde.alg.numerical._leaf_fv`, and every ``adapt_every`` iterations adapts
the mesh to indicators of ``U`` and ``M`` (the maximum over the time levels: one mesh
serves every level). Density moves conservatively, the value function by its limited
linear reconstruction. The solve ends when the iterate has converged on a mesh that the
last adapt did not change, with the residuals of the discrete equations on that mesh.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import scipy.sparse.linalg as spla

from mfg_pde._problem import MFGProblem
from mfg_pde.alg.numerical._base import check_krylov_options, check_solve_arguments
from mfg_pde.alg.numerical._krylov import bicgstab
from mfg_pde.alg.numerical._leaf_fv import LeafOperator, leaf_system
from mfg_pde.alg.numerical.hjb_fdm import _newton_done
from mfg_pde.backends import BaseBackend, create_backend
from mfg_pde.geometry._mesh import AdaptiveMesh
from mfg_pde.utils.anderson_acceleration import AndersonAccelerator
from mfg_pde.utils.progress import Progress

#: SuperLU's column ordering for the leaf Jacobians (see ``_linear_solve``).
ORDERING = "MMD_AT_PLUS_A"


class AdaptiveMFGSolver:
    """Fixed point on an adaptive quadtree (see the module docstring).

    Parameters
    ----------
    problem : MFGProblem
        Two-dimensional, no-flux. It supplies ``T``, ``Nt``, ``σ``, ``λ``, the costs and
        ``m0`` as functions of ``(x, y)``; they are evaluated at the leaf centres (its
        grid is not used). The running cost must be local in ``m`` (a function of the
        density at the point): leaves have different areas.
    mesh : AdaptiveMesh
        The mesh, adapted in place. Its rectangle is the domain. The uniform grid of
        ``MFGProblem(Nx=2**L)`` on ``[a, b]`` is the level-``L`` tree on
        ``[a - dx/2, b + dx/2]`` (nodes = leaf centres); on that tree the scheme is the
        uniform one term by term.
    backend : str, BaseBackend or None
        The mesh's backend (the default); another one is refused, since the mesh's
        kernels and arrays live there.
    thetaUM : float in (0, 1]
        Damping of the fixed point (as :class:`FixedPointIterator`).
    use_anderson, anderson_depth
        Anderson acceleration of the fixed point on ``(U, M)`` together, mixing
        ``thetaUM`` (as :class:`FixedPointIterator`); its history starts afresh after
        every adapt (the unknowns change).
    adapt_every : int >= 1, or None
        Iterations between adapts (3: measured on the concentrating benchmark, 12.9 s
        against 15.2 s with 5 at the same mesh and error); None never adapts.
    max_adapts : int >= 0
        Adapts allowed; then the mesh stays as it is (a mesh that keeps changing is
        reported in ``result.history``).
    mesh_tolerance : float in [0, 1)
        An adapt that refines and merges at most this fraction of the leaves is the
        last: the solve then converges on the mesh it made (0: only an adapt that
        changes nothing ends the adapting). A mesh creeping by a few leaves per adapt
        would otherwise cost ``adapt_every`` iterations per step.
    adapt_on : "U", "M" or both
        The fields whose indicators (:meth:`AdaptiveMesh.error_indicator`, the largest
        over the time levels) drive the adapts.
    newton_tolerance, max_newton_iterations
        Per HJB time step, as :class:`HJBFDMSolver`.
    krylov_tolerance : float in (0, 1)
        Each Newton step's linear solve stops at ``krylov_tolerance`` times the Newton
        residual (or ``tol / (10 dt)``), as :class:`HJBFDMSolver` in 2D.
    fp_krylov_tolerance : float in (0, 1)
        Each FP step's solve stops at this times ``max|rhs|``; the mass is then rescaled
        to the previous level's (exact for an exact solve), so it is kept to round-off.
    max_krylov_iterations : int
        Per linear solve; where the iterative solver does not converge, numpy and numba
        fall back to SuperLU. (How each backend solves: ``_linear_solve``.)
    """

    def __init__(
        self,
        problem: MFGProblem,
        mesh: AdaptiveMesh,
        backend: str | BaseBackend | None = None,
        thetaUM: float = 0.5,
        use_anderson: bool = False,
        anderson_depth: int = 5,
        adapt_every: int | None = 3,
        max_adapts: int = 8,
        adapt_on: tuple[str, ...] = ("U", "M"),
        mesh_tolerance: float = 0.01,
        newton_tolerance: float = 1e-11,
        max_newton_iterations: int = 30,
        krylov_tolerance: float = 1e-4,
        fp_krylov_tolerance: float = 1e-12,
        max_krylov_iterations: int = 1000,
    ) -> None:
        if not isinstance(problem, MFGProblem):
            raise TypeError(f"problem must be an MFGProblem, got {type(problem).__name__}")
        if problem.dim != 2:
            raise ValueError(
                f"the adaptive quadtree solves two-dimensional problems; this one has "
                f"dim={problem.dim} (use solve_mfg(problem) without mesh=)"
            )
        if any(kind != "noflux" for kind in problem.boundaries):
            raise ValueError(
                "the adaptive quadtree supports no-flux boundaries only, got "
                f"{problem.boundaries}; solve periodic problems on the uniform grid"
            )
        if not isinstance(mesh, AdaptiveMesh):
            raise TypeError(f"mesh must be an AdaptiveMesh, got {type(mesh).__name__}")
        for name in ("terminal_cost", "initial_density"):
            if not callable(getattr(problem, name)):
                raise TypeError(
                    f"on the adaptive mesh the problem's {name} must be a function of (x, y), "
                    "evaluated at the leaf centres; got an array"
                )
        if not (isinstance(thetaUM, (int, float)) and 0 < thetaUM <= 1):
            raise ValueError(f"thetaUM must be in (0, 1], got {thetaUM!r}")
        if adapt_every is not None and (
            isinstance(adapt_every, bool) or not isinstance(adapt_every, int) or adapt_every < 1
        ):
            raise ValueError(f"adapt_every must be an int >= 1 or None, got {adapt_every!r}")
        adapt_on = (adapt_on,) if isinstance(adapt_on, str) else tuple(adapt_on)
        if not adapt_on or any(name not in ("U", "M") for name in adapt_on):
            raise ValueError(f"adapt_on must name 'U' and/or 'M', got {adapt_on!r}")
        self.adapt_on = adapt_on
        if not (isinstance(mesh_tolerance, (int, float)) and 0 <= mesh_tolerance < 1):
            raise ValueError(f"mesh_tolerance must be in [0, 1), got {mesh_tolerance!r}")
        self.mesh_tolerance = float(mesh_tolerance)
        if isinstance(max_adapts, bool) or not isinstance(max_adapts, int) or max_adapts < 0:
            raise ValueError(f"max_adapts must be an int >= 0, got {max_adapts!r}")
        self.problem = problem
        self.mesh = mesh
        self.backend = mesh.backend if backend is None else create_backend(backend)
        if self.backend is not mesh.backend and (
            type(self.backend) is not type(mesh.backend)
            or self.backend.device != mesh.backend.device
        ):
            raise ValueError(
                f"backend {self.backend.name!r} ({self.backend.device}) is not the mesh's "
                f"({mesh.backend.name}, {mesh.backend.device}); create the mesh with "
                "AdaptiveMesh(..., backend=...) or leave backend=None"
            )
        self.backend = mesh.backend
        self.thetaUM = float(thetaUM)
        if not isinstance(use_anderson, bool):
            raise TypeError(f"use_anderson must be True or False, got {use_anderson!r}")
        self.use_anderson = use_anderson
        self.anderson_depth = int(anderson_depth)
        self.adapt_every = adapt_every
        self.max_adapts = max_adapts
        self.newton_tolerance = float(newton_tolerance)
        self.max_newton_iterations = int(max_newton_iterations)
        check_krylov_options(krylov_tolerance, max_krylov_iterations)
        check_krylov_options(fp_krylov_tolerance, max_krylov_iterations)
        self.krylov_tolerance = float(krylov_tolerance)
        self.fp_krylov_tolerance = float(fp_krylov_tolerance)
        self.max_krylov_iterations = int(max_krylov_iterations)

    @property
    def name(self) -> str:
        return f"AdaptiveMFGSolver[{self.backend.name}]"

    # -- one mesh -------------------------------------------------------------------------
    def _setup(self) -> dict:
        """Operators, problem data and the marches for the current leaves."""
        b, p = self.backend, self.problem
        leaves = self.mesh.leaves
        system = leaf_system(leaves, self.mesh.tree.neighbours(leaves))
        op = LeafOperator(system, b)
        x, y = (np.ascontiguousarray(system.centres[:, k]) for k in (0, 1))
        g = np.asarray(p.terminal_cost(x.copy(), y.copy()), dtype=np.float64) + 0.0 * x
        m0 = np.asarray(p.initial_density(x.copy(), y.copy()), dtype=np.float64) + 0.0 * x
        if np.any(m0 < 0) or not np.all(np.isfinite(m0)):
            raise ValueError("initial_density must be finite and nonnegative at the leaf centres")
        mass = float(np.sum(m0 * system.areas))
        if not mass > 0:
            raise ValueError("initial_density has no mass on the mesh")
        m0 = m0 / mass
        data = {
            "x": b.from_numpy(x),
            "y": b.from_numpy(y),
            "t": b.from_numpy(p.t),
            "g": b.from_numpy(g),
            "m0": b.from_numpy(m0),
            "areas": op.areas,
        }
        setup = {"system": system, "op": op, "data": data, "n": system.n}
        setup["programs"] = self._programs(setup)
        return setup

    def _running_cost(self, data: dict, m: Any, t: Any) -> Any:
        p = self.problem
        f = p.running_cost(data["x"], data["y"], m, t, **p.cost_parameters)
        return f + 0.0 * data["x"]

    def _linear_solve(
        self,
        op: LeafOperator,
        coefficients: Any,
        rhs: Any,
        transpose: bool,
        order_key: Any,
        atol: Any,
    ):
        """``J x = rhs`` (``J^T x = rhs``) to ``max|rhs - J x| <= atol``, with ``J = J(u)``
        and ``order_key = u``.

        numpy and numba: the assembled CSR matrix, by the backend's ordered solver where it
        has one (numpy with numba: BiCGSTAB preconditioned by one Gauss-Seidel sweep
        ordered along the flow, ascending ``u`` for ``J`` and descending for ``J^T``, as
        on the uniform grid), else, or where that does not converge, by SuperLU. jax and
        torch: BiCGSTAB through the backend (matrix-free, compiled on jax) with a Jacobi
        preconditioner, then one more round on the true residual (the recursively
        updated residual drifts from the true one on long runs).

        Measured on the adaptive 2D hello problem (5,300 leaves, 2-core CPU): SuperLU
        10 ms per solve (MMD on AᵀA+A; COLAMD 1.5x slower), Jacobi-BiCGSTAB ~60
        iterations at ``1/dt = 20``.
        """
        b = self.backend
        dt_inv = self.problem.Nt / self.problem.T
        if b.is_host_numpy:
            coefficients, rhs = np.asarray(coefficients), np.asarray(rhs)
            if not (np.all(np.isfinite(coefficients)) and np.all(np.isfinite(rhs))):
                return np.full_like(rhs, np.nan)  # reported by the fixed point, not by SuperLU
            A = op.jacobian_matrix(coefficients, dt_inv, transpose)
            solver = b.ordered_sparse_solver(
                A.indptr, A.indices, A.data, np.asarray(order_key), transpose
            )
            if solver is not None:
                x, _, converged = solver(rhs, 0.0, float(atol), self.max_krylov_iterations)
                if bool(converged):
                    return x
            return spla.spsolve(A.tocsc(), rhs, permc_spec=ORDERING)
        apply = op.jacobian_transpose_apply if transpose else op.jacobian_apply
        diagonal = op.jacobian_diagonal(coefficients, dt_inv)

        def matvec(v: Any) -> Any:
            return apply(coefficients, dt_inv, v)

        x = rhs / diagonal
        for _ in range(2):
            r = rhs - matvec(x)
            dx, _, _ = bicgstab(
                b, matvec, lambda v: v / diagonal, r, r / diagonal, atol, self.max_krylov_iterations
            )
            x = x + dx
        return x

    def _programs(self, setup: dict) -> dict:
        """The HJB march, the FP march and the residual of the current leaves, as pure
        functions of ``(M, U_guess)``, ``U`` and ``(U, M)``, compiled by the backend
        (one program per mesh on jax: the leaves' count is part of the shapes)."""
        b, xp, p = self.backend, self.backend.xp, self.problem
        op, data = setup["op"], setup["data"]
        dt_inv, nu, lam = p.Nt / p.T, p.nu, p.control_cost
        dev = b._device_kw()
        areas = data["areas"]
        newton_tol, max_newton = self.newton_tolerance, self.max_newton_iterations
        krylov_tol, fp_tol = self.krylov_tolerance, self.fp_krylov_tolerance

        def hjb_step(u_next: Any, inputs: tuple) -> tuple:
            m_next, t_next, guess = inputs
            f = self._running_cost(data, m_next, t_next)
            tol = newton_tol * xp.maximum(xp.max(xp.abs(u_next)), 1.0)

            def running(s: tuple) -> Any:
                return (s[0] < max_newton) & ~s[3]

            def newton(s: tuple) -> tuple:
                it, u, step, _ = s
                ham, diff, coef = op.terms(u, nu, lam)
                F = (u - u_next) * dt_inv - diff + ham - f
                # Inexact Newton (as the uniform HJB solver): the step to krylov_tolerance
                # times the residual, or to tol / (10 dt) if larger, which moves the step
                # by less than tol / 10; the Newton test decides when the level is solved.
                atol = xp.maximum(krylov_tol * xp.max(xp.abs(F)), (0.1 / dt_inv) * tol)
                delta = b.array(self._linear_solve(op, coef, F, False, u, atol))
                new_step = xp.max(xp.abs(delta))
                # Kelley's test, as HJBFDMSolver: |δ|, or 2ρ|δ| once a rate ρ < 1/2 shows.
                return it + 1, u - delta, new_step, _newton_done(it, step, new_step, tol)

            inf = xp.asarray(math.inf, dtype=b.dtype, **dev)
            start = (xp.asarray(0, **dev), guess, inf, xp.asarray(False, **dev))
            _, u, _, _ = b.while_loop(running, newton, start)
            return u, u

        def hjb(M: Any, U_guess: Any) -> Any:
            inputs = (
                xp.flip(M[1:, ...], axis=0),
                xp.flip(data["t"][1:], axis=0),
                xp.flip(U_guess[:-1, ...], axis=0),
            )
            _, levels = b.scan(hjb_step, data["g"], inputs)
            return xp.concat([xp.flip(levels, axis=0), data["g"][None, ...]])

        def fp_step(mu: Any, u: Any) -> tuple:
            _, _, coef = op.terms(u, nu, lam)
            rhs = mu * dt_inv
            atol = fp_tol * xp.max(xp.abs(rhs))
            new = b.array(self._linear_solve(op, coef, rhs, True, u, atol))
            # The exact step keeps sum(mu) (J 1 = 1/dt); a Krylov solve keeps it to its
            # tolerance. Rescaling by the ratio (a change within that tolerance) keeps the
            # mass to round-off over any number of steps.
            new = new * (xp.sum(mu) / xp.sum(new))
            return new, new / areas

        def fp(U: Any) -> Any:
            _, levels = b.scan(fp_step, data["m0"] * areas, U[:-1, ...])
            return xp.concat([data["m0"][None, ...], levels])

        def residual_step(carry: Any, inputs: tuple) -> tuple:
            u, u_next, m, m_next, t_next = inputs
            ham, diff, coef = op.terms(u, nu, lam)
            F = (u - u_next) * dt_inv - diff + ham - self._running_cost(data, m_next, t_next)
            G = op.jacobian_transpose_apply(coef, dt_inv, m_next * areas) / areas - m * dt_inv
            return carry, (xp.max(xp.abs(F)), xp.max(xp.abs(G)))

        def residual(U: Any, M: Any) -> tuple:
            inputs = (U[:-1, ...], U[1:, ...], M[:-1, ...], M[1:, ...], data["t"][1:])
            _, (F, G) = b.scan(residual_step, 0.0, inputs)
            return xp.max(F), xp.max(G)

        return {"hjb": b.jit(hjb), "fp": b.jit(fp), "residual": b.jit(residual)}

    def residual(self, setup: dict, U: Any, M: Any) -> tuple[float, float]:
        """``(max|F|, max|G|)``, the discrete HJB and FP equations at ``(U, M)`` on the
        current leaves (as :mod:`~mfg_pde.alg.numerical._residual` on uniform grids)."""
        F, G = setup["programs"]["residual"](U, M)
        return float(F), float(G)

    # -- the solve ------------------------------------------------------------------------
    def solve(
        self,
        max_iterations: int = 200,
        tolerance: float = 1e-6,
        *,
        equation_tolerance: float | None = None,
        verbose: bool = False,
    ):
        """Iterate, adapting the mesh, until converged on a mesh the last adapt kept.

        Converged means: relative changes of ``U`` and ``M`` below ``tolerance`` (as the
        uniform fixed point) and, if given, both equation residuals at most
        ``equation_tolerance``. Returns an
        :class:`~mfg_pde.alg.numerical.amr_result.AdaptiveMFGResult`.
        """
        from mfg_pde.alg.numerical.amr_result import AdaptiveMFGResult

        tolerance, equation_tolerance = check_solve_arguments(
            max_iterations, tolerance, equation_tolerance
        )
        b, xp, p = self.backend, self.backend.xp, self.problem
        start = time.perf_counter()
        setup = self._setup()
        data = setup["data"]
        shape = (p.Nt + 1, setup["n"])
        U = xp.broadcast_to(data["g"][None, ...], shape) + 0.0
        M = xp.broadcast_to(data["m0"][None, ...], shape) + 0.0
        history = [{"iteration": 0, "leaves": setup["n"], "refined": 0, "coarsened": 0}]
        residuals: dict[str, list[float]] = {"U": [], "M": [], "hjb": [], "fp": []}
        adapts, since_adapt, converged, settled = 0, 0, False, self.adapt_every is None
        reason = f"max_iterations={max_iterations} reached"
        theta = self.thetaUM
        accelerator = None
        if self.use_anderson:
            accelerator = AndersonAccelerator(b, depth=self.anderson_depth, beta=theta)
        progress = Progress(max_iterations, verbose, description="adaptive MFG")
        k = 0
        while k < max_iterations:
            k += 1
            since_adapt += 1
            U_hat = setup["programs"]["hjb"](M, U)
            M_hat = setup["programs"]["fp"](U_hat)
            ru, rm = _relative(xp, U_hat, U), _relative(xp, M_hat, M)
            rh, rf = self.residual(setup, U_hat, M_hat)
            for key, v in (("U", ru), ("M", rm), ("hjb", rh), ("fp", rf)):
                residuals[key].append(v)
            done = ru < tolerance and rm < tolerance and rh <= equation_tolerance
            done = done and rf <= equation_tolerance
            if not all(math.isfinite(v) for v in (ru, rm, rh, rf)):
                bad = "U" if not math.isfinite(ru) else "M"
                reason = f"non-finite values in {bad} at iteration {k}; the last finite iterate"
                break
            if done:
                U, M = U_hat, M_hat
            elif accelerator is not None:
                size = U.shape[0] * U.shape[1]
                stacked = accelerator.update(
                    xp.concat([xp.reshape(U, (-1,)), xp.reshape(M, (-1,))]),
                    xp.concat([xp.reshape(U_hat, (-1,)), xp.reshape(M_hat, (-1,))]),
                )
                U = xp.reshape(stacked[:size], U.shape)
                M = xp.reshape(stacked[size:], M.shape)
            else:
                U = theta * U_hat + (1 - theta) * U
                M = theta * M_hat + (1 - theta) * M
            progress.update(k, {"U": ru, "M": rm, "leaves": setup["n"]})
            time_to_adapt = not settled and (done or since_adapt >= self.adapt_every)
            if time_to_adapt and adapts < self.max_adapts:
                stats = self.mesh.adapt(
                    {k: v for k, v in (("U", U), ("M", M)) if k in self.adapt_on}
                )
                adapts += 1
                since_adapt = 0
                history.append(
                    {
                        "iteration": k,
                        "leaves": stats.leaves,
                        "refined": stats.refined,
                        "coarsened": stats.coarsened,
                    }
                )
                if stats.changed:
                    U, M = self._transfer(U, M, stats.previous)
                    setup = self._setup()
                    data = setup["data"]
                    U = xp.concat([U[:-1, ...], data["g"][None, ...]])
                    M = xp.concat([data["m0"][None, ...], M[1:, ...]])
                    if accelerator is not None:
                        accelerator.reset()
                    # A change below mesh_tolerance settles the mesh: converge on it.
                    moved = stats.refined + stats.coarsened
                    settled = moved <= self.mesh_tolerance * len(stats.previous)
                    continue
                settled = True
            elif time_to_adapt:
                settled = True  # out of adapts: converge on this mesh
            if done and settled:
                converged = True
                reason = f"converged on a mesh of {setup['n']} leaves"
                break
        progress.close()
        rh, rf = self.residual(setup, U, M)
        return AdaptiveMFGResult(
            problem=p,
            mesh=self.mesh,
            system=setup["system"],
            U=b.to_numpy(U),
            M=b.to_numpy(M),
            converged=converged,
            reason=reason,
            iterations=k,
            residuals=residuals,
            equation_residuals={"hjb": rh, "fp": rf},
            history=history,
            solver=self.name,
            backend=b.name,
            device=b.device,
            seconds=time.perf_counter() - start,
        )

    def _transfer(self, U: Any, M: Any, previous: Any) -> tuple[Any, Any]:
        """Every time level to the new leaves: U smoothly, M conservatively."""
        return (
            self.mesh.transfer_value(U, previous),
            self.mesh.transfer_density(M, previous),
        )


def _relative(xp: Any, new: Any, old: Any) -> float:
    diff = float(xp.sqrt(xp.sum((new - old) ** 2)))
    return diff / max(float(xp.sqrt(xp.sum(new**2))), 1e-300)
