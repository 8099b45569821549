"""The 2D linear solves of the implicit upwind scheme (``_grid2d.solve``), every backend.

Each Newton step of the 2D HJB march and each FP step solves ``A x = b`` with ``A`` the
5-point upwind M-matrix or its transpose. Backends solve it differently (numpy with
numba: BiCGSTAB with a Gauss-Seidel sweep ordered along the flow; the others: BiCGSTAB
with the alternating-line preconditioner), so every one is checked here against a
sparse direct solve (SciPy's SuperLU) of a matrix assembled independently, entry by
entry, from the per-axis lines.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from conftest import get_backend

from mfg_pde.alg.numerical import _grid2d as g2
from mfg_pde.alg.numerical._stencils import SchemeConstants
from mfg_pde.backends._numpy import NumpyBackend

NX, NY = 23, 17  # not square: an x/y mix-up changes the answer
DT = 0.1  # cell CFL ~ 10: transport dominates the step, as in the 2D hello problem
BOUNDARIES = [(False, False), (True, False), (False, True), (True, True)]


def transport_case(periodic: tuple[bool, bool], shape=(NX, NY), nu: float = 0.002):
    """A value function with strong transport (cell Péclet 20-90) whose flow converges
    on one point, and the lines of ``A(u) - I/dt`` there (as numpy arrays)."""
    x = np.linspace(0.0, 1.0, shape[0])[:, None]
    y = np.linspace(0.0, 1.0, shape[1])[None, :]
    u = 4.0 * ((x - 0.4) ** 2 + (y - 0.65) ** 2) + 0.3 * np.sin(5.0 * x) * np.cos(3.0 * y)
    c = SchemeConstants(dx=x[1, 0] - x[0, 0], dt=DT, nu=nu, control_cost=1.0, dy=y[0, 1] - y[0, 0])
    b = NumpyBackend(use_numba=False)
    counts = g2.neighbour_counts_2d(b, shape, periodic)
    _, _, lines = g2.hjb_terms(np, u, c, counts, periodic, values=False)
    return u, lines


def assembled(lines, periodic):
    """``I/dt`` plus the lines, entry by entry (wrapping on periodic axes, the stray end
    values of no-flux axes left out)."""
    (lx, dx, ux), (ly, dy, uy) = lines
    size = NX * NY
    A = sp.lil_matrix((size, size))
    for i in range(NX):
        for j in range(NY):
            row = i * NY + j
            A[row, row] += 1.0 / DT + dx[i, j] + dy[i, j]
            for di, dj, coefficient in ((-1, 0, lx), (1, 0, ux), (0, -1, ly), (0, 1, uy)):
                ii, jj = i + di, j + dj
                if not (0 <= ii < NX):
                    if not periodic[0]:
                        continue
                    ii %= NX
                if not (0 <= jj < NY):
                    if not periodic[1]:
                        continue
                    jj %= NY
                A[row, ii * NY + jj] += coefficient[i, j]
    return A.tocsc()


@pytest.mark.parametrize("periodic", BOUNDARIES, ids=str)
@pytest.mark.parametrize("transpose", [False, True], ids=["hjb", "fp"])
def test_solve_matches_a_sparse_direct_solve(backend, periodic, transpose):
    u, lines = transport_case(periodic)
    A = assembled(lines, periodic)
    if transpose:
        A = A.T.tocsc()
    rhs = np.random.default_rng(3).standard_normal((NX, NY))
    expected = spla.spsolve(A, rhs.reshape(-1)).reshape(NX, NY)
    atol = 1e-10 * np.abs(rhs).max()

    xb = backend.from_numpy
    x, iterations, converged = g2.solve(
        backend,
        1.0 / DT,
        tuple(tuple(xb(a) for a in triple) for triple in lines),
        periodic,
        xb(rhs),
        xb(np.zeros_like(rhs)),
        atol,
        200,
        order_key=xb(u),
        transpose=transpose,
    )
    x = backend.to_numpy(x)
    assert bool(backend.to_numpy(converged))
    assert 0 < int(backend.to_numpy(iterations)) < 200
    # The stopping test bounds the residual; ||A^-1||_inf <= dt bounds the error.
    assert np.abs(A @ x.reshape(-1) - rhs.reshape(-1)).max() <= 1.5 * atol
    assert np.abs(x - expected).max() <= 1.5 * DT * atol


def iterations_to(backend, lines, periodic, key, transpose, tolerance=1e-8) -> int:
    rhs = np.random.default_rng(4).standard_normal(key.shape)
    _, iterations, converged = g2.solve(
        backend, 1.0 / DT, lines, periodic, rhs, np.zeros_like(rhs),
        tolerance * np.abs(rhs).max(), 200, order_key=key, transpose=transpose,
    )  # fmt: skip
    assert bool(converged)
    return int(iterations)


@pytest.mark.parametrize("transpose", [False, True], ids=["hjb", "fp"])
def test_ordering_along_the_flow_is_what_makes_the_sweep_work(transpose):
    """Ordered by ``u`` (ascending for A, descending for A^T) the Gauss-Seidel sweep
    solves the transport part exactly, so BiCGSTAB needs a few iterations where the
    line preconditioner needs about twice as many; the reversed order (key ``-u``)
    loses that, needing some eight times as many.

    The counts are the point here (docs/two_d.md quotes them), but round-off can move
    BiCGSTAB's stop by an iteration or two, so the bounds leave that room: measured
    8-9 along the flow, 66-77 against it, 19-21 with the line preconditioner."""
    numba_numpy = get_backend("numba")  # numpy arrays with the ordered solver
    periodic = (True, False)
    u, lines = transport_case(periodic, shape=(64, 48))
    along = iterations_to(numba_numpy, lines, periodic, u, transpose)
    against = iterations_to(numba_numpy, lines, periodic, -u, transpose)
    line = iterations_to(NumpyBackend(use_numba=False), lines, periodic, u, transpose)
    assert along <= 12, along
    assert line >= 1.5 * along, (line, along)
    assert against >= 4 * along, (against, along)


@pytest.mark.parametrize("periodic", BOUNDARIES, ids=str)
def test_compiled_level_terms_equal_the_array_version(backend, periodic):
    """``level_terms`` (a compiled kernel on numpy with numba) gives what
    ``hjb_terms`` computes with array operations: bitwise on the numpy backends (same
    operations in the same order), to round-off elsewhere."""
    rng = np.random.default_rng(6)
    u = rng.standard_normal((NX, NY))
    c = SchemeConstants(dx=0.05, dt=DT, nu=0.003, control_cost=0.7, dy=0.07)
    counts = g2.neighbour_counts_2d(NumpyBackend(use_numba=False), (NX, NY), periodic)
    expected = g2.hjb_terms(np, u, c, counts, periodic)
    got = g2.level_terms(
        backend, backend.from_numpy(u), c, g2.neighbour_counts_2d(backend, (NX, NY), periodic),
        periodic,
    )  # fmt: skip
    flat = lambda terms: [terms[0], terms[1], *terms[2][0], *terms[2][1]]  # noqa: E731
    for want, have in zip(flat(expected), flat(got), strict=True):
        have = backend.to_numpy(have)
        if backend.name in ("numpy", "numba"):
            np.testing.assert_array_equal(have, want)
        else:
            np.testing.assert_allclose(have, want, rtol=1e-13, atol=1e-13 * np.abs(want).max())


def test_numpy_without_numba_uses_the_line_preconditioner():
    """The ordered solver needs numba; without it numpy falls back to the line
    preconditioner (and says so by returning no ordered solver)."""
    plain = NumpyBackend(use_numba=False)
    u, lines = transport_case((False, False))
    assert plain.ordered_grid_solver(1.0 / DT, lines, (False, False), u, False) is None
    assert plain.upwind_terms_2d(u, None, None, (False, False)) is None
    assert get_backend("numba").ordered_grid_solver(1.0 / DT, lines, (False, False), u, False)


def test_ordered_solver_stops_at_once_on_a_solved_system_and_flags_nan():
    u, lines = transport_case((False, False))
    solver = get_backend("numba").ordered_grid_solver(1.0 / DT, lines, (False, False), u, False)
    zeros = np.zeros((NX, NY))
    x, iterations, converged = solver(np.full((NX, NY), 1e-12), zeros, 1e-10, 50)
    assert int(iterations) == 0 and bool(converged) and not x.any()
    rhs = np.ones((NX, NY))
    rhs[3, 4] = np.nan
    x, iterations, converged = solver(rhs, zeros, 1e-10, 50)
    assert not bool(converged)  # a NaN residual never passes for converged


@pytest.mark.parametrize("descending", [False, True])
def test_bucket_order_sorts_into_buckets(descending):
    from mfg_pde.backends import _numba_kernels as kernels

    rng = np.random.default_rng(5)
    key = np.concatenate([rng.standard_normal(997) ** 3, [np.nan, np.inf]])
    order = kernels.bucket_order(key, descending)
    assert np.array_equal(np.sort(order), np.arange(key.size))  # a permutation
    sign = -1.0 if descending else 1.0
    finite = sign * key[:997]
    width = np.ptp(finite) / (key.size - 1)
    first_bucket = np.count_nonzero(finite < finite.min() + width) + 2
    positions = np.argsort(order)  # where each key went
    assert positions[997] < first_bucket and positions[998] < first_bucket
    ordered = sign * key[[k for k in order if k < 997]]
    # Sorted up to one bucket's width (ties within a bucket keep the grid's order).
    assert np.all(np.diff(ordered) >= -width * (1 + 1e-12))
    assert np.array_equal(kernels.bucket_order(np.zeros(7), descending), np.arange(7))


# One periodic and one no-flux axis each way round: every end of every axis is covered,
# and an x/y mix-up changes the answer (all four cases on jax took 10 s of compiling).
@pytest.mark.parametrize("periodic", [(True, False), (False, True)], ids=str)
def test_compiled_2d_marches_equal_the_step_by_step_marches(backend, periodic, monkeypatch):
    """Where the backend marches all levels in one compiled call (numpy with numba, and
    torch and jax on the CPU: ``hjb_march_2d_kernel``, ``fp_march_2d_kernel``), the
    HJB march equals the march that calls the same kernels step by step to the bit on
    numpy and torch (the same operations in the same order; jax's own array version to
    round-off), with and without a guess, and the FP march to round-off (its mass
    restoration sums in another order)."""
    import mfg_pde.alg.numerical._base as base
    from mfg_pde.alg.numerical import FPFDMSolver, HJBFDMSolver
    from mfg_pde.problems import crowd_2d_example

    if backend.hjb_march_2d_kernel() is None:
        pytest.skip(f"{backend.name} has no compiled 2D march here")
    boundary = tuple("periodic" if p else "noflux" for p in periodic)
    problem = crowd_2d_example(Nx=(NX, NY), Nt=6, boundary=boundary)
    rng = np.random.default_rng(2)
    M = np.broadcast_to(problem.m0, problem.shape) * (1.0 + 0.2 * rng.random(problem.shape))

    def run():
        base._compiled.clear()  # the programs are cached by structure, not by path
        hjb = HJBFDMSolver(problem, backend=backend)
        U = hjb.solve(M)
        again = hjb.solve(M, U_guess=U + 0.01 * np.sin(3.0 * problem.coords[0]))
        return U, again, FPFDMSolver(problem, backend=backend).solve(U)

    compiled = run()
    for hook in ("hjb_march_2d_kernel", "fp_march_2d_kernel"):
        monkeypatch.setattr(type(backend), hook, lambda self: None)
    stepwise = run()
    base._compiled.clear()
    for name, got, want in zip(("U", "U from a guess", "M"), compiled, stepwise, strict=True):
        scale = np.abs(want).max()
        if name != "M" and backend.name != "jax":
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * scale, err_msg=name)


# The backends that have the compiled residual (jax on the CPU through a host callback).
@pytest.mark.parametrize("name", ["numpy", "numba", "torch", "jax"])
@pytest.mark.parametrize("periodic", BOUNDARIES, ids=str)
def test_compiled_2d_residual_equals_the_array_version(name, periodic, monkeypatch):
    """Where the backend evaluates the 2D equation residual in one compiled pass
    (``equation_residual_2d_kernel``: numpy with numba, torch and jax on the CPU), F
    and G are those of the array version to the bit (the same operations in the same
    order), also when its levels are split between two threads (forced here on a small
    grid); on jax to round-off, since jax evaluates the running costs it passes in."""
    from mfg_pde.backends import _numpy

    monkeypatch.setattr(_numpy, "RESIDUAL_THREAD_MIN_POINTS", 0)
    from mfg_pde.alg.numerical._base import problem_arrays
    from mfg_pde.alg.numerical._residual import make_equation_residual
    from mfg_pde.problems import crowd_2d_example

    boundary = tuple("periodic" if p else "noflux" for p in periodic)
    problem = crowd_2d_example(Nx=(NX, NY), Nt=5, boundary=boundary)
    rng = np.random.default_rng(9)
    U = rng.standard_normal(problem.shape)
    M = np.broadcast_to(problem.m0, problem.shape) * (1.0 + rng.random(problem.shape))

    def evaluate(on):
        residual = make_equation_residual(on, problem.running_cost, problem.periodic)
        F, G = residual(problem_arrays(problem, on), on.from_numpy(U), on.from_numpy(M))
        return on.to_numpy(F), on.to_numpy(G)

    backend = get_backend(name)
    assert backend.equation_residual_2d_kernel() is not None
    got = evaluate(backend)
    want = evaluate(NumpyBackend(use_numba=False))  # the array version on numpy
    for label, have, expected in zip("FG", got, want, strict=True):
        if name == "jax":
            scale = np.abs(expected).max()
            np.testing.assert_allclose(have, expected, rtol=0, atol=1e-13 * scale, err_msg=label)
        else:
            np.testing.assert_array_equal(have, expected, err_msg=label)
