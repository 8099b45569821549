"""The representative agent as a ``gymnasium.Env``: one agent, a fixed population flow.

Needs gymnasium (``pip install "mfg_pde[rl]"``); imported only when
:class:`RepresentativeAgentEnv` is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

try:
    import gymnasium
    from gymnasium import spaces
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'RepresentativeAgentEnv needs gymnasium; install it with: pip install "mfg_pde[rl]"'
    ) from err

from mfg_pde._problem import MFGProblem
from mfg_pde.alg.rl._env import MeanFieldEnv


class RepresentativeAgentEnv(gymnasium.Env):
    """One agent's best-response MDP against a fixed population flow, for any RL library.

    The dynamics and rewards of :class:`~mfg_pde.alg.rl.MeanFieldEnv` (on the NumPy
    backend), for a single agent: observation ``[t, x]`` (float32), action ``[a]`` in
    ``[-1, 1]`` (float32, clipped; the control is ``α = max_control · a``, the normalised
    action space RL libraries expect), reward
    ``-(λ α²/2 + f(x, m_t, t)) dt`` per step plus ``-g(x_T)`` on the last, ``Nt`` steps
    per episode (``terminated`` at ``t = T``). The initial position is drawn from ``m0``.

    Parameters
    ----------
    problem : MFGProblem
        One-dimensional.
    population : array (Nt + 1, Nx), optional
        The population's density at every time level; default ``m0`` frozen in time
        (for example ``solve_mfg(problem).M`` makes this the equilibrium's best-response
        problem, whose optimal policy is ``-∂ₓU / control_cost``).
    max_control : float, optional
        Bound of the action space; default ``5 L / T`` (crossing the domain five times).

    Examples
    --------
    >>> from mfg_pde import MFGProblem
    >>> env = RepresentativeAgentEnv(MFGProblem(Nx=41, Nt=20))
    >>> observation, info = env.reset(seed=0)
    >>> observation.shape
    (2,)
    """

    metadata = {"render_modes": []}

    def __init__(
        self, problem: MFGProblem, population: Any = None, max_control: float | None = None
    ) -> None:
        super().__init__()
        self._env = MeanFieldEnv(problem, population, backend="numpy")
        self.problem = problem
        bound = 5.0 * problem.length / problem.T if max_control is None else float(max_control)
        if not (np.isfinite(bound) and bound > 0):
            raise ValueError(f"max_control must be a positive number, got {max_control!r}")
        self.max_control = bound
        self.observation_space = spaces.Box(
            low=np.array([0.0, problem.xmin], dtype=np.float32),
            high=np.array([problem.T, problem.xmax], dtype=np.float32),
            dtype=np.float32,
        )
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._n = 0
        self._x = np.zeros(1)

    def _observation(self) -> np.ndarray:
        t = self._env.times[self._n]
        x = min(max(float(self._x[0]), self.problem.xmin), self.problem.xmax)
        return np.array([t, x], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        super().reset(seed=seed)
        self._n = 0
        _, self._x = self._env.initial_positions(self.np_random, 1)
        return self._observation(), {}

    def step(self, action: Any) -> tuple:
        if self._n >= self.problem.Nt:
            raise RuntimeError("the episode has ended (t = T): call reset()")
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(1), -1.0, 1.0)
        alpha = self.max_control * a
        noise = self.np_random.standard_normal(1)
        self._x, reward = self._env.step(self._n, self._x, alpha, noise)
        self._n += 1
        terminated = self._n == self.problem.Nt
        total = float(reward[0])
        if terminated:
            total += float(self._env.terminal_reward(self._x)[0])
        return self._observation(), total, terminated, False, {}
