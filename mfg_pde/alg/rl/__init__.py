"""Learning solvers: the equilibrium by reinforcement learning, refereed by the PDE solvers.

:class:`ActorCriticSolver` trains a Gaussian policy and a critic (torch MLPs) on simulated
agents inside a population loop and measures its exploitability with the HJB solver;
:class:`MeanFieldEnv` is the representative agent's MDP for a given population flow,
vectorised over agents on any backend, and :class:`RepresentativeAgentEnv` the same MDP
for one agent as a ``gymnasium.Env`` (needs ``pip install "mfg_pde[rl]"``).

Nothing here imports torch or gymnasium until it is used.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ActorCriticResult",
    "ActorCriticSolver",
    "MeanFieldEnv",
    "Policy",
    "RepresentativeAgentEnv",
    "TrainingDivergedError",
    "exploitability",
    "policy_value",
]

_WHERE = {
    "ActorCriticResult": "mfg_pde.alg.rl._result",
    "ActorCriticSolver": "mfg_pde.alg.rl._solver",
    "MeanFieldEnv": "mfg_pde.alg.rl._env",
    "Policy": "mfg_pde.alg.rl._result",
    "RepresentativeAgentEnv": "mfg_pde.alg.rl._gym",
    "TrainingDivergedError": "mfg_pde.alg.rl._solver",
    "exploitability": "mfg_pde.alg.rl._exploitability",
    "policy_value": "mfg_pde.alg.rl._exploitability",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mfg_pde.alg.rl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
