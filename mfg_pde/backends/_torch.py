"""PyTorch backend: arrays on cuda > mps > cpu, no host round-trips inside a solve.

Apple's mps device has no float64: there this backend computes in float32 and warns.

Threads: on the CPU this backend sets torch's intra-op pool to one thread by default.
The solvers' kernels are small (10^2-10^6 elements) and sequential in time; measured on
a 2-core machine with another process busy, a 2-thread pool made ``floor`` of 10^5
values take 8 ms instead of 0.07 ms (threads spinning against each other and against
numba's pool). Pass ``TorchBackend(num_threads=None)`` to leave torch's setting alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import array_api_compat.torch as xp_torch
import numpy as np
import torch

from mfg_pde.backends._base import BaseBackend
from mfg_pde.backends._numpy import NumpyBackend

_NUMPY = NumpyBackend()


def _as_tensors(out: Any) -> Any:
    """NumPy results (nested in tuples) as CPU tensors sharing their memory."""
    if out is None:
        return None
    if isinstance(out, tuple):
        return tuple(_as_tensors(o) for o in out)
    out = np.asarray(out)
    # Broadcast views are read-only; torch tensors are always writable.
    return torch.from_numpy(out if out.flags.writeable else out.copy())


def _best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class TorchBackend(BaseBackend):
    """``torch`` tensors on the best device; batched Thomas for tridiagonal systems."""

    name = "torch"

    def __init__(self, device: str | None = None, num_threads: int | None = 1) -> None:
        super().__init__()
        self._device = torch.device(device) if device is not None else _best_device()
        if num_threads is not None and self._device.type == "cpu":
            if torch.get_num_threads() != num_threads:
                torch.set_num_threads(int(num_threads))
        self._dtype = torch.float64
        if self._device.type == "mps":
            self._dtype = torch.float32
            warnings.warn(
                "torch on 'mps' has no float64: mfg_pde computes in float32 there (about 7 "
                "significant digits; tolerances below ~1e-6 cannot be met). Pass "
                "TorchBackend(device='cpu') for float64.",
                RuntimeWarning,
                stacklevel=2,
            )

    def _namespace(self) -> Any:
        return xp_torch

    @property
    def dtype(self) -> Any:
        return self._dtype

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def syncs_cost(self) -> bool:  # type: ignore[override]
        """On a GPU a host read waits for the queue; on the CPU the work has already run
        (torch executes CPU operations as they are called), so a read costs nothing."""
        return self._device.type != "cpu"

    def _device_kw(self) -> dict:
        return {"device": self._device}

    def synchronize(self, x: Any) -> Any:
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        elif self._device.type == "mps":
            torch.mps.synchronize()
        return x

    def zeros(self, shape) -> Any:
        return torch.zeros(shape, dtype=self._dtype, device=self._device)

    def ones(self, shape) -> Any:
        return torch.ones(shape, dtype=self._dtype, device=self._device)

    def from_numpy(self, arr: np.ndarray) -> Any:
        arr = np.asarray(arr)
        # np.array copies: on the cpu, as_tensor would otherwise share the caller's memory.
        t = torch.as_tensor(np.array(arr, order="C"))
        if t.is_floating_point():
            t = t.to(self._dtype)
        return t.to(self._device)

    def to_numpy(self, arr: Any) -> np.ndarray:
        return arr.detach().cpu().numpy()

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, torch.Tensor)

    def solve_tridiagonal(self, lower: Any, diag: Any, upper: Any, rhs: Any) -> Any:
        """LAPACK on the CPU, parallel cyclic reduction on a GPU.

        Torch has no tridiagonal solver. On the CPU a tensor and a NumPy array share
        memory, so the NumPy backend's solver (LAPACK ``dgtsv``, or a batched Thomas)
        runs on the same data with no copy and no device round-trip: measured on the
        hello problem's 101-point systems it takes 5 µs against about 1 ms for PCR,
        which pays torch's per-operation overhead ~100 times. (Not differentiable by
        autograd; nothing in mfg_pde differentiates through a solve.)

        On a GPU: :meth:`BaseBackend.solve_tridiagonal`'s parallel cyclic reduction,
        ceil(log2 n) vectorised levels of about 15 operations each, instead of a Thomas
        sweep's 2n dependent launches.
        """
        lower, diag, upper, rhs = torch.broadcast_tensors(lower, diag, upper, rhs)
        if self._device.type == "cpu":
            return torch.from_numpy(
                _NUMPY.solve_tridiagonal(
                    *(t.detach().contiguous().numpy() for t in (lower, diag, upper, rhs))
                )
            )
        return super().solve_tridiagonal(lower, diag, upper, rhs)  # cyclic reduction

    def vmap(self, fn: Callable) -> Callable:
        """``torch.func.vmap``: one batched call instead of a call per row, which on the
        CPU saves torch's dispatch cost per operation and row (the hello problem's 50
        running-cost levels: ~0.5 ms -> ~0.05 ms). A function that vmap cannot batch
        (Python control flow on tensor values, ``.item()``, an operation without a
        batching rule) runs row by row instead, as on the default backend."""
        looped = super().vmap(fn)

        def mapped(first: Any, *rest: Any) -> Any:
            try:
                return torch.func.vmap(lambda row: fn(row, *rest))(first)
            except Exception:  # noqa: BLE001 - any failure to batch: the exact loop
                return looped(first, *rest)

        return mapped

    def march_tridiagonal(
        self,
        lower: Any,
        diag: Any,
        upper: Any,
        rhs: Any,
        coupling: float,
        reverse: bool = False,
        periodic: bool = False,
    ) -> Any:
        """On the CPU, the NumPy backend's march on the tensors' memory (one numba call
        for all levels, see :meth:`BaseBackend.march_tridiagonal`); on a GPU the scan of
        solves."""
        if self._device.type != "cpu":
            return super().march_tridiagonal(lower, diag, upper, rhs, coupling, reverse, periodic)
        lower, diag, upper, rhs = torch.broadcast_tensors(lower, diag, upper, rhs)
        views = (t.detach().contiguous().numpy() for t in (lower, diag, upper, rhs))
        return torch.from_numpy(
            np.asarray(_NUMPY.march_tridiagonal(*views, coupling, reverse, periodic))
        )

    def hjb_march_kernel(self) -> Any:
        """On the CPU, the NumPy backend's compiled 1D march (host arrays in and out).

        Torch pays ~10 µs of dispatch per operation, and a Newton step of the march is
        ~20 operations: the hello problem's 50 levels cost ~35 ms per march eagerly
        against ~0.3 ms in one numba call on the same memory (``Tensor.numpy()`` and
        ``torch.from_numpy`` share it). None on a GPU or without numba.
        """
        return _NUMPY.hjb_march_kernel() if self._device.type == "cpu" else None

    def fdm_1d_kernels(self) -> Any:
        """On the CPU, the NumPy backend's compiled 1D passes (host arrays: the callers
        read the tensors' memory, see :meth:`BaseBackend.fdm_1d_kernels`); None on a GPU."""
        return _NUMPY.fdm_1d_kernels() if self._device.type == "cpu" else None

    def hjb_march_2d_kernel(self) -> Any:
        """On the CPU, the NumPy backend's compiled 2D march on the tensors' memory (see
        :meth:`BaseBackend.hjb_march_2d_kernel`); None on a GPU."""
        march = _NUMPY.hjb_march_2d_kernel() if self._device.type == "cpu" else None
        if march is None:
            return None

        def on_tensors(g, f, guess, constants, *options):
            host = (None if a is None else a.detach().numpy() for a in (g, f, guess))
            return _as_tensors(march(*host, tuple(float(v) for v in constants), *options))

        return on_tensors

    def fp_march_2d_kernel(self) -> Any:
        """On the CPU, the NumPy backend's compiled 2D FP march on the tensors' memory;
        None on a GPU."""
        march = _NUMPY.fp_march_2d_kernel() if self._device.type == "cpu" else None
        if march is None:
            return None

        def on_tensors(U, m0, constants, *options):
            host = (a.detach().numpy() for a in (U, m0))
            return _as_tensors(march(*host, tuple(float(v) for v in constants), *options))

        return on_tensors

    def equation_residual_2d_kernel(self) -> Any:
        """On the CPU, the NumPy backend's compiled 2D residual on the tensors' memory;
        None on a GPU."""
        residual = _NUMPY.equation_residual_2d_kernel() if self._device.type == "cpu" else None
        if residual is None:
            return None

        def on_tensors(U, M, f, constants, periodic):
            host = (a.detach().numpy() for a in (U, M, f))
            return _as_tensors(residual(*host, tuple(float(v) for v in constants), periodic))

        return on_tensors

    def particle_march_kernel(self) -> Any:
        """On the CPU, the NumPy backend's compiled 1D particle march; None on a GPU."""
        return _NUMPY.particle_march_kernel() if self._device.type == "cpu" else None

    def upwind_terms_2d(self, u: Any, c: Any, counts: tuple, periodic: tuple) -> Any:
        """On the CPU, the NumPy backend's compiled pass on the tensor's memory (see
        :meth:`BaseBackend.upwind_terms_2d`); None on a GPU."""
        if self._device.type != "cpu":
            return None
        return _as_tensors(_NUMPY.upwind_terms_2d(u, c, counts, periodic))

    def ordered_grid_solver(
        self, diag0: Any, lines: tuple, periodic: tuple, order_key: Any, transpose: bool
    ) -> Any:
        """On the CPU, the NumPy backend's ordered Gauss-Seidel BiCGSTAB (one numba call
        per solve, see :meth:`BaseBackend.ordered_grid_solver`) on the tensors' memory,
        instead of ~100 eager operations per Krylov iteration; None on a GPU."""
        solve = (
            _NUMPY.ordered_grid_solver(diag0, lines, periodic, order_key, transpose)
            if self._device.type == "cpu"
            else None
        )
        if solve is None:
            return None
        return lambda *args: _as_tensors(solve(*args))

    def scatter_add(self, target: Any, indices: Any, values: Any) -> Any:
        return target.index_add(0, indices, values.to(target.dtype))

    def _scatter_add_rows(self, rows: int, indices: Any, values: Any) -> Any:
        target = torch.zeros((rows, values.shape[1]), dtype=self._dtype, device=self._device)
        return target.index_add_(0, indices, values.to(self._dtype))

    def _scatter_add_windows(self, size: int, starts: Any, windows: Any) -> Any:
        # torch's scatter_add_ on a flat array: 41 ms per 10^7 values on one CPU thread,
        # index_add_ 78 ms (measured); windows as flat indices (torch has no window scatter).
        width = windows.shape[1]
        steps = torch.arange(width, dtype=torch.int64, device=self._device)
        index = (starts[:, None] + steps[None, :]).reshape(-1)
        target = torch.zeros(size, dtype=self._dtype, device=self._device)
        return target.scatter_add_(0, index, windows.reshape(-1).to(self._dtype))

    def random_key(self, seed: int) -> torch.Generator:
        gen = torch.Generator(device=self._device)
        gen.manual_seed(int(seed))
        return gen

    def normal(self, key: torch.Generator, shape) -> tuple:
        return key, torch.randn(tuple(shape), generator=key, dtype=self._dtype, device=self._device)

    def uniform(self, key: torch.Generator, shape) -> tuple:
        return key, torch.rand(tuple(shape), generator=key, dtype=self._dtype, device=self._device)

    def has_capability(self, name: str) -> bool:
        self._check_capability(name)
        gpu = self._device.type in ("cuda", "mps")
        return {
            "parallel_kde": True,
            "jit_compilation": False,
            "kernel_fusion": False,
            "low_latency": not gpu,
            "gpu": gpu,
        }[name]

    def get_performance_hints(self) -> dict:
        gpu = self.has_capability("gpu")
        # CPU values measured (docs/particles.md); GPU values are estimates from
        # DESIGN.md §5 (~40 eager launches per step at ~5 µs, ~0.1 ns per particle),
        # not measured: no GPU was available.
        return {
            "device_type": "gpu" if gpu else "cpu",
            "kernel_overhead_s": 5e-6 if gpu else 5e-6,
            "memory_bandwidth_gbs": 2000.0 if gpu else 10.0,
            "compiled_loops": False,
            "normal_variate_s": 1e-11 if gpu else 2.4e-8,
            "particle_step_s": 1e-10 if gpu else 1.2e-7,
            "step_overhead_s": 2e-4 if gpu else 5e-4,
            "host_transfer_gbs": 20.0 if gpu else 10.0,
        }

    def counterpart(self, device_type: str) -> BaseBackend | None:
        if super().counterpart(device_type) is self:
            return self
        if device_type == "cpu":
            return TorchBackend(device="cpu")
        best = _best_device()
        return None if best.type == "cpu" else TorchBackend(device=str(best))
