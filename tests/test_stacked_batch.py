"""The compiled 1D passes (FP march, equation residual) and the stacked batch of
numpy, numba and torch on the CPU (:mod:`mfg_pde.alg.numerical._stacked_batch`).

The promises checked: the compiled passes compute the array versions' numbers to the
bit (one problem or a stack of members with their own ν and λ); on numpy a stacked
batch gives every member its own solve to the bit (arrays, iterations, residuals,
reason), whatever the other members do (converge sooner, hit the iteration cap, blow
up) and however the members are split between threads; torch's to round-off. Speed
is measured in ``benchmarks/run.py --sections batch``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from same_results import assert_same_solve

from mfg_pde import solve_mfg, solve_mfg_batch
from mfg_pde._solve import _iterator
from mfg_pde.alg.numerical import _stacked_batch
from mfg_pde.alg.numerical._base import problem_arrays
from mfg_pde.alg.numerical._residual import make_equation_residual
from mfg_pde.alg.numerical.fp_fdm import make_fp_march
from mfg_pde.problems import hello_example


def hello(**overrides):
    """A small hello problem with its coupling as a cost parameter."""
    kwargs = dict(Nx=41, Nt=20, running_cost=lambda x, m, t, c: c * m, cost_parameters={"c": -0.5})
    kwargs.update(overrides)
    return hello_example(**kwargs)


#: Fixed-point tolerance of the comparisons: converged iterates then agree to ~1e-12
#: max|U| whichever iteration round-off of a norm stops a member at.
TIGHT = 1e-12


def _backends(monkeypatch):
    """numpy with numba, and numpy with numba whose 1D passes run the array code."""
    pytest.importorskip("numba")
    from mfg_pde.backends._numpy import NumpyBackend

    fast, plain = NumpyBackend(use_numba=True), NumpyBackend(use_numba=True)
    monkeypatch.setattr(plain, "fdm_1d_kernels", lambda: None)
    return fast, plain


@pytest.mark.parametrize("boundary", ["noflux", "periodic"])
def test_compiled_passes_equal_the_array_versions_to_the_bit(boundary, monkeypatch):
    """FP march and residual of three members (their own σ and λ) in one stack, and
    of each member alone, against the array code: the same numbers to the last bit."""
    fast, plain = _backends(monkeypatch)
    assert fast.fdm_1d_kernels() is not None and plain.fdm_1d_kernels() is None
    periodic = boundary == "periodic"
    members = [
        hello(sigma=s, control_cost=lam, boundary=boundary)
        for s, lam in [(0.1, 1.0), (0.25, 0.6), (0.4, 2.0)]
    ]
    p = members[0]
    rng = np.random.default_rng(3)
    U = rng.standard_normal((p.Nt + 1, 3, p.Nx))
    M = rng.random((p.Nt + 1, 3, p.Nx))
    stacked = problem_arrays(p, fast)
    stacked["c"] = stacked["c"]._replace(
        nu=np.array([[q.nu] for q in members]),
        control_cost=np.array([[q.control_cost] for q in members]),
    )
    stacked["m0"] = np.stack([q.m0 for q in members])
    f = np.stack([0.3 * M[1:, j] for j in range(3)], axis=1)
    costs = lambda arrays, M_: f  # noqa: E731
    M_stack = make_fp_march(fast, periodic)(stacked, U)
    F_stack, G_stack = make_equation_residual(fast, None, periodic, costs)(stacked, U, M)
    for j, q in enumerate(members):
        arrays = problem_arrays(q, plain)
        member_costs = lambda arrays, M_, j=j: f[:, j]  # noqa: E731
        reference = make_fp_march(plain, periodic)(arrays, U[:, j])
        F, G = make_equation_residual(plain, None, periodic, member_costs)(arrays, U[:, j], M[:, j])
        one = problem_arrays(q, fast)
        np.testing.assert_array_equal(make_fp_march(fast, periodic)(one, U[:, j]), reference)
        np.testing.assert_array_equal(M_stack[:, j], reference)
        np.testing.assert_array_equal(F_stack[:, j], F)
        np.testing.assert_array_equal(G_stack[:, j], G)
        F_one, G_one = make_equation_residual(fast, None, periodic, member_costs)(
            one, U[:, j], M[:, j]
        )
        np.testing.assert_array_equal(F_one, F)
        np.testing.assert_array_equal(G_one, G)


@pytest.mark.parametrize(
    "backend, boundary",
    [("numpy", "noflux"), ("numpy", "periodic"), ("numba", "noflux"), ("torch", "noflux")],
    indirect=["backend"],
)
def test_stacked_batch_gives_each_member_its_own_solve(backend, boundary):
    """σ, λ and a cost parameter swept together, with adaptive damping: each member's
    U, M and residual record are those of its own solve_mfg. (Periodic grids run each
    member's array HJB march: on torch that is 5 s of dispatch, so numpy covers it.)"""
    problem = hello(Nx=31, Nt=12, boundary=boundary)
    batch = {"sigma": [0.1, 0.2, 0.3, 0.25], "control_cost": [1.0, 0.5, 2.0, 1.0]}
    batch["c"] = [-0.5, 0.0, 0.3, 0.6]
    options = dict(tolerance=TIGHT, adaptive_damping=True, max_iterations=300)
    iterator = _iterator(problem, "fdm", backend, options)
    assert _stacked_batch.runs_stacked(iterator)
    results = solve_mfg_batch(problem, batch, backend=backend, **options)
    for i, result in enumerate(results):
        member = problem.replace(**{k: v[i] for k, v in batch.items()})
        single = solve_mfg(member, backend=backend, **options)
        assert result.converged and single.converged, (result.reason, single.reason)
        assert result.problem == single.problem and result.backend == single.backend
        if backend.is_host_numpy:  # the same operations in the same order: the same bits
            assert_same_solve(result, single)
        else:  # torch: its sums may group a row of a stack otherwise than a whole array
            np.testing.assert_allclose(result.U, single.U, rtol=0, atol=1e-10)
            np.testing.assert_allclose(result.M, single.M, rtol=0, atol=1e-10)
            assert max(result.residuals["U"][-1], result.residuals["M"][-1]) < TIGHT


def test_members_that_stop_early_or_late_keep_their_own_record():
    """Members leave the stack at different iterations: those that converge before the
    cap report converged, the others reach it, each as its own solve with that cap."""
    problem = hello()
    sigmas = [0.05, 0.15, 0.4]
    counts = [solve_mfg(problem.replace(sigma=s), backend="numpy").iterations for s in sigmas]
    assert max(counts) - min(counts) >= 4, counts  # the test needs the spread
    cap = (max(counts) + min(counts)) // 2
    results = solve_mfg_batch(problem, {"sigma": sigmas}, backend="numpy", max_iterations=cap)
    for result, sigma, count in zip(results, sigmas, counts, strict=True):
        single = solve_mfg(problem.replace(sigma=sigma), backend="numpy", max_iterations=cap)
        assert single.converged == (count <= cap)
        assert_same_solve(result, single)


def test_a_member_that_blows_up_stops_alone():
    """A member whose cost overflows stops with the non-finite report of its single
    solve; the others converge as they would alone."""
    problem = hello()
    couplings = [-0.5, 1e300, -0.2]
    results = solve_mfg_batch(problem, {"c": couplings}, backend="numpy", max_iterations=200)
    single = solve_mfg(problem.replace(c=1e300), backend="numpy", max_iterations=200)
    assert "non-finite values" in single.reason
    assert_same_solve(results[1], single)
    assert np.all(np.isfinite(results[1].U)) and np.all(np.isfinite(results[1].M))
    for i in (0, 2):
        alone = solve_mfg(problem.replace(c=couplings[i]), backend="numpy", max_iterations=200)
        assert alone.converged
        assert_same_solve(results[i], alone)


def test_the_split_between_threads_does_not_change_the_answer(monkeypatch):
    """One range of members or several: the same members' answers."""
    problem = hello()
    sigmas = np.linspace(0.1, 0.3, 5)
    runs = []
    for chunks in (1, 2, 5):
        monkeypatch.setattr(_stacked_batch, "MEMBER_CHUNKS", chunks)
        runs.append(solve_mfg_batch(problem, {"sigma": sigmas}, backend="numpy", tolerance=TIGHT))
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            assert_same_solve(a, b)


@pytest.mark.parametrize(
    "options",
    [
        dict(use_anderson=True),
        dict(use_anderson=True, adaptive_damping=True, anderson_safeguard=2.0),
        dict(stall_window=5),
    ],
    ids=["anderson", "anderson-adaptive-safeguard", "stall-window"],
)
def test_anderson_and_the_stall_window_are_stacked_member_by_member(options):
    """Anderson keeps one history per member and the stall window judges each member's
    own trend: every member's solve to the bit, including a member the stall window
    stops (c = 0.2 cycles under damped Picard) beside ones that converge."""
    problem = hello()
    batch = {"sigma": [0.1, 0.1, 0.3], "c": [-0.5, 0.2, -0.2]}
    options = dict(options, max_iterations=100)
    iterator = _iterator(problem, "fdm", "numpy", options)
    assert _stacked_batch.runs_stacked(iterator)
    results = solve_mfg_batch(problem, batch, backend="numpy", **options)
    for i, result in enumerate(results):
        member = problem.replace(**{k: v[i] for k, v in batch.items()})
        assert_same_solve(result, solve_mfg(member, backend="numpy", **options))
    if "stall_window" in options:
        assert "stalled" in results[1].reason, results[1].reason
        assert results[0].converged and results[2].converged


def test_a_member_that_raises_stops_the_whole_batch_promptly(monkeypatch):
    """A running cost that raises for one member ends the batch with that error, and
    the members solved in the other thread stop at their next iteration instead of
    running on to their cap (here unreachable: tolerance 1e-300, 5,000 iterations)."""
    monkeypatch.setattr(_stacked_batch, "MEMBER_CHUNKS", 2)
    calls = []

    def cost(x, m, t, c):
        if c == 7.0 and np.max(t) > 0:
            raise FloatingPointError("member 0 failed")
        calls.append(c)
        return c * m

    problem = hello(running_cost=cost)
    batch = {"c": [7.0, -0.5, -0.4, -0.3]}
    with pytest.raises(FloatingPointError, match="member 0 failed"):
        solve_mfg_batch(problem, batch, backend="numpy", tolerance=1e-300, max_iterations=5000)
    # The other thread evaluates 4 costs per iteration: 20,000 for its 5,000 iterations
    # without the stop; with it, as many as run until the caller's thread takes the GIL
    # to set the flag (measured 30-120 iterations).
    assert len(calls) < 4000, len(calls)


def test_the_threaded_kernels_leave_numbas_threading_layer_unstarted():
    """The particle march, the stacked batch and the 2D residual split their work in
    Python threads of their own; they must not start numba's OpenMP layer (not
    fork-safe: a process forked after a solve would abort). Checked in a fresh
    interpreter, since other tests may start it on purpose."""
    code = (
        "import numpy as np\n"
        "from mfg_pde import solve_mfg, solve_mfg_batch\n"
        "from mfg_pde.problems import hello_example\n"
        "from numba.np.ufunc import parallel\n"
        "p = hello_example(Nx=21, Nt=10)\n"
        "solve_mfg(p, 'particle', 'numpy', num_particles=30_000, max_iterations=2)\n"
        "solve_mfg_batch(p, {'sigma': [0.1, 0.2]}, backend='numpy', max_iterations=3)\n"
        "print(parallel._is_initialized)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


@pytest.mark.parametrize("backend", ["numpy", "torch"], indirect=True)
def test_a_2d_batch_solves_its_members_in_threads_each_as_alone(backend):
    """2D: the members' own solves, two at a time in threads (their compiled marches
    release the GIL): each member's arrays and record are its single solve's."""
    from mfg_pde.problems import hello_2d_example

    problem = hello_2d_example(Nx=(16, 12), Nt=8)
    iterator = _iterator(problem, "fdm", backend, {})
    assert _stacked_batch.runs_members_in_threads(iterator)
    batch = {"sigma": [0.1, 0.2, 0.3]}
    results = solve_mfg_batch(problem, batch, backend=backend)
    for result, sigma in zip(results, batch["sigma"], strict=True):
        single = solve_mfg(problem.replace(sigma=sigma), backend=backend)
        assert result.converged and result.timings["batch_size"] == 3
        assert_same_solve(result, single)


def test_thread_limits_of_the_process_are_respected(monkeypatch):
    """``OMP_NUM_THREADS=1`` (what Dask's workers set) keeps the host kernels and the
    batches in the calling thread; unset or larger, two threads where two cores are."""
    from mfg_pde.backends._base import host_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert host_threads(2) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    assert host_threads(2) == min(2, host_threads(64))
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert 1 <= host_threads(2) <= 2
