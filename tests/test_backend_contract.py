"""The backend contract: what solvers may ask a backend, and that they ask nothing else.

Code outside ``mfg_pde/backends`` asks a backend what it can do (``fixed_shapes``,
``syncs_cost``, ``is_host_numpy``, ``vmap``, ``synchronize``), never what it is called,
so that a new backend is a plug (STYLE.md, habit 11).
"""

from __future__ import annotations

import ast
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


# -- the package's shape -----------------------------------------------------------------

#: Longest module allowed under mfg_pde/ (issue 19: one concept per module).
MAX_MODULE_LINES = 520


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(path: Path) -> set[str]:
    """The mfg_pde modules imported at module level (not inside functions, not under
    ``if TYPE_CHECKING``): the imports that run when the module is imported."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in [node] if not isinstance(node, (ast.If, ast.Try)) else ast.walk(node):
            if isinstance(sub, ast.Import):
                found.update(a.name for a in sub.names)
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    anchor = package.split(".")[: len(package.split(".")) - sub.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                found.add(base)
                # ``from pkg import module`` imports the submodule too
                found.update(f"{base}.{a.name}" for a in sub.names)
    return {name for name in found if name == "mfg_pde" or name.startswith("mfg_pde.")}


def test_no_module_is_longer_than_one_concept():
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_no_import_cycle_between_modules():
    """Module-level imports form no cycle, except a package importing its own
    submodules (``mfg_pde/__init__`` re-exporting them), which Python allows."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {
        name: {dep for dep in _module_level_imports(path) if dep in modules and dep != name}
        for name, path in modules.items()
    }

    def is_parent_package(a: str, b: str) -> bool:
        return b.startswith(a + ".")

    # An edge from a package to its own submodule is how packages re-export; drop those.
    edges = {a: {b for b in deps if not is_parent_package(a, b)} for a, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for name in sorted(edges):
        if name not in state and (cycle := visit(name)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))
