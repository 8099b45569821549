"""Fixed-point (Picard) iteration between the HJB and FP solvers, damped or Anderson-mixed."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde._result import MFGResult
from mfg_pde.alg.numerical.fp_particle import FPParticleSolver
from mfg_pde.backends import BaseBackend, create_backend
from mfg_pde.utils.anderson_acceleration import AndersonAccelerator
from mfg_pde.utils.progress import Callback, Progress


class FixedPointIterator:
    r"""Solve the MFG system by iterating ``M -> U = HJB(M) -> M = FP(U)``.

    One iteration maps ``(U_k, M_k)`` to ``(Û, M̂) = (HJB(M_k), FP(HJB(M_k)))`` and then

    * damped Picard: ``U_{k+1} = θ Û + (1 - θ) U_k`` and likewise M (θ = ``thetaUM``);
    * Anderson (``use_anderson=True``): Anderson mixing with memory ``anderson_depth`` and
      mixing ``θ`` on the stacked vector ``(U, M)``. With a particle FP solver, whose
      density is noisy, Anderson is applied to U only and M is damped (Anderson
      extrapolates noise into large, even negative, densities otherwise); a warning
      says so.

    The iteration stops when the relative L2 change of the undamped map,
    ``||Û - U_k|| / ||Û||`` and ``||M̂ - M_k|| / ||M̂||``, is below ``tolerance`` for both;
    if a solver produces NaN or inf it stops at once and the result says where.

    Parameters
    ----------
    problem : MFGProblem
    hjb_solver, fp_solver :
        Solver instances (e.g. :class:`HJBFDMSolver`, :class:`FPFDMSolver`).
    backend : str, BaseBackend or None
        Given: both child solvers are moved to it. None: the children's backend (they
        must agree).
    thetaUM : float in (0, 1]
        Damping of the Picard update (Anderson's mixing parameter).
    use_anderson : bool
    anderson_depth : int
    """

    def __init__(
        self,
        problem: MFGProblem,
        hjb_solver: Any,
        fp_solver: Any,
        backend: str | BaseBackend | None = None,
        thetaUM: float = 0.5,
        use_anderson: bool = False,
        anderson_depth: int = 5,
    ) -> None:
        if not isinstance(problem, MFGProblem):
            raise TypeError(f"problem must be an MFGProblem, got {type(problem).__name__}")
        for label, solver in (("hjb_solver", hjb_solver), ("fp_solver", fp_solver)):
            if not hasattr(solver, "solve_backend"):
                raise TypeError(f"{label} must be an mfg_pde solver, got {type(solver).__name__}")
            if solver.problem is not problem:
                raise ValueError(f"{label} was built for a different MFGProblem")
        if not (isinstance(thetaUM, (int, float)) and 0 < thetaUM <= 1):
            raise ValueError(f"thetaUM must be in (0, 1], got thetaUM={thetaUM!r}")
        if isinstance(anderson_depth, bool) or not isinstance(anderson_depth, int):
            raise TypeError(f"anderson_depth must be an int, got {anderson_depth!r}")
        if anderson_depth < 1:
            raise ValueError(f"anderson_depth must be >= 1, got {anderson_depth}")
        self.problem = problem
        self.hjb_solver = hjb_solver
        self.fp_solver = fp_solver
        if backend is None:
            if hjb_solver.backend.name != fp_solver.backend.name or (
                hjb_solver.backend.device != fp_solver.backend.device
            ):
                raise ValueError(
                    f"hjb_solver runs on {hjb_solver.backend.name} ({hjb_solver.backend.device}) "
                    f"but fp_solver on {fp_solver.backend.name} ({fp_solver.backend.device}); "
                    "pass backend= to move both"
                )
            self.backend = hjb_solver.backend
        else:
            self.backend = create_backend(backend)
        for solver in (hjb_solver, fp_solver):
            if solver.backend is not self.backend:
                solver.set_backend(self.backend)
        self.thetaUM = float(thetaUM)
        self.use_anderson = bool(use_anderson)
        self.anderson_depth = anderson_depth
        self.anderson_on_u_only = self.use_anderson and isinstance(fp_solver, FPParticleSolver)

    @property
    def name(self) -> str:
        return f"FixedPointIterator[{self.backend.name}]"

    def solve(
        self,
        max_iterations: int = 100,
        tolerance: float = 1e-6,
        *,
        verbose: bool = False,
        callback: Callback | None = None,
    ) -> MFGResult:
        """Iterate until both relative changes are below ``tolerance``.

        ``verbose=True`` shows a progress bar (tqdm, on stderr) with the residuals;
        ``callback(iteration, {"U": r_U, "M": r_M})`` is called after every iteration
        and stops the solve by returning a true value
        (:class:`~mfg_pde.utils.progress.Progress`).

        Returns an :class:`~mfg_pde.MFGResult`; ``converged=False`` with the ``reason``
        when the iteration cap is reached, values stop being finite, or the callback
        stopped it.
        """
        if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
            raise TypeError(f"max_iterations must be an int, got {max_iterations!r}")
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        if not (isinstance(tolerance, (int, float)) and tolerance > 0):
            raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
        b, xp, p = self.backend, self.backend.xp, self.problem
        notes: list[str] = []
        accelerator = None
        if self.use_anderson:
            accelerator = AndersonAccelerator(b, depth=self.anderson_depth, beta=self.thetaUM)
            if self.anderson_on_u_only:
                msg = (
                    "Anderson acceleration with a particle FP solver amplifies sampling noise; "
                    "it is applied to U only and M is damped with thetaUM"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=2)
                notes.append(msg)

        U = xp.broadcast_to(b.from_numpy(p.g)[None, :], p.shape)
        M = xp.broadcast_to(b.from_numpy(p.m0)[None, :], p.shape)
        res_u: list[float] = []
        res_m: list[float] = []
        timings = {"hjb": 0.0, "fp": 0.0}
        converged, reason = False, f"reached max_iterations={max_iterations}"
        progress = Progress(max_iterations, verbose, callback, description=self.name)
        start = time.perf_counter()
        for k in range(max_iterations):
            t0 = time.perf_counter()
            U_hat = self.hjb_solver.solve_backend(M)
            t1 = time.perf_counter()
            # Where a march first met NaN/inf: HJB runs backward, so the latest time.
            bad = _nonfinite_origin(b, U_hat, backward=True)
            if bad is None:
                M_hat = self.fp_solver.solve_backend(U_hat)
                bad = _nonfinite_origin(b, M_hat, backward=False)
                where = "M (FP solve)"
            else:
                where = "U (HJB solve)"
            t2 = time.perf_counter()
            timings["hjb"] += t1 - t0
            timings["fp"] += t2 - t1
            if k == 0:
                timings["first_iteration"] = t2 - t0
            if bad is not None:
                n, i = bad
                reason = (
                    f"non-finite values in {where} at iteration {k + 1}, time index {n} "
                    f"(t={p.t[n]:.4g}), x index {i} (x={p.x[i]:.4g}); returning the last "
                    "finite iterate"
                )
                break
            ru = float(b.to_numpy(_relative_change(xp, U_hat, U)))
            rm = float(b.to_numpy(_relative_change(xp, M_hat, M)))
            res_u.append(ru)
            res_m.append(rm)
            stop = progress.update(k + 1, {"U": ru, "M": rm})
            if ru < tolerance and rm < tolerance:
                U, M = U_hat, M_hat
                converged, reason = True, f"both residuals below tolerance={tolerance:g}"
                break
            U, M = self._update(accelerator, U, M, U_hat, M_hat)
            if stop:
                reason = progress.stop_reason
                break
        progress.close()
        timings["total"] = time.perf_counter() - start
        newton_failures = getattr(self.hjb_solver, "last_newton_failures", 0)
        if newton_failures:
            notes.append(
                f"HJB Newton hit its iteration cap on {newton_failures} time steps in the "
                "last solve"
            )
        return MFGResult(
            U=b.to_numpy(U).copy(),
            M=b.to_numpy(M).copy(),
            x=p.x.copy(),
            t=p.t.copy(),
            converged=converged,
            iterations=len(res_u),
            residuals={"U": np.asarray(res_u), "M": np.asarray(res_m)},
            reason=reason,
            backend=b.name,
            device=b.device,
            timings=timings,
            solver=self.name,
            problem={**p.parameters(), "dx": p.dx, "dt": p.dt},
            warnings=notes,
        )

    def _update(self, accelerator, U, M, U_hat, M_hat):
        xp, theta = self.backend.xp, self.thetaUM
        if accelerator is None:
            return theta * U_hat + (1 - theta) * U, theta * M_hat + (1 - theta) * M
        shape = self.problem.shape
        if self.anderson_on_u_only:
            U_next = accelerator.update(xp.reshape(U, (-1,)), xp.reshape(U_hat, (-1,)))
            return xp.reshape(U_next, shape), theta * M_hat + (1 - theta) * M
        size = shape[0] * shape[1]
        stacked = accelerator.update(
            xp.concat([xp.reshape(U, (-1,)), xp.reshape(M, (-1,))]),
            xp.concat([xp.reshape(U_hat, (-1,)), xp.reshape(M_hat, (-1,))]),
        )
        return xp.reshape(stacked[:size], shape), xp.reshape(stacked[size:], shape)


def _relative_change(xp: Any, new: Any, old: Any) -> Any:
    diff = xp.sqrt(xp.sum((new - old) ** 2))
    return diff / xp.maximum(xp.sqrt(xp.sum(new**2)), 1e-300)


def _nonfinite_origin(backend: BaseBackend, arr: Any, backward: bool) -> tuple[int, int] | None:
    """(time index, x index) where a march first produced NaN/inf, or None.

    A forward march's first bad level is the earliest, a backward one's the latest.
    One host synchronisation per call.
    """
    xp = backend.xp
    if bool(backend.to_numpy(xp.all(xp.isfinite(arr)))):
        return None
    bad = np.argwhere(~np.isfinite(backend.to_numpy(arr)))
    level = bad[:, 0].max() if backward else bad[:, 0].min()
    n, i = bad[bad[:, 0] == level][0]
    return int(n), int(i)
