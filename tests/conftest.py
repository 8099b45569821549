"""Shared fixtures: every backend-aware test runs once per array library.

Request ``backend`` and the test runs on numpy, numba, jax and torch; a backend whose
library is not installed is skipped. To run a test on some backends only, parametrise
the fixture indirectly::

    @pytest.mark.parametrize("backend", ["numpy", "jax"], indirect=True)

``reference_backend`` is the NumPy backend, the reference that accelerated backends are
compared with.

CI that must exercise every backend sets ``MFG_PDE_REQUIRE_BACKENDS`` to a comma-separated
list of names (for example ``numpy,numba,jax,torch``). A listed backend that cannot be
created then fails its tests instead of skipping them, and the session fails (exit status
1, with a summary section saying why) if any test of a listed backend was skipped for any
reason or no test ran with it at all, so a broken install can never pass as "all skipped".
Tests that do not apply to a backend should therefore not be collected for it (indirect
parametrisation above) rather than skip. An unknown name in the variable is a usage error.
"""

from __future__ import annotations

import os

import pytest

from mfg_pde.backends import _REGISTRY as _BACKEND_REGISTRY
from mfg_pde.backends import BackendNotAvailableError, BaseBackend, create_backend

#: Every registered backend, in registry order (numpy, numba, jax, torch).
BACKEND_NAMES = tuple(_BACKEND_REGISTRY)

#: Comma-separated backend names that must run (fail instead of skip).
REQUIRE_ENV = "MFG_PDE_REQUIRE_BACKENDS"

_instances: dict[str, BaseBackend] = {}


class _RequireState:
    """What ran and what skipped, per backend, in this session."""

    def __init__(self) -> None:
        self.backend_of_test: dict[str, str] = {}  # nodeid -> backend name
        self.ran: set[str] = set()
        self.skipped: dict[str, list[str]] = {}  # backend -> ["nodeid: reason"]
        self.problems: list[str] = []


_state = _RequireState()


def required_backends() -> frozenset[str]:
    """The backend names listed in ``$MFG_PDE_REQUIRE_BACKENDS`` (lower case)."""
    raw = os.environ.get(REQUIRE_ENV, "")
    return frozenset(name.strip().lower() for name in raw.split(",") if name.strip())


def get_backend(name: str) -> BaseBackend:
    """The session's cached instance of backend ``name``.

    Skips the calling test when the library is missing, or fails it when ``name`` is
    listed in ``$MFG_PDE_REQUIRE_BACKENDS``.
    """
    if name not in _instances:
        try:
            _instances[name] = create_backend(name)
        except BackendNotAvailableError as err:
            if name in required_backends():
                pytest.fail(
                    f"backend {name!r} is required by ${REQUIRE_ENV} but unavailable: {err}"
                )
            pytest.skip(f"backend {name!r} unavailable: {err}")
    return _instances[name]


@pytest.fixture(scope="session", params=BACKEND_NAMES)
def backend(request: pytest.FixtureRequest) -> BaseBackend:
    """Each installed backend in turn (one cached instance per name for the session)."""
    return get_backend(request.param)


@pytest.fixture(scope="session")
def reference_backend() -> BaseBackend:
    """The NumPy backend, against which the other backends are compared."""
    return get_backend("numpy")


# -- MFG_PDE_REQUIRE_BACKENDS bookkeeping ------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    global _state
    unknown = sorted(required_backends() - set(BACKEND_NAMES))
    if unknown:
        raise pytest.UsageError(
            f"${REQUIRE_ENV} names unknown backend(s) {', '.join(unknown)}; "
            f"known backends: {', '.join(BACKEND_NAMES)}"
        )
    _state = _RequireState()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "backend" in callspec.params:
            _state.backend_of_test[item.nodeid] = callspec.params["backend"]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    name = _state.backend_of_test.get(report.nodeid)
    if name is None:
        return
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _state.skipped.setdefault(name, []).append(f"{report.nodeid}: {reason}")
    elif report.when == "call":
        _state.ran.add(name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    required = required_backends()
    if not required or session.config.option.collectonly:
        return
    for name in sorted(required):
        skipped = _state.skipped.get(name, [])
        if skipped:
            shown = "\n    ".join(skipped[:5]) + ("\n    ..." if len(skipped) > 5 else "")
            _state.problems.append(
                f"{len(skipped)} test(s) of backend {name!r} skipped:\n    {shown}"
            )
        if name not in _state.ran:
            _state.problems.append(f"no test ran with backend {name!r}")
    if _state.problems and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _state.problems:
        terminalreporter.section(f"{REQUIRE_ENV} not satisfied", sep="=", red=True, bold=True)
        for problem in _state.problems:
            terminalreporter.write_line(f"{REQUIRE_ENV}: {problem}", red=True)
