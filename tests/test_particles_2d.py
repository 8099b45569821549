"""FPParticleSolver and its kernels in two dimensions, on every backend.

Deterministic parts (the planned 2D KDE with images, the bilinear interpolation, the
deposit) are compared with NumPy double sums and loops, and with the NumPy backend to
1e-12. The march is random and each library has its own generator, so it is checked
against exact solutions with tolerances derived from the sampling error:

- a particle density is the KDE ``f_hat(x) = (1/N) sum_k phi(x, X_k)`` of N
  independent particles, with ``phi`` the kernel summed over the images of ``X_k``;
  ``Var f_hat(x) <= E[phi^2] / N``. Writing ``phi = sum_i K_i`` over the images,
  ``sqrt(E[phi^2]) <= sum_i sqrt(E[K_i^2])`` (Minkowski), and for a Gaussian kernel of
  widths ``(h_x, h_y)``, ``K^2 = K_{h/sqrt 2} / (4 pi h_x h_y)``, so
  ``E[K_i^2] = g_i(x) / (4 pi h_x h_y)`` with ``g_i`` the particles' law (image i)
  smoothed by a kernel of widths ``h / sqrt 2``. The bound ``sd(x)`` below is that, and
  pointwise checks allow ``Z_POINT = 5`` of it (the grid's ~10^3 values are strongly
  correlated over a few h: some 10^2 independent ones, each beyond 5 sd with
  probability 6e-7) plus the documented binning bound;
- moments of the density: its mean is the particles' sample mean (standard error
  ``sqrt(v / N)``) and its variance the sample variance plus ``h^2`` (standard error
  ``v sqrt(2 / N)`` for a near-Gaussian law): checks allow ``Z_MOMENT = 4.5`` of them.

Every backend draws its own sample, so each backend's run is an independent check.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfg_pde import MFGProblem
from mfg_pde.alg.numerical import FPParticleSolver, select_particle_strategy
from mfg_pde.backends._base import BINNING_RTOL
from mfg_pde.backends._numpy import NumpyBackend

Z_POINT = 5.0
Z_MOMENT = 4.5


def on(backend, *arrays):
    moved = tuple(backend.from_numpy(np.asarray(a)) for a in arrays)
    return moved if len(moved) > 1 else moved[0]


def variants(backend):
    """The backend, and for numpy also its NumPy-only path (numba not used)."""
    if backend.name == "numpy":
        return [backend, NumpyBackend(use_numba=False)]
    return [backend]


def gaussian(z, var):
    return np.exp(-0.5 * z**2 / var) / math.sqrt(2.0 * math.pi * var)


def problem_2d(domain, shape, boundary, m0, T, sigma, control_cost=1.0, g=None):
    return MFGProblem(
        domain=domain,
        Nx=shape,
        T=T,
        Nt=5,
        sigma=sigma,
        control_cost=control_cost,
        boundary=boundary,
        running_cost=lambda x, y, m, t: 0.0 * m,
        terminal_cost=(lambda x, y: 0.0 * x) if g is None else g,
        initial_density=m0,
    )


def start_law(problem):
    """Mean and variance per axis of the initial particles: m0 constant on each cell
    (a discrete law on the nodes plus a uniform jitter of one cell, variance dx^2/12)."""
    c, m0 = problem.cell_volume, problem.m0
    means, variances = [], []
    for coord, dx in zip(problem.coords, problem.spacing, strict=True):
        mean = np.sum(coord * m0) * c
        means.append(mean)
        variances.append(np.sum((coord - mean) ** 2 * m0) * c + dx**2 / 12.0)
    return np.array(means), np.array(variances)


def density_moments(problem, M):
    c = problem.cell_volume
    means = np.array([np.sum(coord * M) * c for coord in problem.coords])
    variances = np.array(
        [np.sum((coord - mu) ** 2 * M) * c for coord, mu in zip(problem.coords, means, strict=True)]
    )
    return means, variances


def image_sum_and_sd(problem, centres, variances, h, n):
    """Expected KDE ``sum_i G_i`` over the image centres (a product Gaussian of the given
    variances per axis, plus h^2) and the bound ``sd(x)`` of the module docstring."""
    X, Y = problem.coords
    expected = np.zeros(problem.grid_shape)
    sd = np.zeros(problem.grid_shape)
    for cx, cy in centres:
        expected += gaussian(X - cx, variances[0] + h[0] ** 2) * gaussian(
            Y - cy, variances[1] + h[1] ** 2
        )
        smoothed = gaussian(X - cx, variances[0] + h[0] ** 2 / 2) * gaussian(
            Y - cy, variances[1] + h[1] ** 2 / 2
        )
        sd += np.sqrt(smoothed / (4.0 * math.pi * h[0] * h[1] * n))
    return expected, sd


def binning_bound(h):
    return BINNING_RTOL[2] / (2.0 * math.pi * h[0] * h[1])


# -- deterministic kernels -----------------------------------------------------------------


def kde_sum_2d(axes, points, h, weight):
    kx = np.exp(-0.5 * ((axes[0][None, :] - points[:, :1]) / h[0]) ** 2)
    ky = np.exp(-0.5 * ((axes[1][None, :] - points[:, 1:]) / h[1]) ** 2)
    return weight * kx.T @ ky / (2.0 * math.pi * h[0] * h[1])


def images_2d(points, kinds):
    """All 9 combinations of each axis' images on [0, 1]^2 (mirror at 0 and 1, or +-1)."""
    per_axis = []
    for a, kind in enumerate(kinds):
        p = points[:, a]
        per_axis.append([-p, p, 2.0 - p] if kind == "reflect" else [p - 1.0, p, p + 1.0])
    return np.concatenate([np.stack([xs, ys], axis=1) for xs in per_axis[0] for ys in per_axis[1]])


def unit_axis(kind, n):
    return np.linspace(0.0, 1.0, n) if kind == "reflect" else np.arange(n) / n


@pytest.mark.parametrize(
    "kinds", [("reflect", "periodic"), ("periodic", "reflect"), ("reflect", "reflect")]
)
def test_kde_plan_images_equal_the_9n_point_sum_and_numpy(backend, reference_backend, kinds):
    """The plan's images (x: folding the padded axis, y: the fine grid, corners: both)
    equal the exact KDE of all 9N image points within the documented binning bound, and
    every backend computes the same numbers as NumPy to 1e-12 (the same arithmetic in
    another order; the numba deposit's exponential recurrence loses ~window ulps).

    A third of the particles lie within 2h of a corner, where all three images count;
    h = (0.043, 0.061) is no multiple of either spacing."""
    rng = np.random.default_rng(40)
    n, h = 1200, (0.043, 0.061)
    pts = np.concatenate(
        [rng.uniform(0.0, 0.08, (n // 3, 2)), 1.0 - rng.uniform(0.0, 0.08, (n // 3, 2))]
    )
    pts = np.concatenate([pts, rng.uniform(0.0, 1.0, (n - pts.shape[0], 2))])
    axes = (unit_axis(kinds[0], 17), unit_axis(kinds[1], 13))
    expected = kde_sum_2d(axes, images_2d(pts, kinds), h, 1.0 / n)
    without = kde_sum_2d(axes, pts, h, 1.0 / n)
    assert np.max(np.abs(without - expected)) > 0.3 * expected.max()  # the images matter
    reference = None
    for b in [reference_backend, *variants(backend)]:
        kde = b.binned_kde(tuple(on(b, *axes)), h, images=kinds)
        got = b.to_numpy(kde(on(b, pts)))
        assert got.shape == (17, 13)
        assert np.max(np.abs(got - expected)) <= binning_bound(h) * (1.0 + 1e-9)
        pair = b.to_numpy(kde(tuple(on(b, pts[:, 0].copy(), pts[:, 1].copy()))))
        np.testing.assert_array_equal(pair, got)  # coordinates per axis: the same
        if reference is None:
            reference = got
        assert np.max(np.abs(got - reference)) <= 1e-12 * reference.max()


def test_separable_binning_matches_a_loop(backend):
    rng = np.random.default_rng(41)
    px = np.concatenate([rng.uniform(-1.0, 3.0, 300), [0.0, 1.0, 2.0]])
    py = np.concatenate([rng.uniform(-0.6, 2.6, 300), [-0.5, 0.0, 2.0]])
    weights = rng.uniform(0.5, 2.0, px.size)
    # The window reaches 8h past the particle (as the KDE plan's): a point on a cell edge
    # may round into either cell on some library, which then moves only values ~1e-14.
    x_grid, h, y_grid = (-0.4, 0.1, 30), 0.05, (-0.25, 0.25, 9)
    window = 2 * math.ceil(8 * h / x_grid[1]) + 2
    expected = np.zeros((30, 9))
    for x, y, w in zip(px, py, weights, strict=True):
        s = (x - x_grid[0]) / x_grid[1]
        first = int(min(max(math.floor(s) - (window - 2) // 2, 0), 30 - window))
        t = (y - y_grid[0]) / y_grid[1]
        c = math.floor(t)
        for i in range(first, first + window):
            k = w * math.exp(-0.5 * ((i - s) * x_grid[1] / h) ** 2)
            for j, share in ((c, 1.0 - (t - c)), (c + 1, t - c)):
                if 0 <= j < 9:
                    expected[i, j] += k * share
    for b in variants(backend):
        got = b.to_numpy(
            b.separable_binning(*on(b, px, py), x_grid, window, h, y_grid, on(b, weights))
        )
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13 * weights.sum())
        with_nan = px.copy()
        with_nan[7] = np.nan  # same shapes: JAX compiles nothing new
        nan = b.separable_binning(*on(b, with_nan, py), x_grid, window, h, y_grid, on(b, weights))
        assert np.isnan(b.to_numpy(nan)).any()  # a NaN particle is never silently lost


def test_interp_uniform_2d_matches_a_bilinear_reference(backend):
    rng = np.random.default_rng(42)
    start, spacing, shape = (-1.0, 0.5), (0.1, 0.25), (11, 7)
    fields = rng.normal(size=(2, *shape))
    x = np.concatenate([rng.uniform(-1.3, 0.3, 400), [-1.0, 0.0, 0.5]])
    y = np.concatenate([rng.uniform(0.2, 2.3, 400), [0.5, 2.0, 1.0]])
    expected = np.empty((2, x.size))
    for k, (px, py) in enumerate(zip(x, y, strict=True)):
        s = min(max((px - start[0]) / spacing[0], 0.0), shape[0] - 1.0)
        t = min(max((py - start[1]) / spacing[1], 0.0), shape[1] - 1.0)
        i, j = min(int(s), shape[0] - 2), min(int(t), shape[1] - 2)
        a, c = s - i, t - j
        expected[:, k] = (
            (1 - a) * (1 - c) * fields[:, i, j]
            + (1 - a) * c * fields[:, i, j + 1]
            + a * (1 - c) * fields[:, i + 1, j]
            + a * c * fields[:, i + 1, j + 1]
        )
    for b in variants(backend):
        got = b.to_numpy(b.interp_uniform_2d(*on(b, x, y), start, spacing, on(b, fields)))
        assert np.max(np.abs(got - expected)) <= 1e-13 * np.abs(fields).max()
        one = b.to_numpy(b.interp_uniform_2d(*on(b, x, y), start, spacing, on(b, fields[1])))
        assert one.shape == x.shape
        assert np.max(np.abs(one - expected[1])) <= 1e-13 * np.abs(fields).max()


# -- the solver ------------------------------------------------------------------------------


@pytest.mark.parametrize("boundary", [("periodic", "noflux"), ("noflux", "periodic")])
def test_drift_is_the_interpolated_central_gradient(backend, boundary):
    """The march's drift at the particles equals an independent NumPy/SciPy reference:
    central differences of U with reflecting ghosts (no-flux) or wrapping (periodic),
    times -dt/λ, read bilinearly on the grid closed across the periodic seam. Particles
    sit everywhere, on walls and in the seam cell [x_{G-1}, x_0 + L), where leaving the
    grid open would clamp instead of interpolating. Deterministic: to 1e-12."""
    from scipy.interpolate import RegularGridInterpolator

    problem = problem_2d(
        [(-1.0, 1.0), (0.0, 0.5)], (9, 7), boundary, lambda x, y: 1.0 + 0.0 * x, 0.1, 0.2, 0.7
    )
    rng = np.random.default_rng(43)
    u = rng.normal(size=problem.grid_shape)
    extended_axes, components = [], []
    for a, (axis, d, periodic) in enumerate(
        zip(problem.axes, problem.spacing, problem.periodic, strict=True)
    ):
        widths = [(0, 0), (0, 0)]
        widths[a] = (1, 1)
        padded = np.pad(u, widths, mode="wrap" if periodic else "edge")
        upper = padded[2:] if a == 0 else padded[:, 2:]
        lower = padded[:-2] if a == 0 else padded[:, :-2]
        components.append((upper - lower) / (2.0 * d) * (-problem.dt / problem.control_cost))
        extended_axes.append(np.append(axis, axis[-1] + d) if periodic else axis)
    field = np.stack(components)
    for a, periodic in enumerate(problem.periodic):
        if periodic:
            field = np.concatenate([field, np.take(field, [0], axis=a + 1)], axis=a + 1)
    lo = [bounds[0] for bounds in problem.bounds]
    hi = [bounds[1] for bounds in problem.bounds]
    points = rng.uniform(lo, hi, (300, 2))
    seam = problem.periodic.index(True)
    points[:50, seam] = hi[seam] - rng.uniform(0.0, problem.spacing[seam], 50)
    wall = problem.periodic.index(False)
    points[50:60, wall] = [lo[wall]] * 5 + [hi[wall]] * 5
    expected = np.stack(
        [RegularGridInterpolator(extended_axes, c)(points) for c in field]  # no clamping needed
    )
    fp = FPParticleSolver(problem, backend=backend, num_particles=300)
    b = fp.march_backend
    X = tuple(on(b, points[:, 0].copy(), points[:, 1].copy()))
    got = np.stack([b.to_numpy(s) for s in fp._drift(on(b, u), X, -problem.dt / 0.7)])
    assert np.max(np.abs(got - expected)) <= 1e-12 * np.abs(expected).max()


def test_binned_equals_exact_mass_kept_when_pushed_into_a_wall(backend):
    """A drift of 4/λ per unit time pushes every particle into the no-flux wall (T = 0.5:
    twice the domain): reflected, they pile up there and stay in the domain; unreflected
    they would leave, their KDE in the domain would vanish and the normalised density
    would be NaN. Along the periodic axis a sine potential moves them across the seam.
    (The other assignment of the boundaries to the axes: the KDE plan test and the
    wall/wrap test below.)

    Mass is ``sum(M^n) * cell_volume = 1`` to round-off at every level, the density is
    nonnegative, and binned (images folded) and exact (9N image points) paths, which
    march the same particles, differ by the binning error: at most ``e = binning_rtol x
    peak`` per value before the normalisation, whose factor moves by at most ``e A``
    relative (A the area), so ``e (1 + max M A)`` after it."""
    boundary = ("noflux", "periodic")
    wall = 0

    def g(x, y):
        coords = (x, y)
        return -4.0 * coords[wall] + 0.3 * np.sin(2.0 * np.pi * coords[1 - wall])

    problem = problem_2d(
        [(0.0, 1.0), (0.0, 1.0)],
        (13, 11),
        boundary,
        lambda x, y: np.exp(-20.0 * ((x - 0.4) ** 2 + (y - 0.5) ** 2)),
        T=0.5,
        sigma=0.3,
        g=g,
    )
    kw = dict(backend=backend, num_particles=1500, seed=5, bandwidth=(0.07, 0.09))
    binned = FPParticleSolver(problem, kde_method="binned", **kw).solve()
    exact = FPParticleSolver(problem, kde_method="exact", **kw).solve()
    for M in (binned, exact):
        assert M.shape == problem.shape
        assert np.all(np.isfinite(M)) and M.min() >= 0.0
        np.testing.assert_allclose(M.sum(axis=(1, 2)) * problem.cell_volume, 1.0, atol=1e-12)
    np.testing.assert_array_equal(binned[0], problem.m0)
    e = binning_bound((0.07, 0.09))
    assert np.max(np.abs(binned - exact)) <= e * (1.0 + exact.max() * 1.0)
    # Pushed against the wall: most of the final mass in the half next to it (with
    # dt = 0.1 a step moves 0.4, and reflecting the overshoot spreads them over ~0.4).
    marginal = exact[-1].sum(axis=1 - wall) * problem.spacing[1 - wall]
    near = problem.axes[wall] >= 0.5
    assert marginal[near].sum() * problem.spacing[wall] > 0.8


def gaussian_start(centre, s0):
    cx, cy = centre
    return lambda x, y: np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * s0**2))


def check_against_gaussian_images(problem, M, centres, variances, h, n):
    """Pointwise within Z_POINT sd of the image sum, normalised as the solver normalises
    (``sum * cell_volume = 1``; on no-flux axes the wall nodes count a whole cell, so
    near a wall this differs from the integral by ``f(wall) dx / 2``, several %)."""
    expected, sd = image_sum_and_sd(problem, centres, variances, h, n)
    scale = 1.0 / (expected.sum() * problem.cell_volume)
    expected, sd = expected * scale, sd * scale
    err = np.abs(M - expected)
    tolerance = Z_POINT * sd + binning_bound(h)
    assert np.all(err <= tolerance), np.max(err / tolerance)


def test_pure_diffusion_spreads_a_gaussian_as_the_heat_kernel(backend):
    """U constant: no drift, and Euler–Maruyama is exact in law: the particles at T have
    the start law convolved with N(0, σ²T) per axis. Far from the walls (6 sd) the
    density is the Gaussian of variance ``v = s0 + σ²T + h²`` per axis, where ``s0``
    is the start law's variance (m0's on the nodes plus dx²/12). Pointwise within
    Z_POINT sd, and the variance of the density within Z_MOMENT standard errors: a
    noise of σ²T/2 or 2σ²T would miss it by 100 of them."""
    n, sigma, T = 40_000, 0.2, 0.5
    problem = problem_2d(
        [(-1.2, 1.2), (-1.0, 1.0)], (49, 41), "noflux", gaussian_start((0.1, -0.05), 0.1), T, sigma
    )
    fp = FPParticleSolver(problem, backend=backend, num_particles=n, seed=11)
    M = fp.solve()
    mean0, var0 = start_law(problem)
    variances = var0 + sigma**2 * T
    check_against_gaussian_images(problem, M[-1], [tuple(mean0)], variances, fp.bandwidth, n)
    means, var_m = density_moments(problem, M[-1])
    h2 = np.array(fp.bandwidth) ** 2
    assert np.all(np.abs(means - mean0) <= Z_MOMENT * np.sqrt(variances / n))
    assert np.all(np.abs(var_m - (variances + h2)) <= Z_MOMENT * variances * math.sqrt(2.0 / n))


def test_constant_drift_moves_the_mean_by_v_t_over_lambda(backend):
    """U = -v·x: ``-∇u/λ = v/λ`` exactly (central differences of a linear function, then
    bilinear interpolation of a constant), so the particles move by ``v T / λ`` plus
    the diffusion: the density's mean is ``mean0 + v T / λ`` within Z_MOMENT standard
    errors ``sqrt((s0 + σ²T) / N)`` (0.001 here against a displacement of 0.3-0.5:
    dropping λ = 2 or the sign is off by hundreds), its variance as without drift."""
    n, sigma, T, lam = 40_000, 0.2, 0.5, 2.0
    v = np.array([2.0, -1.2])
    problem = problem_2d(
        [(-1.2, 1.2), (-1.0, 1.0)],
        (49, 41),
        "noflux",
        gaussian_start((-0.25, 0.15), 0.1),
        T,
        sigma,
        control_cost=lam,
        g=lambda x, y: -(v[0] * x + v[1] * y),
    )
    fp = FPParticleSolver(problem, backend=backend, num_particles=n, seed=12)
    M = fp.solve()
    mean0, var0 = start_law(problem)
    variances = var0 + sigma**2 * T
    means, var_m = density_moments(problem, M[-1])
    moved = mean0 + v * T / lam
    assert np.all(np.abs(means - moved) <= Z_MOMENT * np.sqrt(variances / n)), means - moved
    h2 = np.array(fp.bandwidth) ** 2
    assert np.all(np.abs(var_m - (variances + h2)) <= Z_MOMENT * variances * math.sqrt(2.0 / n))
    check_against_gaussian_images(problem, M[-1], [tuple(moved)], variances, fp.bandwidth, n)


@pytest.mark.parametrize("wall", [0, 1], ids=["wall_x", "wall_y"])
def test_a_wall_reflects_and_a_periodic_axis_wraps(backend, wall):
    """Pure diffusion from near the corner of a no-flux wall (at 0 along axis ``wall``)
    and the periodic seam (0 ~ 1 along the other axis). The exact law is the free
    Gaussian's images: mirrored across the walls, shifted by ±1 along the periodic
    axis, and the KDE with images of reflected (or
    wrapped) particles has the same expectation, since the kernel summed over a point's
    images is invariant under reflecting (shifting) the point. So the density is the
    sum over the 3 x 3 image centres of Gaussians with variance ``s0 + σ²T + h²``;
    an absorbing or clipping wall, or a missing wrap, changes it by O(1) near them."""
    n, sigma, T = 40_000, 0.3, 0.1
    start, shape, boundary = [0.1, 0.92], [41, 40], ["noflux", "periodic"]
    if wall == 1:
        start, shape, boundary = start[::-1], shape[::-1], boundary[::-1]
    problem = problem_2d(
        [(0.0, 1.0), (0.0, 1.0)],
        tuple(shape),
        tuple(boundary),
        gaussian_start(start, 0.05),
        T,
        sigma,
    )
    fp = FPParticleSolver(problem, backend=backend, num_particles=n, seed=13)
    M = fp.solve()
    assert M.min() >= 0.0
    np.testing.assert_allclose(M.sum(axis=(1, 2)) * problem.cell_volume, 1.0, atol=1e-12)
    # The start law on the cells, folded: mean and variance of the unfolded Gaussian.
    mean0, var0 = start_law(problem)
    variances = var0 + sigma**2 * T
    images = [
        (m, -m, 2.0 - m) if kind == "noflux" else (m - 1.0, m, m + 1.0)
        for m, kind in zip(mean0, boundary, strict=True)
    ]
    centres = [(cx, cy) for cx in images[0] for cy in images[1]]
    check_against_gaussian_images(problem, M[-1], centres, variances, fp.bandwidth, n)
    # The images are not negligible: near the corner they are a third of the density.
    expected, _ = image_sum_and_sd(problem, centres, variances, fp.bandwidth, n)
    alone, _ = image_sum_and_sd(problem, [tuple(mean0)], variances, fp.bandwidth, n)
    assert np.max(expected - alone) > 0.3 * expected.max()


def test_a_problem_constant_in_y_gives_the_1d_marginal(backend):
    """m0 and U constant in y, periodic in y: the y-derivative of U is 0 and the
    bilinear interpolation of ∂x U is the 1D linear one, so the particles' x-coordinates
    follow the 1D march's law. With the same h_x, the 2D density's x-marginal (the y
    kernel sums to 1 over a period) and the 1D density are independent KDEs of the same
    law: their difference has sd ``sqrt(E[phi^2] (1/N_1 + 1/N_2))`` with ``E[phi^2] <=
    2 f_h(x) / (2 sqrt(pi) h)`` (a point and its wall image), ``f_h`` estimated by the
    larger of the two densities; allowed Z_POINT of it plus both binning bounds."""
    T, sigma, h = 0.3, 0.25, 0.04
    n1, n2 = 100_000, 40_000

    def g1(x):
        return (x - 0.7) ** 2

    def m1(x):
        return np.exp(-40.0 * (x - 0.3) ** 2)

    common = dict(T=T, Nt=6, sigma=sigma, control_cost=1.5)
    p1 = MFGProblem(Nx=41, terminal_cost=g1, initial_density=m1, **common)
    p2 = MFGProblem(
        domain=[(0.0, 1.0), (0.0, 0.5)],
        Nx=(41, 10),
        boundary=("noflux", "periodic"),
        running_cost=lambda x, y, m, t: 0.0 * m,
        terminal_cost=lambda x, y: g1(x),
        initial_density=lambda x, y: m1(x) + 0.0 * y,
        **common,
    )
    M1 = FPParticleSolver(p1, backend=backend, num_particles=n1, seed=21, bandwidth=h).solve()
    M2 = FPParticleSolver(
        p2, backend=backend, num_particles=n2, seed=22, bandwidth=(h, 0.05)
    ).solve()
    marginal = M2.sum(axis=2) * p2.dy
    np.testing.assert_allclose(marginal.sum(axis=1) * p2.dx, 1.0, atol=1e-12)
    f = np.maximum(M1, marginal)
    sd = np.sqrt(2.0 * f / (2.0 * math.sqrt(math.pi) * h) * (1.0 / n1 + 1.0 / n2))
    bins = BINNING_RTOL[1] / (h * math.sqrt(2.0 * math.pi)) + binning_bound((h, 0.05)) * 0.5
    err = np.abs(marginal[1:] - M1[1:])
    assert np.all(err <= Z_POINT * sd[1:] + bins), np.max(err / (Z_POINT * sd[1:] + bins))
    # Not vacuous: the density moved (towards 0.7) by much more than the tolerance.
    assert np.max(np.abs(M1[-1] - M1[0])) > 10 * np.max(Z_POINT * sd[-1] + bins)


# -- sizes, bandwidth, strategy ----------------------------------------------------------------


def test_bandwidth_problem_size_and_strategy_in_2d(backend):
    problem = problem_2d(
        [(0.0, 2.0), (0.0, 1.0)],
        (21, 11),
        "noflux",
        lambda x, y: np.exp(-8.0 * (x - 1.0) ** 2 - 30.0 * (y - 0.5) ** 2),
        T=0.1,
        sigma=0.2,
    )
    n = 50_000
    fp = FPParticleSolver(problem, backend=backend, num_particles=n)
    # Scott per axis on m0's marginals, N^(-1/6), never below the spacing.
    _, var0 = start_law(problem)
    std = np.sqrt(var0 - np.array(problem.spacing) ** 2 / 12.0)
    expected = np.maximum(std * n ** (-1.0 / 6.0), problem.spacing)
    np.testing.assert_allclose(fp.bandwidth, expected, rtol=1e-12)
    assert fp.bandwidth[1] == problem.spacing[1] > std[1] * n ** (-1.0 / 6.0)  # the floor
    size = fp.problem_size
    assert size.grid_points == 21 * 11 and size.num_steps == problem.Nt
    assert size.fine_points == fp._kde.work_points > 0
    assert select_particle_strategy(backend, size).is_available()
    assert FPParticleSolver(problem, backend=backend, bandwidth=0.2).bandwidth == (0.2, 0.2)
    for bad in (0.0, (0.1, -0.1), (0.1, 0.1, 0.1), "silverman"):
        with pytest.raises(ValueError, match="bandwidth"):
            FPParticleSolver(problem, backend=backend, bandwidth=bad)
    with pytest.raises(ValueError, match="shape"):
        fp.solve(np.zeros((problem.Nt + 1, 21)))
