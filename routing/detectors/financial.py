"""IBANs, confirmed by the country's length and the ISO 7064 mod-97 check.

Payment cards and US SSNs live in the shared numeric pass (:mod:`.numeric`); an IBAN starts with
letters, so it has its own seeds: two letters then two digits, found in the skeleton with a plain
substring search. From each seed one anchored match reads the rest, either contiguous or in the
printed groups of four with any short run of separators between them (spaces of any width after
normalisation, dots, dashes, underscores, slashes, line breaks).
"""

from __future__ import annotations

import re

from routing.detectors.base import Scan
from routing.detectors.checks import IBAN_LENGTHS, iban_valid

_SEPARATOR = rb"[ \t\n\r\x0b\x0c.\-_/]"


def _shapes(length: int) -> re.Pattern[bytes]:
    """An IBAN of ``length`` characters, contiguous or in groups of four (the last one shorter);
    the classes of separators and of characters never overlap, so each is read one way."""
    full, tail = divmod(length - 4, 4)
    grouped = rb"(?:" + _SEPARATOR + rb"{1,4}[A-Za-z0-9]{4}){%d}" % full
    if tail:
        grouped += _SEPARATOR + rb"{1,4}[A-Za-z0-9]{%d}" % tail
    return re.compile(rb"[A-Za-z]{2}[0-9]{2}(?:[A-Za-z0-9]{%d}|%s)(?![A-Za-z0-9])" % (length - 4, grouped))


_BY_LENGTH = {length: _shapes(length) for length in set(IBAN_LENGTHS.values())}
_SEPARATORS = re.compile(_SEPARATOR + b"+")
_WORD_SKELETON = b"a0_"


def count_ibans(scan: Scan) -> int:
    """IBANs in any case and spacing, checked against the country's length and mod-97."""
    data, skeleton = scan.data, scan.skeleton
    found = 0
    hit = skeleton.find(b"aa00")
    while hit >= 0:
        length = IBAN_LENGTHS.get(data[hit : hit + 2].upper().decode())
        if length is not None and (hit == 0 or skeleton[hit - 1] not in _WORD_SKELETON):
            match = _BY_LENGTH[length].match(data, hit)
            if match is not None and iban_valid(_SEPARATORS.sub(b"", match.group()).upper().decode()):
                found += 1
                hit = skeleton.find(b"aa00", match.end())
                continue
        hit = skeleton.find(b"aa00", hit + 1)
    return found
