"""Every script in ``examples/`` runs, at small sizes, and saves its figure.

The scripts are found by globbing, so a new example is tested without editing this
file. The contract an example keeps: run with no arguments; honour
``MFG_PDE_EXAMPLE_SMALL=1`` (small sizes, a few seconds) and
``MFG_PDE_EXAMPLE_OUTPUT=DIR`` (write its figures, ``.png``, into DIR); exit 0.

Examples that choose their backend automatically run on numpy here
(``MFG_PDE_BACKEND=numpy``): what is checked is the script, and the backends are
checked by the solver tests (the automatic choice by ``test_backends_factory.py``).
On this 2-core CPU the automatic choice, torch, takes 15 s for the small crowd_2d
example and numpy 4 s.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mfg_pde.problems import design_example

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def test_there_are_examples():
    names = {path.stem for path in EXAMPLES}
    assert {"quickstart", "backend_comparison", "particle_vs_fdm", "anderson_vs_damping"} <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs_small_and_saves_its_figure(script, tmp_path):
    env = {
        **os.environ,
        "MFG_PDE_EXAMPLE_SMALL": "1",
        "MFG_PDE_BACKEND": "numpy",
        "MFG_PDE_EXAMPLE_OUTPUT": str(tmp_path),
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{script.name} failed:\n{proc.stdout}\n{proc.stderr}"
    figures = list(tmp_path.rglob("*.png"))
    assert figures, f"{script.name} wrote no .png into $MFG_PDE_EXAMPLE_OUTPUT"
    for figure in figures:
        assert figure.read_bytes()[:4] == b"\x89PNG" and figure.stat().st_size > 10_000


def test_quickstart_problem_is_the_design_example():
    """The quickstart spells the problem out for readers; it must stay the shared one."""
    spec = importlib.util.spec_from_file_location("quickstart", ROOT / "examples" / "quickstart.py")
    quickstart = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quickstart)
    ours, shared = quickstart.make_problem(), design_example()
    assert ours.parameters() == shared.parameters()
    np.testing.assert_array_equal(ours.g, shared.g)
    np.testing.assert_array_equal(ours.m0, shared.m0)
    np.testing.assert_array_equal(
        ours.running_cost(ours.x, ours.m0, 0.0), shared.running_cost(shared.x, shared.m0, 0.0)
    )
