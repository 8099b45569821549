"""Numba backend: NumPy arrays, with the loops that NumPy cannot vectorise compiled.

Chosen explicitly only (``create_backend("numba")``); auto-selection never picks it.
The kernels are serial (``parallel=False``): numba's OpenMP pool next to torch's in
one process oversubscribes small machines badly, and these loops are memory-bound.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from mfg_pde.backends._numpy import NumpyBackend


@numba.njit(cache=True, fastmath=False)
def _thomas_batched(lower, diag, upper, rhs, out):  # pragma: no cover - compiled
    count, n = diag.shape
    c = np.empty(n)
    d = np.empty(n)
    for b in range(count):
        c[0] = upper[b, 0] / diag[b, 0]
        d[0] = rhs[b, 0] / diag[b, 0]
        for i in range(1, n):
            denom = diag[b, i] - lower[b, i] * c[i - 1]
            c[i] = upper[b, i] / denom
            d[i] = (rhs[b, i] - lower[b, i] * d[i - 1]) / denom
        out[b, n - 1] = d[n - 1]
        for i in range(n - 2, -1, -1):
            out[b, i] = d[i] - c[i] * out[b, i + 1]


@numba.njit(cache=True)
def _scatter_add(target, indices, values):  # pragma: no cover - compiled
    for k in range(indices.shape[0]):
        target[indices[k]] += values[k]


class NumbaBackend(NumpyBackend):
    """NumPy arrays with Numba-compiled Thomas solves and scatter-adds."""

    name = "numba"

    def __init__(self) -> None:
        super().__init__(use_numba=True)

    def solve_tridiagonal(self, lower: Any, diag: Any, upper: Any, rhs: Any) -> Any:
        lower, diag, upper, rhs = (
            np.ascontiguousarray(a, dtype=np.float64)
            for a in np.broadcast_arrays(lower, diag, upper, rhs)
        )
        shape = diag.shape
        n = shape[-1]
        out = np.empty((diag.size // n, n))
        _thomas_batched(
            lower.reshape(-1, n), diag.reshape(-1, n), upper.reshape(-1, n), rhs.reshape(-1, n), out
        )
        return out.reshape(shape)

    def scatter_add(self, target: Any, indices: Any, values: Any) -> Any:
        out = np.array(target, dtype=np.float64)
        _scatter_add(out, np.asarray(indices, dtype=np.int64), np.asarray(values, dtype=np.float64))
        return out

    def has_capability(self, name: str) -> bool:
        self._check_capability(name)
        return name in ("low_latency", "jit_compilation")

    def get_performance_hints(self) -> dict:
        return {**super().get_performance_hints(), "compiled_loops": True}
