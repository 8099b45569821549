"""A backend nobody special-cases: ``array-api-strict`` through the documented hooks only.

``tests/strict_backend.py`` writes nothing but what docs/backends.md ("Adding a backend")
asks of a new backend; the tridiagonal solve and the scatter-add are the generic
defaults of :class:`~mfg_pde.backends.BaseBackend`. The 1D finite-difference fixed point
and the quadtree's array kernels must then give NumPy's numbers to 1e-12: anything in
the solvers outside the Array API standard, or branching on a backend's name, fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
import strict_backend
from test_amr import adapted_mesh, front_density

from mfg_pde import MFGProblem, backends, solve_mfg
from mfg_pde.alg.numerical import FixedPointIterator, FPFDMSolver, HJBFDMSolver, NewtonSolver
from mfg_pde.backends import BaseBackend, create_backend, register_backend

#: Agreement with NumPy that the issue promises (the differences measured are ~1e-16).
AGREEMENT = 1e-12


@pytest.fixture(scope="module")
def strict() -> BaseBackend:
    strict_backend.register()
    return create_backend(strict_backend.NAME)


def close(a, b, bound=AGREEMENT):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    scale = max(1.0, float(np.max(np.abs(b))))
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    assert err <= bound * scale, f"max difference {err:.3g} against a scale of {scale:.3g}"


# -- registration ---------------------------------------------------------------------


def test_a_registered_backend_is_created_by_name_and_listed_in_errors(strict):
    assert isinstance(strict, strict_backend.StrictBackend)
    assert type(create_backend(" Array-API-Strict ")) is strict_backend.StrictBackend
    with pytest.raises(ValueError, match="array-api-strict"):
        create_backend("no-such-backend")


def test_register_backend_refuses_what_would_break_the_registry(monkeypatch):
    monkeypatch.setattr(backends, "_REGISTERED", dict(backends._REGISTERED))
    with pytest.raises(ValueError, match="built-in"):
        register_backend("numpy", strict_backend.StrictBackend)
    with pytest.raises(ValueError, match="non-empty"):
        register_backend("  ", strict_backend.StrictBackend)
    with pytest.raises(TypeError, match="callable"):
        register_backend("strict-broken", 42)
    register_backend("strict-not-a-backend", lambda: np.zeros(3))
    with pytest.raises(TypeError, match="not a BaseBackend"):
        create_backend("strict-not-a-backend")


# -- the generic defaults a new backend inherits ---------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 101])
def test_default_tridiagonal_solve_is_numpys(strict, reference_backend, n):
    rng = np.random.default_rng(n)
    lower, upper, rhs = rng.normal(size=(3, 4, n))
    diag = 3.0 + rng.random((4, n))  # diagonally dominant, as the schemes' matrices
    expected = reference_backend.solve_tridiagonal(lower, diag, upper, rhs)
    got = strict.solve_tridiagonal(*(strict.from_numpy(a) for a in (lower, diag, upper, rhs)))
    close(strict.to_numpy(got), expected, 1e-14)


def test_default_cyclic_and_marching_solves_are_numpys(strict, reference_backend):
    rng = np.random.default_rng(3)
    lower, upper, rhs = rng.normal(size=(3, 6, 9))
    diag = 3.0 + rng.random((6, 9))
    args = (lower, diag, upper, rhs)
    on_strict = [strict.from_numpy(a) for a in args]
    close(
        strict.to_numpy(strict.solve_cyclic_tridiagonal(*on_strict)),
        reference_backend.solve_cyclic_tridiagonal(*args),
        1e-14,
    )
    for reverse in (False, True):
        for periodic in (False, True):
            got = strict.march_tridiagonal(*on_strict, 7.0, reverse=reverse, periodic=periodic)
            want = reference_backend.march_tridiagonal(
                *args, 7.0, reverse=reverse, periodic=periodic
            )
            close(strict.to_numpy(got), want, 1e-13)


@pytest.mark.parametrize("count", [0, 1, 50, 5000])
def test_default_scatter_add_accumulates_repeated_indices(strict, count):
    rng = np.random.default_rng(count)
    target = rng.normal(size=37)
    # Few distinct indices, so that runs are long; index 36 never hit in small cases.
    indices = rng.integers(0, 12 if count < 100 else 36, size=count)
    values = rng.normal(size=count)
    expected = target.copy()
    np.add.at(expected, indices, values)
    before = strict.from_numpy(target)
    got = strict.scatter_add(before, strict.from_numpy(indices), strict.from_numpy(values))
    close(strict.to_numpy(got), expected, 1e-14)
    np.testing.assert_array_equal(strict.to_numpy(before), target)  # not modified


# -- the solvers, through nothing but the contract --------------------------------------


def test_fdm_fixed_point_on_the_hello_problem_is_numpys(strict, reference_backend):
    """A budget of three Picard iterations on the default (hello) problem, the HJB and FP
    marches and the equation residuals: NumPy's numbers to 1e-12 (the residuals relative
    to the size of their terms). A budget fixes
    the iteration count, so the comparison does not depend on where round-off stops a
    converging run (the converged run is the slow test below; 50 s on this backend)."""
    problem = MFGProblem()
    results = {}
    for b in (strict, reference_backend):
        solver = FixedPointIterator(
            problem,
            HJBFDMSolver(problem),
            FPFDMSolver(problem),
            compile=False,
            backend=b,
        )
        results[b.name] = solver.solve(max_iterations=3)
    got, want = results[strict.name], results[reference_backend.name]
    assert got.iterations == want.iterations == 3
    close(got.U, want.U)
    close(got.M, want.M)
    for key in ("U", "M"):
        close(got.residuals[key], want.residuals[key])
    # The equation residuals are differences of terms of size max(U, M) / dt: their
    # round-off is relative to that, not to the residual.
    dt = problem.T / problem.Nt
    for key, field in (("hjb", want.U), ("fp", want.M)):
        scale = float(np.max(np.abs(field))) / dt
        close(got.residuals[key], want.residuals[key], AGREEMENT * scale)
    assert got.backend == strict.name


@pytest.mark.slow
def test_converged_hello_solve_is_numpys(strict, reference_backend):
    problem = MFGProblem()
    got = solve_mfg(problem, backend=strict)
    want = solve_mfg(problem, backend=reference_backend)
    assert got.converged and want.converged
    close(got.U, want.U)
    close(got.M, want.M)


def test_newton_runs_on_the_strict_arrays_and_gives_numpys_solution(strict, reference_backend):
    """Newton's backend path (residual, matrix-free Jacobian, marches, GMRES) uses only the
    standard and the documented hooks: it runs on array-api-strict's arrays and finds
    NumPy's solution to the tolerance (measured at 21 x 10: 4e-16, the same 10 steps; the
    linear solves differ in rounding, hence a bound of two extra steps)."""
    problem = MFGProblem(Nx=21, Nt=10, running_cost=lambda x, m, t: 0.5 * m)
    got = NewtonSolver(problem, backend=strict).solve(tolerance=1e-10)
    want = NewtonSolver(problem, backend=reference_backend).solve(tolerance=1e-10)
    assert got.converged and want.converged and not got.warnings
    assert abs(got.iterations - want.iterations) <= 2
    close(got.U, want.U, 1e-9)
    close(got.M, want.M, 1e-9)


# -- the quadtree's array kernels ------------------------------------------------------------


def test_quadtree_indicators_and_transfers_are_numpys(strict, reference_backend):
    meshes = {b.name: adapted_mesh(b, passes=4) for b in (strict, reference_backend)}
    mesh, ref = meshes[strict.name], meshes[reference_backend.name]
    assert mesh.leaves.same_cells(ref.leaves)
    f, fr = mesh.sample(front_density), ref.sample(front_density)
    assert strict.is_array(f)
    close(strict.to_numpy(mesh.error_indicator(f)), ref.error_indicator(fr))
    close(strict.to_numpy(mesh.refinement_threshold()), ref.refinement_threshold())
    close(strict.to_numpy(mesh.to_uniform(f, 7)), ref.to_uniform(fr, 7))
    grid = np.asarray(ref.to_uniform(fr, 8))
    close(strict.to_numpy(mesh.from_uniform(grid)), ref.from_uniform(grid))

    shifted = lambda x, y: front_density(x - 0.4, y + 0.1)  # noqa: E731
    stats = mesh.adapt({"M": mesh.sample(shifted)})
    ref_stats = ref.adapt({"M": ref.sample(shifted)})
    assert stats.refined > 0 and stats.coarsened > 0
    assert mesh.leaves.same_cells(ref.leaves)
    batch = np.random.default_rng(0).random((3, len(stats.previous)))
    for fields, fields_ref in ((f, fr), (strict.from_numpy(batch), batch)):
        close(
            strict.to_numpy(mesh.transfer_density(fields, stats.previous)),
            ref.transfer_density(fields_ref, ref_stats.previous),
        )
        close(
            strict.to_numpy(mesh.transfer_value(fields, stats.previous)),
            ref.transfer_value(fields_ref, ref_stats.previous),
        )
