"""A batch of 1D finite-difference problems solved with their iterations stacked, on the host.

On numpy, numba and torch on the CPU, :func:`mfg_pde.solve_mfg_batch` stacks the
members' iterates as ``(Nt + 1, B, Nx)`` and runs one iteration
(:func:`~mfg_pde.alg.numerical._fixed_point_iteration.make_iteration` with
``members=True``) for all of them:

* the FP march and the equation residual are one compiled pass over the stack each
  (:meth:`~mfg_pde.backends.BaseBackend.fdm_1d_kernels`), the HJB march one compiled
  Newton march per member in one call; the scheme's ν and λ are ``(B, 1)`` columns;
* the running costs are evaluated member by member, as a single solve calls them (a
  cost's contract is one density profile per call, with the member's
  ``cost_parameters``);
* the norms, the damping and the stopping tests are array operations on the stack;
* a member leaves the stack when it stops (converged, non-finite, or out of
  iterations), so the rest no longer pay for it.

The members are split into :data:`MEMBER_CHUNKS` fixed ranges, each a stack of its
own, run at once in threads: the compiled passes release the GIL, so on two cores the
ranges overlap (the per-member work is the compiled marches; the Python between them
is shared by a range's members).

Every member's numbers are those of its own single solve, to the bit on numpy: the
same operations on the same values in the same order (each member's norms are summed
along its own contiguous copy, as a single solve sums its array), whatever the other
members do and however the members are split.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from mfg_pde.alg.numerical import _fdm1d_host as fdm1d
from mfg_pde.alg.numerical._base import running_costs
from mfg_pde.alg.numerical._fixed_point_iteration import (
    RUNNING,
    initial_state,
    make_iteration,
)
from mfg_pde.alg.numerical._fixed_point_result import fixed_point_result
from mfg_pde.alg.numerical.fp_fdm import FPFDMSolver
from mfg_pde.alg.numerical.hjb_fdm import HJBFDMSolver
from mfg_pde.backends._base import host_threads

#: Ranges of members solved at once in threads (at most one per core this process may
#: use, and one with ``NUMBA_NUM_THREADS=1``): the compiled passes release the GIL, the
#: Python in between does not.
MEMBER_CHUNKS = 2

#: How a member's value sits in the stack, by IterationState (and StallState) field:
#: a field (Nt + 1, Nx) on axis 1 of (Nt + 1, B, Nx), a history (max_iterations,) as a
#: row, a scalar () as a (B, 1) column; Anderson's histories stay one per member, the
#: stall state is stacked field by field.
_KINDS = {
    **dict.fromkeys(("U", "M", "bad"), "field"),
    **dict.fromkeys(("res_u", "res_m", "res_hjb", "res_fp", "lows"), "history"),
    **dict.fromkeys(
        ("k", "theta", "last", "since", "status", "newton_failures", "low", "rate", "remaining"),
        "scalar",
    ),
    "anderson": "per member",
    "stall": "nested",
}


def runs_stacked(iterator: Any) -> bool:
    """Whether :func:`solve_stacked` serves ``iterator``'s batch: 1D finite differences
    (every option of the fixed point: damping, adaptive damping, Anderson, the stall
    window) on a backend with the compiled 1D passes
    (:meth:`~mfg_pde.backends.BaseBackend.fdm_1d_kernels`: numpy with numba, torch on
    the CPU; jax vmaps its whole program instead)."""
    return _compiled_fdm(iterator, 1) and iterator.backend.fdm_1d_kernels() is not None


def runs_members_in_threads(iterator: Any) -> bool:
    """Whether a batch of ``iterator``'s problems is solved member by member in threads
    (:func:`solve_in_threads`): 2D finite differences on a backend whose 2D marches are
    compiled host calls that release the GIL (numpy with numba, torch on the CPU). A 2D
    member's solve is ~95% inside them (128² x 100: 14 of 15.5 s), so two members run at
    once on two cores; in 1D the Python between the marches dominates and the members
    are stacked instead (:func:`solve_stacked`)."""
    b = iterator.backend
    return (
        _compiled_fdm(iterator, 2)
        and not b.has_capability("kernel_fusion")
        and b.hjb_march_2d_kernel() is not None
        and b.fp_march_2d_kernel() is not None
    )


def _compiled_fdm(iterator: Any, dim: int) -> bool:
    """A finite-difference fixed point (HJB and FP) in ``dim`` dimensions, compiled."""
    return (
        iterator.problem.dim == dim
        and type(iterator.hjb_solver) is HJBFDMSolver
        and type(iterator.fp_solver) is FPFDMSolver
        and iterator.compile
    )


def solve_in_threads(members: list, solve: Any) -> list:
    """``[solve(m) for m in members]``, up to :data:`MEMBER_CHUNKS` at once in threads;
    each member's solve is its own (the same numbers as alone). On an error or Ctrl-C
    the members not started are cancelled."""
    threads = min(len(members), host_threads(MEMBER_CHUNKS))
    if threads == 1:
        return [solve(m) for m in members]
    with ThreadPoolExecutor(threads) as pool:
        jobs = [pool.submit(solve, m) for m in members]
        try:
            return [job.result() for job in jobs]
        except BaseException:
            for job in jobs:
                job.cancel()
            raise


def solve_stacked(
    iterator: Any,
    member_iterators: list,
    members: list,
    tolerances: tuple[float, float],
    max_iterations: int,
) -> list:
    """Solve the batch (``iterator`` built for the shared problem, one iterator per
    member for its values); returns one :class:`~mfg_pde.MFGResult` per member."""
    b, p = iterator.backend, iterator.problem
    member_arrays = [it.hjb_solver.problem_arrays() for it in member_iterators]
    periodic = p.boundary == "periodic"
    kernels = b.fdm_1d_kernels()
    iteration = make_iteration(
        iterator,
        b,
        _hjb_march(iterator, member_iterators, member_arrays),
        lambda arrays, U: fdm1d.fp_march(kernels, b, arrays, U, periodic),
        lambda arrays, U, M: fdm1d.equation_residual(
            kernels, b, arrays, U, M, _costs(b, p, member_arrays, arrays, M), periodic
        ),
        max_iterations,
        members=True,
    )

    abandon = threading.Event()  # set when the caller is interrupted or a range fails

    def run(members_range: range) -> list:
        return _iterate(
            b,
            iteration,
            member_iterators,
            member_arrays,
            members_range,
            (tolerances, max_iterations),
            abandon,
        )

    chunks = min(len(members), host_threads(MEMBER_CHUNKS))
    bounds = np.linspace(0, len(members), chunks + 1).astype(int)
    ranges = [range(a, z) for a, z in zip(bounds[:-1], bounds[1:], strict=True)]
    if len(ranges) == 1:
        finals = run(ranges[0])
    else:  # the kernels and numpy's loops release the GIL: the ranges overlap
        with ThreadPoolExecutor(len(ranges)) as pool:
            jobs = [pool.submit(run, r) for r in ranges]
            try:
                finals = [final for job in jobs for final in job.result()]
            except BaseException:  # Ctrl-C or a failed member: stop the other ranges too
                abandon.set()
                raise
    return [
        fixed_point_result(it, final, tolerances, max_iterations, {}, [], problem=member)
        for it, final, member in zip(member_iterators, finals, members, strict=True)
    ]


def _iterate(b, iteration, member_iterators, member_arrays, members_range, limits, abandon) -> list:
    """Run the stacked iteration of the members ``members_range``; a member leaves the
    stack when it stops. Returns their final single states, in order (nothing once
    ``abandon`` is set: the batch is being abandoned). ``limits``: ``(tolerances,
    max_iterations)``."""
    tolerances, max_iterations = limits
    active = list(members_range)
    state = _stack(
        b,
        [initial_state(member_iterators[i], b, member_arrays[i], max_iterations) for i in active],
    )
    finals = dict.fromkeys(active)
    for k in range(max_iterations):
        if abandon.is_set():
            return []
        state = iteration(_stacked_arrays(b, member_arrays, active), tolerances, state)
        status = b.to_numpy(state.status).reshape(-1)
        stopped = (status != RUNNING) | (k + 1 == max_iterations)
        if not stopped.any():
            continue
        for j in np.flatnonzero(stopped):
            finals[active[j]] = _member(state, int(j))
        keep = np.flatnonzero(~stopped)
        if keep.size == 0:
            break
        state = _take(b, state, keep)
        active = [active[j] for j in keep]
    return [finals[i] for i in members_range]


def _hjb_march(iterator: Any, member_iterators: list, member_arrays: list) -> Any:
    """The stacked HJB march ``(arrays, M, U_guess) -> (U, failures)``: each member's
    compiled Newton march (on no-flux grids in two threads; periodic grids run each
    member's array march), from its running costs."""
    b, p, xp = iterator.backend, iterator.problem, iterator.backend.xp
    hjb = iterator.hjb_solver
    kernels = b.fdm_1d_kernels()

    def per_member(arrays: dict, M: Any, U_guess: Any) -> tuple[Any, Any]:
        values, failures = [], []
        for j, i in enumerate(arrays["active"]):
            solver = member_iterators[i].hjb_solver
            values.append(solver.solve_backend(M[:, j], U_guess[:, j]))
            failures.append(solver._failures)
        return xp.stack(values, axis=1), xp.reshape(xp.stack(failures), (-1, 1))

    def compiled(arrays: dict, M: Any, U_guess: Any) -> tuple[Any, Any]:
        guess = fdm1d.host_stack(b, U_guess)
        members = guess.shape[1]
        out, failures = np.empty_like(guess), np.zeros(members, dtype=np.int64)
        kernels.hjb_march_members(
            np.ascontiguousarray(b.to_numpy(arrays["g"]), dtype=np.float64),
            fdm1d.host_stack(b, _costs(b, p, member_arrays, arrays, M)),
            guess,
            *fdm1d.scheme_arguments(b, arrays, members),
            float(hjb.newton_tolerance),
            int(hjb.max_newton_iterations),
            out,
            failures,
            0,
            members,
        )
        return b.from_numpy(out), b.from_numpy(failures[:, None])

    return per_member if p.boundary == "periodic" else compiled


def _costs(b: Any, p: Any, member_arrays: list, arrays: dict, M: Any) -> Any:
    """The active members' running costs at levels 1..Nt, ``(Nt, B, n)``: one call per
    member and level as a single solve makes them (a cost sees one density profile)."""
    t = arrays["t"][1:]
    levels = [
        running_costs(b, p.running_cost, member_arrays[i], M[1:, j], t)
        for j, i in enumerate(arrays["active"])
    ]
    return b.xp.stack(levels, axis=1)


def _stacked_arrays(b: Any, member_arrays: list, active: list) -> dict:
    """The shared problem arrays with the active members' ν and λ as ``(B, 1)`` columns
    and ``m0`` per member (what the FP march and the residual read)."""
    xp = b.xp
    first = member_arrays[active[0]]

    def column(name: str) -> Any:
        values = [float(getattr(member_arrays[i]["c"], name)) for i in active]
        return b.from_numpy(np.asarray(values)[:, None])

    c = first["c"]._replace(nu=column("nu"), control_cost=column("control_cost"))
    m0 = xp.stack([member_arrays[i]["m0"] for i in active])
    g = xp.stack([member_arrays[i]["g"] for i in active])
    return {**first, "c": c, "m0": m0, "g": g, "active": active}


def _stack(b: Any, states: list) -> Any:
    """One state for the batch from the members' single states."""
    xp, out = b.xp, {}
    for name in states[0]._fields:
        values = [getattr(s, name) for s in states]
        kind = _KINDS[name]
        if values[0] is None:
            out[name] = None
        elif kind == "field":
            out[name] = xp.stack(values, axis=1)
        elif kind == "history":
            out[name] = xp.stack(values)
        elif kind == "scalar":
            out[name] = xp.reshape(xp.stack(values), (-1, 1))
        elif kind == "per member":
            out[name] = tuple(values)
        else:
            out[name] = _stack(b, values)
    return type(states[0])(**out)


def _member(state: Any, j: int) -> Any:
    """Member ``j``'s single state (the shapes a single solve ends with)."""
    return _per_kind(
        state,
        {
            "field": lambda v: v[:, j],
            "history": lambda v: v[j],
            "scalar": lambda v: v[j, 0],
            "per member": lambda v: v[j],
        },
    )


def _take(b: Any, state: Any, keep: np.ndarray) -> Any:
    """The members ``keep`` of the stack, in order."""
    xp, index = b.xp, b.xp.asarray(keep)
    rows = lambda v: xp.take(v, index, axis=0)  # noqa: E731
    return _per_kind(
        state,
        {
            "field": lambda v: xp.take(v, index, axis=1),
            "history": rows,
            "scalar": rows,
            "per member": lambda v: tuple(v[int(j)] for j in keep),
        },
    )


def _per_kind(state: Any, how: dict) -> Any:
    """``state`` with ``how[kind]`` applied to each field by its kind (:data:`_KINDS`),
    nested states field by field."""
    out = {}
    for name in state._fields:
        value, kind = getattr(state, name), _KINDS[name]
        if value is None:
            out[name] = None
        else:
            out[name] = _per_kind(value, how) if kind == "nested" else how[kind](value)
    return type(state)(**out)
