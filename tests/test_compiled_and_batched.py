"""Issue 4's execution paths: the compiled fixed-point program, warm-started Newton, the
sync-free torch march, the eager fallback and batched solves. Speed itself is measured in
``benchmarks/run.py``, not here; these tests check that the fast paths give the answer of
the plain ones and that they are taken when they should be."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from mfg_pde import MFGProblem, solve_mfg, solve_mfg_batch, vectorized_cost
from mfg_pde.alg.numerical import FixedPointIterator, FPFDMSolver, HJBFDMSolver
from mfg_pde.backends import BaseBackend
from mfg_pde.problems import hello_2d_example, hello_example


def hello(**overrides) -> MFGProblem:
    """Issue 4's reference problem, small, with its coupling as a cost parameter."""
    kwargs = dict(Nx=41, Nt=20, running_cost=lambda x, m, t, c: c * m, cost_parameters={"c": -0.5})
    kwargs.update(overrides)
    return hello_example(**kwargs)


HELLO = hello()

#: Fixed-point tolerance for comparing converged answers: the hello problem contracts by
#: about 0.55 per damped iteration, so iterates near the stop differ by ~1e-12 max|U|
#: and agreement to 1e-10 holds whichever iteration round-off stops a solve at.
TIGHT = 1e-12

#: The compiled/eager comparison runs this many iterations: well short of convergence,
#: and past Anderson's depth 5, so its ring buffer wraps.
BUDGET = 8


def iterate(problem, backend, **options):
    hjb, fp = HJBFDMSolver(problem, backend=backend), FPFDMSolver(problem, backend=backend)
    return FixedPointIterator(problem, hjb, fp, **options)


@pytest.mark.parametrize("backend", ["jax"], indirect=True)
@pytest.mark.parametrize("use_anderson", [False, True])
def test_compiled_program_matches_eager_run(backend, use_anderson):
    """One compiled while_loop and an op-by-op run of the same iteration agree to 1e-12,
    iterate by iterate.

    Both get a budget of :data:`BUDGET` iterations, far from convergence (residuals
    ~1e-1 and ~1e-3 there; 35 and 17 iterations reach 1e-8), so both run exactly that
    many and the comparison does not depend on where round-off would stop them; that
    the compiled program stops on convergence is checked by every converging jax solve.
    On the DESIGN example with Anderson: plain Anderson(5, 0.5) does not converge on the
    attractive hello problem at this size (residual 1e-4 after 100 iterations; issue 5).
    """
    problem = MFGProblem(Nx=41, Nt=20) if use_anderson else HELLO
    compiled = iterate(problem, backend, use_anderson=use_anderson)
    eager = iterate(problem, backend, use_anderson=use_anderson, compile=False)
    assert compiled.runs_as_one_program and not eager.runs_as_one_program
    a, b = (it.solve(tolerance=1e-8, max_iterations=BUDGET) for it in (compiled, eager))
    for result in (a, b):
        assert not result.converged and result.iterations == BUDGET, result.reason
    assert "compile" in a.timings and "hjb" in b.timings
    for name in ("U", "M"):
        scale = np.abs(b[name]).max()
        assert np.abs(a[name] - b[name]).max() <= 1e-12 * scale, name
    # The fixed-point residuals are relative changes (dimensionless): late ones are
    # differences of nearly equal iterates, so compare them absolutely; the HJB equation
    # residual relative to its largest value. (The FP one is round-off in both.)
    for key in ("U", "M"):
        np.testing.assert_allclose(a.residuals[key], b.residuals[key], rtol=0, atol=1e-12)
    hjb_scale = b.residuals["hjb"].max()
    np.testing.assert_allclose(a.residuals["hjb"], b.residuals["hjb"], atol=1e-12 * hjb_scale)


@pytest.mark.parametrize("backend", ["jax"], indirect=True)
def test_changing_parameter_values_does_not_recompile(backend):
    """σ, λ and a cost parameter are arguments of the program: a second problem that
    differs only in them reuses it (compile time 0, one entry in jax's cache) and still
    gets its own answer: numpy's, both solved to 1e-10 (the tolerance is an argument
    too). This game contracts more slowly (0.78 per iteration): 89 of the 100
    iterations the program allows, and iterates near that stop differ by ~3e-11, far
    below the 1e-9 compared."""
    first = iterate(HELLO, backend)
    a = first.solve()
    program, _ = first.program(100)
    other = HELLO.replace(sigma=0.2, control_cost=2.0, c=-0.2)
    b = iterate(other, backend).solve(tolerance=1e-10)
    assert b.timings["compile"] == 0.0
    assert program._cache_size() == 1
    assert a.converged and b.converged
    assert np.abs(a.M - b.M).max() > 0.1  # a different game, not a stale answer
    reference = solve_mfg(other, backend="numpy", tolerance=1e-10)
    np.testing.assert_allclose(b.U, reference.U, atol=1e-9)


@pytest.mark.parametrize("backend", ["jax"], indirect=True)
def test_untraceable_running_cost_falls_back_to_eager_with_a_warning(backend):
    """A Python ``if`` on array values cannot be compiled: the solve warns and runs
    eagerly, and its answer is the numpy backend's (both solved to :data:`TIGHT`).

    Undamped (θ = 1), which on this small game reaches 1e-12 in 15 iterations (damped:
    49), since each eager iteration is slow."""

    def running_cost(x, m, t):
        if float(m.max()) > 1e6:  # needs a concrete value: fails under tracing
            return 0.0 * m
        return -0.5 * m

    problem = hello(running_cost=running_cost, cost_parameters=None, Nx=21, Nt=10)
    with pytest.warns(RuntimeWarning, match="compiling the fixed-point solve failed"):
        result = solve_mfg(problem, backend=backend, tolerance=TIGHT, thetaUM=1.0)
    assert result.converged and any("eagerly" in w for w in result.warnings)
    reference = solve_mfg(problem, backend="numpy", tolerance=TIGHT, thetaUM=1.0)
    np.testing.assert_allclose(result.U, reference.U, atol=1e-10)
    np.testing.assert_allclose(result.M, reference.M, atol=1e-10)


def test_newton_warm_start_changes_the_work_not_the_answer(backend):
    """HJB from any guess of the path (here a crude one) converges to the same U."""
    problem = hello(terminal_cost=lambda x: 5 * np.sin(6 * x))
    hjb = HJBFDMSolver(problem, backend=backend)
    cold = hjb.solve()
    warm = hjb.solve(U_guess=cold + 0.05 * np.cos(3 * problem.x)[None, :])
    np.testing.assert_allclose(warm, cold, atol=1e-9)
    assert hjb.last_newton_failures == 0


@pytest.mark.parametrize("backend", ["torch"], indirect=True)
def test_sync_free_march_reruns_unconverged_steps(backend):
    """Where a host read costs a sync (torch on a GPU), the march runs a fixed Newton
    count per step; with one step allowed some steps do not converge, the check after
    the march sees it and reruns with more, and the answer is numpy's. (On the CPU,
    torch reads for free and takes the compiled march: a subclass that says syncs cost
    runs the GPU's path here.)"""
    assert not backend.syncs_cost

    class QueuedTorch(type(backend)):
        syncs_cost = True

    problem = hello(terminal_cost=lambda x: 5 * np.sin(6 * x))
    hjb = HJBFDMSolver(problem, backend=QueuedTorch(device="cpu"))
    assert hjb.sync_free
    hjb._newton_count = 1
    U = hjb.solve()
    assert hjb._newton_count > 1 and hjb.last_newton_failures == 0
    np.testing.assert_allclose(U, HJBFDMSolver(problem, backend="numpy").solve(), atol=1e-9)


def test_batch_matches_single_solves(backend):
    """A σ- and coupling-sweep solved together (vmap on jax, a loop elsewhere) gives
    each member the answer of its own solve_mfg (both solved to :data:`TIGHT`), and
    each member its own convergence record. On the 21 x 10 grid: this checks the
    batching, not the discretisation."""
    sigmas, couplings = [0.1, 0.2, 0.3], [-0.5, 0.0, 0.3]
    problem = hello(Nx=21, Nt=10)
    results = solve_mfg_batch(
        problem, {"sigma": sigmas, "c": couplings}, backend=backend, tolerance=TIGHT
    )
    assert len(results) == 3
    for result, sigma, c in zip(results, sigmas, couplings, strict=True):
        single = solve_mfg(problem.replace(sigma=sigma, c=c), backend=backend, tolerance=TIGHT)
        assert result.converged and single.converged, (result.reason, single.reason)
        assert result.problem["sigma"] == sigma and result.problem["cost_parameters"]["c"] == c
        assert result.timings["batch_size"] == 3
        np.testing.assert_allclose(result.U, single.U, atol=1e-10)
        np.testing.assert_allclose(result.M, single.M, atol=1e-10)
        # The member's residual history is its own: one entry per iteration it ran,
        # the last below the tolerance.
        for key in ("U", "M", "hjb", "fp"):
            assert result.residuals[key].shape == (result.iterations,), key
        assert max(result.residuals["U"][-1], result.residuals["M"][-1]) < TIGHT


@pytest.mark.parametrize("backend", ["jax"], indirect=True)
def test_vmapped_batch_honours_the_equation_tolerance(backend):
    """The vmapped program gets every solve option, not only the tolerance: with an
    equation tolerance of 1e-9 each member stops only once its discrete equations hold
    to it, which the fixed-point tolerance 1e-4 alone does not give (a solve stopped by
    it leaves max|F| ~ 1e-3: measured 1.0e-3 and 2.2e-3).

    The member also gets its single solve's answer: equations holding to 1e-9 put U
    within ~1e-10 of the discrete solution (measured 6e-11 and 9e-11), and iterates one
    apart at that stop differ by 5e-11 (measured), so the two agree to 1e-10 whichever
    iteration round-off stops each at.
    """
    options = dict(tolerance=1e-4, equation_tolerance=1e-9)
    results = solve_mfg_batch(HELLO, {"sigma": [0.1, 0.2]}, backend=backend, **options)
    for result, sigma in zip(results, [0.1, 0.2], strict=True):
        loose = solve_mfg(HELLO.replace(sigma=sigma), backend=backend, tolerance=1e-4)
        assert loose.converged and loose.residuals["hjb"][-1] > 1e-9, loose.residuals["hjb"]
        assert result.converged and "equation residuals below 1e-09" in result.reason
        hjb, fp = result.residuals["hjb"][-1], result.residuals["fp"][-1]
        assert hjb <= 1e-9 and fp <= 1e-9, (hjb, fp)
        single = solve_mfg(HELLO.replace(sigma=sigma), backend=backend, **options)
        np.testing.assert_allclose(result.U, single.U, atol=1e-10)


def test_batch_runs_newton_members_with_newton(reference_backend):
    """method="newton" in a batch solves each member with NewtonSolver."""
    problem = hello(Nx=21, Nt=10)
    results = solve_mfg_batch(problem, {"c": [0.2, 0.4]}, "newton", reference_backend)
    for result, c in zip(results, [0.2, 0.4], strict=True):
        single = solve_mfg(problem.replace(c=c), "newton", reference_backend)
        assert result.method == single.method and result.converged == single.converged
        np.testing.assert_allclose(result.U, single.U, atol=1e-12)


@pytest.mark.parametrize(
    "batch, match",
    [
        ({"T": [1.0, 2.0]}, "cannot batch over 'T'"),
        ({"sigma": [0.1, 0.2], "c": [0.1]}, "one length"),
        ({"sigma": [[0.1]]}, "1D"),
        ({"sigma": [0.1, -0.2]}, "sigma must be >= 0"),
        ({}, "non-empty"),
    ],
)
def test_batch_rejects_bad_input(batch, match):
    with pytest.raises((ValueError, TypeError), match=match):
        solve_mfg_batch(HELLO, batch, backend="numpy")


def test_cost_parameters_are_checked_and_replaced():
    with pytest.raises(ValueError, match="clashes"):
        hello(cost_parameters={"m": 1.0})
    with pytest.raises(ValueError, match="must be finite"):
        hello(cost_parameters={"c": float("nan")})
    with pytest.raises(TypeError, match="failed on the grid"):
        hello(cost_parameters={"d": 1.0})  # the callable has no parameter d
    with pytest.raises(TypeError, match="unknown argument 'kappa'"):
        HELLO.replace(kappa=1.0)
    moved = HELLO.replace(c=0.25, Nx=51)
    assert moved.cost_parameters == {"c": 0.25} and moved.Nx == 51
    assert HELLO.cost_parameters == {"c": -0.5}


@pytest.mark.parametrize("backend", ["torch"], indirect=True)
def test_torch_gpu_tridiagonal_path_runs_on_the_cpu_too(backend):
    """Parallel cyclic reduction (BaseBackend's default) is what torch uses on a GPU;
    CI has none, so it is checked here on the CPU against LAPACK (the CPU path)."""
    rng = np.random.default_rng(3)
    shape = (4, 101)
    lower, upper = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)
    diag = np.abs(lower) + np.abs(upper) + rng.uniform(1, 2, shape)
    rhs = rng.normal(size=shape)
    args = [backend.from_numpy(a) for a in (lower, diag, upper, rhs)]
    pcr = backend.to_numpy(BaseBackend.solve_tridiagonal(backend, *args))
    lapack = backend.to_numpy(backend.solve_tridiagonal(*args))
    np.testing.assert_allclose(pcr, lapack, rtol=0, atol=1e-12 * np.abs(lapack).max())


def test_nan_found_by_the_compiled_program_is_located(backend):
    """Same as the host loop: the reason names the first bad time level."""
    problem = hello(
        Nx=31, Nt=20, cost_parameters=None, running_cost=lambda x, m, t: 1.0 / (0.0 * m + (t - 0.5))
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = solve_mfg(problem, backend=backend, max_iterations=5)
    assert "non-finite values in U (HJB solve) at iteration 1, time index 9 " in result.reason
    assert result.iterations == 0 and np.all(np.isfinite(result.U))


def test_compiled_1d_hjb_march_gives_the_array_marchs_answer():
    """numpy with numba marches HJB in one compiled call (hjb_march_kernel); without
    numba the array version runs. Same U, M to round-off, with and without a guess, and
    the same Newton failure count when the cap is too small."""
    pytest.importorskip("numba")
    from mfg_pde.backends._numpy import NumpyBackend

    problem = HELLO.replace(c=-1.0)
    fast, plain = NumpyBackend(use_numba=True), NumpyBackend(use_numba=False)
    assert fast.hjb_march_kernel() is not None and plain.hjb_march_kernel() is None
    assert fast.program_key != plain.program_key  # compiled programs are not shared
    results = [solve_mfg(problem, backend=b, tolerance=TIGHT) for b in (fast, plain)]
    assert all(r.converged for r in results)
    for field in ("U", "M"):
        a, b = (getattr(r, field) for r in results)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(b).max())
    M = results[1].M
    levels = np.arange(problem.Nt + 1.0)[:, None]
    for guess in (None, results[1].U + 0.01 * levels):  # (a shift constant in time cancels)
        marches = [HJBFDMSolver(problem, backend=b, max_newton_iterations=1) for b in (fast, plain)]
        U_fast, U_plain = (s.solve_backend(M, guess) for s in marches)
        np.testing.assert_allclose(U_fast, U_plain, rtol=0, atol=1e-11)
        assert marches[0].last_newton_failures == marches[1].last_newton_failures > 0


def test_running_costs_of_all_levels_keep_the_one_profile_contract(backend):
    """The levels' running costs are mapped with the backend's vmap (torch batches
    them with torch.func.vmap): each call still sees one profile, so a nonlocal cost's
    ``.sum()`` is per level, and a cost vmap cannot batch (``float()`` of a tensor)
    falls back to the per-level loop with the same values."""
    from mfg_pde.alg.numerical._base import problem_arrays, running_costs

    problem = hello_example(Nx=41, Nt=20)
    arrays = problem_arrays(problem, backend)
    rng = np.random.default_rng(3)
    M = rng.uniform(0.1, 2.0, size=(problem.Nt, problem.Nx))
    t = problem.t[1:]

    def nonlocal_cost(x, m, t):
        return (x - m.sum() / m.shape[-1]) ** 2 + t

    def host_branch(x, m, t):  # Python control flow on a value: not batchable
        return m * 2.0 if float(m[0]) > 1.0 else m - 1.0

    # jax traces whatever it maps: a cost it cannot trace runs on its eager view, as the
    # solvers fall back to it (with a warning).
    untraced = backend.eager() if backend.fixed_shapes else backend
    for b, cost, expected in (
        (backend, nonlocal_cost, [(problem.x - m.mean()) ** 2 + s for m, s in zip(M, t)]),  # noqa: B905
        (untraced, host_branch, [m * 2.0 if m[0] > 1.0 else m - 1.0 for m in M]),
    ):
        f = running_costs(b, cost, arrays, b.from_numpy(M), b.from_numpy(t))
        np.testing.assert_allclose(b.to_numpy(f), np.stack(expected), rtol=1e-14)


def test_a_vectorized_cost_is_called_once_for_all_levels_with_the_same_values(backend):
    """A cost declared with ``vectorized_cost`` gives the levels' costs of the per-level
    contract on every backend (numpy and numba call it once, with ``t`` a column; the
    others map it as before), in 1D and 2D."""
    from mfg_pde.alg.numerical._base import problem_arrays, running_costs

    calls = []

    @vectorized_cost
    def cost(*coords_m_t, c):
        calls.append(1)
        *coords, m, t = coords_m_t
        return c * m + sum(coords) * t

    def by_level(*coords_m_t, c):
        *coords, m, t = coords_m_t
        return c * m + sum(coords) * t

    rng = np.random.default_rng(5)
    for problem in (hello_example(Nx=41, Nt=20), hello_2d_example(Nx=(12, 9), Nt=6)):
        problems = [
            problem.replace(running_cost=f, cost_parameters={"c": 0.7}) for f in (cost, by_level)
        ]
        arrays = problem_arrays(problems[0], backend)
        M = rng.uniform(0.1, 2.0, size=(problem.Nt, *problem.grid_shape))
        t = problem.t[1:]
        calls.clear()
        got = running_costs(backend, cost, arrays, backend.from_numpy(M), backend.from_numpy(t))
        want = running_costs(
            backend, by_level, arrays, backend.from_numpy(M), backend.from_numpy(t)
        )
        np.testing.assert_allclose(
            backend.to_numpy(got), backend.to_numpy(want), rtol=1e-15, atol=0
        )
        if backend.is_host_numpy:
            assert len(calls) == 1


def test_a_wrong_vectorized_declaration_is_refused_when_the_problem_is_built():
    """A nonlocal cost whose ``.sum()`` runs over all axes mixes the levels when they are
    stacked: declared vectorized, it is refused by name before any solve; the same cost
    reducing over the grid's axis is accepted and solves as the undeclared cost does."""

    def mean_field(x, m, t):
        return (x - (x * m).sum() / m.sum()) ** 2

    @vectorized_cost
    def wrong(x, m, t):
        return mean_field(x, m, t)

    @vectorized_cost
    def right(x, m, t):
        centre = (x * m).sum(axis=-1, keepdims=True) / m.sum(axis=-1, keepdims=True)
        return (x - centre) ** 2

    with pytest.raises(ValueError, match="vectorized_cost.*max difference"):
        MFGProblem(Nx=41, Nt=20, running_cost=wrong)
    with pytest.raises(TypeError, match="callable"):
        vectorized_cost(3.0)
    declared = solve_mfg(MFGProblem(Nx=41, Nt=20, running_cost=right), backend="numpy")
    plain = solve_mfg(MFGProblem(Nx=41, Nt=20, running_cost=mean_field), backend="numpy")
    assert declared.converged and plain.converged
    np.testing.assert_allclose(declared.U, plain.U, rtol=0, atol=1e-13)
    np.testing.assert_allclose(declared.M, plain.M, rtol=0, atol=1e-13)
