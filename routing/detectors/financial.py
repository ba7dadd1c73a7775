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
_CONTIGUOUS = re.compile(rb"[A-Za-z]{2}[0-9]{2}[A-Za-z0-9]{8,30}(?![A-Za-z0-9])")
# groups of four, the last one shorter; classes of separators and characters never overlap
_GROUPED = re.compile(
    rb"[A-Za-z]{2}[0-9]{2}(?:" + _SEPARATOR + rb"{1,4}[A-Za-z0-9]{4}){2,8}(?:" + _SEPARATOR + rb"{1,4}[A-Za-z0-9]{1,3})?(?![A-Za-z0-9])"
)
_SEPARATORS = re.compile(_SEPARATOR + b"+")
_WORD_SKELETON = b"a0_"


def count_ibans(scan: Scan) -> int:
    """IBANs in any case and spacing, checked against the country's length and mod-97."""
    data, skeleton = scan.data, scan.skeleton
    found = 0
    hit = skeleton.find(b"aa00")
    while hit >= 0:
        if (hit == 0 or skeleton[hit - 1] not in _WORD_SKELETON) and data[hit : hit + 2].upper().decode() in IBAN_LENGTHS:
            match = _CONTIGUOUS.match(data, hit) or _GROUPED.match(data, hit)
            if match is not None and iban_valid(_SEPARATORS.sub(b"", match.group()).upper().decode()):
                found += 1
                hit = skeleton.find(b"aa00", match.end())
                continue
        hit = skeleton.find(b"aa00", hit + 1)
    return found
