"""One Newton step's linear solve: GMRES preconditioned by the decoupled marches, or
SuperLU, for :class:`~mfg_pde.alg.numerical.newton.NewtonSolver` (whose docstring
says when each is used and what was measured).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mfg_pde._problem import MFGProblem
from mfg_pde.alg.numerical._newton_jacobian import packed
from mfg_pde.backends import BaseBackend


def linear_step(
    problem: MFGProblem,
    host: BaseBackend,
    linear_solver: str,
    blocks: list,
    parts: dict,
    F: np.ndarray,
    G: np.ndarray,
    rtol: float,
    atol: float,
    restart: int,
    cycles: int,
    ordering: str,
) -> tuple:
    """The Newton step ``(dU^0..dU^{Nt-1}, dM^1..dM^Nt)`` solving ``J s = -(F, G)``
    to ``|J s + (F, G)|_2 <= max(rtol |(F, G)|_2, atol)`` (exactly with the LU), and
    a record of how: ``{"solver", "iterations", "residual"}`` (the relative linear
    residual reached). ``blocks`` and ``parts`` are
    :func:`~mfg_pde.alg.numerical._newton_jacobian.linearisation`'s; ``host`` (a NumPy
    backend) runs the preconditioner's marches; GMRES gets ``restart`` x ``cycles``
    iterations before the LU (column ordering ``ordering``) takes the step."""
    Nt, Nx = problem.Nt, problem.Nx
    b = -np.concatenate([F.ravel(), G.ravel()])
    size = Nt * Nx
    info: dict[str, Any] = {"solver": linear_solver, "iterations": 0, "residual": 0.0}
    if linear_solver == "gmres":
        J = sp.bmat(blocks, format="csr")
        periodic, coupling = parts["periodic"], 1.0 / parts["dt"]
        dg_du = blocks[1][0]

        def precondition(y: np.ndarray) -> np.ndarray:
            # P = [[dF/dU, 0], [dG/dU, dG/dM]]: the backward HJB march, then the
            # forward FP march with the HJB part's effect moved to the right side.
            du = host.march_tridiagonal(
                *parts["hjb"], y[:size].reshape(Nt, Nx), coupling, True, periodic
            ).ravel()
            rhs = (y[size:] - dg_du @ du).reshape(Nt, Nx)
            dm = host.march_tridiagonal(*parts["fp"], rhs, coupling, False, periodic)
            return np.concatenate([du, dm.ravel()])

        def matvec(y: np.ndarray) -> np.ndarray:
            info["iterations"] += 1
            return J @ precondition(y)

        operator = spla.LinearOperator(J.shape, matvec=matvec, dtype=np.float64)
        y, _ = spla.gmres(operator, b, rtol=rtol, atol=atol, restart=restart, maxiter=cycles)
        step = precondition(y)
        b_norm = max(float(np.linalg.norm(b)), 1e-300)
        residual = float(np.linalg.norm(J @ step - b))
        info["residual"] = residual / b_norm
        if not residual <= max(rtol * b_norm, atol) * (1.0 + 1e-8):
            info["solver"] = "lu (gmres did not converge)"
    if info["solver"] != "gmres":
        du, dm = lu_step(problem, blocks, F, G, ordering)
        info["residual"] = 0.0
        return du, dm, info
    return step[:size].reshape(Nt, Nx), step[size:].reshape(Nt, Nx), info


def lu_step(
    problem: MFGProblem, blocks: list, F: np.ndarray, G: np.ndarray, ordering: str
) -> tuple[np.ndarray, np.ndarray]:
    """The exact Newton step ``(dU, dM)``, each ``(Nt, Nx)``, by SuperLU on the packed
    (level by level) Jacobian with column ordering ``ordering``."""
    Nt, Nx = problem.Nt, problem.Nx
    levelwise = np.stack([F, G], axis=1).ravel()
    step = spla.splu(packed(problem, blocks), permc_spec=ordering).solve(-levelwise)
    step = step.reshape(Nt, 2, Nx)
    return np.ascontiguousarray(step[:, 0]), np.ascontiguousarray(step[:, 1])
