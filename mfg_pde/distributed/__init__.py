"""Beyond one process: parameter sweeps on a Dask cluster.

:func:`sweep` solves many variants of a problem, in this process or on a
``dask.distributed`` cluster (a ``LocalCluster`` on a laptop, dask-jobqueue on SLURM),
saving every member's result as it finishes and resuming from them when run again.
Particles sharded over several JAX devices are an option of the particle solver:
``FPParticleSolver(..., devices=4)`` (:class:`~mfg_pde.alg.numerical.FPParticleSolver`).

This package depends on the rest of mfg_pde and nothing there imports it. Importing it
imports neither dask nor jax: dask is imported when a sweep is given a client.
See docs/scaling.md.
"""

from mfg_pde.distributed._sweep import SweepResult, load_sweep, sweep

__all__ = ["SweepResult", "load_sweep", "sweep"]
