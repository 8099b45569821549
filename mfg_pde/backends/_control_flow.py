"""Loops, compilation and batching: part of :class:`BaseBackend`.

The defaults run in Python, op by op; jax overrides them with ``lax.scan``,
``lax.while_loop``, ``jax.jit`` and ``jax.vmap``. :meth:`ControlFlow.eager` returns a
backend with the defaults back in place.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any


class ControlFlow:
    """:class:`~mfg_pde.backends.BaseBackend`'s loops, ``jit``, ``vmap`` and waiting."""

    xp: Any
    compiled: bool

    def scan(
        self, step: Callable, carry: Any, xs: Any = None, length: int | None = None
    ) -> tuple[Any, Any]:
        """``lax.scan`` semantics: ``carry, y = step(carry, x)`` over the leading axis of xs.

        ``xs`` may be an array, a tuple of arrays, or None (then ``length`` steps with
        ``x = None``). Returns the final carry and the stacked ``y`` (a tuple when ``step``
        returns a tuple, None when it returns None).
        """
        n = _leading_length(xs, length)
        ys = []
        for k in range(n):
            x = None if xs is None else _index_tree(xs, k)
            carry, y = step(carry, x)
            ys.append(y)
        return carry, self._stack_tree(ys)

    def _stack_tree(self, ys: list) -> Any:
        if not ys or ys[0] is None:
            return None
        if isinstance(ys[0], tuple):
            return tuple(self.xp.stack([y[i] for y in ys]) for i in range(len(ys[0])))
        return self.xp.stack(ys)

    def while_loop(self, cond: Callable, body: Callable, state: Any) -> Any:
        """``lax.while_loop`` semantics: ``while cond(state): state = body(state)``."""
        while bool(cond(state)):
            state = body(state)
        return state

    def jit(self, fn: Callable, **kwargs: Any) -> Callable:
        """Compile ``fn`` where the backend can; elsewhere return it unchanged."""
        return fn

    def vmap(self, fn: Callable) -> Callable:
        """``fn`` mapped over the leading axis of its first argument, the other
        arguments shared: ``vmap(fn)(xs, *rest)[i] == fn(xs[i], *rest)``.

        ``xs`` may be an array or a tuple of arrays of one leading length (then ``fn``
        gets the tuple of their rows). Default: a Python loop and a stack; jax maps it
        in one traced program (``jax.vmap``), torch with ``torch.func.vmap``."""

        def looped(first: Any, *rest: Any) -> Any:
            n = _leading_length(first, None)
            return self._stack_tree([fn(_index_tree(first, i), *rest) for i in range(n)])

        return looped

    def call_host(self, fn: Callable, shape: tuple, *arrays: Any) -> Any:
        """``fn`` (NumPy arrays in, a float64 array of ``shape`` out) on ``arrays``, from
        inside a compiled program where the backend has one.

        The way to run a host kernel (numba) on a backend's arrays: the default converts
        with ``to_numpy``/``from_numpy`` (no copy in for numpy and torch on the CPU); jax
        calls it through ``jax.pure_callback``, so it may sit inside ``jit``, ``scan`` and
        ``while_loop``. Meant for CPU devices, where the arrays are in host memory.
        """
        return self.from_numpy(fn(*(self.to_numpy(a) for a in arrays)))

    def synchronize(self, x: Any) -> Any:
        """Block until the device has computed ``x`` (an array or a tuple of them) and
        return it, so that a timer stopped afterwards covers the work.

        Default: nothing to wait for (the work ran when it was called); jax waits for
        its asynchronous dispatch, torch for a CUDA or MPS device."""
        return x

    def eager(self) -> Any:
        """This backend with Python ``scan``, ``while_loop``, ``vmap`` and a no-op ``jit``.

        The arrays and primitives are the same; only the control flow runs op by op, so
        code that cannot be traced (a running cost with Python ``if`` on array values)
        still runs, and compiled results can be checked against it.
        """
        overridden = any(
            getattr(type(self), name) is not getattr(ControlFlow, name)
            for name in ("scan", "while_loop", "jit", "vmap")
        )
        if not overridden:
            return self
        view = copy.copy(self)
        for name in ("scan", "while_loop", "jit", "vmap"):
            setattr(view, name, functools.partial(getattr(ControlFlow, name), view))
        view.compiled = False
        return view


def _leading_length(xs: Any, length: int | None) -> int:
    if xs is None:
        if length is None:
            raise ValueError("scan needs xs or length")
        return int(length)
    first = xs[0] if isinstance(xs, tuple) else xs
    return int(first.shape[0])


def _index_tree(xs: Any, k: int) -> Any:
    """``xs[k]`` for an array or a tuple of arrays; None entries stay None (as in JAX)."""
    if isinstance(xs, tuple):
        return tuple(None if x is None else x[k, ...] for x in xs)
    return xs[k, ...]
