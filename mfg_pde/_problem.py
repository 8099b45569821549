"""The MFG problem: domain, horizon, diffusion, Hamiltonian and costs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

BOUNDARIES = ("noflux", "periodic")


#: The attribute :func:`vectorized_cost` sets on a running cost.
_VECTORIZED = "__mfg_pde_vectorized__"


def vectorized_cost(f: Callable) -> Callable:
    """Declare that running cost ``f`` also takes every time level at once; returns ``f``.

    Use as a decorator. A running cost's contract is one density profile per call,
    ``f(x, m, t)`` with ``m`` of the grid's shape and ``t`` a float, so a nonlocal cost
    may reduce over the whole of ``m`` (``(x * m).sum() * dx``). A cost declared
    vectorized promises more: called with the levels stacked, ``m`` of shape
    ``(k, *grid)`` and ``t`` of shape ``(k, 1, ...)`` (one value per level, broadcast
    over the grid), it returns what the ``k`` calls level by level would, stacked.
    Elementwise costs (``V(x) + c * m``) are; a nonlocal one is when its reductions run
    over the grid's axes only (``(x * m).sum(axis=-1, keepdims=True) * dx`` in 1D).

    What it buys: the numpy and numba backends then evaluate the cost once per sweep
    over the time levels instead of once per level, which on the 1D hello problem
    (101 x 50) was ~30% of a whole solve (25.5 -> 17.3 ms, the same answer to the bit).
    jax and torch already batch the levels with their ``vmap`` and ignore it.

    :class:`MFGProblem` checks the declaration when the problem is built, on three
    levels with different densities and times against the level-by-level calls, and
    refuses a cost that disagrees (a ``.sum()`` over all axes shows there). That check
    catches mistakes, not every conceivable cost: a cost that branches on a reduction
    (``if m.max() > 5``) can agree on the check and differ later, so declare only costs
    whose arithmetic is per level.

    Example::

        @vectorized_cost
        def congestion(x, m, t, c):
            return c * m
    """
    if not callable(f):
        raise TypeError(f"vectorized_cost takes a callable, got {type(f).__name__}")
    try:
        setattr(f, _VECTORIZED, True)
    except (AttributeError, TypeError) as err:
        raise TypeError(
            f"cannot mark {f!r} as a vectorized cost (it takes no attributes): "
            "wrap it in a def and decorate that"
        ) from err
    return f


def is_vectorized_cost(f: Any) -> bool:
    """Whether ``f`` was declared with :func:`vectorized_cost`."""
    return getattr(f, _VECTORIZED, False) is True


@vectorized_cost
def _default_running_cost(*coords_m_t: Any) -> Any:
    return 0.2 * coords_m_t[-2]


def _default_terminal_cost(*coords: np.ndarray) -> np.ndarray:
    return 2.0 * sum((c - 0.8) ** 2 for c in coords)


def _default_initial_density(*coords: np.ndarray) -> np.ndarray:
    return np.exp(-50.0 * sum((c - 0.3) ** 2 for c in coords))


class MFGProblem:
    r"""A Mean Field Game on an interval or a rectangle, with quadratic Hamiltonian.

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

    In two dimensions, with ``domain=[(xmin, xmax), (ymin, ymax)]`` and ``Nx=(nx, ny)``
    (an int means the same count on both axes) the grid is the tensor product of the two axes' grids
    (each built as ``Nx`` above, per its own boundary), ``problem.x`` and ``problem.y``
    are the axes and the arrays have shape ``(nx, ny)`` (``indexing="ij"``: the first
    index is x). The callables then take both coordinates, as arrays of the grid's
    shape: ``running_cost(x, y, m, t, **cost_parameters)``, ``terminal_cost(x, y)``,
    ``initial_density(x, y)``. The density is normalised to ``sum(m0) * dx * dy = 1``.
    The Hamiltonian is ``|∇u|² / (2λ)`` and the diffusion ``ν Δ``.

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
        (``V(x) + c * m``) and nonlocal ones (``(x * m).sum() * dx``) both work. A cost
        that also takes all levels at once may say so with :func:`vectorized_cost`
        (faster on numpy and numba; checked here).
    terminal_cost : callable ``g(x)`` or array (Nx,)
        Evaluated once on the host with a NumPy array.
    initial_density : callable ``m0(x)`` or array (Nx,)
        Evaluated once on the host; nonnegative with positive mass. It is normalised to
        ``sum(m0) * dx = 1`` (the mass the finite-difference schemes conserve).
    boundary : {"noflux", "periodic"} or a pair of them
        One for every axis, or a pair ``(boundary_x, boundary_y)`` in 2D.
    cost_parameters : dict[str, float], optional
        Named scalars passed to the running cost as keyword arguments,
        ``f(x, m, t, **cost_parameters)``. Values given here (rather than written into the
        callable) are arguments of the compiled programs: problems that differ only in
        them share one compilation, and :func:`mfg_pde.solve_mfg_batch` can sweep them.
        Example: ``running_cost=lambda x, m, t, c: c * m, cost_parameters={"c": 0.5}``.
    domain : sequence of (lo, hi) pairs, optional
        ``[(xmin, xmax), (ymin, ymax)]`` makes a two-dimensional problem on that
        rectangle (then leave ``xmin``, ``xmax`` at their defaults); one pair is the
        same as ``xmin``, ``xmax``.

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
        boundary: str | tuple[str, str] = "noflux",
        cost_parameters: dict[str, float] | None = None,
        domain: Any = None,
    ) -> None:
        bounds = _domain(domain, xmin, xmax)
        self.dim = len(bounds)
        self.bounds = bounds
        self.xmin, self.xmax = bounds[0]
        self.grid_shape = _grid_shape(Nx, self.dim)
        self.Nx = self.grid_shape[0] if self.dim == 1 else self.grid_shape
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
        self.boundaries = _boundaries(boundary, self.dim)
        self.boundary = self.boundaries[0] if len(set(self.boundaries)) == 1 else self.boundaries
        self.cost_parameters = _cost_parameters(cost_parameters)

        axes, spacing = [], []
        for (lo, hi), n, kind in zip(bounds, self.grid_shape, self.boundaries, strict=True):
            if kind == "periodic":
                spacing.append((hi - lo) / n)
                axes.append(lo + spacing[-1] * np.arange(n))
            else:
                spacing.append((hi - lo) / (n - 1))
                axes.append(np.linspace(lo, hi, n))
        self.axes = tuple(axes)
        self.spacing = tuple(spacing)
        self.x, self.dx = self.axes[0], self.spacing[0]
        if self.dim == 2:
            self.y, self.dy = self.axes[1], self.spacing[1]
            self.ymin, self.ymax = bounds[1]
        #: Coordinate arrays of the grid's shape: what the callables receive.
        self.coords = tuple(np.meshgrid(*self.axes, indexing="ij"))
        #: ``dx`` in 1D, ``dx * dy`` in 2D: the mass is ``sum(m) * cell_volume``.
        self.cell_volume = float(np.prod(self.spacing))
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
                f"at {self._where(np.argmin(m0))}"
            )
        mass = m0.sum() * self.cell_volume
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
    def shape(self) -> tuple[int, ...]:
        """Shape ``(Nt + 1, Nx)`` (2D: ``(Nt + 1, nx, ny)``) of the solution arrays U, M."""
        return (self.Nt + 1, *self.grid_shape)

    @property
    def periodic(self) -> tuple[bool, ...]:
        """Per axis, whether it is periodic."""
        return tuple(kind == "periodic" for kind in self.boundaries)

    def parameters(self) -> dict[str, Any]:
        """The scalar parameters, for saving and printing."""
        if self.dim == 1:
            space: dict[str, Any] = {"xmin": self.xmin, "xmax": self.xmax, "Nx": self.Nx}
        else:
            space = {"domain": [list(b) for b in self.bounds], "Nx": list(self.grid_shape)}
        boundary = self.boundary if isinstance(self.boundary, str) else list(self.boundary)
        return {
            **space,
            "T": self.T,
            "Nt": self.Nt,
            "sigma": self.sigma,
            "control_cost": self.control_cost,
            "boundary": boundary,
            "cost_parameters": dict(self.cost_parameters),
        }

    def replace(self, **changes: Any) -> MFGProblem:
        """A copy with some constructor arguments changed (callables are shared).

        ``problem.replace(sigma=0.3)``; a cost parameter by its name:
        ``problem.replace(c=0.8)`` when ``cost_parameters`` has ``"c"``.
        """
        params = self.parameters()
        if self.dim == 2:
            params["Nx"] = tuple(params["Nx"])
            params["boundary"] = self.boundary
        kwargs = {
            **{k: v for k, v in params.items() if k != "cost_parameters"},
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

    def _where(self, flat_index: int) -> str:
        """``"x=0.3"`` or ``"x=0.3, y=0.5"``: the grid point of a flat index, for errors."""
        index = np.unravel_index(flat_index, self.grid_shape)
        return ", ".join(
            f"{name}={axis[i]:.6g}" for name, axis, i in zip("xy", self.axes, index, strict=False)
        )

    def _on_grid(self, name: str, value: Any) -> np.ndarray:
        arr = value(*(c.copy() for c in self.coords)) if callable(value) else value
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full(self.grid_shape, float(arr))
        if arr.shape != self.grid_shape:
            raise ValueError(
                f"{name} must give shape {self.grid_shape} on the grid, got {arr.shape}"
            )
        if not np.all(np.isfinite(arr)):
            bad = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(f"{name} is not finite at {self._where(bad)} (value {arr.flat[bad]})")
        return arr

    def _check_running_cost(self) -> None:
        names = "x, m, t" if self.dim == 1 else "x, y, m, t"
        try:
            f = self.running_cost(
                *(c.copy() for c in self.coords), self.m0.copy(), 0.0, **self.cost_parameters
            )
        except Exception as err:
            raise TypeError(
                f"running_cost({names}, **cost_parameters) failed on the grid with NumPy "
                f"arrays (coordinates and m of shape {self.grid_shape}, t a float): {err}"
            ) from err
        f = np.asarray(f, dtype=np.float64)
        if f.shape not in ((), self.grid_shape):
            raise ValueError(
                f"running_cost must return a scalar or shape {self.grid_shape}, got {f.shape}"
            )
        if not np.all(np.isfinite(f)):
            raise ValueError("running_cost returned non-finite values at t=0 with m = m0")
        if is_vectorized_cost(self.running_cost):
            self._check_vectorized_cost(names)

    def _check_vectorized_cost(self, names: str) -> None:
        """A cost declared with :func:`vectorized_cost` must give, on three stacked
        levels (densities ``m0`` scaled by 0.5, 1, 1.5 and tilted differently, times 0,
        T/2, T), what it gives level by level."""
        levels = 3
        column = (levels,) + (1,) * self.dim
        tilt = np.linspace(-1.0, 1.0, self.m0.size).reshape(self.grid_shape)
        scale = np.linspace(0.5, 1.5, levels).reshape(column)
        M = scale * self.m0 * (1.0 + 0.25 * scale * tilt)
        t = np.linspace(0.0, self.T, levels)
        zero = np.zeros((levels, *self.grid_shape))
        by_level = zero + np.stack(
            [
                np.zeros(self.grid_shape)
                + self.running_cost(*self.coords, M[n], float(t[n]), **self.cost_parameters)
                for n in range(levels)
            ]
        )
        try:
            stacked = zero + np.asarray(
                self.running_cost(*self.coords, M, t.reshape(column), **self.cost_parameters),
                dtype=np.float64,
            )
        except Exception as err:
            raise ValueError(
                f"running_cost is declared vectorized_cost but failed with the time levels "
                f"stacked (m of shape {M.shape}, t of shape {column}): {err}"
            ) from err
        gap = float(np.max(np.abs(stacked - by_level)))
        if not gap <= 1e-12 * max(1.0, float(np.max(np.abs(by_level)))):
            raise ValueError(
                f"running_cost is declared vectorized_cost, but on stacked time levels it "
                f"differs from running_cost({names}) level by level (max difference "
                f"{gap:.3g}): a reduction over all axes (.sum(), .max()) mixes the levels; "
                "reduce over the grid's axes (axis=-1 in 1D) or drop the declaration"
            )


def _domain(domain: Any, xmin: Any, xmax: Any) -> tuple[tuple[float, float], ...]:
    """The ``(lo, hi)`` pairs of the axes, checked: from ``domain`` or ``xmin, xmax``."""
    if domain is None:
        pairs = [(xmin, xmax)]
    else:
        if (xmin, xmax) != (0.0, 1.0):
            raise TypeError("give either domain=[(xmin, xmax), ...] or xmin/xmax, not both")
        try:
            pairs = [tuple(pair) for pair in domain]
        except TypeError:
            raise TypeError(
                f"domain must be a sequence of (lo, hi) pairs, got {domain!r}"
            ) from None
        if len(pairs) not in (1, 2) or any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"domain must be one or two (lo, hi) pairs (1D or 2D), got {domain!r}")
    out = []
    for name, (lo, hi) in zip("xy", pairs, strict=False):
        lo = _finite_float(f"{name}min", lo)
        hi = _finite_float(f"{name}max", hi)
        if not hi > lo:
            raise ValueError(f"{name}max must be greater than {name}min, got ({lo!r}, {hi!r})")
        out.append((lo, hi))
    return tuple(out)


def _grid_shape(Nx: Any, dim: int) -> tuple[int, ...]:
    if isinstance(Nx, (tuple, list)):
        if len(Nx) != dim:
            raise ValueError(f"Nx must give {dim} grid size(s) for a {dim}D domain, got {Nx!r}")
        return tuple(_int_at_least(f"Nx[{i}]", n, 3) for i, n in enumerate(Nx))
    return (_int_at_least("Nx", Nx, 3),) * dim


def _boundaries(boundary: Any, dim: int) -> tuple[str, ...]:
    kinds = (boundary,) * dim if isinstance(boundary, str) else tuple(boundary)
    if len(kinds) != dim or any(kind not in BOUNDARIES for kind in kinds):
        raise ValueError(
            f"boundary must be one of {BOUNDARIES}"
            + (" or a pair of them (one per axis)" if dim == 2 else "")
            + f", got boundary={boundary!r}"
        )
    return kinds


def _cost_parameters(value: Any) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"cost_parameters must be a dict of names to numbers, got {value!r}")
    out = {}
    for name, v in value.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"cost_parameters keys must be identifiers, got {name!r}")
        if name in ("x", "y", "m", "t"):
            raise ValueError(f"cost parameter name {name!r} clashes with f(x, [y,] m, t)")
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
