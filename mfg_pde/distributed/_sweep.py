"""Parameter sweeps: chunks of members solved by the batched path, here or on Dask."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mfg_pde import _solve
from mfg_pde._io import load
from mfg_pde._problem import MFGProblem
from mfg_pde._result import MFGResult
from mfg_pde._solve import BATCH_PARAMETERS, solve_mfg, solve_mfg_batch
from mfg_pde.backends import _REGISTRY as _BACKENDS
from mfg_pde.backends import BaseBackend
from mfg_pde.distributed._store import MANIFEST, SweepStore, finished_members, manifest
from mfg_pde.utils.progress import Progress

#: Options that report from inside one solve: a sweep has its own bar over members.
_REPORTING_OPTIONS = ("verbose", "callback")
#: Chunks per worker thread that the automatic chunk size aims at: enough to balance
#: members of unequal cost, few enough that the per-task overhead stays small.
_CHUNKS_PER_THREAD = 4
#: Largest automatic chunk: a finished member reaches the disk at most this many
#: members after it was solved (a chunk's results come back together).
_MAX_AUTO_CHUNK = 16


def sweep(
    problem: MFGProblem,
    parameters: dict[str, Sequence[float]],
    output_dir: str | os.PathLike,
    method: str = "fdm",
    backend: str | None = None,
    *,
    client: Any = None,
    chunk_size: int | None = None,
    retries: int = 1,
    progress: bool = True,
    connect_timeout: float = 10.0,
    **options: Any,
) -> SweepResult:
    """Solve many variants of ``problem``, here or on a Dask cluster, saving each result.

    Member ``i`` is ``problem.replace(**{name: values[i] for name, values in
    parameters.items()})``, solved as :func:`~mfg_pde.solve_mfg` would solve it. The
    members are split into chunks; each chunk is one task, solved by
    :func:`~mfg_pde.solve_mfg_batch` (vectorised over the chunk on jax with
    ``method="fdm"``) when every swept name is one it can batch (``sigma``,
    ``control_cost``, a cost parameter), else member by member.

    Each member's result is saved to ``output_dir/members/<i>.npz``
    (:meth:`MFGResult.save`; :func:`mfg_pde.load` reads it) when its chunk comes back,
    and a row is appended to ``output_dir/log.jsonl``. Running the same sweep again with
    the same ``output_dir`` skips the members already there, so an interrupted sweep
    loses at most the chunks in flight. A member that does not converge is a result
    like any other (``converged=False``, its residuals); a member whose solve raises is
    recorded as failed (``reason`` says why, no file) and solved again by the next run;
    neither stops the sweep. On a cluster, a chunk whose worker dies is run again on
    another worker by the Dask scheduler (up to its ``allowed-failures``, 3 by default;
    after that its members are recorded as failed).

    Parameters
    ----------
    problem : MFGProblem
        The members' shared structure. Its callables travel to the workers with
        cloudpickle: a lambda or a closure is fine; a function defined in a module must
        be importable on the workers.
    parameters : dict
        Name -> 1D sequence of numbers, all of one length (the number of members): any
        numeric argument of :meth:`MFGProblem.replace` (``sigma``, ``control_cost``, a
        name in ``problem.cost_parameters``, ``T``, ...).
    output_dir : path-like
        Where results go (created if missing; on a cluster, only the process calling
        ``sweep`` writes to it). A directory that holds a different sweep (another
        problem, method, options or parameter values) is refused.
    method : str
        As :func:`~mfg_pde.solve_mfg`.
    backend : str or None
        A backend *name*: each worker creates its own backend (None: each chooses
        automatically, see :func:`~mfg_pde.create_backend`).
    client : dask.distributed.Client, str or None
        The cluster: a connected ``Client``, or a scheduler address
        (``"tcp://host:8786"``) to connect to. None solves the chunks one after another
        in this process, with the same saving and resuming.
    chunk_size : int or None
        Members per task. None: ``ceil(members to solve / (4 * worker threads))``, at
        most 16 (see docs/scaling.md for the per-task overhead this amortises).
    retries : int
        How many times Dask runs a chunk again whose task raised (outside the members'
        own solves, whose exceptions are recorded per member).
    progress : bool
        Show a progress bar over members.
    connect_timeout : float
        Seconds to wait for the scheduler when ``client`` is an address.
    **options
        Options of :func:`~mfg_pde.solve_mfg` for every member (JSON values: numbers,
        strings, booleans), except ``verbose`` and ``callback``.

    Returns
    -------
    SweepResult
        The summary table (member, parameters, converged, iterations, residual,
        seconds, reason) in member order, also saved as ``output_dir/summary.csv``;
        ``result[i]`` loads member ``i``'s :class:`~mfg_pde.MFGResult`.

    Raises
    ------
    TypeError, ValueError
        Bad parameters, method, backend, options, ``output_dir`` (not writable, or
        holding another sweep) or ``chunk_size``, before anything is solved.
    ConnectionError
        ``client`` is an address where no scheduler answers within ``connect_timeout``.
    ImportError
        ``client`` is given and dask.distributed is not installed.
    """
    names, values = _members(problem, parameters)
    _check_method(method, backend, options)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    columns = {name: [v[j] for v in values] for j, name in enumerate(names)}
    store = SweepStore(
        output_dir, manifest(problem, columns, method, backend, options), len(values)
    )
    rows = store.finished()
    resumed = len(rows)
    pending = [m for m in range(len(values)) if m not in rows]

    dask_client, owned = _connect(client, connect_timeout)
    try:
        # A cluster still starting (or scaling adaptively) may have no workers yet.
        threads = 1 if dask_client is None else max(1, sum(dask_client.nthreads().values()))
        size = chunk_size or _auto_chunk_size(len(pending), threads)
        chunks = [pending[i : i + size] for i in range(0, len(pending), size)]
        task = (problem, names, method, backend, options)
        if dask_client is None:
            outcomes = _solve_here(task, chunks, values)
        else:
            outcomes = _solve_on_dask(dask_client, task, chunks, values, retries)
        with Progress(len(values), verbose=progress, description="sweep", unit="member") as bar:
            bar.update(len(rows), {})
            try:
                for member, result, error, seconds in outcomes:
                    row = _row(member, names, values[member], result, error, seconds)
                    rows[member] = store.record(row, result)
                    bar.update(len(rows), {})
            finally:
                outcomes.close()  # an interrupted sweep cancels the chunks in flight
    finally:
        if owned:
            dask_client.close()
    summary = [rows[m] for m in range(len(values))]
    store.write_summary(summary)
    return SweepResult(store.directory, names, summary, resumed=resumed)


class SweepResult(Sequence):
    """The members of a sweep: the summary table, and each member's result on demand.

    ``len(result)`` members; ``result[i]`` loads member ``i``'s
    :class:`~mfg_pde.MFGResult` from the output directory (a failed member raises
    :class:`LookupError` with its reason). ``summary`` holds one dict per member, in
    member order: ``member``, the swept parameters, ``converged``, ``iterations``,
    ``residual`` (the larger of the last U and M residuals), ``seconds`` (the member's
    solve; for a chunk vectorised on jax, the chunk's time per member), ``reason``
    and ``file``. ``resumed`` counts the members found finished when the sweep began.
    """

    def __init__(self, directory: Path, names: tuple[str, ...], summary: list[dict], resumed=0):
        self.directory = Path(directory)
        self.names = names
        self.summary = summary
        self.resumed = resumed

    def __len__(self) -> int:
        return len(self.summary)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = self.summary[index]
        if not row.get("file"):
            raise LookupError(f"member {row['member']} has no result: {row['reason']}")
        return load(self.directory / row["file"])

    @property
    def converged(self) -> np.ndarray:
        """Per member, whether it converged (False for failed members)."""
        return np.array([bool(row["converged"]) for row in self.summary])

    @property
    def failed(self) -> list[int]:
        """Members whose solve raised (no result file); a rerun solves them again."""
        return [row["member"] for row in self.summary if not row.get("file")]

    def table(self, max_rows: int | None = 20) -> str:
        """The summary as aligned text (the first and last rows when there are more)."""
        columns = ["member", *self.names, "converged", "iterations", "residual", "seconds"]
        shown = self.summary
        if max_rows is not None and len(shown) > max_rows:
            shown = [*shown[: max_rows // 2], None, *shown[-(max_rows - max_rows // 2) :]]
        cells = [columns] + [
            ["..."] * len(columns) if row is None else [_cell(row[c]) for c in columns]
            for row in shown
        ]
        widths = [max(len(line[j]) for line in cells) for j in range(len(columns))]
        return "\n".join(
            "  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in cells
        )

    def __repr__(self) -> str:
        done = int(self.converged.sum())
        return (
            f"SweepResult({len(self)} members in {str(self.directory)!r}: {done} converged, "
            f"{len(self) - done - len(self.failed)} not converged, {len(self.failed)} failed; "
            f"{self.resumed} found finished)"
        )


def load_sweep(output_dir: str | os.PathLike) -> SweepResult:
    """The :class:`SweepResult` of a sweep's output directory (finished members only).

    For a sweep that was interrupted, the summary lists the members finished so far.
    """
    directory = Path(output_dir)
    described = json.loads((directory / MANIFEST).read_text())
    names = tuple(described["parameters"])
    size = len(next(iter(described["parameters"].values())))
    rows = finished_members(directory, size)
    return SweepResult(directory, names, [rows[m] for m in sorted(rows)], resumed=len(rows))


# -- the work of one chunk (runs on a worker) ----------------------------------------------


def _solve_chunk(task: tuple, members: list[int], values: list[tuple]) -> list[tuple]:
    """``[(member, result or None, error or None, seconds)]`` for a chunk of members."""
    problem, names, method, backend, options = task
    batchable = (*BATCH_PARAMETERS, *problem.cost_parameters)
    if all(name in batchable for name in names):
        batch = {name: [v[j] for v in values] for j, name in enumerate(names)}
        try:
            results = solve_mfg_batch(problem, batch, method, backend, **options)
        except Exception:  # noqa: BLE001 - a member raised: find which, one by one
            pass
        else:
            return [(m, r, None, _seconds(r)) for m, r in zip(members, results, strict=True)]
    return [
        _solve_member(problem, dict(zip(names, v, strict=True)), m, method, backend, options)
        for m, v in zip(members, values, strict=True)
    ]


def _solve_member(problem, changes, member, method, backend, options) -> tuple:
    start = time.perf_counter()
    try:
        result = solve_mfg(problem.replace(**changes), method, backend, **options)
    except Exception as err:  # noqa: BLE001 - recorded in the summary, the sweep goes on
        return member, None, f"{type(err).__name__}: {err}", time.perf_counter() - start
    return member, result, None, _seconds(result)


def _seconds(result: MFGResult) -> float:
    t = result.timings
    if "total" in t:
        return float(t["total"])
    return float(t.get("batch_total", math.nan)) / float(t.get("batch_size", 1.0))


# -- running the chunks --------------------------------------------------------------------


def _solve_here(task, chunks, values) -> Iterator[tuple]:
    for chunk in chunks:
        yield from _solve_chunk(task, chunk, [values[m] for m in chunk])


def _solve_on_dask(client, task, chunks, values, retries) -> Iterator[tuple]:
    from dask.distributed import as_completed

    futures = {
        client.submit(
            _solve_chunk, task, chunk, [values[m] for m in chunk], retries=retries, pure=False
        ): chunk
        for chunk in chunks
    }
    try:
        for future in as_completed(futures):
            chunk = futures[future]
            try:
                outcomes = future.result()
            except Exception as err:  # noqa: BLE001 - e.g. KilledWorker: its members failed
                message = f"chunk failed on the cluster: {type(err).__name__}: {err}"
                outcomes = [(m, None, message, math.nan) for m in chunk]
            future.release()
            yield from outcomes
    finally:
        client.cancel(list(futures))


def _connect(client: Any, timeout: float) -> tuple[Any, bool]:
    """``(client or None, whether this sweep opened it)``."""
    if client is None:
        return None, False
    try:
        from dask.distributed import Client
    except ImportError as err:
        raise ImportError(
            'a sweep on a cluster needs dask.distributed: pip install "mfg_pde[distributed]"'
        ) from err
    if isinstance(client, str):
        try:
            return Client(client, timeout=timeout, set_as_default=False), True
        except (OSError, TimeoutError) as err:
            raise ConnectionError(
                f"client: no Dask scheduler answered at {client!r} within {timeout:g} s "
                f"({type(err).__name__}: {err})"
            ) from err
    if not isinstance(client, Client):
        raise TypeError(
            "client must be a dask.distributed.Client, a scheduler address or None, "
            f"got {type(client).__name__}"
        )
    if client.status != "running":
        raise ValueError(f"client is not connected to a scheduler (status {client.status!r})")
    return client, False


def _auto_chunk_size(members: int, threads: int) -> int:
    return max(1, min(_MAX_AUTO_CHUNK, math.ceil(members / (_CHUNKS_PER_THREAD * threads))))


# -- checking the input --------------------------------------------------------------------


def _members(problem: MFGProblem, parameters: Any) -> tuple[tuple[str, ...], list[tuple]]:
    """The swept names and each member's values; every member is built once to check it."""
    if not isinstance(problem, MFGProblem):
        raise TypeError(f"problem must be an MFGProblem, got {type(problem).__name__}")
    if not isinstance(parameters, dict) or not parameters:
        raise TypeError("parameters must be a non-empty dict of parameter name -> values")
    columns = []
    for name, given in parameters.items():
        arr = np.asarray(given)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(
                f"parameters[{name!r}] must be a non-empty 1D sequence, got shape {arr.shape}"
            )
        if arr.dtype.kind not in "iuf":
            raise TypeError(f"parameters[{name!r}] must hold numbers, got dtype {arr.dtype}")
        columns.append([x.item() for x in arr])
    lengths = sorted({len(c) for c in columns})
    if len(lengths) != 1:
        raise ValueError(f"parameters must all have one length, got lengths {lengths}")
    names = tuple(parameters)
    values = list(zip(*columns, strict=True))
    for i, v in enumerate(values):
        changes = dict(zip(names, v, strict=True))
        try:
            problem.replace(**changes)
        except (TypeError, ValueError) as err:
            raise type(err)(f"parameters, member {i} {changes}: {err}") from err
    return names, values


def _check_method(method: str, backend: Any, options: dict) -> None:
    """Method, backend and options, checked as :func:`~mfg_pde.solve_mfg` would."""
    if isinstance(backend, BaseBackend):
        raise TypeError(
            "backend must be a backend's name or None in a sweep: each worker creates its "
            f"own (got a {type(backend).__name__} instance)"
        )
    if backend is not None and backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(_BACKENDS)}")
    given = sorted(name for name in _REPORTING_OPTIONS if name in options)
    if given or "mesh" in options:
        raise TypeError(
            f"sweep does not take {', '.join(given or ['mesh'])}: it shows its own progress "
            "bar over members (progress=True), and solves on the problem's grid"
        )
    allowed = {
        "fdm": _solve._HJB_OPTIONS + _solve._ITERATOR_OPTIONS + _solve._SOLVE_OPTIONS,
        "newton": _solve._NEWTON_OPTIONS + _solve._NEWTON_SOLVE_OPTIONS,
        "auto": _solve._AUTO_OPTIONS,
    }
    allowed["particle"] = allowed["fdm"] + _solve._PARTICLE_OPTIONS
    if method not in allowed:
        raise ValueError(f"method must be one of {_solve.METHODS}, got method={method!r}")
    unknown = sorted(set(options) - set(allowed[method]))
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(unknown)} for method={method!r}; "
            f"accepted: {', '.join(o for o in allowed[method] if o not in _REPORTING_OPTIONS)}"
        )
    for name, value in options.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"option {name}={value!r}: a sweep records its options in sweep.json, so "
                "they must be numbers, strings or booleans"
            ) from err


def _row(member, names, values, result, error, seconds) -> dict:
    row = {"member": member, **dict(zip(names, values, strict=True))}
    if result is None:
        return {
            **row,
            "converged": False,
            "iterations": 0,
            "residual": math.nan,
            "seconds": seconds,
            "reason": f"failed: {error}",
            "file": "",
        }
    last = [float(s[-1]) for k, s in result.residuals.items() if k in ("U", "M") and len(s)]
    return {
        **row,
        "converged": bool(result.converged),
        "iterations": int(result.iterations),
        "residual": max(last) if last else math.nan,
        "seconds": seconds,
        "reason": result.reason,
        "file": "",
    }


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
