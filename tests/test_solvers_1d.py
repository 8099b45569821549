"""The 1D MFG solvers against exact solutions, conservation laws and each other.

Every test that takes ``backend`` runs on numpy, numba, jax and torch. Orders are fitted
slopes of log(error) against log(h) over four refinements of space and time together
(dt proportional to dx), so a first-order scheme has slope 1. The convergence studies run
on the reference backend by default and on the others with ``pytest -m slow``
(:data:`ORDER_STUDY_BACKENDS`); by default every backend is held to numpy's answer on
the same exact-solution problems instead
(``test_exact_solution_problems_agree_with_numpy_backend``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from exact_solutions import LinearQuadratic, TravellingWave

from mfg_pde import MFGProblem, MFGResult, solve_mfg
from mfg_pde.alg.numerical import (
    FixedPointIterator,
    FPFDMSolver,
    FPParticleSolver,
    HJBFDMSolver,
)
from mfg_pde.problems import design_example  # MFGProblem(); checked below


def fitted_order(h, err) -> float:
    """Least-squares slope of log(err) against log(h)."""
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])


def pairwise_orders(err) -> np.ndarray:
    """Observed orders between successive halvings of h."""
    err = np.asarray(err)
    return np.log2(err[:-1] / err[1:])


#: Backends of a convergence-order study: the reference in the default run, the others
#: under ``-m slow``. A backend computes numpy's discrete solution (to the documented
#: 1e-8, checked by default on the studies' problems), so its order is numpy's.
ORDER_STUDY_BACKENDS = [
    "numpy",
    *(pytest.param(name, marks=pytest.mark.slow) for name in ("numba", "jax", "torch")),
]


# -- convergence against exact solutions ----------------------------------------------------

LQ = LinearQuadratic()
#: (Nx, Nt) on [-2.5, 2.5]: dx = 0.05 ... 0.00625, dt = 0.05 ... 0.00625.
LQ_GRIDS = ((101, 20), (201, 40), (401, 80), (801, 160))


@pytest.mark.parametrize("backend", ORDER_STUDY_BACKENDS, indirect=True)
def test_linear_quadratic_converges_at_first_order(backend):
    """U and M against the exact Gaussian LQ solution (DESIGN.md §4).

    The box [-2.5, 2.5] keeps the density below 1e-20 at the walls for all t, so the
    no-flux boundary does not pollute the error, which is measured on |x| <= 1.5:
    max-norm for U, the worst L1(x) over time for M. The upwind scheme is first order
    in dx and dt. Measured on numpy (2-core CPU): U errors 3.8e-2 ... 4.8e-3 (slope
    0.99); M errors 8.0e-2 ... 1.1e-2, pairwise orders 0.90, 0.94, 0.97: still rising
    to 1 in this range, because at dx = 0.05 the initial Gaussian (std 0.2) spans
    only 4 cells per standard deviation. Requiring a fitted slope >= 0.9 and orders
    that do not fall separates this from a half-order scheme (slope ~0.5) or from an
    error floor (orders falling towards 0).
    """
    h, err_u, err_m = [], [], []
    for Nx, Nt in LQ_GRIDS:
        problem = LQ.problem(Nx, Nt)
        result = solve_mfg(
            problem, backend=backend, use_anderson=True, tolerance=1e-10, max_iterations=100
        )
        assert result.converged, result.reason
        inner = np.abs(result.x) <= 1.5
        du = np.abs(result.U - LQ.value(result.t, result.x))[:, inner]
        dm = np.abs(result.M - LQ.density(result.t, result.x))[:, inner]
        h.append(problem.dx)
        err_u.append(du.max())
        err_m.append((dm.sum(axis=1) * problem.dx).max())
    order_u, order_m = fitted_order(h, err_u), fitted_order(h, err_m)
    pairs_m = pairwise_orders(err_m)
    assert order_u >= 0.95, (order_u, err_u)
    assert order_m >= 0.9, (order_m, err_m)
    assert np.all(np.diff(pairs_m) > -0.02), pairs_m
    assert err_u[-1] < 6e-3 and err_m[-1] < 1.5e-2, (err_u, err_m)


WAVE = TravellingWave()
WAVE_GRIDS = ((25, 10), (50, 20), (100, 40), (200, 80))


@pytest.mark.parametrize("backend", ORDER_STUDY_BACKENDS, indirect=True)
def test_periodic_travelling_wave_converges_at_first_order(backend):
    """Exact periodic pair: a density wave 1 + 0.5 cos(2π(x - t/2)) with a coupling m.

    U is determined up to an additive constant on a torus only through the terminal
    condition, which is exact here, so U is compared directly. Measured slopes on
    numpy: 0.99 (U) and 0.94 (M, pairwise 0.90, 0.94, 0.97).
    """
    h, err_u, err_m = [], [], []
    for Nx, Nt in WAVE_GRIDS:
        problem = WAVE.problem(Nx, Nt)
        result = solve_mfg(
            problem, backend=backend, use_anderson=True, tolerance=1e-10, max_iterations=100
        )
        assert result.converged, result.reason
        h.append(problem.dx)
        err_u.append(np.abs(result.U - WAVE.value(result.t, result.x)).max())
        err_m.append(np.abs(result.M - WAVE.density(result.t, result.x)).max())
    order_u, order_m = fitted_order(h, err_u), fitted_order(h, err_m)
    assert order_u >= 0.95, (order_u, err_u)
    assert order_m >= 0.9, (order_m, err_m)
    assert np.all(np.diff(pairwise_orders(err_m)) > -0.02), err_m


# -- conservation ----------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", ["noflux", "periodic"])
def test_fdm_conserves_mass_and_positivity_every_step(backend, boundary):
    # Strong drifts and a small sigma stress positivity and the boundary flux: towards
    # the wall x = 1 (no flux), or into a well at x = 0.9 that m0 (at 0.3) reaches across
    # the seam. (With sigma = 0.05 the periodic fixed point does not settle: the mass near
    # the watershed x = 0.4 switches route from one iteration to the next.)
    if boundary == "noflux":
        g, sigma = (lambda x: 20 * (x - 1.0) ** 2), 0.05
    else:
        g, sigma = (lambda x: -3 * np.cos(2 * np.pi * (x - 0.9))), 0.1
    problem = design_example(Nx=61, Nt=30, sigma=sigma, terminal_cost=g, boundary=boundary)
    result = solve_mfg(problem, backend=backend, use_anderson=True, tolerance=1e-8)
    assert result.converged, result.reason
    mass = result.M.sum(axis=1) * problem.dx
    assert np.max(np.abs(mass - 1.0)) <= 1e-12, np.max(np.abs(mass - 1.0))
    assert result.M.min() >= 0.0, result.M.min()
    np.testing.assert_array_equal(result.mass, mass)

    # The FP solver alone, on a value function it was not built around.
    fp = FPFDMSolver(problem, backend=backend)
    rng = np.random.default_rng(3)
    M = fp.solve(5.0 * rng.standard_normal(problem.shape))
    assert np.max(np.abs(M.sum(axis=1) * problem.dx - 1.0)) <= 1e-12
    assert M.min() >= 0.0


# -- agreement between backends and between methods -----------------------------------------


#: The documented agreement of a backend with numpy (finite differences): max-norm
#: difference of U and of M relative to numpy's max.
AGREEMENT = 1e-8


def assert_agrees_with(got: MFGResult, ref: MFGResult) -> None:
    """U and M of ``got`` within :data:`AGREEMENT` of ``ref`` (relative, max-norm)."""
    for name in ("U", "M"):
        rel = np.max(np.abs(got[name] - ref[name])) / np.max(np.abs(ref[name]))
        assert rel <= AGREEMENT, (name, rel)


def assert_equations_hold(result: MFGResult) -> None:
    """The answer solves the discrete HJB and FP equations to 1e-8 (auto's default
    ``equation_tolerance``). HJB Newton stops each step at 1e-11 max(1, max|U|), which
    bounds max|F| by about |A| times that (|A| ~ 1/dt + σ²/dx² + max|U_x|/dx, a few
    hundred here); each FP step is a direct tridiagonal solve, so G is round-off.
    Measured 1e-13 to 6e-11 on these problems."""
    hjb, fp = result.residuals["hjb"][-1], result.residuals["fp"][-1]
    assert hjb <= 1e-8 and fp <= 1e-8, (hjb, fp)


def test_fdm_agrees_with_numpy_backend(backend, reference_backend):
    """Every backend computes numpy's answer (to :data:`AGREEMENT`) and solves the
    discrete equations, whichever iteration round-off stops it at.

    Both solves run to a fixed-point tolerance of 1e-12, so iterates one or two
    iterations apart differ by ~1e-12 relative, far below the bound. Anderson
    accelerates alike on every backend: within 1.5 times numpy's count (27 here on every
    backend, measured), which damped Picard (θ = 0.5, 68 iterations) exceeds; the
    acceleration itself is checked on numpy by
    ``test_anderson_needs_fewer_iterations_than_damping``.
    """
    problem = design_example(Nx=61, Nt=30)
    options = dict(use_anderson=True, tolerance=1e-12, max_iterations=200)
    ref = solve_mfg(problem, backend=reference_backend, **options)
    got = solve_mfg(problem, backend=backend, **options)
    assert ref.converged and got.converged, (ref.reason, got.reason)
    assert got.backend == backend.name and got.device == backend.device
    assert_agrees_with(got, ref)
    assert_equations_hold(got)
    assert got.iterations <= 1.5 * ref.iterations, (got.iterations, ref.iterations)


@pytest.mark.parametrize(
    "study, grid",
    [(LQ, LQ_GRIDS[0]), (WAVE, WAVE_GRIDS[1])],
    ids=["linear_quadratic", "travelling_wave"],
)
def test_exact_solution_problems_agree_with_numpy_backend(backend, reference_backend, study, grid):
    """The convergence studies' problems, one grid each, on every backend.

    They take paths the DESIGN example does not: a mean-field running cost (a
    reduction over m) on a wide no-flux box, and a travelling forcing evaluated through
    the array's own namespace on a periodic grid. Every backend computes numpy's
    discrete solution to :data:`AGREEMENT`, so the orders measured on numpy by default
    hold for it (the studies run on every backend with ``-m slow``). The solves use
    the studies' options; with tolerance 1e-10 iterates near the stop differ by ~1e-10
    relative, so the bound holds wherever round-off puts the stop.
    """
    problem = study.problem(*grid)
    options = dict(use_anderson=True, tolerance=1e-10, max_iterations=100)
    ref = solve_mfg(problem, backend=reference_backend, **options)
    got = solve_mfg(problem, backend=backend, **options)
    assert ref.converged and got.converged, (ref.reason, got.reason)
    assert_agrees_with(got, ref)
    assert_equations_hold(got)


def particle_vs_fdm_problem() -> MFGProblem:
    return MFGProblem(
        xmin=0.0,
        xmax=1.0,
        Nx=101,
        T=0.5,
        Nt=100,
        sigma=0.3,
        terminal_cost=lambda x: 0.5 * (x - 0.6) ** 2,
        initial_density=lambda x: np.exp(-0.5 * ((x - 0.4) / 0.1) ** 2),
    )


def test_particles_agree_with_fdm_within_the_kde_error(backend):
    """FP transport of m0 ~ N(0.4, 0.1²) by the drift of a frozen U = g, two ways.

    The particle density is a KDE with Scott's bandwidth h = 0.1 N^{-1/5}. Its L1
    error is bias + noise: (h²/2) ∫|m''| + sqrt(2/π) ∫ sqrt(m / (2√π N h)); for this
    Gaussian (std 0.1, widening to 0.14) that is about 0.005 + 0.010 = 0.015 at
    N = 1e5 (h = dx = 0.01) and 0.04 at N = 1e4, plus the O(dt + dx) difference
    between the two discretisations (0.007 between FDM on 101 and 401 points).
    Measured on numpy: 0.017 at 1e5, 0.04 at 1e4. The bound 0.05 at 1e5 is three
    times the estimate; a wrong drift sign or a missing reflection moves mass by
    more than 0.3. Halving the error needs ~5.7x more particles (N^{-2/5}), so 1e4
    particles must be clearly worse than 1e5 (ratio above 1.5; about 2.4 expected).
    """
    problem = particle_vs_fdm_problem()
    U = np.broadcast_to(problem.g, problem.shape)
    M_fdm = FPFDMSolver(problem, backend=backend).solve(U)
    errors = {}
    for n in (10_000, 100_000):
        fp = FPParticleSolver(problem, backend=backend, num_particles=n, seed=1)
        M = fp.solve(U)
        assert np.all(np.isfinite(M)) and M.min() >= 0.0
        errors[n] = (np.abs(M - M_fdm).sum(axis=1) * problem.dx).max()
    assert errors[100_000] <= 0.05, errors
    assert errors[10_000] / errors[100_000] >= 1.5, errors


def test_particle_solver_is_reproducible_from_its_seed(backend):
    problem = particle_vs_fdm_problem()
    a = FPParticleSolver(problem, backend=backend, num_particles=2000, seed=7).solve()
    b = FPParticleSolver(problem, backend=backend, num_particles=2000, seed=7).solve()
    c = FPParticleSolver(problem, backend=backend, num_particles=2000, seed=8).solve()
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 0.0
    # Particles reflect at no-flux walls: every KDE integrates to one.
    np.testing.assert_allclose(a.sum(axis=1) * problem.dx, 1.0, atol=1e-12)


def test_periodic_particles_wrap_around(backend):
    """Constant drift 0.8 on the unit torus: the bump leaves at x = 1 and enters at x = 0.

    Exact density: N(0.8 + 0.8 t, 0.05² + σ² t) wrapped onto [0, 1). The KDE (h = dx =
    0.01) adds h² to the variance and a noise of L1 size ~0.02 for 2e4 particles; the
    bound 0.1 leaves room for both, while particles that stop at the seam or reflect
    there put most of the mass in the wrong place (L1 near 2).
    """
    problem = MFGProblem(
        Nx=100,
        T=0.5,
        Nt=50,
        sigma=0.05,
        boundary="periodic",
        initial_density=lambda x: np.exp(-0.5 * ((x - 0.8) / 0.05) ** 2),
    )
    # U = -0.8 (x - 0.45 mod 1) has slope -0.8 (drift +0.8) everywhere except at its jump
    # near x = 0.45, which the bump stays at least four standard deviations away from.
    x, t = problem.x, problem.t
    U = np.broadcast_to(-0.8 * np.mod(x - 0.45, 1.0), problem.shape)
    M = FPParticleSolver(problem, backend=backend, num_particles=20_000, seed=0).solve(U)
    var = 0.05**2 + problem.sigma**2 * t[:, None] + problem.dx**2
    centre = 0.8 + 0.8 * t[:, None]
    exact = sum(
        np.exp(-0.5 * (x - centre + k) ** 2 / var) / np.sqrt(2 * np.pi * var)
        for k in (-2, -1, 0, 1)
    )
    l1 = np.abs(M - exact).sum(axis=1) * problem.dx
    assert l1.max() <= 0.1, l1.max()
    assert abs(x[np.argmax(M[-1])] - 0.2) <= 0.02
    # The finite-difference density also crosses the seam (wider: upwind diffusion).
    M_fdm = FPFDMSolver(problem, backend=backend).solve(U)
    assert abs(x[np.argmax(M_fdm[-1])] - 0.2) <= 0.02


# -- the fixed-point iteration -----------------------------------------------------------------


@pytest.mark.parametrize(
    "backend",
    ["numpy", "numba", *(pytest.param(n, marks=pytest.mark.slow) for n in ("jax", "torch"))],
    indirect=True,
)
def test_anderson_needs_fewer_iterations_than_damping(backend):
    """The DESIGN.md example (101 x 50), tolerance 1e-6: damped Picard (θ = 0.5) takes
    64 iterations, Anderson (depth 5) 15, on every backend (measured; at tolerance 1e-8
    it is 87 against 20). Both reach the same fixed point. By default on the numpy
    arrays only (jax and torch with ``-m slow``); ``test_fdm_agrees_with_numpy_backend``
    holds every backend's Anderson count to numpy's."""
    problem = design_example()
    picard = solve_mfg(problem, backend=backend, thetaUM=0.5, tolerance=1e-6, max_iterations=300)
    anderson = solve_mfg(problem, backend=backend, use_anderson=True, tolerance=1e-6)
    assert picard.converged and anderson.converged
    assert anderson.iterations <= picard.iterations / 3, (anderson.iterations, picard.iterations)
    np.testing.assert_allclose(anderson.U, picard.U, atol=1e-5)
    np.testing.assert_allclose(anderson.M, picard.M, atol=1e-5)


def test_anderson_with_particles_warns_and_stays_bounded(backend):
    """The combination that once reported a 378% mass deviation.

    Anderson is applied to U only, M is damped: every iterate keeps unit mass and
    nonnegative density, and the coupled solution stays close to the FDM one.
    """
    problem = design_example(Nx=51, Nt=25)
    with pytest.warns(RuntimeWarning, match="Anderson"):
        result = solve_mfg(
            problem,
            method="particle",
            backend=backend,
            use_anderson=True,
            num_particles=5000,
            seed=0,
            max_iterations=15,
            tolerance=1e-12,
        )
    assert any("Anderson" in note for note in result.warnings)
    assert np.all(np.isfinite(result.U)) and np.all(np.isfinite(result.M))
    assert result.M.min() >= 0.0
    np.testing.assert_allclose(result.mass, 1.0, atol=1e-9)
    fdm = solve_mfg(problem, backend=backend, use_anderson=True, tolerance=1e-8)
    l1 = (np.abs(result.M - fdm.M).sum(axis=1) * problem.dx).max()
    assert l1 <= 0.15, l1
    # The residual of M settles at the sampling noise and does not grow.
    assert result.residuals["M"][-1] <= 2 * result.residuals["M"][2]


def test_result_object(backend):
    problem = design_example(Nx=41, Nt=20)
    hjb = HJBFDMSolver(problem, backend=backend)
    fp = FPFDMSolver(problem, backend=backend)
    iterator = FixedPointIterator(problem, hjb, fp)
    assert iterator.name == f"FixedPointIterator[{backend.name}]"
    assert hjb.name == f"HJBFDMSolver[{backend.name}]"
    result = iterator.solve(max_iterations=200, tolerance=1e-6)
    assert isinstance(result, MFGResult)
    assert result.converged and result.iterations == len(result.residuals["U"])
    assert len(result.residuals["M"]) == result.iterations
    assert result.residuals["U"][-1] < 1e-6 and result.residuals["M"][-1] < 1e-6
    for name in ("U", "M"):
        assert type(result[name]) is np.ndarray
        assert result[name].shape == (len(result.t), len(result.x)) == (21, 41)
        assert result[name] is getattr(result, name)
    np.testing.assert_array_equal(result.x, problem.x)
    np.testing.assert_array_equal(result.t, problem.t)
    np.testing.assert_allclose(result.U[-1], problem.g, rtol=0, atol=1e-14)
    np.testing.assert_allclose(result.M[0], problem.m0, rtol=0, atol=1e-14)
    assert result.backend == backend.name and result.solver == iterator.name
    # One compiled program (jax) reports its compile time; a host loop splits HJB and FP.
    parts = {"compile"} if iterator.runs_as_one_program else {"hjb", "fp"}
    assert parts | {"total"} <= set(result.timings)
    assert iterator.runs_as_one_program == (backend.name == "jax")
    assert backend.name in repr(result)
    with pytest.raises(KeyError, match="'V'"):
        result["V"]


def test_iterator_hands_its_backend_to_both_solvers(backend, reference_backend):
    problem = design_example(Nx=21, Nt=10)
    hjb, fp = HJBFDMSolver(problem, backend="numpy"), FPFDMSolver(problem, backend="numpy")
    iterator = FixedPointIterator(problem, hjb, fp, backend=backend)
    assert iterator.backend is backend
    assert hjb.backend is backend and fp.backend is backend


def test_standalone_solvers_and_their_defaults(backend):
    problem = design_example(Nx=41, Nt=20)
    U = HJBFDMSolver(problem, backend=backend).solve()  # M frozen at m0
    M_frozen = np.broadcast_to(problem.m0, problem.shape)
    np.testing.assert_allclose(U, HJBFDMSolver(problem, backend=backend).solve(M_frozen))
    np.testing.assert_allclose(U[-1], problem.g, atol=1e-14)
    M = FPFDMSolver(problem, backend=backend).solve()  # U frozen at g
    U_frozen = np.broadcast_to(problem.g, problem.shape)
    np.testing.assert_allclose(M, FPFDMSolver(problem, backend=backend).solve(U_frozen))
    # With U = 2 (x - 0.8)^2 the drift pushes the mass right, towards 0.8.
    mean = (M * problem.x).sum(axis=1) * problem.dx
    assert mean[0] == pytest.approx(0.3, abs=1e-3) and mean[-1] > 0.6


def test_hjb_newton_solves_each_step_to_its_tolerance(backend):
    """Pure HJB (frozen m) against a 400-step explicit-in-nothing reference: Newton
    must not stop early. With newton_tolerance 1e-11 the answer matches a run with
    1e-13 to 1e-9; with one Newton step allowed it does not."""
    problem = design_example(Nx=41, Nt=10, terminal_cost=lambda x: 5 * np.sin(6 * x))
    tight = HJBFDMSolver(problem, backend=backend, newton_tolerance=1e-13).solve()
    default = HJBFDMSolver(problem, backend=backend).solve()
    one = HJBFDMSolver(problem, backend=backend, max_newton_iterations=1)
    np.testing.assert_allclose(default, tight, atol=1e-9)
    assert np.abs(one.solve() - tight).max() > 1e-6
    assert one.last_newton_failures > 0


# -- failure behaviour -----------------------------------------------------------------------


def test_iteration_cap_reports_non_convergence(reference_backend):
    """A budget of 3 iterations where convergence takes 22 (residuals still ~0.2 after
    3): the solve stops at the cap, whatever round-off does, and says so."""
    result = solve_mfg(design_example(Nx=31, Nt=10), backend=reference_backend, max_iterations=3)
    assert not result.converged
    assert result.iterations == 3
    assert "max_iterations=3" in result.reason
    assert np.all(np.isfinite(result.U)) and np.all(np.isfinite(result.M))


def test_nan_is_detected_and_located(backend):
    """A running cost that blows up at t = 0.5: the HJB march meets inf at time index 10
    of 20 (the step solved with data at t[n+1] = 0.5 is n = 9, whose result U[9] is the
    first non-finite level going backward) — the iteration stops and says so."""
    problem = design_example(
        Nx=31,
        Nt=20,
        # An array division, so that t = 0.5 gives inf (not ZeroDivisionError) everywhere.
        running_cost=lambda x, m, t: 1.0 / (0.0 * m + (t - 0.5)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = solve_mfg(problem, backend=backend, max_iterations=5)
    assert not result.converged
    assert "non-finite values in U (HJB solve) at iteration 1" in result.reason
    assert "time index 9 " in result.reason and "t=0.45" in result.reason
    # Never a silent array of NaN: the last finite iterate is returned.
    assert np.all(np.isfinite(result.U)) and np.all(np.isfinite(result.M))


# -- bad inputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(T=0.0), ValueError, "T must be positive"),
        (dict(T=-1.0), ValueError, "T must be positive"),
        (dict(T=math.nan), ValueError, "T must be finite"),
        (dict(Nx=2), ValueError, "Nx must be >= 3"),
        (dict(Nx=10.5), TypeError, "Nx must be an integer"),
        (dict(Nt=0), ValueError, "Nt must be >= 1"),
        (dict(xmin=1.0, xmax=0.0), ValueError, "xmax must be greater than xmin"),
        (dict(sigma=-0.1), ValueError, "sigma must be >= 0"),
        (dict(control_cost=0.0), ValueError, "control_cost must be positive"),
        (dict(boundary="dirichlet"), ValueError, "boundary must be one of"),
        (dict(initial_density=lambda x: x - 0.5), ValueError, "initial_density must be nonneg"),
        (dict(initial_density=lambda x: 0 * x), ValueError, "zero mass"),
        (dict(initial_density=lambda x: x / (x - x)), ValueError, "initial_density is not finite"),
        (dict(initial_density=lambda x: x[:-1]), ValueError, "initial_density must give shape"),
        (dict(terminal_cost=lambda x: np.log(x - 0.5)), ValueError, "terminal_cost is not finite"),
        (dict(running_cost=lambda x, m, t: m[:-1]), ValueError, "running_cost"),
        (dict(running_cost=lambda x, m, t: m / 0.0), ValueError, "running_cost"),
        (dict(running_cost=3.0), TypeError, "running_cost must be a callable"),
    ],
)
def test_problem_rejects_bad_input(kwargs, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's own divide warnings
        with pytest.raises(error, match=match):
            MFGProblem(**kwargs)


def test_default_problem_is_the_design_example():
    explicit = MFGProblem(
        xmin=0.0,
        xmax=1.0,
        Nx=101,
        T=1.0,
        Nt=50,
        sigma=0.2,
        control_cost=1.0,
        running_cost=lambda x, m, t: 0.2 * m,
        terminal_cost=lambda x: 2 * (x - 0.8) ** 2,
        initial_density=lambda x: np.exp(-50 * (x - 0.3) ** 2),
        boundary="noflux",
    )
    default = MFGProblem()
    assert default.parameters() == explicit.parameters()
    np.testing.assert_array_equal(default.g, explicit.g)
    np.testing.assert_array_equal(default.m0, explicit.m0)
    m = np.linspace(0.0, 2.0, 101)
    np.testing.assert_array_equal(
        default.running_cost(default.x, m, 0.5), explicit.running_cost(explicit.x, m, 0.5)
    )


def test_default_problems_are_the_documented_example():
    problem = MFGProblem()
    assert (problem.Nx, problem.Nt, problem.T, problem.sigma) == (101, 50, 1.0, 0.2)
    assert problem.x.shape == (101,) and problem.t.shape == (51,)
    assert problem.dx == pytest.approx(0.01) and problem.dt == pytest.approx(0.02)
    small = MFGProblem(Nx=50, Nt=20, T=0.5)
    assert small.dt == pytest.approx(0.025) and small.x[-1] == 1.0
    assert problem.m0.sum() * problem.dx == pytest.approx(1.0, abs=1e-14)
    periodic = MFGProblem(Nx=50, boundary="periodic")
    assert periodic.dx == pytest.approx(0.02) and periodic.x[-1] == pytest.approx(0.98)


def test_solvers_reject_bad_input():
    problem = design_example(Nx=21, Nt=10)
    other = design_example(Nx=21, Nt=11)
    cases = [
        (lambda: HJBFDMSolver("problem"), TypeError, "problem must be an MFGProblem"),
        (lambda: HJBFDMSolver(problem, newton_tolerance=0), ValueError, "newton_tolerance"),
        (lambda: HJBFDMSolver(problem, max_newton_iterations=0), ValueError, "max_newton_it"),
        (lambda: HJBFDMSolver(problem, max_newton_iterations=2.0), TypeError, "max_newton_it"),
        (lambda: HJBFDMSolver(problem, backend="cupy"), ValueError, "numpy"),
        (lambda: FPParticleSolver(problem, num_particles=5), ValueError, "num_particles"),
        (lambda: FPParticleSolver(problem, num_particles=1e5), TypeError, "num_particles"),
        (lambda: FPParticleSolver(problem, kde_method="fast"), ValueError, "kde_method"),
        (lambda: FPParticleSolver(problem, seed="0"), TypeError, "seed"),
        (lambda: FPParticleSolver(problem, bandwidth=-1.0), ValueError, "bandwidth"),
        (lambda: HJBFDMSolver(problem).solve(np.ones((3, 3))), ValueError, "shape"),
        (lambda: FPFDMSolver(problem).solve(np.ones((11, 20))), ValueError, "shape"),
    ]
    hjb, fp = HJBFDMSolver(problem, backend="numpy"), FPFDMSolver(problem, backend="numpy")
    iterator = FixedPointIterator(problem, hjb, fp)
    cases += [
        (lambda: FixedPointIterator(problem, hjb, "fp"), TypeError, "fp_solver"),
        (lambda: FixedPointIterator(other, hjb, fp), ValueError, "different MFGProblem"),
        (lambda: FixedPointIterator(problem, hjb, fp, thetaUM=0), ValueError, "thetaUM"),
        (lambda: FixedPointIterator(problem, hjb, fp, thetaUM=1.5), ValueError, "thetaUM"),
        (lambda: FixedPointIterator(problem, hjb, fp, anderson_depth=0), ValueError, "anderson"),
        (lambda: iterator.solve(max_iterations=0), ValueError, "max_iterations"),
        (lambda: iterator.solve(max_iterations=2.5), TypeError, "max_iterations"),
        (lambda: iterator.solve(tolerance=-1.0), ValueError, "tolerance"),
        (lambda: solve_mfg(problem, method="spectral"), ValueError, "method must be one of"),
        (lambda: solve_mfg(problem, num_particles=10), TypeError, "num_particles"),
        (lambda: solve_mfg(problem, backend="numpy", tolerence=1e-6), TypeError, "tolerence"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
