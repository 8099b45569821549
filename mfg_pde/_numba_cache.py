"""Dropping numba's on-disk cache of kernels whose callees changed in another module.

numba (``cache=True``) checks a cached kernel against the time stamp and size of its own
source file only. A kernel that calls a compiled function of another module keeps that
callee's old machine code after the other module is edited: on a checkout that a ``git
pull`` or an edit changed in one kernel module, the kernels of the modules that call
into it would silently run the old code. (A package installed anew rewrites every file,
which invalidates everything anyway.)

So each group of kernel modules that call into one another is checked as a whole: a
digest of the group's sources is kept beside numba's cache files in ``__pycache__``,
and when the sources no longer match it, the group's cache files are deleted before
any of its kernels is loaded, and numba compiles them again. Only numba's default
location is checked, ``__pycache__`` beside the sources: where that directory cannot be
written, or ``NUMBA_CACHE_DIR`` moves the cache, numba caches elsewhere and nothing
here sees those files (clear them by hand after editing a kernel module).
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def drop_stale_caches(directory: str | Path, modules: tuple[str, ...]) -> bool:
    """Delete numba's cache files of ``modules`` (names of ``.py`` files in
    ``directory``) if the digest of their sources differs from the one recorded when
    they were cached; record the new digest. Returns whether files were deleted."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for name in modules:
        try:
            digest.update((directory / f"{name}.py").read_bytes())
        except OSError:
            return False
    cache = directory / "__pycache__"
    stamp = cache / ("numba-sources-" + "-".join(modules)[:80] + ".sha256")
    current = digest.hexdigest()
    try:
        if stamp.read_text() == current:
            return False
    except OSError:
        pass  # no stamp yet: the cache files, if any, are of unknown sources
    dropped = False
    try:
        for name in modules:
            for path in (*cache.glob(f"{name}.*.nbi"), *cache.glob(f"{name}.*.nbc")):
                path.unlink(missing_ok=True)
                dropped = True
        cache.mkdir(exist_ok=True)
        stamp.write_text(current)
    except OSError:
        return dropped
    return dropped
