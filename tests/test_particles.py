"""The particle machinery: planned binned KDE with images, the per-particle primitives,
and the CPU/GPU strategy selector.

References are NumPy float64 double sums and explicit loops, never another method of the
backend under test. Tests that take ``backend`` run on numpy, numba, jax and torch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfg_pde import MFGProblem
from mfg_pde.alg.numerical import (
    CPUParticleStrategy,
    FPParticleSolver,
    GPUParticleStrategy,
    ParticleProblemSize,
    select_particle_strategy,
)
from mfg_pde.backends._base import BINNING_RTOL
from mfg_pde.backends._numpy import NumpyBackend


def on(backend, *arrays):
    moved = tuple(backend.from_numpy(np.asarray(a)) for a in arrays)
    return moved if len(moved) > 1 else moved[0]


def kde_sum(grid, points, h, weight):
    """Direct double sum of Gaussian kernels, each point with the same weight."""
    z = (grid[None, :] - points[:, None]) / h
    return weight * np.exp(-0.5 * z**2).sum(axis=0) / (h * math.sqrt(2.0 * math.pi))


def images_of(x, lo, hi, boundary):
    if boundary == "periodic":
        return np.concatenate([x - (hi - lo), x, x + (hi - lo)])
    return np.concatenate([2.0 * lo - x, x, 2.0 * hi - x])


# -- binned KDE with images --------------------------------------------------------------


@pytest.mark.parametrize("smoothing", ["fft", "banded"])
@pytest.mark.parametrize("boundary", ["noflux", "periodic"])
def test_kde_images_within_the_binning_bound_of_the_3n_point_sum(backend, boundary, smoothing):
    """Images added on the fine grid = the exact KDE of the 3N image points, to within
    the documented binning bound ``binning_rtol x peak kernel`` (plus FFT round-off).

    Particles are crowded against the walls (a third within 2h of them), where the
    images carry most weight, and h = 0.023 is not a multiple of the spacing."""
    rng = np.random.default_rng(31)
    n, h = 3000, 0.023
    x = np.concatenate(
        [rng.uniform(0.0, 0.05, n // 3), rng.uniform(0.95, 1.0, n // 3), rng.uniform(0, 1, n // 3)]
    )
    if boundary == "periodic":
        grid = np.arange(80) / 80.0
        x = np.mod(x, 1.0)
        images = "periodic"
    else:
        grid = np.linspace(0.0, 1.0, 81)
        images = "reflect"
    kde = backend.binned_kde(on(backend, grid), h, images=images, smoothing=smoothing)
    assert kde.smoothing == smoothing
    got = backend.to_numpy(kde(on(backend, x)))
    expected = kde_sum(grid, images_of(x, 0.0, 1.0, boundary), h, 1.0 / x.size)
    peak = 1.0 / (h * math.sqrt(2.0 * math.pi))
    assert np.max(np.abs(got - expected)) <= BINNING_RTOL[1] * peak + 1e-13 * peak
    # And the bound is not vacuous: the images matter by O(1) of the peak at the walls.
    without = kde_sum(grid, x, h, 1.0 / x.size)
    assert np.max(np.abs(without - expected)) > 0.1 * expected.max()


def test_fft_and_banded_smoothing_agree_to_round_off(backend):
    rng = np.random.default_rng(32)
    grid = np.linspace(0.0, 1.0, 101)
    x = on(backend, rng.uniform(0.0, 1.0, 2000))
    fft = backend.binned_kde(on(backend, grid), 0.01, images="reflect", smoothing="fft")
    banded = backend.binned_kde(on(backend, grid), 0.01, images="reflect", smoothing="banded")
    a, b = backend.to_numpy(fft(x)), backend.to_numpy(banded(x))
    # The same sum of the same products in another order (and FFT round-off ~1e-15).
    assert np.max(np.abs(a - b)) <= 1e-12 * np.max(a)


@pytest.mark.parametrize("images", ["reflect", "periodic", None])
@pytest.mark.parametrize(
    "h", [0.004, 0.05, 0.6]
)  # a kernel narrower than, or wider than, the domain
def test_images_in_place_equal_the_array_version(images, h):
    """``add_images_in_place`` (the host march's) adds the same image weights as
    ``add_images``: to the bit, since each point gets the same one or two additions."""
    from mfg_pde.backends import create_backend

    grid = np.linspace(0.0, 1.0, 21)
    kde = create_backend("numpy").binned_kde(grid, h, images=images, binning_rtol=1e-3)
    binned = np.random.default_rng(4).uniform(size=(3, kde.shape[0]))
    expected = kde.add_images(binned.copy())
    kde.add_images_in_place(binned)
    np.testing.assert_array_equal(binned, expected)


def test_kde_plan_rejects_bad_options(backend):
    grid = on(backend, np.linspace(0.0, 1.0, 11))
    with pytest.raises(ValueError, match="images"):
        backend.binned_kde(grid, 0.1, images="mirror")
    with pytest.raises(ValueError, match="smoothing"):
        backend.binned_kde(grid, 0.1, smoothing="toeplitz")
    with pytest.raises(ValueError, match="images"):  # 2D: one kind per axis
        backend.binned_kde((grid, grid), 0.1, images=("reflect", "mirror"))
    with pytest.raises(ValueError, match="bandwidth"):
        backend.binned_kde(grid, -0.1)


# -- per-particle primitives -------------------------------------------------------------


def binning_reference(points, start, spacing, size, weights):
    out = np.zeros(size)
    for x, w in zip(points, weights, strict=True):
        s = (x - start) / spacing
        c = math.floor(s)
        f = s - c
        for j, share in ((c, w * (1.0 - f)), (c + 1, w * f)):
            if 0 <= j < size:
                out[j] += share
    return out


def variants(backend):
    """The backend, and for numpy also its np.bincount / NumPy path (numba not used)."""
    if backend.name == "numpy":
        return [backend, NumpyBackend(use_numba=False)]
    return [backend]


def test_linear_binning_matches_a_loop(backend):
    rng = np.random.default_rng(33)
    points = np.concatenate([rng.uniform(-1.5, 11.5, 500), [-1.0, -0.5, 0.0, 9.0, 9.5, 10.0]])
    weights = rng.uniform(0.5, 2.0, points.size)
    expected = binning_reference(points, -0.25, 0.5, 21, weights)
    ones = binning_reference(points, -0.25, 0.5, 21, np.ones(points.size))
    for b in variants(backend):
        got = b.to_numpy(b.linear_binning(on(b, points), -0.25, 0.5, 21, on(b, weights)))
        # Each bin sums at most ~50 shares: a few ulps of the total.
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-13 * weights.sum())
        unit = b.to_numpy(b.linear_binning(on(b, points), -0.25, 0.5, 21))
        np.testing.assert_allclose(unit, ones, rtol=0, atol=1e-13 * points.size)
        nan = b.to_numpy(b.linear_binning(on(b, np.array([0.3, np.nan, 2.2])), 0.0, 1.0, 5))
        assert np.isnan(nan).any(), nan  # a NaN particle is never silently lost


def test_interp_uniform_matches_numpy_interp(backend):
    rng = np.random.default_rng(34)
    grid = -1.0 + 0.1 * np.arange(31)
    values = rng.normal(size=31)
    x = np.concatenate([rng.uniform(-1.5, 2.5, 400), grid, [-1.0, 2.0]])
    for b in variants(backend):
        got = b.to_numpy(b.interp_uniform(on(b, x), -1.0, 0.1, on(b, values)))
        # Equivalent linear formulas; the cell from (x - start) / spacing instead of a
        # search: a few ulps of max|values|.
        assert np.max(np.abs(got - np.interp(x, grid, values))) <= 1e-13 * np.abs(values).max()


@pytest.mark.parametrize("periodic", [False, True])
def test_fold_into_interval(backend, periodic):
    rng = np.random.default_rng(35)
    lo, hi = -0.5, 1.5
    length = hi - lo
    x = np.concatenate([rng.uniform(-7.0, 9.0, 1000), [lo, hi, 0.3]])
    if periodic:
        expected = lo + np.mod(x - lo, length)
    else:
        y = np.mod(x - lo, 2.0 * length)
        expected = np.where(y <= length, lo + y, lo + 2.0 * length - y)
    for b in variants(backend):
        got = b.to_numpy(b.fold_into_interval(on(b, x), lo, hi, periodic=periodic))
        assert np.all((got >= lo) & (got <= hi))
        dist = np.abs(got - expected)
        if periodic:  # hi is the image of lo on the circle
            dist = np.minimum(dist, length - dist)
        # (x - lo) / L rounded, then scaled back: a few ulps of max|x|.
        assert dist.max() <= 1e-13 * (np.abs(x).max() + length)


# -- the solver: binned KDE with images against the exact 3N sum -------------------------


@pytest.mark.parametrize("boundary", ["noflux", "periodic"])
def test_particle_density_binned_equals_exact_up_to_the_bound(backend, boundary):
    """Same seed, same particles: the binned path (images on the fine grid) and the
    exact path (3N image points summed) differ by the binning error only: at most
    ``e = binning_rtol x peak`` per value before the renormalisation to unit mass, whose
    factor then moves by at most ``e L`` relative, so after it by ``e (1 + max m L)``."""
    problem = MFGProblem(
        Nx=41, T=0.2, Nt=8, sigma=0.3, boundary=boundary, terminal_cost=lambda x: (x - 0.9) ** 2
    )
    kw = dict(backend=backend, num_particles=1500, seed=4, bandwidth=0.05)
    binned = FPParticleSolver(problem, kde_method="binned", **kw).solve()
    exact = FPParticleSolver(problem, kde_method="exact", **kw).solve()
    e = BINNING_RTOL[1] / (0.05 * math.sqrt(2.0 * math.pi))
    bound = e * (1.0 + exact.max() * problem.length)
    assert np.max(np.abs(binned - exact)) <= bound, (np.max(np.abs(binned - exact)), bound)
    np.testing.assert_allclose(binned.sum(axis=1) * problem.dx, 1.0, atol=1e-12)


# -- strategies ----------------------------------------------------------------------------


class FakeGPUBackend(NumpyBackend):
    """A numpy backend that reports a GPU: a time step costs 2 ms of launches (400 at
    5 µs, a deliberately slow device so that the crossover is well inside the range),
    a particle 0.1 ns."""

    name = "fake-gpu"

    @property
    def device(self) -> str:
        return "gpu:fake"

    def has_capability(self, name: str) -> bool:
        self._check_capability(name)
        return name in ("gpu", "parallel_kde")

    def get_performance_hints(self) -> dict:
        return {
            **super().get_performance_hints(),
            "device_type": "gpu",
            "kernel_overhead_s": 5e-6,
            "particle_step_s": 1e-10,
            "step_overhead_s": 2e-3,
            "host_transfer_gbs": 20.0,
        }

    def counterpart(self, device_type: str):
        return self if device_type == "gpu" else NumpyBackend()


def model_crossover(gpu, cpu, size: ParticleProblemSize) -> float:
    """N at which the two cost lines of the documented model cross, solved by hand:
    Nt (o_c + N p_c + f_c) + transfer = Nt (o_g + N p_g + f_g), the CPU march paying
    the copies of U and M (2 (Nt + 1) Nx 8 bytes at the slower link)."""
    hc, hg = cpu.get_performance_hints(), gpu.get_performance_hints()
    fine = 4.0 * size.fine_points * 8.0
    grid_c = fine / (hc["memory_bandwidth_gbs"] * 1e9)
    grid_g = fine / (hg["memory_bandwidth_gbs"] * 1e9)
    moved = 2.0 * (size.num_steps + 1) * size.grid_points * 8.0
    transfer = moved / (min(hc["host_transfer_gbs"], hg["host_transfer_gbs"]) * 1e9)
    transfer += 2.0 * hc["kernel_overhead_s"]
    fixed = size.num_steps * (hg["step_overhead_s"] + grid_g - hc["step_overhead_s"] - grid_c)
    return (fixed - transfer) / (size.num_steps * (hc["particle_step_s"] - hg["particle_step_s"]))


def test_auto_strategy_flips_at_the_model_crossover():
    gpu = FakeGPUBackend()
    cpu_strategy = CPUParticleStrategy(gpu)
    assert isinstance(cpu_strategy.march_backend, NumpyBackend)
    assert cpu_strategy.march_backend.device == "cpu" and cpu_strategy.transfers
    crossover = model_crossover(gpu, cpu_strategy.march_backend, ParticleProblemSize(1, 50, 101))
    # With these hints a GPU pays off from a few 10^4 particles per step.
    assert 1e3 < crossover < 1e6, crossover
    for n, expected in ((crossover / 2, "cpu"), (crossover * 2, "gpu")):
        size = ParticleProblemSize(int(n), 50, 101)
        chosen = select_particle_strategy(gpu, size, "auto")
        assert chosen.device_type == expected, (n, chosen)
    # The choice changes where the solver marches: the host numpy backend or the "GPU".
    problem = MFGProblem(Nx=101, Nt=50)
    small = FPParticleSolver(problem, backend=gpu, num_particles=int(crossover / 2))
    large = FPParticleSolver(problem, backend=gpu, num_particles=int(crossover * 2))
    assert small.strategy.device_type == "cpu" and small.march_backend is not gpu
    assert large.strategy.device_type == "gpu" and large.march_backend is gpu


def test_both_strategies_give_the_same_density_on_the_fake_gpu():
    """The fake GPU computes with numpy, so the two marches are the same arithmetic:
    only where it runs (and the copies of U in and M out) differs."""
    gpu = FakeGPUBackend()
    problem = MFGProblem(Nx=51, Nt=20)
    rng = np.random.default_rng(36)
    U = rng.normal(size=problem.shape).cumsum(axis=1) * problem.dx
    kw = dict(backend=gpu, num_particles=3000, seed=2)
    on_cpu = FPParticleSolver(problem, strategy="cpu", **kw)
    on_gpu = FPParticleSolver(problem, strategy=GPUParticleStrategy(gpu), **kw)
    assert on_cpu.march_backend is not gpu and on_gpu.march_backend is gpu
    a = on_cpu.solve_backend(U)
    assert isinstance(a, np.ndarray)
    np.testing.assert_array_equal(a, on_gpu.solve_backend(U))


def test_cost_model_is_linear_in_particles_and_steps(backend):
    strategy = CPUParticleStrategy(backend)
    cost = {
        (n, nt): strategy.estimate_cost(ParticleProblemSize(n, nt, 101, 40_000))
        for n in (10**4, 10**5, 10**6)
        for nt in (50, 100)
    }
    assert all(c > 0 and math.isfinite(c) for c in cost.values())
    np.testing.assert_allclose(cost[(10**5, 100)], 2 * cost[(10**5, 50)], rtol=1e-12)
    slope_a = cost[(10**5, 50)] - cost[(10**4, 50)]
    slope_b = cost[(10**6, 50)] - cost[(10**5, 50)]
    np.testing.assert_allclose(slope_b, 10 * slope_a, rtol=1e-9)


def test_strategy_on_a_cpu_backend(backend):
    """Without a GPU (CI) auto stays on the backend itself and "gpu" is refused loudly;
    where the library sees a GPU, "gpu" runs the march there."""
    problem = MFGProblem(Nx=31, Nt=5)
    fp = FPParticleSolver(problem, backend=backend, num_particles=100)
    if not backend.has_capability("gpu"):
        assert fp.strategy.device_type == "cpu" and fp.march_backend is backend
    if backend.counterpart("gpu") is None:
        with pytest.raises(ValueError, match="no GPU device"):
            FPParticleSolver(problem, backend=backend, num_particles=100, strategy="gpu")
    else:
        fp = FPParticleSolver(problem, backend=backend, num_particles=100, strategy="gpu")
        assert fp.march_backend.has_capability("gpu")
        assert np.isfinite(fp.solve()).all()
    with pytest.raises(ValueError, match="strategy"):
        FPParticleSolver(problem, backend=backend, num_particles=100, strategy="tpu")


# -- draws made once, the compiled march -------------------------------------------------


@pytest.mark.parametrize("dim", [1, 2])
def test_initial_positions_come_sorted_and_follow_m0(backend, dim):
    """The particles are placed in the order of their position (1D) or cell (2D, C
    order), which keeps the compiled march's binning local; sorting the uniforms does
    not change the law: the positions still follow m0 (Kolmogorov-Smirnov distance of
    the first coordinate against m0's marginal, read as constant on each cell, within
    the 1e-3 level critical value 1.95 / sqrt(N))."""
    from mfg_pde.problems import hello_2d_example, hello_example

    problem = hello_example(Nx=41, Nt=4) if dim == 1 else hello_2d_example(Nx=21, Nt=4)
    n = 20_000
    solver = FPParticleSolver(problem, backend=backend, num_particles=n, seed=2)
    b = solver.march_backend
    _, X0 = solver._initial_positions(b.random_key(solver.seed))
    x = b.to_numpy(X0[0])
    x_step = problem.spacing[0]
    if dim == 1:
        assert np.all(np.diff(x) >= 0.0)
    else:  # cells in C order: x's cell never decreases, and y's cell within one x cell
        lo_y, y_step = problem.bounds[1][0], problem.spacing[1]
        lo_x = problem.bounds[0][0]
        cell = np.round((x - lo_x) / x_step) * problem.grid_shape[1]
        cell += np.round((b.to_numpy(X0[1]) - lo_y) / y_step)
        assert np.all(np.diff(cell) >= 0)
    marginal = problem.m0.reshape(problem.grid_shape[0], -1).sum(axis=1)
    edges = problem.axes[0][0] + (np.arange(marginal.size + 1) - 0.5) * x_step
    cdf = np.concatenate([[0.0], np.cumsum(marginal) / marginal.sum()])
    lo, hi = problem.bounds[0]
    inside = (edges > lo) & (edges < hi)  # folding moves the half cells at the walls
    empirical = np.searchsorted(x, edges[inside], side="right") / n
    assert np.abs(empirical - cdf[inside]).max() <= 1.95 / math.sqrt(n)


@pytest.mark.parametrize("boundary", ["noflux", "periodic"])
def test_cached_draws_and_compiled_march_equal_the_step_by_step_march(backend, boundary):
    """A solver draws its initial positions and Brownian increments once and reuses them
    in every solve (the stream restarts from the seed each solve anyway); numpy with
    numba, and torch and jax on the CPU, then march with one compiled call. The density
    path equals the march that draws step by step from the seed to round-off (the
    compiled march multiplies by reciprocal spacings, sums its chunks' bins in chunk
    order and smooths all levels in one batched product)."""
    from mfg_pde.alg.numerical import _particle_draws as pd

    problem = MFGProblem(
        xmin=0.0, xmax=1.0, Nx=41, T=0.5, Nt=12, sigma=0.3, boundary=boundary,
        initial_density=lambda x: np.exp(-40 * (x - 0.35) ** 2),
        terminal_cost=lambda x: np.cos(2 * np.pi * x),
    )  # fmt: skip
    solver = FPParticleSolver(problem, backend=backend, num_particles=3_000, seed=5)
    b = solver.march_backend
    U = on(b, np.broadcast_to(np.cos(2 * np.pi * problem.x), problem.shape) * 1.0)
    stepwise = b.to_numpy(solver._march_compiled(U, b.random_key(solver.seed)))
    cached = solver.solve(U)
    assert solver._draws is not None
    if b.particle_march_kernel() is not None:
        assert solver._compiled_1d is not None
    again = solver.solve(U)  # the second solve reads the kept draws
    np.testing.assert_array_equal(again, cached)
    scale = np.abs(stepwise).max()
    np.testing.assert_allclose(cached, stepwise, rtol=0, atol=1e-12 * scale)
    # Over the memory budget the draws are made inside each march, as before.
    big = FPParticleSolver(problem, backend=backend, num_particles=3_000, seed=5)
    budget = pd.DRAWS_CACHE_BYTES
    try:
        pd.DRAWS_CACHE_BYTES = 1024
        np.testing.assert_array_equal(big.solve(U), stepwise)
    finally:
        pd.DRAWS_CACHE_BYTES = budget
    assert big._draws is None


@pytest.mark.parametrize("boundary", ["noflux", "periodic"])
def test_compiled_particle_march_does_not_depend_on_the_thread_count(boundary, monkeypatch):
    """The compiled march splits the particles into fixed chunks marched in threads;
    the chunks, not the threads, fix the order of the sums, so one thread gives the
    same density path to the bit, and both equal the step-by-step march to round-off."""
    pytest.importorskip("numba")
    from mfg_pde.backends import _numba_marches as nm

    problem = MFGProblem(
        xmin=-1.0, xmax=1.0, Nx=51, T=0.3, Nt=12, sigma=0.4, boundary=boundary,
        initial_density=lambda x: np.exp(-20 * (x + 0.3) ** 2),
        terminal_cost=lambda x: np.sin(np.pi * x),
    )  # fmt: skip
    U = np.broadcast_to(np.sin(np.pi * problem.x), problem.shape) * 1.0
    n = 40_001  # an odd count: the chunks differ in size; N * Nt above the threading bound
    assert n * problem.Nt >= nm.PARTICLE_THREAD_MIN_STEPS
    threaded = FPParticleSolver(problem, backend="numpy", num_particles=n, seed=3).solve(U)
    monkeypatch.setattr(nm, "PARTICLE_THREAD_MIN_STEPS", 10**18)  # every chunk in turn
    serial_solver = FPParticleSolver(problem, backend="numpy", num_particles=n, seed=3)
    serial = serial_solver.solve(U)
    np.testing.assert_array_equal(threaded, serial)
    b = serial_solver.march_backend
    stepwise = b.to_numpy(serial_solver._march_compiled(U, b.random_key(serial_solver.seed)))
    np.testing.assert_allclose(serial, stepwise, rtol=0, atol=1e-12 * np.abs(stepwise).max())
    assert np.isclose(serial[1:].sum(axis=1) * problem.dx, 1.0, rtol=1e-12).all()
    # Grids too small for all levels at once: the steps go in blocks, the same numbers.
    width = 8 * nm.PARTICLE_CHUNKS * serial_solver._plan_kde(b).shape[0]
    monkeypatch.setattr(nm, "PARTICLE_GRID_BYTES", 5 * width)  # blocks of 4 or 5 levels
    blocked_solver = FPParticleSolver(problem, backend="numpy", num_particles=n, seed=3)
    blocked = blocked_solver.solve(U)
    assert blocked_solver._compiled_1d is not None
    np.testing.assert_array_equal(blocked, serial)


# -- the particle fixed point as one compiled program (jax) ------------------------------


def _small_particle_problem():
    from mfg_pde.problems import hello_example

    return hello_example(Nx=41, Nt=10, T=0.4, sigma=0.4)


def _as_on_a_gpu(monkeypatch):
    """jax without its host particle march, as on a GPU: the march is a ``scan``."""
    from mfg_pde.backends._jax import JAXBackend

    monkeypatch.setattr(JAXBackend, "particle_march_kernel", lambda self: None)


@pytest.mark.parametrize("kept", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_jax_particle_fixed_point_runs_as_one_program(monkeypatch, kept):
    """Where jax marches particles with a ``scan`` (a GPU), the whole particle fixed
    point is one compiled program: the same answer as the host loop around the same
    marches (to round-off), the draws passed as arguments (kept, or drawn inside from
    the key when they exceed the cache budget), so a solver with another seed reuses
    the program and gets its own draws."""
    pytest.importorskip("jax")
    from mfg_pde.alg.numerical import FixedPointIterator, HJBFDMSolver
    from mfg_pde.alg.numerical import _particle_draws as pd

    _as_on_a_gpu(monkeypatch)
    if not kept:
        monkeypatch.setattr(pd, "DRAWS_CACHE_BYTES", 1024)
    problem = _small_particle_problem()

    def iterator(seed):
        fp = FPParticleSolver(problem, backend="jax", num_particles=2_000, seed=seed)
        return FixedPointIterator(problem, HJBFDMSolver(problem, backend="jax"), fp)

    one = iterator(1)
    assert one.runs_as_one_program
    compiled = one.solve(max_iterations=150, tolerance=1e-8)
    assert "compile" in compiled.timings and "fp" not in compiled.timings
    looped = one.solve(max_iterations=150, tolerance=1e-8, callback=lambda k, r: False)
    assert "fp" in looped.timings  # the host loop ran
    assert compiled.converged and looped.converged
    for name in ("U", "M"):
        ref = looped[name]
        assert np.abs(compiled[name] - ref).max() <= 1e-10 * np.abs(ref).max()
    other = iterator(2).solve(max_iterations=150, tolerance=1e-8)
    assert other.timings["compile"] == 0.0  # the same program, other draws
    assert other.converged
    assert np.abs(other.M - compiled.M).max() > 1e-3 * compiled.M.max()
    alone = iterator(2).solve(max_iterations=150, tolerance=1e-8, callback=lambda k, r: False)
    assert np.abs(other.M - alone.M).max() <= 1e-10 * alone.M.max()


def test_jax_particle_batch_over_sigma_equals_the_loop(monkeypatch):
    """A batch over σ runs the particle program once under ``vmap``: every member
    shares the draws (as a loop of solves with one seed does) and scales them by its
    own σ, so each equals its own solve to round-off."""
    pytest.importorskip("jax")
    from mfg_pde import solve_mfg, solve_mfg_batch

    _as_on_a_gpu(monkeypatch)
    problem = _small_particle_problem()
    sigmas = [0.5, 0.8]  # both converge with damped Picard (σ = 0.3 cycles at this N)
    options = dict(num_particles=2_000, seed=4, max_iterations=150, tolerance=1e-8)
    batch = solve_mfg_batch(problem, {"sigma": sigmas}, "particle", "jax", **options)
    for sigma, member in zip(sigmas, batch, strict=True):
        alone = solve_mfg(problem.replace(sigma=sigma), "particle", "jax", **options)
        assert member.converged and alone.converged
        assert np.abs(member.M - alone.M).max() <= 1e-10 * alone.M.max()
        assert np.abs(member.U - alone.U).max() <= 1e-10 * np.abs(alone.U).max()
    assert np.abs(batch[0].M - batch[1].M).max() > 1e-2 * batch[0].M.max()
