"""Saving and resuming :class:`~mfg_pde.alg.rl.ActorCriticSolver` training.

One ``torch.save`` file: the networks' and optimisers' state dicts, the population flows,
the metrics so far, the random stream's state, the options and the problem's parameters.
It is read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and
dicts only, so loading runs no code. The file is written to a temporary name and renamed,
so an interruption while saving leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "mfg_pde.ActorCriticSolver"
FORMAT_VERSION = 2  # 2: the averaged policy (version 1 files load without it)

#: Options that fix the networks' shapes or the meaning of the saved state: a load
#: keeps the saved values of these.
STRUCTURAL = ("hidden", "seed", "bandwidth", "num_agents", "initial_std", "min_std")


def save(solver: Any, path: str | os.PathLike) -> Path:
    """Write the solver's training state to ``path``; return the path."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = solver.snapshot()
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "problem": _plain(solver.problem.parameters()),
        "options": _plain(solver.options()),
        **{k: v for k, v in state.items() if k != "generator"},
        "generator": state["generator"],
        "timings": dict(solver.timings),
    }
    temporary = path.with_name(path.name + ".tmp")
    torch.save(document, temporary)
    os.replace(temporary, path)
    return path


def load(cls: Any, path: str | os.PathLike, problem: Any, backend: Any, overrides: dict) -> Any:
    """A solver of class ``cls`` restored from ``path`` (see :meth:`ActorCriticSolver.load`)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}")
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{str(path)!r} is not an ActorCriticSolver checkpoint: {err}") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an ActorCriticSolver checkpoint")
    if document["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} uses checkpoint layout {document['format_version']}, newer than "
            f"this mfg_pde reads ({FORMAT_VERSION}); upgrade mfg_pde"
        )
    if _plain(problem.parameters()) != document["problem"]:
        raise ValueError(
            f"the checkpoint was trained on {document['problem']}, not on this problem "
            f"{_plain(problem.parameters())}"
        )
    fixed = [name for name in overrides if name in STRUCTURAL]
    if fixed:
        raise ValueError(f"{', '.join(fixed)} cannot change when resuming from a checkpoint")
    device = overrides.get("device")
    options = {**document["options"], **{k: v for k, v in overrides.items() if k != "device"}}
    options["hidden"] = tuple(options["hidden"])
    solver = cls(problem, backend, device=device, **options)
    to_device = _mover(torch.device(solver.backend.device))
    state = {
        key: to_device(document[key])
        for key in (
            "policy",
            "critic",
            "actor_optimizer",
            "critic_optimizer",
            "population",
            "last_density",
            "last_value",
            "iteration",
            "history",
            "average",
            "average_count",
            "average_start",
        )
        if key in document
    }
    state["generator"] = document["generator"]
    solver.restore(state)
    solver.timings = dict(document.get("timings", {}))
    return solver


def _mover(device: Any) -> Any:
    import torch

    def move(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.to(device)
        if isinstance(value, dict):
            return {k: move(v) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        return value

    return move


def _plain(value: Any) -> Any:
    """Lists for tuples, floats for NumPy scalars: what survives ``weights_only`` loading."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
