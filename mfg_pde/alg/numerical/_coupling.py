"""The derivative of the running cost in the density, ``∂f/∂m``, for the Newton solver.

Two exact routes (exact to rounding, not a finite difference):

* JAX installed: forward-mode differentiation (``jax.jvp`` / ``jax.jacfwd``) of the
  running cost evaluated with ``jax.numpy`` arrays, compiled once per cost structure.
* otherwise, or when the cost cannot be traced by JAX: the complex step,
  ``Im f(x, m + i h v, t) / h`` with ``h = 1e-30``, which has no cancellation error
  for costs built from analytic operations. It is silently wrong for non-analytic ones
  (``abs``, ``maximum``), so its first use on a problem is checked against a central
  difference (agreement to ``FD_CHECK_RTOL`` relative is required, else ``TypeError``).

Locality is detected by probing: a local coupling ``f(x_i, m_i, t)`` has
``f'(m) v = diag(f'(m)) ⊙ v`` for every direction ``v``; then the Jacobian is the
vector ``f'(m) 1`` per level. Otherwise the dense ``Nx x Nx`` Jacobian per level is
formed (a nonlocal coupling, e.g. through ``(x * m).sum()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem

#: Relative agreement the complex step must show with a central difference on first use.
FD_CHECK_RTOL = 1e-4
#: Relative size of the off-diagonal response below which a coupling counts as local.
LOCAL_RTOL = 1e-12

_jax_programs: dict[Any, Any] = {}
_checked: dict[Any, str] = {}


def coupling_jacobian(problem: MFGProblem, M: np.ndarray) -> np.ndarray:
    """``∂f/∂m`` at the densities ``M`` (levels ``1..Nt``, shape ``(Nt, Nx)``).

    Returns ``(Nt, Nx)``, the diagonal, for a local coupling, else ``(Nt, Nx, Nx)`` with
    ``out[n, i, j] = ∂f_i / ∂m_j`` at level ``n + 1``.
    """
    route = _route(problem)
    ones = np.ones_like(M)
    probe = np.random.default_rng(0).uniform(0.5, 1.5, size=M.shape)
    jvp = _jvp_jax if route == "jax" else _jvp_complex
    diag = jvp(problem, M, ones)
    response = jvp(problem, M, probe)
    scale = max(np.abs(diag).max(), 1e-300)
    if np.abs(response - diag * probe).max() <= LOCAL_RTOL * scale * 10:
        return diag
    eye = np.eye(problem.Nx)
    columns = [jvp(problem, M, np.broadcast_to(eye[j], M.shape)) for j in range(problem.Nx)]
    return np.stack(columns, axis=-1)


def _route(problem: MFGProblem) -> str:
    """ "jax" or "complex": how this running cost is differentiated (decided once)."""
    key = (problem.running_cost, problem.Nx, problem.Nt, tuple(problem.cost_parameters))
    if key in _checked:
        return _checked[key]
    M = np.broadcast_to(problem.m0, (problem.Nt, problem.Nx)) + 0.0
    direction = np.random.default_rng(1).uniform(0.5, 1.5, size=M.shape)
    route, err_jax = "complex", None
    try:
        from mfg_pde.backends import create_backend

        create_backend("jax")  # enables float64 in JAX
        _jvp_jax(problem, M, direction)
        route = "jax"
    except ImportError:
        pass
    except Exception as err:  # not traceable by JAX: try the complex step
        err_jax = err
    if route == "complex":
        try:
            cs = _jvp_complex(problem, M, direction)
        except Exception as err:
            raise TypeError(
                "the Newton solver needs ∂f/∂m: the running cost could not be "
                f"differentiated with JAX ({err_jax}) nor evaluated on complex arrays "
                f"({err}); write it with array arithmetic"
            ) from err
        h = 1e-6 * max(np.abs(M).max(), 1.0)
        fd = (_costs(problem, M + h * direction) - _costs(problem, M - h * direction)) / (2 * h)
        if np.abs(cs - fd).max() > FD_CHECK_RTOL * max(np.abs(fd).max(), 1.0):
            raise TypeError(
                "the complex-step derivative of the running cost disagrees with a finite "
                "difference (a non-analytic operation such as abs or maximum?); install "
                'JAX (pip install "mfg_pde[jax]") so the Newton solver can differentiate it'
            )
    _checked[key] = route
    return route


def _costs(problem: MFGProblem, M: np.ndarray) -> np.ndarray:
    """``f(x, M[n], t_{n+1})`` for every level, on the host."""
    x, t, cost = problem.x, problem.t[1:], problem.cost_parameters
    zero = np.zeros(problem.Nx, dtype=M.dtype)
    return np.stack([zero + problem.running_cost(x, M[n], t[n], **cost) for n in range(len(M))])


def _jvp_complex(problem: MFGProblem, M: np.ndarray, direction: np.ndarray) -> np.ndarray:
    h = 1e-30
    return np.imag(_costs(problem, M + 1j * h * direction)) / h


def _jvp_jax(problem: MFGProblem, M: np.ndarray, direction: np.ndarray) -> np.ndarray:
    import jax
    import jax.numpy as jnp

    key = (problem.running_cost, problem.Nx, problem.Nt, tuple(problem.cost_parameters))
    program = _jax_programs.get(key)
    if program is None:
        f = problem.running_cost

        def level(m, t, x, cost):
            return jnp.zeros_like(x) + f(x, m, t, **cost)

        def jvp(M, V, t, x, cost):
            costs = lambda M: jax.vmap(level, in_axes=(0, 0, None, None))(M, t, x, cost)  # noqa: E731
            return jax.jvp(costs, (M,), (V,))[1]

        program = _jax_programs[key] = jax.jit(jvp)
    out = program(
        jnp.asarray(M),
        jnp.asarray(direction),
        jnp.asarray(problem.t[1:]),
        jnp.asarray(problem.x),
        {k: float(v) for k, v in problem.cost_parameters.items()},
    )
    return np.asarray(out)
