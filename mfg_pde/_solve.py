"""``solve_mfg``: the one-call entry point."""

from __future__ import annotations

from typing import Any

from mfg_pde._problem import MFGProblem
from mfg_pde._result import MFGResult
from mfg_pde.backends import BaseBackend, create_backend

METHODS = ("fdm", "particle")
_PARTICLE_OPTIONS = ("num_particles", "seed", "kde_method", "bandwidth")
_HJB_OPTIONS = ("newton_tolerance", "max_newton_iterations")
_ITERATOR_OPTIONS = ("thetaUM", "use_anderson", "anderson_depth")
_SOLVE_OPTIONS = ("max_iterations", "tolerance", "verbose", "callback")


def solve_mfg(
    problem: MFGProblem,
    method: str = "fdm",
    backend: str | BaseBackend | None = None,
    **options: Any,
) -> MFGResult:
    """Solve an MFG problem with finite differences or particles for the FP equation.

    Parameters
    ----------
    problem : MFGProblem
    method : {"fdm", "particle"}
        The HJB equation is always solved by :class:`HJBFDMSolver`; the FP equation by
        :class:`FPFDMSolver` ("fdm") or :class:`FPParticleSolver` ("particle").
    backend : str, BaseBackend or None
        None chooses automatically (torch > jax > numpy, ``$MFG_PDE_BACKEND`` overrides).
    **options
        ``max_iterations`` (100), ``tolerance`` (1e-6), ``thetaUM`` (0.5),
        ``use_anderson`` (False), ``anderson_depth`` (5), ``newton_tolerance``,
        ``max_newton_iterations``; for particles ``num_particles``, ``seed``,
        ``kde_method``, ``bandwidth``. ``verbose`` (False) shows a progress bar;
        ``callback(iteration, residuals)`` is called after every iteration and stops the
        solve by returning a true value (:meth:`FixedPointIterator.solve`).

    Returns
    -------
    MFGResult
    """
    from mfg_pde.alg.numerical import (
        FixedPointIterator,
        FPFDMSolver,
        FPParticleSolver,
        HJBFDMSolver,
    )

    if method not in METHODS:
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
    pick = lambda names: {k: options[k] for k in names if k in options}  # noqa: E731
    b = create_backend(backend)
    hjb = HJBFDMSolver(problem, backend=b, **pick(_HJB_OPTIONS))
    if method == "fdm":
        fp = FPFDMSolver(problem, backend=b)
    else:
        fp = FPParticleSolver(problem, backend=b, **pick(_PARTICLE_OPTIONS))
    iterator = FixedPointIterator(problem, hjb, fp, **pick(_ITERATOR_OPTIONS))
    return iterator.solve(**pick(_SOLVE_OPTIONS))
