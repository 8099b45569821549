"""One fixed-point iteration, written once: its state, its update rules, its start.

The same pure function is the body of the compiled ``lax.while_loop`` (jax) and of the
host loop (:class:`~mfg_pde.alg.numerical.FixedPointIterator`); its state has fixed
shapes so that it compiles.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from mfg_pde.alg.numerical._stall import progress, stall_update
from mfg_pde.backends import BaseBackend
from mfg_pde.utils.anderson_acceleration import AndersonAccelerator

#: Values of :attr:`IterationState.status` (STALLED: see ``stall_window``).
RUNNING, CONVERGED, NONFINITE_U, NONFINITE_M, STALLED = 0, 1, 2, 3, 4

#: Adaptive damping: θ is multiplied by DAMPING_GROW when the fixed-point residual reaches
#: a new low, and by DAMPING_SHRINK when it exceeds DAMPING_GROWTH times that low or has
#: not reached a new one for DAMPING_PATIENCE iterations (a cycle); θ stays in
#: [DAMPING_MIN, thetaUM].
DAMPING_SHRINK, DAMPING_GROW, DAMPING_GROWTH, DAMPING_PATIENCE, DAMPING_MIN = (
    0.5,
    1.1,
    1.5,
    5,
    1e-3,
)


class IterationState(NamedTuple):
    """Everything a fixed-point iteration carries: fixed shapes, so it compiles."""

    U: Any  # (Nt + 1, Nx) current iterate
    M: Any
    k: Any  # () iterations done
    res_u: Any  # (max_iterations,) relative change of U per iteration
    res_m: Any
    res_hjb: Any  # (max_iterations,) max |HJB equation residual| of (Û, M̂)
    res_fp: Any  # (max_iterations,) max |FP equation residual| of (Û, M̂)
    theta: Any  # () damping (Anderson mixing) used by the next update
    last: Any  # () reference residual of adaptive damping (smallest since the last shrink)
    since: Any  # () iterations since that reference was set
    status: Any  # () RUNNING, CONVERGED, NONFINITE_U, NONFINITE_M or STALLED
    newton_failures: Any  # () in the last HJB solve
    bad: Any  # (Nt + 1, Nx) the non-finite output, kept to locate where it started
    anderson: Any  # AndersonState or None
    stall: Any  # StallState or None (no stall_window)


class StallState(NamedTuple):
    """The trend of the progress, for ``stall_window`` (:mod:`._stall`)."""

    low: Any  # () lowest progress so far (new lows by the factor STALL_IMPROVEMENT)
    lows: Any  # (max_iterations,) the low after each iteration
    rate: Any  # () contraction rate per iteration over the last window (1: not judged)
    remaining: Any  # () iterations that rate predicts are still needed (inf: never)


def make_iteration(
    iterator: Any,
    backend: BaseBackend,
    hjb: Any,
    fp: Any,
    residual: Any,
    max_iterations: int,
    members: bool = False,
):
    """``(arrays, tolerances, state) -> state``: one fixed-point iteration, pure.

    ``hjb(arrays, M, U_guess) -> (U, newton_failures)`` and ``fp(arrays, U) -> M``
    are the marches, ``residual(arrays, U, M) -> (F, G)`` the discrete equations;
    the same function is the body of the compiled while_loop and of the host loop.
    ``tolerances`` is ``(tolerance, equation_tolerance)``.

    ``members=True``: the state holds a batch of problems stacked on axis 1 of the
    fields (``(Nt + 1, B, *grid)``), the scalars as ``(B, 1, ...)`` columns that
    broadcast against one member's grid and the histories as ``(B, max_iterations)``
    (:mod:`~mfg_pde.alg.numerical._stacked_batch`); every norm and test is then taken
    per member, and Anderson steps each member with its own history (a tuple of them).
    """
    xp = backend.xp
    total, largest, every = _reductions(xp, members)
    # On host NumPy one problem's flags are concrete: the next iterate is one of three
    # arrays, picked in Python, where two selections over the whole path cost 10 ms per
    # field at 128^2 x 100 (0.75 s of a 2D solve). Traced programs and stacks select.
    pick_on_host = backend.is_host_numpy and not members
    accelerator = anderson_accelerator(iterator, backend)
    u_only = iterator.anderson_on_u_only
    adaptive = iterator.adaptive_damping
    theta_max = (
        iterator.anderson_mixing if iterator.use_anderson and iterator.anderson_mixing else None
    )
    theta_max = iterator.thetaUM if theta_max is None else theta_max
    slots = xp.arange(max_iterations, **backend._device_kw())
    window = iterator.stall_window

    def iteration(arrays: dict, tolerances: Any, s: IterationState) -> IterationState:
        tolerance, equation_tolerance = tolerances
        U_hat, failures = hjb(arrays, s.M, s.U)
        M_hat = fp(arrays, U_hat)
        bad_u = ~every(xp.isfinite(U_hat))
        bad_m = ~every(xp.isfinite(M_hat))
        ru = _relative_change(xp, U_hat, s.U, total)
        rm = _relative_change(xp, M_hat, s.M, total)
        F, G = residual(arrays, U_hat, M_hat)
        rh, rf = largest(xp.abs(F)), largest(xp.abs(G))
        converged = (
            (ru < tolerance)
            & (rm < tolerance)
            & (rh <= equation_tolerance)
            & (rf <= equation_tolerance)
        )
        status = xp.full_like(s.status, RUNNING)  # the Array API's where takes an array
        status = xp.where(converged, CONVERGED, status)
        status = xp.where(bad_m, NONFINITE_M, status)
        status = xp.where(bad_u, NONFINITE_U, status)
        stall = s.stall
        if window is not None:
            p = progress(xp, ru, rm, rh, rf, tolerances)
            stalled, *trend = stall_update(xp, window, max_iterations, slots, s.k, p, stall)
            status = xp.where((status == RUNNING) & stalled, STALLED, status)
            stall = StallState(*trend)
        current = xp.sqrt(ru * ru + rm * rm)
        theta = theta_max  # a Python float unless it adapts: the default path unchanged
        best, since = s.last, s.since
        if adaptive:  # the step taken now already uses the adapted θ
            fell = current < s.last
            worse = (current > DAMPING_GROWTH * s.last) | (s.since + 1 >= DAMPING_PATIENCE)
            shrink = worse & ~fell
            theta = xp.where(
                shrink,
                xp.maximum(s.theta * DAMPING_SHRINK, DAMPING_MIN),
                xp.where(fell, xp.minimum(s.theta * DAMPING_GROW, theta_max), s.theta),
            )
            best = xp.where(shrink | fell, current, s.last)
            since = xp.where(shrink | fell, 0, s.since + 1)
        if accelerator is None:
            U_next = theta * U_hat + (1 - theta) * s.U
            M_next = theta * M_hat + (1 - theta) * s.M
            anderson = s.anderson
        elif members:
            U_next, M_next, anderson = _anderson_members(
                xp, accelerator, u_only, theta, s, U_hat, M_hat, adaptive
            )
        else:
            U_next, M_next, anderson = _anderson_update(
                xp, accelerator, u_only, theta, s, U_hat, M_hat, adaptive
            )
        keep = bad_u | bad_m  # the last finite iterate is the answer
        record = ~keep
        here = (slots == s.k) & record
        if pick_on_host:  # concrete flags: choose the arrays instead of passing over them
            U, M = (s.U, s.M) if keep else (U_hat, M_hat) if converged else (U_next, M_next)
            bad = U_hat if bad_u else M_hat
        else:
            U = xp.where(keep, s.U, xp.where(converged, U_hat, U_next))
            M = xp.where(keep, s.M, xp.where(converged, M_hat, M_next))
            bad = xp.where(bad_u, U_hat, M_hat)
        return IterationState(
            U=U,
            M=M,
            k=s.k + 1,
            res_u=xp.where(here, ru, s.res_u),
            res_m=xp.where(here, rm, s.res_m),
            res_hjb=xp.where(here, rh, s.res_hjb),
            res_fp=xp.where(here, rf, s.res_fp),
            theta=theta + 0.0 * s.theta,
            last=best,
            since=since,
            status=status,
            newton_failures=failures,
            bad=bad,
            anderson=anderson,
            stall=stall,
        )

    return iteration


def anderson_accelerator(iterator: Any, backend: BaseBackend) -> AndersonAccelerator | None:
    """The iterator's Anderson accelerator on ``backend`` (None without Anderson)."""
    if not iterator.use_anderson:
        return None
    return AndersonAccelerator(
        backend,
        depth=iterator.anderson_depth,
        beta=iterator.thetaUM if iterator.anderson_mixing is None else iterator.anderson_mixing,
        restart=iterator.anderson_restart,
        safeguard=iterator.anderson_safeguard,
    )


def default_initial(iterator: Any, backend: BaseBackend, arrays: dict) -> tuple[Any, Any]:
    """``U = g`` and ``M = m0`` at every level."""
    xp, p = backend.xp, iterator.problem
    U = xp.broadcast_to(arrays["g"][None, ...], p.shape) + 0.0
    M = xp.broadcast_to(arrays["m0"][None, ...], p.shape) + 0.0
    return U, M


def initial_state(iterator: Any, backend: BaseBackend, arrays: dict, max_iterations: int):
    """The state before the first iteration (``arrays["initial"]`` or the default start)."""
    xp, p = backend.xp, iterator.problem
    U, M = arrays["initial"] if "initial" in arrays else default_initial(iterator, backend, arrays)
    dev = backend._device_kw()
    accelerator = anderson_accelerator(iterator, backend)
    anderson = None
    if accelerator is not None:
        size = math.prod(p.shape)
        anderson = accelerator.init(size if iterator.anderson_on_u_only else 2 * size)
    stall = None
    if iterator.stall_window is not None:
        stall = StallState(
            low=xp.asarray(math.inf, dtype=backend.dtype, **dev),
            lows=backend.zeros((max_iterations,)),
            rate=xp.asarray(1.0, dtype=backend.dtype, **dev),
            remaining=xp.asarray(math.inf, dtype=backend.dtype, **dev),
        )
    return IterationState(
        U=U,
        M=M,
        k=xp.asarray(0, **dev),
        res_u=backend.zeros((max_iterations,)),
        res_m=backend.zeros((max_iterations,)),
        res_hjb=backend.zeros((max_iterations,)),
        res_fp=backend.zeros((max_iterations,)),
        theta=xp.asarray(
            iterator.anderson_mixing
            if iterator.use_anderson and iterator.anderson_mixing is not None
            else iterator.thetaUM,
            dtype=backend.dtype,
            **dev,
        ),
        last=xp.asarray(math.inf, dtype=backend.dtype, **dev),
        since=xp.asarray(0, **dev),
        status=xp.asarray(RUNNING, **dev),
        newton_failures=xp.asarray(0, **dev),
        bad=xp.zeros_like(U),
        anderson=anderson,
        stall=stall,
    )


def _anderson_update(xp, accelerator, u_only, theta, s, U_hat, M_hat, adaptive=False):
    shape = U_hat.shape
    beta = theta if adaptive else None  # None: the accelerator's own (fixed) mixing
    if u_only:
        U_next, anderson = accelerator.step(
            s.anderson, xp.reshape(s.U, (-1,)), xp.reshape(U_hat, (-1,)), beta
        )
        return xp.reshape(U_next, shape), theta * M_hat + (1 - theta) * s.M, anderson
    size = math.prod(shape)
    stacked, anderson = accelerator.step(
        s.anderson,
        xp.concat([xp.reshape(s.U, (-1,)), xp.reshape(s.M, (-1,))]),
        xp.concat([xp.reshape(U_hat, (-1,)), xp.reshape(M_hat, (-1,))]),
        beta,
    )
    return xp.reshape(stacked[:size], shape), xp.reshape(stacked[size:], shape), anderson


def _anderson_members(xp, accelerator, u_only, theta, s, U_hat, M_hat, adaptive):
    """:func:`_anderson_update` member by member of a stack: each member's step from its
    own history, as its single solve takes it (a few small products per member)."""
    U_next, M_next, histories = [], [], []
    for j, history in enumerate(s.anderson):
        one = s._replace(U=s.U[:, j], M=s.M[:, j], anderson=history)
        theta_j = theta if isinstance(theta, float) else theta[j, 0]
        u, m, h = _anderson_update(
            xp, accelerator, u_only, theta_j, one, U_hat[:, j], M_hat[:, j], adaptive
        )
        U_next.append(u)
        M_next.append(m)
        histories.append(h)
    return xp.stack(U_next, axis=1), xp.stack(M_next, axis=1), tuple(histories)


def _relative_change(xp: Any, new: Any, old: Any, total: Any) -> Any:
    diff = xp.sqrt(total((new - old) ** 2))
    return diff / xp.maximum(xp.sqrt(total(new**2)), 1e-300)


def _reductions(xp: Any, members: bool) -> tuple[Any, Any, Any]:
    """``(sum, max, all)`` over a whole field, or per member of a stacked batch (the
    result a ``(B, 1, ...)`` column, see :func:`make_iteration`)."""
    if not members:
        return xp.sum, xp.max, xp.all

    def column(out: Any, ndim: int) -> Any:
        return xp.reshape(out, (out.shape[0],) + (1,) * (ndim - 2))

    def member_sum(x: Any) -> Any:
        # Each member's values as one contiguous row, summed along it: the order of a
        # single solve's sum over its own array, so the norms (and the stops they decide)
        # are the single solve's to the bit, whatever the stack's size.
        rows = xp.reshape(xp.moveaxis(x, 1, 0), (x.shape[1], -1))
        return column(xp.sum(rows, axis=1), x.ndim)

    def member_max(x: Any) -> Any:  # exact in any order
        return column(xp.max(x, axis=(0, *range(2, x.ndim))), x.ndim)

    def member_all(x: Any) -> Any:
        return column(xp.all(x, axis=(0, *range(2, x.ndim))), x.ndim)

    return member_sum, member_max, member_all
