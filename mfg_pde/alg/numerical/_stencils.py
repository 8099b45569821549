"""The 1D finite-difference stencils shared by the HJB and FP schemes.

Grid values live at nodes ``x_i``. No-flux boundaries use reflecting ghost values
(``u_{-1} = u_0``, ``u_N = u_{N-1}``), so every operator here has zero row sums and the
Laplacian is symmetric: this is what makes the FP scheme (the transpose) conserve
``sum(m) * dx`` to round-off. Periodic boundaries wrap, and the matrices become cyclic.

Tridiagonal operators are triples ``(lower, diag, upper)`` in the convention of
:meth:`mfg_pde.backends.BaseBackend.solve_tridiagonal`; for periodic grids
``lower[0]`` couples row 0 to the last node and ``upper[-1]`` row N-1 to the first.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


def neighbours(xp: Any, u: Any, periodic: bool) -> tuple[Any, Any]:
    """Values at ``i - 1`` and ``i + 1`` along the last axis, with ghost rules applied."""
    if periodic:
        return xp.roll(u, 1, axis=-1), xp.roll(u, -1, axis=-1)
    left = xp.concat([u[..., :1], u[..., :-1]], axis=-1)
    right = xp.concat([u[..., 1:], u[..., -1:]], axis=-1)
    return left, right


def central_gradient(xp: Any, u: Any, dx: float, periodic: bool) -> Any:
    """Central difference ``(u_{i+1} - u_{i-1}) / (2 dx)`` with the ghost rules."""
    left, right = neighbours(xp, u, periodic)
    return (right - left) / (2.0 * dx)


class SchemeConstants(NamedTuple):
    """The scalars of the scheme: plain floats, or 0-d backend arrays inside compiled code.

    Passing them as arrays (not as Python constants closed over) is what lets one compiled
    program serve every problem of the same shape: changing σ or λ changes values, not code.
    """

    dx: Any
    dt: Any
    nu: Any
    control_cost: Any
    dy: Any = None  # the y spacing of a 2D grid


def scheme_constants(problem: Any) -> SchemeConstants:
    """The problem's ``dx``, ``dt``, ``ν = σ²/2``, ``λ`` (and ``dy`` in 2D) as floats."""
    dy = problem.spacing[1] if problem.dim == 2 else None
    return SchemeConstants(problem.dx, problem.dt, problem.nu, problem.control_cost, dy)


def along(ndim: int, axis: int, index: Any) -> tuple:
    """An index tuple that applies ``index`` (a slice) along ``axis`` of an ``ndim`` array."""
    out = [slice(None)] * ndim
    out[axis] = index
    return tuple(out)


def axis_upwind(xp: Any, u: Any, h: Any, control_cost: Any, periodic: bool, axis: int = -1):
    """:func:`upwind_derivatives` along ``axis`` with spacing ``h``; returns ``(a, b, d)``.

    ``d`` has one more entry than ``u`` along ``axis`` (the differences between ghost-
    padded neighbours); ``a``, ``b`` have ``u``'s shape.
    """
    nd = u.ndim
    first, last = u[along(nd, axis, slice(0, 1))], u[along(nd, axis, slice(-1, None))]
    if periodic:
        padded = xp.concat([last, u, first], axis=axis)
    else:  # reflecting ghosts u_{-1} = u_0, u_N = u_{N-1}
        padded = xp.concat([first, u, last], axis=axis)
    d = (padded[along(nd, axis, slice(1, None))] - padded[along(nd, axis, slice(None, -1))]) / h
    a = xp.minimum(d[along(nd, axis, slice(1, None))], 0.0) / control_cost
    b = xp.maximum(d[along(nd, axis, slice(None, -1))], 0.0) / control_cost
    return a, b, d


def upwind_derivatives(xp: Any, u: Any, c: SchemeConstants, periodic: bool):
    r"""One-sided slopes and the derivatives of the Godunov Hamiltonian of ``|p|²/(2λ)``.

    With ``p± = D± u``, the numerical Hamiltonian
    ``H(p+, p-) = (min(p+, 0)² + max(p-, 0)²) / (2λ)`` is nonincreasing in ``p+`` and
    nondecreasing in ``p-`` (monotone) and consistent with ``|p|²/(2λ)``.

    Returns ``(a, b, d)``: ``a = dH/dp+ = min(p+, 0)/λ <= 0``, ``b = dH/dp- = max(p-, 0)/λ
    >= 0`` and the differences ``d`` with ``p- = d[..., :-1]``, ``p+ = d[..., 1:]``; then
    ``H = λ (a² + b²) / 2``. Works on any leading (time) axes; the 2D scheme applies it
    per axis (:func:`axis_upwind`).
    """
    return axis_upwind(xp, u, c.dx, c.control_cost, periodic, axis=-1)


def neighbour_counts(nx: int, periodic: bool) -> np.ndarray:
    """Neighbours inside the domain per node: 2, or 1 at a no-flux wall (reflecting ghost).

    ``1/dt + ν · count / dx²`` is the part of the implicit diagonal that does not depend
    on ``u``: a ghost value equal to its neighbour cancels one ``-ν/dx²`` coupling.
    """
    count = np.full(nx, 2.0)
    if not periodic:
        count[[0, -1]] = 1.0
    return count


def hjb_jacobian_from_slopes(
    a: Any, b: Any, diag0: Any, c: SchemeConstants
) -> tuple[Any, Any, Any]:
    """Tridiagonal ``I/dt - ν Δ + dH/du`` from :func:`upwind_derivatives`' ``a, b``.

    Row ``i`` of ``dH/du``: ``-b_i / dx`` at ``i-1``, ``(b_i - a_i) / dx`` at ``i`` and
    ``a_i / dx`` at ``i+1``: nonpositive off the diagonal, zero row sums, so the matrix is
    an M-matrix. ``diag0 = 1/dt + ν · neighbour_counts / dx²``. On no-flux grids the ghost
    couplings are folded onto ``diag0``, and ``lower[..., 0]`` / ``upper[..., -1]`` are
    not matrix entries: they hold stray values that every tridiagonal solver ignores
    (zero them before assembling a matrix). On periodic grids they are the cyclic couplings.
    """
    k = c.nu / (c.dx * c.dx)
    lower = -k - b / c.dx
    upper = a / c.dx - k
    diag = diag0 + (b - a) / c.dx
    return lower, diag, upper


def transpose(xp: Any, lower: Any, diag: Any, upper: Any) -> tuple[Any, Any, Any]:
    """Transpose of a (cyclic) tridiagonal matrix given as ``(lower, diag, upper)``.

    ``A^T[i, i-1] = A[i-1, i] = upper[i-1]`` and ``A^T[i, i+1] = A[i+1, i] = lower[i+1]``;
    the wrapped entries are exactly the cyclic couplings (on no-flux grids, the ignored
    end entries).
    """
    return xp.roll(upper, 1, axis=-1), diag, xp.roll(lower, -1, axis=-1)


def tridiagonal_matvec(
    xp: Any, lower: Any, diag: Any, upper: Any, v: Any, periodic: bool, axis: int = -1
) -> Any:
    """``A @ v`` for the (cyclic) tridiagonal ``A = (lower, diag, upper)`` along ``axis``.

    On no-flux grids ``lower[0]`` and ``upper[-1]`` (along ``axis``) are not matrix
    entries (:func:`hjb_jacobian_from_slopes`) and are ignored here, as the solvers
    ignore them.
    """
    if periodic:
        return lower * xp.roll(v, 1, axis=axis) + diag * v + upper * xp.roll(v, -1, axis=axis)
    nd = v.ndim
    zero = xp.zeros_like(v[along(nd, axis, slice(0, 1))])
    left = xp.concat([zero, v[along(nd, axis, slice(None, -1))]], axis=axis)
    right = xp.concat([v[along(nd, axis, slice(1, None))], zero], axis=axis)
    return lower * left + diag * v + upper * right
