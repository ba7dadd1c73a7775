"""Masking: a text with every stretch a detector fires on replaced by ``[<detector names>]``.

The detectors count and never say where (see ``base.EntityDetector``). Masking needs places, so
this module finds them from the outside, asking only :meth:`DetectorSet.scan` whether a piece
of text fires: the shortest prefix that fires ends a match, the shortest suffix of that prefix
that still fires is the match; it is widened to the whitespace around it (a key cut short still
reads as a key, so the whole token goes), replaced, and the search starts again until nothing
fires. Each match costs about ``2 * log2(len(text))`` scans, which is why it is meant for log
lines that opt in (``logging.include_bodies``), never for routing. If the text still fires after
``max_rounds`` matches, all of it is replaced: masking errs towards hiding.

Kept apart from the detectors on purpose: it relies on nothing but ``scan``, whatever the
detectors do inside.
"""

from __future__ import annotations

from collections.abc import Callable

from routing.detectors.registry import DetectorSet

REDACTED = "[redacted]"
Fires = Callable[[str], bool]


def mask(text: str, detectors: DetectorSet, *, max_rounds: int = 32) -> str:
    """``text`` with everything ``detectors`` find replaced; unchanged when nothing fires."""

    def fires(piece: str) -> bool:
        return bool(piece) and bool(detectors.scan(piece))

    if not fires(text):
        return text
    for _ in range(max_rounds):
        start, end = _widen(text, *first_match(text, fires))
        names = sorted({hit.entity for hit in detectors.scan(text[start:end])})
        text = text[:start] + "[" + ("|".join(names) or "redacted") + "]" + text[end:]
        if not fires(text):
            return text
    return REDACTED


def first_match(text: str, fires: Fires) -> tuple[int, int]:
    """``(start, end)`` of a stretch of ``text`` that fires, none of whose proper parts from either
    end does; ``text`` itself must fire. Bisection keeps ``fires(hi)`` and ``not fires(lo)``, so it
    ends on a boundary whether or not firing grows monotonically with the text."""
    lo, hi = 0, len(text)  # text[:lo] does not fire, text[:hi] does
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fires(text[:mid]):
            hi = mid
        else:
            lo = mid
    end = hi
    lo, hi = 0, end  # text[lo:end] fires, text[hi:end] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fires(text[mid:end]):
            lo = mid
        else:
            hi = mid
    return lo, end


def _widen(text: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    while end < len(text) and not text[end].isspace():
        end += 1
    return start, end
