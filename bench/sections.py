"""Sections of a generated markdown file that another benchmark owns, between HTML comments:

    <!-- name:start -->
    ...
    <!-- name:end -->

Several generators share docs/benchmarks.md: ``python -m bench`` renders the whole file from its
run, and others (``bench.servers``, the detector, finance-report and tracing benchmarks) each
rewrite their own section. :func:`replace_section` (on text) and :func:`write_section` (on a file)
rewrite one section in place, or append it, leaving the rest as it was; :func:`carry_sections`
keeps every section of the old file that a fresh render does not produce itself.
``keep_sections`` is the same as ``carry_sections``.
"""

from __future__ import annotations

import re
from pathlib import Path

_SECTION = re.compile(r"<!-- (?P<name>[\w.-]+):start -->.*?<!-- (?P=name):end -->\n?", re.DOTALL)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with section ``name`` holding ``body`` (appended at the end if it is not there yet)."""
    start, end = markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + ("\n\n" if text.strip() else "") + block


def write_section(path: Path, name: str, body: str) -> None:
    """Put ``body`` between the ``name`` markers of the file at ``path`` (created if missing)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(replace_section(text, name, body), encoding="utf-8")


def section_names(text: str) -> list[str]:
    return [m.group("name") for m in _SECTION.finditer(text)]


def carry_sections(old: str, new: str) -> str:
    """``new`` plus every marked section of ``old`` that ``new`` does not have (``new``'s own win)."""
    have = set(section_names(new))
    kept = [m.group(0) for m in _SECTION.finditer(old) if m.group("name") not in have]
    if not kept:
        return new
    return new.rstrip("\n") + "\n\n" + "\n".join(k.rstrip("\n") + "\n" for k in kept)


keep_sections = carry_sections
