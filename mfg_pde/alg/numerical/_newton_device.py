"""The Newton step matrix-free on the backend's arrays (jax, torch): nothing leaves the device.

:class:`~mfg_pde.alg.numerical.newton.NewtonSolver` uses this on backends whose arrays
are not host NumPy arrays (``not backend.is_host_numpy``); numpy and numba keep the
SciPy reference path (:mod:`~mfg_pde.alg.numerical._newton_linear`), which assembles
the same Jacobian as a sparse matrix. Here the Jacobian is never assembled: its
per-level pieces (:func:`make_linearisation`) are ``(Nt, Nx)`` arrays and

* ``J v`` (:func:`make_operators`) is two tridiagonal products per level, the
  ``-I/dt`` shifts in time, the coupling ``-∂f/∂m`` (a diagonal for a local cost, a
  dense ``Nx x Nx`` block per level for a nonlocal one) and the edge-weight form of
  ``dG/dU`` (for the edge ``k`` joining nodes ``k`` and ``k + 1`` with weight ``w_k``,
  the flux ``w_k (v_k - v_{k+1})`` enters row ``k`` and leaves row ``k + 1``);
* the preconditioner ``P^{-1}`` is the two decoupled linearised marches, through
  :meth:`BaseBackend.march_tridiagonal` (a ``lax.scan`` on jax, one numba call on the
  tensors' memory on a CPU torch);
* GMRES is :mod:`~mfg_pde.alg.numerical._gmres` (basis on the device, one small host
  read per Arnoldi step).

On jax the residual, the linearisation, ``J v``, ``P^{-1}`` and ``J P^{-1}`` are compiled, once
per structure (:func:`~mfg_pde.alg.numerical._base.compiled_program`: every σ of a
continuation reuses them).

``∂f/∂m``: for a local cost that the complex step differentiates exactly
(:mod:`~mfg_pde.alg.numerical._coupling`), it is computed on the device (one complex
evaluation of the running cost per Newton step). A nonlocal cost's dense blocks, and
costs that only JAX's autodiff differentiates, are computed on the host as on the
reference path and copied to the device once per Newton step (``M`` to the host and
``Nt Nx`` or ``Nt Nx²`` numbers back): outside the GMRES, but a transfer per step.

The sparse LU (``linear_solver="lu"``, or the fallback when GMRES does not converge)
runs on the host: the iterate is copied there and the step back.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde.alg.numerical import _stencils as st
from mfg_pde.alg.numerical._base import compiled_program, problem_arrays, running_costs
from mfg_pde.alg.numerical._coupling import coupling_jacobian, coupling_on_device
from mfg_pde.alg.numerical._gmres import gmres
from mfg_pde.alg.numerical._newton_jacobian import linearisation
from mfg_pde.alg.numerical._newton_linear import lu_step
from mfg_pde.alg.numerical._residual import make_equation_residual
from mfg_pde.backends import BaseBackend, create_backend

#: Step of the complex-step derivative of the running cost (no cancellation: any
#: small value is exact to rounding).
COMPLEX_STEP = 1e-30


def make_linearisation(backend: BaseBackend, running_cost: Any, periodic: bool, coupling: bool):
    """A pure ``(arrays, U, M) -> parts``: the Jacobian's per-level pieces at ``(U, M)``.

    ``parts``: ``"hjb"`` the ``(lower, diag, upper)`` of ``dF_n/dU^n``, ``"fp"`` its
    transpose (``dG_n/dM^{n+1}``), ``"weight"`` the edge weights of ``dG_n/dU^n``
    (``(M_k 1[D_k < 0] + M_{k+1} 1[D_k > 0]) / (λ dx²)`` for the slope ``D_k`` between
    nodes ``k`` and ``k + 1``; zero at a no-flux wall, whose ghost slope is 0),
    ``"inv_dt"``, and with ``coupling`` the diagonal ``"df"`` of ``∂f/∂m`` by the
    complex step. Arrays ``(Nt, Nx)``.
    """
    xp = backend.xp

    def linearise(arrays: dict, U: Any, M: Any) -> dict:
        c = arrays["c"]
        a, b, d = st.upwind_derivatives(xp, U[:-1, ...], c, periodic)
        diag0 = 1.0 / c.dt + (c.nu / (c.dx * c.dx)) * arrays["counts"]
        hjb = st.hjb_jacobian_from_slopes(a, b, diag0, c)
        m = M[1:, ...]
        slope = d[..., 1:]
        downhill = xp.astype(slope < 0, m.dtype) * m
        uphill = xp.astype(slope > 0, m.dtype) * xp.roll(m, -1, axis=-1)
        parts = {
            "hjb": hjb,
            "fp": st.transpose(xp, *hjb),
            "weight": (downhill + uphill) / (c.control_cost * c.dx * c.dx),
            "inv_dt": 1.0 / c.dt,
        }
        if coupling:
            probe = xp.astype(m, xp.complex128) + COMPLEX_STEP * 1j
            costs = running_costs(backend, running_cost, arrays, probe, arrays["t"][1:])
            parts["df"] = xp.imag(costs) / COMPLEX_STEP
        return parts

    return linearise


def make_operators(backend: BaseBackend, periodic: bool) -> dict:
    """Pure functions of ``(parts, v)`` on flat vectors ``[dU^0..dU^{Nt-1}, dM^1..dM^Nt]``:
    ``"jvp"`` (``J v``), ``"precondition"`` (``P^{-1} v``, the decoupled marches) and
    ``"operator"`` (``J P^{-1} v``, what right-preconditioned GMRES iterates on)."""
    xp = backend.xp

    def split(parts: dict, v: Any) -> tuple[Any, Any]:
        shape = parts["weight"].shape
        half = shape[0] * shape[1]
        return xp.reshape(v[:half], shape), xp.reshape(v[half:], shape)

    def joined(du: Any, dm: Any) -> Any:
        return xp.concat([xp.reshape(du, (-1,)), xp.reshape(dm, (-1,))])

    def dg_du(weight: Any, du: Any) -> Any:
        flux = weight * (du - xp.roll(du, -1, axis=-1))
        return flux - xp.roll(flux, 1, axis=-1)

    def coupling(df: Any, dm: Any) -> Any:
        if df.ndim == dm.ndim:  # local: the diagonal
            return df * dm
        return xp.matmul(df, dm[..., None])[..., 0]

    def jvp(parts: dict, v: Any) -> Any:
        du, dm = split(parts, v)
        zero = xp.zeros_like(du[:1, ...])
        later = xp.concat([du[1:, ...], zero])  # U^{Nt} = g is fixed
        earlier = xp.concat([zero, dm[:-1, ...]])  # M^0 = m0 is fixed
        jf = st.tridiagonal_matvec(xp, *parts["hjb"], du, periodic)
        jf = jf - parts["inv_dt"] * later - coupling(parts["df"], dm)
        jg = st.tridiagonal_matvec(xp, *parts["fp"], dm, periodic)
        jg = jg - parts["inv_dt"] * earlier + dg_du(parts["weight"], du)
        return joined(jf, jg)

    def precondition(parts: dict, v: Any) -> Any:
        # P = [[dF/dU, 0], [dG/dU, dG/dM]]: the backward HJB march, then the forward
        # FP march with the HJB part's effect moved to the right side.
        yu, ym = split(parts, v)
        inv_dt = parts["inv_dt"]
        du = backend.march_tridiagonal(*parts["hjb"], yu, inv_dt, True, periodic)
        rhs = ym - dg_du(parts["weight"], du)
        dm = backend.march_tridiagonal(*parts["fp"], rhs, inv_dt, False, periodic)
        return joined(du, dm)

    def operator(parts: dict, v: Any) -> Any:
        return jvp(parts, precondition(parts, v))

    return {"jvp": jvp, "precondition": precondition, "operator": operator}


class DeviceNewton:
    """The residual and the linear step of :class:`NewtonSolver` on ``backend``'s arrays.

    ``residual(U, M)`` and ``step(...)`` take and return backend arrays; see the module
    docstring for what runs where.
    """

    def __init__(self, problem: MFGProblem, backend: BaseBackend) -> None:
        self.problem, self.backend = problem, backend
        periodic = problem.boundary == "periodic"
        self.periodic = periodic
        self.arrays = problem_arrays(problem, backend)
        #: Whether ∂f/∂m is computed on the device (see the module docstring).
        self.coupling_on_device = coupling_on_device(problem)
        cost = problem.running_cost
        self.residual_program = compiled_program(
            backend,
            ("newton-residual", cost, periodic),
            lambda: make_equation_residual(backend, cost, periodic),
        )[0]
        self.linearise = compiled_program(
            backend,
            ("newton-linearise", cost, periodic, self.coupling_on_device),
            lambda: make_linearisation(backend, cost, periodic, self.coupling_on_device),
        )[0]
        plain = make_operators(backend, periodic)
        self.ops = {
            name: compiled_program(backend, (f"newton-{name}", periodic), lambda f=f: f)[0]
            for name, f in plain.items()
        }
        self._host_arrays: dict | None = None

    def residual(self, U: Any, M: Any) -> tuple[Any, Any]:
        """``(F, G)`` at ``(U, M)``, backend arrays ``(Nt, Nx)``."""
        return self.residual_program(self.arrays, U, M)

    def parts(self, U: Any, M: Any) -> dict:
        """The linearisation at ``(U, M)``, with ``"df"`` (from the host where the module
        docstring says so)."""
        parts = self.linearise(self.arrays, U, M)
        if not self.coupling_on_device:
            b = self.backend
            df = coupling_jacobian(self.problem, b.to_numpy(M[1:, ...]))
            parts = {**parts, "df": b.from_numpy(np.ascontiguousarray(df))}
        return parts

    def step(
        self,
        U: Any,
        M: Any,
        F: Any,
        G: Any,
        rtol: float,
        atol: float,
        timings: dict,
        linear_solver: str,
        restart: int,
        cycles: int,
        ordering: str,
    ) -> tuple[Any, Any, dict]:
        """The Newton step ``(dU^0..dU^{Nt-1}, dM^1..dM^Nt)`` solving ``J s = -(F, G)``,
        as :func:`~mfg_pde.alg.numerical._newton_linear.linear_step` (same ``info``,
        with ``"host"`` True when the LU on the host took the step)."""
        b, xp = self.backend, self.backend.xp
        info: dict[str, Any] = {"solver": linear_solver, "iterations": 0, "residual": 0.0}
        if linear_solver == "gmres":
            t0 = time.perf_counter()
            parts = self.parts(U, M)
            timings["jacobian"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            rhs = -xp.concat([xp.reshape(F, (-1,)), xp.reshape(G, (-1,))])
            ops = self.ops
            y, out = gmres(
                b,
                lambda v: ops["operator"](parts, v),
                rhs,
                rtol,
                atol,
                restart,
                cycles,
            )
            step = ops["precondition"](parts, y)
            gap = ops["jvp"](parts, step) - rhs
            sizes = b.to_numpy(xp.stack([xp.sum(gap * gap), xp.sum(rhs * rhs)]))
            residual, b_norm = (float(np.sqrt(v)) for v in sizes)
            b_norm = max(b_norm, 1e-300)
            info["iterations"] = out["iterations"]
            info["residual"] = residual / b_norm
            timings["linear_solve"] += time.perf_counter() - t0
            if not residual <= max(rtol * b_norm, atol) * (1.0 + 1e-8):
                info["solver"] = "lu (gmres did not converge)"
            else:
                half = int(np.prod(F.shape))
                return xp.reshape(step[:half], F.shape), xp.reshape(step[half:], F.shape), info
        return self._lu_step(U, M, F, G, timings, ordering, info)

    def _lu_step(self, U, M, F, G, timings, ordering, info) -> tuple[Any, Any, dict]:
        """The sparse LU step on the host (copies in and out)."""
        b = self.backend
        t0 = time.perf_counter()
        if self._host_arrays is None:
            self._host_arrays = problem_arrays(self.problem, create_backend("numpy"))
        U_h, M_h, F_h, G_h = (np.asarray(b.to_numpy(v), dtype=np.float64) for v in (U, M, F, G))
        blocks, _ = linearisation(self.problem, self._host_arrays, U_h, M_h)
        timings["jacobian"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        du, dm = lu_step(self.problem, blocks, F_h, G_h, ordering)
        timings["linear_solve"] += time.perf_counter() - t0
        info["residual"], info["host"] = 0.0, True
        return b.from_numpy(du), b.from_numpy(dm), info
