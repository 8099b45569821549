"""Progress of an iterative solve: a tqdm bar with the current residuals, and a callback."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: ``callback(iteration, residuals)``; returning a true value asks the solver to stop.
Callback = Callable[[int, Mapping[str, float]], Any]


class Progress:
    """Reports each iteration of a fixed-point solve to a progress bar and a callback.

    Parameters
    ----------
    total : int
        The iteration cap (the length of the bar).
    verbose : bool
        Show a `tqdm <https://tqdm.github.io>`_ bar on stderr with the latest residuals.
    callback : callable or None
        Called as ``callback(iteration, residuals)`` after every iteration, with the
        1-based iteration number and a dict of floats (``{"U": ..., "M": ...}``). If it
        returns a true value the solver stops after that iteration (``converged=False``,
        the reason says so); None or any false value lets it go on.
    description : str
        Label of the bar.
    unit : str
        What the bar counts (tqdm's ``unit``): ``"it"`` for iterations, ``"member"``
        for the members of a sweep.

    Examples
    --------
    >>> progress = Progress(total=100, callback=lambda k, r: k >= 3)
    >>> [progress.update(k, {"U": 0.1, "M": 0.2}) for k in (1, 2, 3)]
    [False, False, True]
    >>> progress.close()
    """

    def __init__(
        self,
        total: int,
        verbose: bool = False,
        callback: Callback | None = None,
        description: str = "fixed point",
        unit: str = "it",
    ) -> None:
        if callback is not None and not callable(callback):
            raise TypeError(
                "callback must be a callable callback(iteration, residuals) or None, "
                f"got {type(callback).__name__}"
            )
        self.callback = callback
        self.stopped_at: int | None = None
        self._bar = None
        if verbose:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=description, unit=unit, leave=True)

    @property
    def active(self) -> bool:
        """Whether anything listens (a bar or a callback): then each iteration's
        residuals must be read on the host."""
        return self._bar is not None or self.callback is not None

    def update(self, iteration: int, residuals: Mapping[str, float]) -> bool:
        """Record that ``iteration`` finished with these residuals; True means stop."""
        if self._bar is not None:
            postfix = ", ".join(f"{k} {v:.2e}" for k, v in residuals.items())
            self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.update(iteration - self._bar.n)
        if self.callback is not None and self.callback(iteration, dict(residuals)):
            self.stopped_at = iteration
            return True
        return False

    @property
    def stop_reason(self) -> str:
        """Why the solve stopped early, for the result's ``reason``."""
        return f"stopped by the callback after iteration {self.stopped_at}"

    def close(self) -> None:
        """Close the bar (it stays on screen at the iteration reached)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
