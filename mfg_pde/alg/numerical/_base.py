"""What every solver shares: the problem, the backend, and the grid on the backend."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem, is_vectorized_cost
from mfg_pde.backends import BaseBackend, create_backend

#: Compiled programs kept per (backend, static structure); the oldest is dropped first.
COMPILED_CACHE_SIZE = 32
_compiled: OrderedDict[Hashable, Callable] = OrderedDict()
_compiled_lock = threading.RLock()


def compiled_program(
    backend: BaseBackend, key: tuple, build: Callable[[], Callable]
) -> tuple[Callable, bool]:
    """``(backend.jit(build()), new)``, shared by every solver whose structure is ``key``.

    ``key`` must name everything the built function closes over (grid sizes, boundary,
    the running-cost callable, solver options); the values that change between problems
    of one structure (σ, λ, dx, dt, the cost parameters, g, m0) are passed as arguments.
    So a second solver for a problem that differs only in values reuses the compiled
    program instead of compiling again, and a batch of them can be vmapped. ``new`` says
    whether it was built by this call (on jax its first call will compile).
    """
    full_key = (*backend.program_key, *key)
    with _compiled_lock:  # batches solve members in threads
        fn = _compiled.get(full_key)
        if fn is not None:
            _compiled.move_to_end(full_key)
            return fn, False
        fn = backend.jit(build())
        _compiled[full_key] = fn
        while len(_compiled) > COMPILED_CACHE_SIZE:
            _compiled.popitem(last=False)
        return fn, True


def check_solve_arguments(
    max_iterations: Any, tolerance: Any, equation_tolerance: Any = None
) -> tuple[float, float]:
    """Validate the arguments every ``solve`` takes; return ``(tolerance,
    equation_tolerance)`` as floats, ``inf`` for an equation tolerance of None (off)."""
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
        raise TypeError(f"max_iterations must be an int, got {max_iterations!r}")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    if equation_tolerance is None:
        return float(tolerance), math.inf
    if not (isinstance(equation_tolerance, (int, float)) and equation_tolerance > 0):
        raise ValueError(
            f"equation_tolerance must be a positive number or None, got {equation_tolerance!r}"
        )
    return float(tolerance), float(equation_tolerance)


def initial_iterate(problem: MFGProblem, backend: BaseBackend, initial: Any) -> tuple:
    """A caller's starting ``(U, M)`` as float64 host arrays of ``problem.shape``, with
    the fixed end levels ``U[-1] = g`` and ``M[0] = m0`` put back (the ``initial=`` of
    the fixed point and of Newton)."""
    if not (isinstance(initial, tuple | list) and len(initial) == 2):
        raise TypeError("initial must be a pair (U, M) of arrays")
    U, M = (np.array(backend.to_numpy(backend.array(v)), float) for v in initial)
    for name, v in (("U", U), ("M", M)):
        if v.shape != problem.shape:
            raise ValueError(f"initial {name} must have shape {problem.shape}, got {v.shape}")
    U[-1], M[0] = problem.g, problem.m0
    return U, M


def check_krylov_options(krylov_tolerance: Any, max_krylov_iterations: Any) -> None:
    """Validate the 2D solvers' ``krylov_tolerance`` (in (0, 1)) and
    ``max_krylov_iterations`` (an int >= 1)."""
    if not (isinstance(krylov_tolerance, (int, float)) and 0 < krylov_tolerance < 1):
        raise ValueError(f"krylov_tolerance must be in (0, 1), got {krylov_tolerance!r}")
    if isinstance(max_krylov_iterations, bool) or not isinstance(max_krylov_iterations, int):
        raise TypeError(f"max_krylov_iterations must be an int, got {max_krylov_iterations!r}")
    if max_krylov_iterations < 1:
        raise ValueError(f"max_krylov_iterations must be >= 1, got {max_krylov_iterations}")


class BaseSolver:
    """Holds a problem and a backend; rebuilds its compiled functions when the backend changes.

    Subclasses implement :meth:`_build`, which turns the problem into backend arrays and
    (on JAX) compiled functions. ``backend=None`` chooses automatically (see
    :func:`mfg_pde.backends.create_backend`).
    """

    def __init__(self, problem: MFGProblem, backend: str | BaseBackend | None = None) -> None:
        if not isinstance(problem, MFGProblem):
            raise TypeError(f"problem must be an MFGProblem, got {type(problem).__name__}")
        self.problem = problem
        self.set_backend(backend)

    @property
    def backend(self) -> BaseBackend:
        return self._backend

    def set_backend(self, backend: str | BaseBackend | None) -> None:
        """Move the solver to another backend (the fixed-point iterator uses this)."""
        self._backend = create_backend(backend)
        self.xp = self._backend.xp
        self._build()

    def _build(self) -> None:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return f"{type(self).__name__}[{self._backend.name}]"

    def __repr__(self) -> str:
        return f"{self.name}({self.problem!r})"

    def _as_backend(self, arr: Any, name: str, shape: tuple[int, ...]) -> Any:
        """Accept a NumPy or backend array of the given shape, return a backend array."""
        out = self._backend.array(arr)
        if tuple(out.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(out.shape)}")
        return out

    def problem_arrays(self) -> dict[str, Any]:
        """The problem's values on the backend: the arguments of the compiled marches."""
        return problem_arrays(self.problem, self._backend)


def problem_arrays(problem: MFGProblem, backend: BaseBackend) -> dict[str, Any]:
    """Grid, times, g, m0, the scheme's constants and the cost parameters of ``problem``.

    Scalars stay Python floats: a jitted function treats them as traced arguments, so
    their values never enter the compiled code.
    """
    from mfg_pde.alg.numerical._grid2d import neighbour_counts_2d
    from mfg_pde.alg.numerical._stencils import neighbour_counts, scheme_constants

    p = problem
    if p.dim == 2:
        counts = neighbour_counts_2d(backend, p.grid_shape, p.periodic)
    else:
        counts = backend.from_numpy(neighbour_counts(p.Nx, p.boundary == "periodic"))
    return {
        "c": scheme_constants(p),
        "x": backend.from_numpy(p.x),
        "coords": tuple(backend.from_numpy(np.ascontiguousarray(c)) for c in p.coords),
        "t": backend.from_numpy(p.t),
        "g": backend.from_numpy(p.g),
        "m0": backend.from_numpy(p.m0),
        "counts": counts,
        "cost": {k: float(v) for k, v in p.cost_parameters.items()},
    }


def running_costs(
    backend: BaseBackend, running_cost: Any, arrays: dict[str, Any], M: Any, t: Any
) -> Any:
    """``f(x, M[n], t[n])`` for every level ``n``, stacked: shape ``(len(t), *grid)``.

    Mapped with :meth:`~mfg_pde.backends.BaseBackend.vmap`, so each call sees one
    level's density, as the running cost's contract says (a nonlocal cost's ``.sum()``
    sums one profile); jax and torch batch the levels in one call, the default loops.
    On numpy and numba a cost declared with :func:`mfg_pde.vectorized_cost` is called
    once with the levels stacked (``t`` as a column).
    """
    coords, cost = arrays["coords"], arrays["cost"]
    if backend.is_host_numpy and is_vectorized_cost(running_cost):
        # Declared vectorized (checked when the problem was built): one call for all
        # levels instead of the default vmap's Python loop.
        xp = backend.xp
        column = xp.reshape(t, (t.shape[0],) + (1,) * (M.ndim - 1))
        return xp.zeros_like(M) + running_cost(*coords, M, column, **cost)
    zero = backend.xp.zeros_like(coords[0])

    def level(row: tuple) -> Any:
        return zero + running_cost(*coords, row[0], row[1], **cost)

    return backend.vmap(level)((M, t))
