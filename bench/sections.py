"""Marked sections of a generated markdown file, so that several generators can share one file.

A section is the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``. ``write_section``
replaces it (or appends it at the end), leaving everything else alone; ``keep_sections`` carries
the sections of the old file into a freshly rendered one that does not produce them itself.
"""

from __future__ import annotations

import re
from pathlib import Path

_SECTION = re.compile(r"<!-- (?P<name>[\w.-]+):start -->.*?<!-- (?P=name):end -->\n?", re.DOTALL)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(path: Path, name: str, body: str) -> None:
    """Put ``body`` between the ``name`` markers of ``path`` (created, or appended, if missing)."""
    start, end = markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + block
    path.write_text(text, encoding="utf-8")


def keep_sections(old: str, new: str) -> str:
    """``new``, plus every marked section of ``old`` that ``new`` does not have."""
    have = {m.group("name") for m in _SECTION.finditer(new)}
    kept = [m.group(0) for m in _SECTION.finditer(old) if m.group("name") not in have]
    if not kept:
        return new
    return new.rstrip("\n") + "\n\n" + "\n".join(k.rstrip("\n") + "\n" for k in kept)
