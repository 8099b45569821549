"""A backend on ``array-api-strict``: the worked example of docs/backends.md "Adding a backend".

``array_api_strict`` is the Array API standard's reference namespace: it refuses every
function, method, indexing form and implicit conversion outside the standard. A solver
that runs on it asks its backend nothing but the standard and the documented
:class:`~mfg_pde.backends.BaseBackend` methods, so a backend for any other conforming
library (CuPy, dpnp, a second torch device kind) needs no more than this file does.

What a backend must write: the namespace, the conversions to and from NumPy, the random
streams and what it costs (:meth:`has_capability`, :meth:`get_performance_hints`).
Everything else has a generic default on the Array API that this backend keeps,
including the two operations the standard lacks: the tridiagonal solve (parallel cyclic
reduction) and the scatter-add (a sorted segment sum).

It is registered from the tests (``register("strict")``), never chosen automatically,
and not part of the package: ``array-api-strict`` is a dev dependency only.
"""

from __future__ import annotations

from typing import Any

import array_api_strict
import numpy as np

from mfg_pde.backends import BaseBackend, register_backend

NAME = "array-api-strict"


class StrictBackend(BaseBackend):
    """``array_api_strict`` arrays on its one CPU device, float64."""

    name = NAME

    def _namespace(self) -> Any:
        return array_api_strict

    def from_numpy(self, arr: np.ndarray) -> Any:
        arr = np.asarray(arr)
        # Floats become float64; integer (index) arrays stay integer, as on the others.
        return array_api_strict.asarray(
            np.ascontiguousarray(arr, dtype=np.float64 if arr.dtype.kind == "f" else arr.dtype)
        )

    def to_numpy(self, arr: Any) -> np.ndarray:
        # DLPack is the standard's exchange protocol: no copy, then one owned copy.
        return np.array(np.from_dlpack(arr))

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, array_api_strict._array_object.Array)

    def random_key(self, seed: int) -> np.random.Generator:
        # The standard has no random numbers: draw on the host and convert.
        return np.random.default_rng(seed)

    def normal(self, key: np.random.Generator, shape) -> tuple:
        return key, self.from_numpy(key.standard_normal(tuple(shape)))

    def uniform(self, key: np.random.Generator, shape) -> tuple:
        return key, self.from_numpy(key.random(tuple(shape)))

    def has_capability(self, name: str) -> bool:
        self._check_capability(name)
        return False

    def get_performance_hints(self) -> dict:
        # Rough: eager array operations on the CPU, a wrapper around NumPy.
        return {
            "device_type": "cpu",
            "kernel_overhead_s": 5e-6,
            "memory_bandwidth_gbs": 10.0,
            "compiled_loops": False,
            "normal_variate_s": 1e-8,
            "particle_step_s": 1e-7,
            "step_overhead_s": 1e-4,
            "host_transfer_gbs": 10.0,
        }


def register(name: str = NAME) -> None:
    """Register :class:`StrictBackend` under ``name`` (idempotent)."""
    from mfg_pde.backends import _REGISTERED

    if name not in _REGISTERED:
        register_backend(name, StrictBackend)
