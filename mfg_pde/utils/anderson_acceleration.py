"""Anderson acceleration of fixed-point iterations (Walker & Ni, SIAM J. Numer. Anal. 2011).

The history is a fixed-size ring buffer with a validity mask, so one step is a pure
function of fixed-shape arrays: it runs unchanged under ``jax.jit`` / ``lax.while_loop``
and on every backend.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from mfg_pde.backends import BaseBackend, create_backend


class AndersonState(NamedTuple):
    """History of an Anderson iteration (all arrays of fixed shape)."""

    dx: Any  # (depth, n) differences of iterates x_{k} - x_{k-1}
    df: Any  # (depth, n) differences of residuals f_{k} - f_{k-1}
    valid: Any  # (depth,) 1.0 where the slot holds a difference, else 0.0
    slot: Any  # () next slot to overwrite
    x_prev: Any  # (n,) last iterate
    f_prev: Any  # (n,) last residual g(x) - x
    has_prev: Any  # () 1.0 once x_prev / f_prev hold data
    count: Any  # () steps since the last restart


class AndersonAccelerator:
    r"""Anderson mixing for ``x = g(x)`` with memory ``depth``.

    With residuals ``f_k = g(x_k) - x_k`` and the last ``m`` differences
    ``ΔX, ΔF`` (columns), Type II solves
    ``min_γ ||f_k - ΔF γ||²  + reg ||γ||²`` and Type I solves ``(ΔX^T ΔF + reg) γ = ΔX^T f_k``;
    both then step ``x_{k+1} = x_k + β f_k - (ΔX + β ΔF) γ``. With an empty history this is
    the damped step ``x + β f``.

    Parameters
    ----------
    backend : str, BaseBackend or None
    depth : int
        Memory m (>= 1).
    beta : float
        Mixing (damping) parameter in (0, 1].
    variant : {"II", "I"}
        Type II ("bad Broyden", the usual choice) or Type I ("good Broyden").
    regularization : float
        Tikhonov weight relative to the trace of the normal matrix (scale-free).
    restart : int or None
        Clear the history every ``restart`` steps (None: never).
    safeguard : float or None
        Clear the history when ``||f_k|| > safeguard * ||f_{k-1}||`` (residual jumps);
        the step taken then is the damped one. None disables it.
    """

    def __init__(
        self,
        backend: str | BaseBackend | None = None,
        depth: int = 5,
        beta: float = 1.0,
        variant: str = "II",
        regularization: float = 1e-10,
        restart: int | None = None,
        safeguard: float | None = None,
    ) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, got {depth!r}")
        if not 0 < float(beta) <= 1:
            raise ValueError(f"beta must be in (0, 1], got {beta!r}")
        if variant not in ("I", "II"):
            raise ValueError(f"variant must be 'I' or 'II', got {variant!r}")
        if not float(regularization) >= 0:
            raise ValueError(f"regularization must be >= 0, got {regularization!r}")
        if restart is not None and (not isinstance(restart, int) or restart < 1):
            raise ValueError(f"restart must be None or an int >= 1, got {restart!r}")
        if safeguard is not None and not float(safeguard) > 1:
            raise ValueError(f"safeguard must be None or > 1, got {safeguard!r}")
        self.backend = create_backend(backend)
        self.depth = depth
        self.beta = float(beta)
        self.variant = variant
        self.regularization = float(regularization)
        self.restart = restart
        self.safeguard = None if safeguard is None else float(safeguard)
        self._state: AndersonState | None = None

    def init(self, n: int) -> AndersonState:
        """An empty history for vectors of length ``n``."""
        b, xp = self.backend, self.backend.xp
        zero = xp.asarray(0.0, dtype=b.dtype, **b._device_kw())
        return AndersonState(
            dx=b.zeros((self.depth, n)),
            df=b.zeros((self.depth, n)),
            valid=b.zeros((self.depth,)),
            slot=xp.asarray(0, **b._device_kw()),
            x_prev=b.zeros((n,)),
            f_prev=b.zeros((n,)),
            has_prev=zero,
            count=xp.asarray(0, **b._device_kw()),
        )

    def step(
        self, state: AndersonState, x: Any, gx: Any, beta: Any = None
    ) -> tuple[Any, AndersonState]:
        """One accelerated step from ``x`` and ``g(x)`` (1D arrays). Pure; jit-friendly.

        ``beta``: the mixing parameter of this step (a float or a 0-d array, e.g. an
        adaptive damping carried in a loop state); None uses ``self.beta``.
        """
        xp = self.backend.xp
        beta = self.beta if beta is None else beta
        f = gx - x
        # Record the newest differences (only when a previous point exists).
        use = state.has_prev
        onehot = (
            xp.astype(xp.arange(self.depth, **self.backend._device_kw()) == state.slot, f.dtype)
            * use
        )
        dx_hist = state.dx * (1.0 - onehot[:, None]) + onehot[:, None] * (x - state.x_prev)[None, :]
        df_hist = state.df * (1.0 - onehot[:, None]) + onehot[:, None] * (f - state.f_prev)[None, :]
        valid = xp.maximum(state.valid, onehot)
        slot = xp.where(use > 0, (state.slot + 1) % self.depth, state.slot)
        count = state.count + 1

        # Restart rules: periodic, or a residual jump.
        clear = xp.asarray(False, **self.backend._device_kw())
        if self.restart is not None:
            clear = clear | (count >= self.restart)
        if self.safeguard is not None:
            jump = xp.sqrt(xp.sum(f * f)) > self.safeguard * xp.sqrt(xp.sum(state.f_prev**2))
            clear = clear | ((use > 0) & jump)
        keep = 1.0 - xp.astype(clear, f.dtype)
        valid = valid * keep
        count = xp.where(clear, 0, count)

        dX = dx_hist * valid[:, None]
        dF = df_hist * valid[:, None]
        left = dF if self.variant == "II" else dX
        normal = left @ xp.matrix_transpose(dF)
        rhs = left @ f
        scale = xp.maximum(xp.sum(xp.abs(xp.linalg.diagonal(normal))), 1e-300)
        eye = xp.eye(self.depth, dtype=f.dtype, **self.backend._device_kw())
        # Empty slots get a unit diagonal so the system stays regular; their rhs is zero.
        normal = normal + eye * (self.regularization * scale) + eye * (1.0 - valid)[None, :]
        gamma = xp.linalg.solve(normal, rhs[:, None])[:, 0] * valid
        x_next = x + beta * f - (gamma @ dX + beta * (gamma @ dF))

        new_state = AndersonState(
            dx=dx_hist * keep,
            df=df_hist * keep,
            valid=valid,
            slot=xp.where(clear, 0, slot),
            x_prev=x,
            f_prev=f,
            has_prev=xp.ones_like(state.has_prev),
            count=count,
        )
        return x_next, new_state

    def update(self, x: Any, gx: Any) -> Any:
        """Stateful convenience: one step, keeping the history on this object."""
        if self._state is None or self._state.x_prev.shape[0] != x.shape[0]:
            self._state = self.init(x.shape[0])
        x_next, self._state = self.step(self._state, x, gx)
        return x_next

    def reset(self) -> None:
        """Forget the history."""
        self._state = None
