"""Array kernels of the adaptive mesh, written once on the backend's Array-API namespace.

Error indicators, level-scaled thresholds and field transfers between leaf sets are pure
functions of arrays: they run through ``backend.xp`` and ``backend.scatter_add`` and are
compiled with ``backend.jit`` (``jax.jit`` on JAX; unchanged on numpy, numba and torch).
Batched versions map a kernel over a leading axis of fields: ``jax.vmap`` on JAX, a loop
and a stack elsewhere.

JAX compiles one program per input shape, and every adapted mesh has a new number of
leaves. On JAX, leaf and piece arrays are therefore padded to the next power of two
(at least 64): a mesh growing from 10^2 to 10^6 leaves triggers ~15 compilations, not one
per adapt. Padded leaves have no neighbours and padded pieces have zero weight, so they
change nothing; results are cut back to the true length.

The geometry of a leaf set (neighbour displacements, least-squares matrices) depends on
the mesh only and is prepared once per mesh on the host (:func:`leaf_geometry`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from mfg_pde.backends import BaseBackend
from mfg_pde.geometry._quadtree import LeafSet, Overlap

#: Variations of a field smaller than this fraction of its magnitude count as flat: the
#: indicators are scaled by the field's range, and round-off must not look like a front.
FLAT_RTOL = 1e-8
#: Added to the range so that a field that is exactly constant has indicator 0, not 0/0.
TINY = float(np.finfo(np.float64).tiny)
#: Smallest padded length on JAX.
MIN_BUCKET = 64


def padded_length(n: int, backend: BaseBackend) -> int:
    """Length that arrays of ``n`` leaves or pieces are padded to on ``backend``."""
    if not backend.fixed_shapes:
        return n
    return max(MIN_BUCKET, 1 << max(0, (n - 1).bit_length()))


class Stencil(NamedTuple):
    """Per-leaf stencil arrays on the backend (a pytree, so JAX can compile over it).

    ``nbr`` (n, 8) neighbour indices (the leaf itself where there is none), ``dx``, ``dy``
    (n, 8) neighbour centre minus leaf centre (0 where none), ``w`` (n, 8) least-squares
    weights 1/|d|^2 (0 where none), ``inv`` (n, 3) entries (11, 12, 22) of the inverse of
    the weighted normal matrix (0 where it is singular), ``h`` (n, 2) sides, ``wall`` (n, 4)
    1 where the -x, +x, -y, +y edge is on the boundary, ``level`` (n,) levels as floats.
    """

    nbr: Any
    dx: Any
    dy: Any
    w: Any
    inv: Any
    h: Any
    wall: Any
    level: Any


@dataclass(frozen=True)
class LeafGeometry:
    """The stencils of ``n`` leaves, padded to ``size`` rows on JAX."""

    n: int
    size: int
    stencil: Stencil


def least_squares_stencil(centres: np.ndarray, table: np.ndarray) -> tuple:
    """Each leaf's least-squares gradient over its (up to 8) edge neighbours, weights
    ``1/|d|^2``: ``(nbr, dx, dy, w, inv)`` with ``nbr``, ``dx``, ``dy``, ``w`` ``(n, 8)``
    (the leaf itself, 0, 0, 0 where there is no neighbour) and ``inv`` ``(n, 3)``, the
    entries (11, 12, 22) of the inverse weighted normal matrix (0 where it is singular:
    no neighbours in two directions). Then ``grad u_i = inv_i Σ_k w_k d_k (u_k - u_i)``,
    exact for linear ``u``. Host NumPy; the indicators and the adaptive solver's
    coarse-fine faces share it."""
    n = centres.shape[0]
    flat = np.asarray(table, dtype=np.int64).reshape(n, 8)
    valid = flat >= 0
    nbr = np.where(valid, flat, np.arange(n)[:, None])
    dx = np.where(valid, centres[nbr, 0] - centres[:, None, 0], 0.0)
    dy = np.where(valid, centres[nbr, 1] - centres[:, None, 1], 0.0)
    w = np.where(valid, 1.0 / np.where(valid, dx**2 + dy**2, 1.0), 0.0)
    a11, a12, a22 = (w * dx * dx).sum(1), (w * dx * dy).sum(1), (w * dy * dy).sum(1)
    det = a11 * a22 - a12**2
    ok = det > 1e-12 * np.maximum(a11 * a22, np.finfo(float).tiny)
    safe = np.where(ok, det, 1.0)
    inv = np.where(ok[:, None], np.stack([a22 / safe, -a12 / safe, a11 / safe], axis=1), 0.0)
    return nbr, dx, dy, w, inv


def leaf_geometry(leaves: LeafSet, table: np.ndarray, backend: BaseBackend) -> LeafGeometry:
    """Prepare the stencils of ``leaves`` from their neighbour table ``(n, 4, 2)``."""
    n = len(leaves)
    size = padded_length(n, backend)
    nbr, dx, dy, w, inv = (np.zeros((size, k)) for k in (8, 8, 8, 8, 3))
    nbr = np.tile(np.arange(size)[:, None], (1, 8))
    nbr[:n], dx[:n], dy[:n], w[:n], inv[:n] = least_squares_stencil(leaves.centres(), table)
    h = np.ones((size, 2))
    h[:n] = leaves.sizes()
    level = np.zeros(size)
    level[:n] = leaves.level
    wall = np.zeros((size, 4))
    wall[:n] = (table[:, :, 0] < 0).astype(float)
    put = backend.from_numpy
    stencil = Stencil(
        put(nbr.astype(np.int64)), put(dx), put(dy), put(w), put(inv), put(h), put(wall), put(level)
    )
    return LeafGeometry(n, size, stencil)


class PieceArrays(NamedTuple):
    """Overlap pieces on the backend: indices, weights, centre offsets, target zeros."""

    source: Any
    target: Any
    weight: Any
    offset_x: Any
    offset_y: Any
    target_zeros: Any


@dataclass(frozen=True)
class Pieces:
    """An :class:`~mfg_pde.geometry._quadtree.Overlap` on the backend, padded on JAX."""

    n_source: int
    n_target: int
    arrays: PieceArrays


def pieces_on(ov: Overlap, backend: BaseBackend) -> Pieces:
    """Move an overlap to the backend, padded with zero-weight pieces."""
    p = ov.source.shape[0]
    pad = padded_length(p, backend) - p

    def put(a):
        return backend.from_numpy(np.concatenate([a, np.zeros(pad, dtype=a.dtype)]))

    arrays = PieceArrays(
        put(ov.source.astype(np.int64)),
        put(ov.target.astype(np.int64)),
        put(ov.weight),
        put(ov.offset[:, 0]),
        put(ov.offset[:, 1]),
        backend.zeros(padded_length(ov.n_target, backend)),
    )
    return Pieces(ov.n_source, ov.n_target, arrays)


# -- the kernels (pure functions of backend arrays) ----------------------------------------


def _gather(xp, f, idx):
    return xp.reshape(xp.take(f, xp.reshape(idx, (-1,)), axis=0), idx.shape)


def _gradient(xp, f, geo: Stencil):
    """Weighted least-squares gradient (exact for linear fields) and the misfit per neighbour.

    Minimises ``sum_n w_n (f_n - f - g . d_n)^2`` with ``w_n = 1/|d_n|^2``.
    """
    df = _gather(xp, f, geo.nbr) - f[:, None]
    b1 = xp.sum(geo.w * geo.dx * df, axis=1)
    b2 = xp.sum(geo.w * geo.dy * df, axis=1)
    gx = geo.inv[:, 0] * b1 + geo.inv[:, 1] * b2
    gy = geo.inv[:, 1] * b1 + geo.inv[:, 2] * b2
    misfit = df - gx[:, None] * geo.dx - gy[:, None] * geo.dy
    return gx, gy, misfit


def _indicator(xp, f, geo: Stencil, gradient_weight, curvature_weight):
    """``(gw h |grad f| + cw h^2 |curv f|) / range(f)`` per leaf, ``h`` the longer side.

    The curvature is ``max_n 2 |f_n - f - g . d_n| / |d_n|^2``: the second derivative
    along the neighbour directions, zero for linear fields.
    """
    gx, gy, misfit = _gradient(xp, f, geo)
    curvature = xp.max(2.0 * xp.abs(misfit) * geo.w, axis=1)
    h = xp.maximum(geo.h[:, 0], geo.h[:, 1])
    big = xp.max(xp.abs(f))
    scale = xp.maximum(xp.max(f) - xp.min(f), FLAT_RTOL * big) + TINY
    raw = gradient_weight * h * xp.sqrt(gx * gx + gy * gy) + curvature_weight * h * h * curvature
    return raw / scale


def _threshold(xp, level, error_threshold, level_scaling):
    """``error_threshold * level_scaling**level`` per leaf."""
    return error_threshold * level_scaling**level


def _limited_gradient(xp, f, geo: Stencil):
    """Least-squares gradient scaled by the Barth–Jespersen limiter.

    The linear reconstruction ``f + phi g . (x - c)`` over the leaf (its extremes are at
    the corners) stays within the values of the leaf and its neighbours; at a wall the
    mirror image of the neighbour, extrapolated with the unlimited gradient, takes part,
    so linear fields keep their gradient exactly (phi = 1) everywhere.
    """
    gx, gy, _ = _gradient(xp, f, geo)
    fn = _gather(xp, f, geo.nbr)  # the leaf itself where a neighbour is missing
    hx, hy = geo.h[:, 0], geo.h[:, 1]
    ghost = xp.stack([f - gx * hx, f + gx * hx, f - gy * hy, f + gy * hy], axis=1)
    ghost = xp.where(geo.wall > 0.5, ghost, f[:, None])
    upper = xp.maximum(xp.max(fn, axis=1), xp.max(ghost, axis=1)) - f
    lower = f - xp.minimum(xp.min(fn, axis=1), xp.min(ghost, axis=1))
    reach = 0.5 * (xp.abs(gx) * hx + xp.abs(gy) * hy)
    room = xp.minimum(upper, lower)
    phi = xp.where(reach > room, room / xp.where(reach > 0.0, reach, 1.0), 1.0)
    return gx * phi, gy * phi


def _conservative(backend, f, pc: PieceArrays):
    """Cell averages on the target: ``sum over pieces of f[source] * area_piece / area_target``."""
    xp = backend.xp
    contrib = xp.take(f, pc.source, axis=0) * pc.weight
    return backend.scatter_add(pc.target_zeros, pc.target, contrib)


def _smooth(backend, f, geo: Stencil, pc: PieceArrays):
    """Averages of the limited linear reconstruction of ``f`` over the target leaves."""
    xp = backend.xp
    gx, gy = _limited_gradient(xp, f, geo)
    value = (
        xp.take(f, pc.source, axis=0)
        + xp.take(gx, pc.source, axis=0) * pc.offset_x
        + xp.take(gy, pc.source, axis=0) * pc.offset_y
    )
    return backend.scatter_add(pc.target_zeros, pc.target, value * pc.weight)


class AMRKernels:
    """The array kernels of one backend, compiled once and reused.

    Obtain with :func:`amr_kernels` (one instance per backend). Every method takes and
    returns backend arrays; fields are ``(n,)`` or, for the batched variants, ``(B, n)``.
    """

    def __init__(self, backend: BaseBackend) -> None:
        self.backend = backend
        xp = backend.xp

        def indicator(f, geo, gw, cw):
            return _indicator(xp, f, geo, gw, cw)

        def threshold(level, base, scaling):
            return _threshold(xp, level, base, scaling)

        def conservative(f, pc):
            return _conservative(backend, f, pc)

        def smooth(f, geo, pc):
            return _smooth(backend, f, geo, pc)

        self._indicator = backend.jit(indicator)
        self._threshold = backend.jit(threshold)
        self._conservative = backend.jit(conservative)
        self._smooth = backend.jit(smooth)
        self._indicator_b = _batched(backend, indicator)
        self._conservative_b = _batched(backend, conservative)
        self._smooth_b = _batched(backend, smooth)

    # Fields arrive with n entries (or (B, n)); on JAX they are padded to the geometry's
    # length with their first value, which leaves max, min and range unchanged.
    def _pad(self, f: Any, size: int) -> Any:
        xp = self.backend.xp
        n = f.shape[-1]
        if n == size:
            return f
        fill = xp.broadcast_to(f[..., :1], (*f.shape[:-1], size - n))
        return xp.concat([f, fill], axis=-1)

    def indicator(
        self, f: Any, geo: LeafGeometry, gradient_weight: float, curvature_weight: float
    ) -> Any:
        """Gradient + curvature error indicator per leaf (see :func:`_indicator`)."""
        fn = self._indicator_b if f.ndim == 2 else self._indicator
        out = fn(self._pad(f, geo.size), geo.stencil, gradient_weight, curvature_weight)
        return out[..., : geo.n]

    def threshold(self, geo: LeafGeometry, error_threshold: float, level_scaling: float) -> Any:
        """Refinement threshold per leaf, ``error_threshold * level_scaling**level``."""
        return self._threshold(geo.stencil.level, error_threshold, level_scaling)[: geo.n]

    def conservative(self, f: Any, pc: Pieces) -> Any:
        """Conservative transfer of cell averages (densities) along ``pc``."""
        size = padded_length(pc.n_source, self.backend)
        fn = self._conservative_b if f.ndim == 2 else self._conservative
        return fn(self._pad(f, size), pc.arrays)[..., : pc.n_target]

    def smooth(self, f: Any, geo: LeafGeometry, pc: Pieces) -> Any:
        """Gradient-preserving transfer (value functions); ``geo`` is the source's."""
        fn = self._smooth_b if f.ndim == 2 else self._smooth
        return fn(self._pad(f, geo.size), geo.stencil, pc.arrays)[..., : pc.n_target]


def _batched(backend: BaseBackend, fn: Callable) -> Callable:
    """Map ``fn(field, *rest)`` over the leading axis of ``field``."""
    return backend.jit(backend.vmap(fn))


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def amr_kernels(backend: BaseBackend) -> AMRKernels:
    """The (cached) :class:`AMRKernels` of ``backend``."""
    kernels = _CACHE.get(backend)
    if kernels is None:
        kernels = _CACHE[backend] = AMRKernels(backend)
    return kernels
