"""The benchmark scripts still run (tiny sizes): a script that breaks is found here, not
in the few minutes of a lent GPU. What they measure is theirs to report, not asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    # Under its own name, as `python benchmarks/<name>.py` imports it for its worker
    # processes: functions sent to them are pickled by module and name.
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_device_check_smoke_run_writes_every_section(tmp_path):
    output = tmp_path / "device.json"
    rows = load("device_check").main(["--smoke", "--backends", "numpy", "--output", str(output)])
    assert {r["section"] for r in rows} == {"hello", "hello_2d", "particles", "batch", "newton"}
    assert all(r["device"] == "cpu" and r["seconds"] > 0 for r in rows)
    record = json.loads(output.read_text())
    assert record["results"] == json.loads(json.dumps(rows)) and "machine" in record


@pytest.mark.slow
def test_amr_solve_quick_run(tmp_path):
    load("amr_solve").main(["--quick", "--no-json", "--problems", "gather"])


def test_scaling_quick_run_writes_its_record_and_picture(tmp_path):
    output, picture = tmp_path / "scaling.json", tmp_path / "scaling.png"
    args = ["--quick", "--backends", "numpy", "--output", str(output), "--plot", str(picture)]
    rows = load("scaling").main(args)["rows"]
    assert {r["dim"] for r in rows} == {1, 2} and all(r["per_iteration_s"] > 0 for r in rows)
    assert json.loads(output.read_text())["results"] == json.loads(json.dumps(rows))
    assert picture.stat().st_size > 0


def test_rl_quick_run_writes_its_record(tmp_path):
    pytest.importorskip("torch")
    output = tmp_path / "rl.json"
    results = load("rl").main(
        ["--quick", "--sections", "simulate,quickstart", "--output", str(output)]
    )
    final = results["quickstart"]["final"]
    assert final["seconds"] > 0 and 0 <= final["l1"] <= 2 and final["sampling_l1"] >= 0
    assert results["simulate"][0]["agents_per_s"] > 0
    assert json.loads(output.read_text())["results"] == json.loads(json.dumps(results))


def test_newton_backends_quick_run_writes_its_record(tmp_path):
    output = tmp_path / "newton.json"
    rows = load("newton_backends").main(
        ["--quick", "--repeats", "1", "--backends", "numpy,numba", "--output", str(output)]
    )
    assert len(rows) == 4 and all(r["converged"] and r["best_s"] > 0 for r in rows)
    assert json.loads(output.read_text())["results"] == json.loads(json.dumps(rows))


@pytest.mark.slow  # ~30 s: a 2-worker LocalCluster and subprocesses with forced host devices
def test_distributed_scaling_quick_run_writes_its_record(tmp_path):
    pytest.importorskip("dask.distributed")
    pytest.importorskip("jax")
    output = tmp_path / "distributed.json"
    results = load("distributed_scaling").main(["--quick", "--output", str(output)])
    record = json.loads(output.read_text())
    assert record["results"] == json.loads(json.dumps(results))
    sweep = results["sweep"]
    assert sweep["members"] == 8 and sweep["cluster"]
    assert all(row["seconds"] > 0 for row in sweep["cluster"])
    particles = results["particles"]
    assert {row["host_devices"] for row in particles} >= {1, 2, 4}
    assert all(row["best_s"] > 0 for row in particles)
