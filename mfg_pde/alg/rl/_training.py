"""One round of the actor-critic: simulate, fit the critic, improve the actor.

Model-based actor-critic on the known dynamics of :class:`~mfg_pde.alg.rl._env.MeanFieldEnv`
(an SVG(0)/DDPG-style update with a Monte Carlo critic):

* **simulate** learners under the Gaussian policy: agents drawn from ``m0`` at ``t = 0``
  plus *exploring starts*, agents drawn uniformly on the domain at every time level, so
  that the critic and the actor see every state, also where the population is thin;
* **critic**: regress ``u_φ(t_n, x_n)`` on the realised cost-to-go
  ``Σ_{k>=n} (λ α_k²/2 + f) dt + g(x_{Nt})`` (Monte Carlo, unbiased for the policy
  being evaluated);
* **actor**: minimise, over the mean and the log-std of the policy,
  ``E[λ α²/2 dt + f dt + u_φ(t_{n+1}, fold(x + α dt + σ√dt ξ))]`` with
  ``α = μ_θ(t_n, x) + s ε`` by the reparameterised (pathwise) gradient, with ``g``
  itself in place of the critic at ``t_{n+1} = T``. Antithetic pairs ``±ξ`` halve the
  noise of the gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mfg_pde.alg.rl._env import MeanFieldEnv
from mfg_pde.alg.rl._networks import DTYPE, Critic, GaussianPolicy


@dataclass
class Transitions:
    """States the learners visited and the cost-to-go they realised from there.

    ``level`` (int64), ``x`` and ``cost_to_go`` (float64) are flat arrays of one length:
    agent states at levels ``0 .. Nt-1``.
    """

    level: torch.Tensor
    x: torch.Tensor
    cost_to_go: torch.Tensor

    def __len__(self) -> int:
        return int(self.level.shape[0])


def simulate_learners(
    env: MeanFieldEnv,
    policy: GaussianPolicy,
    critic: Critic,
    generator: torch.Generator,
    num_learners: int,
    exploring_starts: int,
) -> Transitions:
    """Run ``num_learners`` agents from ``m0`` and ``exploring_starts`` agents per time
    level from uniform positions, under the stochastic policy, to the horizon.

    The realised cost-to-go carries the noise of the Brownian increments,
    ``σ √dt Σ_k u_x ξ_k`` to first order. Once the critic has been fitted, that sum is
    subtracted with the critic's own ``∂ₓu_φ(t_{k+1}, x_k + α_k dt)`` (a martingale
    control variate: each term has mean zero given ``x_k``, ``α_k``, so the targets stay
    unbiased for any critic, and their variance falls as the critic improves).
    """
    b, p = env.backend, env.problem
    Nt = p.Nt
    generator, x_start = env.initial_positions(generator, num_learners)
    generator, x_explore = env.uniform_positions(generator, (Nt * exploring_starts,))
    x = torch.cat([x_start, x_explore])
    start = torch.cat(
        [
            torch.zeros(num_learners, dtype=torch.int64, device=x.device),
            torch.arange(Nt, device=x.device).repeat_interleave(exploring_starts),
        ]
    )
    positions, rewards, drifted, noises = [], [], [], []
    with torch.no_grad():
        for n in range(Nt):
            generator, eps = b.normal(generator, x.shape)
            generator, xi = b.normal(generator, x.shape)
            alpha = policy.sample(env.times[n], x, eps)
            x_next, reward = env.step(n, x, alpha, xi)
            active = start <= n
            positions.append(x)
            rewards.append(torch.where(active, reward, 0.0))
            drifted.append(x + alpha * p.dt)
            noises.append(torch.where(active, xi, 0.0))
            x = torch.where(active, x_next, x)
    if bool(critic.scaled):
        slopes = _next_slopes(env, tabulate(env, critic), torch.stack(drifted))
        martingale = env.noise_scale * slopes * torch.stack(noises)
        rewards = [r + dm for r, dm in zip(rewards, martingale, strict=True)]
    with torch.no_grad():
        # Cost-to-go from each level: the terminal cost plus the later running costs.
        cost = -env.terminal_reward(x)
        costs = []
        for n in range(Nt - 1, -1, -1):
            cost = cost - rewards[n]
            costs.append(cost)
        costs.reverse()
    level = torch.arange(Nt, device=x.device)[:, None].expand(Nt, x.shape[0])
    keep = start[None, :] <= level
    return Transitions(
        level=level[keep],
        x=torch.stack(positions)[keep],
        cost_to_go=torch.stack(costs)[keep],
    )


def tabulate(env: MeanFieldEnv, critic: Critic) -> torch.Tensor:
    """The critic on the grid at every level, ``g`` at ``T``, as an :meth:`MeanFieldEnv.table`.

    The actor and the control variate read the critic through this table (linear in
    ``x`` between grid points): the critic does not change while they use it, and one
    evaluation on the ``(Nt + 1) x Nx`` grid replaces one per sample (an actor step then
    costs the policy's forward and backward pass only).
    """
    p = env.problem
    times = torch.as_tensor(env.times[:-1], dtype=env.grid.dtype, device=env.grid.device)
    with torch.no_grad():
        inner = critic(times[:, None], env.grid[None, :])
        g = env.backend.from_numpy(p.g)
    return env.table(torch.cat([inner, g[None, :]]))


def _next_slopes(env: MeanFieldEnv, table: torch.Tensor, drifted: torch.Tensor) -> torch.Tensor:
    """``∂ₓu(t_{n+1}, y)`` at the rows ``y = drifted[n]`` (the tabulated critic, ``g`` at T)."""
    Nt = env.problem.Nt
    level = torch.arange(1, Nt + 1, device=drifted.device)[:, None].expand(drifted.shape)
    with torch.enable_grad():
        y = env.fold(drifted.detach()).requires_grad_(True)
        (slopes,) = torch.autograd.grad(env.at_levels(table, level, y).sum(), y)
    return slopes.detach()


def fit_critic(
    critic: Critic,
    optimizer: torch.optim.Optimizer,
    data: Transitions,
    times: torch.Tensor,
    generator: torch.Generator,
    steps: int,
    batch_size: int,
) -> float:
    """``steps`` Adam steps of the mean squared error on minibatches; returns the mean
    loss of the last steps (in units of the critic's scale, squared)."""
    critic.set_scale(data.cost_to_go)
    targets = ((data.cost_to_go - critic.shift) / critic.scale).to(DTYPE)
    losses = []
    for _ in range(steps):
        index = torch.randint(len(data), (batch_size,), generator=generator, device=times.device)
        t = times[data.level[index]]
        prediction = critic.net(critic.features(t, data.x[index]))
        loss = torch.mean((prediction - targets[index]) ** 2)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return float(torch.stack(losses[-max(1, steps // 4) :]).mean())


def improve_actor(
    env: MeanFieldEnv,
    policy: GaussianPolicy,
    critic: Critic,
    optimizer: torch.optim.Optimizer,
    data: Transitions,
    times: torch.Tensor,
    generator: torch.Generator,
    steps: int,
    batch_size: int,
) -> float:
    """``steps`` Adam steps of the pathwise actor loss; returns its mean over the last
    steps: ``E[λ α²/2 dt + u_φ(t_{n+1}, x')]`` over the sampled states (the estimated
    cost-to-go without the running cost ``f dt``, which does not depend on ``α``)."""
    b, p = env.backend, env.problem
    table = tabulate(env, critic)
    losses = []
    for _ in range(steps):
        index = torch.randint(len(data), (batch_size,), generator=generator, device=times.device)
        level, x = data.level[index], data.x[index]
        generator, eps = b.normal(generator, x.shape)
        generator, xi = b.normal(generator, x.shape)
        alpha = policy.sample(times[level], x, eps)
        drifted = x + alpha * p.dt
        # The antithetic pair (ξ, -ξ) in one call.
        x_next = env.fold(
            torch.cat([drifted + env.noise_scale * xi, drifted - env.noise_scale * xi])
        )
        to_go = env.at_levels(table, torch.cat([level, level]) + 1, x_next)
        # f(x_n, m_n, t_n) dt does not depend on α and is left out of the loss.
        loss = torch.mean(0.5 * p.control_cost * alpha * alpha * p.dt) + torch.mean(to_go)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return float(torch.stack(losses[-max(1, steps // 4) :]).mean())
