"""Text normalisation before any detector runs: one spelling for every way of writing the same thing.

A careless or hostile caller writes a card number with full-width digits (Japanese IMEs),
Arabic-Indic digits, narrow no-break spaces (fr-FR), en-dashes, zero-width characters in between,
or JSON-escaped (``4111\\u00a01111``, ``\\n``) inside a tool argument. The detectors see none of
that: :func:`normalize` maps

- JSON / C escapes: ``\\uHHHH`` to the character, ``\\n`` ``\\r`` ``\\t`` to the control
  character, ``\\"``, ``\\/`` and ``\\\\`` to the character -- repeatedly, because a tool
  call's ``arguments`` is JSON inside JSON, and each layer escapes the one inside it once more;
- every Unicode decimal digit (category Nd) to its ASCII digit;
- format characters (Cf: zero-width space and joiners, bidi marks, soft hyphen, tags) and the
  other default-ignorable code points (variation selectors, fillers) to nothing;
- the space family (Zs: no-break, narrow no-break, thin, ideographic ...) to ``" "``, line and
  paragraph separators and NEL to ``"\\n"``, the dash family (Pd) and U+2212 MINUS SIGN to ``"-"``,
  ideographic and Arabic commas and full stops to ``","`` and ``"."``;
- NUL to a space (NUL separates texts inside one scan; see :mod:`.base`);
- then NFKC (full-width forms, ``＠``, ligatures, compatibility digits).

ASCII text needs none of the Unicode steps, and is the common case on every request: it costs
two ``in`` checks. Other control characters are kept; the scanners read them as spaces.
The result is a fixed point: ``normalize(normalize(t)) == normalize(t)``.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|[nrt\"/bf\\])")
_SIMPLE_ESCAPES = {"\\n": "\n", "\\r": "\r", "\\t": "\t", '\\"': '"', "\\/": "/", "\\b": " ", "\\f": " ", "\\\\": "\\"}


def _unescape(match: re.Match[str]) -> str:
    escape = match.group()
    simple = _SIMPLE_ESCAPES.get(escape)
    return simple if simple is not None else chr(int(escape[2:], 16))


def decode_escapes(text: str) -> str:
    """``\\uHHHH``, ``\\n``, ``\\t`` ... as the characters they stand for, layer after layer.

    Every decoded escape is shorter than the escape, so a pass that changes nothing is the last
    one; a new escape can only come from a decoded backslash, which halves a run of backslashes per
    pass: at most about log2(len) passes, each one linear.
    """
    while True:
        decoded = _ESCAPE.sub(_unescape, text)
        if len(decoded) == len(text):
            return decoded
        text = decoded


# Separators that NFKC leaves alone but writers use between digit groups.
_EXTRA_SEPARATORS = {
    0x3001: ",",
    0xFF64: ",",
    0x060C: ",",
    0x066C: ",",  # ideographic, Arabic commas
    0x3002: ".",
    0xFF61: ".",
    0x066B: ".",
    0x30FB: ".",
    0x00B7: ".",
    0x2027: ".",  # full stops, middle dots
    0x2212: "-",
    0x2796: "-",
    0x2E3A: "-",
    0x2E3B: "-",  # minus signs and long dashes
    0x0085: "\n",
    0x2028: "\n",
    0x2029: "\n",  # NEL, line and paragraph separators
    0x0000: " ",
    0xFE68: "/",
    0xFF3C: "/",  # NFKC would turn these into a backslash, which starts an escape
}
_MAPPED_CATEGORIES: dict[str, str | None] = {"Nd": "", "Zs": " ", "Pd": "-", "Cf": None, "Cc": " "}
# Default-ignorable code points that are not Cf (Unicode DerivedCoreProperties).
_IGNORABLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0000, 0xE0FFF),
    (0xE0100, 0xE01EF),
)


@functools.cache
def _table() -> tuple[dict[int, str | None], re.Pattern[str]]:
    """The code point map and a pattern that finds any mapped character, built once (about 15-30 ms,
    when the first detector set is compiled: see :func:`prepare_tables`)."""
    table: dict[int, str | None] = {}
    every = "".join(map(chr, range(0x80, 0x20000)))  # Nd, Zs, Pd, Cf and Cc all lie below U+20000
    for char, category in zip(every, map(unicodedata.category, every), strict=False):
        if category in _MAPPED_CATEGORIES:
            table[ord(char)] = str(unicodedata.decimal(char)) if category == "Nd" else _MAPPED_CATEGORIES[category]
    for low, high in _IGNORABLE_RANGES:
        for code in range(low, high + 1):
            table[code] = None
    for code in range(0xE0000, 0xE0080):  # language tags
        table[code] = None
    table.update(_EXTRA_SEPARATORS)
    codes = sorted(table)
    ranges: list[str] = []
    start = previous = codes[0]
    for code in [*codes[1:], sys.maxunicode + 2]:
        if code != previous + 1:
            ranges.append(re.escape(chr(start)) if start == previous else f"{re.escape(chr(start))}-{re.escape(chr(previous))}")
            start = code
        previous = code
    return table, re.compile(f"[{''.join(ranges)}]")


def prepare_tables() -> None:
    """Build the Unicode tables now rather than on the first non-ASCII text (about 15-30 ms)."""
    _table()


def _unicode_steps(text: str) -> str:
    table, mapped = _table()
    if mapped.search(text) is not None:
        text = text.translate(table)
    text = unicodedata.normalize("NFKC", text)
    for _ in range(4):  # NFKC can (rarely) produce a mapped character, e.g. U+2011 -> U+2010
        if mapped.search(text) is None:
            break
        text = unicodedata.normalize("NFKC", text.translate(table))
    return text


def normalize(text: str) -> str:
    """``text`` in the one spelling the detectors read (see the module docstring)."""
    for _ in range(8):
        if "\\" in text:
            text = decode_escapes(text)
        if text.isascii():
            return text.replace("\x00", " ") if "\x00" in text else text
        text = _unicode_steps(text)
        # removing a zero-width character, or NFKC of a full-width quote, can complete an escape
        if "\\" not in text or _ESCAPE.search(text) is None:
            return text
    return text
