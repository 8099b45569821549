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

from typing import Any


def neighbours(xp: Any, u: Any, periodic: bool) -> tuple[Any, Any]:
    """Values at ``i - 1`` and ``i + 1`` along the last axis, with ghost rules applied."""
    if periodic:
        return xp.roll(u, 1, axis=-1), xp.roll(u, -1, axis=-1)
    left = xp.concat([u[..., :1], u[..., :-1]], axis=-1)
    right = xp.concat([u[..., 1:], u[..., -1:]], axis=-1)
    return left, right


def one_sided_gradients(xp: Any, u: Any, dx: float, periodic: bool) -> tuple[Any, Any]:
    """Forward and backward differences ``(D+ u, D- u)`` (zero across no-flux walls)."""
    left, right = neighbours(xp, u, periodic)
    return (right - u) / dx, (u - left) / dx


def central_gradient(xp: Any, u: Any, dx: float, periodic: bool) -> Any:
    """Central difference ``(u_{i+1} - u_{i-1}) / (2 dx)`` with the ghost rules."""
    left, right = neighbours(xp, u, periodic)
    return (right - left) / (2.0 * dx)


def hamiltonian(xp: Any, u: Any, dx: float, control_cost: float, periodic: bool):
    """Godunov numerical Hamiltonian of ``|p|^2 / (2 λ)`` and its two partial derivatives.

    ``H(p+, p-) = (min(p+, 0)^2 + max(p-, 0)^2) / (2 λ)`` is nonincreasing in ``p+`` and
    nondecreasing in ``p-`` (monotone), consistent with ``|p|^2 / (2 λ)``.

    Returns ``H``, ``dH/dp+ = min(p+, 0) / λ <= 0`` and ``dH/dp- = max(p-, 0) / λ >= 0``.
    """
    p_plus, p_minus = one_sided_gradients(xp, u, dx, periodic)
    a = xp.minimum(p_plus, 0.0)
    b = xp.maximum(p_minus, 0.0)
    return (a * a + b * b) / (2.0 * control_cost), a / control_cost, b / control_cost


def hjb_jacobian(
    xp: Any, dh_plus: Any, dh_minus: Any, dx: float, nu: float, dt: float, periodic: bool
) -> tuple[Any, Any, Any]:
    """Tridiagonal ``I/dt - ν Δ + dH/du`` (the linearised implicit HJB step).

    Row ``i`` of ``dH/du``: ``-dH/dp-_i / dx`` at ``i-1``, ``(dH/dp-_i - dH/dp+_i) / dx``
    at ``i`` and ``dH/dp+_i / dx`` at ``i+1``: nonpositive off the diagonal, zero row
    sums, so the whole matrix is an M-matrix. For no-flux grids the ghost columns are
    folded onto the diagonal.
    """
    k = nu / (dx * dx)
    lower = -k - dh_minus / dx
    diag = 1.0 / dt + 2.0 * k + (dh_minus - dh_plus) / dx
    upper = -k + dh_plus / dx
    if not periodic:
        # Ghost node u_{-1} = u_0 and u_N = u_{N-1}: their coefficients join the diagonal.
        zero = xp.zeros_like(lower[..., :1])
        diag = xp.concat(
            [diag[..., :1] + lower[..., :1], diag[..., 1:-1], diag[..., -1:] + upper[..., -1:]],
            axis=-1,
        )
        lower = xp.concat([zero, lower[..., 1:]], axis=-1)
        upper = xp.concat([upper[..., :-1], zero], axis=-1)
    return lower, diag, upper


def transpose(xp: Any, lower: Any, diag: Any, upper: Any) -> tuple[Any, Any, Any]:
    """Transpose of a (cyclic) tridiagonal matrix given as ``(lower, diag, upper)``.

    ``A^T[i, i-1] = A[i-1, i] = upper[i-1]`` and ``A^T[i, i+1] = A[i+1, i] = lower[i+1]``;
    the wrapped entries are exactly the cyclic couplings (and zeros without them).
    """
    return xp.roll(upper, 1, axis=-1), diag, xp.roll(lower, -1, axis=-1)


def laplacian(xp: Any, u: Any, dx: float, periodic: bool) -> Any:
    """Second difference ``(u_{i-1} - 2 u_i + u_{i+1}) / dx^2`` with the ghost rules."""
    left, right = neighbours(xp, u, periodic)
    return (left - 2.0 * u + right) / (dx * dx)
