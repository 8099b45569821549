"""Numerical MFG solvers: finite differences, particles, the fixed-point coupling, and
finite volumes on the adaptive quadtree."""

from mfg_pde.alg.numerical.amr_result import AdaptiveMFGResult
from mfg_pde.alg.numerical.amr_solver import AdaptiveMFGSolver
from mfg_pde.alg.numerical.fixed_point import FixedPointIterator
from mfg_pde.alg.numerical.fp_fdm import FPFDMSolver
from mfg_pde.alg.numerical.fp_particle import FPParticleSolver
from mfg_pde.alg.numerical.hjb_fdm import HJBFDMSolver
from mfg_pde.alg.numerical.newton import NewtonSolver
from mfg_pde.alg.numerical.particle_strategy import (
    CPUParticleStrategy,
    GPUParticleStrategy,
    ParticleProblemSize,
    ParticleStrategy,
    select_particle_strategy,
)

__all__ = [
    "AdaptiveMFGResult",
    "AdaptiveMFGSolver",
    "CPUParticleStrategy",
    "FPFDMSolver",
    "FPParticleSolver",
    "FixedPointIterator",
    "GPUParticleStrategy",
    "HJBFDMSolver",
    "NewtonSolver",
    "ParticleProblemSize",
    "ParticleStrategy",
    "select_particle_strategy",
]
