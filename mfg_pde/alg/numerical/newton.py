"""Newton's method on the whole discrete MFG system (all time levels of U and M at once)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfg_pde._problem import MFGProblem
from mfg_pde._result import MFGResult
from mfg_pde.alg.numerical._base import check_solve_arguments, initial_iterate, problem_arrays
from mfg_pde.alg.numerical._newton_device import DeviceNewton
from mfg_pde.alg.numerical._newton_iteration import (  # noqa: F401  (documented here)
    ARMIJO,
    EW_GAMMA,
    EW_MAX,
    MAX_HALVINGS,
    newton_attempt,
)
from mfg_pde.alg.numerical._newton_jacobian import linearisation, packed
from mfg_pde.alg.numerical._newton_linear import linear_step
from mfg_pde.alg.numerical._residual import make_equation_residual
from mfg_pde.backends import BaseBackend, create_backend
from mfg_pde.utils.progress import Callback, Progress

#: SuperLU's column ordering: on the space-time Jacobian (Nx = 101, Nt = 50, 2-core
#: CPU) MMD on AᵀA factorised in 40-55 ms with 1.0e6 nonzeros in L + U, against 60-110 ms
#: and 1.2e6 for COLAMD (SuperLU's default) and 16 s for MMD on Aᵀ + A.
COLUMN_ORDERING = "MMD_ATA"
#: Continuation in σ starts at twice the problem's σ (doubling up to
#: CONTINUATION_DOUBLINGS times until Newton converges there), or, for σ = 0, at
#: CONTINUATION_START_SIGMA times the length of the domain.
CONTINUATION_DOUBLINGS, CONTINUATION_START_SIGMA = 4, 0.05
#: GMRES restart length and restart cycles: at most 4 x 50 iterations per Newton step
#: before the step falls back to the sparse LU. Measured on the preconditioned systems
#: (to a relative residual of 1e-10): 31-48 iterations at every grid from 101 x 50 to
#: 401 x 200 on the congestion hello problem and the κ = 30 wave, 8-10 at the solution
#: of the attractive hello problem, but no convergence in 1200 at that problem's default
#: start (a nearly singular Jacobian, where only the LU helps).
GMRES_RESTART, GMRES_CYCLES = 50, 4
LINEAR_SOLVERS = ("gmres", "lu")


class NewtonSolver:
    r"""Newton's method for the coupled discrete HJB-FP system of the FDM solvers.

    The unknowns are ``U^0, ..., U^{Nt-1}`` and ``M^1, ..., M^{Nt}`` (``U^{Nt} = g`` and
    ``M^0 = m0`` are fixed), ``2 Nt Nx`` numbers; the equations are the rows ``F_n`` of
    the implicit HJB scheme and ``G_n`` of the adjoint FP scheme, exactly as
    :class:`HJBFDMSolver` and :class:`FPFDMSolver` write them
    (:mod:`~mfg_pde.alg.numerical._residual`), so a solution here is the fixed point of
    :class:`FixedPointIterator` with those solvers, to the tolerance.

    The Jacobian is exact:

    * ``dF_n/dU^n = I/dt - ν Δ + L(U^n)`` (the tridiagonal HJB Newton matrix),
      ``dF_n/dU^{n+1} = -I/dt``, ``dF_n/dM^{n+1} = -∂f/∂m``;
    * ``dG_n/dM^{n+1} = (I/dt - ν Δ + L(U^n))^T``, ``dG_n/dM^n = -I/dt`` and
      ``dG_n/dU^n = D_-^T diag(M^{n+1} 1[D_- U^n > 0] / λ) D_- + D_+^T diag(M^{n+1}
      1[D_+ U^n < 0] / λ) D_+``, the derivative of ``L(U^n)^T M^{n+1}`` (``L`` is
      piecewise linear in the slopes; at a kink the derivative of the side that is
      zero there is used, the same generalised derivative as the HJB Newton step).

    ``∂f/∂m`` comes from :func:`~mfg_pde.alg.numerical._coupling.coupling_jacobian`:
    forward-mode differentiation (``jax.jacfwd``) when JAX is installed, otherwise the
    complex step, both exact to rounding. A local coupling gives a diagonal block per
    time level; a nonlocal one (``(x * m).sum()``) a dense ``Nx x Nx`` block, which is
    supported but makes the factorisation cost grow like ``Nx^2`` per level.

    The linear solve (``linear_solver``):

    * ``"gmres"`` (default): GMRES, right-preconditioned by the two decoupled linearised
      marches, ``P = [[dF/dU, 0], [dG/dU, dG/dM]]``: a backward sweep of tridiagonal
      solves for the U part, then a forward sweep for M with the HJB correction
      (:meth:`BaseBackend.march_tridiagonal`). Applying ``P^{-1}`` and ``J`` costs
      ``O(Nt Nx)``, and ``P^{-1} J`` is the identity plus the Schur complement of the
      coupling, a compact perturbation, so the iteration count does not grow with
      the grid (measured 31-48 per step from 101 x 50 to 401 x 200 at a relative
      residual of 1e-10): the solve is linear in ``Nt Nx``. The forcing terms are
      Eisenstat-Walker's (:data:`EW_GAMMA`, :data:`EW_MAX`), floored at a tenth of
      ``tolerance``. A step whose GMRES does not converge within
      :data:`GMRES_RESTART` x :data:`GMRES_CYCLES` iterations is solved by the sparse
      LU instead (this happens far from the solution of non-monotone problems, where
      the Jacobian is nearly singular); ``stages[k]["linear"]`` records which solver
      took each step and its iterations.
    * ``"lu"``: SuperLU (:func:`scipy.sparse.linalg.splu`, column ordering
      :data:`COLUMN_ORDERING`) on the Jacobian with unknowns ordered level by level
      ``[U^n, M^{n+1}]`` (block tridiagonal in time, tridiagonal blocks in x). Exact,
      but its fill-in grows like ``(Nt Nx)^1.4`` under joint refinement.

    Globalisation: a backtracking (Armijo) line search on ``||(F, G)||_2``. When it
    stalls, or an attempt does not converge within ``attempt_iterations``, the solver
    continues in the diffusion: it solves the problem at a larger σ (twice the
    problem's, doubled until Newton converges there from the default start, at most
    :data:`CONTINUATION_DOUBLINGS` times) and walks σ back down to the problem's along a
    geometric path, each step starting from the last solution, halving the step after a
    failure and doubling it after a success. More diffusion smooths the density and the
    value function, which is what makes the upwind system easy for Newton. (Continuation
    in the coupling strength was tried first and rejected: on congestion problems a
    weaker coupling concentrates the density and is harder, not easier.)
    ``result.stages`` lists the steps taken, with their σ.

    Limits: Newton converges from far only where the problem is well conditioned. On
    the attractive hello example (f = -0.5 m, a density concentrating into a spike) the
    Newton direction from the default start changes M by ~100 for a residual of ~100,
    the line search stalls and continuation in σ fails too; damped Picard converges
    there, and Newton from a Picard iterate with equation residual 0.2 converges in 3
    steps. ``solve_mfg(method="auto")`` orders the methods that way.

    Where it runs: on numpy and numba, the SciPy reference path (the Jacobian assembled
    as a sparse matrix; GMRES or SuperLU). On the other backends (jax, torch, any whose
    arrays are not host NumPy arrays) the whole iteration runs on the backend's arrays:
    residuals, matrix-free Jacobian-vector products, the decoupled marches that
    precondition GMRES, and GMRES itself
    (:mod:`~mfg_pde.alg.numerical._newton_device`); a few scalars per step cross to the
    host. Only the sparse LU (``linear_solver="lu"``, or the fallback when GMRES does
    not converge) copies to the host, and the result then carries a warning. Measured
    (``benchmarks/newton_backends.py``): the same Newton steps and solutions within
    4e-10 of numpy's at tolerance 1e-8.

    Parameters
    ----------
    problem : MFGProblem
    backend : str, BaseBackend or None
        Runs the initial marches and (see above) the iteration; None chooses
        automatically.
    continuation : bool
        Continue in σ when Newton from the initial guess fails.
    attempt_iterations : int
        Newton iterations one attempt (the full problem, or one continuation step) may
        take before it counts as failed.
    max_continuation_steps : int
        Attempts allowed in the continuation (successful or not).
    linear_solver : {"gmres", "lu"}
        How each Newton step's linear system is solved (see above).
    """

    def __init__(
        self,
        problem: MFGProblem,
        backend: str | BaseBackend | None = None,
        continuation: bool = True,
        attempt_iterations: int = 20,
        max_continuation_steps: int = 30,
        linear_solver: str = "gmres",
    ) -> None:
        if not isinstance(problem, MFGProblem):
            raise TypeError(f"problem must be an MFGProblem, got {type(problem).__name__}")
        if problem.dim != 1:
            raise NotImplementedError(
                "NewtonSolver works on one-dimensional problems; for this 2D problem use the "
                "fixed point (solve_mfg(method='fdm'), optionally use_anderson=True and "
                "adaptive_damping=True)"
            )
        for name, value in (
            ("attempt_iterations", attempt_iterations),
            ("max_continuation_steps", max_continuation_steps),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if linear_solver not in LINEAR_SOLVERS:
            raise ValueError(
                f"linear_solver must be one of {LINEAR_SOLVERS}, got {linear_solver!r}"
            )
        self.linear_solver = linear_solver
        self.problem = problem
        self.backend = create_backend(backend)
        self.continuation = bool(continuation)
        self.attempt_iterations = attempt_iterations
        self.max_continuation_steps = max_continuation_steps
        self._host = create_backend("numpy")
        self._arrays = problem_arrays(problem, self._host)
        self._residual = make_equation_residual(
            self._host, problem.running_cost, problem.boundary == "periodic"
        )
        # Host NumPy backends take the SciPy reference path; the others keep the
        # iteration on their own arrays (see "Where it runs").
        self._device = None if self.backend.is_host_numpy else DeviceNewton(problem, self.backend)
        self._work = self._host if self._device is None else self.backend

    @property
    def name(self) -> str:
        return f"NewtonSolver[{self.backend.name}]"

    # -- the discrete system ------------------------------------------------------------
    def residual(self, U: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(F, G)``, each ``(Nt, Nx)``: the discrete HJB and FP equations at ``(U, M)``."""
        return self._residual(self._arrays, U, M)

    def jacobian(self, U: np.ndarray, M: np.ndarray) -> sp.csc_matrix:
        """The sparse Jacobian of ``(F, G)`` in the level-by-level ordering (see class)."""
        return self._packed(self._linearisation(U, M)[0])

    def _packed(self, blocks: list) -> sp.csc_matrix:
        return packed(self.problem, blocks)

    def _linearisation(self, U: np.ndarray, M: np.ndarray) -> tuple[list, dict]:
        return linearisation(self.problem, self._arrays, U, M)

    # -- the solve ----------------------------------------------------------------------
    def solve(
        self,
        max_iterations: int = 100,
        tolerance: float = 1e-8,
        *,
        initial: tuple[Any, Any] | None = None,
        verbose: bool = False,
        callback: Callback | None = None,
    ) -> MFGResult:
        """Newton iterations until ``max|F| <= tolerance`` and ``max|G| <= tolerance``.

        Parameters
        ----------
        max_iterations : int
            Newton iterations (linear solves) allowed in all, continuation included.
        tolerance : float
            On the discrete equation residuals (max norm, see
            :mod:`~mfg_pde.alg.numerical._residual`).
        initial : (U, M), optional
            Starting point, arrays of shape ``(Nt + 1, Nx)`` (for example a fixed-point
            iterate); ``U[-1]`` and ``M[0]`` are replaced by ``g`` and ``m0``. Default:
            one Picard pass from the initial density frozen in time.
        verbose, callback
            As :meth:`FixedPointIterator.solve`; the residuals reported are
            ``{"hjb": max|F|, "fp": max|G|}``.

        Returns
        -------
        MFGResult
            ``residuals``: per Newton iteration, ``"U"`` and ``"M"`` (relative L2 size of
            the step taken) and ``"hjb"``, ``"fp"`` (equation residuals after it, of the
            problem being solved at that iteration: see ``stages``). ``stages``: one
            entry per attempt, with its ``sigma``, iterations, outcome,
            residual histories and the line search's step lengths. ``converged``
            means the full problem's equations hold to ``tolerance``.
        """
        check_solve_arguments(max_iterations, tolerance)
        p = self.problem
        start = time.perf_counter()
        timings: dict[str, float] = {"initial": 0.0, "jacobian": 0.0, "linear_solve": 0.0}
        t0 = time.perf_counter()
        if initial is None:
            U, M = self._picard_pass()
        else:
            U, M = (self._work.array(v) for v in initial_iterate(p, self.backend, initial))
        timings["initial"] = time.perf_counter() - t0

        history = {"U": [], "M": [], "hjb": [], "fp": []}
        stages: list[dict[str, Any]] = []
        progress = Progress(max_iterations, verbose, callback, description=self.name)
        budget = [max_iterations]

        def attempt(solver, U, M):
            limit = min(self.attempt_iterations, budget[0])
            out = solver._newton(U, M, tolerance, limit, history, timings, progress)
            budget[0] -= out["iterations"]
            stages.append(
                {
                    "stage": "newton",
                    "sigma": solver.problem.sigma,
                    "iterations": out["iterations"],
                    "converged": out["converged"],
                    "reason": out["reason"],
                    "hjb": out["hjb"],
                    "fp": out["fp"],
                    "step_lengths": out["steps"],
                    "linear": out["linear"],
                }
            )
            return out

        try:
            out = attempt(self, U, M)
            if not out["converged"] and self.continuation and not out["stopped"]:
                first = out
                out = self._continue(attempt, budget, out)
                if not out["converged"]:  # answer with an iterate of this problem's σ
                    out = {**out, "U": first["U"], "M": first["M"]}
        finally:
            progress.close()
        U, M = (np.asarray(self._work.to_numpy(v), dtype=np.float64) for v in (out["U"], out["M"]))
        steps = len(stages) - 1
        if out["converged"]:
            reason = f"discrete equation residuals below tolerance={tolerance:g}"
            if steps:
                reason += f" after continuation in sigma ({steps} steps, from "
                reason += f"sigma={max(g['sigma'] for g in stages[1:]):.3g})"
        else:
            reason = "Newton did not converge: " + out["reason"]
            if steps:
                done = [g["sigma"] for g in stages[1:] if g["converged"]]
                reached = f"reached sigma={min(done):.3g}" if done else "no sigma solved"
                reason += f" (continuation in sigma tried {steps} steps, {reached})"
        timings["total"] = time.perf_counter() - start
        return MFGResult(
            U=U,
            M=M,
            x=p.x.copy(),
            t=p.t.copy(),
            converged=bool(out["converged"]),
            iterations=len(history["hjb"]),
            residuals={k: np.asarray(v, dtype=np.float64) for k, v in history.items()},
            reason=reason,
            backend=self.backend.name,
            device=self.backend.device,
            timings=timings,
            solver=self.name,
            problem={**p.parameters(), "dx": p.dx, "dt": p.dt},
            warnings=_host_warnings(stages, self._device is not None),
            method="newton",
            stages=stages,
        )

    def _picard_pass(self) -> tuple[Any, Any]:
        """``U = HJB(m0 frozen in time)``, ``M = FP(U)``: the default starting point,
        computed by the FDM marches on the solver's backend (host arrays on the
        reference path, backend arrays otherwise)."""
        from mfg_pde.alg.numerical.fp_fdm import FPFDMSolver
        from mfg_pde.alg.numerical.hjb_fdm import HJBFDMSolver

        if self._device is None:
            U = HJBFDMSolver(self.problem, self.backend).solve()
            return U, FPFDMSolver(self.problem, self.backend).solve(U)
        U = HJBFDMSolver(self.problem, self.backend).solve_backend()
        return U, FPFDMSolver(self.problem, self.backend).solve_backend(U)

    def _at_sigma(self, sigma: float) -> NewtonSolver:
        return NewtonSolver(
            self.problem.replace(sigma=sigma),
            self.backend,
            continuation=False,
            linear_solver=self.linear_solver,
        )

    def _continue(self, attempt, budget, failed) -> dict:
        """Continuation in σ (see the class docstring); returns the last attempt's outcome
        (on failure with the last solved point of the path)."""
        target = self.problem.sigma
        high = 2.0 * target if target > 0 else CONTINUATION_START_SIGMA * self.problem.length
        out, steps = failed, self.max_continuation_steps
        for _ in range(CONTINUATION_DOUBLINGS):  # find a σ where Newton converges
            if budget[0] <= 0 or steps <= 0:
                return {**out, "reason": out["reason"] + "; Newton iteration budget spent"}
            easy = self._at_sigma(high)
            out, steps = attempt(easy, *easy._picard_pass()), steps - 1
            if out["stopped"]:
                return out
            if out["converged"]:
                break
            high *= 2.0
        else:
            return {**out, "reason": out["reason"] + "; no larger sigma was easy either"}

        def sigma_at(t: float) -> float:  # geometric from high to target (linear to 0)
            return high ** (1 - t) * target**t if target > 0 else high * (1 - t)

        U, M, t_done, dt = out["U"], out["M"], 0.0, 0.5
        while steps > 0:
            if budget[0] <= 0:
                out = {**out, "reason": out["reason"] + "; Newton iteration budget spent"}
                break
            t = min(1.0, t_done + dt)
            out, steps = attempt(self if t == 1.0 else self._at_sigma(sigma_at(t)), U, M), steps - 1
            if out["stopped"]:
                break
            if out["converged"]:
                U, M, t_done = out["U"], out["M"], t
                if t == 1.0:
                    return out
                dt = min(2.0 * dt, 1.0 - t_done)
            else:
                dt *= 0.5
                if dt < 1e-3:
                    out = {**out, "reason": out["reason"] + "; continuation step below 1e-3"}
                    break
        else:
            out = {**out, "reason": out["reason"] + "; max_continuation_steps reached"}
        return out

    def _newton(self, U, M, tolerance, limit, history, timings, progress) -> dict:
        """Damped Newton on this solver's problem; at most ``limit`` steps
        (:func:`~mfg_pde.alg.numerical._newton_iteration.newton_attempt`)."""
        residual = self.residual if self._device is None else self._device.residual

        def step(U, M, F, G, rtol, atol):
            return self._linear_step(U, M, F, G, rtol, atol, timings)

        return newton_attempt(
            self._work, residual, step, self.problem.sigma, U, M, tolerance, limit, history,
            progress,
        )  # fmt: skip

    def _linear_step(self, U, M, F, G, rtol, atol, timings) -> tuple:
        """The Newton step ``(dU^0..dU^{Nt-1}, dM^1..dM^Nt)`` solving ``J s = -(F, G)``
        (:func:`~mfg_pde.alg.numerical._newton_linear.linear_step`, or matrix-free on
        the backend: :class:`~mfg_pde.alg.numerical._newton_device.DeviceNewton`), and a
        record of how."""
        if self._device is not None:
            return self._device.step(
                U, M, F, G, rtol, atol, timings, self.linear_solver, GMRES_RESTART,
                GMRES_CYCLES, COLUMN_ORDERING,
            )  # fmt: skip
        t0 = time.perf_counter()
        blocks, parts = self._linearisation(U, M)
        timings["jacobian"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        step = linear_step(
            self.problem,
            self._host,
            self.linear_solver,
            blocks,
            parts,
            F,
            G,
            rtol,
            atol,
            GMRES_RESTART,
            GMRES_CYCLES,
            COLUMN_ORDERING,
        )
        timings["linear_solve"] += time.perf_counter() - t0
        return step


def _host_warnings(stages: list, on_device: bool) -> list[str]:
    """The result's warning when a backend's Newton step was taken on the host."""
    lu = sum(step.get("host", False) for stage in stages for step in stage["linear"])
    if not (on_device and lu):
        return []
    return [f"{lu} Newton step(s) were solved by the sparse LU on the host (copied there and back)"]
