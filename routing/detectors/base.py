"""The shape every detector has, and the scan state the detectors of one text share.

A scan reads *normalised* text (:mod:`.normalize`); several texts of one request may be scanned
together, joined by NUL, which every built-in detector treats as a hard boundary (normalisation
turns a NUL inside a text into a space, so the boundary cannot be forged).

Built-in detectors work on the UTF-8 bytes: ASCII semantics for ``\\d`` and ``\\w`` are what the
checksums expect, ``bytes.lower()`` keeps offsets, and a one-byte-per-char "skeleton" (digits ->
``0``, letters -> ``a``, separators kept) lets plain substring searches find the few places worth
a closer look.

Linear time by construction: every pattern here and in the detector modules is searched from a
literal or a rare byte, has bounded repetition counts or repetition over classes that cannot
overlap with what follows, and no look-behind at its start; each scanner reads every byte a
bounded number of times (tests/routing/test_linear_time.py times each one on hostile input).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from routing.types import Sensitivity

BOUNDARY = "\x00"
"""Joins the texts of one scan; no detector matches across it."""

_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
CHAIN_SEPARATORS = b" .,-_/()+\"'"
"""Bytes that may stand between the digit groups of one number (after normalisation every space
and dash of any script is one of these)."""


def _skeleton_table() -> bytes:
    table = bytearray(b"x" * 256)
    for byte in range(0x80, 0x100):
        table[byte] = ord("u")  # part of a non-ASCII character: neither a letter nor a separator
    for byte in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        table[byte] = ord("a")
    for byte in b"0123456789":
        table[byte] = ord("0")
    for byte in range(1, 0x20):
        table[byte] = ord(" ")  # tab, line breaks and other control characters read as spaces
    table[0x7F] = ord(" ")
    for byte in CHAIN_SEPARATORS + b":@=#":
        table[byte] = byte
    table[0] = ord("z")  # the boundary between texts
    return bytes(table)


_SKELETON = _skeleton_table()
# bytes a key is made of -> "t", everything else -> " " (not ".": a JWT's header alone is long)
_TOKEN_SHAPE = bytes(ord("t") if (chr(b).isascii() and (chr(b).isalnum() or chr(b) in "_-")) else ord(" ") for b in range(256))
LONG_TOKEN = 15  # shortest credential (or JWT header, or private-key body start) any built-in format allows
_LONG_RUN = b"t" * LONG_TOKEN


class Scan:
    """One normalised text (or several joined by :data:`BOUNDARY`), with derived views computed at
    most once and shared by the detectors."""

    __slots__ = ("_long_tokens", "_lower", "_lower_text", "_skeleton", "data", "memo", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode("utf-8", "surrogatepass")
        self._skeleton: bytes | None = None
        self._lower: bytes | None = None
        self._lower_text: str | None = None
        self._long_tokens: list[tuple[int, int]] | None = None
        self.memo: dict[str, Any] = {}  # results one pass computes for several detectors

    @property
    def long_tokens(self) -> list[tuple[int, int]]:
        """``(start, end)`` of every run of at least 15 ``[A-Za-z0-9_-]`` bytes."""
        if self._long_tokens is None:
            shape = self.data.translate(_TOKEN_SHAPE)
            spans = []
            hit = shape.find(_LONG_RUN)
            while hit >= 0:
                end = shape.find(b" ", hit + LONG_TOKEN)
                end = len(shape) if end < 0 else end
                spans.append((hit, end))
                hit = shape.find(_LONG_RUN, end)
            self._long_tokens = spans
        return self._long_tokens

    @property
    def skeleton(self) -> bytes:
        """``data`` with digits as ``0``, ASCII letters as ``a``, whitespace and control characters
        as a space, :data:`CHAIN_SEPARATORS` and ``:@=#`` kept, the boundary as ``z``, bytes of
        non-ASCII characters as ``u`` and every other byte as ``x``."""
        if self._skeleton is None:
            self._skeleton = self.data.translate(_SKELETON)
        return self._skeleton

    @property
    def lower(self) -> bytes:
        """``data`` with ASCII letters lower-cased (same offsets)."""
        if self._lower is None:
            self._lower = self.data.lower()
        return self._lower

    @property
    def lower_text(self) -> str:
        if self._lower_text is None:
            self._lower_text = self.text.lower()
        return self._lower_text


def word_byte_before(data: bytes, index: int, also: bytes = b"") -> bool:
    """True when the byte before ``index`` is a word character (or one of ``also``)."""
    if index <= 0:
        return False
    byte = data[index - 1]
    return byte in _WORD or byte in also


def crosses_boundary(data: bytes, start: int, end: int) -> bool:
    """True when ``data[start:end]`` spans two texts of a joined scan."""
    return data.find(b"\x00", start, end) >= 0


class EntityDetector(Protocol):
    """Counts occurrences of one kind of sensitive entity; never returns the matched values."""

    @property
    def name(self) -> str: ...

    @property
    def level(self) -> Sensitivity: ...

    def count(self, scan: Scan) -> int: ...


Validator = Callable[[re.Match[bytes], bytes], bool]


def _always(match: re.Match[bytes], data: bytes) -> bool:
    return True


@dataclass(frozen=True, slots=True)
class RegexDetector:
    """A precompiled bytes pattern and a validator per candidate match.

    The pattern should start with a literal, so the regex engine skips ahead with a fast search;
    check a word boundary in ``validate`` rather than with a leading look-behind, which would make
    the engine try the pattern at every byte.
    """

    name: str
    level: Sensitivity
    pattern: re.Pattern[bytes]
    validate: Validator = _always

    def count(self, scan: Scan) -> int:
        data = scan.data
        validate = self.validate
        return sum(1 for m in self.pattern.finditer(data) if validate(m, data))


@dataclass(frozen=True, slots=True)
class FunctionDetector:
    """A detector whose scan is a hand-written function (anchored searches, shared passes)."""

    name: str
    level: Sensitivity
    counter: Callable[[Scan], int]

    def count(self, scan: Scan) -> int:
        return self.counter(scan)


def with_level(detector: EntityDetector, level: Sensitivity) -> EntityDetector:
    """The same detector reporting another level (the admin's ``levels:`` override)."""
    if isinstance(detector, (RegexDetector, FunctionDetector)):
        return replace(detector, level=level)
    raise TypeError(f"cannot override the level of {type(detector).__name__}")
