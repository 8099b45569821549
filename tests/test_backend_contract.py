"""The backend contract: what solvers may ask a backend, and that they ask nothing else.

Code outside ``mfg_pde/backends`` asks a backend what it can do (``fixed_shapes``,
``syncs_cost``, ``is_host_numpy``, ``vmap``, ``synchronize``), never what it is called,
so that a new backend is a plug (STYLE.md, habit 11).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import mfg_pde

PACKAGE = Path(mfg_pde.__file__).resolve().parent


def test_no_code_outside_the_backends_branches_on_a_backend_name():
    """A regression guard: ``backend.name == "jax"`` and the like are capability
    questions asked the wrong way (error messages may still print the name)."""
    pattern = re.compile(r"\.name\s*[!=]=|[!=]=\s*\w+\.name\b")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if "backends" not in path.relative_to(PACKAGE).parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not offenders, "\n".join(offenders)


def test_capability_flags_describe_the_arrays(backend):
    """``is_host_numpy`` is true exactly when the arrays are NumPy arrays; the flags
    are plain booleans on every backend."""
    for flag in ("fixed_shapes", "syncs_cost", "is_host_numpy"):
        assert isinstance(getattr(backend, flag), bool), flag
    assert backend.is_host_numpy == isinstance(backend.zeros(3), np.ndarray)


def test_vmap_maps_over_the_leading_axis_on_every_backend_and_its_eager_view(backend):
    """``vmap(fn)(xs, *rest)[i] == fn(xs[i], *rest)``, compiled or not."""
    xp = backend.xp
    rng = np.random.default_rng(0)
    xs, shared = rng.normal(size=(4, 7)), rng.normal(size=7)

    def fn(x, w):
        return xp.sum(x * w) + x**2

    expected = np.stack([np.sum(x * shared) + x**2 for x in xs])
    for b in (backend, backend.eager()):
        mapped = b.jit(b.vmap(fn))
        got = b.to_numpy(mapped(b.from_numpy(xs), b.from_numpy(shared)))
        np.testing.assert_allclose(got, expected, rtol=1e-14, atol=1e-14)


def test_synchronize_returns_what_it_waited_for(backend):
    x = backend.from_numpy(np.arange(5.0))
    pair = backend.synchronize((x, x + 1.0))
    np.testing.assert_array_equal(backend.to_numpy(pair[1]), np.arange(5.0) + 1.0)
    np.testing.assert_array_equal(backend.to_numpy(backend.synchronize(x)), np.arange(5.0))
