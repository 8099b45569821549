"""What every solver shares: the problem, the backend, and the grid on the backend."""

from __future__ import annotations

from typing import Any

from mfg_pde._problem import MFGProblem
from mfg_pde.backends import BaseBackend, create_backend


class BaseSolver:
    """Holds a problem and a backend; rebuilds its compiled functions when the backend changes.

    Subclasses implement :meth:`_build`, which turns the problem into backend arrays and
    (on JAX) compiled functions. ``backend=None`` chooses automatically (see
    :func:`mfg_pde.backends.create_backend`).
    """

    def __init__(self, problem: MFGProblem, backend: str | BaseBackend | None = None) -> None:
        if not isinstance(problem, MFGProblem):
            raise TypeError(f"problem must be an MFGProblem, got {type(problem).__name__}")
        self.problem = problem
        self.set_backend(backend)

    @property
    def backend(self) -> BaseBackend:
        return self._backend

    def set_backend(self, backend: str | BaseBackend | None) -> None:
        """Move the solver to another backend (the fixed-point iterator uses this)."""
        self._backend = create_backend(backend)
        self.xp = self._backend.xp
        self._build()

    def _build(self) -> None:
        raise NotImplementedError

    @property
    def name(self) -> str:
        return f"{type(self).__name__}[{self._backend.name}]"

    def __repr__(self) -> str:
        return f"{self.name}({self.problem!r})"

    def _as_backend(self, arr: Any, name: str, shape: tuple[int, ...]) -> Any:
        """Accept a NumPy or backend array of the given shape, return a backend array."""
        out = self._backend.array(arr)
        if tuple(out.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(out.shape)}")
        return out
