"""Progress of a solve: the callback sees every iteration and can stop it; the tqdm bar."""

from __future__ import annotations

import numpy as np
import pytest

from mfg_pde import solve_mfg
from mfg_pde.alg.numerical import FixedPointIterator, FPFDMSolver, HJBFDMSolver
from mfg_pde.problems import hello_example
from mfg_pde.utils.progress import Progress


def problem():
    return hello_example(Nx=21, Nt=10)


def test_callback_sees_every_iteration_and_its_residuals():
    seen = []
    result = solve_mfg(problem(), backend="numpy", callback=lambda k, r: seen.append((k, r)))
    assert result.converged
    assert [k for k, _ in seen] == list(range(1, result.iterations + 1))
    for key in ("U", "M"):
        np.testing.assert_array_equal([r[key] for _, r in seen], result.residuals[key])


def test_callback_returning_true_stops_the_solve():
    """A stop request after iteration 4, where convergence takes 27: the solve
    stops there (bookkeeping, not a path round-off can change)."""
    p = problem()
    hjb, fp = HJBFDMSolver(p, backend="numpy"), FPFDMSolver(p, backend="numpy")
    result = FixedPointIterator(p, hjb, fp).solve(max_iterations=100, callback=lambda k, r: k == 4)
    assert result.iterations == 4 and not result.converged
    assert result.reason == "stopped by the callback after iteration 4"
    # A solve capped at 4 iterations returns the same iterate: stopping is not a different path.
    capped = FixedPointIterator(p, hjb, fp).solve(max_iterations=4)
    np.testing.assert_array_equal(result.U, capped.U)
    np.testing.assert_array_equal(result.M, capped.M)


def test_convergence_wins_over_a_stop_request_in_the_same_iteration():
    """The callback asks to stop exactly when both residuals fall below the tolerance
    (1e-6, the default), that is in the iteration that converges, whichever one that
    is: the result says converged, not stopped."""
    requests = []

    def stop_once_below_tolerance(k, residuals):
        if max(residuals["U"], residuals["M"]) < 1e-6:
            requests.append(k)
            return True
        return False

    result = solve_mfg(problem(), backend="numpy", callback=stop_once_below_tolerance)
    assert result.converged and result.reason.startswith("both residuals below"), result.reason
    assert requests == [result.iterations]


def test_verbose_shows_a_bar_with_the_residuals(capsys):
    result = solve_mfg(problem(), backend="numpy", verbose=True)
    err = capsys.readouterr().err
    assert "FixedPointIterator[numpy]" in err
    assert f"{result.iterations}/100" in err
    assert f"U {result.residuals['U'][-1]:.2e}, M {result.residuals['M'][-1]:.2e}" in err


def test_quiet_by_default(capsys):
    solve_mfg(problem(), backend="numpy")
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_callback_must_be_callable():
    with pytest.raises(TypeError, match="callback must be a callable"):
        solve_mfg(problem(), backend="numpy", callback="print")


def test_progress_alone():
    stops = Progress(total=10, callback=lambda k, r: r["U"] < 0.5)
    assert [stops.update(k, {"U": 1.0 / k}) for k in (1, 2, 3)] == [False, False, True]
    assert stops.stopped_at == 3
    stops.close()
    with Progress(total=10) as silent:
        assert silent.update(1, {"U": 0.0}) is False


def test_the_bar_counts_what_it_is_told(capsys):
    with Progress(total=4, verbose=True, description="sweep", unit="member") as bar:
        bar.update(2, {})
    err = capsys.readouterr().err
    assert "sweep" in err and "2/4" in err and "member" in err
