"""The documentation says what the code does: its Python snippets run, its CLI table
lists every option. (The build itself, ``mkdocs build --strict``, runs in ``.ci/run``.)"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

from mfg_pde._cli import build_parser

matplotlib.use("Agg")

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(DOCS.glob("*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return PYTHON_BLOCK.findall(page.read_text())


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if python_blocks(p)],
    ids=lambda p: p.name,
)
def test_python_snippets_run(page, tmp_path, monkeypatch):
    """Every ```python block of a page, in order, in one namespace (as a reader would)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MFG_PDE_BACKEND", raising=False)
    namespace: dict = {}
    for number, code in enumerate(python_blocks(page), start=1):
        exec(compile(code, f"{page.name}, python block {number}", "exec"), namespace)


def test_cli_table_lists_every_option():
    text = (DOCS / "results.md").read_text()
    solve = build_parser()._subparsers._group_actions[0].choices["solve"]
    for action in solve._actions:
        for flag in action.option_strings:
            if flag not in ("-h", "--help"):
                assert f"`{flag}" in text, f"{flag} is not documented in docs/results.md"
