"""The actor-critic solver: learn the equilibrium by simulation, referee it by PDE."""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde.alg.rl._env import MeanFieldEnv, check_one_dimensional
from mfg_pde.backends import BaseBackend, create_backend

#: The metrics recorded at every outer iteration (the result's ``residuals``).
METRICS = (
    "U",
    "M",
    "exploitability",
    "relative_exploitability",
    "return",
    "critic_loss",
    "actor_loss",
)


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss, network or density.

    The solver's networks, optimisers and population flow have been put back to the
    last good state (the end of the last completed outer iteration) before this is
    raised: ``solver.save(path)`` keeps them, and ``solver.solve()`` retries from there
    (for example after lowering a learning rate: ``solver.actor_lr = ...``).
    """


def require_torch_backend(backend: str | BaseBackend | None, device: str | None) -> Any:
    """The torch backend the solver runs on; a clear error for any other.

    ``backend=None`` means torch (the only backend of this solver so far), on
    ``device`` if given, else the best device (cuda > mps > cpu).
    """
    from mfg_pde.backends import BackendNotAvailableError

    try:
        import torch
    except ImportError as err:
        raise BackendNotAvailableError(
            "ActorCriticSolver needs PyTorch, which is not installed; install it with: "
            'pip install "mfg_pde[torch]"'
        ) from err
    if backend is None:
        if device is not None:
            from mfg_pde.backends._torch import TorchBackend

            return TorchBackend(device=device)
        backend = "torch"
    b = create_backend(backend)
    if not b.is_array(torch.zeros(1)):
        raise ValueError(
            f"ActorCriticSolver runs on the torch backend only (its networks are torch "
            f"modules; a jax version may come later), got backend {b!r}. Use backend="
            f'"torch" or None, with PyTorch installed: pip install "mfg_pde[torch]"'
        )
    if device is not None and torch.device(device) != torch.device(b.device):
        raise ValueError(f"device={device!r} disagrees with the backend's device {b.device!r}")
    return b


def _positive_int(name: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {name}={value}")
    return int(value)


def _positive_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {name}={value!r}")
    return float(value)


class ActorCriticSolver:
    r"""Learn the mean field equilibrium with a model-based actor-critic, on torch.

    A Gaussian policy ``α ~ N(μ_θ(t, x), s²)`` and a critic ``u_φ(t, x)`` (small tanh
    MLPs, time an input) learn the best response to a population flow ``m̄`` from
    simulated agents (:mod:`~mfg_pde.alg.rl._training`: Monte Carlo critic, pathwise
    actor gradient through the known dynamics, exploring starts). Around that runs the
    population loop: after ``inner_iterations`` rounds of learning, ``num_agents``
    agents follow the mean policy ``μ_θ`` from ``m0``; their density on the grid
    (the backend's binned Gaussian KDE, with reflected or periodic images) is ``m_k``,
    and the flow the agents learn against next is the damped average

    .. math:: \bar m_{k} = (1 - \beta_k) \bar m_{k-1} + \beta_k m_k,

    with ``β_k = damping`` or, for ``damping="fictitious"``, ``1/(k + 1)`` (fictitious
    play). At every outer iteration the PDE solvers measure the exploitability of the
    mean policy against its own population ``m_k``
    (:func:`~mfg_pde.alg.rl.exploitability`). The returned policy is the average of the
    actor's weights over the last ``averaging`` outer iterations (it smooths the
    iteration-to-iteration noise of the learned control), and the returned density is
    that policy's, estimated with ``final_agents`` agents.

    Parameters
    ----------
    problem : MFGProblem
        One-dimensional (2D is refused with NotImplementedError).
    backend : "torch", a torch BaseBackend, or None
        None means torch. Any other backend raises ValueError naming ``mfg_pde[torch]``.
    num_agents : int
        Agents simulated for the population density (>= 100).
    num_learners : int
        Learners drawn from ``m0`` per round (>= 1).
    exploring_starts : int
        Learners started uniformly on the domain at every time level, per round (>= 0).
    hidden : sequence of int
        Hidden layer widths of both networks.
    actor_lr, critic_lr : float
        Adam learning rates (> 0).
    outer_iterations : int
        Population updates (>= 1).
    inner_iterations : int
        Learning rounds (simulate, fit the critic, improve the actor) per population
        update (>= 1); the first outer iteration runs ``warmup`` times as many.
    critic_steps, actor_steps : int
        Adam steps per round (>= 1). The critic's fit is the accuracy bottleneck (see
        docs/rl.md): fewer critic steps leave a biased critic and a biased control.
    batch_size : int
        Minibatch size of both updates (>= 1).
    damping : float in (0, 1] or "fictitious"
        ``β_k`` above.
    warmup : int
        Multiplier of the first outer iteration's rounds (>= 1): the networks start from
        nothing then.
    averaging : int
        The returned policy averages the actor's weights over this many last outer
        iterations (>= 1; 1 returns the last policy).
    final_agents : int
        Agents simulated for the returned density ``M`` (>= 100), with the bandwidth
        scaled from ``bandwidth`` by Scott's rule ``(num_agents / final_agents)^(1/5)``
        (at least the grid spacing).
    bandwidth : float or "scott"
        KDE bandwidth of the population density during training (as in
        :class:`FPParticleSolver`).
    initial_std, min_std : float
        The policy's exploration noise at the start and its floor, in units of ``L/T``.
    seed : int
        Seeds the networks' initialisation and every random draw: on the CPU the same
        seed gives the same result, bit for bit.
    device : str, optional
        Torch device ("cpu", "cuda", ...) when ``backend`` is None.

    Attributes
    ----------
    policy : GaussianPolicy
        The actor (a torch module). :meth:`control` evaluates its mean.
    critic : Critic
        The cost-to-go estimate (a torch module).
    iteration : int
        Outer iterations completed (saved and restored by :meth:`save` / :meth:`load`).
    """

    def __init__(
        self,
        problem: MFGProblem,
        backend: str | BaseBackend | None = None,
        *,
        num_agents: int = 20_000,
        num_learners: int = 1_000,
        exploring_starts: int = 50,
        hidden: tuple[int, ...] = (32, 32),
        actor_lr: float = 1e-2,
        critic_lr: float = 1e-2,
        outer_iterations: int = 24,
        inner_iterations: int = 1,
        critic_steps: int = 240,
        actor_steps: int = 180,
        batch_size: int = 1024,
        damping: float | str = 0.5,
        warmup: int = 6,
        averaging: int = 8,
        final_agents: int = 200_000,
        bandwidth: float | str = "scott",
        initial_std: float = 0.1,
        min_std: float = 1e-3,
        seed: int = 0,
        device: str | None = None,
    ) -> None:
        check_one_dimensional(problem)
        self.problem = problem
        self.backend = require_torch_backend(backend, device)
        self.num_agents = _positive_int("num_agents", num_agents, 100)
        self.num_learners = _positive_int("num_learners", num_learners)
        self.exploring_starts = _positive_int("exploring_starts", exploring_starts, 0)
        if isinstance(hidden, int) or not all(
            isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in hidden
        ):
            raise ValueError(f"hidden must be a sequence of positive ints, got {hidden!r}")
        self.hidden = tuple(int(h) for h in hidden)
        self.actor_lr = _positive_float("actor_lr", actor_lr)
        self.critic_lr = _positive_float("critic_lr", critic_lr)
        self.outer_iterations = _positive_int("outer_iterations", outer_iterations)
        self.inner_iterations = _positive_int("inner_iterations", inner_iterations)
        self.critic_steps = _positive_int("critic_steps", critic_steps)
        self.actor_steps = _positive_int("actor_steps", actor_steps)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.warmup = _positive_int("warmup", warmup)
        self.averaging = _positive_int("averaging", averaging)
        self.final_agents = _positive_int("final_agents", final_agents, 100)
        if damping != "fictitious" and not (
            isinstance(damping, (int, float)) and not isinstance(damping, bool) and 0 < damping <= 1
        ):
            raise ValueError(f"damping must be in (0, 1] or 'fictitious', got {damping!r}")
        self.damping = damping
        self.initial_std = _positive_float("initial_std", initial_std)
        self.min_std = _positive_float("min_std", min_std)
        self.seed = _positive_int("seed", seed, 0)
        from mfg_pde.alg.numerical.fp_particle import _bandwidth

        self.bandwidth = _bandwidth(problem, bandwidth, self.num_agents)
        self._setup()

    # -- construction ----------------------------------------------------------------
    def _setup(self) -> None:
        import torch

        from mfg_pde.alg.numerical.hjb_fdm import HJBFDMSolver
        from mfg_pde.alg.rl._networks import Critic, Features, GaussianPolicy

        p, b = self.problem, self.backend
        device = torch.device(b.device)
        init = torch.Generator()
        init.manual_seed(self.seed)
        features = Features(p.T, p.xmin, p.length, p.boundary == "periodic")
        scale = p.length / p.T
        self.policy = GaussianPolicy(
            features,
            self.hidden,
            init,
            device,
            scale=scale,
            initial_std=self.initial_std * scale,
            min_std=self.min_std * scale,
        )
        self.critic = Critic(features, self.hidden, init, device)
        self.actor_optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=self.critic_lr)
        self.generator = b.random_key(self.seed + 1)
        self.env = MeanFieldEnv(p, None, b)
        self.hjb = HJBFDMSolver(p, backend=b)
        images = "periodic" if p.boundary == "periodic" else "reflect"
        self._kde = b.binned_kde(p.x, self.bandwidth, images=images)
        self._times = b.from_numpy(p.t)
        self._grid = b.from_numpy(p.x)
        self.iteration = 0
        self.history: dict[str, list[float]] = {name: [] for name in METRICS}
        self.population: Any = None  # m̄: the flow the agents learn against
        self.last_density: Any = None  # m_k: the density of the latest policy's agents
        self.last_value: Any = None  # the critic on the grid after the latest iteration
        # The running mean of the actor's weights over the last `averaging` iterations
        # (see _loop.accumulate_average): the policy the result returns.
        self.average: dict[str, Any] | None = None
        self.average_count = 0
        self.average_start = 0
        self.timings: dict[str, float] = {}

    # -- evaluation ------------------------------------------------------------------
    def control(self, t: Any, x: Any) -> Any:
        """The learned feedback ``μ_θ(t, x)`` (the policy's mean), broadcast over ``t``, ``x``.

        NumPy in, NumPy out; torch tensors in, a tensor out (on the solver's device).
        """
        return _evaluate(self.policy.mean, self.backend, t, x)

    def value(self, t: Any, x: Any) -> Any:
        """The critic's cost-to-go ``u_φ(t, x)`` (as :meth:`control`)."""
        return _evaluate(self.critic, self.backend, t, x)

    def control_on_grid(self) -> Any:
        """``μ_θ(t_n, x_i)``, a backend array ``(Nt + 1, Nx)``."""
        import torch

        with torch.no_grad():
            return self.policy.mean(self._times[:, None], self._grid[None, :])

    def value_on_grid(self) -> Any:
        """The critic on the grid, ``(Nt + 1, Nx)``, with ``g`` itself at ``t = T``."""
        import torch

        with torch.no_grad():
            U = self.critic(self._times[:-1, None], self._grid[None, :])
            return torch.cat([U, self.backend.from_numpy(self.problem.g)[None, :]])

    def simulate_density(self) -> tuple[Any, float]:
        """``(density, mean_return)`` of ``num_agents`` agents following the mean policy
        from ``m0``: the density ``(Nt + 1, Nx)`` on the grid (``m0`` itself at ``t = 0``)
        and their average return against the current flow. Advances the random stream."""
        self.generator, density, mean_return = simulate_population(
            self.env, self.policy, self.generator, self.num_agents, self._kde
        )
        return density, mean_return

    # -- training --------------------------------------------------------------------
    def solve(
        self,
        outer_iterations: int | None = None,
        verbose: bool = False,
        callback: Any = None,
        checkpoint: Any = None,
    ) -> Any:
        """Train until ``outer_iterations`` outer iterations are done in all; return the result.

        Parameters
        ----------
        outer_iterations : int, optional
            The total to reach (default: the solver's ``outer_iterations``). After
            :meth:`load`, training resumes from the saved iteration.
        verbose : bool
            Show a progress bar with the exploitability.
        callback : callable, optional
            ``callback(iteration, metrics)`` after every outer iteration; a true return
            value stops training there.
        checkpoint : str or path, optional
            :meth:`save` to this file after every outer iteration, so that an interrupted
            training can be resumed with :meth:`load`.

        Returns
        -------
        ActorCriticResult

        Raises
        ------
        TrainingDivergedError
            A loss, a network or the density became non-finite; the networks are back at
            the last good state (see the exception).
        """
        from mfg_pde.alg.rl._loop import run

        total = (
            self.outer_iterations
            if outer_iterations is None
            else _positive_int("outer_iterations", outer_iterations)
        )
        return run(self, total, verbose, callback, checkpoint)

    # -- saving ----------------------------------------------------------------------
    def save(self, path: Any) -> Any:
        """Write the networks, optimisers, population flow, metrics and random state to
        ``path`` (``torch.save``; read back by :meth:`load`). Returns the path."""
        from mfg_pde.alg.rl._checkpoint import save

        return save(self, path)

    @classmethod
    def load(
        cls, path: Any, problem: MFGProblem, backend: str | BaseBackend | None = None, **options
    ) -> ActorCriticSolver:
        """A solver restored from :meth:`save`, ready to resume :meth:`solve`.

        ``problem`` must be the problem it was trained on (its parameters are checked;
        the cost callables cannot be, so pass the same ones). ``options`` override the
        saved ones that do not change the networks (``outer_iterations``, learning
        rates, step counts, ...).
        """
        from mfg_pde.alg.rl._checkpoint import load

        return load(cls, path, problem, backend, options)

    def snapshot(self) -> dict[str, Any]:
        """A deep copy of the trainable state (networks, optimisers, flows, counters)."""
        return copy.deepcopy(
            {
                "policy": self.policy.state_dict(),
                "critic": self.critic.state_dict(),
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(),
                "population": self.population,
                "last_density": self.last_density,
                "last_value": self.last_value,
                "average": self.average,
                "average_count": self.average_count,
                "average_start": self.average_start,
                "iteration": self.iteration,
                "history": self.history,
                "generator": self.generator.get_state(),
            }
        )

    def restore(self, state: dict[str, Any]) -> None:
        """Put back a :meth:`snapshot`."""
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.population = state["population"]
        self.last_density = state["last_density"]
        self.last_value = state["last_value"]
        self.average = state.get("average")
        self.average_count = int(state.get("average_count", 0))
        self.average_start = int(state.get("average_start", 0))
        self.iteration = int(state["iteration"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.generator.set_state(state["generator"])
        for group in self.actor_optimizer.param_groups:
            group["lr"] = self.actor_lr
        for group in self.critic_optimizer.param_groups:
            group["lr"] = self.critic_lr

    def options(self) -> dict[str, Any]:
        """The constructor's keyword arguments (what :meth:`save` records)."""
        return {
            "num_agents": self.num_agents,
            "num_learners": self.num_learners,
            "exploring_starts": self.exploring_starts,
            "hidden": list(self.hidden),
            "actor_lr": self.actor_lr,
            "critic_lr": self.critic_lr,
            "outer_iterations": self.outer_iterations,
            "inner_iterations": self.inner_iterations,
            "critic_steps": self.critic_steps,
            "actor_steps": self.actor_steps,
            "batch_size": self.batch_size,
            "damping": self.damping,
            "warmup": self.warmup,
            "averaging": self.averaging,
            "final_agents": self.final_agents,
            "bandwidth": self.bandwidth,
            "initial_std": self.initial_std,
            "min_std": self.min_std,
            "seed": self.seed,
        }

    def __repr__(self) -> str:
        return (
            f"ActorCriticSolver({self.problem!r}, backend={self.backend!r}, "
            f"iteration={self.iteration}/{self.outer_iterations})"
        )


def simulate_population(
    env: MeanFieldEnv, policy: Any, generator: Any, num_agents: int, kde: Any
) -> tuple[Any, Any, float]:
    """``(generator, density, mean_return)``: ``num_agents`` agents follow ``policy.mean``
    from ``m0`` through ``env``; ``density`` ``(Nt + 1, Nx)`` is ``kde`` of their positions
    at every level (``m0`` itself at ``t = 0``), ``mean_return`` their average return."""
    import torch

    b, p = env.backend, env.problem
    generator, x = env.initial_positions(generator, num_agents)
    levels = [b.from_numpy(p.m0)]
    total = torch.zeros_like(x)
    with torch.no_grad():
        for n in range(p.Nt):
            generator, xi = b.normal(generator, x.shape)
            x, reward = env.step(n, x, policy.mean(env.times[n], x), xi)
            total = total + reward
            levels.append(kde(x))
        total = total + env.terminal_reward(x)
    return generator, torch.stack(levels), float(torch.mean(total))


def _evaluate(function: Any, backend: Any, t: Any, x: Any) -> Any:
    """Apply a torch function of ``(t, x)`` to NumPy or torch input, broadcast."""
    import torch

    host = not (isinstance(t, torch.Tensor) or isinstance(x, torch.Tensor))
    t, x = (v if isinstance(v, torch.Tensor) else backend.array(v) for v in (t, x))
    t, x = torch.broadcast_tensors(t.to(backend.dtype), x.to(backend.dtype))
    with torch.no_grad():
        out = function(t, x).to(backend.dtype)
    return backend.to_numpy(out) if host else out


def timed(timings: dict[str, float], key: str, start: float) -> float:
    """Add the seconds since ``start`` to ``timings[key]``; return now."""
    now = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + now - start
    return now
