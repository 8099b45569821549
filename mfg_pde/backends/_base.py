"""The abstract backend: every operation that differs between array libraries.

Solver code computes through ``backend.xp`` (an Array-API namespace) and the
methods of :class:`BaseBackend`; it never calls numpy, scipy, jax or torch
itself. Methods that can be written once on the Array API live in BaseBackend's
parts, one concern per module: :mod:`~mfg_pde.backends._interpolation`,
:mod:`~mfg_pde.backends._linear_solves`, :mod:`~mfg_pde.backends._density` and
:mod:`~mfg_pde.backends._control_flow`. Each backend overrides only what its library
does natively and better; this module holds the identity, conversions, random
streams and capability questions that every backend answers.
"""

from __future__ import annotations

import abc
import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from mfg_pde.backends._control_flow import ControlFlow
from mfg_pde.backends._density import DensityEstimation
from mfg_pde.backends._interpolation import Interpolation
from mfg_pde.backends._kde import (  # noqa: F401  (re-exported for tests and users)
    BINNING_RTOL,
    IMAGES,
    KDE_CUTOFF,
    MAX_BINNING_POINTS,
    SMOOTHINGS,
    BinnedKDE,
)
from mfg_pde.backends._kde_2d import BinnedKDE2D  # noqa: F401
from mfg_pde.backends._linear_solves import LinearSolves

#: Capabilities every backend answers in :meth:`BaseBackend.has_capability`.
CAPABILITIES = ("parallel_kde", "jit_compilation", "kernel_fusion", "low_latency", "gpu")


#: Values (levels x grid points) from which the 2D residual runs in two threads: a
#: thread costs ~50-100 µs to start, the residual ~30 ns per value.
RESIDUAL_THREAD_MIN_POINTS = 100_000


def host_threads(limit: int) -> int:
    """Threads for the compiled host kernels that split their work (particle chunks,
    batch members, 2D residual levels): at most ``limit``, the cores this process may
    use, ``NUMBA_NUM_THREADS`` and ``OMP_NUM_THREADS`` (either set to 1 makes every such
    kernel run in the calling thread; results never depend on it). Dask's worker
    processes set ``OMP_NUM_THREADS=1``, so a sweep's chunks do not oversubscribe the
    cores its workers already share out.

    Read from numba's configuration, not ``numba.get_num_threads()``: that call starts
    numba's OpenMP threading layer, which is not fork-safe, and these kernels run in a
    Python thread pool of their own.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if importlib.util.find_spec("numba") is not None:
        from numba import config

        cores = min(cores, int(config.NUMBA_NUM_THREADS))
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) >= 1:
        cores = min(cores, int(omp))
    return max(1, min(limit, cores))


class BaseBackend(Interpolation, LinearSolves, DensityEstimation, ControlFlow, abc.ABC):
    """Array operations for the solvers, implemented natively by each library.

    Attributes
    ----------
    name : str
        Registry name ("numpy", "numba", "jax", "torch", or the name a plug-in was
        registered under, :func:`~mfg_pde.backends.register_backend`).
    xp : module
        Array-API namespace; ``array_module`` is the same object.
    device : str
        Where arrays live ("cpu", "cuda:0", "mps", "gpu:0").
    dtype :
        The namespace's float64 (float32 only on devices without float64, with a warning).
    """

    name: str = "abstract"
    #: False on the view returned by :meth:`eager`.
    compiled: bool = True
    #: Whether compiled code wants a few fixed array shapes: every new shape compiles
    #: again (jax), so callers pad data of varying length to bucketed lengths.
    fixed_shapes: bool = False
    #: Whether reading a value back to the host stalls the queue of work behind it
    #: (torch on a GPU: a convergence test per time step costs a sync each), so that
    #: loops run a fixed count instead of testing convergence as they go.
    syncs_cost: bool = False
    #: Whether the arrays are NumPy arrays in host memory, which host-side SciPy code
    #: (the Newton iteration) uses without a copy.
    is_host_numpy: bool = False

    def __init__(self) -> None:
        self.xp = self._namespace()

    # -- identity -----------------------------------------------------------------
    @abc.abstractmethod
    def _namespace(self) -> Any:
        """Return the Array-API namespace of this backend."""

    @property
    def array_module(self) -> Any:
        """Alias of :attr:`xp`."""
        return self.xp

    @property
    def dtype(self) -> Any:
        return self.xp.float64

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def eps(self) -> float:
        """Machine epsilon of :attr:`dtype`."""
        return float(self.xp.finfo(self.dtype).eps)

    def _device_kw(self) -> dict:
        """Keyword arguments that put a new array on :attr:`device` (none for NumPy)."""
        return {}

    @property
    def program_key(self) -> tuple:
        """What tells programs built for this backend from those built for another: the
        solvers share compiled programs between problems of one structure by this key
        (:func:`mfg_pde.alg.numerical._base.compiled_program`). Backends whose programs
        differ by an option add it (numpy: whether it uses numba)."""
        return (type(self).__name__, self.device, self.compiled)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(device={self.device!r})"

    # -- creation and transfer --------------------------------------------------------
    def zeros(self, shape: int | Sequence[int]) -> Any:
        return self.xp.zeros(shape, dtype=self.dtype)

    def ones(self, shape: int | Sequence[int]) -> Any:
        return self.xp.ones(shape, dtype=self.dtype)

    def array(self, obj: Any) -> Any:
        """Make a float array of :attr:`dtype` on :attr:`device` from any array-like."""
        if self.is_array(obj):
            return self.xp.astype(obj, self.dtype)
        return self.from_numpy(np.asarray(obj, dtype=np.float64))

    @abc.abstractmethod
    def from_numpy(self, arr: np.ndarray) -> Any:
        """Copy a NumPy array to this backend (as :attr:`dtype`, on :attr:`device`)."""

    @abc.abstractmethod
    def to_numpy(self, arr: Any) -> np.ndarray:
        """Copy an array of this backend to a NumPy array on the host."""

    @abc.abstractmethod
    def is_array(self, obj: Any) -> bool:
        """Whether ``obj`` is an array of this backend's library."""

    # -- random numbers ------------------------------------------------------------------
    @abc.abstractmethod
    def random_key(self, seed: int) -> Any:
        """A seeded random stream: a NumPy Generator, a torch Generator or a JAX key."""

    @abc.abstractmethod
    def normal(self, key: Any, shape: Sequence[int]) -> tuple[Any, Any]:
        """Standard normal variates: returns ``(new_key, sample)``."""

    @abc.abstractmethod
    def uniform(self, key: Any, shape: Sequence[int]) -> tuple[Any, Any]:
        """Uniform variates on [0, 1): returns ``(new_key, sample)``."""

    def normal_steps(self, key: Any, steps: int, shape: Sequence[int]) -> tuple[Any, Any]:
        """``(new_key, Z)``, ``Z`` of shape ``(steps, *shape)``: the variates that
        ``steps * prod(shape[:-1])`` calls ``normal(key, shape[-1:])`` draw one after
        another (a march drawing each step's vectors in turn gets these values).

        Here a :meth:`scan` over the steps; NumPy's stream does not depend on how its
        draws are split, so its backend draws them in one call, without stacking.
        """
        xp, vectors = self.xp, int(np.prod(shape[:-1], dtype=np.int64))

        def step(key: Any, _: Any) -> tuple[Any, Any]:
            rows = []
            for _vector in range(vectors):
                key, z = self.normal(key, tuple(shape[-1:]))
                rows.append(z)
            if vectors == 1:  # a view: stacking one array would copy it
                return key, xp.reshape(rows[0], tuple(shape))
            return key, xp.reshape(xp.stack(rows), tuple(shape))

        return self.scan(step, key, length=steps)

    # -- what the backend can do ---------------------------------------------------------
    @abc.abstractmethod
    def has_capability(self, name: str) -> bool:
        """Whether the backend offers ``name`` (one of :data:`CAPABILITIES`)."""

    @abc.abstractmethod
    def get_performance_hints(self) -> dict:
        """Rough costs for strategy selection.

        Keys: ``device_type`` ("cpu"/"gpu"), ``kernel_overhead_s`` (fixed cost of one
        operation or launch), ``memory_bandwidth_gbs``, ``compiled_loops`` (whether
        Python-level loops are compiled away), ``normal_variate_s`` (cost of one draw),
        ``particle_step_s`` (one particle's share of an FP-particle time step: draw,
        drift, reflection, binning), ``step_overhead_s`` (the part of a particle time
        step that does not grow with N: dispatch or kernel launches, the KDE on a
        ~100-point grid), ``host_transfer_gbs`` (copies between this device and the
        host). The CPU values were measured on a 2-core EPYC (docs/particles.md).
        """

    def counterpart(self, device_type: str) -> BaseBackend | None:
        """A backend of the same library on a ``"cpu"`` or ``"gpu"`` device, or None.

        This backend itself when it is on that kind of device already; the particle
        strategies use this to move a march between a GPU and the host.
        """
        if device_type not in ("cpu", "gpu"):
            raise ValueError(f"device_type must be 'cpu' or 'gpu', got {device_type!r}")
        return self if self.get_performance_hints()["device_type"] == device_type else None

    def _check_capability(self, name: str) -> None:
        if name not in CAPABILITIES:
            raise ValueError(f"unknown capability {name!r}; known: {', '.join(CAPABILITIES)}")
