"""The 2D finite-difference solvers: exact solution, conservation, 1D embedding, backends.

Grids are small so the file stays fast; the convergence study runs on the reference
backend by default, and on the others and at one more refinement with ``pytest -m slow``;
by default every backend is held to numpy's answer on the study's problem instead.
"""

from __future__ import annotations

import numpy as np
import pytest
from exact_solutions import LinearQuadratic2D
from test_solvers_1d import AGREEMENT, ORDER_STUDY_BACKENDS, fitted_order, pairwise_orders

from mfg_pde import MFGProblem, solve_mfg
from mfg_pde.alg.numerical import FPFDMSolver, HJBFDMSolver
from mfg_pde.alg.numerical._residual import make_equation_residual
from mfg_pde.problems import crowd_2d_example, design_example

LQ2 = LinearQuadratic2D()
#: (N, Nt) on [-2, 2]^2: dx = 0.2, 0.1, 0.05 and dt = 0.1, 0.05, 0.025.
LQ2_GRIDS = ((21, 10), (41, 20), (81, 40))


def lq2_errors(backend, grids):
    """Max-norm error of U and worst-in-time L1 error of M on |x|, |y| <= 1.2."""
    h, err_u, err_m = [], [], []
    for N, Nt in grids:
        problem = LQ2.problem(N, Nt)
        result = solve_mfg(
            problem, backend=backend, use_anderson=True, tolerance=1e-10, max_iterations=100
        )
        assert result.converged, result.reason
        inner = np.abs(problem.x) <= 1.2
        box = np.ix_(np.arange(len(result.t)), inner, inner)
        du = np.abs(result.U - LQ2.value(result.t, problem.x, problem.y))[box]
        dm = np.abs(result.M - LQ2.density(result.t, problem.x, problem.y))[box]
        h.append(problem.dx)
        err_u.append(du.max())
        err_m.append((dm.sum(axis=(1, 2)) * problem.cell_volume).max())
    return h, err_u, err_m


@pytest.mark.parametrize("backend", ORDER_STUDY_BACKENDS, indirect=True)
def test_linear_quadratic_2d_converges_at_first_order(backend):
    """U and M against the exact 2D LQ solution (the sum/product of two 1D ones).

    The density stays below 1e-6 at the walls of [-2, 2]^2. Measured on numpy (2-core
    CPU): U errors 0.253, 0.135, 0.0698 (pairwise orders 0.91, 0.95), M errors 0.326,
    0.190, 0.104 (orders 0.78, 0.87): first order, with M still approaching it from
    below on these coarse grids (at dx = 0.2 the initial Gaussian, std 0.2, spans one
    cell per standard deviation), as in 1D. The test requires U's fitted slope >= 0.9
    and M's orders to rise past 0.85: a half-order scheme or an error floor fails it.
    The next refinement is in the slow test below.
    """
    h, err_u, err_m = lq2_errors(backend, LQ2_GRIDS)
    assert fitted_order(h, err_u) >= 0.9, err_u
    orders_m = pairwise_orders(err_m)
    assert np.all(np.diff(orders_m) > 0) and orders_m[-1] >= 0.85, (orders_m, err_m)
    assert err_u[-1] < 0.08 and err_m[-1] < 0.12, (err_u, err_m)


def test_linear_quadratic_2d_problem_agrees_with_numpy_backend(backend, reference_backend):
    """The study's problem on its coarsest grid, on every backend: numpy's answer.

    Its mean-field running cost (means of m along x and y) and Anderson's 2D path are
    what the crowd problem of ``test_backends_agree_in_2d`` does not take. Every backend
    computes numpy's discrete solution to the documented 1e-8 (relative), so the
    orders measured on numpy hold for it (the study runs on every backend with
    ``-m slow``). Tolerance 1e-10: iterates near the stop differ by ~1e-10, so this
    holds wherever round-off stops the iteration (numpy and numba take 12 iterations
    here, jax and torch, with another preconditioner, 13; they agree to 5e-12). The
    equations hold to the bounds of ``test_fdm_2d_solves_its_discrete_equations``.
    """
    problem = LQ2.problem(*LQ2_GRIDS[0])
    options = dict(use_anderson=True, tolerance=1e-10, max_iterations=100)
    ref = solve_mfg(problem, backend=reference_backend, **options)
    got = solve_mfg(problem, backend=backend, **options)
    assert ref.converged and got.converged, (ref.reason, got.reason)
    for name in ("U", "M"):
        rel = np.abs(got[name] - ref[name]).max() / np.abs(ref[name]).max()
        assert rel <= AGREEMENT, (name, rel)
    hjb, fp = got.residuals["hjb"][-1], got.residuals["fp"][-1]
    assert hjb < 1e-7 and fp < 1e-9 * np.abs(got.M).max() / problem.dt, (hjb, fp)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax"], indirect=True)
def test_linear_quadratic_2d_next_refinement(backend):
    """One level finer (161 x 161, Nt = 80): M's order keeps rising towards 1."""
    h, err_u, err_m = lq2_errors(backend, (*LQ2_GRIDS[1:], (161, 80)))
    assert pairwise_orders(err_u)[-1] >= 0.95, err_u
    assert pairwise_orders(err_m)[-1] >= 0.9, err_m


def test_mass_conserved_and_density_nonnegative_2d(backend):
    """The FP scheme is the transpose of an M-matrix with row sums 1/dt: mass is exact.

    The Krylov solve's residual (1e-12 of ``|M^n| / dt``) would leave a mass defect of
    that relative size, which the solver removes by rescaling; negative values can
    only come from the solve's error, so they are bounded by 1e-10 of the peak.
    """
    problem = crowd_2d_example(Nx=(20, 16), Nt=10, boundary=("noflux", "periodic"))
    result = solve_mfg(
        problem, backend=backend, use_anderson=True, max_iterations=100, tolerance=1e-8
    )
    assert result.converged, result.reason
    mass = result.M.sum(axis=(1, 2)) * problem.cell_volume
    np.testing.assert_allclose(mass, 1.0, rtol=0, atol=1e-12)
    assert result.M.min() >= -1e-10 * result.M.max()
    assert result.y is not None and result.U.shape == (11, 20, 16)


def test_fdm_2d_solves_its_discrete_equations(reference_backend):
    """The HJB march zeroes F and the FP march zeroes G (the 2D equation residual).

    HJB: Newton stops when its error estimate is below 1e-11 max|U|, so F (value per
    time, about |A| times the error in U, |A| ~ 1/dt + 4ν/h² + 2|∇u|/h) is ~1e-8 at
    most; FP: BiCGSTAB stops at 1e-12 of |M|/dt.
    """
    b = reference_backend
    problem = crowd_2d_example(Nx=(20, 16), Nt=10)
    hjb, fp = HJBFDMSolver(problem, backend=b), FPFDMSolver(problem, backend=b)
    M = np.broadcast_to(problem.m0, problem.shape) + 0.0
    U = hjb.solve(M)
    residual = make_equation_residual(b, problem.running_cost, problem.periodic)
    F, _ = residual(hjb.problem_arrays(), U, M)
    assert np.abs(F).max() < 1e-7
    assert hjb.last_newton_failures == 0 and hjb.last_krylov_iterations > 0
    M = fp.solve(U)
    _, G = residual(hjb.problem_arrays(), U, M)
    assert np.abs(G).max() < 1e-9 * np.abs(M).max() / problem.dt


@pytest.mark.parametrize("boundary", ["noflux", "periodic"])
def test_1d_problem_embedded_in_2d_gives_the_1d_answer(reference_backend, boundary):
    """Data constant in y (periodic in y): the 2D solution is the 1D one at every y.

    Then the y-slopes vanish, the y-operator acts on constants only, and the 2D scheme
    reduces to the 1D one row by row. The two differ by the solvers' tolerances only
    (fixed point 1e-9, Newton 1e-11, the 2D Krylov solves), whichever iteration each
    stops at: 1e-7 is far above those and far below any discretisation difference
    (~1e-2 at this grid).
    """
    one = design_example(Nx=41, Nt=20, boundary=boundary)
    ny = 5

    def cost(x, y, m, t):
        return 0.2 * m

    two = MFGProblem(
        domain=[(0.0, 1.0), (0.0, 1.0)],
        Nx=(41, ny),
        Nt=20,
        sigma=one.sigma,
        running_cost=cost,
        terminal_cost=lambda x, y: one.terminal_cost(x),
        initial_density=lambda x, y: one.initial_density(x),
        boundary=(boundary, "periodic"),
    )
    options = {"backend": reference_backend, "tolerance": 1e-9, "max_iterations": 300}
    options["use_anderson"] = True
    r1, r2 = solve_mfg(one, **options), solve_mfg(two, **options)
    assert r1.converged and r2.converged
    for j in range(ny):
        np.testing.assert_allclose(r2.U[:, :, j], r1.U, rtol=0, atol=1e-7)
        # The 2D density is the 1D one spread over y (mass 1 over the rectangle).
        np.testing.assert_allclose(r2.M[:, :, j], r1.M, rtol=0, atol=1e-7)


def test_backends_agree_in_2d(backend, reference_backend):
    """Every backend solves the same discrete system: answers agree to the tolerances."""
    problem = crowd_2d_example(Nx=(16, 12), Nt=8)
    options = {"tolerance": 1e-10, "max_iterations": 100}
    ours = solve_mfg(problem, backend=backend, **options)
    ref = solve_mfg(problem, backend=reference_backend, **options)
    assert ours.converged and ref.converged
    assert ours.backend == backend.name
    np.testing.assert_allclose(ours.U, ref.U, rtol=0, atol=1e-8 * np.abs(ref.U).max())
    np.testing.assert_allclose(ours.M, ref.M, rtol=0, atol=1e-8 * np.abs(ref.M).max())


def test_newton_and_auto_say_they_are_1d():
    problem = crowd_2d_example(Nx=(8, 8), Nt=4)
    for method in ("newton", "auto"):
        with pytest.raises(NotImplementedError, match="one-dimensional"):
            solve_mfg(problem, method=method, backend="numpy")


def test_2d_solver_options_are_checked():
    problem = crowd_2d_example(Nx=(8, 8), Nt=4)
    with pytest.raises(ValueError, match="krylov_tolerance"):
        HJBFDMSolver(problem, backend="numpy", krylov_tolerance=2.0)
    with pytest.raises(ValueError, match="max_krylov_iterations"):
        FPFDMSolver(problem, backend="numpy", max_krylov_iterations=0)
    with pytest.raises(ValueError, match=r"M must have shape \(5, 8, 8\)"):
        HJBFDMSolver(problem, backend="numpy").solve(np.ones((5, 8)))


def test_fdm_and_particles_agree_within_their_errors(reference_backend):
    """The crowd's mean position at T by FDM and by 20,000 particles.

    The two methods differ by the particles' sampling error (std / sqrt(N) ~ 1.3e-3 for
    the mean) plus FDM's first-order discretisation error, which shows as FDM moving
    towards the particle answer when the grid is refined. Measured (numpy): FDM means
    0.750, 0.771, 0.783 on 16², 32², 64²; particles 0.792, 0.796, 0.796. The test
    requires the gap to shrink by at least 1.5x from 16² to 32² (first order: 2x; the
    particle side keeps a small grid-dependent bias through the drift interpolation),
    the gap at 32² to be within the FDM error estimated from the two grids (twice the
    change between them) plus three standard errors, and the particle means at the
    two grids to agree within their statistics.
    """
    N = 20_000

    def mean_x(result, problem):
        weights = result.M[-1] * problem.cell_volume
        mean = (weights * problem.coords[0]).sum()
        std = np.sqrt((weights * problem.coords[0] ** 2).sum() - mean**2)
        return mean, std

    fdm, particles, std = [], [], []
    for n, nt in ((16, 8), (32, 16)):
        problem = crowd_2d_example(Nx=(n, n), Nt=nt)
        r_fdm = solve_mfg(problem, backend=reference_backend, use_anderson=True)
        r_part = solve_mfg(
            problem,
            backend=reference_backend,
            method="particle",
            num_particles=N,
            tolerance=1e-4,
        )
        assert r_fdm.converged and r_part.converged
        fdm.append(mean_x(r_fdm, problem)[0])
        mean, s = mean_x(r_part, problem)
        particles.append(mean)
        std.append(s)
    stat = 3.0 * max(std) / np.sqrt(N)
    gaps = np.abs(np.subtract(particles, fdm))
    assert gaps[0] / gaps[1] >= 1.5, (fdm, particles)
    assert gaps[1] <= 2.0 * abs(fdm[1] - fdm[0]) + stat, (fdm, particles)
    assert abs(particles[1] - particles[0]) <= np.sqrt(2.0) * stat, particles
