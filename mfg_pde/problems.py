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

from mfg_pde._problem import MFGProblem

__all__ = ["EXAMPLES", "design_example", "hello_example"]


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


#: Example name (as the command line spells it) -> function building the problem.
EXAMPLES: dict[str, Callable[..., MFGProblem]] = {
    "quickstart": design_example,
    "hello": hello_example,
}
