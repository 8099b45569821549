"""The particle solver split over JAX devices: ``FPParticleSolver(devices=...)``.

Promised: the same seed gives the same density path whatever the number of devices
(the draws do not depend on the split; only the order of the psum's additions does, so
the paths agree to round-off, asserted at 1e-12 of max M); one all-reduce per density
estimate; too many devices, an uneven split or a non-JAX backend refused with the
numbers. Several CPU devices need ``XLA_FLAGS=--xla_force_host_platform_device_count``
before jax is imported, so those checks run in a subprocess (this process keeps its one
device); two processes joined by ``jax.distributed.initialize`` run on localhost.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from mfg_pde import MFGProblem
from mfg_pde.alg.numerical import FPParticleSolver

pytest.importorskip("jax")

#: Max |M_sharded - M| / max |M| allowed: the sums' order differs, nothing else.
TOLERANCE = 1e-12

PREAMBLE = """
import json, os, re, sys
import numpy as np
import jax
from mfg_pde import MFGProblem
from mfg_pde.alg.numerical import FixedPointIterator, FPParticleSolver, HJBFDMSolver

def problem(**kw):
    return MFGProblem(Nx=41, Nt=10, sigma=0.2, terminal_cost=lambda x: (x - 0.7) ** 2,
                      initial_density=lambda x: np.exp(-40 * (x - 0.3) ** 2), **kw)

def value(p):  # a U with a drift that varies in time and space
    return np.array([p.g * (1.0 + 0.1 * k) for k in range(p.Nt + 1)])

def gap(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())
"""

SHARDED = """
out = {"devices": len(jax.devices())}
p = problem()
U = value(p)
ref = FPParticleSolver(p, backend="jax", num_particles=4000, seed=3).solve(U)
M = FPParticleSolver(p, backend="jax", num_particles=4000, seed=3, devices=2).solve(U)
out["binned_2"] = gap(M, ref)

# The compiled march: one all-reduce in the time step's body, one for the last density.
solver = FPParticleSolver(p, backend="jax", num_particles=4000, seed=3, devices=4)
out["binned_4"] = gap(solver.solve(U), ref)
shard = solver._sharding
bits = jax.random.key_data(jax.random.key(3))
text = shard._compiled.lower(shard._replicate(U), shard._replicate(bits)).compile().as_text()
out["collectives"] = {op: len(re.findall(op + r"(-start)?\\(", text))
                      for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute")}

errors = {}
refused = {"too_many": dict(devices=8), "uneven": dict(devices=4, num_particles=4002)}
for name, kw in refused.items():
    try:
        FPParticleSolver(p, backend="jax", **{"num_particles": 4000, **kw})
    except ValueError as err:
        errors[name] = str(err)
out["errors"] = errors
print("RESULT" + json.dumps(out))
"""

WIDER = """
out = {}
p = problem()
U = value(p)
ref = FPParticleSolver(p, backend="jax", num_particles=4000, seed=3).solve(U)
out["binned_1"] = gap(
    FPParticleSolver(p, backend="jax", num_particles=4000, seed=3, devices=1).solve(U), ref)
exact = dict(backend="jax", num_particles=4000, seed=3, kde_method="exact")
out["exact_4"] = gap(FPParticleSolver(p, devices=4, **exact).solve(U),
                     FPParticleSolver(p, **exact).solve(U))
out["device_list"] = gap(
    FPParticleSolver(p, backend="jax", num_particles=4000, seed=3,
                     devices=jax.devices()[2:]).solve(U), ref)
mesh = jax.sharding.Mesh(np.array(jax.devices()).reshape(2, 2), ("a", "b"))
out["mesh_2x2"] = gap(
    FPParticleSolver(p, backend="jax", num_particles=4000, seed=3, devices=mesh).solve(U), ref)
q = problem(boundary="periodic")
out["periodic_4"] = gap(
    FPParticleSolver(q, backend="jax", num_particles=4000, seed=3, devices=4).solve(value(q)),
    FPParticleSolver(q, backend="jax", num_particles=4000, seed=3).solve(value(q)))
p2 = MFGProblem(domain=[(0, 1), (0, 1)], Nx=(12, 12), Nt=5, sigma=0.2,
                terminal_cost=lambda x, y: (x - 0.7) ** 2 + y)
out["two_d_4"] = gap(
    FPParticleSolver(p2, backend="jax", num_particles=2000, seed=3, devices=4).solve(value(p2)),
    FPParticleSolver(p2, backend="jax", num_particles=2000, seed=3).solve(value(p2)))

# The fixed point around it: the same iterates, iteration after iteration.
f = problem(running_cost=lambda x, m, t: 0.3 * m)
runs = [FixedPointIterator(f, HJBFDMSolver(f, backend="jax"),
                           FPParticleSolver(f, backend="jax", num_particles=4000, seed=3,
                                            devices=d)).solve(max_iterations=8)
        for d in (None, 4)]
out["fixed_point_M"] = gap(runs[1].M, runs[0].M)
out["fixed_point_U"] = gap(runs[1].U, runs[0].U)
out["iterations"] = [r.iterations for r in runs]
print("RESULT" + json.dumps(out))
"""

DISTRIBUTED = """
process, port = int(sys.argv[1]), sys.argv[2]
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=process, initialization_timeout=60)
from mfg_pde.backends._jax import JAXBackend

# jax.devices() lists both processes' devices; the backend lives on one of this one's.
backend = JAXBackend(jax.local_devices()[0])
p = problem()
U = value(p)
M = FPParticleSolver(p, backend=backend, num_particles=4000, seed=3, devices=4).solve(U)
ref = FPParticleSolver(p, backend=backend, num_particles=4000, seed=3).solve(U)
print("RESULT" + json.dumps({"process": jax.process_index(), "global": len(jax.devices()),
                             "local": len(jax.local_devices()), "gap": gap(M, ref)}))
"""


def run_script(body: str, devices: int, *args: str) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    script = textwrap.dedent(PREAMBLE) + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result_of(proc: subprocess.Popen, timeout: float = 240) -> dict:
    stdout, stderr = proc.communicate(timeout=timeout)
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, f"exit {proc.returncode}\n{stdout}\n{stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT") :])


def test_sharded_particles_equal_the_unsharded_run_on_4_host_devices():
    """2 and 4 of 4 forced host devices; the compiled march's collectives; refusals."""
    out = result_of(run_script(SHARDED, 4))
    assert out["devices"] == 4
    for key in ("binned_2", "binned_4"):
        assert out[key] <= TOLERANCE, (key, out[key])
    assert out["collectives"] == {
        "all-reduce": 2,
        "all-gather": 0,
        "all-to-all": 0,
        "collective-permute": 0,
    }
    assert "devices=8 asks for more devices than the 4 cpu device(s)" in out["errors"]["too_many"]
    assert (
        "num_particles (4002) must be a multiple of the number of devices (4)"
        in (out["errors"]["uneven"])
    )


@pytest.mark.slow
def test_sharded_particles_on_4_host_devices_every_variant():
    """One device, exact KDE, a device list, a 2 x 2 mesh, periodic, 2D, and the
    fixed point around the particle solver (8 iterations, every iterate the same)."""
    out = result_of(run_script(WIDER, 4))
    for key in ("binned_1", "exact_4", "device_list", "mesh_2x2", "periodic_4", "two_d_4"):
        assert out[key] <= TOLERANCE, (key, out[key])
    assert out["fixed_point_M"] <= TOLERANCE and out["fixed_point_U"] <= TOLERANCE
    assert out["iterations"][0] == out["iterations"][1]


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return str(sock.getsockname()[1])


@pytest.mark.slow
def test_two_processes_joined_by_jax_distributed_equal_one_process():
    """jax.distributed.initialize on localhost, 2 processes x 2 CPU devices (gloo
    collectives): particles split over all 4 devices give the one-process path."""
    port = _free_port()
    procs = [run_script(DISTRIBUTED, 2, str(i), port) for i in range(2)]
    try:
        outs = [result_of(proc) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    assert sorted(o["process"] for o in outs) == [0, 1]
    for out in outs:
        assert (out["global"], out["local"]) == (4, 2)
        assert out["gap"] <= TOLERANCE


# -- in this process (one CPU device) ---------------------------------------------------


def small_problem() -> MFGProblem:
    return MFGProblem(Nx=21, Nt=5, sigma=0.2)


def test_asking_for_more_devices_than_exist_is_refused_with_the_number_available():
    import jax

    available = len(jax.devices("cpu"))
    with pytest.raises(ValueError, match=f"than the {available} cpu device"):
        FPParticleSolver(small_problem(), backend="jax", num_particles=100, devices=available + 1)


@pytest.mark.parametrize(
    ("backend", "devices", "error", "match"),
    [
        ("numpy", 1, ValueError, "arrays are JAX arrays"),
        ("jax", 0, ValueError, "devices must be >= 1"),
        ("jax", "gpu", TypeError, "devices must be None, an int, a sequence of jax.Device"),
        ("jax", [], TypeError, "devices must be None"),
    ],
)
def test_bad_devices_are_refused(backend, devices, error, match):
    with pytest.raises(error, match=match):
        FPParticleSolver(small_problem(), backend=backend, num_particles=100, devices=devices)


def test_solve_mfg_passes_devices_to_the_particle_solver():
    """``solve_mfg(method="particle", devices=...)`` reaches FPParticleSolver: a numpy
    backend is refused as the solver itself refuses it (the sharded runs are above)."""
    from mfg_pde import solve_mfg

    with pytest.raises(ValueError, match="arrays are JAX arrays"):
        solve_mfg(small_problem(), "particle", "numpy", devices=1, num_particles=200)
