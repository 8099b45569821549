r"""Finite volumes on the leaves of a quadtree: the 2D upwind scheme on an adaptive mesh.

The scheme is the uniform 2D one (:mod:`~mfg_pde.alg.numerical._grid2d`) written face
by face, so that it lives on any 2:1-balanced leaf set
(:func:`~mfg_pde.geometry._faces.leaf_faces`):

* every face ``f`` between leaves ``L`` (below) and ``R`` (above along the face's axis)
  carries a slope ``s_f``, the derivative of ``u`` along the axis across the face;
* leaf ``i``'s one-sided slopes along axis ``a`` are the length-weighted means of the
  slopes of its faces on that side, ``p^±_{a,i} = Σ_f |f| s_f / h^⊥_i`` (0 on a wall:
  no flux);
* the Godunov Hamiltonian ``H_i = Σ_a (min(p^+_{a,i}, 0)^2 + max(p^-_{a,i}, 0)^2) / (2λ)``
  and the diffusion ``ν (Δ_h u)_i = ν / |i| Σ_f ±|f| s_f`` (+ where ``i`` is ``L``).

Where all leaves have one level, ``s_f = (u_R - u_L) / h`` and this is the uniform
scheme term by term (the uniform grid's nodes are these leaves' centres, its reflecting
ghosts these walls). Across a coarse-fine face the two-point difference is not
consistent: the centres are offset by ``δ = ±h_fine/2`` along the face, and
``(u_R - u_L) / d`` picks up ``δ/d ∂_⊥u``, an O(1) error. The coarse leaf's value is
therefore moved to the fine leaf's transverse position with the coarse leaf's
least-squares gradient (the one the mesh's indicators use: neighbours weighted by
``1/|d|^2``, exact for linear functions):

.. math::
    s_f = \frac{u_R - u_L - (\partial_\perp u)_C\, δ_f}{d_f},

a ghost value by linear interpolation on the coarse side. ``s = S u`` is linear with a
fixed sparse ``S`` (the mesh only), exact for linear ``u``, and ``S 1 = 0``.

One implicit HJB step solves ``F(u) = (u - u^{n+1})/Δt - ν Δ_h u + H(u) - f = 0`` by
Newton with the exact Jacobian ``J(u) = I/Δt + K(u) S``, where ``K`` (cells x faces)
holds ``-ν`` times the diffusion weights plus ``min(p^+, 0)/λ`` or ``max(p^-, 0)/λ``
times the side weights. The FP step is its discrete adjoint in the area-weighted inner
product: with masses ``μ_i = |i| m_i``, ``J(U^n)^T μ^{n+1} = μ^n / Δt``. Since
``J 1 = 1/Δt`` (``S 1 = 0``), ``Σ μ`` is conserved exactly by an exact solve, whatever
the mesh. The correction's couplings can be of either sign, so positivity of ``M`` is
exact only on conforming faces; on the meshes tested the density stays positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from mfg_pde.geometry._amr_kernels import least_squares_stencil
from mfg_pde.geometry._faces import Faces, leaf_faces
from mfg_pde.geometry._quadtree import LeafSet

#: Slots of a leaf's one-sided slopes: -x, +x, -y, +y (as the neighbour table).
SLOTS = 4


@dataclass(frozen=True)
class LeafSystem:
    """The mesh-only parts of the scheme on one leaf set (host NumPy arrays).

    ``S`` as COO triples ``(s_face, s_cell, s_value)``; the leaf-face incidences ``e``
    with the leaf, the face, the slot (0..3: -x, +x, -y, +y) of the face on the leaf, the
    side weight ``|f| / h^⊥`` and the diffusion weight ``±|f| / |leaf|``; ``e_self`` is
    ``S[face_e, cell_e]`` (for the Jacobian's diagonal).
    """

    n: int
    n_faces: int
    areas: np.ndarray
    centres: np.ndarray
    s_face: np.ndarray
    s_cell: np.ndarray
    s_value: np.ndarray
    e_cell: np.ndarray
    e_face: np.ndarray
    e_slot: np.ndarray
    e_side: np.ndarray
    e_div: np.ndarray
    e_self: np.ndarray
    faces: Faces
    pattern: JacobianPattern

    def slope_matrix(self) -> sp.csr_matrix:
        """``S`` as a SciPy CSR matrix ``(n_faces, n)``."""
        return sp.csr_matrix(
            (self.s_value, (self.s_face, self.s_cell)), shape=(self.n_faces, self.n)
        )


@dataclass(frozen=True)
class JacobianPattern:
    """Where ``J = I/Δt + K S`` keeps its entries, fixed per mesh, so that each Newton
    step fills the values with one ``bincount`` instead of a sparse product.

    ``indptr``, ``indices``: ``J`` in CSR; ``t_indptr``, ``t_indices``, ``t_order``:
    ``J^T`` in CSR, its values ``J.data[t_order]``; each product term
    ``K[i, f] S[f, j]`` adds ``coefficient[term_e] * term_s`` to ``data[term_pos]``;
    ``diagonal`` is the position of each ``J[i, i]``.
    """

    indptr: np.ndarray
    indices: np.ndarray
    t_indptr: np.ndarray
    t_indices: np.ndarray
    t_order: np.ndarray
    term_e: np.ndarray
    term_s: np.ndarray
    term_pos: np.ndarray
    diagonal: np.ndarray

    def values(self, coefficients: np.ndarray, dt_inv: float) -> np.ndarray:
        """``J``'s CSR values for these coefficients (host NumPy)."""
        data = np.bincount(
            self.term_pos,
            weights=coefficients[self.term_e] * self.term_s,
            minlength=self.indices.shape[0],
        )
        data[self.diagonal] += dt_inv
        return data


def jacobian_pattern(n: int, e_cell, e_face, S: sp.csr_matrix) -> JacobianPattern:
    """The :class:`JacobianPattern` of ``I/Δt + K S`` with ``K``'s entries at
    ``(e_cell, e_face)`` and the slope matrix ``S`` (CSR)."""
    counts = np.diff(S.indptr)[e_face]
    term_e = np.repeat(np.arange(e_face.shape[0]), counts)
    starts = np.repeat(S.indptr[e_face], counts)
    within = np.arange(term_e.shape[0]) - np.repeat(np.cumsum(counts) - counts, counts)
    entry = starts + within
    rows = np.concatenate([e_cell[term_e], np.arange(n)])
    cols = np.concatenate([S.indices[entry], np.arange(n)])
    keys, inverse = np.unique(rows * n + cols, return_inverse=True)
    row, col = keys // n, keys % n
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=n))])
    t_order = np.lexsort((row, col))
    t_indptr = np.concatenate([[0], np.cumsum(np.bincount(col, minlength=n))])
    return JacobianPattern(
        indptr=indptr.astype(np.int64),
        indices=col.astype(np.int64),
        t_indptr=t_indptr.astype(np.int64),
        t_indices=row[t_order].astype(np.int64),
        t_order=t_order.astype(np.int64),
        term_e=term_e.astype(np.int64),
        term_s=S.data[entry],
        term_pos=inverse[: term_e.shape[0]].astype(np.int64),
        diagonal=inverse[term_e.shape[0] :].astype(np.int64),
    )


def leaf_system(leaves: LeafSet, table: np.ndarray) -> LeafSystem:
    """Build the scheme's mesh-only arrays for ``leaves`` (neighbour table ``(n, 4, 2)``)."""
    n = len(leaves)
    faces = leaf_faces(leaves, table)
    nf = len(faces)
    sizes, areas = leaves.sizes(), leaves.areas()
    f_idx = np.arange(nf)
    inv_d = 1.0 / faces.distance
    # Two-point part: (u_R - u_L) / d.
    rows = [f_idx, f_idx]
    cols = [faces.right, faces.left]
    vals = [inv_d, -inv_d]
    # Coarse-fine faces: minus (grad_perp u)_C * offset / d, C the coarser leaf.
    cf = np.flatnonzero(faces.coarse_fine)
    if cf.size:
        nbr, dx, dy, w, inv = least_squares_stencil(leaves.centres(), table)
        cx = w * (inv[:, 0:1] * dx + inv[:, 1:2] * dy)  # grad_x u_i = Σ_k cx[i, k] (u_k - u_i)
        cy = w * (inv[:, 1:2] * dx + inv[:, 2:3] * dy)
        left, right = faces.left[cf], faces.right[cf]
        coarse = np.where(leaves.level[left] < leaves.level[right], left, right)
        across = 1 - faces.axis[cf]
        coef = np.where(across[:, None] == 0, cx[coarse], cy[coarse])  # (m, 8)
        scale = -(faces.offset[cf] * inv_d[cf])[:, None]
        rows += [np.repeat(cf, 8), cf]
        cols += [nbr[coarse].ravel(), coarse]
        vals += [(scale * coef).ravel(), -(scale[:, 0] * coef.sum(1))]
    S = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(nf, n)
    ).tocsr()
    S.sum_duplicates()
    S.eliminate_zeros()
    S = S.tocoo()
    # Incidences: each face on its left leaf's + side and its right leaf's - side.
    axis = faces.axis
    e_cell = np.concatenate([faces.left, faces.right])
    e_face = np.concatenate([f_idx, f_idx])
    e_slot = np.concatenate([2 * axis + 1, 2 * axis])
    across = np.concatenate([1 - axis, 1 - axis])
    length = np.concatenate([faces.length, faces.length])
    e_side = length / sizes[e_cell, across]
    sign = np.concatenate([np.ones(nf), -np.ones(nf)])
    e_div = sign * length / areas[e_cell]
    S_csr = S.tocsr()
    S_csr.sort_indices()
    e_self = np.asarray(S_csr[e_face, e_cell]).ravel()
    return LeafSystem(
        n=n,
        n_faces=nf,
        areas=areas,
        centres=leaves.centres(),
        s_face=S.row.astype(np.int64),
        s_cell=S.col.astype(np.int64),
        s_value=S.data,
        e_cell=e_cell.astype(np.int64),
        e_face=e_face.astype(np.int64),
        e_slot=e_slot.astype(np.int64),
        e_side=e_side,
        e_div=e_div,
        e_self=e_self,
        faces=faces,
        pattern=jacobian_pattern(n, e_cell.astype(np.int64), e_face.astype(np.int64), S_csr),
    )


class LeafOperator:
    """The scheme's operators on a backend, for one leaf set (see the module docstring).

    All methods are pure array functions (they compile on jax): ``terms(u)`` gives the
    Hamiltonian, the diffusion and the Jacobian's coefficients; ``jacobian_apply``,
    ``jacobian_transpose_apply`` and ``jacobian_diagonal`` use the coefficients.
    """

    def __init__(self, system: LeafSystem, backend: Any) -> None:
        self.system = system
        self.backend = backend
        put = backend.from_numpy
        s = system
        self.n, self.n_faces = s.n, s.n_faces
        self.s_face, self.s_cell, self.s_value = put(s.s_face), put(s.s_cell), put(s.s_value)
        self.e_cell, self.e_face, self.e_slot = put(s.e_cell), put(s.e_face), put(s.e_slot)
        self.e_side, self.e_div, self.e_self = put(s.e_side), put(s.e_div), put(s.e_self)
        self.e_plus = put((s.e_slot % 2 == 1).astype(np.float64))
        self.e_index = put(s.e_cell * SLOTS + s.e_slot)
        self.areas = put(s.areas)

    def slopes(self, u: Any) -> Any:
        """``S u``: the face slopes."""
        b, xp = self.backend, self.backend.xp
        return b.scatter_add(
            b.zeros(self.n_faces), self.s_face, self.s_value * xp.take(u, self.s_cell)
        )

    def slopes_transpose(self, y: Any) -> Any:
        """``S^T y``."""
        b, xp = self.backend, self.backend.xp
        return b.scatter_add(b.zeros(self.n), self.s_cell, self.s_value * xp.take(y, self.s_face))

    def terms(self, u: Any, nu: Any, control_cost: Any) -> tuple[Any, Any, Any]:
        """``(H(u), ν Δ_h u, coefficients)`` where ``J(u) v = v/Δt + K(coefficients) S v``."""
        b, xp = self.backend, self.backend.xp
        slopes = xp.take(self.slopes(u), self.e_face)
        sides = b.scatter_add(b.zeros(SLOTS * self.n), self.e_index, self.e_side * slopes)
        p = xp.reshape(sides, (self.n, SLOTS))
        up = xp.minimum(p[:, 1::2], 0.0)  # +x, +y
        down = xp.maximum(p[:, 0::2], 0.0)  # -x, -y
        hamiltonian = xp.sum(up * up + down * down, axis=1) / (2.0 * control_cost)
        diffusion = nu * b.scatter_add(b.zeros(self.n), self.e_cell, self.e_div * slopes)
        side = xp.take(sides, self.e_index)
        active = self.e_plus * xp.minimum(side, 0.0) + (1.0 - self.e_plus) * xp.maximum(side, 0.0)
        coefficients = -nu * self.e_div + self.e_side * active / control_cost
        return hamiltonian, diffusion, coefficients

    def jacobian_apply(self, coefficients: Any, dt_inv: Any, v: Any) -> Any:
        """``J v = v/Δt + K S v``."""
        b, xp = self.backend, self.backend.xp
        ks = coefficients * xp.take(self.slopes(v), self.e_face)
        return dt_inv * v + b.scatter_add(b.zeros(self.n), self.e_cell, ks)

    def jacobian_transpose_apply(self, coefficients: Any, dt_inv: Any, v: Any) -> Any:
        """``J^T v = v/Δt + S^T K^T v``."""
        b, xp = self.backend, self.backend.xp
        kt = b.scatter_add(
            b.zeros(self.n_faces), self.e_face, coefficients * xp.take(v, self.e_cell)
        )
        return dt_inv * v + self.slopes_transpose(kt)

    def jacobian_diagonal(self, coefficients: Any, dt_inv: Any) -> Any:
        """The diagonal of ``J`` (for a Jacobi preconditioner)."""
        b = self.backend
        return dt_inv + b.scatter_add(b.zeros(self.n), self.e_cell, coefficients * self.e_self)

    def jacobian_matrix(
        self, coefficients: np.ndarray, dt_inv: float, transpose: bool = False
    ) -> sp.csr_matrix:
        """``J`` (``J^T`` with ``transpose``) as a SciPy CSR matrix with sorted indices
        (host NumPy coefficients)."""
        pattern, n = self.system.pattern, self.system.n
        data = pattern.values(np.asarray(coefficients), dt_inv)
        if transpose:
            parts = (data[pattern.t_order], pattern.t_indices, pattern.t_indptr)
        else:
            parts = (data, pattern.indices, pattern.indptr)
        matrix = sp.csr_matrix(parts, shape=(n, n))
        matrix.has_sorted_indices = True
        return matrix
