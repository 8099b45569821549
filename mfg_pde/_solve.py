"""``solve_mfg``: the one-call entry point."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde._result import MFGResult
from mfg_pde.backends import BaseBackend, create_backend

METHODS = ("fdm", "particle", "newton", "auto")
_PARTICLE_OPTIONS = ("num_particles", "seed", "kde_method", "bandwidth", "strategy", "devices")
_HJB_OPTIONS = ("newton_tolerance", "max_newton_iterations")
_ITERATOR_OPTIONS = (
    "thetaUM",
    "use_anderson",
    "anderson_depth",
    "compile",
    "adaptive_damping",
    "anderson_mixing",
    "anderson_safeguard",
    "anderson_restart",
    "stall_window",
)
_SOLVE_OPTIONS = ("max_iterations", "tolerance", "equation_tolerance", "verbose", "callback")
_NEWTON_OPTIONS = ("continuation", "attempt_iterations", "max_continuation_steps", "linear_solver")
_NEWTON_SOLVE_OPTIONS = ("max_iterations", "tolerance", "verbose", "callback")
_AUTO_ITERATOR_OPTIONS = ("thetaUM", "anderson_depth", "anderson_mixing", "compile")
_AUTO_OPTIONS = (
    *_HJB_OPTIONS,
    "thetaUM",
    "anderson_depth",
    "anderson_mixing",
    "compile",
    *_NEWTON_OPTIONS,
    "max_iterations",
    "tolerance",
    "equation_tolerance",
    "newton_iterations",
    "verbose",
)


def solve_mfg(
    problem: MFGProblem,
    method: str = "fdm",
    backend: str | BaseBackend | None = None,
    **options: Any,
) -> MFGResult:
    """Solve an MFG problem: fixed point, Newton, or an automatic escalation.

    Parameters
    ----------
    problem : MFGProblem
    method : {"fdm", "particle", "newton", "auto"}
        "fdm" and "particle": the fixed point (:class:`FixedPointIterator`) of
        :class:`HJBFDMSolver` and :class:`FPFDMSolver` ("fdm") or
        :class:`FPParticleSolver` ("particle"). "newton": :class:`NewtonSolver` on the
        same finite-difference system (its ``tolerance``, default 1e-8, is on the
        discrete equation residual; options ``max_iterations``, ``tolerance``,
        ``continuation``, ``attempt_iterations``, ``max_continuation_steps``,
        ``linear_solver`` ("gmres" or "lu"), ``verbose``, ``callback``). "auto": damped
        Picard while its contraction rate can meet the tolerances within
        ``max_iterations``, then Newton, and safeguarded Anderson only to rescue a
        failed Newton (``tolerance`` on the fixed-point changes, ``equation_tolerance``,
        default 1e-8, on the equations, ``max_iterations`` per fixed-point stage,
        ``newton_iterations`` (50) for Newton); the result's ``method`` and ``stages``
        say which stage produced it and what each did
        (:func:`mfg_pde._auto.solve_auto`).
    backend : str, BaseBackend or None
        None chooses automatically (torch > jax > numpy, ``$MFG_PDE_BACKEND`` overrides).
    **options
        ``max_iterations`` (100), ``tolerance`` (1e-6), ``thetaUM`` (0.5),
        ``use_anderson`` (False), ``anderson_depth`` (5), ``newton_tolerance``,
        ``max_newton_iterations``, ``compile`` (True), ``equation_tolerance`` (None),
        ``adaptive_damping`` (False), ``anderson_mixing``, ``anderson_safeguard``,
        ``anderson_restart``, ``stall_window`` (None: stop a fixed point early when its
        residual's trend over this many iterations cannot meet the tolerances within
        ``max_iterations``, see :class:`FixedPointIterator`); for particles
        ``num_particles``, ``seed``, ``kde_method``,
        ``bandwidth``, ``strategy``, ``devices`` (JAX devices to split the particles
        over, see :class:`FPParticleSolver`). ``verbose`` (False) shows a progress bar;
        ``callback(iteration, residuals)`` is called after every iteration and stops the
        solve by returning a true value (:meth:`FixedPointIterator.solve`).

        ``mesh=AdaptiveMesh(...)`` (2D, no-flux) solves on the leaves of the quadtree
        and adapts it during the solve (:class:`AdaptiveMFGSolver`; options
        ``adapt_every``, ``max_adapts``, ``thetaUM``, ``newton_tolerance``,
        ``krylov_tolerance``, ``max_iterations``, ``tolerance``,
        ``equation_tolerance``, ``verbose``) and returns an
        :class:`~mfg_pde.alg.numerical.amr_result.AdaptiveMFGResult`.

    Returns
    -------
    MFGResult
    """
    if "mesh" in options:
        return _solve_on_mesh(problem, method, backend, options)
    if method in ("newton", "auto"):
        return _solve_newton_or_auto(problem, method, backend, options)
    return _iterator(problem, method, backend, options).solve(**_pick(options, _SOLVE_OPTIONS))


#: Options of :class:`~mfg_pde.alg.numerical.AdaptiveMFGSolver` and of its solve.
_MESH_OPTIONS = (
    "thetaUM",
    "use_anderson",
    "anderson_depth",
    "adapt_every",
    "max_adapts",
    "adapt_on",
    "mesh_tolerance",
    "newton_tolerance",
    "max_newton_iterations",
    "krylov_tolerance",
    "fp_krylov_tolerance",
    "max_krylov_iterations",
)
_MESH_SOLVE_OPTIONS = ("max_iterations", "tolerance", "equation_tolerance", "verbose")


def _solve_on_mesh(problem, method, backend, options):
    """``solve_mfg(problem, mesh=AdaptiveMesh(...))``: finite volumes on the quadtree."""
    from mfg_pde.alg.numerical import AdaptiveMFGSolver

    options = dict(options)
    mesh = options.pop("mesh")
    if method != "fdm":
        raise ValueError(
            f"on an adaptive mesh the solver is the finite-volume fixed point (method='fdm'); "
            f"got method={method!r}"
        )
    allowed = _MESH_OPTIONS + _MESH_SOLVE_OPTIONS
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} with mesh=; accepted: {', '.join(allowed)}"
        )
    solver = AdaptiveMFGSolver(problem, mesh, backend=backend, **_pick(options, _MESH_OPTIONS))
    return solver.solve(**_pick(options, _MESH_SOLVE_OPTIONS))


def _solve_newton_or_auto(problem, method, backend, options):
    from mfg_pde._auto import solve_auto

    if getattr(problem, "dim", 1) != 1:
        raise NotImplementedError(
            f"method={method!r} needs the Newton solver, which is one-dimensional; for this "
            "2D problem use method='fdm' (or 'particle'), optionally with use_anderson=True "
            "and adaptive_damping=True"
        )
    from mfg_pde.alg.numerical import NewtonSolver

    allowed = _NEWTON_OPTIONS + _NEWTON_SOLVE_OPTIONS if method == "newton" else _AUTO_OPTIONS
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for method={method!r}; "
            f"accepted: {', '.join(allowed)}"
        )
    b = create_backend(backend)
    if method == "newton":
        solver = NewtonSolver(problem, backend=b, **_pick(options, _NEWTON_OPTIONS))
        return solver.solve(**_pick(options, _NEWTON_SOLVE_OPTIONS))
    return solve_auto(
        problem,
        b,
        hjb_options=_pick(options, _HJB_OPTIONS),
        iterator_options=_pick(options, _AUTO_ITERATOR_OPTIONS),
        newton_options=_pick(options, _NEWTON_OPTIONS),
        **_pick(
            options,
            ("max_iterations", "tolerance", "equation_tolerance", "newton_iterations", "verbose"),
        ),
    )


def _iterator(problem, method, backend, options):
    """The FixedPointIterator that :func:`solve_mfg` runs (options checked here)."""
    from mfg_pde.alg.numerical import (
        FixedPointIterator,
        FPFDMSolver,
        FPParticleSolver,
        HJBFDMSolver,
    )

    if method not in ("fdm", "particle"):  # newton and auto do not run a FixedPointIterator
        raise ValueError(f"method must be one of {METHODS}, got method={method!r}")
    allowed = _HJB_OPTIONS + _ITERATOR_OPTIONS + _SOLVE_OPTIONS
    if method == "particle":
        allowed += _PARTICLE_OPTIONS
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for method={method!r}; "
            f"accepted: {', '.join(allowed)}"
        )
    pick = lambda names: _pick(options, names)  # noqa: E731
    b = create_backend(backend)
    hjb = HJBFDMSolver(problem, backend=b, **pick(_HJB_OPTIONS))
    if method == "fdm":
        fp = FPFDMSolver(problem, backend=b)
    else:
        fp = FPParticleSolver(problem, backend=b, **pick(_PARTICLE_OPTIONS))
    return FixedPointIterator(problem, hjb, fp, **pick(_ITERATOR_OPTIONS))


def _pick(options: dict, names: tuple) -> dict:
    return {k: options[k] for k in names if k in options}


#: Problem values a batch may vary (besides the names in ``cost_parameters``).
BATCH_PARAMETERS = ("sigma", "control_cost")


def solve_mfg_batch(
    problem: MFGProblem,
    batch: dict[str, Any],
    method: str = "fdm",
    backend: str | BaseBackend | None = None,
    **options: Any,
) -> list[MFGResult]:
    """Solve a family of problems that differ only in parameter values, together.

    Parameters
    ----------
    problem : MFGProblem
        The shared structure: grid, horizon, callables, and the values not swept.
    batch : dict
        Parameter name -> 1D array of values, all of one length B: ``"sigma"``,
        ``"control_cost"`` or a name in ``problem.cost_parameters``. Member ``i``
        is ``problem.replace(**{name: values[i] for name in batch})``.
    method, backend, **options
        As :func:`solve_mfg`.

    Returns
    -------
    list of MFGResult
        One per member, each as :func:`solve_mfg` would return it for that member.

    On jax with ``method="fdm"`` the compiled fixed-point program is vectorised over
    the batch with ``jax.vmap`` and runs once: every iteration advances all members
    (members that have converged stay frozen) until the last one converges. On numpy,
    numba and torch on the CPU a 1D ``"fdm"`` batch (with any of the fixed point's
    options) stacks the members' iterations, two ranges of members in two threads, each
    member leaving the stack when it stops; every member gets its own solve's numbers,
    to the bit on numpy (:mod:`mfg_pde.alg.numerical._stacked_batch`); a 2D ``"fdm"``
    batch there solves its members two at a time in threads (their compiled marches
    release the GIL). Elsewhere (other methods, progress reporting) the members are
    solved one after another. The
    members' ``timings`` hold the batch's ``batch_total`` and ``batch_size``.
    """
    if not isinstance(batch, dict) or not batch:
        raise TypeError("batch must be a non-empty dict of parameter name -> values")
    accepted = (*BATCH_PARAMETERS, *problem.cost_parameters)
    values: dict[str, np.ndarray] = {}
    for name, v in batch.items():
        if name not in accepted:
            raise ValueError(f"cannot batch over {name!r}; accepted: {', '.join(accepted)}")
        arr = np.asarray(v, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(
                f"batch[{name!r}] must be a non-empty 1D sequence, got shape {arr.shape}"
            )
        values[name] = arr
    sizes = {arr.size for arr in values.values()}
    if len(sizes) != 1:
        raise ValueError(f"batch values must all have one length, got lengths {sorted(sizes)}")
    size = sizes.pop()
    # Building each member validates its values (sigma >= 0, control_cost > 0, finite).
    members = [problem.replace(**{k: float(v[i]) for k, v in values.items()}) for i in range(size)]

    from mfg_pde.alg.numerical._stacked_batch import (
        runs_members_in_threads,
        runs_stacked,
        solve_in_threads,
    )

    start = time.perf_counter()
    b = create_backend(backend)
    iterator = _iterator(problem, method, b, options) if method in ("fdm", "particle") else None
    reports = options.get("verbose") or options.get("callback") is not None
    if iterator is not None and iterator.runs_as_one_program and not reports:
        results = _solve_vmapped(iterator, members, values, _pick(options, _SOLVE_OPTIONS))
    elif iterator is not None and runs_stacked(iterator) and not reports:
        results = _solve_stacked(iterator, members, method, b, options)
    elif iterator is not None and runs_members_in_threads(iterator) and not reports:
        results = solve_in_threads(members, lambda m: solve_mfg(m, method, b, **options))
    else:  # one solve_mfg per member: other backends and methods, progress reporting
        results = [solve_mfg(m, method, b, **options) for m in members]
    total = time.perf_counter() - start
    for result in results:
        result.timings.update(batch_total=total, batch_size=float(size))
    return results


def _solve_stacked(iterator, members, method, backend, options) -> list[MFGResult]:
    """numpy, numba, torch on the CPU: the members' 1D iterations stacked
    (:mod:`mfg_pde.alg.numerical._stacked_batch`)."""
    from mfg_pde.alg.numerical._base import check_solve_arguments
    from mfg_pde.alg.numerical._stacked_batch import solve_stacked

    max_iterations = options.get("max_iterations", 100)
    tolerances = check_solve_arguments(
        max_iterations, options.get("tolerance", 1e-6), options.get("equation_tolerance")
    )
    member_iterators = [_iterator(m, method, backend, options) for m in members]
    return solve_stacked(iterator, member_iterators, members, tolerances, max_iterations)


def _solve_vmapped(iterator, members, values, solve_options) -> list[MFGResult]:
    """jax: one vmapped run of the compiled fixed-point program over the batch."""
    import jax

    from mfg_pde.alg.numerical._base import check_solve_arguments, compiled_program
    from mfg_pde.alg.numerical._fixed_point_result import fixed_point_result

    b, problem = iterator.backend, iterator.problem
    max_iterations = solve_options.get("max_iterations", 100)
    tolerances = check_solve_arguments(
        max_iterations,
        solve_options.get("tolerance", 1e-6),
        solve_options.get("equation_tolerance"),
    )

    program, compile_seconds = iterator.program(max_iterations)
    arrays = iterator.program_arrays()
    axes = jax.tree_util.tree_map(lambda _: None, arrays)
    c, c_axes = arrays["c"], axes["c"]
    if "sigma" in values:
        c = c._replace(nu=b.from_numpy(0.5 * values["sigma"] ** 2))
        c_axes = c_axes._replace(nu=0)
    if "control_cost" in values:
        c = c._replace(control_cost=b.from_numpy(values["control_cost"]))
        c_axes = c_axes._replace(control_cost=0)
    arrays["c"], axes["c"] = c, c_axes
    for name in problem.cost_parameters:
        if name in values:
            arrays["cost"][name] = b.from_numpy(values[name])
            axes["cost"][name] = 0
    key = ("batch", id(program), tuple(sorted(values)), max_iterations)
    batched, new = compiled_program(b, key, lambda: jax.vmap(program, in_axes=(axes, None, None)))
    start = time.perf_counter()
    state = batched(arrays, *tolerances)
    b.to_numpy(state.k)
    if new:  # the first call compiled the vmapped program
        compile_seconds += time.perf_counter() - start
    results = []
    for i, member in enumerate(members):
        one = jax.tree_util.tree_map(lambda leaf, i=i: leaf[i], state)
        results.append(
            fixed_point_result(
                iterator,
                one,
                tolerances,
                max_iterations,
                {"compile": compile_seconds},
                [],
                problem=member,
            )
        )
    return results
