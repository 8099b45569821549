"""Where the particle march runs: on a CPU or on a GPU, chosen by a cost model.

A particle time step is a dozen array operations over all N particles (a normal draw,
the interpolated drift, the reflection, the linear binning) plus a convolution on the
fine KDE grid. On a CPU it costs about ``N x particle_step_s`` (tens of ns per particle,
mostly the normal draw); on a GPU each of those operations is a kernel launch of a few
µs whatever N is, and the per-particle cost is ~100x smaller. So a small march is faster
on the CPU and a large one on the GPU (DESIGN.md §5). The two strategies here estimate
that cost from the backends' :meth:`~mfg_pde.backends.BaseBackend.get_performance_hints`
and :meth:`~mfg_pde.backends.BaseBackend.has_capability`, and each one names the backend
the march actually runs on:

- :class:`CPUParticleStrategy` runs on the solver's backend if that is on a CPU, else on
  the same library's CPU device (torch ``"cpu"``, JAX's CPU device); U is copied to the
  host once per solve and the density path back once.
- :class:`GPUParticleStrategy` runs on the solver's backend if that is on a GPU, else on
  the same library's GPU (torch cuda/mps, a JAX GPU); numpy and numba have none.

:func:`select_particle_strategy` takes ``"auto"`` (the cheaper available one), ``"cpu"``,
``"gpu"`` or a strategy instance. Asking for ``"gpu"`` where the library has no GPU
raises :class:`ValueError` naming what is available: an explicit request is never
silently downgraded (``"auto"`` is the fallback).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from mfg_pde.backends import BaseBackend

#: Names accepted by :func:`select_particle_strategy` besides an instance.
STRATEGY_NAMES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class ParticleProblemSize:
    """The sizes that set the cost of one particle FP solve.

    Attributes
    ----------
    num_particles : int
        N.
    num_steps : int
        Time steps of the march (Nt).
    grid_points : int
        Points of the output grid (Nx).
    fine_points : int
        Points of the KDE's fine binning grid (0 if unknown or exact KDE).
    """

    num_particles: int
    num_steps: int
    grid_points: int
    fine_points: int = 0


class ParticleStrategy:
    """Where an :class:`~mfg_pde.alg.numerical.FPParticleSolver` runs its march.

    Parameters
    ----------
    backend : BaseBackend
        The solver's backend: U comes in and M goes out on it.
    """

    #: "cpu" or "gpu": the kind of device the march runs on.
    device_type: str = "abstract"

    def __init__(self, backend: BaseBackend) -> None:
        if not isinstance(backend, BaseBackend):
            raise TypeError(f"backend must be a BaseBackend, got {type(backend).__name__}")
        self.backend = backend
        self._march_backend: BaseBackend | None = None
        self._resolved = False

    @property
    def name(self) -> str:
        return self.device_type

    def __repr__(self) -> str:
        march = self.march_backend
        where = "unavailable" if march is None else f"{march.name} on {march.device}"
        return f"{type(self).__name__}({where})"

    def rebind(self, backend: BaseBackend) -> ParticleStrategy:
        """The same strategy for another solver backend (the fixed-point iterator moves
        its children to its own backend)."""
        if backend is self.backend:
            return self
        other = copy.copy(self)
        ParticleStrategy.__init__(other, backend)
        return other

    @property
    def march_backend(self) -> BaseBackend | None:
        """The backend the march runs on, or None where this strategy is unavailable."""
        if not self._resolved:
            self._march_backend = self._find_march_backend()
            self._resolved = True
        return self._march_backend

    def is_available(self) -> bool:
        return self.march_backend is not None

    def _find_march_backend(self) -> BaseBackend | None:
        b = self.backend
        if (b.get_performance_hints()["device_type"] == "gpu") == (self.device_type == "gpu"):
            return b
        return b.counterpart(self.device_type)

    @property
    def transfers(self) -> bool:
        """Whether U and M are copied between the solver's device and the march's."""
        march = self.march_backend
        return march is not None and march is not self.backend

    def estimate_cost(self, problem_size: ParticleProblemSize) -> float:
        """Estimated seconds of one solve (``inf`` if unavailable).

        ``num_steps x (step_overhead_s + N x particle_step_s + F x 8 B / bandwidth)``
        with the march backend's hints (``F`` the fine grid, read and written a few
        times per step), plus the copies of U in and M out when the march runs on
        another device than the solver's backend.
        """
        march = self.march_backend
        if march is None:
            return math.inf
        hints = march.get_performance_hints()
        size = problem_size
        per_step = (
            hints["step_overhead_s"]
            + size.num_particles * hints["particle_step_s"]
            + 4.0 * size.fine_points * 8.0 / (hints["memory_bandwidth_gbs"] * 1e9)
        )
        cost = size.num_steps * per_step
        if self.transfers:
            moved = 2.0 * (size.num_steps + 1) * size.grid_points * 8.0
            slow = min(
                hints["host_transfer_gbs"],
                self.backend.get_performance_hints()["host_transfer_gbs"],
            )
            cost += moved / (slow * 1e9) + 2.0 * hints["kernel_overhead_s"]
        return cost


class CPUParticleStrategy(ParticleStrategy):
    """Run the march on a CPU: the solver's backend, or its library's CPU device.

    Pays no per-kernel launch cost; a GPU backend's U and M cross to the host and back
    once per solve.
    """

    device_type = "cpu"


class GPUParticleStrategy(ParticleStrategy):
    """Run the march on a GPU: the solver's backend, or its library's GPU device.

    Unavailable (cost ``inf``) for numpy and numba, and where no GPU is visible.
    """

    device_type = "gpu"


def select_particle_strategy(
    backend: BaseBackend,
    problem_size: ParticleProblemSize,
    strategy: str | ParticleStrategy = "auto",
) -> ParticleStrategy:
    """The strategy a particle solver on ``backend`` uses for ``problem_size``.

    Parameters
    ----------
    backend : BaseBackend
    problem_size : ParticleProblemSize
    strategy : "auto", "cpu", "gpu" or a ParticleStrategy
        "auto": the available strategy with the smallest :meth:`estimate_cost` (the CPU
        on ties). "cpu"/"gpu": that one, or :class:`ValueError` if it is unavailable. An
        instance is used as given (rebound to ``backend``).
    """
    if isinstance(strategy, ParticleStrategy):
        chosen = strategy.rebind(backend)
        if not chosen.is_available():
            raise ValueError(f"strategy {chosen!r} has no device for backend {backend!r}")
        return chosen
    if not isinstance(strategy, str) or strategy.lower() not in STRATEGY_NAMES:
        raise ValueError(
            f"strategy must be one of {', '.join(map(repr, STRATEGY_NAMES))} or a "
            f"ParticleStrategy instance, got {strategy!r}"
        )
    candidates = {"cpu": CPUParticleStrategy(backend), "gpu": GPUParticleStrategy(backend)}
    key = strategy.lower()
    if key != "auto":
        chosen = candidates[key]
        if not chosen.is_available():
            raise ValueError(
                f"strategy={strategy!r}: backend {backend.name!r} (device {backend.device}) "
                f"has no {key.upper()} device to run the particle march on; use "
                "strategy='auto' or 'cpu', or a backend whose library sees a GPU "
                "(torch with cuda/mps, jax with a GPU plugin)"
            )
        return chosen
    costs = {name: s.estimate_cost(problem_size) for name, s in candidates.items()}
    return candidates["gpu"] if costs["gpu"] < costs["cpu"] else candidates["cpu"]
