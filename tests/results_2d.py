"""A two-dimensional :class:`~mfg_pde.MFGResult` built by hand, for the users' side.

Saving, loading, plotting and the command line only need a result of the right shapes,
not a solve: this one has the arrays, grid and ``problem`` record a 2D fixed point
returns, on a grid that is not square (so a transposed axis shows) and data that are not
constant in time (so the wrong snapshot shows).
"""

from __future__ import annotations

import numpy as np

from mfg_pde import MFGProblem, MFGResult
from mfg_pde.problems import crowd_2d_example


def synthetic_result_2d(problem: MFGProblem | None = None) -> MFGResult:
    """U, M of shape ``problem.shape`` (default: the crowd example on 9 x 7 points, Nt=4).

    ``M[n] = (1 - s) m0 + s * uniform`` with ``s = t[n] / T`` (mass 1 at every level) and
    ``U[n] = g + (T - t[n]) (1 + x)``.
    """
    if problem is None:
        problem = crowd_2d_example(Nx=(9, 7), Nt=4)
    x = problem.coords[0]
    s = (problem.t / problem.T)[:, None, None]
    uniform = 1.0 / (problem.m0.size * problem.cell_volume)  # discrete mass 1
    M = (1.0 - s) * problem.m0 + s * uniform
    U = problem.g + (problem.T - problem.t)[:, None, None] * (1.0 + x)
    iterations = 3
    residuals = {key: np.geomspace(1e-1, 1e-7, iterations) for key in ("U", "M", "hjb", "fp")}
    return MFGResult(
        U=U,
        M=M,
        x=problem.x.copy(),
        y=problem.y.copy(),
        t=problem.t.copy(),
        converged=True,
        iterations=iterations,
        residuals=residuals,
        reason="both residuals below tolerance=1e-06",
        backend="numpy",
        device="cpu",
        timings={"total": 0.25},
        solver="FixedPointIterator[numpy]",
        problem={**problem.parameters(), "dx": problem.dx, "dy": problem.dy, "dt": problem.dt},
        method="picard",
    )
