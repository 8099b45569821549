"""Numba kernels for whole 1D marches: the HJB march (Newton per time step) and the
particle march (move, fold, bin), each compiled in one call.

HJB: the array version (:func:`mfg_pde.alg.numerical.hjb_fdm.make_hjb_march`) runs about 20
NumPy operations per Newton step on arrays of ~100 values, each paying ~1-2 µs of
dispatch; here one call marches all levels. Same scheme, start, tolerance and Kelley
test; the tridiagonal systems by Thomas (no pivoting: the Jacobians are diagonally
dominant M-matrices) instead of LAPACK's ``dgtsv``, so results agree to round-off.
No-flux grids only (the periodic march keeps the array version). Particles: see
:func:`particle_march_1d`. Importing this module imports numba; callers import it
lazily.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from mfg_pde.backends._base import host_threads
from mfg_pde.backends._numba_kernels import (
    _max_abs,
    _thomas_in_place,
    bucket_order,
    ordered_bicgstab,
    ordered_five_point,
    upwind_terms_2d,
)


@numba.njit(cache=True, nogil=True)
def hjb_march_noflux(
    g, f, guess, use_guess, dx, dt, nu, control_cost, diag0, tolerance, max_iterations
):  # pragma: no cover - compiled
    """``(U, failures, most)`` of the backward march on a no-flux grid.

    ``f[k]`` is the running cost at level ``k + 1`` (``M^{k+1}``, ``t_{k+1}``), ``g`` the
    terminal value, ``guess`` a path ``(Nt + 1, n)`` used when ``use_guess``; ``diag0``
    is ``1/dt + ν counts / dx²``. Each level: Newton from ``U^{n+1}`` (or the guess
    shifted by the change just made at ``n + 1``), stopped by Kelley's test with
    ``tol = tolerance * max(1, max |U^{n+1}|)``; ``failures`` counts levels that hit
    ``max_iterations``, ``most`` is the largest Newton count of a level.
    """
    levels, n = f.shape
    U = np.empty((levels + 1, n))
    U[levels] = g
    lower = np.empty(n)
    diag = np.empty(n)
    upper = np.empty(n)
    residual = np.empty(n)
    delta = np.empty(n)
    scratch = np.empty(n)
    u = np.empty(n)
    k_diff = nu / (dx * dx)
    failures = 0
    most = 0
    for k in range(levels - 1, -1, -1):
        size = 1.0
        for i in range(n):
            size = max(size, abs(U[k + 1, i]))
            u[i] = guess[k, i] + (U[k + 1, i] - guess[k + 1, i]) if use_guess else U[k + 1, i]
        tol = tolerance * size
        it = 0
        step = math.inf
        done = False
        while it < max_iterations and not done:
            for i in range(n):
                behind = (u[i] - u[i - 1]) / dx if i > 0 else 0.0
                ahead = (u[i + 1] - u[i]) / dx if i < n - 1 else 0.0
                a = min(ahead, 0.0) / control_cost
                b = max(behind, 0.0) / control_cost
                hamiltonian = (0.5 * control_cost) * (a * a + b * b)
                diffusion = (nu / dx) * (ahead - behind)
                rhs = U[k + 1, i] / dt + f[k, i]
                residual[i] = u[i] / dt - diffusion + hamiltonian - rhs
                lower[i] = -k_diff - b / dx
                upper[i] = a / dx - k_diff
                diag[i] = diag0[i] + (b - a) / dx
            _thomas_in_place(lower, diag, upper, residual, delta, scratch, diag[0], diag[n - 1])
            new_step = 0.0
            for i in range(n):
                value = abs(delta[i])
                if value > new_step or value != value:
                    new_step = value
                u[i] -= delta[i]
            rate = new_step / step
            done = new_step <= tol or (it >= 1 and rate < 0.5 and 2.0 * rate * new_step <= tol)
            step = new_step
            it += 1
        U[k] = u
        if not done:
            failures += 1
        most = max(most, it)
    return U, failures, most


@numba.njit(cache=True, error_model="numpy", nogil=True)
def hjb_march_2d(
    g,
    f,
    guess,
    use_guess,
    dx,
    dy,
    dt,
    nu,
    control_cost,
    count_x,
    count_y,
    periodic_x,
    periodic_y,
    tolerance,
    max_iterations,
    krylov_tolerance,
    max_krylov,
):  # pragma: no cover - compiled
    """``(U, failures, most, krylov)`` of the 2D backward march, all levels in one call.

    The march of :func:`mfg_pde.alg.numerical.hjb_fdm.make_hjb_march_2d` with the
    compiled pieces it calls on numpy with numba, in the same order: per level, Newton
    from ``U^{n+1}`` (or the guess shifted by the change just made at ``n + 1``), each
    step's terms by :func:`~mfg_pde.backends._numba_kernels.upwind_terms_2d`, its
    system by the ordered Gauss-Seidel BiCGSTAB
    (:func:`~mfg_pde.backends._numba_kernels.ordered_bicgstab`, skipped when the
    residual is already within its tolerance), Kelley's test with
    ``tol = tolerance * max(1, max |U^{n+1}|)``. So the result equals the array
    version's to the bit; what is saved is the ~0.2 ms of Python per Newton step
    (6,500 steps per hello solve at 128^2 x 100). ``f[k]`` is the running cost at
    level ``k + 1``, ``g`` the terminal value (nx, ny), ``guess`` a path
    ``(Nt + 1, nx, ny)`` used when ``use_guess``; ``count_x`` (nx,), ``count_y`` (ny,)
    the neighbour counts. ``failures`` counts levels whose Newton iteration hit
    ``max_iterations``, ``most`` is the largest Newton count of a level, ``krylov``
    the BiCGSTAB iterations of the march.
    """
    levels = f.shape[0]
    nx, ny = g.shape
    size = nx * ny
    U = np.empty((levels + 1, nx, ny))
    U[levels] = g
    zeros = np.zeros(size)
    diag0 = 1.0 / dt
    failures = 0
    most = 0
    krylov = 0
    for n in range(levels - 1, -1, -1):
        u_next = U[n + 1]
        rhs = u_next / dt + (0.0 + f[n])
        largest = 0.0
        for i in range(nx):
            for j in range(ny):
                largest = _max_abs(largest, u_next[i, j])
        tol = tolerance * (largest if (largest > 1.0 or largest != largest) else 1.0)
        if use_guess:
            u = guess[n] + (u_next - guess[n + 1])
        else:
            u = u_next.copy()
        it = 0
        step = math.inf
        done = False
        while it < max_iterations and not done:
            hamiltonian, diffusion, lx, gx, ux, ly, gy, uy = upwind_terms_2d(
                u, dx, dy, nu, control_cost, count_x, count_y, periodic_x, periodic_y
            )
            residual = u / dt - diffusion + hamiltonian - rhs
            flat = residual.reshape(size)
            size_r = 0.0
            for k in range(size):
                size_r = _max_abs(size_r, flat[k])
            floor = (0.1 / dt) * tol
            atol = krylov_tolerance * size_r
            if not (atol >= floor):  # the array version's maximum, NaN kept
                atol = floor if atol == atol else atol
            if size_r <= atol:  # solved by the start (zero): as the ordered solver skips
                delta = zeros
                used = 0
            else:
                order = bucket_order(u.reshape(size), False)
                center, coefficients, neighbours = ordered_five_point(
                    diag0, (lx, gx, ux, ly, gy, uy), periodic_x, periodic_y, False, order
                )
                delta, used, _ = ordered_bicgstab(
                    center, coefficients, neighbours, order, flat, zeros, atol, max_krylov
                )
            new_step = 0.0
            for k in range(size):
                new_step = _max_abs(new_step, delta[k])
            rate = new_step / step
            done = (new_step <= tol) or (it >= 1 and rate < 0.5 and 2.0 * rate * new_step <= tol)
            u = u - delta.reshape(nx, ny)
            it += 1
            step = new_step
            krylov += used
        U[n] = u
        if not done:
            failures += 1
        most = max(most, it)
    return U, failures, most, krylov


@numba.njit(cache=True, error_model="numpy", nogil=True)
def fp_march_2d(
    U,
    m0,
    dx,
    dy,
    dt,
    nu,
    control_cost,
    count_x,
    count_y,
    periodic_x,
    periodic_y,
    krylov_tolerance,
    max_krylov,
):  # pragma: no cover - compiled
    """``(M, krylov)`` of the 2D forward march, all levels in one call.

    The march of :func:`mfg_pde.alg.numerical.fp_fdm.make_fp_march_2d` with the compiled
    pieces it calls on numpy with numba, in the same order: per level, the operator at
    ``U^n`` (:func:`~mfg_pde.backends._numba_kernels.upwind_terms_2d`), ``A^T M^{n+1} =
    M^n / dt`` by the ordered Gauss-Seidel BiCGSTAB from ``M^n`` to ``krylov_tolerance
    max |M^n / dt|``, then the mass of ``M^n`` restored. The one difference is that
    sum, a plain loop here where NumPy sums pairwise: the densities agree to round-off.
    """
    levels = U.shape[0] - 1
    nx, ny = m0.shape
    size = nx * ny
    M = np.empty_like(U)
    M[0] = m0
    diag0 = 1.0 / dt
    krylov = 0
    for n in range(levels):
        m = M[n]
        _, _, lx, gx, ux, ly, gy, uy = upwind_terms_2d(
            U[n], dx, dy, nu, control_cost, count_x, count_y, periodic_x, periodic_y
        )
        rhs = (m / dt).reshape(size)
        start = m.reshape(size)
        largest = 0.0
        nonzero = False
        for k in range(size):
            largest = _max_abs(largest, rhs[k])
            nonzero = nonzero or start[k] != 0.0
        atol = krylov_tolerance * largest
        if not nonzero and largest <= atol:  # solved by the start, as the solver skips
            m_next = start.copy()
        else:
            order = bucket_order(U[n].reshape(size), True)
            center, coefficients, neighbours = ordered_five_point(
                diag0, (lx, gx, ux, ly, gy, uy), periodic_x, periodic_y, True, order
            )
            m_next, used, _ = ordered_bicgstab(
                center, coefficients, neighbours, order, rhs, start, atol, max_krylov
            )
            krylov += used
        M[n + 1] = (m_next * (np.sum(m) / np.sum(m_next))).reshape(nx, ny)
    return M, krylov


@numba.njit(cache=True, nogil=True)
def equation_residual_2d(
    U, M, f, dx, dy, dt, nu, control_cost, count_x, count_y, periodic_x, periodic_y, F, G, n0, n1
):  # pragma: no cover - compiled
    """``(F, G)`` of :func:`mfg_pde.alg.numerical._residual.make_equation_residual` in 2D,
    level by level in one pass (the array version makes ~60 passes over blocks of
    levels): ``F_n = (U^n - U^{n+1}) / dt - ν Δ_h U^n + H(U^n) - f_n`` and
    ``G_n = A(U^n)^T M^{n+1} - M^n / dt``, with the terms of
    :func:`~mfg_pde.backends._numba_kernels.upwind_terms_2d` and ``A^T`` applied as the
    array version applies it (``diag0 v`` plus each axis' transposed line product, x
    first), in the same order of operations. ``f[n]`` is the running cost at level
    ``n + 1``. Fills the levels ``n0 <= n < n1`` of ``F`` and ``G`` (each level on its
    own: ranges of levels can run in threads, the GIL released)."""
    nx, ny = U.shape[1], U.shape[2]
    diag0 = 1.0 / dt
    for n in range(n0, n1):
        hamiltonian, diffusion, lx, gx, ux, ly, gy, uy = upwind_terms_2d(
            U[n], dx, dy, nu, control_cost, count_x, count_y, periodic_x, periodic_y
        )
        v = M[n + 1]
        for i in range(nx):
            im = i - 1 if i > 0 else nx - 1
            ip = i + 1 if i < nx - 1 else 0
            for j in range(ny):
                F[n, i, j] = (
                    (U[n, i, j] - U[n + 1, i, j]) / dt
                    - diffusion[i, j]
                    + hamiltonian[i, j]
                    - f[n, i, j]
                )
                jm = j - 1 if j > 0 else ny - 1
                jp = j + 1 if j < ny - 1 else 0
                # A^T's x line at (i, j): lower'[i] = upper[i - 1], upper'[i] = lower[i + 1]
                # (cyclic indices: the stray ends are multiplied by a zero neighbour on
                # no-flux axes, as the array version's shifted vectors do).
                left = v[im, j] if (i > 0 or periodic_x) else 0.0
                right = v[ip, j] if (i < nx - 1 or periodic_x) else 0.0
                along_x = ux[im, j] * left + gx[i, j] * v[i, j] + lx[ip, j] * right
                left = v[i, jm] if (j > 0 or periodic_y) else 0.0
                right = v[i, jp] if (j < ny - 1 or periodic_y) else 0.0
                along_y = uy[i, jm] * left + gy[i, j] * v[i, j] + ly[i, jp] * right
                G[n, i, j] = (diag0 * v[i, j] + along_x + along_y) - M[n, i, j] / dt


#: The compiled particle march splits the particles into this many fixed chunks (by
#: index), marches each in its own thread (the kernels release the GIL) and bins each
#: onto its own fine grid; the grids are summed in chunk order. The chunks do not
#: depend on the number of threads, so neither does the result: one thread runs the
#: same chunks one after the other (``NUMBA_NUM_THREADS=1``, one core, or a march too
#: small to be worth a thread, :data:`PARTICLE_THREAD_MIN_STEPS`).
PARTICLE_CHUNKS = 2

#: Particle steps (particles x time steps) below which the chunks run in the calling
#: thread: starting a thread costs ~50-100 µs, ~10^4 particle steps.
PARTICLE_THREAD_MIN_STEPS = 200_000

#: The most bytes the chunks' fine grids take: the steps are marched, binned and
#: smoothed in blocks of as many levels as fit (the hello problem's 50 levels of
#: 41,089 fine points go in two blocks of 25; 1000 levels in 40). A solver's first march
#: touches this memory for the first time: 16 MB took 45 ms against 78 ms for 64 MB
#: (median of 6, hello, 10^5 particles), later marches the same ~26 ms either way.
PARTICLE_GRID_BYTES = 2**24


class ParticleMarch1D:
    """The whole 1D particle march of one solver, compiled: ``shift -> density``.

    Built once per solver from its draws (the initial positions ``x0`` (N,) and the
    standard normals ``normals`` (Nt, N), scaled by ``noise_scale = σ √dt``) and its
    KDE plan (a host :class:`~mfg_pde.backends._kde.BinnedKDE`); each call takes
    ``shift`` (Nt, G), the drift ``-∇u dt / λ`` on the grid ``start + spacing * j`` per
    step (periodic grids close it with their seam value), and returns the KDE of the
    particles after every step, ``(Nt, G)``, each level normalised to integrate to 1
    (``sum * cell_volume``).

    Step n moves each particle by ``interp(shift[n]) + noise_scale * normals[n]``, folds
    it into ``[lo, hi]`` and bins it linearly onto the plan's fine grid; the formulas are those
    of :func:`~mfg_pde.backends._numba_kernels.interp_uniform`,
    :func:`~mfg_pde.backends._numba_kernels.fold_into_interval` and
    :func:`~mfg_pde.backends._numba_kernels.linear_binning`, with the divisions by the
    spacings replaced by products with their reciprocals. The particles are marched in
    :data:`PARTICLE_CHUNKS` fixed chunks, one thread each, into one fine grid each
    (buffers kept between calls, at most :data:`PARTICLE_GRID_BYTES`, so the steps go
    in blocks of levels; each row is cleared by the kernel when its step starts, and is
    as wide as a banded plan's padded rows so that its smoothing reads it in place).
    After each block the grids are summed in chunk order, the images added in place and
    the block's levels smoothed by the plan at once, a banded plan with one BLAS product
    (~4x faster than the small-product path on the hello problem's 50 levels). So the
    result equals the step-by-step march with the same plan to round-off, and is the
    same for every number of threads.
    """

    def __init__(
        self, x0, normals, noise_scale, kde, start, spacing, lo, hi, periodic, cell_volume
    ):
        self.x0 = np.ascontiguousarray(x0, dtype=np.float64)
        self.normals = np.ascontiguousarray(normals, dtype=np.float64)
        self.noise_scale = float(noise_scale)
        self.kde = kde
        self.geometry = (float(start), float(spacing), float(lo), float(hi), bool(periodic))
        self.cell_volume = float(cell_volume)
        steps, n = self.normals.shape
        width = kde.banded_width if kde.smoothing == "banded" else kde.shape[0]
        self.block = min(steps, max(1, PARTICLE_GRID_BYTES // (8 * PARTICLE_CHUNKS * width)))
        self.grids = np.empty((PARTICLE_CHUNKS, self.block, width))
        self.bounds = [
            (c * n // PARTICLE_CHUNKS, (c + 1) * n // PARTICLE_CHUNKS)
            for c in range(PARTICLE_CHUNKS)
        ]
        threads = host_threads(PARTICLE_CHUNKS)
        self.threads = threads if n * steps >= PARTICLE_THREAD_MIN_STEPS else 1

    def __call__(self, shift: np.ndarray) -> np.ndarray:
        shift = np.ascontiguousarray(shift, dtype=np.float64)
        steps = shift.shape[0]
        positions = self.x0.copy()  # the kernels move their chunk's share in place
        out = np.empty((steps, self.kde.out_shape[0]))
        if self.threads == 1:
            for n0 in range(0, steps, self.block):
                self._block(shift, positions, n0, out, None)
        else:
            with ThreadPoolExecutor(self.threads) as pool:  # a pool per call: nothing to fork
                for n0 in range(0, steps, self.block):
                    self._block(shift, positions, n0, out, pool)
        return out / (np.sum(out, axis=-1, keepdims=True) * self.cell_volume)

    def _block(self, shift, positions, n0, out, pool) -> None:
        """Levels ``n0 ...`` (one block): march every chunk, then the KDE into ``out``."""
        kde, fine = self.kde, self.kde.shape[0]
        count = min(self.block, shift.shape[0] - n0)
        grids = self.grids[:, :count]
        args = (positions, self.normals, self.noise_scale, shift, *self.geometry)
        args += (kde.starts[0], kde.deltas[0])
        calls = [
            (*args, k0, k1, fine, n0, grid)
            for (k0, k1), grid in zip(self.bounds, grids, strict=True)
        ]
        if pool is None:
            for call in calls:
                _particle_march_range(*call)
        else:
            for job in [pool.submit(_particle_march_range, *call) for call in calls]:
                job.result()
        binned = grids[0]
        for grid in grids[1:]:
            np.add(binned, grid, out=binned)
        kde.add_images_in_place(binned[:, :fine])
        if kde.smoothing == "banded":
            out[n0 : n0 + count] = kde.smooth_padded(binned, matmul=np.matmul)
        else:
            out[n0 : n0 + count] = kde.smooth(binned)


@numba.njit(cache=True, nogil=True)
def _particle_march_range(
    x,
    normals,
    noise_scale,
    shift,
    start,
    spacing,
    lo,
    hi,
    periodic,
    bin_start,
    bin_spacing,
    k0,
    k1,
    size,
    n0,
    out,
):  # pragma: no cover - compiled
    """The march of :class:`ParticleMarch1D` for the particles ``k0 <= k < k1`` over
    the steps ``n0 ... n0 + len(out) - 1``: ``x[k0:k1]`` moved in place, step ``n0 + i``
    binned into the first ``size`` points of ``out[i]`` (rows ``>= size`` long), each
    row cleared when its step starts (the points past ``size`` stay zero: a banded
    plan's padding)."""
    n_grid = shift.shape[1]
    last = float(n_grid - 1)
    length = hi - lo
    upper = float(size)
    inverse_spacing = 1.0 / spacing
    inverse_bin = 1.0 / bin_spacing
    local = x[k0:k1].copy()  # a fresh array: the compiler knows no write to it aliases
    for level in range(out.shape[0]):
        n = n0 + level
        row = out[level]
        row[:] = 0.0
        drifts = shift[n]
        steps = normals[n, k0:k1]
        # Two passes per step: the moves (no scattered writes, so nothing the compiler
        # must assume aliases the particles), then the binning. Measured on the hello
        # problem, 5 * 10^4 particles x 50 steps: 12.8 ms against 18.3 ms in one pass.
        for k in range(k1 - k0):
            v = local[k]
            s = (v - start) * inverse_spacing
            if s != s:
                drift = s
            else:
                s = min(max(s, 0.0), last)
                cell = min(int(s), n_grid - 2)
                w = s - cell
                drift = (1.0 - w) * drifts[cell] + w * drifts[cell + 1]
            v = v + drift + noise_scale * steps[k]
            if lo <= v < hi:
                pass
            elif periodic:
                y = (v - lo) * (1.0 / length)
                v = lo + length * (y - math.floor(y))
            elif v == hi:
                pass
            else:
                y = (v - lo) * (0.5 / length)
                v = hi - abs((2.0 * length) * (y - math.floor(y)) - length)
            local[k] = v
        for k in range(k1 - k0):
            b = (local[k] - bin_start) * inverse_bin
            if b >= 0.0 and b < upper - 1.0:  # both neighbours on the grid: int() is floor
                i = int(b)
                f = b - i
                row[i] += 1.0 - f
                row[i + 1] += f
            elif b >= -1.0 and b <= upper:
                c = math.floor(b)
                f = b - c
                i = int(c)
                if 0 <= i < size:
                    row[i] += 1.0 - f
                if i + 1 < size:
                    row[i + 1] += f
            elif b != b:
                row[0] += b
    x[k0:k1] = local
