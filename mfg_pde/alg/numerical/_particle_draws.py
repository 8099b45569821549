"""The particle march's random draws, made once per solver, and the compiled 1D march.

Every :meth:`FPParticleSolver.solve` restarts the random stream from the seed (common
random numbers), so every solve of a fixed-point iteration draws the same initial
positions and the same Brownian increments. Drawing them is the largest cost of a step
(a normal variate costs 10-30 ns on a CPU, more than moving and binning the particle):
measured on the hello problem with 10^5 particles, 1.5 s of a 4.4 s particle solve of
20 iterations on numpy. So a solver draws them once, keeps them when they fit in
:data:`DRAWS_CACHE_BYTES`, and every later march reads them; the values are those the
step-by-step march draws, in the same order.

With the draws at hand, a backend that has a compiled 1D particle march
(:meth:`~mfg_pde.backends.BaseBackend.particle_march_kernel`: numpy with numba, and
torch and jax on the CPU) runs all steps in one call on host arrays and returns the
binned particles of every level; the KDE's images and smoothing then act on all levels
at once.
"""

from __future__ import annotations

import math
from typing import Any

from mfg_pde.alg.numerical import _stencils as st

#: The largest set of draws a solver keeps (bytes of float64): 10^5 particles x 50
#: steps take 40 MB; 10^6 x 100 (800 MB) are drawn inside each march instead.
DRAWS_CACHE_BYTES = 2**28


def draws_fit(num_particles: int, steps: int, dim: int) -> bool:
    """Whether the positions and increments of a march fit :data:`DRAWS_CACHE_BYTES`."""
    return 8 * num_particles * (steps + 1) * dim <= DRAWS_CACHE_BYTES


def make_draws(solver: Any) -> tuple[tuple[Any, ...], Any]:
    """``(X0, Z)``: the initial positions (one ``(N,)`` array per axis) and the
    standard normal variates of every step, ``(Nt, dim, N)``, as the march draws them
    from ``solver.seed``. The march scales them by ``σ √dt``: unscaled, the same draws
    serve every σ (a batch over σ in one compiled program)."""
    b, p = solver.march_backend, solver.problem
    key, X0 = solver._initial_positions(b.random_key(solver.seed))
    _, normals = b.normal_steps(key, p.Nt, (p.dim, solver.num_particles))
    return X0, normals


def compiled_march_1d(solver: Any, kernel: Any, draws: tuple) -> Any:
    """``U -> M`` for a 1D binned-KDE solver: the backend's compiled march (``kernel``,
    see :class:`mfg_pde.backends._numba_marches.ParticleMarch1D`) on the host copies of
    ``draws``, the KDE of every level included.

    The whole march, KDE and normalisation too, runs on the host with a NumPy plan of
    the solver's KDE, so the backend receives ``(Nt, G)`` densities instead of the
    ``(Nt, fine grid)`` bins (16 MB per march for 10^5 particles on the hello
    problem), and torch and jax on the CPU compute the same numbers as numpy.
    """
    from mfg_pde.backends import create_backend

    b, p = solver.march_backend, solver.problem
    xp = b.xp
    periodic = p.periodic[0]
    lo, hi = p.bounds[0]
    host_march = kernel(
        b.to_numpy(draws[0][0]),
        b.to_numpy(draws[1])[:, 0, :],
        p.sigma * math.sqrt(p.dt),
        solver._plan_kde(create_backend("numpy")),
        p.xmin,
        p.dx,
        lo,
        hi,
        periodic,
        p.cell_volume,
    )
    step_scale = -p.dt / p.control_cost

    def march(U: Any) -> Any:
        # The drift of every step on the grid, as FPParticleSolver._drift computes it.
        shift = st.central_gradient(xp, U[:-1, ...], p.dx, periodic) * step_scale
        if periodic:
            shift = xp.concat([shift, shift[:, :1]], axis=-1)
        density = b.call_host(host_march, (p.Nt, p.Nx), shift)
        return xp.concat([solver._m0[None, :], density], axis=0)

    return march
