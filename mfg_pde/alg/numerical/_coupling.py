"""The derivative of the running cost in the density, ``∂f/∂m``, for the Newton solver.

Two exact routes (exact to rounding, not a finite difference):

* the complex step, ``Im f(x, m + i h v, t) / h`` with ``h = 1e-30``: no cancellation
  error, no compilation, one cost evaluation per level. It is exact for costs built
  from analytic operations and silently wrong for others (``abs``), so its first use
  on a cost is checked against a central difference at ``m0`` (relative agreement to
  ``FD_CHECK_RTOL`` required);
* when that check fails or the cost rejects complex arrays: forward-mode
  differentiation (``jax.jvp``) of the cost evaluated with ``jax.numpy`` arrays,
  compiled once per cost (needs JAX: ``pip install "mfg_pde[jax]"``). If neither works
  a ``TypeError`` says so.

Locality is detected by probing: a local coupling ``f(x_i, m_i, t)`` has
``f'(m) v = diag(f'(m)) ⊙ v`` for every direction ``v``; then the Jacobian is the
vector ``f'(m) 1`` per level. Otherwise the dense ``Nx x Nx`` Jacobian per level is
formed, one directional derivative per column (a nonlocal coupling, e.g. through
``(x * m).sum()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem

#: Relative agreement the complex step must show with a central difference on first use.
FD_CHECK_RTOL = 1e-6
#: Relative size of the off-diagonal response below which a coupling counts as local.
LOCAL_RTOL = 1e-12

_jax_programs: dict[Any, Any] = {}
_checked: dict[Any, str] = {}
_local: dict[Any, bool] = {}


def coupling_jacobian(problem: MFGProblem, M: np.ndarray) -> np.ndarray:
    """``∂f/∂m`` at the densities ``M`` (levels ``1..Nt``, shape ``(Nt, Nx)``).

    Returns ``(Nt, Nx)``, the diagonal, for a local coupling, else ``(Nt, Nx, Nx)`` with
    ``out[n, i, j] = ∂f_i / ∂m_j`` at level ``n + 1``.
    """
    route = _route(problem)
    ones = np.ones_like(M)
    probe = np.random.default_rng(0).uniform(0.5, 1.5, size=M.shape)
    jvp = _jvp_complex if route == "complex" else _jvp_jax
    diag = jvp(problem, M, ones)
    response = jvp(problem, M, probe)
    scale = max(np.abs(diag).max(), 1e-300)
    if np.abs(response - diag * probe).max() <= LOCAL_RTOL * scale * 10:
        return diag
    eye = np.eye(problem.Nx)
    columns = [jvp(problem, M, np.broadcast_to(eye[j], M.shape)) for j in range(problem.Nx)]
    return np.stack(columns, axis=-1)


def coupling_on_device(problem: MFGProblem) -> bool:
    """Whether the backend Newton path may take ``∂f/∂m`` by the complex step on the
    device: the cost is local (probed once, at the initial density frozen in time) and
    the complex step differentiates it exactly (:func:`_route`). Otherwise the host
    computes it (:func:`coupling_jacobian`) and the device gets a copy."""
    key = _key(problem)
    if key not in _local:
        M = np.broadcast_to(problem.m0, (problem.Nt, problem.Nx)) + 0.0
        _local[key] = _route(problem) == "complex" and coupling_jacobian(problem, M).ndim == 2
    return _local[key]


def _key(problem: MFGProblem) -> tuple:
    return (problem.running_cost, problem.Nx, problem.Nt, tuple(problem.cost_parameters))


def _route(problem: MFGProblem) -> str:
    """ "complex" or "jax": how this running cost is differentiated (decided once)."""
    key = _key(problem)
    if key in _checked:
        return _checked[key]
    M = np.broadcast_to(problem.m0, (problem.Nt, problem.Nx)) + 0.0
    direction = np.random.default_rng(1).uniform(0.5, 1.5, size=M.shape)
    h = 1e-6 * max(np.abs(M).max(), 1.0)
    fd = (_costs(problem, M + h * direction) - _costs(problem, M - h * direction)) / (2 * h)
    problems = []
    try:
        cs = _jvp_complex(problem, M, direction)
        if np.abs(cs - fd).max() <= FD_CHECK_RTOL * max(np.abs(fd).max(), 1.0):
            _checked[key] = "complex"
            return "complex"
        problems.append("its complex step disagrees with a finite difference (abs? maximum?)")
    except Exception as err:
        problems.append(f"it does not accept complex arrays ({type(err).__name__}: {err})")
    try:
        from mfg_pde.backends import create_backend

        create_backend("jax")  # enables float64 in JAX
        _jvp_jax(problem, M, direction)
    except Exception as err:
        problems.append(f"JAX could not differentiate it ({type(err).__name__}: {err})")
        raise TypeError(
            "the Newton solver needs the derivative of the running cost in m, but "
            + "; ".join(problems)
            + '. Write it with array arithmetic (and pip install "mfg_pde[jax]")'
        ) from err
    _checked[key] = "jax"
    return "jax"


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

    key = _key(problem)
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
