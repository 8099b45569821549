"""Griffe extension for the API reference: the reStructuredText bits of the docstrings
(``.. math::`` blocks, ``:math:``, ``:class:`` and similar roles) in Markdown.

The docstrings are NumPy style with Sphinx roles, which read well in ``help()`` and in
editors; mkdocstrings renders Markdown. Math becomes arithmatex (``$$ ... $$`` and
``\\( ... \\)``, typeset by MathJax); a cross-reference role becomes inline code of its
last name component (``:class:`~mfg_pde.MFGResult``` -> ``MFGResult``), which never
breaks the build when a target is not documented.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_XREF_ROLE = re.compile(r":(?:class|meth|func|attr|mod|data|obj|exc):`~?([^`]+)`")


def _xref(match: re.Match) -> str:
    return f"`{match.group(1).split('.')[-1]}`"


def rst_to_markdown(text: str) -> str:
    """Convert the reStructuredText used in this package's docstrings to Markdown."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped == ".. math::":
            indent = len(line) - len(line.lstrip())
            block: list[list[str]] = [[]]
            i += 1
            while i < len(lines) and (
                not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
            ):
                if lines[i].strip():
                    block[-1].append(lines[i].strip())
                elif block[-1]:
                    block.append([])
                i += 1
            for equation in (b for b in block if b):
                out += [" " * indent + "$$", *(" " * indent + e for e in equation)]
                out += [" " * indent + "$$", ""]
            continue
        line = _MATH_ROLE.sub(lambda m: rf"\\({m.group(1)}\\)", line)
        out.append(_XREF_ROLE.sub(_xref, line))
        i += 1
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring with :func:`rst_to_markdown` as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
