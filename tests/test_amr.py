"""Quadtree AMR: tree invariants, point location, indicators, transfers, backends.

References are independent of the code under test: brute-force box containment for point
location, brute-force pairwise adjacency for the 2:1 balance, exact sums and analytic
gradients for the kernels, the numba tree kernels against the NumPy ones (different
algorithms), and the NumPy backend for the other array backends. Tolerances: mass is
conserved to 1e-12 relative (a few hundred additions of float64 round-off); linear
fields are reproduced to 1e-12 of their range.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfg_pde.geometry import (
    AdaptiveMesh,
    AMRRefinementCriteria,
    LeafSet,
    QuadTree,
    QuadTreeNode,
    _quadtree,
)
from mfg_pde.geometry._tree_numpy import KEY_LEVEL

MASS_RTOL = 1e-12
BOUNDS = (-1.0, 2.0, 0.5, 1.5)  # not square, not at the origin: catches swapped axes


def front_density(x, y, width=0.01):
    """A smoothed disc edge of radius 0.3 around the centre of BOUNDS, plus a floor."""
    r = np.hypot((x - 0.5) / 3.0, (y - 1.0) / 1.0)
    return 1.0 / (1.0 + np.exp((r - 0.3) / width)) + 0.05


def random_tree(seed: int, steps: int = 6, kernels: str = "numpy", p=0.2) -> QuadTree:
    rng = np.random.default_rng(seed)
    tree = QuadTree(BOUNDS, base_level=1, tree_kernels=kernels)
    for _ in range(steps):
        tree.refine(rng.random(tree.n_leaves) < p, max_level=9)
        tree.coarsen(rng.random(tree.n_leaves) < 0.5)
    return tree


def finest_boxes(leaves: LeafSet):
    size = np.left_shift(1, KEY_LEVEL - leaves.level)
    return leaves.ix * size, leaves.iy * size, size


def brute_force_balanced(leaves: LeafSet) -> bool:
    """Every pair of leaves sharing an edge segment of positive length: levels within 1."""
    x, y, s = finest_boxes(leaves)
    x0, x1, y0, y1 = x[:, None], (x + s)[:, None], y[:, None], (y + s)[:, None]
    overlap_y = (y0 < (y + s)[None]) & (y[None] < y1)
    overlap_x = (x0 < (x + s)[None]) & (x[None] < x1)
    touch = ((x1 == x[None]) & overlap_y) | ((y1 == y[None]) & overlap_x)
    gap = np.abs(leaves.level[:, None] - leaves.level[None])
    return bool(np.all(gap[touch] <= 1))


def tiles_rectangle(leaves: LeafSet) -> bool:
    """The leaves cover the rectangle exactly once (areas add up, no two overlap)."""
    x, y, s = finest_boxes(leaves)
    area = np.sum(np.ldexp(1.0, -2 * leaves.level))
    ov = (x[:, None] < (x + s)[None]) & (x[None] < (x + s)[:, None])
    ov &= (y[:, None] < (y + s)[None]) & (y[None] < (y + s)[:, None])
    return area == 1.0 and int(ov.sum()) == len(leaves)


def mass(mesh_or_leaves, density, backend) -> float:
    leaves = getattr(mesh_or_leaves, "leaves", mesh_or_leaves)
    return float(np.sum(backend.to_numpy(density) * leaves.areas(), axis=-1).sum())


def adapted_mesh(backend, passes=4, tree_kernels="numpy", **criteria) -> AdaptiveMesh:
    crit = AMRRefinementCriteria(**{"error_threshold": 0.1, "max_refinement_levels": 7, **criteria})
    mesh = AdaptiveMesh(BOUNDS, crit, base_level=3, backend=backend, tree_kernels=tree_kernels)
    for _ in range(passes):
        stats = mesh.adapt({"M": mesh.sample(front_density)})
        if not stats.changed:
            break
    return mesh


# -- the tree ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_numba_and_numpy_tree_kernels_build_identical_trees(seed):
    trees = [random_tree(seed, kernels=k) for k in ("numpy", "numba")]
    a, b = trees
    assert (a.tree_kernels, b.tree_kernels) == ("numpy", "numba")
    for name in ("level", "ix", "iy", "parent", "first_child", "leaf_node"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.neighbours(), b.neighbours())
    assert a.statistics() == b.statistics()
    pts = np.random.default_rng(seed).uniform([-1.2, 0.4], [2.2, 1.6], (2000, 2))
    np.testing.assert_array_equal(a.locate(pts), b.locate(pts))
    want = np.random.default_rng(seed + 10).random(a.n_leaves) < 0.8
    np.testing.assert_array_equal(a.coarsening_set(want), b.coarsening_set(want))


def test_numpy_path_is_used_when_numba_is_missing(monkeypatch):
    monkeypatch.setattr(_quadtree, "numba_available", lambda: False)
    assert QuadTree(tree_kernels="auto").tree_kernels == "numpy"
    with pytest.raises(ImportError, match=r"mfg_pde\[numba\]"):
        QuadTree(tree_kernels="numba")
    with pytest.raises(ValueError, match="tree_kernels"):
        QuadTree(tree_kernels="cython")


def test_amr_runs_without_numba_and_import_is_light():
    """In a fresh interpreter where numba cannot be imported: same mesh as with numba."""
    code = textwrap.dedent(
        """
        import sys
        import mfg_pde.geometry
        print(sorted(m for m in ("numba", "jax", "torch") if m in sys.modules))
        sys.modules["numba"] = None  # importing numba now fails
        import numpy as np
        from mfg_pde.geometry import AdaptiveMesh
        mesh = AdaptiveMesh(base_level=3, backend="numpy")
        f = lambda x, y: np.tanh((x + y - 1.0) / 0.02)
        for _ in range(3):
            mesh.adapt(mesh.sample(f))
        print(mesh.tree.tree_kernels, mesh.n_leaves, int(mesh.leaves.keys.sum() % 1000003))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported, result = out.stdout.strip().splitlines()
    assert imported == "[]"
    impl, n_leaves, checksum = result.split()
    assert impl == "numpy"
    mesh = AdaptiveMesh(base_level=3, backend="numpy", tree_kernels="numba")
    for _ in range(3):
        mesh.adapt(mesh.sample(lambda x, y: np.tanh((x + y - 1.0) / 0.02)))
    assert (int(n_leaves), int(checksum)) == (mesh.n_leaves, int(mesh.leaves.keys.sum() % 1000003))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31), p=st.floats(0.05, 0.6), kernels=st.sampled_from(["numpy", "numba"])
)
def test_every_refine_and_coarsen_keeps_the_2_to_1_balance(seed, p, kernels):
    rng = np.random.default_rng(seed)
    tree = QuadTree(BOUNDS, base_level=1, tree_kernels=kernels)
    for _ in range(5):
        tree.refine(rng.random(tree.n_leaves) < p, max_level=8)
        assert brute_force_balanced(tree.leaves) and tiles_rectangle(tree.leaves)
        tree.coarsen(rng.random(tree.n_leaves) < 0.7)
        assert brute_force_balanced(tree.leaves) and tiles_rectangle(tree.leaves)
    assert tree.is_balanced()


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_balance_ripple_refines_coarse_neighbours(kernels):
    tree = QuadTree((0, 1, 0, 1), base_level=2, tree_kernels=kernels)
    point = np.array([[0.49, 0.49]])  # next to the coarse leaves right of and above it
    for depth in range(3, 7):
        mask = np.arange(tree.n_leaves) == tree.locate(point)[0]
        refined, balance = tree.refine(mask, max_level=10)
        # From depth 4 on, the leaf's coarse neighbours (and theirs) must be refined too.
        assert (refined, balance) == ((1, 0) if depth == 3 else (refined, refined - 1))
        assert balance >= (2 if depth > 3 else 0)
        assert tree.leaves.level[tree.locate(point)[0]] == depth
        assert brute_force_balanced(tree.leaves)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_refine_then_coarsen_the_new_leaves_returns_the_original_tree(kernels):
    tree = random_tree(3, kernels=kernels)
    before = {k: getattr(tree, k).copy() for k in ("level", "ix", "iy", "parent", "first_child")}
    old_keys = set(zip(tree.leaves.level.tolist(), tree.leaves.keys.tolist(), strict=True))
    refined, balance = tree.refine(np.random.default_rng(0).random(tree.n_leaves) < 0.3)
    assert refined > 0 and balance > 0
    new = np.array(
        [
            (lv, k) not in old_keys
            for lv, k in zip(tree.leaves.level.tolist(), tree.leaves.keys.tolist(), strict=True)
        ]
    )
    assert tree.coarsen(new) == refined
    for name, arr in before.items():
        np.testing.assert_array_equal(getattr(tree, name), arr, err_msg=name)


def test_refine_then_flat_indicator_returns_the_original_mesh():
    mesh = AdaptiveMesh(BOUNDS, base_level=3, backend="numpy", tree_kernels="numpy")
    original = mesh.leaves
    for _ in range(4):
        mesh.adapt({"M": mesh.sample(front_density)})
    assert mesh.max_level > 5
    passes = 0
    while True:
        stats = mesh.adapt({"U": mesh.sample(lambda x, y: np.full_like(x, 3.0))})
        assert brute_force_balanced(mesh.leaves)
        passes += 1
        if not stats.changed:
            break
        assert stats.refined == 0 and stats.coarsened > 0
    assert passes <= 6
    assert mesh.leaves.same_cells(original)
    np.testing.assert_array_equal(mesh.tree.level, QuadTree(BOUNDS, 3).level)


def brute_force_locate(leaves: LeafSet, points: np.ndarray) -> np.ndarray:
    """Leaf whose half-open box holds each point (closed at the top walls); -1 outside.

    Compares in the normalised coordinates u in [0, 1]: a cell (l, i) holds u when
    floor(u * 2**l) == i, with u = 1 put in the last cell.
    """
    xmin, xmax, ymin, ymax = leaves.bounds
    u = (points[:, 0] - xmin) / (xmax - xmin)
    v = (points[:, 1] - ymin) / (ymax - ymin)
    scale = np.ldexp(1.0, leaves.level)[None]
    ci = np.minimum(np.floor(u[:, None] * scale), scale - 1)
    cj = np.minimum(np.floor(v[:, None] * scale), scale - 1)
    hit = (ci == leaves.ix[None]) & (cj == leaves.iy[None])
    inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
    assert np.all(hit[inside].sum(axis=1) == 1)  # the leaves tile the rectangle
    return np.where(inside, hit.argmax(axis=1), -1)


_TREES = {k: random_tree(11, steps=7, kernels=k, p=0.3) for k in ("numpy", "numba")}
_coordinate = st.one_of(
    st.floats(-0.2, 1.2),
    st.integers(0, 2**9).map(lambda i: i / 2**9),  # exactly on cell edges
    st.sampled_from([0.0, 1.0, np.nextafter(1.0, 2.0), np.nextafter(0.0, -1.0), np.nan]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_coordinate, _coordinate), min_size=1, max_size=200))
def test_point_location_agrees_with_brute_force(unit_points):
    unit = np.array(unit_points, dtype=np.float64)
    xmin, xmax, ymin, ymax = BOUNDS
    pts = np.stack([xmin + unit[:, 0] * (xmax - xmin), ymin + unit[:, 1] * (ymax - ymin)], 1)
    expected = brute_force_locate(_TREES["numpy"].leaves, pts)
    for tree in _TREES.values():
        np.testing.assert_array_equal(tree.locate(pts), expected)


def test_node_view_and_statistics():
    tree = random_tree(5, kernels="numpy")
    root = tree.root
    assert root.parent is None and not root.is_leaf and root.bounds == BOUNDS
    stack, leaves = [root], []
    while stack:
        node = stack.pop()
        assert isinstance(node, QuadTreeNode)
        for q, child in enumerate(node.children):
            assert child.parent.index == node.index and child.level == node.level + 1
            assert (child.ix & 1) + 2 * (child.iy & 1) == q
            x0, x1, y0, y1 = child.bounds
            px0, px1, py0, py1 = node.bounds
            assert px0 <= x0 < x1 <= px1 and py0 <= y0 < y1 <= py1
            stack.append(child)
        if node.is_leaf:
            leaves.append(node.leaf_index)
    assert sorted(leaves) == list(range(tree.n_leaves))
    stats = tree.statistics()
    assert sum(stats["leaves_per_level"]) == stats["leaves"] == tree.n_leaves
    assert sum(stats["area_fraction_per_level"]) == pytest.approx(1.0, abs=1e-15)
    assert stats["max_level"] == tree.max_level
    assert stats["nodes"] == tree.n_nodes == 1 + 4 * int(np.sum(tree.first_child >= 0))


# -- indicators and adaptation -------------------------------------------------------------


def test_indicator_refines_the_front_and_leaves_flat_regions_coarse():
    """A disc edge of width 0.005 in the unit square: fine on the front, coarse far away."""
    crit = AMRRefinementCriteria(error_threshold=0.1, max_refinement_levels=8)
    mesh = AdaptiveMesh((0, 1, 0, 1), crit, base_level=3, backend="numpy", tree_kernels="numpy")
    radius, width = 0.15, 0.005

    def disc(x, y):
        return 1.0 / (1.0 + np.exp((np.hypot(x - 0.3, y - 0.3) - radius) / width))

    for _ in range(8):
        if not mesh.adapt({"M": mesh.sample(disc)}).changed:
            break
    c = mesh.leaf_centres()
    distance = np.abs(np.hypot(c[:, 0] - 0.3, c[:, 1] - 0.3) - radius)
    lev = mesh.leaves.level
    assert mesh.max_level == 8
    # Every leaf within two front widths of the edge is at the finest level ...
    on_front = distance < 2 * width
    assert on_front.sum() > 100 and np.all(lev[on_front] == 8)
    # ... and leaves three base cells (0.125) away, where the density is flat to 1e-30 and
    # the 2:1 grading from level 8 down to 3 has run out, keep the base level.
    far = distance > 3 * 0.125
    assert far.sum() > 10 and np.all(lev[far] == 3)
    assert mesh.n_leaves < 0.1 * 4**8
    assert mesh.tree.is_balanced() and brute_force_balanced(mesh.leaves)


def test_limits_of_the_criteria_are_respected():
    mesh = adapted_mesh("numpy", passes=8, max_refinement_levels=9, min_cell_size=0.02)
    # The shorter side is 1.0: level 5 has sides 1/32 >= 0.02, level 6 would be 1/64 < 0.02.
    assert mesh.max_level == 5
    scaled = adapted_mesh("numpy", passes=8, level_scaling=1.5)
    plain = adapted_mesh("numpy", passes=8)
    assert scaled.n_leaves < plain.n_leaves


def test_indicator_of_constant_and_linear_fields(backend):
    mesh = adapted_mesh(backend, passes=3, tree_kernels="numba")
    zero = backend.to_numpy(mesh.error_indicator(mesh.sample(lambda x, y: np.full_like(x, 7.0))))
    np.testing.assert_array_equal(zero, 0.0)
    # f = 2x - 5y on [-1, 2] x [0.5, 1.5]: |grad f| = sqrt(29), range 2*3 + 5*1 = 11 (over
    # the leaf centres a little less); the curvature part vanishes.
    f = mesh.sample(lambda x, y: 2.0 * x - 5.0 * y)
    vals = backend.to_numpy(f)
    eta = backend.to_numpy(mesh.error_indicator(f))
    h = mesh.leaf_sizes().max(axis=1)
    expected = h * np.sqrt(29.0) / (vals.max() - vals.min())
    np.testing.assert_allclose(eta, expected, rtol=1e-10)
    thr = backend.to_numpy(mesh.refinement_threshold())
    np.testing.assert_allclose(thr, 0.1 * np.ones(mesh.n_leaves), rtol=0)


def test_threshold_grows_with_level(backend):
    crit = AMRRefinementCriteria(error_threshold=0.2, level_scaling=1.5)
    mesh = AdaptiveMesh(BOUNDS, crit, base_level=2, backend=backend, tree_kernels="numpy")
    mesh.refine(np.arange(mesh.n_leaves) < 3)
    thr = backend.to_numpy(mesh.refinement_threshold())
    np.testing.assert_allclose(thr, 0.2 * 1.5 ** mesh.leaves.level.astype(float), rtol=1e-14)


def test_same_adapt_gives_the_same_mesh_on_every_backend(backend, reference_backend):
    mesh = adapted_mesh(backend, passes=5)
    ref = adapted_mesh(reference_backend, passes=5)
    assert mesh.leaves.same_cells(ref.leaves), (mesh.n_leaves, ref.n_leaves)
    u = lambda x, y: np.sin(3 * x) * np.cos(2 * y)  # noqa: E731
    stats = mesh.adapt({"U": mesh.sample(u), "M": mesh.sample(front_density)})
    ref_stats = ref.adapt({"U": ref.sample(u), "M": ref.sample(front_density)})
    assert (stats.refined, stats.coarsened) == (ref_stats.refined, ref_stats.coarsened)
    assert mesh.leaves.same_cells(ref.leaves)
    perf = mesh.performance()
    assert perf["array_kernel_s"] > 0 and perf["tree_kernel_s"] > 0
    assert perf["array_kernels"]["indicator"]["calls"] >= 5


# -- transfers ---------------------------------------------------------------------------


def test_density_transfers_conserve_mass(backend):
    rng = np.random.default_rng(1)
    mesh = adapted_mesh(backend, passes=3)
    level = 7
    n = 2**level
    xmin, xmax, ymin, ymax = BOUNDS
    grid = rng.random((n, n)) * front_density(
        xmin + (np.arange(n)[:, None] + 0.5) * (xmax - xmin) / n,
        ymin + (np.arange(n)[None] + 0.5) * (ymax - ymin) / n,
    )
    cell = (xmax - xmin) * (ymax - ymin) / n**2
    grid_mass = grid.sum() * cell
    # uniform grid -> leaves (leaves up to level 7: coarser and equal cells)
    m = mesh.from_uniform(grid)
    assert abs(mass(mesh, m, backend) / grid_mass - 1) < MASS_RTOL
    # leaves -> uniform grids coarser and finer than the leaves
    for lev in (4, 9):
        back = backend.to_numpy(mesh.to_uniform(m, lev))
        cell_l = (xmax - xmin) * (ymax - ymin) / 4**lev
        assert back.shape == (2**lev, 2**lev) and back.min() >= 0
        assert abs(back.sum() * cell_l / grid_mass - 1) < MASS_RTOL
    # leaves -> grid -> leaves at the finest level returns the leaf averages
    again = mesh.from_uniform(mesh.to_uniform(m, 8))
    np.testing.assert_allclose(backend.to_numpy(again), backend.to_numpy(m), rtol=1e-13)
    # mesh -> mesh, refining and coarsening, several times
    for _ in range(3):
        stats = mesh.adapt({"M": m})
        m = mesh.transfer_density(m, stats.previous)
        assert abs(mass(mesh, m, backend) / grid_mass - 1) < MASS_RTOL
    shifted = lambda x, y: front_density(x - 0.4, y)  # noqa: E731
    stats = mesh.adapt({"M": mesh.sample(shifted)})
    assert stats.refined > 0 and stats.coarsened > 0
    m = mesh.transfer_density(m, stats.previous)
    assert abs(mass(mesh, m, backend) / grid_mass - 1) < MASS_RTOL
    assert backend.to_numpy(m).min() >= 0


def test_density_transfer_is_exact_per_cell(backend):
    """A child gets its parent's average; a parent gets the mean of its children."""
    mesh = AdaptiveMesh(BOUNDS, base_level=2, backend=backend, tree_kernels="numpy")
    m0 = np.arange(1.0, 17.0)
    before = mesh.leaves
    mesh.refine(np.arange(16) == 5)
    m1 = np.array(backend.to_numpy(mesh.transfer_density(m0, before)))
    children = mesh.leaves.level == 3
    assert children.sum() == 4 and np.all(m1[children] == m0[5])
    np.testing.assert_array_equal(m1[~children], np.delete(m0, 5))
    after = mesh.leaves
    m1[children] = [1.0, 2.0, 4.0, 8.0]
    mesh.coarsen(children)
    m2 = backend.to_numpy(mesh.transfer_density(m1, after))
    np.testing.assert_array_equal(m2, np.r_[m0[:5], 3.75, m0[6:]])


def test_value_transfer_keeps_linear_functions_and_adds_no_extrema(backend):
    mesh = adapted_mesh(backend, passes=3)
    linear = lambda x, y: 3.0 * x - 2.0 * y + 0.5  # noqa: E731
    u = mesh.sample(linear)
    # A jump inside the domain; flat near the walls, where the limiter lets the
    # reconstruction extrapolate linearly (that keeps linear functions exact there).
    step = mesh.sample(lambda x, y: np.where(np.hypot((x - 0.5) / 3, y - 1.0) < 0.2, 1.0, -1.0))
    shifted = lambda x, y: front_density(x - 0.4, y + 0.1)  # noqa: E731
    stats = mesh.adapt({"M": mesh.sample(shifted)})
    assert stats.refined > 0 and stats.coarsened > 0
    u_new = backend.to_numpy(mesh.transfer_value(u, stats.previous))
    expected = backend.to_numpy(mesh.sample(linear))
    assert np.max(np.abs(u_new - expected)) < 1e-12 * 11.0
    s_old = backend.to_numpy(step)
    s_new = backend.to_numpy(mesh.transfer_value(step, stats.previous))
    assert s_new.min() >= s_old.min() - 1e-15 and s_new.max() <= s_old.max() + 1e-15
    # The integral of u is conserved too: the reconstruction's mean over a leaf is its value.
    old_int = np.sum(s_old * stats.previous.areas())
    assert abs(np.sum(s_new * mesh.leaves.areas()) / old_int - 1) < MASS_RTOL


def test_batched_kernels_match_one_field_at_a_time(backend):
    mesh = adapted_mesh(backend, passes=2)
    rng = np.random.default_rng(4)
    fields = rng.random((3, mesh.n_leaves)) * backend.to_numpy(mesh.sample(front_density))
    batch = backend.from_numpy(fields)
    singles = [backend.from_numpy(f) for f in fields]
    eta = backend.to_numpy(mesh.error_indicator(batch))
    assert eta.shape == (3, mesh.n_leaves)
    for b in range(3):
        one = backend.to_numpy(mesh.error_indicator(singles[b]))
        np.testing.assert_allclose(eta[b], one, rtol=1e-14)
    stats = mesh.adapt({"M": batch[0]})
    assert stats.changed
    dens = backend.to_numpy(mesh.transfer_density(batch, stats.previous))
    vals = backend.to_numpy(mesh.transfer_value(batch, stats.previous))
    assert dens.shape == vals.shape == (3, mesh.n_leaves)
    for b in range(3):
        one_d = backend.to_numpy(mesh.transfer_density(singles[b], stats.previous))
        one_v = backend.to_numpy(mesh.transfer_value(singles[b], stats.previous))
        np.testing.assert_allclose(dens[b], one_d, rtol=1e-14)
        np.testing.assert_allclose(vals[b], one_v, rtol=1e-14)


# -- input checking ------------------------------------------------------------------------


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="error_threshold"):
        AMRRefinementCriteria(error_threshold=0.0)
    with pytest.raises(ValueError, match="max_refinement_levels"):
        AMRRefinementCriteria(max_refinement_levels=31)
    with pytest.raises(ValueError, match="coarsening_threshold"):
        AMRRefinementCriteria(coarsening_threshold=1.0)
    with pytest.raises(ValueError, match="bounds"):
        QuadTree((0.0, 0.0, 0.0, 1.0))
    mesh = AdaptiveMesh(base_level=2, backend="numpy", tree_kernels="numpy")
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        mesh.refine(np.ones(15, bool))
    with pytest.raises(ValueError, match="one value per leaf"):
        mesh.adapt(np.ones(15))
    with pytest.raises(ValueError, match="aligned"):
        mesh.from_uniform(np.ones((100, 100)))
    with pytest.raises(ValueError, match="'U' and/or 'M'"):
        mesh.adapt({"V": np.ones(16)})
    with pytest.raises(TypeError, match="criteria"):
        AdaptiveMesh(criteria={"error_threshold": 0.1})
    assert mesh.locate(np.array([[0.5, 1.5], [np.nan, 0.5]])).tolist() == [-1, -1]
