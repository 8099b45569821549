"""The MFG problem: domain, horizon, diffusion, Hamiltonian and costs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

BOUNDARIES = ("noflux", "periodic")


def _default_running_cost(x: Any, m: Any, t: Any) -> Any:
    return 0.2 * m


def _default_terminal_cost(x: np.ndarray) -> np.ndarray:
    return 2.0 * (x - 0.8) ** 2


def _default_initial_density(x: np.ndarray) -> np.ndarray:
    return np.exp(-50.0 * (x - 0.3) ** 2)


class MFGProblem:
    r"""A one-dimensional Mean Field Game with quadratic Hamiltonian.

    Solves on :math:`[x_{min}, x_{max}] \times [0, T]`

    .. math::
        -\partial_t u - \nu \partial_{xx} u + \frac{|\partial_x u|^2}{2\lambda}
            = f(x, m(t), t), \qquad u(T) = g,

        \partial_t m - \nu \partial_{xx} m - \partial_x\!\left(m \frac{\partial_x u}{\lambda}
            \right) = 0, \qquad m(0) = m_0,

    with :math:`\nu = \sigma^2 / 2` and :math:`\lambda` = ``control_cost``; the optimal
    control is :math:`\alpha^* = -\partial_x u / \lambda`.

    The defaults are the example of the design brief: agents start around x = 0.3,
    head for x = 0.8 (terminal cost ``2 (x - 0.8)^2``) and dislike crowds
    (running cost ``0.2 m``), with σ = 0.2 on [0, 1], T = 1, 101 points and 50 steps.
    ``MFGProblem(Nx=50, Nt=20, T=0.5)`` is the same game, coarser and shorter.

    Parameters
    ----------
    xmin, xmax : float
        The interval; ``xmax > xmin``.
    Nx : int
        Number of grid points (>= 3). ``"noflux"``: both ends included,
        ``dx = (xmax - xmin) / (Nx - 1)``. ``"periodic"``: ``xmax`` is identified
        with ``xmin`` and left out, ``dx = (xmax - xmin) / Nx``.
    T : float
        Horizon (> 0).
    Nt : int
        Number of time steps (>= 1); there are ``Nt + 1`` time levels, ``dt = T / Nt``.
    sigma : float
        Volatility (>= 0) of ``dX = alpha dt + sigma dW``.
    control_cost : float
        λ > 0 in ``H(p) = |p|^2 / (2 λ)``.
    running_cost : callable ``f(x, m, t)``
        Receives backend arrays (the grid and the density profile at time ``t``) and
        a float ``t``; returns an array of shape ``(Nx,)`` or a scalar. Write it with
        plain arithmetic and ``.sum()`` so it runs on every backend: local couplings
        (``V(x) + c * m``) and nonlocal ones (``(x * m).sum() * dx``) both work.
    terminal_cost : callable ``g(x)`` or array (Nx,)
        Evaluated once on the host with a NumPy array.
    initial_density : callable ``m0(x)`` or array (Nx,)
        Evaluated once on the host; nonnegative with positive mass. It is normalised to
        ``sum(m0) * dx = 1`` (the mass the finite-difference schemes conserve).
    boundary : {"noflux", "periodic"}
    cost_parameters : dict[str, float], optional
        Named scalars passed to the running cost as keyword arguments,
        ``f(x, m, t, **cost_parameters)``. Values given here (rather than written into the
        callable) are arguments of the compiled programs: problems that differ only in
        them share one compilation, and :func:`mfg_pde.solve_mfg_batch` can sweep them.
        Example: ``running_cost=lambda x, m, t, c: c * m, cost_parameters={"c": 0.5}``.
    """

    def __init__(
        self,
        xmin: float = 0.0,
        xmax: float = 1.0,
        Nx: int = 101,
        T: float = 1.0,
        Nt: int = 50,
        sigma: float = 0.2,
        control_cost: float = 1.0,
        running_cost: Callable | None = None,
        terminal_cost: Callable | np.ndarray | None = None,
        initial_density: Callable | np.ndarray | None = None,
        boundary: str = "noflux",
        cost_parameters: dict[str, float] | None = None,
    ) -> None:
        self.xmin = _finite_float("xmin", xmin)
        self.xmax = _finite_float("xmax", xmax)
        if not self.xmax > self.xmin:
            raise ValueError(f"xmax must be greater than xmin, got xmin={xmin!r}, xmax={xmax!r}")
        self.Nx = _int_at_least("Nx", Nx, 3)
        self.Nt = _int_at_least("Nt", Nt, 1)
        self.T = _finite_float("T", T)
        if self.T <= 0:
            raise ValueError(f"T must be positive, got T={T!r}")
        self.sigma = _finite_float("sigma", sigma)
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got sigma={sigma!r}")
        self.control_cost = _finite_float("control_cost", control_cost)
        if self.control_cost <= 0:
            raise ValueError(f"control_cost must be positive, got control_cost={control_cost!r}")
        if boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {BOUNDARIES}, got boundary={boundary!r}")
        self.boundary = boundary
        self.cost_parameters = _cost_parameters(cost_parameters)

        length = self.xmax - self.xmin
        if boundary == "periodic":
            self.dx = length / self.Nx
            self.x = self.xmin + self.dx * np.arange(self.Nx)
        else:
            self.dx = length / (self.Nx - 1)
            self.x = np.linspace(self.xmin, self.xmax, self.Nx)
        self.dt = self.T / self.Nt
        self.t = np.linspace(0.0, self.T, self.Nt + 1)

        self.running_cost = _default_running_cost if running_cost is None else running_cost
        if not callable(self.running_cost):
            raise TypeError(
                f"running_cost must be a callable f(x, m, t), got {type(running_cost).__name__}"
            )
        self.terminal_cost = _default_terminal_cost if terminal_cost is None else terminal_cost
        self.initial_density = (
            _default_initial_density if initial_density is None else initial_density
        )
        self.g = self._on_grid("terminal_cost", self.terminal_cost)
        m0 = self._on_grid("initial_density", self.initial_density)
        if np.any(m0 < 0):
            raise ValueError(
                f"initial_density must be nonnegative; min value {m0.min():.3g} "
                f"at x={self.x[np.argmin(m0)]:.6g}"
            )
        mass = m0.sum() * self.dx
        if not mass > 0:
            raise ValueError("initial_density has zero mass on the grid")
        self.m0 = m0 / mass
        self._check_running_cost()

    @property
    def nu(self) -> float:
        """Diffusion coefficient ν = σ² / 2."""
        return 0.5 * self.sigma**2

    @property
    def length(self) -> float:
        return self.xmax - self.xmin

    @property
    def shape(self) -> tuple[int, int]:
        """Shape ``(Nt + 1, Nx)`` of the solution arrays U and M."""
        return (self.Nt + 1, self.Nx)

    def parameters(self) -> dict[str, Any]:
        """The scalar parameters, for saving and printing."""
        return {
            "xmin": self.xmin,
            "xmax": self.xmax,
            "Nx": self.Nx,
            "T": self.T,
            "Nt": self.Nt,
            "sigma": self.sigma,
            "control_cost": self.control_cost,
            "boundary": self.boundary,
            "cost_parameters": dict(self.cost_parameters),
        }

    def replace(self, **changes: Any) -> MFGProblem:
        """A copy with some constructor arguments changed (callables are shared).

        ``problem.replace(sigma=0.3)``; a cost parameter by its name:
        ``problem.replace(c=0.8)`` when ``cost_parameters`` has ``"c"``.
        """
        kwargs = {
            **{k: v for k, v in self.parameters().items() if k != "cost_parameters"},
            "running_cost": self.running_cost,
            "terminal_cost": self.terminal_cost,
            "initial_density": self.initial_density,
        }
        cost = dict(self.cost_parameters)
        for name, value in changes.items():
            if name in cost:
                cost[name] = value
            elif name in kwargs or name == "cost_parameters":
                if name == "cost_parameters":
                    cost = dict(value)
                else:
                    kwargs[name] = value
            else:
                accepted = sorted([*kwargs, "cost_parameters", *cost])
                raise TypeError(f"unknown argument {name!r}; accepted: {', '.join(accepted)}")
        return MFGProblem(**kwargs, cost_parameters=cost)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"MFGProblem({args})"

    def _on_grid(self, name: str, value: Any) -> np.ndarray:
        arr = value(self.x.copy()) if callable(value) else value
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full(self.Nx, float(arr))
        if arr.shape != (self.Nx,):
            raise ValueError(f"{name} must give shape ({self.Nx},) on the grid, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            bad = np.flatnonzero(~np.isfinite(arr))[0]
            raise ValueError(f"{name} is not finite at x={self.x[bad]:.6g} (value {arr[bad]})")
        return arr

    def _check_running_cost(self) -> None:
        try:
            f = self.running_cost(self.x.copy(), self.m0.copy(), 0.0, **self.cost_parameters)
        except Exception as err:
            raise TypeError(
                "running_cost(x, m, t, **cost_parameters) failed on the grid with NumPy "
                f"arrays (x and m of shape ({self.Nx},), t a float): {err}"
            ) from err
        f = np.asarray(f, dtype=np.float64)
        if f.shape not in ((), (self.Nx,)):
            raise ValueError(
                f"running_cost must return a scalar or shape ({self.Nx},), got {f.shape}"
            )
        if not np.all(np.isfinite(f)):
            raise ValueError("running_cost returned non-finite values at t=0 with m = m0")


def _cost_parameters(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"cost_parameters must be a dict of names to numbers, got {value!r}")
    out = {}
    for name, v in value.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"cost_parameters keys must be identifiers, got {name!r}")
        if name in ("x", "m", "t"):
            raise ValueError(f"cost parameter name {name!r} clashes with f(x, m, t)")
        out[name] = _finite_float(f"cost_parameters[{name!r}]", v)
    return out


def _finite_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return out


def _int_at_least(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {name}={value}")
    return int(value)
