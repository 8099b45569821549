"""NumPy backend: the reference, with SciPy's LAPACK where it wins."""

from __future__ import annotations

from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np
from scipy.linalg import lapack

from mfg_pde.backends._base import BaseBackend

_dgtsv = lapack.dgtsv


class NumpyBackend(BaseBackend):
    """NumPy arrays on the CPU; tridiagonal solves by LAPACK ``dgtsv`` or a batched Thomas."""

    name = "numpy"

    def _namespace(self) -> Any:
        return xp_numpy

    def from_numpy(self, arr: np.ndarray) -> np.ndarray:
        arr = np.asarray(arr)
        # Floats become float64; integer (index) arrays stay integer, as on jax and torch.
        return np.array(arr, dtype=np.float64 if arr.dtype.kind == "f" else arr.dtype)

    def to_numpy(self, arr: Any) -> np.ndarray:
        return np.asarray(arr)

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, np.ndarray)

    def interp(self, x: Any, grid: Any, values: Any) -> Any:
        return np.interp(x, grid, values)

    def gradient(self, f: Any, dx: float, axis: int = -1) -> Any:
        return np.gradient(f, dx, axis=axis, edge_order=1)

    def solve_tridiagonal(self, lower: Any, diag: Any, upper: Any, rhs: Any) -> Any:
        if (
            diag.ndim == 1
            and diag.size > 1
            and lower.shape == upper.shape == rhs.shape == diag.shape
        ):
            # One system (every implicit time step in 1D): straight to LAPACK.
            _, _, _, x, info = _dgtsv(lower[1:], diag, upper[:-1], rhs)
            return np.full(diag.shape, np.nan) if info > 0 else x
        lower, diag, upper, rhs = np.broadcast_arrays(lower, diag, upper, rhs)
        n = diag.shape[-1]
        batch = diag.shape[:-1]
        count = int(np.prod(batch)) if batch else 1
        if count < n:
            # Few long systems: LAPACK gtsv (partial pivoting) on each.
            d2 = diag.reshape(count, n)
            lo2, up2, b2 = lower.reshape(count, n), upper.reshape(count, n), rhs.reshape(count, n)
            out = np.empty((count, n))
            for k in range(count):
                _, _, _, x, info = lapack.dgtsv(lo2[k, 1:], d2[k], up2[k, :-1], b2[k, :, None])
                # info > 0: exactly singular; report it as NaN like the other backends.
                out[k] = np.nan if info > 0 else x.reshape(n)
            return out.reshape(diag.shape)
        return _thomas_vectorised(lower, diag, upper, rhs)

    def scatter_add(self, target: Any, indices: Any, values: Any) -> Any:
        n = target.shape[0]
        return target + np.bincount(indices, weights=values, minlength=n)[:n]

    def random_key(self, seed: int) -> np.random.Generator:
        return np.random.default_rng(seed)

    def normal(self, key: np.random.Generator, shape) -> tuple:
        return key, key.standard_normal(shape)

    def uniform(self, key: np.random.Generator, shape) -> tuple:
        return key, key.random(shape)

    def has_capability(self, name: str) -> bool:
        self._check_capability(name)
        return name == "low_latency"

    def get_performance_hints(self) -> dict:
        return {
            "device_type": "cpu",
            "kernel_overhead_s": 2e-6,
            "memory_bandwidth_gbs": 10.0,
            "compiled_loops": False,
            "normal_variate_s": 2e-8,
        }


def _thomas_vectorised(lower, diag, upper, rhs):
    """Thomas algorithm looped over the system size, vectorised over the batch."""
    n = diag.shape[-1]
    c = np.empty(diag.shape)
    d = np.empty(diag.shape)
    c[..., 0] = upper[..., 0] / diag[..., 0]
    d[..., 0] = rhs[..., 0] / diag[..., 0]
    for i in range(1, n):
        denom = diag[..., i] - lower[..., i] * c[..., i - 1]
        c[..., i] = upper[..., i] / denom
        d[..., i] = (rhs[..., i] - lower[..., i] * d[..., i - 1]) / denom
    x = np.empty(diag.shape)
    x[..., -1] = d[..., -1]
    for i in range(n - 2, -1, -1):
        x[..., i] = d[..., i] - c[..., i] * x[..., i + 1]
    return x
