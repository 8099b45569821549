"""Saving and loading :class:`~mfg_pde.MFGResult`: NumPy ``.npz`` or HDF5, no pickle.

Layout, the same in both formats: the arrays ``U``, ``M``, ``x``, ``t`` (and ``y`` for a
two-dimensional result) and one array per residual series (``residual_U``,
``residual_M``); every other field in one JSON document (``metadata``: a string array in
the ``.npz``, an attribute of the HDF5 root).

Layout versions: 1, one-dimensional results; 2 adds the array ``y``. A file records the
lowest version that describes it, so a one-dimensional result saved now still loads
with an mfg_pde that reads version 1 only, and a two-dimensional one is refused there
with "upgrade mfg_pde" rather than loaded without its second axis.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mfg_pde._result import MFGResult

#: Identifies a file written by :meth:`MFGResult.save`, and the newest layout version.
FORMAT = "mfg_pde.MFGResult"
FORMAT_VERSION = 2

_ARRAYS = ("U", "M", "x", "t")
#: Arrays that only some results have (``None`` in the others): name -> first layout version.
_OPTIONAL_ARRAYS = {"y": 2}
_JSON_FIELDS = (
    "converged",
    "iterations",
    "reason",
    "backend",
    "device",
    "timings",
    "solver",
    "problem",
    "warnings",
    "metadata",
    "method",
    "stages",
)
_RESIDUAL_PREFIX = "residual_"
_SUFFIXES = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5"}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def save_result(result: MFGResult, path: str | os.PathLike) -> Path:
    """Write ``result`` to ``path`` (see :meth:`MFGResult.save`); return the path written."""
    path = Path(path)
    if path.suffix == "":
        path = path.with_suffix(".npz")
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(
            f"cannot tell the format of {str(path)!r} from its suffix {path.suffix!r}; "
            f"use one of {', '.join(_SUFFIXES)}"
        )
    arrays = {name: np.asarray(getattr(result, name)) for name in _ARRAYS}
    version = 1
    for name, since in _OPTIONAL_ARRAYS.items():
        if getattr(result, name) is not None:
            arrays[name] = np.asarray(getattr(result, name))
            version = max(version, since)
    for key, series in result.residuals.items():
        arrays[_RESIDUAL_PREFIX + key] = np.asarray(series, dtype=np.float64)
    meta = {name: getattr(result, name) for name in _JSON_FIELDS}
    meta.update(format=FORMAT, format_version=version, residual_keys=list(result.residuals))
    document = json.dumps(meta, default=_to_json)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "npz":
        with open(path, "wb") as file:
            np.savez(file, metadata=np.array(document), **arrays)
    else:
        h5py = _import_h5py()
        with h5py.File(path, "w") as file:
            for name, array in arrays.items():
                file.create_dataset(name, data=array)
            file.attrs["metadata"] = document
    return path


def load(path: str | os.PathLike) -> MFGResult:
    """Read a result written by :meth:`MFGResult.save` (``.npz`` or HDF5).

    The format is recognised from the file's content, not its name. Nothing in the file
    is executed (``allow_pickle=False``).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    MFGResult
        Equal (``==``) to the result that was saved.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is not an mfg_pde result, or was written by a newer layout.
    ImportError
        An HDF5 file and h5py is not installed.
    """
    path = Path(path)
    with open(path, "rb") as file:
        head = file.read(8)
    if head == _HDF5_MAGIC:
        h5py = _import_h5py()
        with h5py.File(path, "r") as file:
            if "metadata" not in file.attrs:
                raise ValueError(f"{str(path)!r} is an HDF5 file but not an mfg_pde result")
            document = file.attrs["metadata"]
            arrays = {name: file[name][()] for name in file.keys()}
    elif head[:2] == b"PK":  # a zip archive: .npz
        with np.load(path, allow_pickle=False) as file:
            arrays = {name: file[name] for name in file.files}
        if "metadata" not in arrays:
            raise ValueError(f"{str(path)!r} is an .npz file but not an mfg_pde result")
        document = str(arrays.pop("metadata"))
    else:
        raise ValueError(
            f"{str(path)!r} is neither an .npz nor an HDF5 file; "
            "mfg_pde.load reads files written by MFGResult.save"
        )
    meta = json.loads(document if isinstance(document, str) else document.decode())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not an mfg_pde result (format {meta.get('format')!r})")
    if meta["format_version"] > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} uses result layout {meta['format_version']}, newer than this "
            f"mfg_pde reads ({FORMAT_VERSION}); upgrade mfg_pde"
        )
    residuals = {key: arrays[_RESIDUAL_PREFIX + key] for key in meta["residual_keys"]}
    return MFGResult(
        **{name: arrays[name] for name in _ARRAYS},
        **{name: arrays.get(name) for name in _OPTIONAL_ARRAYS},
        residuals=residuals,
        **{name: meta[name] for name in _JSON_FIELDS if name in meta},
    )


def _to_json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot save a value of type {type(value).__name__} in a result")


def _import_h5py() -> Any:
    try:
        import h5py
    except ImportError as err:
        raise ImportError(
            "saving or loading HDF5 (.h5, .hdf5) needs h5py: pip install h5py "
            '(or pip install "mfg_pde[hdf5]"); .npz needs nothing extra'
        ) from err
    return h5py
