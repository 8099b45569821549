"""The MFG solved on the adaptive quadtree (finite volumes on the leaves).

What is promised: on a tree of one level the scheme is the uniform 2D solver's; on a
tree with coarse-fine faces it converges to an exact solution at first order; mass is
kept to round-off through every time step and adapt; the backends agree; the mesh
follows the solution and the solve ends on a mesh the last adapt kept.
"""

from __future__ import annotations

import numpy as np
import pytest
from exact_solutions import StationaryNeumann2D

from mfg_pde import MFGProblem, solve_mfg
from mfg_pde.alg.numerical import (
    AdaptiveMFGResult,
    AdaptiveMFGSolver,
    FixedPointIterator,
    FPFDMSolver,
    HJBFDMSolver,
)
from mfg_pde.geometry import AdaptiveMesh, AMRRefinementCriteria
from mfg_pde.problems import crowd_2d_example, gather_2d_example

#: Mass kept by every time step and adapt (relative to the total, 1).
MASS_TOLERANCE = 1e-12


def band_mesh(base_level: int, backend="numpy") -> AdaptiveMesh:
    """A mesh refined once in ``[0.25, 0.5] x [0.25, 0.75]``: coarse-fine faces of both
    orientations cross the solution where its transverse derivatives are not zero."""
    mesh = AdaptiveMesh((0.0, 1.0, 0.0, 1.0), base_level=base_level, backend=backend)
    c = mesh.leaves.centres()
    mesh.refine((c[:, 0] > 0.25) & (c[:, 0] < 0.5) & (c[:, 1] > 0.25) & (c[:, 1] < 0.75))
    return mesh


def errors(exact: StationaryNeumann2D, result: AdaptiveMFGResult) -> tuple[float, float]:
    """Max error of U at t = 0 and L1 error of M at T, against the exact solution at the
    leaf centres."""
    x, y = result.centres[:, 0], result.centres[:, 1]
    eu = float(np.abs(result.U[0] - exact.u(x, y)).max())
    em = float(np.sum(np.abs(result.M[-1] - exact.m(x, y)) * result.areas))
    return eu, em


# -- (a) one level: the uniform solver -------------------------------------------------------


@pytest.fixture(scope="module")
def uniform_reference():
    """The uniform 2D solver (numpy) on an 8 x 8 grid, solved tightly."""
    problem = crowd_2d_example(Nx=(8, 8), Nt=6)
    solver = FixedPointIterator(
        problem,
        HJBFDMSolver(problem, newton_tolerance=1e-13, krylov_tolerance=1e-13),
        FPFDMSolver(problem, krylov_tolerance=1e-13),
        backend="numpy",
    )
    return problem, solver.solve(max_iterations=200, tolerance=1e-11)


def test_one_level_tree_is_the_uniform_solver(backend, uniform_reference):
    """The uniform grid's nodes on [0, 1] are the centres of the level-3 leaves on
    [-dx/2, 1 + dx/2]: there the finite volumes are the uniform scheme term by term."""
    problem, ref = uniform_reference
    assert ref.converged
    dx = 1.0 / 7
    mesh = AdaptiveMesh((-dx / 2, 1 + dx / 2, -dx / 2, 1 + dx / 2), base_level=3, backend=backend)
    result = AdaptiveMFGSolver(problem, mesh, adapt_every=None, newton_tolerance=1e-13).solve(
        tolerance=1e-11
    )
    assert result.converged, result.reason
    ix, iy = (np.rint((result.centres[:, k] + dx / 2) / dx - 0.5).astype(int) for k in (0, 1))
    U, M = ref.U[:, ix, iy], ref.M[:, ix, iy]
    assert np.abs(result.U - U).max() <= 1e-10 * max(1.0, np.abs(U).max())
    assert np.abs(result.M - M).max() <= 1e-10 * max(1.0, np.abs(M).max())
    assert result.backend == backend.name


# -- (b) convergence across coarse-fine faces ------------------------------------------------


def convergence_study(levels) -> list[tuple[float, float]]:
    exact = StationaryNeumann2D()
    problem = exact.problem(Nt=10)
    out = []
    for level in levels:
        mesh = band_mesh(level)
        result = AdaptiveMFGSolver(problem, mesh, adapt_every=None).solve(tolerance=1e-10)
        assert result.converged, result.reason
        assert result.system.faces.coarse_fine.sum() > 0
        out.append(errors(exact, result))
    return out


def test_errors_fall_at_first_order_across_coarse_fine_faces():
    """Measured: U max error 2.3e-3, 1.1e-3 (order 1.12), M L1 2.0e-2, 1.1e-2 (0.90)."""
    (eu0, em0), (eu1, em1) = convergence_study((3, 4))
    assert np.log2(eu0 / eu1) >= 0.8
    assert np.log2(em0 / em1) >= 0.8


@pytest.mark.slow
def test_errors_fall_at_first_order_over_four_levels():
    """Measured orders: U 1.12, 1.09, 1.05; M 0.90, 0.96, 0.98 (finest 5,632 leaves)."""
    study = convergence_study((3, 4, 5, 6))
    for (eu0, em0), (eu1, em1) in zip(study, study[1:], strict=False):
        assert np.log2(eu0 / eu1) >= 0.8
        assert np.log2(em0 / em1) >= 0.8


# -- (c), (d), (e): mass, backends, residuals -------------------------------------------------


@pytest.fixture(scope="module")
def band_reference():
    exact = StationaryNeumann2D()
    problem = exact.problem(Nt=6)
    result = AdaptiveMFGSolver(problem, band_mesh(3), adapt_every=None).solve(tolerance=1e-11)
    return problem, result


def test_backends_agree_on_a_mesh_with_coarse_fine_faces(backend, band_reference):
    problem, ref = band_reference
    result = AdaptiveMFGSolver(problem, band_mesh(3, backend), adapt_every=None).solve(
        tolerance=1e-11
    )
    assert result.converged and ref.converged
    assert np.abs(result.U - ref.U).max() <= 1e-8
    assert np.abs(result.M - ref.M).max() <= 1e-8
    assert np.abs(result.mass() - 1.0).max() <= MASS_TOLERANCE


def test_reported_residuals_are_those_of_the_discrete_equations(band_reference):
    problem, result = band_reference
    assert result.equation_residuals["fp"] <= 1e-10
    assert result.equation_residuals["hjb"] <= 1e-8
    solver = AdaptiveMFGSolver(problem, result.mesh, adapt_every=None)
    setup = solver._setup()
    perturbed = result.M.copy()
    perturbed[3] *= 1.01  # no longer solves the FP step into and out of level 3
    assert solver.residual(setup, result.U, perturbed)[1] > 1e3 * result.equation_residuals["fp"]


@pytest.fixture(scope="module")
def crowd_adaptive():
    problem = crowd_2d_example(Nt=10)
    criteria = AMRRefinementCriteria(error_threshold=0.1, max_refinement_levels=5)
    mesh = AdaptiveMesh((0.0, 1.0, 0.0, 1.0), criteria, base_level=2, backend="numpy")
    masses = []
    original = AdaptiveMFGSolver._transfer

    def watched(self, U, M, previous):
        U2, M2 = original(self, U, M, previous)
        masses.append(np.asarray(M2) @ self.mesh.leaves.areas())
        return U2, M2

    AdaptiveMFGSolver._transfer = watched
    try:
        result = solve_mfg(problem, mesh=mesh, adapt_every=3, tolerance=1e-6)
    finally:
        AdaptiveMFGSolver._transfer = original
    return result, masses


def test_adaptive_solve_follows_the_solution_and_ends_on_a_kept_mesh(crowd_adaptive):
    result, _ = crowd_adaptive
    assert isinstance(result, AdaptiveMFGResult)
    assert result.converged, result.reason
    leaves = [entry["leaves"] for entry in result.history]
    assert leaves[0] == 16 and max(leaves) > 16  # it refined
    # The last adapt kept the mesh, up to mesh_tolerance (1%) of its leaves.
    last, before = result.history[-1], result.history[-2]
    assert last["refined"] + last["coarsened"] <= 0.01 * before["leaves"]
    assert last["leaves"] == result.n_leaves
    assert result.levels.max() > result.levels.min()  # not uniform: adapted
    assert result.n_leaves < 4 ** int(result.levels.max())


def test_mass_is_kept_through_every_time_step_and_adapt(crowd_adaptive):
    result, masses = crowd_adaptive
    assert masses, "no adapt changed the mesh"
    for mass in [*masses, result.mass()]:
        assert np.abs(mass - 1.0).max() <= MASS_TOLERANCE


def test_sample_and_plot(crowd_adaptive, tmp_path):
    result, _ = crowd_adaptive
    U, M = result.sample(6)
    assert U.shape == M.shape == (result.U.shape[0], 64, 64)
    cell = 1.0 / 64**2
    np.testing.assert_allclose(M.sum(axis=(1, 2)) * cell, 1.0, rtol=1e-12)
    u0, _ = result.sample(6, time_index=0)
    centre = result.mesh.locate(np.array([[0.5, 0.5]]))[0]
    assert abs(u0[32, 32] - result.U[0, centre]) < 0.05  # the reconstruction near a centre
    result.plot(path=tmp_path / "amr.png")
    assert (tmp_path / "amr.png").stat().st_size > 0
    assert "leaves=" in repr(result)


# -- bad input ---------------------------------------------------------------------------------


def test_what_the_quadtree_does_not_solve_is_refused_by_name():
    mesh = AdaptiveMesh(base_level=2, backend="numpy")
    with pytest.raises(ValueError, match="two-dimensional"):
        AdaptiveMFGSolver(MFGProblem(Nx=11, Nt=5), mesh)
    periodic = crowd_2d_example(Nx=(8, 8), Nt=4, boundary="periodic")
    with pytest.raises(ValueError, match="no-flux"):
        AdaptiveMFGSolver(periodic, mesh)
    grid_density = crowd_2d_example(Nx=(8, 8), Nt=4, initial_density=np.ones((8, 8)))
    with pytest.raises(TypeError, match="function of"):
        AdaptiveMFGSolver(grid_density, mesh)
    problem = crowd_2d_example(Nx=(8, 8), Nt=4)
    with pytest.raises(ValueError, match="method='fdm'"):
        solve_mfg(problem, method="particle", mesh=mesh)
    with pytest.raises(TypeError, match="stall_window"):
        solve_mfg(problem, mesh=mesh, stall_window=5)
    with pytest.raises(ValueError, match="adapt_every"):
        AdaptiveMFGSolver(problem, mesh, adapt_every=0)
    with pytest.raises(ValueError, match="not the mesh's"):
        AdaptiveMFGSolver(problem, mesh, backend="numba")
    assert AdaptiveMFGSolver(problem, mesh, backend="numpy").backend is mesh.backend


def test_criteria_that_cannot_be_met_are_refused_at_construction():
    with pytest.raises(ValueError, match="base_level=3"):
        AdaptiveMesh(criteria=AMRRefinementCriteria(min_cell_size=0.2), base_level=3)
    with pytest.raises(ValueError, match="base_level=4"):
        AdaptiveMesh(criteria=AMRRefinementCriteria(max_refinement_levels=3), base_level=4)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the cost overflows, on purpose
def test_a_diverging_solve_is_reported_not_raised():
    def explodes(x, y, m, t, c):
        return 1e300 * m * m * m

    problem = crowd_2d_example(Nx=(8, 8), Nt=4, running_cost=explodes)
    mesh = AdaptiveMesh(base_level=2, backend="numpy")
    result = AdaptiveMFGSolver(problem, mesh, adapt_every=None).solve(max_iterations=5)
    assert not result.converged
    assert "non-finite" in result.reason or "max_iterations" in result.reason
    assert np.all(np.isfinite(result.U)) and np.all(np.isfinite(result.M))


def test_superlu_path_without_numba_agrees(band_reference):
    """numpy without numba has no ordered sweep: every solve goes to SuperLU."""
    from mfg_pde.backends._numpy import NumpyBackend

    problem, ref = band_reference
    plain = NumpyBackend(use_numba=False)
    assert plain.ordered_sparse_solver(None, None, None, None, False) is None
    result = AdaptiveMFGSolver(problem, band_mesh(3, plain), adapt_every=None).solve(
        tolerance=1e-11
    )
    assert np.abs(result.U - ref.U).max() <= 1e-8
    assert np.abs(result.M - ref.M).max() <= 1e-8
    assert np.abs(result.mass() - 1.0).max() <= MASS_TOLERANCE


# -- the pieces ---------------------------------------------------------------------------------


def test_faces_tile_every_leaf_side_that_is_not_a_wall():
    from mfg_pde.geometry._faces import leaf_faces

    mesh = band_mesh(3)
    c = mesh.leaves.centres()
    mesh.refine(np.hypot(c[:, 0] - 0.4, c[:, 1] - 0.5) < 0.1)  # a second level of refinement
    leaves = mesh.leaves
    faces = leaf_faces(leaves, mesh.tree.neighbours(leaves))
    sizes, centres = leaves.sizes(), leaves.centres()
    covered = np.zeros((len(leaves), 4))  # -x, +x, -y, +y
    for f in range(len(faces)):
        a = faces.axis[f]
        covered[faces.left[f], 2 * a + 1] += faces.length[f]
        covered[faces.right[f], 2 * a] += faces.length[f]
    for slot in range(4):
        a = slot // 2
        side = sizes[:, 1 - a]
        edge = centres[:, a] + (0.5 if slot % 2 else -0.5) * sizes[:, a]
        on_wall = np.isclose(edge, 0.0) | np.isclose(edge, 1.0)
        np.testing.assert_allclose(covered[:, slot], np.where(on_wall, 0.0, side), rtol=1e-14)
    assert np.all(np.abs(leaves.level[faces.left] - leaves.level[faces.right]) <= 1)
    cf = faces.coarse_fine
    assert cf.any() and np.all(np.abs(np.abs(faces.offset[cf]) * 4 - faces.length[cf] * 2) < 1e-14)
    uniform = AdaptiveMesh(base_level=3, backend="numpy")
    assert len(leaf_faces(uniform.leaves, uniform.tree.neighbours())) == 2 * 8 * 7


def test_jacobian_of_the_leaf_scheme_is_its_derivative():
    """``J(u) = I/dt + K(u) S`` (filled by the pattern, applied matrix-free, transposed)
    against central differences of ``u -> (u - u_next)/dt - ν Δu + H(u)``."""
    from mfg_pde.alg.numerical._leaf_fv import LeafOperator, leaf_system
    from mfg_pde.backends import create_backend

    mesh = band_mesh(2)
    system = leaf_system(mesh.leaves, mesh.tree.neighbours())
    op = LeafOperator(system, create_backend("numpy"))
    rng = np.random.default_rng(4)
    u = rng.normal(size=system.n)
    nu, lam, dt_inv = 0.1, 0.7, 5.0

    def F(v):
        ham, diff, _ = op.terms(v, nu, lam)
        return v * dt_inv - diff + ham

    _, _, coef = op.terms(u, nu, lam)
    J = op.jacobian_matrix(coef, dt_inv).toarray()
    eps = 1e-6
    numeric = np.stack(
        [(F(u + eps * e) - F(u - eps * e)) / (2 * eps) for e in np.eye(system.n)], axis=1
    )
    np.testing.assert_allclose(J, numeric, atol=1e-6 * np.abs(J).max())
    np.testing.assert_allclose(op.jacobian_matrix(coef, dt_inv, True).toarray(), J.T, atol=1e-13)
    v = rng.normal(size=system.n)
    np.testing.assert_allclose(op.jacobian_apply(coef, dt_inv, v), J @ v, atol=1e-12)
    np.testing.assert_allclose(op.jacobian_transpose_apply(coef, dt_inv, v), J.T @ v, atol=1e-12)
    np.testing.assert_allclose(op.jacobian_diagonal(coef, dt_inv), np.diag(J), atol=1e-13)
    np.testing.assert_allclose(J.sum(axis=1), dt_inv, atol=1e-10)  # J 1 = 1/dt: mass


def test_anderson_reaches_the_same_equilibrium(band_reference):
    problem, ref = band_reference
    result = AdaptiveMFGSolver(problem, band_mesh(3), adapt_every=None, use_anderson=True).solve(
        tolerance=1e-11
    )
    assert result.converged, result.reason
    assert np.abs(result.U - ref.U).max() <= 1e-8
    assert np.abs(result.M - ref.M).max() <= 1e-8


@pytest.fixture(scope="module")
def gather_numpy():
    return adaptive_gather("numpy")


def adaptive_gather(backend):
    criteria = AMRRefinementCriteria(error_threshold=0.1, max_refinement_levels=4)
    mesh = AdaptiveMesh((0.0, 1.0, 0.0, 1.0), criteria, base_level=2, backend=backend)
    return solve_mfg(gather_2d_example(Nt=6), mesh=mesh, adapt_on="M", tolerance=1e-9)


def test_every_backend_adapts_to_the_same_mesh_and_solution(backend, gather_numpy):
    """The whole adaptive path (indicators, adapts, transfers, new operators) on each
    backend: numpy's mesh, and its U and M to 1e-8 (measured 1e-11 on jax and torch)."""
    result = gather_numpy if backend.name == "numpy" else adaptive_gather(backend)
    assert result.converged, result.reason
    assert len(result.history) > 2  # it adapted more than once
    assert result.mesh.leaves.same_cells(gather_numpy.mesh.leaves)
    assert np.abs(result.U - gather_numpy.U).max() <= 1e-8
    assert np.abs(result.M - gather_numpy.M).max() <= 1e-8
    assert np.abs(result.mass() - 1.0).max() <= MASS_TOLERANCE
