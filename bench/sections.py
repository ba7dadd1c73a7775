"""Sections of a generated markdown file that another benchmark owns, between HTML comments:

    <!-- name:start -->
    ...
    <!-- name:end -->

:func:`replace_section` rewrites one section (or appends it) and leaves the rest of the file as
it was; :func:`carry_sections` keeps every such section of the old file when a report is
regenerated from scratch (``python -m bench`` rewrites docs/benchmarks.md).
"""

from __future__ import annotations

import re

_SECTION = re.compile(r"<!-- (?P<name>[a-z0-9-]+):start -->\n.*?<!-- (?P=name):end -->\n?", re.DOTALL)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with section ``name`` holding ``body`` (appended at the end if it is not there yet)."""
    start, end = markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + "\n\n" + block


def carry_sections(old: str, new: str) -> str:
    """``new`` plus every marked section of ``old`` (``new``'s own sections win)."""
    for match in _SECTION.finditer(old):
        name = match["name"]
        if markers(name)[0] not in new:
            new = new.rstrip("\n") + "\n\n" + match.group(0).rstrip("\n") + "\n"
    return new
