"""The backend factory: auto-selection, overrides, errors, logging, import cost.

Libraries are hidden from the factory by patching ``mfg_pde.backends._is_installed``
(it is asked for "torch", "jax", "numpy" and "numba"), so every branch is exercised
whatever is installed here.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mfg_pde.backends as backends
from mfg_pde.backends import (
    CAPABILITIES,
    BackendNotAvailableError,
    BaseBackend,
    available_backends,
    create_backend,
    register_backend,
)

NAMES = ("numpy", "numba", "jax", "torch")
LOGGER = "mfg_pde.backends"


def _really_installed(library: str) -> bool:
    return importlib.util.find_spec(library) is not None


@pytest.fixture
def visible(monkeypatch):
    """Make only the given libraries visible to the factory; unset the env override."""
    monkeypatch.delenv("MFG_PDE_BACKEND", raising=False)

    def show(*libraries: str) -> None:
        monkeypatch.setattr(backends, "_is_installed", lambda library: library in libraries)

    return show


# -- automatic selection -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("libraries", "expected"),
    [
        (("torch", "jax", "numpy", "numba"), "torch"),
        (("torch", "numpy"), "torch"),
        (("jax", "numpy", "numba"), "jax"),
        (("numpy", "numba"), "numpy"),  # numba is installed but never chosen automatically
        (("numpy",), "numpy"),
    ],
)
def test_auto_selection_order_is_torch_jax_numpy(visible, libraries, expected):
    if not _really_installed(expected):
        pytest.skip(f"{expected} is not installed here")
    visible(*libraries)
    chosen = create_backend()
    assert chosen.name == expected
    assert create_backend(None).name == expected


def test_numba_is_never_auto_selected(visible):
    assert "numba" not in backends.AUTO_ORDER
    visible("numba")  # the only library present, and still not chosen
    with pytest.raises(BackendNotAvailableError, match="no backend available"):
        create_backend()


def test_auto_selection_is_logged_at_info(visible, caplog):
    visible("numpy", "numba")
    caplog.set_level(logging.INFO, logger=LOGGER)
    chosen = create_backend()
    records = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO]
    assert records, "automatic backend choice was not logged at INFO"
    message = records[-1].getMessage()
    assert "'numpy'" in message and "automatic" in message
    assert chosen.device in message


# -- MFG_PDE_BACKEND override ----------------------------------------------------------------


@pytest.mark.parametrize("value", ["numba", "NUMBA", "  numba "])
def test_env_var_overrides_auto_selection(visible, monkeypatch, caplog, value):
    if not _really_installed("numba"):
        pytest.skip("numba is not installed here")
    visible("torch", "jax", "numpy", "numba")
    monkeypatch.setenv("MFG_PDE_BACKEND", value)
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert create_backend().name == "numba"
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("MFG_PDE_BACKEND" in m and "numba" in m for m in messages)


def test_env_var_empty_means_automatic(visible, monkeypatch):
    visible("numpy")
    monkeypatch.setenv("MFG_PDE_BACKEND", "  ")
    assert create_backend().name == "numpy"


def test_env_var_invalid_value_is_a_value_error(visible, monkeypatch):
    visible("numpy")
    monkeypatch.setenv("MFG_PDE_BACKEND", "tensorflow")
    with pytest.raises(ValueError, match="tensorflow") as info:
        create_backend()
    for name in NAMES:
        assert name in str(info.value)


def test_env_var_naming_a_missing_library_raises(visible, monkeypatch):
    visible("numpy")
    monkeypatch.setenv("MFG_PDE_BACKEND", "jax")
    with pytest.raises(BackendNotAvailableError, match=r'pip install "mfg_pde\[jax\]"'):
        create_backend()


def test_explicit_name_beats_env_var(visible, monkeypatch):
    visible("numpy", "jax")
    monkeypatch.setenv("MFG_PDE_BACKEND", "jax")
    assert create_backend("numpy").name == "numpy"


# -- explicit arguments -----------------------------------------------------------------------


def test_instance_passes_through(reference_backend):
    assert create_backend(reference_backend) is reference_backend


@pytest.mark.parametrize("name", NAMES)
def test_names_are_case_and_space_insensitive(name):
    if not _really_installed(name):
        pytest.skip(f"{name} is not installed here")
    assert create_backend(f" {name.upper()} ").name == name


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="cupy") as info:
        create_backend("cupy")
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ["jax", "torch", "numba"])
def test_missing_library_names_the_pip_extra(monkeypatch, name):
    monkeypatch.setattr(backends, "_is_installed", lambda library: library != name)
    with pytest.raises(BackendNotAvailableError) as info:
        create_backend(name)
    assert isinstance(info.value, ImportError)
    assert f'pip install "mfg_pde[{name}]"' in str(info.value)


@pytest.mark.parametrize("name", ["jax", "torch", "numba"])
def test_broken_library_names_the_pip_extra(monkeypatch, name):
    # Found on disk but failing to import: a None entry in sys.modules makes the import fail.
    monkeypatch.setattr(backends, "_is_installed", lambda library: True)
    monkeypatch.setitem(sys.modules, f"mfg_pde.backends._{name}", None)
    with pytest.raises(BackendNotAvailableError, match=rf'pip install "mfg_pde\[{name}\]"'):
        create_backend(name)


@pytest.mark.parametrize("argument", [3, 1.5, ["numpy"], b"numpy", BaseBackend])
def test_wrong_argument_type_is_a_type_error(argument):
    with pytest.raises(TypeError, match="backend must be"):
        create_backend(argument)


def test_backend_not_available_error_is_an_import_error():
    assert issubclass(BackendNotAvailableError, ImportError)


# -- available_backends ----------------------------------------------------------------------


def test_available_backends_structure():
    info = available_backends()
    assert set(NAMES) <= set(info)
    assert all(info[name].get("registered") for name in set(info) - set(NAMES))
    for name in NAMES:
        entry = info[name]
        assert {"installed", "version", "devices", "extra"} <= set(entry)
        assert isinstance(entry["installed"], bool)
        assert entry["extra"] == ("" if name == "numpy" else name)
        assert isinstance(entry["devices"], list)
        assert all(isinstance(d, str) for d in entry["devices"])
        if entry["installed"]:
            assert isinstance(entry["version"], str) and entry["version"]
            assert entry["devices"], f"{name} is installed but lists no device"
        else:
            assert entry["version"] is None and entry["devices"] == []
    assert info["numpy"]["installed"] and info["numpy"]["devices"] == ["cpu"]
    if info["torch"]["installed"]:
        assert info["torch"]["devices"][-1] == "cpu"


def test_available_backends_lists_registered_backends(monkeypatch):
    """A plug-in appears after the built-ins with its device and its array library's
    version; one whose factory raises is listed as not installed, with the error."""
    monkeypatch.setattr(backends, "_REGISTERED", dict(backends._REGISTERED))
    pytest.importorskip("array_api_strict")
    from strict_backend import StrictBackend

    def broken():
        raise RuntimeError("no device today")

    register_backend("plugin-ok", StrictBackend)
    register_backend("plugin-broken", broken)
    info = available_backends()
    assert list(info)[: len(NAMES)] == list(NAMES)
    ok = info["plugin-ok"]
    assert ok["installed"] and ok["registered"] and ok["devices"] == ["cpu"]
    import array_api_strict

    assert ok["version"] == array_api_strict.__version__
    bad = info["plugin-broken"]
    assert not bad["installed"] and bad["registered"]
    assert bad["error"] == "RuntimeError: no device today"


def test_available_backends_reports_hidden_library(monkeypatch):
    monkeypatch.setattr(backends, "_is_installed", lambda library: library != "jax")
    entry = available_backends()["jax"]
    assert entry == {"installed": False, "version": None, "devices": [], "extra": "jax"}


def test_capability_names():
    assert CAPABILITIES == (
        "parallel_kde",
        "jit_compilation",
        "kernel_fusion",
        "low_latency",
        "gpu",
    )


# -- import cost -------------------------------------------------------------------------------


def test_import_does_not_load_jax_or_torch():
    code = textwrap.dedent(
        """
        import sys
        import mfg_pde
        from mfg_pde.backends import create_backend
        after_import = sorted(m for m in ("jax", "torch") if m in sys.modules)
        create_backend("numpy")
        after_numpy = sorted(m for m in ("jax", "torch") if m in sys.modules)
        print(after_import, after_numpy)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "MFG_PDE_BACKEND"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["[]", "[]"], out.stdout + out.stderr


# -- MFG_PDE_REQUIRE_BACKENDS (the guard in conftest.py) -----------------------------------
# The guard is exercised in a child pytest run that uses a copy of this conftest, with
# every library except numpy hidden from the factory (which also keeps the child fast).

_INNER_TESTS = """
import pytest

def test_uses_backend(backend):
    assert backend.zeros(3).shape == (3,)

@pytest.mark.parametrize("backend", ["numpy"], indirect=True)
def test_skips_itself(backend):
    pytest.skip("pretend this test does not apply")
"""

_HIDE_ALL_BUT_NUMPY = """

import mfg_pde.backends as _backends

_backends._is_installed = lambda library: library == "numpy"
"""


@pytest.fixture(scope="module")
def inner_project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("require_backends")
    conftest = (Path(__file__).parent / "conftest.py").read_text()
    (root / "conftest.py").write_text(conftest + _HIDE_ALL_BUT_NUMPY)
    (root / "test_inner.py").write_text(_INNER_TESTS)
    return root


def _run_inner(root: Path, required: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFG_PDE_")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # hypothesis & co. are not needed: 3x faster
    if required is not None:
        env["MFG_PDE_REQUIRE_BACKENDS"] = required
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_require_guard_unset_skips_missing_backends(inner_project):
    out = _run_inner(inner_project, None, "-k", "test_uses_backend")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 3 skipped" in out.stdout
    assert "MFG_PDE_REQUIRE_BACKENDS" not in out.stdout


def test_require_guard_fails_a_required_missing_backend(inner_project):
    out = _run_inner(inner_project, "numpy,torch", "-k", "test_uses_backend")
    assert out.returncode == 1, out.stdout + out.stderr
    # The fixture fails instead of skipping ...
    assert "backend 'torch' is required by $MFG_PDE_REQUIRE_BACKENDS" in out.stdout
    # ... and the session summary says no torch test ran.
    assert "MFG_PDE_REQUIRE_BACKENDS: no test ran with backend 'torch'" in out.stdout


def test_require_guard_fails_on_a_skipped_test(inner_project):
    out = _run_inner(inner_project, "numpy")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "1 test(s) of backend 'numpy' skipped" in out.stdout
    assert "pretend this test does not apply" in out.stdout


def test_require_guard_fails_when_no_test_ran(inner_project):
    out = _run_inner(inner_project, "numpy", "-k", "not numpy")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "no test ran with backend 'numpy'" in out.stdout


def test_require_guard_rejects_unknown_names(inner_project):
    out = _run_inner(inner_project, "numpy,foo")
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout + out.stderr
    assert "unknown backend(s) foo" in out.stderr
