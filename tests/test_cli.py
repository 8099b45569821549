"""``python -m mfg_pde``: solve and info, as a user runs them, and bad options (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import mfg_pde
from mfg_pde import backends as backends_module
from mfg_pde._cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--Nx", "21", "--Nt", "10"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``python -m mfg_pde ARGS`` in a fresh interpreter, as a user would."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("MFG_PDE_BACKEND", None)
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, "-m", "mfg_pde", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_solve_prints_a_summary_and_writes_figure_and_result(backend, tmp_path):
    out = tmp_path / "out"
    proc = run_cli(
        "solve", "--example", "hello", "--backend", backend.name, *SMALL, "--output", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert f"backend {backend.name} on {backend.device}" in text
    assert "converged after" in text and "NOT converged" not in text
    assert "residuals  last U" in text and "s total" in text
    figure, saved = out / "hello_fdm.png", out / "hello_fdm.npz"
    assert figure.read_bytes()[:4] == b"\x89PNG"
    result = mfg_pde.load(saved)
    assert result.backend == backend.name and result.converged
    assert result.problem["Nx"] == 21 and result.problem["Nt"] == 10
    assert result.problem["sigma"] == 0.1  # the hello problem, not the default one
    assert f"{result.iterations} iterations" in text


def test_solve_particles_that_stop_early_exit_1_and_still_save(tmp_path):
    proc = run_cli(
        "solve", "--method", "particle", "--num-particles", "500", "--seed", "3",
        "--max-iterations", "3", "--backend", "numpy", "--format", "h5", "--no-plot", *SMALL,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "did not converge: reached max_iterations=3" in proc.stderr
    assert "NOT converged after 3 iterations" in proc.stdout
    default_output = tmp_path / "output"
    assert not (default_output / "quickstart_particle.png").exists()
    result = mfg_pde.load(default_output / "quickstart_particle.h5")
    assert result.iterations == 3 and result.solver == "FixedPointIterator[numpy]"


@pytest.mark.parametrize("example", ["hello_2d", "crowd_2d"])
def test_solve_2d_example_writes_figure_and_result(example, tmp_path, capsys):
    """A real 2D solve through the command line: ``--Nx 10`` means 10 points per axis."""
    out = tmp_path / "out"
    status = main(
        ["solve", "--example", example, "--backend", "numpy", "--Nx", "10", "--Nt", "4"]
        + ["--output", str(out)]
    )
    assert status == 0
    assert "Nx=10x10, Nt=4" in capsys.readouterr().out
    assert (out / f"{example}_fdm.png").read_bytes()[:4] == b"\x89PNG"
    result = mfg_pde.load(out / f"{example}_fdm.npz")
    assert result.converged and result.M.shape == (5, 10, 10) and result.y.shape == (10,)
    assert abs(result.mass - 1.0).max() < 1e-12


def test_info_lists_backends_versions_devices_and_threads(tmp_path):
    proc = run_cli("info", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith(f"mfg_pde {mfg_pde.__version__}")
    for name, entry in mfg_pde.available_backends().items():
        line = next(row for row in text.splitlines() if row.strip().startswith(name))
        if entry["installed"]:
            assert entry["version"] in line and "devices: " in line
        else:
            assert f'pip install "mfg_pde[{entry["extra"]}]"' in line
    assert "threads" in text and "$OMP_NUM_THREADS" in text
    assert "selected   " in text


def test_bad_option_exits_2_from_the_shell(tmp_path):
    proc = run_cli("solve", "--Nx", "2", cwd=tmp_path)
    assert proc.returncode == 2
    assert "argument --Nx: must be >= 3, got 2" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["solve", "--backend", "cupy"], "argument --backend: invalid choice: 'cupy'"),
        (["solve", "--method", "fem"], "argument --method: invalid choice: 'fem'"),
        (["solve", "--example", "nope"], "argument --example: invalid choice: 'nope'"),
        (["solve", "--Nx", "ten"], "argument --Nx: expected an integer, got 'ten'"),
        (["solve", "--Nt", "0"], "argument --Nt: must be >= 1, got 0"),
        (["solve", "--num-particles", "5"], "argument --num-particles: must be >= 10"),
        (["solve", "--method", "particle", "--seed", "-1"], "argument --seed: must be >= 0"),
        (["solve", "--tolerance", "-1"], "argument --tolerance: must be a finite number > 0"),
        (["solve", "--thetaUM", "1.5"], "argument --thetaUM: must be in (0, 1], got 1.5"),
        (["solve", "--num-particles", "100"], "--num-particles applies to --method particle"),
        (["solve", "--seed", "0"], "--seed applies to --method particle only"),
        (["solve", "--format", "mat"], "argument --format: invalid choice: 'mat'"),
        (["solve", "--unknown"], "unrecognized arguments: --unknown"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_backend_that_is_not_installed_names_the_pip_extra(monkeypatch, capsys):
    monkeypatch.setattr(backends_module, "_is_installed", lambda library: library != "jax")
    with pytest.raises(SystemExit) as exit_info:
        main(["solve", "--backend", "jax", *SMALL])
    assert exit_info.value.code == 2
    assert 'pip install "mfg_pde[jax]"' in capsys.readouterr().err


def test_hdf5_format_without_h5py_is_a_bad_option(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(SystemExit) as exit_info:
        main(["solve", "--format", "h5", *SMALL])
    assert exit_info.value.code == 2
    assert "--format h5 needs h5py: pip install h5py" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"mfg_pde {mfg_pde.__version__}"
