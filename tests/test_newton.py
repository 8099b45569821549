"""Newton on the whole MFG system, the safeguarded fixed point, and ``method="auto"``.

The hard problem is the congestion-averse hello problem of the issue ([0, 1] no-flux,
T = 1, σ = 0.1, λ = 1, f = +0.5 m, g = (x - 0.5)², m0 ∝ exp(-50 (x - 0.5)²),
Nx = 101, Nt = 50), on which damped Picard with θ = 0.5 or 0.2 and plain Anderson
(depth 5, mixing 0.5) do not converge. The strong-coupling case is the periodic
travelling wave of ``exact_solutions.py`` with f = V(t, x) + κ m at κ = 30: its exact
pair does not depend on κ, and damped Picard fails there.
"""

from __future__ import annotations

import numpy as np
import pytest
from exact_solutions import LinearQuadratic, TravellingWave

from mfg_pde import MFGProblem, solve_mfg
from mfg_pde.alg.numerical import (
    FixedPointIterator,
    FPFDMSolver,
    HJBFDMSolver,
    NewtonSolver,
)
from mfg_pde.alg.numerical._base import problem_arrays
from mfg_pde.alg.numerical._residual import make_equation_residual
from mfg_pde.problems import hello_example


def congestion(x, m, t):
    return 0.5 * m


def hard_problem(**overrides) -> MFGProblem:
    """The congestion-averse hello problem (f = +0.5 m)."""
    return hello_example(**{"running_cost": congestion, **overrides})


def fixed_point(problem, backend="numpy", **options):
    hjb = HJBFDMSolver(problem, backend=backend)
    fp = FPFDMSolver(problem, backend=backend)
    return FixedPointIterator(problem, hjb, fp, **options)


#: The strong-coupling case: the periodic travelling wave at κ = 30.
STRONG = TravellingWave(kappa=30.0)


def wave_problem(wave: TravellingWave, Nx: int, Nt: int) -> MFGProblem:
    return wave.problem(Nx, Nt)


@pytest.fixture(scope="module")
def hard_newton():
    """Newton's answer to the hard problem (to 1e-11), shared by the tests below."""
    return NewtonSolver(hard_problem()).solve(tolerance=1e-11)


def final_residual(result) -> float:
    return max(result.residuals["hjb"][-1], result.residuals["fp"][-1])


# -- the residual of the discrete equations ----------------------------------------------


@pytest.mark.parametrize("boundary", ["noflux", "periodic"])
def test_equation_residual_is_the_marches_equations(backend, boundary):
    """For U = HJB(M) and M̂ = FP(U): the FP rows vanish and the HJB rows are exactly
    f(M) - f(M̂), because each march solves its own rows (HJB Newton to 1e-11 relative,
    FP by a direct tridiagonal solve). So the residual function writes the same
    equations as the marches, on every backend."""
    p = hard_problem(Nx=31, Nt=12, boundary=boundary)
    rng = np.random.default_rng(3)
    M = p.m0[None, :] * (1.0 + 0.3 * rng.uniform(size=p.shape))
    U = HJBFDMSolver(p, backend=backend).solve(M)
    M_hat = FPFDMSolver(p, backend=backend).solve(U)
    residual = make_equation_residual(backend, p.running_cost, boundary == "periodic")
    F, G = (
        backend.to_numpy(v)
        for v in residual(problem_arrays(p, backend), backend.array(U), backend.array(M_hat))
    )
    assert F.shape == G.shape == (p.Nt, p.Nx)
    scale = np.abs(M_hat).max() / p.dt
    assert np.abs(G).max() <= 1e-12 * scale
    np.testing.assert_allclose(F, 0.5 * (M[1:] - M_hat[1:]), rtol=0, atol=1e-8)


def test_fixed_point_reports_equation_residuals():
    """Every fixed-point result carries max|F| and max|G| per iteration; with
    ``equation_tolerance`` "converged" means the equations hold to it."""
    p = MFGProblem(Nx=41, Nt=20)
    loose = fixed_point(p).solve(tolerance=1e-4)
    assert loose.residuals["hjb"].shape == loose.residuals["U"].shape == (loose.iterations,)
    strict = fixed_point(p).solve(tolerance=1e-4, equation_tolerance=1e-9)
    assert strict.converged and final_residual(strict) <= 1e-9
    assert final_residual(loose) > 1e-9 and strict.iterations > loose.iterations
    assert "equation residuals below 1e-09" in strict.reason


# -- the Newton solver ----------------------------------------------------------------------


def nonlocal_cost(x, m, t):
    dx = x[1] - x[0]
    mean = (x * m).sum() * dx
    return 0.5 * (x - mean) ** 2 + 0.2 * m


@pytest.mark.parametrize(
    "boundary, cost",
    [("noflux", congestion), ("periodic", congestion), ("noflux", nonlocal_cost)],
    ids=["noflux-local", "periodic-local", "noflux-nonlocal"],
)
def test_jacobian_matches_finite_differences(boundary, cost):
    """J v against the central difference of the residual, at a random point whose
    slopes are all away from the kinks of the Godunov Hamiltonian (so the residual is
    smooth there). The difference quotient's error is O(h²) ~ 1e-10 relative; 1e-6
    leaves room and still catches any wrong or missing entry (those are O(1))."""
    p = hard_problem(Nx=17, Nt=6, boundary=boundary, running_cost=cost)
    solver = NewtonSolver(p, backend="numpy")
    rng = np.random.default_rng(0)
    U = rng.normal(size=p.shape)
    M = rng.uniform(0.5, 1.5, size=p.shape)
    U[-1], M[0] = p.g, p.m0
    J = solver.jacobian(U, M).toarray()
    for seed in range(3):
        v = np.random.default_rng(10 + seed).normal(size=(p.Nt, 2, p.Nx))
        dU = np.concatenate([v[:, 0], np.zeros((1, p.Nx))])
        dM = np.concatenate([np.zeros((1, p.Nx)), v[:, 1]])
        h = 1e-6
        plus = solver.residual(U + h * dU, M + h * dM)
        minus = solver.residual(U - h * dU, M - h * dM)
        fd = np.stack([(a - b) / (2 * h) for a, b in zip(plus, minus, strict=True)], axis=1)
        exact = (J @ v.ravel()).reshape(fd.shape)
        assert np.abs(exact - fd).max() <= 1e-6 * np.abs(exact).max()


def test_newton_solves_the_hard_problem_and_agrees_with_the_fixed_points(hard_newton):
    """Damped Picard (θ = 0.5) does not converge in 100 iterations; Newton, adaptive
    damping and safeguarded Anderson all reach equation residuals <= 1e-8 and give
    one answer. Their answers differ by far less than the scheme's own error (1e-2)."""
    p = hard_problem()
    picard = fixed_point(p).solve(max_iterations=100, tolerance=1e-10)
    assert not picard.converged and final_residual(picard) > 1e-2

    newton = hard_newton
    adaptive = fixed_point(p, adaptive_damping=True).solve(
        max_iterations=1000, tolerance=1e-12, equation_tolerance=1e-8
    )
    anderson = fixed_point(
        p, use_anderson=True, adaptive_damping=True, anderson_safeguard=1.5
    ).solve(max_iterations=500, tolerance=1e-12, equation_tolerance=1e-8)
    for result in (newton, adaptive, anderson):
        assert result.converged, result.reason
        assert final_residual(result) <= 1e-8
    assert (newton.method, adaptive.method, anderson.method) == ("newton", "picard", "anderson")
    for other in (adaptive, anderson):
        for key in ("U", "M"):
            a, b = newton[key], other[key]
            assert np.abs(a - b).max() <= 1e-7 * np.abs(a).max(), key
    # The answer is a density: mass 1 at every level and nonnegative.
    np.testing.assert_allclose(newton.mass, 1.0, atol=1e-12)
    assert newton.M.min() >= 0.0


def full_step_tail(stage) -> np.ndarray:
    """max(HJB, FP) residuals from the first of the final run of full Newton steps on,
    above the rounding floor (1e-10)."""
    r = np.maximum(stage["hjb"], stage["fp"])
    full = np.asarray(stage["step_lengths"]) == 1.0
    first = len(full) - np.argmin(full[::-1]) if not full.all() else 0
    tail = r[first:]
    return tail[tail > 1e-10]


def test_exact_newton_converges_quadratically():
    """With exact linear solves (sparse LU), the residual sequence on the hard problem,
    once the line search takes full steps, is quadratic, which is what an exact
    Jacobian gives. Measured (max of the HJB and FP residuals): nine steps of length
    1/8 from 6.6, then steps 1/4 and 1/2 to 9.7, then full steps: 1.55, 1.5e-2,
    9.3e-7, 4.9e-12. The observed order log(r_{k+1}/r_k) / log(r_k/r_{k-1}) is 2 for
    exact quadratic convergence (any constant); it is required to be >= 1.8 on every
    triple of full steps above the rounding floor, a linearly convergent method (or a
    Jacobian with a wrong entry) gives 1."""
    result = NewtonSolver(hard_problem(), linear_solver="lu").solve(tolerance=1e-11)
    assert result.converged
    assert {step["solver"] for step in result.stages[-1]["linear"]} == {"lu"}
    tail = full_step_tail(result.stages[-1])
    orders = np.log(tail[2:] / tail[1:-1]) / np.log(tail[1:-1] / tail[:-2])
    assert len(orders) >= 1, tail
    assert np.all(orders >= 1.8), (tail, orders)
    assert result.stages[-1]["hjb"][-1] <= 1e-11


def test_gmres_newton_is_superlinear_and_agrees_with_exact_newton(hard_newton):
    """The default (GMRES with Eisenstat-Walker forcing terms) is an inexact Newton
    method: superlinear, the contraction factors r_{k+1}/r_k of its full steps falling
    by orders of magnitude (measured tail 1.7, 4.4e-2, 3.8e-3, 2.6e-6, 2.1e-10: factors
    2.6e-2, 8.7e-2, 6.9e-4, 8.0e-5; a linearly convergent method keeps them constant),
    and it reaches the same solution as exact Newton. Every step was taken by GMRES,
    none by the fallback."""
    result = hard_newton
    assert result.converged
    linear = result.stages[-1]["linear"]
    assert {step["solver"] for step in linear} == {"gmres"}
    assert all(1 <= step["iterations"] <= 50 for step in linear), linear
    tail = full_step_tail(result.stages[-1])
    ratios = tail[1:] / tail[:-1]
    assert len(ratios) >= 3, tail
    assert ratios[-1] < ratios[-2] <= 1e-3 and ratios[-1] <= 1e-2 * ratios[0], tail
    exact = NewtonSolver(hard_problem(), linear_solver="lu").solve(tolerance=1e-11)
    for key in ("U", "M"):
        scale = np.abs(exact[key]).max()
        np.testing.assert_allclose(result[key], exact[key], rtol=0, atol=1e-9 * scale)


@pytest.mark.parametrize(
    "boundary, cost",
    [("noflux", congestion), ("periodic", congestion), ("noflux", nonlocal_cost)],
    ids=["noflux-local", "periodic-local", "noflux-nonlocal"],
)
@pytest.mark.parametrize("backend", ["numpy", "jax", "torch"], indirect=True)
def test_gmres_step_equals_the_lu_step(backend, boundary, cost):
    """One Newton step's linear system at a random point (slopes of both signs, the
    coupling local or dense): the preconditioned GMRES solution equals SuperLU's to the
    requested relative residual (1e-10, so the steps agree to ~1e-10 x the system's
    condition). On numpy the SciPy reference path (assembled sparse Jacobian); on jax
    and torch the matrix-free step on the backend's arrays, whose Jacobian-vector
    product and preconditioner are written independently of the assembled matrix."""
    p = hard_problem(Nx=33, Nt=12, boundary=boundary, running_cost=cost)
    solver = NewtonSolver(p, backend=backend)
    rng = np.random.default_rng(3)
    U = rng.normal(size=p.shape)
    M = rng.uniform(0.5, 1.5, size=p.shape)
    U[-1], M[0] = p.g, p.m0
    F, G = solver.residual(U, M)
    timings = {"jacobian": 0.0, "linear_solve": 0.0}
    args = [U, M, F, G] if backend.is_host_numpy else [backend.from_numpy(v) for v in (U, M, F, G)]
    dU, dM, info = solver._linear_step(*args, 1e-10, 0.0, timings)
    dU, dM = (np.asarray(backend.to_numpy(v), dtype=np.float64) for v in (dU, dM))
    assert info["solver"] == "gmres" and info["residual"] <= 1e-10, info
    J = solver.jacobian(U, M).toarray()
    exact = np.linalg.solve(J, -np.stack([F, G], axis=1).ravel()).reshape(p.Nt, 2, p.Nx)
    scale = np.abs(exact).max()
    np.testing.assert_allclose(dU, exact[:, 0], rtol=0, atol=1e-7 * scale)
    np.testing.assert_allclose(dM, exact[:, 1], rtol=0, atol=1e-7 * scale)


def test_gmres_iterations_do_not_grow_with_the_grid():
    """What makes the Newton solve linear in Nt Nx: the preconditioned GMRES needs as
    many iterations per step on a grid 16 times finer. κ = 30 wave, measured: at most
    23 iterations per step at (50, 20) and 24 at (200, 80) (26 at (400, 160)). A
    preconditioner without the coupling's structure (the diagonal) would need
    hundreds, growing with the grid."""
    most = []
    for Nx, Nt in ((50, 20), (200, 80)):
        result = NewtonSolver(wave_problem(STRONG, Nx, Nt)).solve(tolerance=1e-9)
        assert result.converged, result.reason
        most.append(max(step["iterations"] for step in result.stages[-1]["linear"]))
    assert most[1] <= 1.3 * most[0] + 2 and most[1] <= 40, most


def test_gmres_falls_back_to_lu_when_it_does_not_converge(monkeypatch):
    """With GMRES allowed 2 iterations per step it cannot reach its forcing term: every
    step is then solved by the sparse LU, recorded as such, and the answer is Newton's."""
    from mfg_pde.alg.numerical import newton

    monkeypatch.setattr(newton, "GMRES_RESTART", 2)
    monkeypatch.setattr(newton, "GMRES_CYCLES", 1)
    p = hard_problem(Nx=41, Nt=20)
    result = NewtonSolver(p).solve(tolerance=1e-10)
    assert result.converged, result.reason
    solvers = {step["solver"] for stage in result.stages for step in stage["linear"]}
    assert solvers == {"lu (gmres did not converge)"}
    monkeypatch.undo()
    reference = NewtonSolver(p, linear_solver="lu").solve(tolerance=1e-10)
    np.testing.assert_allclose(result.M, reference.M, rtol=0, atol=1e-9)


def test_linear_solver_option_is_checked_and_reaches_newton_through_solve_mfg():
    p = hard_problem(Nx=21, Nt=8)
    with pytest.raises(ValueError, match="linear_solver must be one of"):
        NewtonSolver(p, linear_solver="cg")
    for choice in ("lu", "gmres"):
        result = solve_mfg(p, "newton", "numpy", linear_solver=choice)
        assert result.converged, result.reason
        assert {step["solver"] for step in result.stages[0]["linear"]} == {choice}


def test_continuation_in_sigma_rescues_newton(hard_newton):
    """With at most 8 Newton iterations per attempt, Newton from the default start does
    not reach the hard problem's solution (it needs 15); continuation does: it solves
    at σ = 0.8 (after σ = 0.2 and 0.4 also failed within 8), then walks σ down
    geometrically (measured: 0.8 -> 0.28 -> 0.1, 4 or 5 iterations each) and reaches
    the same answer as the uninterrupted Newton solve."""
    p = hard_problem()
    direct = hard_newton
    stopped = NewtonSolver(p, attempt_iterations=8, continuation=False).solve(tolerance=1e-10)
    assert not stopped.converged and "8 Newton iterations at sigma=0.1" in stopped.reason
    rescued = NewtonSolver(p, attempt_iterations=8).solve(tolerance=1e-10)
    assert rescued.converged, rescued.reason
    assert "continuation in sigma" in rescued.reason
    sigmas = [stage["sigma"] for stage in rescued.stages]
    assert sigmas[0] == 0.1 and sigmas[-1] == 0.1 and max(sigmas) > 0.1
    assert rescued.stages[-1]["converged"] and not rescued.stages[0]["converged"]
    np.testing.assert_allclose(rescued.M, direct.M, rtol=0, atol=1e-7)


@pytest.mark.slow
def test_continuation_solves_smaller_diffusion():
    """σ = 0.05 (the hard problem with half the noise): Newton alone stalls in its 20
    iterations; continuation from σ = 0.1 reaches it (measured: 15, 4, 3 iterations)."""
    p = hard_problem(sigma=0.05)
    result = NewtonSolver(p).solve(tolerance=1e-8)
    assert result.converged, result.reason
    assert not result.stages[0]["converged"] and len(result.stages) > 1


def test_newton_with_a_nonlocal_coupling_matches_the_fixed_point():
    """A nonlocal running cost (through the mean of m) gives dense coupling blocks;
    Newton and Anderson then agree on the LQ problem of DESIGN.md §4."""
    lq = LinearQuadratic()
    p = lq.problem(51, 20)
    newton = NewtonSolver(p).solve(tolerance=1e-10)
    reference = fixed_point(p, use_anderson=True).solve(
        max_iterations=200, tolerance=1e-12, equation_tolerance=1e-10
    )
    assert newton.converged and reference.converged
    np.testing.assert_allclose(newton.U, reference.U, atol=1e-8 * np.abs(newton.U).max())
    np.testing.assert_allclose(newton.M, reference.M, atol=1e-8 * np.abs(newton.M).max())


def test_non_analytic_cost_is_differentiated_exactly():
    """``abs`` defeats the complex step (it returns the modulus); the first-use check
    against a finite difference notices and JAX differentiates instead. With m > 0,
    0.5 |m| is the congestion cost, so Newton must find the same answer, and as fast:
    a wrong derivative of the coupling (the modulus's, 0) leaves Newton with an
    inexact Jacobian, linear convergence and many more steps than the two extra the
    bound allows for a different rounding of the same iterates."""
    p = hard_problem(Nx=41, Nt=20)
    plain = NewtonSolver(p).solve(tolerance=1e-10)
    with_abs = NewtonSolver(p.replace(running_cost=lambda x, m, t: 0.5 * abs(m))).solve(
        tolerance=1e-10
    )
    assert plain.converged and with_abs.converged
    assert with_abs.iterations <= plain.iterations + 2
    np.testing.assert_allclose(with_abs.M, plain.M, rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend", ["jax", "torch"], indirect=True)
def test_newton_on_a_backend_matches_numpy(backend, reference_backend):
    """On jax and torch the whole Newton iteration (residual, Jacobian-vector products,
    the marches that precondition GMRES, GMRES) runs on the backend's arrays; NumPy's
    is the SciPy reference path. Same equations, so the same solution to the
    tolerance, in as many Newton steps up to a different rounding of the inexact
    (Eisenstat-Walker) linear solves: at most two more. No step fell back to the LU on
    the host (that would leave a warning)."""
    p = hard_problem(Nx=41, Nt=20)
    ours = NewtonSolver(p, backend=backend).solve(tolerance=1e-10)
    ref = NewtonSolver(p, backend=reference_backend).solve(tolerance=1e-10)
    assert ours.converged and ref.converged and ours.backend == backend.name
    assert abs(ours.iterations - ref.iterations) <= 2, (ours.iterations, ref.iterations)
    assert not any("host" in w for w in ours.warnings), ours.warnings
    np.testing.assert_allclose(ours.M, ref.M, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.U, ref.U, rtol=0, atol=1e-9)


# -- strong coupling on the torus, against the exact solution --------------------------------


def test_damped_picard_fails_at_strong_coupling():
    """κ = 30: damped Picard (θ = 0.5 and 0.2) and plain Anderson do not converge in
    100 iterations (the premise of the next test; measured: nor in 300, where their
    HJB residuals are still 343, 243 and 286)."""
    p = wave_problem(STRONG, 50, 20)
    for options in ({}, {"thetaUM": 0.2}, {"use_anderson": True}):
        result = fixed_point(p, **options).solve(max_iterations=100, tolerance=1e-8)
        assert not result.converged, options
        assert "max_iterations" in result.reason


def wave_errors(grids) -> dict[str, np.ndarray]:
    """Newton at κ = 30 on each (Nx, Nt): max-norm errors of U and M and the mean
    absolute (discrete L1) error of M, against the exact pair."""
    errors = {"U": [], "M": [], "M_L1": []}
    for Nx, Nt in grids:
        result = NewtonSolver(wave_problem(STRONG, Nx, Nt)).solve(tolerance=1e-9)
        assert result.converged, result.reason
        m_error = np.abs(result.M - STRONG.density(result.t, result.x))
        errors["U"].append(np.abs(result.U - STRONG.value(result.t, result.x)).max())
        errors["M"].append(m_error.max())
        errors["M_L1"].append(m_error.mean())
    return {key: np.array(value) for key, value in errors.items()}


def halving_orders(errors: np.ndarray) -> np.ndarray:
    return np.log2(errors[:-1] / errors[1:])


def test_newton_matches_the_exact_solution_at_first_order_at_strong_coupling():
    """Newton at κ = 30 on (Nx, Nt) = (25, 10), (50, 20), (100, 40). Measured: max-norm
    errors U 1.17e-2, 5.7e-3, 2.8e-3 (orders 1.04, 1.01); mean errors of M 9.9e-4,
    5.0e-4, 2.5e-4 (orders 0.97, 0.995); max-norm errors of M 4.9e-3, 3.3e-3, 2.0e-3
    (orders 0.57, 0.72, rising to 1 under refinement: 0.84, 0.92, 0.96 up to
    (800, 320), see the slow study; the maximum sits where the density's slope turns,
    which the upwind scheme smears over more cells on coarse grids). Required: U and
    the mean error of M at order >= 0.95, the max-norm M orders rising."""
    errors = wave_errors(((25, 10), (50, 20), (100, 40)))
    assert np.all(halving_orders(errors["U"]) >= 0.95), errors
    assert np.all(halving_orders(errors["M_L1"]) >= 0.95), errors
    order_m = halving_orders(errors["M"])
    assert np.all(order_m > 0.5) and np.all(np.diff(order_m) > 0), order_m


@pytest.mark.slow
def test_strong_coupling_convergence_study():
    """Seven grids up to (1600, 640), each solved by Newton with GMRES in 8-10 steps
    (48 s at the finest, 2 million unknowns; the sparse LU would take many minutes).
    Measured max-norm M orders 0.57, 0.72, 0.84, 0.92, 0.96, 0.98: first order in the
    limit. U orders 1.04, 1.01, 1.01, 1.00, 1.00, 1.00 and mean-M-error orders 0.97,
    0.995, 1.00, 1.00, 1.00, 1.00: first order on every grid."""
    grids = [(25 * 2**k, 10 * 2**k) for k in range(7)]
    errors = wave_errors(grids)
    assert np.all(halving_orders(errors["U"]) >= 0.95), errors
    assert np.all(halving_orders(errors["M_L1"]) >= 0.95), errors
    order_m = halving_orders(errors["M"])
    assert np.all(np.diff(order_m) > 0) and order_m[-1] >= 0.95, order_m


def test_safeguards_leave_an_easy_problem_alone():
    """On the design example the adaptive damping never has to act, nor the stall
    detection: the same answer as plain damping to 1e-12, where one changed step (a
    smaller θ, a cleared history) would leave a difference of the order of the
    tolerance, 1e-8 (and likewise for safeguarded Anderson)."""
    p = MFGProblem(Nx=41, Nt=20)
    for base, guarded in (
        ({}, {"adaptive_damping": True, "stall_window": 5}),
        ({"use_anderson": True}, {"use_anderson": True, "anderson_safeguard": 1.5}),
    ):
        a = fixed_point(p, **base).solve(tolerance=1e-8)
        b = fixed_point(p, **{**base, **guarded}).solve(tolerance=1e-8)
        assert a.converged and b.converged
        np.testing.assert_allclose(a.M, b.M, rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["jax"], indirect=True)
def test_adaptive_damping_runs_compiled_and_agrees_with_numpy(backend, reference_backend):
    """θ and the Anderson mixing are loop state: the compiled jax while_loop reaches the
    same answer as NumPy's host loop. Not necessarily in the same number of iterations:
    the safeguard's restarts are decided by residual jumps, and a different order of
    floating-point sums can move one by an iteration (measured 128 against 125)."""
    p = hard_problem(Nx=41, Nt=20)
    options = {"use_anderson": True, "adaptive_damping": True, "anderson_safeguard": 1.5}
    ours = fixed_point(p, backend, **options).solve(
        max_iterations=400, tolerance=1e-12, equation_tolerance=1e-8
    )
    ref = fixed_point(p, reference_backend, **options).solve(
        max_iterations=400, tolerance=1e-12, equation_tolerance=1e-8
    )
    assert ref.converged and ours.converged
    assert final_residual(ours) <= 1e-8 and final_residual(ref) <= 1e-8
    np.testing.assert_allclose(ours.M, ref.M, rtol=0, atol=1e-8)
    np.testing.assert_allclose(ours.U, ref.U, rtol=0, atol=1e-8 * np.abs(ref.U).max())


def test_iterator_rejects_bad_safeguard_options():
    p = MFGProblem(Nx=11, Nt=5)
    for options, match in (
        ({"anderson_mixing": 0.0}, "anderson_mixing"),
        ({"anderson_safeguard": 1.0}, "anderson_safeguard"),
        ({"anderson_restart": 0}, "anderson_restart"),
        ({"adaptive_damping": "yes"}, "adaptive_damping"),
    ):
        with pytest.raises((TypeError, ValueError), match=match):
            fixed_point(p, **options)


# -- method="auto" ------------------------------------------------------------------------------


def stage_names(result) -> list[str]:
    return [s["stage"] for s in result.stages]


def test_auto_stops_at_picard_on_an_easy_problem():
    """The design example: Picard converges (28 iterations measured) and its stall check
    predicts convergence well inside the budget from its first judgement on, so `auto`
    never leaves it."""
    result = solve_mfg(MFGProblem(Nx=41, Nt=20), "auto", backend="numpy")
    assert result.converged and result.method == "picard"
    assert stage_names(result) == ["picard"]
    assert final_residual(result) <= 1e-8


def test_auto_hands_over_to_newton_when_picard_cycles(hard_newton):
    """The congestion problem: damped Picard cycles (its residual never falls below its
    first value, measured over 100 iterations), so `auto` stops it as soon as the stall
    check may judge (10 iterations; the issue allows 30) and Newton, started from
    Picard's last iterate, converges to Newton's own answer."""
    result = solve_mfg(hard_problem(), "auto", backend="numpy")
    assert result.converged, result.reason
    picard, newton = result.stages
    assert (picard["stage"], newton["stage"]) == ("picard", "newton")
    assert not picard["converged"] and "stalled" in picard["reason"]
    assert picard["iterations"] <= 30
    assert result.method == "newton" and final_residual(result) <= 1e-8
    for stage in result.stages:
        assert len(stage["hjb"]) == len(stage["fp"]) == stage["iterations"] > 0
    scale = np.abs(hard_newton.M).max()
    np.testing.assert_allclose(result.M, hard_newton.M, rtol=0, atol=1e-7 * scale)


def test_auto_escalates_to_newton_at_strong_coupling():
    """The κ = 30 wave: damped Picard cycles, `auto` hands over within 30 iterations,
    and Newton from there gives Newton's own answer."""
    p = wave_problem(STRONG, 50, 20)
    result = solve_mfg(p, "auto", backend="numpy")
    assert result.converged, result.reason
    assert stage_names(result) == ["picard", "newton"]
    assert result.stages[0]["iterations"] <= 30 and "stalled" in result.stages[0]["reason"]
    assert result.method == "newton" and final_residual(result) <= 1e-8
    alone = NewtonSolver(p).solve(tolerance=1e-10)
    np.testing.assert_allclose(result.M, alone.M, rtol=0, atol=1e-7)


def test_auto_rescues_a_failed_newton_with_anderson(hard_newton):
    """When Newton fails from Picard's iterate (here: allowed 2 steps, it needs about
    8), safeguarded Anderson continues from the best iterate so far and converges
    (measured: 91 of the 300 iterations allowed) to the same answer."""
    result = solve_mfg(
        hard_problem(), "auto", backend="numpy", max_iterations=300, newton_iterations=2
    )
    assert result.converged, result.reason
    assert stage_names(result)[:3] == ["picard", "newton", "anderson"]
    assert [s["converged"] for s in result.stages[:2]] == [False, False]
    assert result.method == "anderson" and final_residual(result) <= 1e-8
    scale = np.abs(hard_newton.M).max()
    np.testing.assert_allclose(result.M, hard_newton.M, rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize("problem", ["easy", "congestion", "wave"])
def test_auto_takes_the_same_path_when_round_off_changes(problem):
    """Round-off must not change the method mix: perturbing the tolerance and the initial
    density by 1e-12 (relative), which changes every floating-point result from the
    first iteration on as another thread count or BLAS would, gives the same stages
    and an answer that agrees to the equation tolerance's effect (1e-7)."""
    p = {
        "easy": MFGProblem(Nx=41, Nt=20),
        "congestion": hard_problem(Nx=51, Nt=25),
        "wave": wave_problem(STRONG, 50, 20),
    }[problem]
    rng = np.random.default_rng(0)
    noisy = p.m0 * (1.0 + 1e-12 * rng.uniform(-1.0, 1.0, size=p.m0.shape))
    perturbed = p.replace(initial_density=lambda *_: noisy)
    base = solve_mfg(p, "auto", backend="numpy")
    other = solve_mfg(perturbed, "auto", backend="numpy", tolerance=1e-6 * (1 + 1e-12))
    assert base.converged and other.converged
    assert stage_names(other) == stage_names(base)
    for key in ("U", "M"):
        scale = np.abs(base[key]).max()
        np.testing.assert_allclose(other[key], base[key], rtol=0, atol=1e-7 * scale)


def test_auto_gives_numpys_answer_on_every_backend(backend, reference_backend):
    """`auto` on the congestion problem on each backend (on jax the Picard stage is one
    compiled while_loop with the stall check inside): the answer solves the discrete
    equations to 1e-8 and equals numpy's `auto` answer to 1e-7 of its scale, whatever
    path each took."""
    p = hard_problem(Nx=41, Nt=20)
    ours = solve_mfg(p, "auto", backend=backend)
    ref = solve_mfg(p, "auto", backend=reference_backend)
    assert ours.converged and ref.converged, (ours.reason, ref.reason)
    assert final_residual(ours) <= 1e-8 and ours.backend == backend.name
    for key in ("U", "M"):
        scale = np.abs(ref[key]).max()
        np.testing.assert_allclose(ours[key], ref[key], rtol=0, atol=1e-7 * scale)


# -- stall detection --------------------------------------------------------------------------


def test_stall_window_stops_a_cycling_iteration(backend):
    """Damped Picard on the congestion problem cycles: with ``stall_window=5`` it stops
    once judged (iteration 10; at this size a cycle drifts down by 2 % per iteration,
    which predicts ~900 more), with the last finite iterate and a reason that says it
    stalled, on every backend (jax inside its compiled while_loop)."""
    p = hard_problem(Nx=41, Nt=20)
    result = fixed_point(p, backend, stall_window=5).solve(
        max_iterations=100, tolerance=1e-6, equation_tolerance=1e-8
    )
    assert not result.converged and result.iterations <= 15
    assert "stalled after" in result.reason
    assert np.all(np.isfinite(result.U)) and np.all(np.isfinite(result.M))
    assert len(result.residuals["U"]) == result.iterations


@pytest.mark.parametrize("theta", [0.1, 0.05])
def test_stall_prediction_matches_the_iterations_actually_needed(theta):
    """A slow but converging iteration (Picard with small θ on the design example) is
    stopped when its rate cannot make the budget of 100; the count it predicts then
    (measured: 169 and 350) is what the iteration needs when allowed to run to the end
    (measured: 171 and 349): damped Picard converges linearly, so its rate over a
    window is its asymptotic rate. The prediction must be within 25 %."""
    import re

    p = MFGProblem(Nx=41, Nt=20)
    options = {"tolerance": 1e-6, "equation_tolerance": 1e-8}
    stopped = fixed_point(p, thetaUM=theta, stall_window=5).solve(max_iterations=100, **options)
    assert not stopped.converged and "contracted by" in stopped.reason, stopped.reason
    more = int(re.search(r"needs about (\d+) more", stopped.reason).group(1))
    predicted = stopped.iterations + more
    full = fixed_point(p, thetaUM=theta).solve(max_iterations=1000, **options)
    assert full.converged
    assert abs(predicted - full.iterations) <= 0.25 * full.iterations, (predicted, full)


def test_stall_window_is_checked():
    p = MFGProblem(Nx=11, Nt=5)
    for bad in (0, 2.5, True, "5"):
        with pytest.raises(ValueError, match="stall_window"):
            fixed_point(p, stall_window=bad)


def test_fixed_point_starts_from_a_given_iterate(backend):
    """``initial=(U, M)``: from a converged answer the iteration stops within a few
    iterations with the same answer, on every backend (jax through its compiled
    program); the fixed end levels are reset to g and m0."""
    p = hard_problem(Nx=41, Nt=20)
    iterator = fixed_point(p, backend=backend, use_anderson=True, adaptive_damping=True)
    cold = iterator.solve(max_iterations=300, tolerance=1e-10, equation_tolerance=1e-9)
    assert cold.converged, cold.reason
    U, M = cold.U.copy(), cold.M.copy()
    U[-1] += 1.0  # ignored: U^{Nt} = g
    M[0] *= 2.0  # ignored: M^0 = m0
    warm = iterator.solve(
        max_iterations=300, tolerance=1e-10, equation_tolerance=1e-9, initial=(U, M)
    )
    # Measured on numpy: 4 iterations warm (the damping restarts), 60 cold.
    assert warm.converged and 5 * warm.iterations <= cold.iterations, (warm, cold)
    np.testing.assert_allclose(warm.M, cold.M, rtol=0, atol=1e-9)
    np.testing.assert_allclose(warm.U, cold.U, rtol=0, atol=1e-9)


def test_fixed_point_rejects_a_bad_initial_iterate():
    p = hard_problem(Nx=11, Nt=4)
    iterator = fixed_point(p)
    good = (np.zeros(p.shape), np.ones(p.shape))
    with pytest.raises(TypeError, match="pair"):
        iterator.solve(initial=good[0])
    with pytest.raises(ValueError, match="shape"):
        iterator.solve(initial=(good[0][1:], good[1]))
    with pytest.raises(ValueError, match="non-finite"):
        iterator.solve(initial=(good[0], np.full(p.shape, np.nan)))


def test_every_method_failing_is_reported_not_returned_as_an_answer(tmp_path):
    """Budgets too small for any method: converged=False, a reason naming every stage,
    and every stage's residual history; the result saves and loads with them. (Whether
    Newton gets a second try after Anderson depends on whether Anderson's 5 iterations
    came closer than Picard's, so only the first three stages are fixed.)"""
    import mfg_pde

    result = solve_mfg(
        hard_problem(Nx=41, Nt=20), "auto", backend="numpy", max_iterations=5, newton_iterations=2
    )
    assert not result.converged
    for name in ("picard", "anderson", "newton"):
        assert f"{name}:" in result.reason
    assert "no method converged" in result.reason
    assert stage_names(result)[:3] == ["picard", "newton", "anderson"]
    assert stage_names(result)[3:] in ([], ["newton"])
    for stage in result.stages:  # each within its budget; the fixed point cannot stall in 5
        assert stage["iterations"] == (2 if stage["stage"] == "newton" else 5)
        assert len(stage["hjb"]) == stage["iterations"] and not stage["converged"]
    assert np.all(np.isfinite(result.U)) and np.all(np.isfinite(result.M))
    assert mfg_pde.load(result.save(tmp_path / "failed.npz")) == result

    alone = solve_mfg(hard_problem(Nx=41, Nt=20), "newton", max_iterations=2)
    assert not alone.converged and alone.reason.startswith("Newton did not converge")
    assert len(alone.residuals["hjb"]) == alone.iterations == 2


def test_solve_mfg_rejects_unknown_options_for_newton_and_auto():
    p = MFGProblem(Nx=11, Nt=5)
    with pytest.raises(TypeError, match="num_particles"):
        solve_mfg(p, "newton", num_particles=10)
    with pytest.raises(TypeError, match="use_anderson"):
        solve_mfg(p, "auto", use_anderson=True)
    with pytest.raises(ValueError, match="method must be one of"):
        solve_mfg(p, "newtn")
