"""numba's cache of kernels that call into other modules is dropped when any module of
their group changed (numba itself checks a kernel against its own file only)."""

from __future__ import annotations

from mfg_pde._numba_cache import drop_stale_caches


def _cache_files(directory, names):
    cache = directory / "__pycache__"
    cache.mkdir(exist_ok=True)
    for name in names:
        for suffix in ("nbi", "nbc"):
            (cache / f"{name}.kernel-12.py311.{suffix}").write_text("compiled")


def test_a_group_s_caches_are_dropped_when_any_of_its_sources_changed(tmp_path):
    group = ("callee", "caller")
    for name in (*group, "other"):
        (tmp_path / f"{name}.py").write_text(f"# {name}\n")
    _cache_files(tmp_path, (*group, "other"))
    # No digest recorded yet: the cached files are of unknown sources, so they go.
    assert drop_stale_caches(tmp_path, group)
    left = sorted(p.name for p in (tmp_path / "__pycache__").glob("*.nb?"))
    assert left == ["other.kernel-12.py311.nbc", "other.kernel-12.py311.nbi"]
    # Recompiled with the recorded sources: kept while nothing changes.
    _cache_files(tmp_path, group)
    assert not drop_stale_caches(tmp_path, group)
    assert len(list((tmp_path / "__pycache__").glob("caller.*"))) == 2
    # The callee edited (the caller's own file unchanged): the caller's cache goes too.
    (tmp_path / "callee.py").write_text("# callee, edited\n")
    assert drop_stale_caches(tmp_path, group)
    assert not list((tmp_path / "__pycache__").glob("caller.*"))
    assert len(list((tmp_path / "__pycache__").glob("other.*"))) == 2


def test_nothing_happens_where_a_source_is_missing_or_the_cache_is_read_only(tmp_path):
    (tmp_path / "one.py").write_text("# one\n")
    _cache_files(tmp_path, ("one",))
    assert not drop_stale_caches(tmp_path, ("one", "missing"))
    assert len(list((tmp_path / "__pycache__").glob("one.*"))) == 2
    cache = tmp_path / "__pycache__"
    cache.chmod(0o500)
    try:
        drop_stale_caches(tmp_path, ("one",))  # no error, whatever the permissions allow
    finally:
        cache.chmod(0o700)
