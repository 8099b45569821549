"""Particles split over several JAX devices: ``FPParticleSolver(devices=...)``.

Each device draws, moves and bins its own share of the particles inside the compiled
march; the densities are summed over the devices with one ``psum`` per time level
(:class:`ParticleSharding`). Kept apart from :mod:`~mfg_pde.alg.numerical.fp_particle`,
which calls it only where ``devices`` is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mfg_pde.backends import BaseBackend


class ParticleSharding:
    """Particles split over JAX devices (``FPParticleSolver(devices=...)``).

    A one-axis ``Mesh`` of the devices (or the mesh given); the particle arrays are
    split over all its axes by a ``NamedSharding``, the grid arrays (U, M, the KDE
    plan) are replicated. Inside the compiled march, :meth:`split` pins a fresh draw to
    the split, so each device draws its own share of the same global stream, and
    :meth:`sum_over_devices` runs a per-device function under ``shard_map`` and
    ``psum``s its grid-sized result.

    The mesh may span several processes (``jax.distributed.initialize``): U and the
    key enter as host values that every process holds alike, and M leaves as this
    process's copy of the replicated result, so no array crosses between hosts
    outside the compiled program.
    """

    def __init__(self, backend: BaseBackend, devices: Any, num_particles: int) -> None:
        try:
            import jax
            from jax.sharding import Mesh, NamedSharding, PartitionSpec
        except ImportError as err:
            raise ImportError(
                'devices= splits particles over JAX devices: pip install "mfg_pde[jax]"'
            ) from err
        probe = backend.from_numpy(np.zeros(1))
        if not isinstance(probe, jax.Array):
            raise ValueError(
                f"devices= needs a backend whose arrays are JAX arrays (backend='jax'); the "
                f"particle march runs on {backend!r}"
            )
        if isinstance(devices, Mesh):
            mesh = devices
        else:
            mesh = Mesh(np.array(_pick_devices(jax, probe, devices)), ("particles",))
        self.mesh = mesh
        self.count = int(mesh.devices.size)
        if num_particles % self.count:
            raise ValueError(
                f"num_particles ({num_particles}) must be a multiple of the number of "
                f"devices ({self.count}) to split them evenly"
            )
        self._axes = tuple(mesh.axis_names)
        self._spec = PartitionSpec
        self._replicated = NamedSharding(mesh, PartitionSpec())
        self._home = probe.sharding
        self._jax = jax
        self._compiled = None

    def run(self, march: Any, U: Any, key: Any) -> Any:
        """``march(U, key)`` compiled over the mesh; M on the backend's device."""
        jax = self._jax
        if self._compiled is None:
            impl = jax.random.key_impl(key)
            self._compiled = jax.jit(
                lambda U, bits: march(U, jax.random.wrap_key_data(bits, impl=impl))
            )
        M = self._compiled(self._replicate(U), self._replicate(jax.random.key_data(key)))
        # M is replicated: this process's first copy is all of it.
        return jax.device_put(M.addressable_data(0), self._home)

    def _replicate(self, x: Any) -> Any:
        host = np.asarray(x)
        return self._jax.make_array_from_callback(
            host.shape, self._replicated, lambda index: host[index]
        )

    def split(self, values: Any, axis: int = 0) -> Any:
        """``values`` split over the devices along ``axis`` (inside the march)."""
        spec = [None] * values.ndim
        spec[axis] = self._axes
        sharding = self._jax.sharding.NamedSharding(self.mesh, self._spec(*spec))
        return self._jax.lax.with_sharding_constraint(values, sharding)

    def sum_over_devices(self, per_device: Any, X: tuple[Any, ...]) -> Any:
        """``psum`` over the devices of ``per_device(X_local)``, a grid-sized array."""
        jax, P = self._jax, self._spec

        def local(*coords: Any) -> Any:
            return jax.lax.psum(per_device(coords), self._axes)

        specs = tuple(P(self._axes) for _ in X)
        return jax.shard_map(local, mesh=self.mesh, in_specs=specs, out_specs=P())(*X)


def _pick_devices(jax: Any, probe: Any, devices: Any) -> list:
    """The devices that ``devices=`` (an int or a sequence of ``jax.Device``) names."""
    platform = next(iter(probe.devices())).platform
    available = jax.devices(platform)
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if devices < 1:
            raise ValueError(f"devices must be >= 1, got devices={devices}")
        if devices > len(available):
            hint = (
                "; on the CPU, set XLA_FLAGS=--xla_force_host_platform_device_count=N "
                "before jax is imported for N host devices"
                if platform == "cpu"
                else ""
            )
            raise ValueError(
                f"devices={devices} asks for more devices than the {len(available)} "
                f"{platform} device(s) JAX sees{hint}"
            )
        return list(available[:devices])
    try:
        chosen = list(devices)
    except TypeError:
        chosen = None
    if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
        raise TypeError(
            "devices must be None, an int, a sequence of jax.Device or a "
            f"jax.sharding.Mesh, got {devices!r}"
        )
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"devices lists a device twice: {chosen}")
    return chosen
