"""Admin-defined detectors from the config: a regex or a keyword list, with the level they imply."""

from __future__ import annotations

import re
from dataclasses import dataclass

from routing.detectors.base import Scan
from routing.spec import Detector
from routing.types import Sensitivity


@dataclass(frozen=True, slots=True)
class PatternDetector:
    """An admin regex, compiled once per config, run over the request text as written."""

    name: str
    level: Sensitivity
    pattern: re.Pattern[str]

    def count(self, scan: Scan) -> int:
        return sum(1 for _ in self.pattern.finditer(scan.text))


@dataclass(frozen=True, slots=True)
class KeywordDetector:
    """Whole-word keywords (project code names, customer names); a substring check runs first.

    ASCII keyword lists (the usual case) search the UTF-8 bytes, whose lower-cased copy the
    built-in detectors share; others search the text.
    """

    name: str
    level: Sensitivity
    keywords: tuple[str, ...] | tuple[bytes, ...]
    pattern: re.Pattern[str] | re.Pattern[bytes]
    case_sensitive: bool

    def count(self, scan: Scan) -> int:
        if not self.keywords:
            return 0
        haystack: str | bytes
        if isinstance(self.keywords[0], bytes):
            haystack = scan.data if self.case_sensitive else scan.lower
        else:
            haystack = scan.text if self.case_sensitive else scan.lower_text
        if not any(word in haystack for word in self.keywords):  # type: ignore[operator]
            return 0
        return sum(1 for _ in self.pattern.finditer(haystack))  # type: ignore[arg-type,misc]


def compile_admin_detector(spec: Detector) -> PatternDetector | KeywordDetector:
    """Turn one ``sensitivity.detectors[]`` entry into a detector."""
    level = Sensitivity.parse(spec.level)
    if spec.regex is not None:
        flags = 0 if spec.case_sensitive else re.IGNORECASE
        return PatternDetector(spec.name, level, re.compile(spec.regex, flags))
    words = tuple(dict.fromkeys(w if spec.case_sensitive else w.lower() for w in spec.keywords or () if w.strip()))
    if not words:
        return KeywordDetector(spec.name, level, (), re.compile(r"(?!)"), spec.case_sensitive)
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    source = rf"(?<!\w)(?:{alternatives})(?!\w)"
    if all(w.isascii() for w in words):
        return KeywordDetector(
            spec.name, level, tuple(w.encode() for w in words), re.compile(source.encode()), spec.case_sensitive
        )
    return KeywordDetector(spec.name, level, words, re.compile(source), spec.case_sensitive)
