"""The standard figure of a result (:meth:`MFGResult.plot`); matplotlib is imported here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mfg_pde._result import MFGResult

#: Time levels at which the value function is drawn.
VALUE_SNAPSHOTS = 5


def plot_result(
    result: MFGResult, path: str | os.PathLike | None = None, **savefig_kwargs: Any
) -> Any:
    """Density heatmap over (t, x), value function at a few times, residual history."""
    if result.U.ndim != 2 or result.x.ndim != 1:
        raise NotImplementedError(
            "MFGResult.plot() draws one-dimensional results (U of shape (len(t), len(x))); "
            f"this result has U of shape {result.U.shape} and x of shape {result.x.shape}. "
            "Plot the arrays result.U, result.M directly."
        )
    import matplotlib.pyplot as plt

    fig, (ax_m, ax_u, ax_r) = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")

    image = ax_m.pcolormesh(result.x, result.t, result.M, shading="auto", cmap="viridis")
    fig.colorbar(image, ax=ax_m, label="m(t, x)")
    ax_m.set(xlabel="x", ylabel="t", title="Density of agents")

    levels = np.unique(np.linspace(0, len(result.t) - 1, VALUE_SNAPSHOTS).astype(int))
    colours = plt.get_cmap("plasma")(np.linspace(0.0, 0.85, len(levels)))
    for n, colour in zip(levels, colours, strict=True):
        ax_u.plot(result.x, result.U[n], color=colour, label=f"t = {result.t[n]:.3g}")
    ax_u.set(xlabel="x", ylabel="u(t, x)", title="Value function")
    ax_u.legend(fontsize="small")

    if result.iterations:
        for (key, series), marker in zip(result.residuals.items(), "os^v", strict=False):
            k = np.arange(1, len(series) + 1)
            ax_r.semilogy(k, series, marker + "-", ms=3, label=key)
        ax_r.legend()
    else:
        ax_r.text(0.5, 0.5, "no iterations", ha="center", va="center", transform=ax_r.transAxes)
    ax_r.set(
        xlabel="iteration",
        ylabel="U, M: relative change; hjb, fp: equations",
        title="Residuals",
    )

    status = "converged" if result.converged else "NOT converged"
    total = result.timings.get("total", float("nan"))
    fig.suptitle(
        f"{result.solver or result.backend}: {status} after {result.iterations} iterations, "
        f"{total:.3g} s on {result.device}"
    )
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, **{"dpi": 120, **savefig_kwargs})
        plt.close(fig)
    return fig
