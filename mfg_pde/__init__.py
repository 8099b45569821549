"""mfg_pde: Mean Field Games solvers on NumPy, Numba, JAX and PyTorch.

Importing this package imports neither jax nor torch; a backend's library is imported
when that backend is created.
"""

from mfg_pde._io import load
from mfg_pde._problem import MFGProblem, vectorized_cost
from mfg_pde._result import MFGResult
from mfg_pde._solve import solve_mfg, solve_mfg_batch
from mfg_pde._version import __version__
from mfg_pde.backends import available_backends, create_backend

__all__ = [
    "MFGProblem",
    "MFGResult",
    "__version__",
    "available_backends",
    "create_backend",
    "load",
    "solve_mfg",
    "solve_mfg_batch",
    "vectorized_cost",
]
