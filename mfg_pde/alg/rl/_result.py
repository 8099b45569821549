"""The result of :class:`~mfg_pde.alg.rl.ActorCriticSolver`: an MFGResult plus the policy."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mfg_pde._result import MFGResult

#: Relative exploitability (of the value's range) at which a result counts as converged.
CONVERGED_EXPLOITABILITY = 0.01


class Policy:
    """The learned feedback control ``α(t, x)``: the mean of the trained Gaussian policy.

    A frozen copy of the actor: training the solver further does not change it. Call it
    with NumPy arrays or floats (NumPy out) or torch tensors (a tensor out); ``t`` and
    ``x`` broadcast.
    """

    def __init__(self, policy: Any, backend: Any) -> None:
        self._policy = copy.deepcopy(policy).eval()
        for parameter in self._policy.parameters():
            parameter.requires_grad_(False)
        self._backend = backend

    def __call__(self, t: Any, x: Any) -> Any:
        from mfg_pde.alg.rl._solver import _evaluate

        return _evaluate(self._policy.mean, self._backend, t, x)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Policy):
            return NotImplemented
        mine, theirs = self._policy.state_dict(), other._policy.state_dict()
        return mine.keys() == theirs.keys() and all(
            bool((mine[k] == theirs[k]).all()) for k in mine
        )

    def __repr__(self) -> str:
        return f"Policy(mean of a Gaussian policy, device {self._backend.device})"


@dataclass(eq=False)
class ActorCriticResult(MFGResult):
    """What :meth:`ActorCriticSolver.solve` returns: an :class:`~mfg_pde.MFGResult`
    whose ``M`` is the density of the agents under the learned policy and ``U`` the
    critic on the grid, plus the policy itself.

    Attributes
    ----------
    U, M, x, t
        As in :class:`~mfg_pde.MFGResult`; ``U[-1]`` is ``g``.
    residuals : dict of arrays
        The per-outer-iteration metrics (also :attr:`metrics`): ``"U"``, ``"M"`` (relative
        L2 change of the critic on the grid and of the density), ``"exploitability"``,
        ``"relative_exploitability"`` (of the value's range, see
        :func:`~mfg_pde.alg.rl.exploitability`), ``"return"`` (mean return of the agents
        against the flow they learned from), ``"critic_loss"``, ``"actor_loss"``.
    converged : bool
        Whether the returned policy's relative exploitability is at most 1%.
    relative_exploitability : float
        The returned policy's exploitability against ``M``, divided by the value's range
        (see :func:`~mfg_pde.alg.rl.exploitability`); :attr:`exploitability` is the
        absolute one. The per-iteration ``residuals`` are the iterates' own.
    control : numpy.ndarray (Nt + 1, Nx)
        The learned control ``α(t_n, x_i)``.
    best_response_value, policy_value : numpy.ndarray (Nt + 1, Nx)
        The PDE referee's verdict on the final policy against ``M``: the best response's
        cost-to-go (HJB) and the policy's own (linear backward solve).
    policy : Policy
        The learned control as a callable ``α(t, x)``.

    ``save`` stores what :class:`~mfg_pde.MFGResult` stores (``U``, ``M`` and the metrics
    as residuals; :func:`mfg_pde.load` reads it back as an MFGResult); the networks are
    saved by :meth:`ActorCriticSolver.save`.
    """

    control: np.ndarray | None = None
    best_response_value: np.ndarray | None = None
    policy_value: np.ndarray | None = None
    policy: Policy | None = field(default=None, repr=False)
    final_exploitability: float = float("nan")
    relative_exploitability: float = float("nan")

    def __eq__(self, other: object) -> bool:
        return MFGResult.__eq__(self, other)

    @property
    def metrics(self) -> dict[str, np.ndarray]:
        """The per-iteration metrics (the same dict as ``residuals``)."""
        return self.residuals

    @property
    def exploitability(self) -> float:
        """The returned policy's exploitability ``∫ m0 (u_α - u_BR)(0) dx`` against ``M``."""
        return self.final_exploitability

    def plot(
        self, path: str | os.PathLike | None = None, reference: Any = None, **savefig_kwargs: Any
    ) -> Any:
        """Draw the density, the critic, the exploitability per iteration and the control.

        The control panel shows the learned ``α(t, x)`` at a few times and, when a
        ``reference`` result of the PDE solvers is given, its control
        ``-∂ₓU / control_cost`` (central differences) as dashed lines.

        Parameters
        ----------
        path : str, path-like or None
            As :meth:`mfg_pde.MFGResult.plot`.
        reference : MFGResult, optional
            A PDE solution of the same problem (same grid).
        **savefig_kwargs
            Passed to ``Figure.savefig``.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        from mfg_pde._plot import _draw_density_1d, _draw_value_1d, _finish, _levels

        fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), layout="constrained")
        _draw_density_1d(fig, axes[0, 0], self)
        _draw_value_1d(axes[0, 1], self)
        axes[0, 1].set_title("Critic (cost-to-go)")
        ax = axes[1, 0]
        k = np.arange(1, self.iterations + 1)
        if self.iterations:
            ax.semilogy(k, np.maximum(self.residuals["relative_exploitability"], 1e-12), "o-")
        ax.set(xlabel="outer iteration", ylabel="exploitability / value range")
        ax.set_title("Exploitability (PDE referee)")
        ax = axes[1, 1]
        levels = _levels(self, None, 4)[:-1] or [0]
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(levels)))
        reference_control = None
        if reference is not None:
            dx = float(self.x[1] - self.x[0])
            lam = float(self.problem.get("control_cost", 1.0))
            reference_control = -np.gradient(np.asarray(reference.U), dx, axis=1) / lam
        for n, colour in zip(levels, colours, strict=True):
            ax.plot(self.x, self.control[n], color=colour, label=f"learned, t = {self.t[n]:.3g}")
            if reference_control is not None:
                ax.plot(self.x, reference_control[n], "--", color=colour)
        title = "Control: learned (solid)"
        if reference_control is not None:
            title += " and PDE -∂ₓU/λ (dashed)"
        ax.set(xlabel="x", ylabel="α(t, x)", title=title)
        ax.legend(fontsize="small")
        fig.suptitle(
            f"{self.solver}: exploitability {self.relative_exploitability:.2%} "
            f"of the value range after {self.iterations} iterations, "
            f"{self.timings.get('total', float('nan')):.3g} s on {self.device}"
            if self.iterations
            else f"{self.solver}: not trained"
        )
        return _finish(fig, path, savefig_kwargs)


def averaged_policy(solver: Any) -> Any:
    """A copy of the actor with the averaged weights (the actor itself if none yet)."""
    if solver.average is None:
        return solver.policy
    policy = copy.deepcopy(solver.policy)
    policy.load_state_dict(solver.average)
    return policy


def final_density(solver: Any, policy: Any) -> Any:
    """The density of ``final_agents`` agents following ``policy`` from ``m0``.

    Drawn from its own random stream (seeded by the solver's seed): building a result
    changes nothing in the training state, and the same state gives the same result.
    The bandwidth is the training one scaled by Scott's rule ``N^(-1/5)``, at least ``dx``.
    """
    from mfg_pde.alg.rl._solver import simulate_population

    b, p = solver.backend, solver.problem
    scale = (solver.num_agents / solver.final_agents) ** 0.2
    bandwidth = max(solver.bandwidth * scale, p.dx)
    images = "periodic" if p.boundary == "periodic" else "reflect"
    kde = b.binned_kde(p.x, bandwidth, images=images)
    generator = b.random_key(solver.seed + 2)
    return simulate_population(solver.env, policy, generator, solver.final_agents, kde)[1]


def build_result(solver: Any, reason: str) -> ActorCriticResult:
    """The result of the solver's current state: the averaged policy, its density with
    ``final_agents`` agents, and the PDE referee's verdict on both."""
    import torch

    from mfg_pde.alg.rl._exploitability import exploitability

    b, p = solver.backend, solver.problem
    policy = averaged_policy(solver)
    if solver.iteration == 0:
        density = solver.population
    else:
        density = final_density(solver, policy)
    times, grid = b.from_numpy(p.t), b.from_numpy(p.x)
    with torch.no_grad():
        control = policy.mean(times[:, None], grid[None, :])
    gap = exploitability(p, density, control, b, hjb=solver.hjb)
    residuals = {name: np.asarray(v, dtype=np.float64) for name, v in solver.history.items()}
    converged = bool(solver.iteration and gap["relative"] <= CONVERGED_EXPLOITABILITY)
    return ActorCriticResult(
        U=b.to_numpy(solver.value_on_grid()),
        M=b.to_numpy(density),
        x=np.array(p.x),
        t=np.array(p.t),
        converged=converged,
        iterations=solver.iteration,
        residuals=residuals,
        reason=reason,
        backend=b.name,
        device=b.device,
        timings=dict(solver.timings),
        solver=f"ActorCriticSolver[{b.name}]",
        problem={**p.parameters(), "dx": p.dx},
        method="actor-critic",
        control=b.to_numpy(control),
        best_response_value=gap["best_response_value"],
        policy_value=gap["policy_value"],
        policy=Policy(policy, b),
        final_exploitability=gap["exploitability"],
        relative_exploitability=gap["relative"],
    )
