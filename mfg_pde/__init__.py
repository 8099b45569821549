"""mfg_pde: Mean Field Games solvers on NumPy, Numba, JAX and PyTorch.

Importing this package imports neither jax nor torch; a backend's library is imported
when that backend is created.
"""

from mfg_pde._problem import MFGProblem
from mfg_pde._result import MFGResult
from mfg_pde._solve import solve_mfg, solve_mfg_batch
from mfg_pde.backends import available_backends, create_backend

__version__ = "0.1.0"

__all__ = [
    "MFGProblem",
    "MFGResult",
    "__version__",
    "available_backends",
    "create_backend",
    "solve_mfg",
    "solve_mfg_batch",
]
