"""The standard figures of a result (:meth:`MFGResult.plot`, :meth:`MFGResult.plot_density`).

matplotlib is imported here, when a figure is drawn, not when ``mfg_pde`` is imported.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mfg_pde._result import MFGResult

#: Time levels at which the value function is drawn (1D).
VALUE_SNAPSHOTS = 5
#: Time levels at which the density is drawn (2D, and :meth:`MFGResult.plot_density`).
DENSITY_SNAPSHOTS = 4


def plot_result(
    result: MFGResult, path: str | os.PathLike | None = None, **savefig_kwargs: Any
) -> Any:
    """1D: density heatmap over (t, x), value function at a few times, residual history.

    2D: density snapshots m(t, x, y) on one colour scale, u(0, x, y), residual history.
    """
    dim = _dimension(result, "plot")
    import matplotlib.pyplot as plt

    if dim == 1:
        fig, (ax_m, ax_u, ax_r) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
        _draw_density_1d(fig, ax_m, result)
        _draw_value_1d(ax_u, result)
    else:
        # Two rows as subfigures, so that the colour bars of one do not shift the other.
        fig = plt.figure(figsize=(15, 8.0), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=(1.0, 1.3))
        density_axes = top.subplots(1, DENSITY_SNAPSHOTS)
        _draw_density_2d(top, density_axes, result, _levels(result, None, DENSITY_SNAPSHOTS))
        ax_u, ax_r = bottom.subplots(1, 2)
        _draw_value_2d(bottom, ax_u, result)
    _draw_residuals(ax_r, result)

    status = "converged" if result.converged else "NOT converged"
    total = result.timings.get("total", float("nan"))
    fig.suptitle(
        f"{result.solver or result.backend}: {status} after {result.iterations} iterations, "
        f"{total:.3g} s on {result.device}"
    )
    return _finish(fig, path, savefig_kwargs)


def plot_density(
    result: MFGResult,
    times: Sequence[float] | None = None,
    path: str | os.PathLike | None = None,
    **savefig_kwargs: Any,
) -> Any:
    """The density at a few times: curves m(t, x) in 1D, heatmaps m(t, x, y) in 2D."""
    dim = _dimension(result, "plot_density")
    import matplotlib.pyplot as plt

    levels = _levels(result, times, DENSITY_SNAPSHOTS)
    if dim == 1:
        fig, ax = plt.subplots(figsize=(6.5, 4.2), layout="constrained")
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, len(levels)))
        for n, colour in zip(levels, colours, strict=True):
            ax.plot(result.x, result.M[n], color=colour, label=f"t = {result.t[n]:.3g}")
        ax.set(xlabel="x", ylabel="m(t, x)", title="Density of agents")
        ax.legend(fontsize="small")
    else:
        fig, axes = plt.subplots(
            1, len(levels), figsize=(3.6 * len(levels) + 1.0, 3.8), layout="constrained"
        )
        _draw_density_2d(fig, np.atleast_1d(axes), result, levels)
    return _finish(fig, path, savefig_kwargs)


def _dimension(result: MFGResult, method: str) -> int:
    """1 or 2, after checking that U, M, x (and y) have the shapes of such a result."""
    U, x, y = np.asarray(result.U), np.asarray(result.x), result.y
    if y is None and U.ndim == 2 and x.ndim == 1 and U.shape[1] == len(x):
        return 1
    if y is not None and U.ndim == 3 and x.ndim == 1 and np.ndim(y) == 1:
        if U.shape[1:] == (len(x), len(y)):
            return 2
    y_shape = None if y is None else np.shape(y)
    raise NotImplementedError(
        f"MFGResult.{method}() draws one-dimensional results (U of shape (len(t), len(x))) "
        "and two-dimensional ones (U of shape (len(t), len(x), len(y)), with the axis y); "
        f"this result has U of shape {U.shape}, x of shape {x.shape} and y of shape {y_shape}. "
        "Plot the arrays result.U, result.M directly."
    )


def _levels(result: MFGResult, times: Sequence[float] | None, count: int) -> list[int]:
    """Indices of the time levels nearest ``times`` (default: ``count`` from 0 to T)."""
    if times is None:
        return list(np.unique(np.linspace(0, len(result.t) - 1, count).astype(int)))
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if times.ndim != 1 or times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError(f"times must be a non-empty sequence of finite numbers, got {times}")
    t0, t1 = result.t[0], result.t[-1]
    outside = times[(times < t0) | (times > t1)]
    if outside.size:
        raise ValueError(f"times must lie in [{t0:g}, {t1:g}], got {outside.tolist()}")
    return [int(np.argmin(np.abs(result.t - s))) for s in times]


def _draw_density_1d(fig: Any, ax: Any, result: MFGResult) -> None:
    image = ax.pcolormesh(result.x, result.t, result.M, shading="auto", cmap="viridis")
    fig.colorbar(image, ax=ax, label="m(t, x)")
    ax.set(xlabel="x", ylabel="t", title="Density of agents")


def _draw_value_1d(ax: Any, result: MFGResult) -> None:
    import matplotlib.pyplot as plt

    levels = _levels(result, None, VALUE_SNAPSHOTS)
    colours = plt.get_cmap("plasma")(np.linspace(0.0, 0.85, len(levels)))
    for n, colour in zip(levels, colours, strict=True):
        ax.plot(result.x, result.U[n], color=colour, label=f"t = {result.t[n]:.3g}")
    ax.set(xlabel="x", ylabel="u(t, x)", title="Value function")
    ax.legend(fontsize="small")


def _draw_density_2d(fig: Any, axes: Sequence[Any], result: MFGResult, levels: list[int]) -> None:
    """m(t[n], x, y) for each level n, on one colour scale (one colour bar for all)."""
    snapshots = result.M[levels]
    low, high = float(np.min(snapshots)), float(np.max(snapshots))
    image = None
    for ax, n in zip(axes, levels, strict=True):
        # M[n] is indexed (x, y); pcolormesh wants rows along y.
        image = ax.pcolormesh(
            result.x, result.y, result.M[n].T, shading="auto", cmap="viridis", vmin=low, vmax=high
        )
        ax.set_aspect("equal")
        ax.set(xlabel="x", title=f"m at t = {result.t[n]:.3g}")
    axes[0].set_ylabel("y")
    fig.colorbar(image, ax=list(axes), label="m(t, x, y)", shrink=0.9)


def _draw_value_2d(fig: Any, ax: Any, result: MFGResult) -> None:
    """u(0, x, y): a heatmap with its level lines."""
    value = result.U[0].T
    image = ax.pcolormesh(result.x, result.y, value, shading="auto", cmap="plasma")
    if np.ptp(value) > 0:
        ax.contour(result.x, result.y, value, levels=10, colors="white", linewidths=0.6)
    ax.set_aspect("equal")
    ax.set(xlabel="x", ylabel="y", title=f"Value function u at t = {result.t[0]:.3g}")
    fig.colorbar(image, ax=ax, label="u(0, x, y)")


def _draw_residuals(ax: Any, result: MFGResult) -> None:
    if result.iterations:
        for (key, series), marker in zip(result.residuals.items(), "os^v", strict=False):
            k = np.arange(1, len(series) + 1)
            ax.semilogy(k, series, marker + "-", ms=3, label=key)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no iterations", ha="center", va="center", transform=ax.transAxes)
    ax.set(
        xlabel="iteration",
        ylabel="U, M: relative change; hjb, fp: equations",
        title="Residuals",
    )


def _finish(fig: Any, path: str | os.PathLike | None, savefig_kwargs: dict[str, Any]) -> Any:
    """Save ``fig`` to ``path`` (creating folders) and close it; without a path, keep it open."""
    if path is not None:
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, **{"dpi": 120, **savefig_kwargs})
        plt.close(fig)
    return fig
