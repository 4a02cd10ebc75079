"""Griffe extension for the docs site: render docstring ``>>>`` sessions as code blocks."""

from __future__ import annotations

from typing import Any

import griffe


def fence_sessions(text: str) -> str:
    r"""Wrap each interactive session (``>>>`` lines and their output) in a pycon fence.

    >>> fence_sessions("Adds.\n\n" + ">" * 3 + " 1 + 1\n2\n\nMore.").splitlines()
    ['Adds.', '', '```pycon', '>>> 1 + 1', '2', '```', '', 'More.']
    """
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        starts = line.lstrip().startswith(">>>")
        if starts and not inside:
            out.append("```pycon")
            inside = True
        elif inside and not line.strip():
            out.append("```")
            inside = False
        out.append(line)
    if inside:
        out.append("```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fence the ``>>>`` examples of every docstring before mkdocstrings renders it."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = fence_sessions(obj.docstring.value)
