"""The population loop of :class:`~mfg_pde.alg.rl.ActorCriticSolver`."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from mfg_pde.alg.rl._exploitability import exploitability
from mfg_pde.alg.rl._solver import TrainingDivergedError, timed
from mfg_pde.alg.rl._training import fit_critic, improve_actor, simulate_learners
from mfg_pde.utils.progress import Progress


def run(solver: Any, total: int, verbose: bool, callback: Any, checkpoint: Any) -> Any:
    """Outer iterations ``solver.iteration + 1 .. total``; returns the result."""
    import torch

    start = time.perf_counter()
    timings = solver.timings
    if solver.population is None:
        # The first flow: agents that do not steer (the untrained policy's mean is ~0).
        solver.population = solver.simulate_density()[0]
    stop_reason = f"completed {total} outer iterations"
    with Progress(total, verbose, callback, description="actor-critic") as progress:
        if progress._bar is not None:
            progress._bar.update(min(solver.iteration, total))
        while solver.iteration < total:
            good = solver.snapshot()
            k = solver.iteration + 1
            try:
                metrics = _outer_iteration(solver, k, timings)
            except TrainingDivergedError as err:
                solver.restore(good)
                raise TrainingDivergedError(
                    f"{err} (outer iteration {k}). The networks, optimisers and population "
                    f"flow are back at the end of iteration {k - 1}: solver.save(path) keeps "
                    "them, and solver.solve() retries from there (a smaller actor_lr or "
                    "critic_lr often helps)."
                ) from None
            except BaseException:
                # Interrupted (Ctrl-C) or failed: nothing half-trained is left behind.
                solver.restore(good)
                raise
            solver.iteration = k
            accumulate_average(solver, k, total)
            if checkpoint is not None:
                solver.save(checkpoint)
            shown = {
                "exploitability": metrics["relative_exploitability"],
                "M": metrics["M"],
            }
            if progress.update(k, shown):
                stop_reason = progress.stop_reason
                break
    timings["total"] = timings.get("total", 0.0) + time.perf_counter() - start
    del torch
    from mfg_pde.alg.rl._result import build_result

    return build_result(solver, stop_reason)


def _outer_iteration(solver: Any, k: int, timings: dict[str, float]) -> dict[str, float]:
    import torch

    env, b = solver.env, solver.backend
    now = time.perf_counter()
    env.set_population(solver.population)
    rounds = solver.inner_iterations * (solver.warmup if k == 1 else 1)
    critic_loss = actor_loss = math.nan
    for _ in range(rounds):
        data = simulate_learners(
            env,
            solver.policy,
            solver.critic,
            solver.generator,
            solver.num_learners,
            solver.exploring_starts,
        )
        now = timed(timings, "simulate", now)
        critic_loss = fit_critic(
            solver.critic,
            solver.critic_optimizer,
            data,
            solver._times,
            solver.generator,
            solver.critic_steps,
            solver.batch_size,
        )
        now = timed(timings, "critic", now)
        actor_loss = improve_actor(
            env,
            solver.policy,
            solver.critic,
            solver.actor_optimizer,
            data,
            solver._times,
            solver.generator,
            solver.actor_steps,
            solver.batch_size,
        )
        now = timed(timings, "actor", now)
        _check_finite(solver, critic_loss, actor_loss)

    # The population that follows the new policy, and its value under the old flow.
    density, mean_return = solver.simulate_density()
    if not bool(torch.all(torch.isfinite(density))):
        raise TrainingDivergedError("the population density became non-finite")
    now = timed(timings, "population", now)
    control = solver.control_on_grid()
    gap = exploitability(solver.problem, density, control, b, hjb=solver.hjb)
    now = timed(timings, "exploitability", now)

    U = solver.value_on_grid()
    change_U = _relative_change(b, U, solver.last_value)
    change_M = _relative_change(b, density, solver.last_density)
    beta = 1.0 / (k + 1) if solver.damping == "fictitious" else float(solver.damping)
    solver.population = (1.0 - beta) * solver.population + beta * density
    solver.last_density = density
    solver.last_value = U
    metrics = {
        "U": change_U,
        "M": change_M,
        "exploitability": gap["exploitability"],
        "relative_exploitability": gap["relative"],
        # Mean return of the population's agents under the flow they learned against.
        "return": mean_return,
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
    }
    for name, value in metrics.items():
        solver.history[name].append(float(value))
    return metrics


def accumulate_average(solver: Any, k: int, total: int) -> None:
    """Fold the actor's weights after iteration ``k`` into the running mean over the last
    ``solver.averaging`` iterations of ``total`` (restarted when that window changes).

    The learned control moves by a few percent from one outer iteration to the next
    (the critic is refitted on fresh samples every round); averaging the weights of the
    last iterations, as fictitious play averages policies, cancels much of that noise
    (docs/rl.md has the measurements). The iterates are successive fine-tunings of one
    network, so their weights stay in one basin and their mean is a good network.
    """
    first = max(1, total - solver.averaging + 1)
    if k < first:
        return
    weights = {name: value.detach().clone() for name, value in solver.policy.state_dict().items()}
    if solver.average is None or solver.average_start != first:
        solver.average, solver.average_count, solver.average_start = weights, 1, first
        return
    solver.average_count += 1
    for name, value in weights.items():
        mean = solver.average[name]
        mean += (value - mean) / solver.average_count


def _relative_change(backend: Any, new: Any, old: Any) -> float:
    if old is None:
        return math.nan
    xp = backend.xp
    norm = float(xp.linalg.vector_norm(xp.reshape(new, (-1,))))
    change = float(xp.linalg.vector_norm(xp.reshape(new - old, (-1,))))
    return change / norm if norm > 0 else change


def _check_finite(solver: Any, critic_loss: float, actor_loss: float) -> None:
    import torch

    for name, value in (("critic loss", critic_loss), ("actor loss", actor_loss)):
        if not np.isfinite(value):
            raise TrainingDivergedError(f"the {name} became non-finite ({value})")
    for name, module in (("policy", solver.policy), ("critic", solver.critic)):
        for parameter in module.parameters():
            if not bool(torch.all(torch.isfinite(parameter))):
                raise TrainingDivergedError(f"the {name} network's weights became non-finite")
