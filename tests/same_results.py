"""One check shared by the batch and sweep tests: two results of the same solve."""

from __future__ import annotations

import numpy as np


def assert_same_solve(result, reference) -> None:
    """The same arrays and the same record: convergence, iterations, reason and every
    residual history, to the bit (timings may differ, nothing else)."""
    np.testing.assert_array_equal(result.U, reference.U)
    np.testing.assert_array_equal(result.M, reference.M)
    assert (result.converged, result.iterations, result.reason) == (
        reference.converged,
        reference.iterations,
        reference.reason,
    )
    for key, values in reference.residuals.items():
        np.testing.assert_array_equal(result.residuals[key], values)
