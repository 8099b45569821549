"""Built-in example problems, shared by the command line, the examples and the benchmarks.

Each is a function returning an :class:`~mfg_pde.MFGProblem`; keyword arguments override
its parameters (grid sizes, horizon, ...), so ``design_example(Nx=41, Nt=20)`` is the
same game on a coarser grid. :data:`EXAMPLES` maps the names the command line accepts
(``python -m mfg_pde solve --example NAME``) to these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem, vectorized_cost

__all__ = [
    "EXAMPLES",
    "crowd_2d_example",
    "design_example",
    "hello_2d_example",
    "hello_example",
]


def design_example(**overrides: Any) -> MFGProblem:
    """The example of the design brief: agents crossing [0, 1] while avoiding crowds.

    Agents start around x = 0.3 (``m0 ∝ exp(-50 (x - 0.3)^2)``), want to be at x = 0.8
    at T = 1 (terminal cost ``g(x) = 2 (x - 0.8)^2``) and pay ``f(x, m) = 0.2 m`` per unit
    time for standing in a crowd; σ = 0.2, λ = 1, no-flux walls, Nx = 101, Nt = 50.
    These are the defaults of :class:`~mfg_pde.MFGProblem`, so this is ``MFGProblem()``.

    Parameters
    ----------
    **overrides
        Any :class:`~mfg_pde.MFGProblem` argument, e.g. ``Nx=41, Nt=20``.
    """
    return MFGProblem(**overrides)


@vectorized_cost
def _hello_running_cost(x: Any, m: Any, t: Any) -> Any:
    return -0.5 * m


def _hello_terminal_cost(x: np.ndarray) -> np.ndarray:
    return (x - 0.5) ** 2


def _hello_initial_density(x: np.ndarray) -> np.ndarray:
    return np.exp(-50.0 * (x - 0.5) ** 2)


def hello_example(**overrides: Any) -> MFGProblem:
    """A crowd that likes company: agents gather at the centre of [0, 1].

    ``f(x, m) = -0.5 m`` (being in a crowd is a reward), ``g(x) = (x - 0.5)^2``,
    ``m0 ∝ exp(-50 (x - 0.5)^2)``, σ = 0.1, λ = 1, T = 1, no-flux walls, Nx = 101,
    Nt = 50. The density stays concentrated around x = 0.5; damped Picard
    (``thetaUM=0.5``) converges in about 30 iterations at the default size.

    Parameters
    ----------
    **overrides
        Any :class:`~mfg_pde.MFGProblem` argument, e.g. ``Nx=41, Nt=20``.
    """
    params: dict[str, Any] = {
        "xmin": 0.0,
        "xmax": 1.0,
        "T": 1.0,
        "sigma": 0.1,
        "control_cost": 1.0,
        "running_cost": _hello_running_cost,
        "terminal_cost": _hello_terminal_cost,
        "initial_density": _hello_initial_density,
        "boundary": "noflux",
    }
    params.update(overrides)
    return MFGProblem(**params)


@vectorized_cost
def _hello_2d_running_cost(x: Any, y: Any, m: Any, t: Any) -> Any:
    return -0.5 * m


def _hello_2d_terminal_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x - 0.5) ** 2 + (y - 0.5) ** 2


def _hello_2d_initial_density(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.exp(-50.0 * ((x - 0.5) ** 2 + (y - 0.5) ** 2))


def hello_2d_example(**overrides: Any) -> MFGProblem:
    """The hello example in two dimensions: agents who like company gather at the centre.

    On the unit square ``[0, 1]^2``: ``f(x, y, m) = -0.5 m``,
    ``g(x, y) = (x - 0.5)^2 + (y - 0.5)^2``,
    ``m0 ∝ exp(-50 ((x - 0.5)^2 + (y - 0.5)^2))``, σ = 0.1, λ = 1, T = 1, no-flux
    walls, ``Nx=(128, 128)``, Nt = 100: the two-dimensional benchmark problem.

    Parameters
    ----------
    **overrides
        Any :class:`~mfg_pde.MFGProblem` argument, e.g. ``Nx=(32, 32), Nt=20``
        (``Nx=32`` means 32 points on both axes).
    """
    params: dict[str, Any] = {
        "domain": [(0.0, 1.0), (0.0, 1.0)],
        "Nx": (128, 128),
        "T": 1.0,
        "Nt": 100,
        "sigma": 0.1,
        "control_cost": 1.0,
        "running_cost": _hello_2d_running_cost,
        "terminal_cost": _hello_2d_terminal_cost,
        "initial_density": _hello_2d_initial_density,
        "boundary": "noflux",
    }
    params.update(overrides)
    return MFGProblem(**params)


#: Where the crowd of :func:`crowd_2d_example` leaves the room.
_CROWD_EXIT = (1.0, 0.5)


@vectorized_cost
def _crowd_running_cost(x: Any, y: Any, m: Any, t: Any, c: Any) -> Any:
    return c * m


def _crowd_terminal_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.sqrt((x - _CROWD_EXIT[0]) ** 2 + (y - _CROWD_EXIT[1]) ** 2)


def _crowd_initial_density(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.exp(-50.0 * ((x - 0.3) ** 2 + (y - 0.5) ** 2))


def crowd_2d_example(**overrides: Any) -> MFGProblem:
    """A crowd leaving a room: agents head for the exit in the middle of the right wall.

    The room is the unit square ``[0, 1]^2`` with no-flux walls; the exit is at
    ``(1, 0.5)``. Agents start in a blob around ``(0.3, 0.5)``
    (``m0 ∝ exp(-50 ((x - 0.3)^2 + (y - 0.5)^2))``), pay their distance to the exit at
    T = 1 (``g(x, y) = sqrt((x - 1)^2 + (y - 0.5)^2)``) and ``f = c m`` per unit time
    for standing in a crowd, ``cost_parameters={"c": 0.1}``. σ = 0.25, λ = 1,
    ``Nx=(48, 48)``, Nt = 40: a NumPy solve takes seconds.

    Parameters
    ----------
    **overrides
        Any :class:`~mfg_pde.MFGProblem` argument, e.g. ``Nx=(32, 32), Nt=20`` or
        ``cost_parameters={"c": 0.5}`` for a crowd that minds congestion more.
    """
    params: dict[str, Any] = {
        "domain": [(0.0, 1.0), (0.0, 1.0)],
        "Nx": (48, 48),
        "T": 1.0,
        "Nt": 40,
        "sigma": 0.25,
        "control_cost": 1.0,
        "running_cost": _crowd_running_cost,
        "terminal_cost": _crowd_terminal_cost,
        "initial_density": _crowd_initial_density,
        "boundary": "noflux",
        "cost_parameters": {"c": 0.1},
    }
    params.update(overrides)
    return MFGProblem(**params)


#: Where the agents of :func:`gather_2d_example` gather.
_GATHER_TARGET = (0.65, 0.5)


@vectorized_cost
def _gather_running_cost(x: Any, y: Any, m: Any, t: Any, k: Any, c: Any) -> Any:
    return k * ((x - _GATHER_TARGET[0]) ** 2 + (y - _GATHER_TARGET[1]) ** 2) + c * m


def _gather_terminal_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return 5.0 * ((x - _GATHER_TARGET[0]) ** 2 + (y - _GATHER_TARGET[1]) ** 2)


def _gather_initial_density(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.exp(-60.0 * ((x - 0.35) ** 2 + (y - 0.5) ** 2))


def gather_2d_example(**overrides: Any) -> MFGProblem:
    """A crowd that moves to a meeting point and stays there: the density occupies a
    small part of the room at every time, the case adaptive meshes are for.

    On the unit square with no-flux walls: agents start in a blob around ``(0.35, 0.5)``
    (``m0 ∝ exp(-60 |x - (0.35, 0.5)|^2)``), pay ``k |x - x*|^2 + c m`` per unit time
    and ``5 |x - x*|^2`` at T = 1, with ``x* = (0.65, 0.5)``,
    ``cost_parameters={"k": 2.0, "c": 0.02}``; σ = 0.15, λ = 1, ``Nx=(64, 64)``,
    Nt = 20.

    Parameters
    ----------
    **overrides
        Any :class:`~mfg_pde.MFGProblem` argument.
    """
    params: dict[str, Any] = {
        "domain": [(0.0, 1.0), (0.0, 1.0)],
        "Nx": (64, 64),
        "T": 1.0,
        "Nt": 20,
        "sigma": 0.15,
        "control_cost": 1.0,
        "running_cost": _gather_running_cost,
        "terminal_cost": _gather_terminal_cost,
        "initial_density": _gather_initial_density,
        "boundary": "noflux",
        "cost_parameters": {"k": 2.0, "c": 0.02},
    }
    params.update(overrides)
    return MFGProblem(**params)


#: Example name (as the command line spells it) -> function building the problem.
EXAMPLES: dict[str, Callable[..., MFGProblem]] = {
    "quickstart": design_example,
    "hello": hello_example,
    "hello_2d": hello_2d_example,
    "crowd_2d": crowd_2d_example,
    "gather_2d": gather_2d_example,
}
