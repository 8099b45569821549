"""Sweeps (mfg_pde.distributed.sweep) here and on a Dask LocalCluster with two processes.

What is promised: a sweep's members equal the serial batch's (same arrays, same
convergence record); a worker that dies mid-sweep costs a rerun of its chunk, not the
sweep; a rerun after an interruption solves only the members not yet saved; a member
that does not converge is reported, one that raises is recorded as failed; bad input is
refused before anything is solved. The cluster is started once for the module; the
problems are tiny (21 x 10) so that the cluster's overhead is what is exercised.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from same_results import assert_same_solve

from mfg_pde import MFGProblem, load, solve_mfg_batch
from mfg_pde.distributed import load_sweep, sweep

distributed = pytest.importorskip("dask.distributed")


def make_problem(running_cost=None) -> MFGProblem:
    return MFGProblem(
        Nx=21,
        Nt=10,
        sigma=0.2,
        running_cost=running_cost or (lambda x, m, t, c: c * m),
        terminal_cost=lambda x: (x - 0.7) ** 2,
        initial_density=lambda x: np.exp(-40 * (x - 0.3) ** 2),
        cost_parameters={"c": 0.2},
    )


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def assert_same_members(results, reference) -> None:
    """Same arrays and the same convergence record (timings differ, nothing else may)."""
    assert len(results) == len(reference)
    for got, want in zip(results, reference, strict=True):
        assert_same_solve(got, want)


def test_sweep_on_the_cluster_equals_the_serial_batch(client, tmp_path):
    """Two swept names, chunks of 3 (the last one short), a member that does not
    converge (c = 5 with the default damping): all in member order, equal to
    solve_mfg_batch in this process, saved and summarised."""
    problem = make_problem()
    batch = {"c": [0.0, 0.1, 0.2, 0.3, 0.4, 5.0, 0.6], "sigma": [0.2, 0.25, 0.3] * 2 + [0.2]}
    result = sweep(
        problem, batch, tmp_path, backend="numpy", client=client, chunk_size=3, progress=False
    )
    reference = solve_mfg_batch(problem, batch, backend="numpy")
    assert_same_members(result, reference)
    assert not reference[5].converged  # the diverging member is a result, not an exception
    assert result.converged.tolist() == [r.converged for r in reference]
    assert result.failed == [] and result.resumed == 0

    rows = result.summary
    assert [row["member"] for row in rows] == list(range(7))
    assert [row["c"] for row in rows] == batch["c"]
    assert rows[5]["converged"] is False and rows[5]["residual"] > 1e-3
    assert all(row["seconds"] > 0 for row in rows)
    lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert lines[0].startswith("member,c,sigma,converged,iterations,residual,seconds")
    assert len(lines) == 8
    assert load(tmp_path / rows[3]["file"]) == result[3]
    assert load_sweep(tmp_path).summary == rows
    assert result.table().splitlines()[6].split()[:4] == ["5", "5", "0.3", "False"]


def _kills_its_worker_once(marker: str, client_pid: int):
    """A running cost that ends the worker process it runs in, the first time only."""

    def running_cost(x, m, t, c):
        if t > 0 and os.getpid() != client_pid and not os.path.exists(marker):
            with open(marker, "w") as file:
                file.write(str(os.getpid()))
            os._exit(1)  # as a crash would: no cleanup, no reply to the scheduler
        return c * m

    return running_cost


def test_a_worker_killed_mid_sweep_costs_a_rerun_of_its_chunk(client, tmp_path):
    marker = tmp_path / "killed"
    problem = make_problem(_kills_its_worker_once(str(marker), os.getpid()))
    batch = {"c": np.linspace(0.0, 0.5, 6)}
    pids_before = set(client.run(os.getpid).values())
    result = sweep(
        problem, batch, tmp_path / "out", backend="numpy", client=client, chunk_size=2,
        progress=False,
    )  # fmt: skip
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert int(marker.read_text()) in pids_before
    assert result.failed == []
    assert_same_members(result, solve_mfg_batch(problem, batch, backend="numpy"))


def _interrupts_once(marker: str, at_c: float):
    """A running cost that raises KeyboardInterrupt (as Ctrl-C would) in member c = at_c."""

    def running_cost(x, m, t, c):
        if t > 0 and c == at_c and not os.path.exists(marker):
            open(marker, "w").close()
            raise KeyboardInterrupt
        return c * m

    return running_cost


def test_a_rerun_after_an_interruption_solves_only_what_is_missing(client, tmp_path):
    """Interrupted (in this process) in member 4 with chunks of 2: members 0-3 are saved.
    The rerun, on the cluster, leaves their files untouched and solves the other 4; a
    torn last line in the log does not count as a finished member."""
    values = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
    problem = make_problem(_interrupts_once(str(tmp_path / "interrupted"), 0.4))
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        sweep(problem, {"c": values}, out, backend="numpy", chunk_size=2, progress=False)
    saved = sorted((out / "members").glob("*.npz"))
    assert [p.name for p in saved] == [f"{m:06d}.npz" for m in range(4)]
    mtimes = {p: p.stat().st_mtime_ns for p in saved}
    with open(out / "log.jsonl", "a") as log:
        log.write('{"member": 5, "c": 0.5, "conv')  # as if killed while appending

    result = sweep(
        problem, {"c": values}, out, backend="numpy", client=client, chunk_size=2,
        progress=False,
    )  # fmt: skip
    assert result.resumed == 4
    assert {p: p.stat().st_mtime_ns for p in saved} == mtimes
    assert len(list((out / "members").glob("*.npz"))) == 8
    assert_same_members(result, solve_mfg_batch(problem, {"c": values}, backend="numpy"))


def _raises_for(bad_c: float):
    def running_cost(x, m, t, c):
        if t > 0 and c == bad_c:
            raise RuntimeError(f"no cost defined for c={c}")
        return c * m

    return running_cost


def test_a_member_that_raises_is_recorded_and_the_sweep_goes_on(client, tmp_path):
    problem = make_problem(_raises_for(0.15))
    result = sweep(
        problem, {"c": [0.05, 0.1, 0.15, 0.2]}, tmp_path, backend="numpy", client=client,
        chunk_size=4, progress=False,
    )  # fmt: skip
    assert result.failed == [2]
    assert result.converged.tolist() == [True, True, False, True]
    assert "RuntimeError: no cost defined for c=0.15" in result.summary[2]["reason"]
    with pytest.raises(LookupError, match="member 2"):
        result[2]
    assert result[3].converged


# -- bad input, refused before anything is solved ----------------------------------------


def nothing_solved(directory) -> bool:
    return not (directory / "log.jsonl").exists() and not list(directory.glob("members/*.npz"))


def test_an_unreachable_scheduler_is_refused(tmp_path):
    with pytest.raises(ConnectionError, match="no Dask scheduler answered at 'tcp://127.0.0"):
        sweep(
            make_problem(), {"c": [0.1]}, tmp_path, client="tcp://127.0.0.1:9", progress=False,
            connect_timeout=0.5,
        )  # fmt: skip
    assert nothing_solved(tmp_path)


def test_an_output_dir_that_cannot_be_written_is_refused(tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(ValueError, match="output_dir .* is not a writable directory"):
        sweep(make_problem(), {"c": [0.1]}, not_a_directory / "out", progress=False)


def test_an_output_dir_of_another_sweep_is_refused(tmp_path):
    problem = make_problem()
    sweep(problem, {"c": [0.1, 0.2]}, tmp_path, backend="numpy", progress=False)
    log = (tmp_path / "log.jsonl").read_text()
    cases = [
        (problem, {"c": [0.1, 0.3]}, {}, "swept parameter values"),
        (problem.replace(Nt=12), {"c": [0.1, 0.2]}, {}, "problem parameters"),
        (problem, {"c": [0.1, 0.2]}, {"tolerance": 1e-8}, "solver options"),
        (
            MFGProblem(Nx=21, Nt=10, sigma=0.2, running_cost=lambda x, m, t, c: c * m,
                       cost_parameters={"c": 0.2}),
            {"c": [0.1, 0.2]}, {}, r"problem data \(m0, g",
        ),
    ]  # fmt: skip
    for other, batch, options, what in cases:
        with pytest.raises(ValueError, match=f"holds results of a different sweep .*{what}"):
            sweep(other, batch, tmp_path, backend="numpy", progress=False, **options)
    assert (tmp_path / "log.jsonl").read_text() == log
    assert json.loads((tmp_path / "sweep.json").read_text())["parameters"] == {"c": [0.1, 0.2]}


@pytest.mark.parametrize(
    ("parameters", "options", "error", "match"),
    [
        ({}, {}, TypeError, "non-empty dict"),
        ({"c": [0.1, 0.2], "sigma": [0.2]}, {}, ValueError, "one length"),
        ({"c": [[0.1]]}, {}, ValueError, r"parameters\['c'\] must be a non-empty 1D"),
        ({"c": ["a"]}, {}, TypeError, "must hold numbers"),
        ({"sigma": [0.2, -1.0]}, {}, ValueError, "member 1 .* sigma must be >= 0"),
        ({"kappa": [0.1]}, {}, TypeError, "unknown argument 'kappa'"),
        ({"c": [0.1]}, {"verbose": True}, TypeError, "does not take verbose"),
        ({"c": [0.1]}, {"num_particles": 100}, TypeError, "unknown option.*num_particles"),
        ({"c": [0.1]}, {"method": "magic"}, ValueError, "method must be one of"),
        ({"c": [0.1]}, {"backend": "fortran"}, ValueError, "unknown backend 'fortran'"),
        ({"c": [0.1]}, {"chunk_size": 0}, ValueError, "chunk_size must be a positive int"),
        ({"c": [0.1]}, {"client": 42}, TypeError, "client must be a dask.distributed.Client"),
    ],
)
def test_bad_input_is_refused_naming_the_argument(tmp_path, parameters, options, error, match):
    with pytest.raises(error, match=match):
        sweep(make_problem(), parameters, tmp_path / "out", progress=False, **options)
    assert nothing_solved(tmp_path / "out")


def test_a_backend_instance_is_refused(tmp_path):
    from mfg_pde import create_backend

    with pytest.raises(TypeError, match="backend's name or None"):
        sweep(make_problem(), {"c": [0.1]}, tmp_path, backend=create_backend("numpy"))
