"""The exact sparse Jacobian of the discrete MFG system, for :class:`NewtonSolver`.

Its blocks and the formulas are in :class:`~mfg_pde.alg.numerical.newton.NewtonSolver`'s
docstring; :func:`linearisation` also returns the per-level tridiagonal matrices that
the preconditioner's marches solve (:mod:`~mfg_pde.alg.numerical._newton_linear`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mfg_pde._problem import MFGProblem
from mfg_pde.alg.numerical import _stencils as st
from mfg_pde.alg.numerical._coupling import coupling_jacobian


def packed(problem: MFGProblem, blocks: list) -> sp.csc_matrix:
    """The block Jacobian of :func:`linearisation` in the level-by-level ordering
    (unknowns ``[U^n, M^{n+1}]`` level after level)."""
    Nt, Nx = problem.Nt, problem.Nx
    # Row/column k of the block matrix [[UU, UM], [MU, MM]] is (kind, level, node);
    # the packed ordering puts kind inside level: (level, kind, node).
    kind, level, node = np.unravel_index(np.arange(2 * Nt * Nx), (2, Nt, Nx))
    order = np.empty(2 * Nt * Nx, dtype=np.int64)
    order[((2 * level + kind) * Nx + node)] = np.arange(2 * Nt * Nx)
    J = sp.bmat(blocks, format="csr")
    return J[order][:, order].tocsc()


def linearisation(
    problem: MFGProblem, arrays: dict, U: np.ndarray, M: np.ndarray
) -> tuple[list, dict]:
    """The Jacobian of the discrete system at ``(U, M)`` as sparse blocks
    ``[[dF/dU, dF/dM], [dG/dU, dG/dM]]`` (unknowns numbered ``level * Nx + node``
    within each block), and the per-level tridiagonal matrices of the diagonal blocks
    for the marches of the preconditioner:
    ``"hjb"`` the ``(lower, diag, upper)`` of ``dF_n/dU^n`` and ``"fp"`` of
    ``dG_n/dM^{n+1}``, arrays ``(Nt, Nx)``."""
    p = problem
    Nt, Nx = p.Nt, p.Nx
    periodic = p.boundary == "periodic"
    c = st.scheme_constants(p)
    a, bb, d = st.upwind_derivatives(np, U[:-1], c, periodic)
    diag0 = 1.0 / c.dt + (c.nu / (c.dx * c.dx)) * arrays["counts"]
    hjb = tuple(np.array(v) for v in st.hjb_jacobian_from_slopes(a, bb, diag0, c))
    fp = st.transpose(np, *hjb)
    size = Nt * Nx
    levels = np.arange(Nt)[:, None]
    nodes = np.arange(Nx)[None, :]
    here = levels * Nx + nodes
    left, right = levels * Nx + (nodes - 1) % Nx, levels * Nx + (nodes + 1) % Nx
    inner_l = np.ones(Nx, bool) if periodic else nodes[0] > 0
    inner_r = np.ones(Nx, bool) if periodic else nodes[0] < Nx - 1

    def matrix(*entries):
        rows, cols, vals = zip(
            *(
                (r.ravel(), k.ravel(), v.ravel())
                for r, k, v in (np.broadcast_arrays(*e) for e in entries)
            ),
            strict=True,
        )
        coo = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
        return sp.csr_matrix(coo, shape=(size, size))

    def march_block(lo, di, up, previous):
        """Tridiagonal (cyclic when periodic) per level, -I/dt to ``previous``."""
        return matrix(
            (here, here, di),
            (here[:, inner_l], left[:, inner_l], lo[:, inner_l]),
            (here[:, inner_r], right[:, inner_r], up[:, inner_r]),
            (here[previous[0]], here[previous[1]], -1.0 / c.dt),
        )

    # dF_n/dU^n tridiagonal, dF_n/dU^{n+1} = -I/dt (U^{Nt} = g is fixed);
    # dG_n/dM^{n+1} its transpose, dG_n/dM^n = -I/dt (M^0 = m0 is fixed).
    uu = march_block(*hjb, (slice(None, -1), slice(1, None)))
    mm = march_block(*fp, (slice(1, None), slice(None, -1)))
    # dF_n/dM^{n+1} = -∂f/∂m at M^{n+1}.
    df = coupling_jacobian(p, M[1:])
    if df.ndim == 2:  # local coupling: diagonal blocks
        um = matrix((here, here, -df))
    else:
        um = matrix((here[:, :, None], here[:, None, :], -df))
    # dG_n/dU^n: edge e joins nodes e-1 and e (slope d[e]); its weight is
    # (M_{e-1} 1[d_e < 0] + M_e 1[d_e > 0]) / (λ dx²). Edge Nx wraps (periodic) or
    # is the ghost edge of a no-flux wall (slope 0, weight 0).
    m = M[1:]
    edges = np.arange(1, Nx + 1)
    lnode, rnode = edges - 1, edges % Nx
    slope = d[:, edges]
    weight = (m[:, lnode] * (slope < 0) + m[:, rnode] * (slope > 0)) / (
        c.control_cost * c.dx * c.dx
    )
    if not periodic:
        weight = weight[:, :-1]
        lnode, rnode = lnode[:-1], rnode[:-1]
    base = levels * Nx
    mu = matrix(
        *(
            entry
            for a_node, b_node in ((lnode, rnode), (rnode, lnode))
            for entry in (
                (base + a_node, base + a_node, weight),
                (base + a_node, base + b_node, -weight),
            )
        )
    )
    return [[uu, um], [mu, mm]], {"hjb": hjb, "fp": fp, "periodic": periodic, "dt": c.dt}
