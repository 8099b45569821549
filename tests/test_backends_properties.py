"""Hypothesis property tests of the backend primitives, on every backend.

Each property holds for every input hypothesis may draw, so a failure means a wrong
kernel, not an unlucky example: the tridiagonal residual of any diagonally dominant
system, the unit mass of a KDE whose grid holds all the kernels, and the invariance of a
KDE under a permutation of its particles.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

#: Few examples per backend: each draws fresh inputs, and jax compiles per shape.
PROPERTY_SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

#: Particle counts for the KDE properties: a few shapes, since eager JAX compiles per shape.
particle_counts = st.sampled_from([1, 2, 7, 64, 200])

finite = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


@st.composite
def dominant_systems(draw):
    """A batch of strictly diagonally dominant tridiagonal systems (margin >= 0.5)."""
    batch = draw(st.integers(1, 3))
    n = draw(st.integers(1, 40))
    shape = (batch, n)
    lower = draw(hnp.arrays(np.float64, shape, elements=finite))
    upper = draw(hnp.arrays(np.float64, shape, elements=finite))
    margin = draw(hnp.arrays(np.float64, shape, elements=st.floats(0.5, 10.0)))
    sign = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([-1.0, 1.0])))
    diag = sign * (np.abs(lower) + np.abs(upper) + margin)
    # No values near the subnormal range: XLA on CPU flushes subnormals to zero.
    normal = st.floats(-1e3, 1e3).filter(lambda v: v == 0.0 or abs(v) > 1e-200)
    rhs = draw(hnp.arrays(np.float64, shape, elements=normal))
    return lower, diag, upper, rhs


@PROPERTY_SETTINGS
@given(system=dominant_systems())
def test_tridiagonal_residual_is_tiny_for_any_dominant_system(backend, system):
    lower, diag, upper, rhs = system
    x = backend.to_numpy(
        backend.solve_tridiagonal(*(backend.from_numpy(a) for a in (lower, diag, upper, rhs)))
    )
    # A x with lower[..., 0] and upper[..., -1] ignored, as the primitive documents.
    ax = diag * x
    ax[..., 1:] += lower[..., 1:] * x[..., :-1]
    ax[..., :-1] += upper[..., :-1] * x[..., 1:]
    # Dominance margin >= 0.5 bounds ||A^-1||_inf <= 2, so the forward error is at most
    # 2 * residual; backward-stable solvers leave a residual of a few eps * ||A|| ||x||.
    scale = np.max(np.abs(diag)) * max(np.max(np.abs(x)), 1e-300) + np.max(np.abs(rhs))
    assert np.max(np.abs(ax - rhs)) <= 1e-13 * scale


@PROPERTY_SETTINGS
@given(
    particles=hnp.arrays(np.float64, particle_counts, elements=st.floats(0.3, 0.7)),
    bandwidth=st.floats(0.01, 0.05),
    method=st.sampled_from(["binned", "exact"]),
)
def test_kde_mass_is_one_on_a_grid_holding_every_kernel(backend, particles, bandwidth, method):
    # The grid [-0.5, 1.5] extends more than 16 bandwidths past every particle, and its
    # spacing 1/1000 is at most bandwidth/10, so the trapezoid rule integrates each
    # Gaussian to within 1e-12 (it is spectrally accurate for smooth, decayed integrands).
    grid = np.linspace(-0.5, 1.5, 2001)
    density = backend.to_numpy(
        backend.gaussian_kde(
            backend.from_numpy(grid), backend.from_numpy(particles), bandwidth, method=method
        )
    )
    assert np.all(density >= -1e-12)
    mass = np.trapezoid(density, grid)
    # binned: each kernel's binning error is <= 1e-6 of its peak pointwise, but it is a
    # redistribution of mass (linear binning keeps the mass of every particle exactly).
    assert mass == pytest.approx(1.0, abs=1e-9)


@PROPERTY_SETTINGS
@given(
    particles=hnp.arrays(np.float64, particle_counts, elements=st.floats(0.0, 1.0)),
    seed=st.integers(0, 2**32 - 1),
    method=st.sampled_from(["binned", "exact"]),
)
def test_kde_is_invariant_to_particle_order(backend, particles, seed, method):
    permuted = np.random.default_rng(seed).permutation(particles)
    grid = backend.from_numpy(np.linspace(0.0, 1.0, 101))

    def kde(p):
        est = backend.gaussian_kde(grid, backend.from_numpy(p), 0.05, method=method)
        return backend.to_numpy(est)

    a, b = kde(particles), kde(permuted)
    # Only the summation order differs: rounding, relative to the peak value.
    assert np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(a))
