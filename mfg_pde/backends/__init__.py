"""Pluggable array backends: numpy, numba, jax and torch behind one interface.

``create_backend()`` returns the best installed backend (torch > jax > numpy);
``MFG_PDE_BACKEND=<name>`` overrides that choice. Backend modules are imported
only when a backend is created, so ``import mfg_pde`` never imports jax or torch.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from mfg_pde.backends._base import CAPABILITIES, BaseBackend

__all__ = [
    "BackendNotAvailableError",
    "BaseBackend",
    "CAPABILITIES",
    "available_backends",
    "create_backend",
    "register_backend",
]

logger = logging.getLogger(__name__)

#: name -> (module, class, the library it needs, the pip extra that installs it)
_REGISTRY: dict[str, tuple[str, str, str, str]] = {
    "numpy": ("mfg_pde.backends._numpy", "NumpyBackend", "numpy", ""),
    "numba": ("mfg_pde.backends._numba", "NumbaBackend", "numba", "numba"),
    "jax": ("mfg_pde.backends._jax", "JAXBackend", "jax", "jax"),
    "torch": ("mfg_pde.backends._torch", "TorchBackend", "torch", "torch"),
}

#: Backends added by :func:`register_backend`: name -> a callable returning an instance.
_REGISTERED: dict[str, Callable[[], BaseBackend]] = {}

#: Auto-selection order. numba is never auto-selected: it is an explicit choice.
AUTO_ORDER = ("torch", "jax", "numpy")

#: Environment variable that overrides auto-selection.
ENV_VAR = "MFG_PDE_BACKEND"


class BackendNotAvailableError(ImportError):
    """A known backend whose library is not installed; the message names the pip extra."""


def _is_installed(library: str) -> bool:
    """Whether ``library`` can be imported (without importing it). Tests patch this."""
    return importlib.util.find_spec(library) is not None


def register_backend(name: str, factory: Callable[[], BaseBackend]) -> None:
    """Make ``create_backend(name)`` (and ``backend=name`` everywhere) call ``factory()``.

    ``factory`` is a :class:`BaseBackend` subclass or any callable returning an instance;
    it is called each time the backend is created. Registered backends are never chosen
    automatically, and the four built-in names cannot be replaced. This is how a new
    array library plugs in without changing mfg_pde (docs/backends.md, "Adding a
    backend"; ``tests/strict_backend.py`` registers one built on ``array-api-strict``).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a backend name must be a non-empty string, got {name!r}")
    key = name.strip().lower()
    if key in _REGISTRY:
        raise ValueError(f"{key!r} is a built-in backend and cannot be registered again")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    _REGISTERED[key] = factory


def _instantiate(name: str) -> BaseBackend:
    if name in _REGISTERED:
        instance = _REGISTERED[name]()
        if not isinstance(instance, BaseBackend):
            raise TypeError(
                f"the factory registered as {name!r} returned {type(instance).__name__}, "
                "not a BaseBackend"
            )
        return instance
    module, cls, library, extra = _REGISTRY[name]
    if not _is_installed(library):
        raise BackendNotAvailableError(
            f"backend {name!r} needs {library}, which is not installed; "
            f'install it with: pip install "mfg_pde[{extra}]"'
        )
    try:
        backend_cls = getattr(importlib.import_module(module), cls)
    except ImportError as err:
        raise BackendNotAvailableError(
            f"backend {name!r} could not import {library} ({err}); "
            f'reinstall it with: pip install "mfg_pde[{extra}]"'
        ) from err
    return backend_cls()


def _check_name(name: str) -> str:
    key = name.strip().lower()
    if key not in _REGISTRY and key not in _REGISTERED:
        valid = ", ".join([*_REGISTRY, *_REGISTERED])
        raise ValueError(f"unknown backend {name!r}; valid names: {valid} (or None for automatic)")
    return key


def create_backend(backend: str | BaseBackend | None = None) -> BaseBackend:
    """Return a backend instance.

    Parameters
    ----------
    backend : str, BaseBackend or None
        A name ("numpy", "numba", "jax", "torch", or one given to :func:`register_backend`),
        an instance (returned as is), or
        None for automatic selection: ``$MFG_PDE_BACKEND`` if set, else the first
        installed of torch > jax > numpy. The choice is logged at INFO.

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid names.
    BackendNotAvailableError
        Known name whose library is not installed; the message names the extra.
    """
    if isinstance(backend, BaseBackend):
        return backend
    if backend is not None and not isinstance(backend, str):
        raise TypeError(
            f"backend must be a name, a BaseBackend or None, got {type(backend).__name__}"
        )
    if backend is None:
        override = os.environ.get(ENV_VAR, "").strip()
        if override:
            name = _check_name(override)
            logger.info("mfg_pde backend %r chosen by $%s", name, ENV_VAR)
            return _instantiate(name)
        for name in AUTO_ORDER:
            if _is_installed(_REGISTRY[name][2]):
                instance = _instantiate(name)
                logger.info(
                    "mfg_pde backend %r selected automatically (order: %s), device %s",
                    name,
                    " > ".join(AUTO_ORDER),
                    instance.device,
                )
                return instance
        raise BackendNotAvailableError("no backend available: numpy is not importable")
    return _instantiate(_check_name(backend))


def available_backends() -> dict[str, dict[str, Any]]:
    """What is installed, which version, and on which devices each backend would run.

    Returns ``{name: {"installed": bool, "version": str | None, "devices": [str],
    "extra": str}}``: the four built-ins, then every backend given to
    :func:`register_backend`, marked ``"registered": True`` (created once here to read
    its device and the version of its array library; a factory that raises is listed
    with ``"installed": False`` and the ``"error"``). Importing a library to list its
    devices happens here, not at ``import mfg_pde``.
    """
    info: dict[str, dict[str, Any]] = {}
    for name, (_, _, library, extra) in _REGISTRY.items():
        entry: dict[str, Any] = {"installed": False, "version": None, "devices": [], "extra": extra}
        if _is_installed(library):
            try:
                mod = importlib.import_module(library)
                entry.update(installed=True, version=getattr(mod, "__version__", None))
                entry["devices"] = _devices(name, mod)
            except ImportError as err:  # installed but broken: say so rather than hide it
                entry["error"] = str(err)
        info[name] = entry
    for name in _REGISTERED:
        info[name] = _registered_entry(name)
    return info


def _registered_entry(name: str) -> dict[str, Any]:
    """:func:`available_backends`' entry for a backend added by :func:`register_backend`."""
    entry: dict[str, Any] = {
        "installed": False,
        "version": None,
        "devices": [],
        "extra": "",
        "registered": True,
    }
    try:
        instance = _instantiate(name)
    except Exception as err:  # a plug-in's factory may fail in any way: report it
        entry["error"] = f"{type(err).__name__}: {err}"
        return entry
    library = getattr(instance.xp, "__name__", type(instance).__module__).split(".")[0]
    try:
        version = importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        version = str(getattr(sys.modules.get(library), "__version__", "unknown"))
    entry.update(installed=True, version=version, devices=[str(instance.device)])
    return entry


def _devices(name: str, mod: Any) -> list[str]:
    if name == "jax":
        return [f"{d.platform}:{d.id}" for d in mod.devices()]
    if name == "torch":
        devices = [f"cuda:{i}" for i in range(mod.cuda.device_count())]
        mps = getattr(mod.backends, "mps", None)
        if mps is not None and mps.is_available():
            devices.append("mps")
        return [*devices, "cpu"]
    return ["cpu"]
