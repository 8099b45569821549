"""The result of an MFG solve: arrays on the host, the grid, and honest diagnostics."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from numbers import Number
from pathlib import Path
from typing import Any

import numpy as np

from mfg_pde._version import __version__
from mfg_pde.backends import _REGISTRY as _BACKEND_REGISTRY


@dataclass
class MFGResult:
    """Solution of an MFG system and how it was obtained.

    Attributes
    ----------
    U, M : numpy.ndarray (len(t), len(x)), or (len(t), len(x), len(y)) in 2D
        Value function and density at every time level (in 2D the first spatial index
        is x: ``M[n, i, j]`` is the density at ``(t[n], x[i], y[j])``).
    x, t : numpy.ndarray
        The grid the arrays live on.
    converged : bool
        Whether both residuals fell below the tolerance.
    iterations : int
        Fixed-point iterations performed.
    residuals : dict {"U": array, "M": array, "hjb": array, "fp": array}
        Per iteration: ``"U"``, ``"M"``, the relative L2 change of U and M (for the fixed
        point ``||G(x_k) - x_k|| / ||G(x_k)||``, the residual of the undamped map,
        independent of the damping; for Newton the relative size of the step);
        ``"hjb"``, ``"fp"``, the residuals of the discrete equations themselves,
        ``max |F|`` and ``max |G|`` (:mod:`mfg_pde.alg.numerical._residual`), of the
        pair the iteration produced (for the fixed point, the undamped ``G(x_k)``).
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
        The problem's scalar parameters (the callables f, g, m0 are code, not data: they
        are not part of the result; ``m0`` and ``g`` on the grid are ``M[0]`` and ``U[-1]``).
    warnings : list of str
        What the solver warned about during the solve.
    method : str
        The method that produced ``U`` and ``M``: ``"picard"``, ``"anderson"`` or
        ``"newton"`` (with ``solve_mfg(method="auto")``, the stage that succeeded or,
        when none did, the last one).
    stages : list of dict
        How the answer was reached, one entry per stage: the stages of
        ``method="auto"`` (each with its method, iterations, outcome, reason and
        residual histories) or the continuation steps of the Newton solver (the
        coupling strength ``s`` of each). Empty for a plain fixed-point solve.
    metadata : dict
        Provenance: versions of mfg_pde, Python, NumPy and the backend's library, filled
        in when the result is created and kept by :meth:`save` / :func:`mfg_pde.load`.
    y : numpy.ndarray or None
        The second axis of a two-dimensional result; ``None`` in 1D. (The last field,
        so that results built with positional arguments keep working.)

    Two results are equal (``==``) when every field is: arrays element by element.
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
    metadata: dict[str, Any] = field(default_factory=dict)
    method: str = ""
    stages: list[dict[str, Any]] = field(default_factory=list)
    y: np.ndarray | None = None

    def __post_init__(self) -> None:
        for key, value in _provenance(self.backend).items():
            self.metadata.setdefault(key, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MFGResult):
            return NotImplemented
        return all(_equal(getattr(self, f.name), getattr(other, f.name)) for f in fields(self))

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or not hasattr(self, key):
            raise KeyError(key)
        return getattr(self, key)

    @property
    def dim(self) -> int:
        """Spatial dimension: 1, or 2 when the result has a second axis ``y``."""
        return 1 if self.y is None else 2

    @property
    def mass(self) -> np.ndarray:
        """``sum(M[n]) * dx`` (2D: ``* dx * dy``) at every time level.

        The conserved quantity of the finite-difference schemes. The spacings are the
        problem's ``dx``, ``dy`` as the solver recorded them, else read off the grid.
        """
        cell = 1.0
        for name, axis in (("dx", self.x), ("dy", self.y))[: self.dim]:
            spacing = self.problem.get(name)
            cell *= float(axis[1] - axis[0]) if spacing is None else spacing
        return self.M.sum(axis=tuple(range(1, self.M.ndim))) * cell

    def __repr__(self) -> str:
        status = "converged" if self.converged else "NOT converged"
        last = (
            f"residual U {self.residuals['U'][-1]:.2e}, M {self.residuals['M'][-1]:.2e}"
            if self.iterations
            else "no iterations"
        )
        total = self.timings.get("total", float("nan"))
        grid = "" if self.dim == 1 else f" on a {len(self.x)} x {len(self.y)} grid"
        return (
            f"MFGResult({self.solver} on {self.device}: {status} after {self.iterations} "
            f"iterations, {last}; {total:.3g} s; U, M shape {self.U.shape}{grid}; "
            f"{self.reason})"
        )

    def summary(self) -> str:
        """A few lines on what was solved, where, how well and how fast."""
        p, r = self.problem, self.residuals
        status = "converged" if self.converged else "NOT converged"
        lines = [f"MFGResult: {status} after {self.iterations} iterations ({self.reason})"]
        if p:  # MFGProblem.parameters(), as the solvers record them
            bounds = p["domain"] if "domain" in p else [(p["xmin"], p["xmax"])]
            space = " x ".join(f"[{lo:g}, {hi:g}]" for lo, hi in bounds)
            nx = p["Nx"] if isinstance(p["Nx"], int) else "x".join(map(str, p["Nx"]))
            boundary = p["boundary"] if isinstance(p["boundary"], str) else tuple(p["boundary"])
            lines.append(
                f"  problem    {space} x [0, {p['T']:g}], "
                f"Nx={nx}, Nt={p['Nt']}, sigma={p['sigma']:g}, "
                f"control_cost={p['control_cost']:g}, boundary={boundary}"
            )
        lines.append(f"  solver     {self.solver or '?'}, backend {self.backend} on {self.device}")
        if self.iterations:
            lines.append(
                "  residuals  last "
                + ", ".join(f"{k} {v[-1]:.3e}" for k, v in r.items())
                + " (U, M: relative L2 change; hjb, fp: max discrete equation residual)"
            )
        for stage in self.stages:
            name = stage.get("stage", "?")
            extra = f" sigma={stage['sigma']:.3g}" if "sigma" in stage else ""
            outcome = "converged" if stage.get("converged") else "failed"
            lines.append(
                f"  stage      {name}{extra}: {outcome} in {stage.get('iterations', 0)} "
                f"iterations ({stage.get('reason', '')})"
            )
        if self.timings:
            parts = [f"{k} {v:.3g} s" for k, v in self.timings.items() if k != "total"]
            lines.append(
                f"  time       {self.timings.get('total', float('nan')):.3g} s total"
                + (f" ({', '.join(parts)})" if parts else "")
            )
        mass = self.mass
        drift = np.max(np.abs(mass - mass[0]))
        lines.append(f"  mass       {mass[0]:.6f} at t=0, largest change {drift:.2g}")
        axes = f"x {self.x.shape}" + ("" if self.y is None else f", y {self.y.shape}")
        lines.append(f"  arrays     U, M {self.U.shape} on {axes}, t {self.t.shape}")
        lines.extend(f"  warning    {w}" for w in self.warnings)
        versions = ", ".join(f"{k} {v}" for k, v in self.metadata.items())
        lines.append(f"  versions   {versions}")
        return "\n".join(lines)

    def plot(self, path: str | os.PathLike | None = None, **savefig_kwargs: Any) -> Any:
        """Draw the density, the value function and the residual history.

        In 1D: the density m(t, x) as a heatmap over (t, x) and u(t, x) at five times.
        In 2D: the density m(t, x, y) at four times from 0 to T (heatmaps on one colour
        scale, equal aspect) and u(0, x, y) as a heatmap with level lines.

        Parameters
        ----------
        path : str, path-like or None
            Where to write the figure (the format follows the suffix: ``.png``, ``.pdf``,
            ``.svg``, ...); parent folders are created. With a path the figure is closed
            after saving (no window opens); without one it stays open for
            ``matplotlib.pyplot.show()`` or a notebook.
        **savefig_kwargs
            Passed to :meth:`matplotlib.figure.Figure.savefig` (default ``dpi=120``).

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        NotImplementedError
            For results that are neither one- nor two-dimensional (U not of shape
            (Nt + 1, Nx), or (Nt + 1, nx, ny) with ``y`` of length ny).
        """
        from mfg_pde._plot import plot_result

        return plot_result(self, path, **savefig_kwargs)

    def plot_density(
        self,
        times: Sequence[float] | None = None,
        path: str | os.PathLike | None = None,
        **savefig_kwargs: Any,
    ) -> Any:
        """Draw the density at a few times: curves m(t, x) in 1D, heatmaps m(t, x, y) in 2D.

        Parameters
        ----------
        times : sequence of float, optional
            The times to show; each is drawn at the nearest time level of ``t``. Default:
            four times from 0 to T.
        path, **savefig_kwargs
            As for :meth:`plot`.

        Returns
        -------
        matplotlib.figure.Figure

        Raises
        ------
        ValueError
            A time outside ``[t[0], t[-1]]``.
        NotImplementedError
            As for :meth:`plot`.
        """
        from mfg_pde._plot import plot_density

        return plot_density(self, times, path, **savefig_kwargs)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the result to ``path``: every field, readable by :func:`mfg_pde.load`.

        The format follows the suffix: ``.npz`` (NumPy, always available; a path without
        a suffix gets ``.npz``) or ``.h5`` / ``.hdf5`` (HDF5, needs ``pip install h5py``).
        The arrays (``U``, ``M``, ``x``, ``t``, ``y`` in 2D, the residuals) are stored as
        arrays and everything else as one JSON document; no pickle is involved, so
        loading runs no code. Parent folders are created.

        Returns
        -------
        pathlib.Path
            The file written.
        """
        from mfg_pde._io import save_result

        return save_result(self, path)


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is b
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        nan_equal = a.dtype.kind in "fc" and b.dtype.kind in "fc"
        return (
            a.shape == b.shape
            and a.dtype == b.dtype
            and bool(np.array_equal(a, b, equal_nan=nan_equal))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, Number) and isinstance(b, Number):
        return bool(a == b) or (a != a and b != b)  # NaN equals NaN here
    return type(a) is type(b) and a == b


def _provenance(backend: str) -> dict[str, str]:
    """Versions of the software that produced a result on ``backend``."""
    out = {
        "mfg_pde": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    library = _BACKEND_REGISTRY[backend][2] if backend in _BACKEND_REGISTRY else None
    module = sys.modules.get(library) if library else None
    if module is not None and library not in out:
        out[library] = str(getattr(module, "__version__", "unknown"))
    return out
