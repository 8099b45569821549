"""JAX backend: float64 (x64 enabled), compiled scans and loops, GPU when present.

Creating this backend turns on ``jax_enable_x64`` for the whole process: JAX offers no
per-array switch, and every solver here computes in float64.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from mfg_pde.backends._base import BaseBackend  # noqa: E402


@jax.jit
def _thomas_scan(lower: Any, diag: Any, upper: Any, rhs: Any) -> Any:
    """Thomas algorithm along the last axis as two scans, vectorised over the others.

    Jitted at module level: called eagerly, an un-jitted ``lax.scan`` would trace and
    compile its body again on every call; this way it compiles once per shape."""
    a, b, c, d = (jnp.moveaxis(v, -1, 0) for v in (lower, diag, upper, rhs))

    def forward(carry, row):
        c_prev, d_prev = carry
        ai, bi, ci, di = row
        denom = bi - ai * c_prev
        out = (ci / denom, (di - ai * d_prev) / denom)
        return out, out

    zero = jnp.zeros_like(b[0])
    _, (c_star, d_star) = jax.lax.scan(forward, (zero, zero), (a, b, c, d))

    def backward(x_next, row):
        ci, di = row
        x = di - ci * x_next
        return x, x

    _, x = jax.lax.scan(backward, zero, (c_star, d_star), reverse=True)
    return jnp.moveaxis(x, 0, -1)


def _normal(key: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
    key, sub = jax.random.split(key)
    return key, jax.random.normal(sub, shape, dtype=jnp.float64)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _normal_steps(key: Any, steps: int, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """:meth:`BaseBackend.normal_steps`, jitted at module level (compiled once per
    shape; called eagerly, the scan would trace and compile its body on every call)."""
    vectors = math.prod(shape[:-1])

    def step(key: Any, _: Any) -> tuple[Any, Any]:
        rows = []
        for _vector in range(vectors):
            key, z = _normal(key, shape[-1:])
            rows.append(z)
        return key, jnp.reshape(jnp.stack(rows), shape)

    return jax.lax.scan(step, key, length=steps)


class JAXBackend(BaseBackend):
    """``jax.numpy`` arrays on JAX's default device (a GPU when one is visible)."""

    name = "jax"
    fixed_shapes = True

    def __init__(self, device: str | Any | None = None) -> None:
        """``device``: None (JAX's default device), a platform name ("cpu", "gpu") or a
        ``jax.Device``."""
        super().__init__()
        if device is None:
            # This process's first device: after jax.distributed.initialize,
            # jax.devices() lists every process's devices and [0] belongs to process 0.
            self._device = jax.local_devices()[0]
        elif isinstance(device, str):
            self._device = jax.devices(device)[0]
        else:
            self._device = device

    def _namespace(self) -> Any:
        return jnp

    @property
    def device(self) -> str:
        return f"{self._device.platform}:{self._device.id}"

    def from_numpy(self, arr: np.ndarray) -> Any:
        arr = np.asarray(arr)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
        return jax.device_put(arr, self._device)

    def to_numpy(self, arr: Any) -> np.ndarray:
        return np.asarray(jax.device_get(arr))

    def is_array(self, obj: Any) -> bool:
        return isinstance(obj, jax.Array)

    def interp(self, x: Any, grid: Any, values: Any) -> Any:
        return jnp.interp(x, grid, values)

    def solve_tridiagonal(self, lower: Any, diag: Any, upper: Any, rhs: Any) -> Any:
        """``lax.linalg.tridiagonal_solve`` on GPUs (cuSPARSE); a Thomas scan on the CPU.

        On the CPU, ``tridiagonal_solve`` costs 55-130 ns per unknown whether systems
        come one at a time or batched (measured: 13 µs for one 101-point system, 306 µs
        for 100 of them), so a vmapped batch of solves gains nothing. A Thomas sweep as
        two ``lax.scan`` over the system size, vectorised over the batch, costs the same
        for one system and 2-3x less from ten up (147 µs for 100; 1.1 ms vs 2.9 ms for
        1000). It does not pivot: it is stable for the diagonally dominant systems the
        schemes produce (as PCR on torch), not for arbitrary ones.
        """
        lower, diag, upper, rhs = jnp.broadcast_arrays(lower, diag, upper, rhs)
        lower = lower.at[..., 0].set(0.0)
        upper = upper.at[..., -1].set(0.0)
        if self._device.platform == "cpu":
            return _thomas_scan(lower, diag, upper, rhs)
        x = jax.lax.linalg.tridiagonal_solve(lower, diag, upper, rhs[..., None])
        return x[..., 0]

    def scatter_add(self, target: Any, indices: Any, values: Any) -> Any:
        return target.at[indices].add(values)

    def _scatter_add_rows(self, rows: int, indices: Any, values: Any) -> Any:
        return jnp.zeros((rows, values.shape[1]), dtype=values.dtype).at[indices].add(values)

    def _scatter_add_windows(self, size: int, starts: Any, windows: Any) -> Any:
        numbers = jax.lax.ScatterDimensionNumbers(
            update_window_dims=(1,), inserted_window_dims=(), scatter_dims_to_operand_dims=(0,)
        )
        return jax.lax.scatter_add(
            jnp.zeros(size, dtype=windows.dtype),
            starts[:, None],
            windows,
            numbers,
            mode=jax.lax.GatherScatterMode.PROMISE_IN_BOUNDS,
        )

    def scan(self, step: Callable, carry: Any, xs: Any = None, length: int | None = None):
        return jax.lax.scan(step, carry, xs, length=length)

    def while_loop(self, cond: Callable, body: Callable, state: Any) -> Any:
        return jax.lax.while_loop(cond, body, state)

    def jit(self, fn: Callable, **kwargs: Any) -> Callable:
        return jax.jit(fn, **kwargs)

    def vmap(self, fn: Callable) -> Callable:
        def mapped(first: Any, *rest: Any) -> Any:
            return jax.vmap(lambda f: fn(f, *rest))(first)

        return mapped

    def synchronize(self, x: Any) -> Any:
        return jax.block_until_ready(x)

    def random_key(self, seed: int) -> Any:
        return jax.random.key(seed)

    def normal(self, key: Any, shape) -> tuple:
        return _normal(key, tuple(shape))

    def normal_steps(self, key: Any, steps: int, shape) -> tuple:
        return _normal_steps(key, int(steps), tuple(int(n) for n in shape))

    def uniform(self, key: Any, shape) -> tuple:
        key, sub = jax.random.split(key)
        return key, jax.random.uniform(sub, tuple(shape), dtype=jnp.float64)

    def particle_march_kernel(self) -> Any:
        """On the CPU with numba, the NumPy backend's compiled 1D particle march (called
        through :meth:`call_host`); None on a GPU, where the scan of steps runs."""
        if self._device.platform != "cpu":
            return None
        return _host_numpy().particle_march_kernel()

    def call_host(self, fn: Callable, shape: tuple, *arrays: Any) -> Any:
        """``jax.pure_callback``: usable inside compiled programs (see
        :meth:`BaseBackend.call_host`); the callback receives NumPy arrays."""

        def on_host(*values: Any) -> np.ndarray:
            out = fn(*(np.asarray(v) for v in values))
            return np.asarray(out, dtype=np.float64)

        result = jax.ShapeDtypeStruct(tuple(shape), jnp.float64)
        return jax.pure_callback(on_host, result, *arrays, vmap_method="sequential")

    def hjb_march_2d_kernel(self) -> Any:
        """On the CPU with numba, the NumPy backend's compiled 2D march through one
        ``jax.pure_callback`` per march (see :meth:`BaseBackend.hjb_march_2d_kernel`):
        the ordered solver's callback per Newton step costs ~60-300 µs, 6,500 times a
        solve at 128^2 x 100. None on a GPU or without numba."""
        host = _host_numpy() if self._device.platform == "cpu" else None
        march = None if host is None else host.hjb_march_2d_kernel()
        if march is None:
            return None

        def on_host_arrays(g, f, guess, constants, *options):
            levels = f.shape[0]
            shape = tuple(g.shape)
            results = (
                jax.ShapeDtypeStruct((levels + 1, *shape), jnp.float64),
                jax.ShapeDtypeStruct((), jnp.int64),
                jax.ShapeDtypeStruct((), jnp.int64),
                jax.ShapeDtypeStruct((), jnp.int64),
            )
            use_guess = guess is not None

            def on_host(f, g, values, *guess) -> tuple:
                U, failures, most, krylov = march(
                    np.asarray(g),
                    np.asarray(f),
                    np.asarray(guess[0]) if use_guess else None,
                    tuple(float(v) for v in np.asarray(values)),
                    *options,
                )
                return (
                    np.asarray(U, dtype=np.float64),
                    np.asarray(failures, dtype=np.int64),
                    np.asarray(most, dtype=np.int64),
                    np.asarray(krylov, dtype=np.int64),
                )

            # The fields as separate arguments: a callback's argument costs ~30-90 µs,
            # while stacking them into one would copy ~27 MB at 128^2 x 100 (~20 ms).
            fields = (f, g, _constants_vector(constants), *([guess] if use_guess else []))
            return jax.pure_callback(on_host, results, *fields, vmap_method="sequential")

        return on_host_arrays

    def fp_march_2d_kernel(self) -> Any:
        """On the CPU with numba, the NumPy backend's compiled 2D FP march through one
        ``jax.pure_callback`` per march (see :meth:`BaseBackend.fp_march_2d_kernel`);
        None on a GPU or without numba."""
        host = _host_numpy() if self._device.platform == "cpu" else None
        march = None if host is None else host.fp_march_2d_kernel()
        if march is None:
            return None

        def on_host_arrays(U, m0, constants, *options):
            result = jax.ShapeDtypeStruct(tuple(U.shape), jnp.float64)

            def on_host(U, m0, values) -> np.ndarray:
                values = tuple(float(v) for v in np.asarray(values))
                M = march(np.asarray(U), np.asarray(m0), values, *options)
                return np.asarray(M, dtype=np.float64)

            # Separate arguments, not one stacked copy (see the HJB march above).
            values = _constants_vector(constants)
            return jax.pure_callback(on_host, result, U, m0, values, vmap_method="sequential")

        return on_host_arrays

    def equation_residual_2d_kernel(self) -> Any:
        """On the CPU with numba, the NumPy backend's compiled 2D residual through one
        ``jax.pure_callback`` (see :meth:`BaseBackend.equation_residual_2d_kernel`):
        at 128^2 x 100 the host pass (two threads, ~12 ms) and the callback's copies
        take ~30 ms where XLA's fused array version takes ~53 ms, once per fixed-point
        iteration. None on a GPU or without numba, where the array version runs."""
        host = _host_numpy() if self._device.platform == "cpu" else None
        residual = None if host is None else host.equation_residual_2d_kernel()
        if residual is None:
            return None

        def on_host_arrays(U, M, f, constants, periodic):
            levels = U.shape[0] - 1
            shape = tuple(U.shape[1:])
            result = jax.ShapeDtypeStruct((levels, *shape), jnp.float64)

            def on_host(U, M, f, values) -> tuple:
                values = tuple(float(v) for v in np.asarray(values))
                F, G = residual(np.asarray(U), np.asarray(M), np.asarray(f), values, periodic)
                return np.asarray(F, dtype=np.float64), np.asarray(G, dtype=np.float64)

            # The fields as separate arguments: a callback's argument costs ~30-90 µs,
            # while stacking them into one would copy 40 MB at 128^2 x 100 (~25 ms).
            values = _constants_vector(constants)
            f = jnp.broadcast_to(f, (levels, *shape))
            return jax.pure_callback(
                on_host, (result, result), U, M, f, values, vmap_method="sequential"
            )

        return on_host_arrays

    def ordered_grid_solver(
        self, diag0: Any, lines: tuple, periodic: tuple, order_key: Any, transpose: bool
    ) -> Any:
        """On the CPU with numba: the NumPy backend's ordered Gauss-Seidel BiCGSTAB (see
        :meth:`BaseBackend.ordered_grid_solver`), called from the compiled program with
        ``jax.pure_callback``; None on a GPU or without numba.

        The sweep is sequential, which XLA cannot express fast, and on the CPU the arrays
        are in host memory anyway. The line-preconditioned BiCGSTAB needs ~28 iterations
        per solve at 128² where the ordered sweep needs ~5: measured on the 2D hello
        problem (128² x 100, shared 2-core EPYC, one run) jax took 165 s against numpy's
        23-37 s before, 75 s (11 s of it compiling) against numpy's 37 s with the
        callback. What remains is the callback's own cost, ~60-300 µs per call
        (a jax array per argument crosses to Python; everything is therefore passed as
        one stacked array). Batched (``vmap``) programs call it once per member.
        """
        host = _host_numpy() if self._device.platform == "cpu" else None
        if host is None or host._kernels() is None:
            return None
        shape = tuple(order_key.shape)
        results = (
            jax.ShapeDtypeStruct(shape, jnp.float64),
            jax.ShapeDtypeStruct((), jnp.int64),
            jax.ShapeDtypeStruct((), jnp.bool_),
        )

        def solve(rhs: Any, x0: Any, atol: Any, max_iterations: int) -> tuple:
            def on_host(fields: np.ndarray) -> tuple:
                # jax hands the callback jax arrays; one conversion to NumPy here.
                *flat, key, rhs, x0, scalars = np.asarray(fields)
                ordered = host.ordered_grid_solver(
                    float(scalars.flat[0]),
                    (tuple(flat[:3]), tuple(flat[3:])),
                    periodic,
                    key,
                    transpose,
                )
                x, iterations, converged = ordered(rhs, x0, float(scalars.flat[1]), max_iterations)
                return (
                    np.asarray(x, dtype=np.float64),
                    np.asarray(iterations, dtype=np.int64),
                    np.asarray(converged, dtype=np.bool_),
                )

            # One argument, not eleven: each argument of a callback costs ~30-90 µs
            # (measured at 64²: ~300 µs with nine, ~60-90 µs with one stacked array);
            # the last plane carries diag0 and atol.
            scalars = jnp.zeros(shape, jnp.float64).at[0, 0].set(diag0).at[0, 1].set(atol)
            fields = jnp.stack(
                [
                    jnp.broadcast_to(a, shape)
                    for a in (*lines[0], *lines[1], order_key, rhs, x0, scalars)
                ]
            )
            return jax.pure_callback(on_host, results, fields, vmap_method="sequential")

        return solve

    def has_capability(self, name: str) -> bool:
        self._check_capability(name)
        gpu = self._device.platform == "gpu" or self._device.platform == "cuda"
        return {
            "parallel_kde": True,
            "jit_compilation": True,
            "kernel_fusion": True,
            "low_latency": not gpu,
            "gpu": gpu,
        }[name]

    def get_performance_hints(self) -> dict:
        gpu = self.has_capability("gpu")
        # CPU values measured (docs/particles.md); GPU values are estimates from
        # DESIGN.md §5 (~20 fused kernels per scan step at ~5 µs, ~0.1 ns per particle),
        # not measured: no GPU was available.
        return {
            "device_type": "gpu" if gpu else "cpu",
            "kernel_overhead_s": 5e-6 if gpu else 1e-6,
            "memory_bandwidth_gbs": 2000.0 if gpu else 10.0,
            "compiled_loops": True,
            "normal_variate_s": 1e-11 if gpu else 1.7e-8,
            "particle_step_s": 1e-10 if gpu else 6e-8,
            "step_overhead_s": 1e-4 if gpu else 2e-4,
            "host_transfer_gbs": 20.0 if gpu else 10.0,
        }

    def counterpart(self, device_type: str) -> BaseBackend | None:
        if super().counterpart(device_type) is self:
            return self
        platforms = ("cpu",) if device_type == "cpu" else ("cuda", "rocm", "gpu")
        for platform in platforms:
            try:
                devices = jax.devices(platform)
            except RuntimeError:  # no such platform
                continue
            if devices:
                return JAXBackend(devices[0])
        return None


def _host_numpy() -> Any:
    """The NumPy backend whose compiled CPU kernels the jax backend calls back into."""
    global _HOST
    if _HOST is None:
        from mfg_pde.backends._numpy import NumpyBackend

        _HOST = NumpyBackend()
    return _HOST


_HOST: Any = None


def _constants_vector(constants: tuple) -> Any:
    """The constants (floats or traced scalars) of a host callback as one float64
    vector, an argument of their own."""
    return jnp.stack([jnp.asarray(v, jnp.float64) for v in constants])
