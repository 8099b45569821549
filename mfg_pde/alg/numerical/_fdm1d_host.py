"""Calling the compiled 1D passes (:meth:`~mfg_pde.backends.BaseBackend.fdm_1d_kernels`)
on a backend's arrays: one problem ``(Nt + 1, n)`` or a stack ``(Nt + 1, B, n)``.

The kernels read and write host NumPy memory (numpy's arrays; torch's CPU tensors
through their shared memory) and release the GIL.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def host_stack(backend: Any, values: Any) -> np.ndarray:
    """``values`` ``(levels, n)`` or ``(levels, B, n)`` as a C-ordered float64 host
    array ``(levels, B, n)`` (a view where the memory already is one)."""
    host = np.ascontiguousarray(backend.to_numpy(values), dtype=np.float64)
    return host.reshape(host.shape[0], -1, host.shape[-1])


def per_member(value: Any, members: int) -> np.ndarray:
    """A scheme constant (a float, or a ``(B, 1)`` column of a stack) as ``(B,)``."""
    return np.ascontiguousarray(
        np.broadcast_to(np.asarray(value, dtype=np.float64).reshape(-1), (members,))
    )


def fp_march(kernels, backend, arrays, U, periodic) -> Any:
    """The FP march (:func:`~mfg_pde.alg.numerical.fp_fdm.make_fp_march`) in one
    compiled pass; returns a backend array of ``U``'s shape."""
    stack = host_stack(backend, U)
    members, n = stack.shape[1], stack.shape[2]
    m0 = np.ascontiguousarray(
        np.broadcast_to(backend.to_numpy(arrays["m0"]), (members, n)), dtype=np.float64
    )
    out = np.empty_like(stack)
    kernels.fp_march_1d(
        stack,
        m0,
        *scheme_arguments(backend, arrays, members),
        bool(periodic),
        out,
        0,
        members,
    )
    return backend.from_numpy(out.reshape(tuple(U.shape)))


def equation_residual(kernels, backend, arrays, U, M, f, periodic) -> tuple:
    """``(F, G)`` of :func:`~mfg_pde.alg.numerical._residual.make_equation_residual` in
    one compiled pass, ``f`` the running costs at levels 1..Nt."""
    stack = host_stack(backend, U)
    members = stack.shape[1]
    F = np.empty((stack.shape[0] - 1, *stack.shape[1:]))
    G = np.empty_like(F)
    kernels.equation_residual_1d(
        stack,
        host_stack(backend, M),
        host_stack(backend, f),
        *scheme_arguments(backend, arrays, members),
        bool(periodic),
        F,
        G,
        0,
        members,
    )
    shape = (U.shape[0] - 1, *tuple(U.shape)[1:])
    return backend.from_numpy(F.reshape(shape)), backend.from_numpy(G.reshape(shape))


def scheme_arguments(backend: Any, arrays: dict, members: int) -> tuple:
    """The kernels' ``dx, dt, nu, lam, counts``: ν and λ per member, ``(B,)``."""
    c = arrays["c"]
    counts = np.ascontiguousarray(backend.to_numpy(arrays["counts"]), dtype=np.float64)
    nu, lam = per_member(c.nu, members), per_member(c.control_cost, members)
    return float(c.dx), float(c.dt), nu, lam, counts
