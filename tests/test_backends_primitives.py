"""Backend primitives against independent references, on every backend.

References are SciPy, dense NumPy solves and NumPy float64 double sums, never another
method of the backend under test. Unless a test says otherwise, errors are measured as
``max|result - reference| / max|reference|``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import linalg, stats

from mfg_pde.backends import CAPABILITIES
from mfg_pde.backends._base import BINNING_RTOL

EPS = np.finfo(np.float64).eps


def rel_err(actual, expected) -> float:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def on(backend, *arrays):
    """Copy NumPy arrays to ``backend``."""
    moved = tuple(backend.from_numpy(np.asarray(a)) for a in arrays)
    return moved if len(moved) > 1 else moved[0]


# -- tridiagonal systems -------------------------------------------------------------------


def dominant_system(rng, shape):
    """Strictly diagonally dominant rows (margin >= 1): condition number below ~3."""
    lower = rng.uniform(-1.0, 1.0, shape)
    upper = rng.uniform(-1.0, 1.0, shape)
    sign = rng.choice([-1.0, 1.0], shape)
    diag = sign * (np.abs(lower) + np.abs(upper) + rng.uniform(1.0, 2.0, shape))
    rhs = rng.normal(0.0, 1.0, shape) * 10.0 ** rng.uniform(-3, 3, shape[:-1] + (1,))
    return lower, diag, upper, rhs


def banded_reference(lower, diag, upper, rhs):
    """scipy.linalg.solve_banded per system, ignoring lower[..., 0] and upper[..., -1]."""
    n = diag.shape[-1]
    out = np.empty(diag.shape)
    for idx in np.ndindex(diag.shape[:-1]):
        ab = np.zeros((3, n))
        ab[0, 1:] = upper[idx][:-1]
        ab[1] = diag[idx]
        ab[2, :-1] = lower[idx][1:]
        out[idx] = linalg.solve_banded((1, 1), ab, rhs[idx])
    return out


def periodic_dense(lower, diag, upper):
    """Dense periodic matrices (..., n, n): row i couples x[i-1 mod n] and x[i+1 mod n]."""
    n = diag.shape[-1]
    rows = np.arange(n)
    a = np.zeros(diag.shape + (n,))
    a[..., rows, rows] = diag
    a[..., rows, (rows - 1) % n] = lower
    a[..., rows, (rows + 1) % n] = upper
    return a


# Small n, n ~ 1000, and batches: on the numpy backend (2, 3, 5) takes the vectorised
# Thomas path and (3, 5) or (2, 3, 1000) the LAPACK gtsv path. Every distinct shape costs
# JAX a compilation (~0.5 s here), so the list is short and reused by the other tests.
TRIDIAGONAL_SHAPES = [(1,), (5,), (3, 5), (2, 3, 5), (1000,), (3, 1000), (2, 3, 1000)]


@pytest.mark.parametrize("shape", TRIDIAGONAL_SHAPES, ids=str)
def test_solve_tridiagonal_matches_scipy(backend, shape):
    rng = np.random.default_rng(sum(shape))
    lower, diag, upper, rhs = dominant_system(rng, shape)
    expected = banded_reference(lower, diag, upper, rhs)
    # The ignored corners get garbage: any use of them would poison the solution.
    lower[..., 0] = np.nan
    upper[..., -1] = np.nan
    x = backend.to_numpy(backend.solve_tridiagonal(*on(backend, lower, diag, upper, rhs)))
    assert x.dtype == np.float64
    # Condition number < 3 and a backward-stable solve: error ~ n * eps ~ 2e-13 at worst.
    for idx in np.ndindex(shape[:-1]):
        assert rel_err(x[idx], expected[idx]) <= 1e-12


@pytest.mark.parametrize("shape", [(3,), (5,), (2, 3, 5), (1000,)], ids=str)
def test_solve_cyclic_tridiagonal_matches_dense_solve(backend, shape):
    rng = np.random.default_rng(11 + sum(shape))
    lower, diag, upper, rhs = dominant_system(rng, shape)
    expected = np.linalg.solve(periodic_dense(lower, diag, upper), rhs[..., None])[..., 0]
    x = backend.to_numpy(backend.solve_cyclic_tridiagonal(*on(backend, lower, diag, upper, rhs)))
    # Sherman-Morrison adds two well-conditioned solves and one rank-one update.
    for idx in np.ndindex(shape[:-1]):
        assert rel_err(x[idx], expected[idx]) <= 1e-12


def block_bidiagonal_dense(lower, diag, upper, coupling, reverse, periodic):
    """The dense matrix of a march: tridiagonal blocks, ``-coupling * I`` to the level
    before (after, with ``reverse``)."""
    levels, n = diag.shape
    dense = np.zeros((levels * n, levels * n))
    for k in range(levels):
        block = slice(k * n, (k + 1) * n)
        if periodic:
            dense[block, block] = periodic_dense(lower[k], diag[k], upper[k])
        else:
            dense[block, block] = (
                np.diag(diag[k]) + np.diag(lower[k][1:], -1) + np.diag(upper[k][:-1], 1)
            )
        previous = k + 1 if reverse else k - 1
        if 0 <= previous < levels:
            dense[block, previous * n : (previous + 1) * n] = -coupling * np.eye(n)
    return dense


MARCH_CASES = [(4, 5, False), (4, 5, True), (6, 3, True), (3, 200, False), (3, 200, True)]


def check_march(backend, levels, n, periodic, reverse):
    rng = np.random.default_rng(levels * n + periodic + 2 * reverse)
    lower, diag, upper, rhs = dominant_system(rng, (levels, n))
    coupling = 1.7
    dense = block_bidiagonal_dense(lower, diag, upper, coupling, reverse, periodic)
    expected = np.linalg.solve(dense, rhs.ravel()).reshape(levels, n)
    if not periodic:  # the ignored corners get garbage
        lower[:, 0] = np.nan
        upper[:, -1] = np.nan
    x = backend.march_tridiagonal(
        *on(backend, lower, diag, upper, rhs), coupling, reverse=reverse, periodic=periodic
    )
    x = backend.to_numpy(x)
    assert x.shape == (levels, n) and x.dtype == np.float64
    # Each level is a well-conditioned solve; the coupling carries the error forward.
    assert rel_err(x, expected) <= 1e-12


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("levels, n, periodic", MARCH_CASES, ids=str)
def test_march_tridiagonal_matches_dense_solve(backend, levels, n, periodic, reverse):
    """The block bidiagonal solve of a linearised march (Newton's preconditioner)."""
    check_march(backend, levels, n, periodic, reverse)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("periodic", [False, True], ids=["noflux", "periodic"])
def test_march_tridiagonal_without_numba_matches_dense_solve(periodic, reverse):
    """The numpy backend's level-by-level fallback when numba is missing."""
    from mfg_pde.backends._numpy import NumpyBackend

    check_march(NumpyBackend(use_numba=False), 4, 6, periodic, reverse)


# -- Gaussian KDE --------------------------------------------------------------------------


def kde_reference(axes, particles, h, weights=None):
    """Direct float64 double sum: sum_k w_k prod_i exp(-(x_i - X_ki)^2 / (2 h_i^2)) / norm."""
    particles = particles.reshape(len(particles), -1)
    n = len(particles)
    weights = np.full(n, 1.0 / n) if weights is None else weights
    factors = [
        np.exp(-0.5 * ((a[None, :] - particles[:, i : i + 1]) / h[i]) ** 2)
        for i, a in enumerate(axes)
    ]
    norm = math.prod(hi * math.sqrt(2.0 * math.pi) for hi in h)
    if len(axes) == 1:
        return (weights[:, None] * factors[0]).sum(axis=0) / norm
    return np.einsum("k,ki,kj->ij", weights, factors[0], factors[1]) / norm


def peak_kernel(h) -> float:
    """The kernel's peak value (h sqrt(2 pi))^-d, the unit of the binning bound."""
    return 1.0 / math.prod(hi * math.sqrt(2.0 * math.pi) for hi in h)


def mixed_particles_1d(rng, n=1000):
    """Most particles inside [0, 1], some in the tails just outside, a few far away."""
    return np.concatenate(
        [
            rng.normal(0.5, 0.2, n - n // 4),
            rng.uniform(-0.5, 1.5, n // 4 - 10),
            rng.uniform(3.0, 5.0, 10),
        ]
    )


def mixed_particles_2d(rng, n=500):
    """As in 1D: a bump inside [0, 1]^2, a spread reaching outside it, a few far away."""
    inside = rng.normal([0.5, 0.5], [0.2, 0.25], (n - n * 2 // 5, 2))
    outside = rng.uniform(-0.4, 1.4, (n * 2 // 5 - 5, 2))
    far = rng.uniform(3.0, 4.0, (5, 2))
    return np.concatenate([inside, outside, far])


# The KDE tests share particle counts (1000 in 1D, 500 in 2D) and grid sizes (100 points;
# 16 x 21) because each new shape costs JAX a compilation of every operation.
GRID_1D = np.linspace(0.0, 1.0, 100)
GRID_2D = (np.linspace(0.0, 1.0, 16), np.linspace(0.0, 1.0, 21))


def test_kde_exact_1d_matches_double_sum_and_scipy(backend):
    rng = np.random.default_rng(0)
    particles = mixed_particles_1d(rng)  # particles outside the grid count through their tails
    grid = np.linspace(-0.2, 1.2, 100)
    h = 0.05
    direct = kde_reference([grid], particles, [h])
    # scipy scales the sample covariance (ddof=1) by bw_method**2, so this is kernel width h.
    scipy_kde = stats.gaussian_kde(particles, bw_method=h / particles.std(ddof=1))(grid)
    assert rel_err(scipy_kde, direct) <= 1e-12  # the two references agree
    density = backend.to_numpy(
        backend.gaussian_kde(*on(backend, grid, particles), h, method="exact")
    )
    # A sum of N positive terms in float64: ~ a few eps each, far below 1e-12.
    assert rel_err(density, direct) <= 1e-12
    assert rel_err(density, scipy_kde) <= 1e-12


def test_kde_exact_weighted(backend):
    rng = np.random.default_rng(2)
    particles = rng.uniform(0.0, 1.0, 1000)
    weights = rng.uniform(0.0, 1.0, 1000)
    weights /= weights.sum()
    direct = kde_reference([GRID_1D], particles, [0.07], weights)
    density = backend.to_numpy(
        backend.gaussian_kde(
            *on(backend, GRID_1D, particles), 0.07, method="exact", weights=on(backend, weights)
        )
    )
    assert rel_err(density, direct) <= 1e-12


def decorrelated_particles_2d(rng, n=500):
    """Particles whose sample covariance is diagonal to round-off.

    scipy's 2D kernel covariance is ``bw_method**2`` times the full sample covariance;
    with zero sample correlation it is the product kernel with widths ``factor * std``.
    """
    x = rng.normal(0.5, 0.2, n)
    y = rng.normal(0.4, 0.3, n)
    xc, yc = x - x.mean(), y - y.mean()
    y = y - (xc @ yc) / (xc @ xc) * xc
    return np.stack([x, y], axis=1)


def test_kde_exact_2d_matches_double_sum_and_scipy(backend):
    rng = np.random.default_rng(3)
    particles = decorrelated_particles_2d(rng)
    factor = 0.3
    h = tuple(factor * particles.std(axis=0, ddof=1))
    gx, gy = np.linspace(-0.2, 1.2, 16), np.linspace(-0.5, 1.3, 21)
    direct = kde_reference([gx, gy], particles, h)
    points = np.stack([a.ravel() for a in np.meshgrid(gx, gy, indexing="ij")])
    scipy_kde = stats.gaussian_kde(particles.T, bw_method=factor)(points).reshape(16, 21)
    assert rel_err(scipy_kde, direct) <= 1e-12
    density = backend.to_numpy(
        backend.gaussian_kde(
            (on(backend, gx), on(backend, gy)), on(backend, particles), h, method="exact"
        )
    )
    assert density.shape == (16, 21)
    assert rel_err(density, direct) <= 1e-12
    assert rel_err(density, scipy_kde) <= 1e-12


def test_kde_binned_close_to_exact_on_the_reference_case(backend):
    # The case the design quotes: the binning error must be far below the KDE's own
    # sampling noise (~1e-2 here); the documented bound gives ~2e-6 of the peak density.
    rng = np.random.default_rng(2024)
    particles = rng.normal(0.5, 0.2, 1000)
    g, p = on(backend, GRID_1D, particles)
    exact = backend.to_numpy(backend.gaussian_kde(g, p, 0.1, method="exact"))
    binned = backend.to_numpy(backend.gaussian_kde(g, p, 0.1, method="binned"))
    assert rel_err(binned, exact) <= 1e-5
    assert rel_err(backend.to_numpy(backend.gaussian_kde(g, p, 0.1)), exact) <= 1e-5  # default


@pytest.mark.parametrize(("h", "rtol"), [(0.1, None), (0.02, None), (0.1, 1e-2)])
def test_kde_binned_within_documented_bound_1d(backend, h, rtol):
    rng = np.random.default_rng(4)
    particles = mixed_particles_1d(rng)
    weights = rng.uniform(0.5, 1.5, particles.size)
    weights /= weights.sum()
    g, p, w = on(backend, GRID_1D, particles, weights)
    exact = kde_reference([GRID_1D], particles, [h], weights)
    binned = backend.to_numpy(
        backend.gaussian_kde(g, p, h, method="binned", weights=w, binning_rtol=rtol)
    )
    bound = (BINNING_RTOL[1] if rtol is None else rtol) * peak_kernel([h])
    # The bound itself, plus float64 round-off of the FFT convolution (~1e-15 of the peak).
    assert np.max(np.abs(binned - exact)) <= bound + 1e-13 * peak_kernel([h])


@pytest.mark.parametrize("rtol", [None, 3e-2])
def test_kde_binned_within_documented_bound_2d(backend, rtol):
    particles = mixed_particles_2d(np.random.default_rng(5))
    h = (0.1, 0.15)
    exact = kde_reference(GRID_2D, particles, h)
    binned = backend.to_numpy(
        backend.gaussian_kde(
            tuple(on(backend, *GRID_2D)), on(backend, particles), h, binning_rtol=rtol
        )
    )
    assert binned.shape == (16, 21)
    bound = (BINNING_RTOL[2] if rtol is None else rtol) * peak_kernel(h)
    assert np.max(np.abs(binned - exact)) <= bound + 1e-13 * peak_kernel(h)


def test_kde_binned_needs_a_uniform_grid(backend):
    grid = np.sort(np.random.default_rng(6).uniform(0.0, 1.0, 100))
    particles = np.random.default_rng(7).normal(0.5, 0.2, 1000)
    g, p = on(backend, grid, particles)
    with pytest.raises(ValueError, match="uniform grid"):
        backend.gaussian_kde(g, p, 0.1, method="binned")
    exact = backend.to_numpy(backend.gaussian_kde(g, p, 0.1, method="exact"))
    assert rel_err(exact, kde_reference([grid], particles, [0.1])) <= 1e-12


def test_kde_rejects_bad_arguments(backend):
    grid, particles = on(backend, np.linspace(0.0, 1.0, 11), np.array([0.2, 0.5, 0.7]))
    with pytest.raises(ValueError, match="method"):
        backend.gaussian_kde(grid, particles, 0.1, method="fft")
    for bad in (0.0, -0.1, math.nan, math.inf, (0.1, 0.1)):
        with pytest.raises(ValueError, match="bandwidth"):
            backend.gaussian_kde(grid, particles, bad)
    for bad_rtol in (0.0, 1.0, -1e-3):
        with pytest.raises(ValueError, match="binning_rtol"):
            backend.gaussian_kde(grid, particles, 0.1, binning_rtol=bad_rtol)
    axes = (grid, grid)
    particles_2d = on(backend, np.full((4, 2), 0.5))
    for bad in ((0.1,), (0.1, 0.1, 0.1), (0.1, -0.1)):
        with pytest.raises(ValueError, match="bandwidth"):
            backend.gaussian_kde(axes, particles_2d, bad)
    with pytest.raises(ValueError, match="particles"):
        backend.gaussian_kde(axes, on(backend, np.full((4, 3), 0.5)), 0.1)


# -- differences, interpolation, scatter ---------------------------------------------------


@pytest.mark.parametrize(("shape", "axis"), [((7,), -1), ((4, 9), 0), ((3, 4, 5), 1)])
def test_gradient_matches_numpy(backend, shape, axis):
    f = np.random.default_rng(8).normal(size=shape)
    expected = np.gradient(f, 0.3, axis=axis, edge_order=1)
    result = backend.to_numpy(backend.gradient(on(backend, f), 0.3, axis=axis))
    # The same two-point formulas; only the rounding of the division may differ (a few ulps).
    assert rel_err(result, expected) <= 1e-13


@pytest.mark.parametrize("query_shape", [(50,), (5, 10)], ids=str)
def test_interp_matches_numpy(backend, query_shape):
    rng = np.random.default_rng(9)
    grid = np.sort(rng.uniform(0.0, 1.0, 20))
    grid[0], grid[-1] = 0.0, 1.0
    values = rng.normal(size=20)
    x = rng.uniform(-0.5, 1.5, query_shape)  # about half outside: end values
    x.flat[:4] = [0.0, 1.0, grid[5], grid[12]]  # on the nodes and the ends
    expected = np.interp(x, grid, values)
    result = backend.to_numpy(backend.interp(*on(backend, x, grid, values)))
    # Different but equivalent linear formulas: a few ulps of max|values|.
    assert rel_err(result, expected) <= 1e-13
    outside = (x < 0) | (x > 1)
    assert np.array_equal(result[outside], expected[outside])


def test_scatter_add_accumulates_repeated_indices(backend):
    rng = np.random.default_rng(10)
    target = rng.normal(size=8)
    indices = np.array([0, 3, 3, 3, 7, 0, 5, 3, 7, 7], dtype=np.int64)
    values = rng.normal(size=indices.size)
    expected = target.copy()
    np.add.at(expected, indices, values)
    target_b = on(backend, target)
    result = backend.scatter_add(target_b, on(backend, indices), on(backend, values))
    # At most four terms per entry, summed in some order: a few ulps.
    assert rel_err(backend.to_numpy(result), expected) <= 1e-14
    assert np.array_equal(backend.to_numpy(target_b), target), "target was modified"


# -- control flow and compilation ----------------------------------------------------------


def test_scan_with_tuple_output(backend):
    xs = np.arange(1.0, 13.0).reshape(4, 3)

    def step(total, x):
        total = total + x
        return total, (total, 2.0 * x)

    total, (cumulative, doubled) = backend.scan(step, backend.zeros(3), on(backend, xs))
    np.testing.assert_array_equal(backend.to_numpy(total), xs.sum(axis=0))  # exact integers
    np.testing.assert_array_equal(backend.to_numpy(cumulative), np.cumsum(xs, axis=0))
    np.testing.assert_array_equal(backend.to_numpy(doubled), 2.0 * xs)


def test_scan_over_a_tuple_of_inputs(backend):
    a, b = np.arange(5.0), np.arange(5.0, 10.0)

    def step(carry, x):
        return carry + x[0] * x[1], None

    carry, ys = backend.scan(step, backend.zeros(()), (on(backend, a), on(backend, b)))
    assert float(backend.to_numpy(carry)) == float(a @ b)
    assert ys is None


def test_scan_without_xs_takes_length(backend):
    def step(power, x):
        assert x is None
        return 2.0 * power, power

    final, powers = backend.scan(step, backend.ones(()), None, length=6)
    assert float(backend.to_numpy(final)) == 64.0
    np.testing.assert_array_equal(backend.to_numpy(powers), 2.0 ** np.arange(6))


def test_while_loop(backend):
    xp = backend.xp

    def cond(state):
        count, _ = state
        return count < 10.0

    def body(state):
        count, values = state
        return count + 1.0, values * 1.5

    count, values = backend.while_loop(cond, body, (backend.zeros(()), backend.ones(3)))
    assert float(backend.to_numpy(count)) == 10.0
    np.testing.assert_allclose(backend.to_numpy(values), np.full(3, 1.5**10), rtol=1e-15)
    assert xp is backend.array_module


def test_jit_equals_eager(backend):
    xp = backend.xp

    def step(u, m):
        return u - 0.1 * (xp.sin(u) * m + xp.sum(m) / m.shape[0])

    rng = np.random.default_rng(12)
    u, m = on(backend, rng.normal(size=50), rng.uniform(size=50))
    compiled = backend.jit(step)
    eager = backend.to_numpy(step(u, m))
    # A compiler may fuse or reorder (FMA): a few ulps.
    assert rel_err(backend.to_numpy(compiled(u, m)), eager) <= 1e-14
    assert rel_err(backend.to_numpy(compiled(u, m)), eager) <= 1e-14  # cached path too


# -- random streams ------------------------------------------------------------------------


def test_same_seed_same_stream(backend):
    _, first = backend.normal(backend.random_key(42), (100,))
    _, again = backend.normal(backend.random_key(42), (100,))
    np.testing.assert_array_equal(backend.to_numpy(first), backend.to_numpy(again))
    _, uniform = backend.uniform(backend.random_key(42), (100,))
    _, uniform_again = backend.uniform(backend.random_key(42), (100,))
    np.testing.assert_array_equal(backend.to_numpy(uniform), backend.to_numpy(uniform_again))


def test_different_seeds_and_successive_draws_differ(backend):
    key, first = backend.normal(backend.random_key(1), (100,))
    _, second = backend.normal(key, (100,))
    _, other_seed = backend.normal(backend.random_key(2), (100,))
    first, second, other_seed = map(backend.to_numpy, (first, second, other_seed))
    assert not np.array_equal(first, second), "the key did not advance"
    assert not np.array_equal(first, other_seed)


@pytest.mark.parametrize("shape", [(1, 37), (2, 16)])
def test_normal_steps_are_the_step_by_step_draws(backend, shape):
    """``normal_steps`` (one call on numpy, one compiled scan on jax) draws the values
    of ``normal`` called vector by vector, step by step, and leaves the stream where
    those calls leave it: a particle march that keeps its draws and one that draws
    each step get the same numbers."""
    steps = 5
    key, Z = backend.normal_steps(backend.random_key(9), steps, shape)
    assert tuple(Z.shape) == (steps, *shape)
    stepwise, one_by_one = [], backend.random_key(9)
    for _ in range(steps * shape[0]):
        one_by_one, z = backend.normal(one_by_one, shape[-1:])
        stepwise.append(backend.to_numpy(z))
    expected = np.stack(stepwise).reshape(steps, *shape)
    np.testing.assert_array_equal(backend.to_numpy(Z), expected)
    np.testing.assert_array_equal(
        backend.to_numpy(backend.normal(key, (3,))[1]),
        backend.to_numpy(backend.normal(one_by_one, (3,))[1]),
    )


def test_normal_and_uniform_statistics(backend):
    n = 100_000
    key = backend.random_key(123)
    key, normal = backend.normal(key, (n,))
    key, uniform = backend.uniform(key, (n // 100, 100))
    normal, uniform = backend.to_numpy(normal), backend.to_numpy(uniform)
    assert normal.shape == (n,) and normal.dtype == np.float64
    assert uniform.shape == (n // 100, 100) and uniform.dtype == np.float64
    # Five standard errors: SE(mean) = 1/sqrt(n) and SE(std) ~ 1/sqrt(2n) for N(0, 1);
    # SE(mean) = sqrt(1/12)/sqrt(n) for U[0, 1). A false alarm has probability ~6e-7.
    assert abs(normal.mean()) <= 5 / math.sqrt(n)
    assert abs(normal.std() - 1.0) <= 5 / math.sqrt(2 * n)
    assert abs(uniform.mean() - 0.5) <= 5 * math.sqrt(1 / 12) / math.sqrt(n)
    assert uniform.min() >= 0.0 and uniform.max() < 1.0


# -- creation, transfer, identity ----------------------------------------------------------


def device_of(backend, arr) -> str:
    """The device of a backend array, spelled like ``backend.device``."""
    if backend.name == "torch":
        return str(arr.device)
    if backend.name == "jax":
        (device,) = arr.devices()
        return f"{device.platform}:{device.id}"
    return "cpu"


def test_creation_dtype_and_device(backend):
    assert isinstance(backend.device, str) and backend.device
    assert backend.xp is backend.array_module
    assert backend.eps == EPS
    for arr, fill in ((backend.zeros((2, 3)), 0.0), (backend.ones((2, 3)), 1.0)):
        assert backend.is_array(arr)
        assert arr.dtype == backend.dtype
        assert device_of(backend, arr) == backend.device
        host = backend.to_numpy(arr)
        assert isinstance(host, np.ndarray) and host.dtype == np.float64
        np.testing.assert_array_equal(host, np.full((2, 3), fill))
    assert backend.zeros(4).shape == (4,)


def test_from_numpy_to_numpy_round_trip(backend):
    host = np.random.default_rng(13).normal(size=(3, 4))
    arr = backend.from_numpy(host)
    assert backend.is_array(arr) and arr.dtype == backend.dtype
    assert device_of(backend, arr) == backend.device
    back = backend.to_numpy(arr)
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back, host)
    # float32 input is promoted to the backend's float64.
    single = backend.from_numpy(host.astype(np.float32))
    assert single.dtype == backend.dtype
    np.testing.assert_array_equal(backend.to_numpy(single), host.astype(np.float32))
    # A copy: changing the source afterwards does not change the backend array.
    host[0, 0] = 1e6
    assert backend.to_numpy(arr)[0, 0] != 1e6


def test_from_numpy_keeps_integers_integer(backend):
    # Index arrays (for scatter_add, take) must stay integer on every backend.
    indices = backend.from_numpy(np.array([0, 2, 2], dtype=np.int64))
    host = backend.to_numpy(indices)
    assert host.dtype.kind == "i"
    np.testing.assert_array_equal(host, [0, 2, 2])


def test_array_makes_float64(backend):
    from_list = backend.array([[1, 2], [3, 4]])
    assert backend.is_array(from_list) and from_list.dtype == backend.dtype
    np.testing.assert_array_equal(backend.to_numpy(from_list), [[1.0, 2.0], [3.0, 4.0]])
    from_int = backend.array(backend.xp.asarray([1, 2, 3]))
    assert from_int.dtype == backend.dtype
    assert device_of(backend, from_list) == backend.device
    assert not backend.is_array([1.0, 2.0])


def test_capabilities(backend):
    answers = {name: backend.has_capability(name) for name in CAPABILITIES}
    assert all(isinstance(answer, bool) for answer in answers.values()), answers
    assert answers["gpu"] == (not backend.device.startswith("cpu"))
    assert answers["jit_compilation"] == (backend.name in ("numba", "jax"))
    with pytest.raises(ValueError, match="unknown capability 'quantum'") as info:
        backend.has_capability("quantum")
    for name in CAPABILITIES:
        assert name in str(info.value)


def test_performance_hints(backend):
    hints = backend.get_performance_hints()
    assert set(hints) == {
        "device_type",
        "kernel_overhead_s",
        "memory_bandwidth_gbs",
        "compiled_loops",
        "normal_variate_s",
        "particle_step_s",
        "step_overhead_s",
        "host_transfer_gbs",
    }
    assert hints["device_type"] == ("gpu" if backend.has_capability("gpu") else "cpu")
    assert isinstance(hints["compiled_loops"], bool)
    for key in (
        "kernel_overhead_s",
        "memory_bandwidth_gbs",
        "normal_variate_s",
        "particle_step_s",
        "step_overhead_s",
        "host_transfer_gbs",
    ):
        assert isinstance(hints[key], float) and hints[key] > 0


# -- cross-backend agreement ---------------------------------------------------------------
# Each case computes one primitive from the same NumPy inputs and returns NumPy output.
# Backends run different algorithms (LAPACK gtsv with pivoting vs Thomas, different FFTs,
# summation orders), so agreement is to float64 round-off of well-conditioned problems:
# 1e-12 of the result's size, with ~100x margin over what is observed.


def _case_tridiagonal(b):
    lower, diag, upper, rhs = dominant_system(np.random.default_rng(20), (3, 1000))
    return b.solve_tridiagonal(*on(b, lower, diag, upper, rhs))


def _case_cyclic(b):
    lower, diag, upper, rhs = dominant_system(np.random.default_rng(21), (2, 3, 5))
    return b.solve_cyclic_tridiagonal(*on(b, lower, diag, upper, rhs))


def _case_kde(method, dim):
    def case(b):
        rng = np.random.default_rng(22)
        if dim == 1:
            grid, particles, h = on(b, GRID_1D), on(b, mixed_particles_1d(rng)), 0.1
            return b.gaussian_kde(grid, particles, h, method=method)
        grid, particles = tuple(on(b, *GRID_2D)), on(b, mixed_particles_2d(rng))
        return b.gaussian_kde(grid, particles, (0.1, 0.15), method=method, binning_rtol=3e-2)

    return case


def _case_gradient(b):
    return b.gradient(on(b, np.random.default_rng(23).normal(size=(4, 9))), 0.1, axis=0)


def _case_interp(b):
    rng = np.random.default_rng(24)
    return b.interp(*on(b, rng.uniform(-0.2, 1.2, 100), np.linspace(0, 1, 30), rng.normal(size=30)))


def _case_scatter_add(b):
    rng = np.random.default_rng(25)
    indices = rng.integers(0, 10, 200)
    return b.scatter_add(b.zeros(10), on(b, indices), on(b, rng.normal(size=200)))


def _case_scan(b):
    def step(u, x):
        u = u + 0.1 * (b.xp.roll(u, 1) - u) + x
        return u, b.xp.sum(u)

    xs = np.random.default_rng(26).normal(size=(20, 8))
    u, sums = b.scan(step, b.ones(8), on(b, xs))
    return b.xp.concat([u, sums])


CROSS_CASES = {
    "solve_tridiagonal": _case_tridiagonal,
    "solve_cyclic_tridiagonal": _case_cyclic,
    "kde_exact_1d": _case_kde("exact", 1),
    "kde_binned_1d": _case_kde("binned", 1),
    "kde_exact_2d": _case_kde("exact", 2),
    "kde_binned_2d": _case_kde("binned", 2),
    "gradient": _case_gradient,
    "interp": _case_interp,
    "scatter_add": _case_scatter_add,
    "scan": _case_scan,
}


@pytest.mark.parametrize("case", CROSS_CASES)
def test_agrees_with_numpy_backend(backend, reference_backend, case):
    compute = CROSS_CASES[case]
    expected = reference_backend.to_numpy(compute(reference_backend))
    result = backend.to_numpy(compute(backend))
    assert rel_err(result, expected) <= 1e-12
