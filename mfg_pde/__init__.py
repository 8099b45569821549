"""mfg_pde: Mean Field Games solvers on NumPy, Numba, JAX and PyTorch."""

from mfg_pde.backends import available_backends, create_backend

__version__ = "0.1.0"

__all__ = ["__version__", "available_backends", "create_backend"]
