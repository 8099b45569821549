"""The result of an MFG solve: arrays on the host, the grid, and honest diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class MFGResult:
    """Solution of an MFG system and how it was obtained.

    Attributes
    ----------
    U, M : numpy.ndarray (len(t), len(x))
        Value function and density at every time level.
    x, t : numpy.ndarray
        The grid the arrays live on.
    converged : bool
        Whether both residuals fell below the tolerance.
    iterations : int
        Fixed-point iterations performed.
    residuals : dict {"U": array, "M": array}
        Per iteration, the relative L2 change ``||G(x_k) - x_k|| / ||G(x_k)||`` of U and M
        (the fixed-point residual of the undamped map, independent of the damping).
    reason : str
        Why the iteration stopped, in words.
    backend, device : str
        Where it was computed.
    timings : dict
        Seconds. ``total``; a solve run as one compiled program (jax) adds ``compile``
        (0 when the program was compiled by an earlier solve); a host loop adds ``hjb``,
        ``fp`` and ``first_iteration``.
    solver : str
        Name of the solver, e.g. ``"FixedPointIterator[jax]"``.
    problem : dict
        The problem's scalar parameters.
    """

    U: np.ndarray
    M: np.ndarray
    x: np.ndarray
    t: np.ndarray
    converged: bool
    iterations: int
    residuals: dict[str, np.ndarray]
    reason: str
    backend: str
    device: str
    timings: dict[str, float] = field(default_factory=dict)
    solver: str = ""
    problem: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or not hasattr(self, key):
            raise KeyError(key)
        return getattr(self, key)

    @property
    def mass(self) -> np.ndarray:
        """``sum(M[n]) * dx`` at every time level (the conserved quantity of FDM)."""
        dx = self.problem.get("dx")
        if dx is None:
            dx = float(self.x[1] - self.x[0])
        return self.M.sum(axis=-1) * dx

    def __repr__(self) -> str:
        status = "converged" if self.converged else "NOT converged"
        last = (
            f"residual U {self.residuals['U'][-1]:.2e}, M {self.residuals['M'][-1]:.2e}"
            if self.iterations
            else "no iterations"
        )
        total = self.timings.get("total", float("nan"))
        return (
            f"MFGResult({self.solver} on {self.device}: {status} after {self.iterations} "
            f"iterations, {last}; {total:.3g} s; U, M shape {self.U.shape}; {self.reason})"
        )
