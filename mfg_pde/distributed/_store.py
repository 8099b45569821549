"""The output directory of a sweep: what it is, what is finished, the summary table.

Layout of ``output_dir``::

    sweep.json           what the sweep is (problem, method, options, every member's values)
    members/000123.npz   member 123's MFGResult, MFGResult.save's format (mfg_pde.load reads it)
    log.jsonl            one summary row per finished member, appended as it finishes
    summary.csv          the summary table in member order, written when the sweep ends

Only the process that runs :func:`~mfg_pde.distributed.sweep` writes here. A member's
file is written under a temporary name and renamed into place, and its row is appended
to the log after that, so an interrupted sweep leaves complete files only: a member
counts as finished when its row is in the log and its file exists.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mfg_pde._problem import MFGProblem
from mfg_pde._result import MFGResult

#: Identifies a directory written by a sweep, and its layout version.
FORMAT = "mfg_pde.sweep"
FORMAT_VERSION = 1
MANIFEST = "sweep.json"
LOG = "log.jsonl"
SUMMARY = "summary.csv"
MEMBERS = "members"

#: What each manifest entry is, for the error that names the one that differs.
_MEANINGS = {
    "format_version": "layout version",
    "problem": "problem parameters",
    "problem_data": "problem data (m0, g or f(x, m0, 0) on the grid)",
    "method": "method",
    "backend": "backend",
    "options": "solver options",
    "parameters": "swept parameter values",
}


def problem_fingerprint(problem: MFGProblem) -> str:
    """A hash of the problem's data on its grid: ``m0``, ``g`` and ``f(x, m0, 0)``.

    The callables are code and cannot be compared; their values on the grid can, so a
    directory written for another initial density, terminal cost or running cost is
    recognised. Values are rounded to float32 first, so that the last bits of a libm
    function (which may differ between machines) do not make the same sweep look new.
    """
    f = problem.running_cost(
        *(c.copy() for c in problem.coords), problem.m0.copy(), 0.0, **problem.cost_parameters
    )
    digest = hashlib.sha256()
    for values in (problem.m0, problem.g, np.broadcast_to(f, problem.grid_shape)):
        digest.update(np.ascontiguousarray(values, dtype=np.float32).tobytes())
    return digest.hexdigest()


def manifest(problem: MFGProblem, parameters: dict[str, list], method: str, backend, options):
    """The sweep's description as stored in ``sweep.json`` (JSON types only)."""
    described = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "problem": problem.parameters(),
        "problem_data": problem_fingerprint(problem),
        "method": method,
        "backend": backend,
        "options": options,
        "parameters": parameters,
    }
    # Through JSON once, so that tuples become lists as they will when read back.
    return json.loads(json.dumps(described))


class SweepStore:
    """The output directory of one sweep (see the module docstring).

    Parameters
    ----------
    directory : path-like
        Created if missing.
    described : dict
        :func:`manifest` of the sweep. A directory that already holds a sweep must hold
        this one (equal manifests), or :class:`ValueError` is raised naming what differs.
    size : int
        Number of members.
    """

    def __init__(self, directory: str | os.PathLike, described: dict, size: int) -> None:
        self.directory = Path(directory)
        self.size = size
        self._width = max(6, len(str(size - 1)))
        self._check_writable()
        path = self.directory / MANIFEST
        if path.exists():
            self._check_same_sweep(path, described)
        else:
            _write_atomically(path, json.dumps(described, indent=1).encode())

    def _check_writable(self) -> None:
        probe = self.directory / MEMBERS / ".write-test"
        try:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise ValueError(
                f"output_dir {str(self.directory)!r} is not a writable directory ({err}); "
                "give a directory this process can create files in"
            ) from err

    def _check_same_sweep(self, path: Path, described: dict) -> None:
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(
                f"output_dir {str(self.directory)!r} has an unreadable {MANIFEST} ({err})"
            ) from err
        if not isinstance(stored, dict) or stored.get("format") != FORMAT:
            raise ValueError(f"output_dir {str(self.directory)!r} does not hold an mfg_pde sweep")
        for key, value in described.items():
            if stored.get(key) != value:
                what = _MEANINGS.get(key, key)
                raise ValueError(
                    f"output_dir {str(self.directory)!r} holds results of a different sweep "
                    f"({what}: stored {_short(stored.get(key))}, given {_short(value)}); "
                    "use another directory, or delete this one to start over"
                )

    def member_path(self, member: int) -> Path:
        return self.directory / MEMBERS / f"{member:0{self._width}d}.npz"

    def finished(self) -> dict[int, dict]:
        """Summary rows of the members already solved (see :func:`finished_members`)."""
        return finished_members(self.directory, self.size)

    def record(self, row: dict, result: MFGResult | None) -> dict:
        """Save a member's result (if any) and append its summary row to the log."""
        if result is not None:
            path = self.member_path(row["member"])
            partial = path.with_name(path.stem + ".partial.npz")
            result.save(partial)
            os.replace(partial, path)
            row = {**row, "file": str(path.relative_to(self.directory))}
        with open(self.directory / LOG, "a") as log:
            log.write(json.dumps(row, default=_to_json) + "\n")
            log.flush()
        return row

    def write_summary(self, rows: list[dict]) -> Path:
        """``summary.csv``: one line per member, in member order."""
        path = self.directory / SUMMARY
        text = io.StringIO()
        if rows:
            writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        _write_atomically(path, text.getvalue().encode())
        return path


def finished_members(directory: Path, size: int) -> dict[int, dict]:
    """Member -> its last summary row in the log, for members whose result file exists."""
    rows: dict[int, dict] = {}
    log = directory / LOG
    if not log.exists():
        return rows
    for line in log.read_text().splitlines():
        try:  # an interrupted append leaves a partial last line: not a finished member
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("member"), int):
            rows[row["member"]] = row
    return {
        m: row
        for m, row in rows.items()
        if 0 <= m < size and row.get("file") and (directory / row["file"]).exists()
    }


def _write_atomically(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a value of type {type(value).__name__} in a summary row")
