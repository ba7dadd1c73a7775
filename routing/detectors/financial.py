"""Payment cards, IBANs and US Social Security numbers, each confirmed by its checksum or rules.

Card and SSN patterns run inside the numeric windows found by :mod:`.numeric`; ``count_ibans``
finds its own starting points (two letters then two digits).
"""

from __future__ import annotations

import re

from routing.detectors.base import Scan, word_byte_before
from routing.detectors.checks import (
    IBAN_LENGTHS,
    card_network_valid,
    iban_valid,
    luhn_valid,
    ssn_valid,
)

# 13-19 digits: contiguous, in groups of four (Visa/Mastercard/...), or 4-6-5 (Amex, Diners).
CARD_PATTERN = (
    rb"(?<![\w.,/-])(?:"
    rb"\d{13,19}"
    rb"|\d{4}(?P<card_s>[ -])\d{4}(?P=card_s)\d{4}(?P=card_s)\d{1,4}(?:(?P=card_s)\d{1,3})?"
    rb"|\d{4}(?P<card_t>[ -])\d{6}(?P=card_t)\d{4,5}"
    rb")(?![\w-]|[.,/]\d)"
)
_NOT_DIGIT = re.compile(rb"\D")


def card_valid(match: re.Match[bytes], data: bytes) -> bool:
    """Issuer prefix, length for that network, and the Luhn check."""
    digits = _NOT_DIGIT.sub(b"", match.group()).decode()
    return card_network_valid(digits) and luhn_valid(digits)


# 123-45-6789 / 123 45 6789 stand alone; a bare 123456789 needs a nearby "SSN"-like word.
SSN_PATTERN = (
    rb"(?<![\w.,/-])(?P<ssn_area>\d{3})(?P<ssn_sep>[- ]?)(?P<ssn_group>\d{2})(?P=ssn_sep)(?P<ssn_serial>\d{4})"
    rb"(?![\w-]|[.,/]\d)"
)
_SSN_CONTEXT = re.compile(rb"\b(?:ssn|ss#|social\s+security|social\s+sec|taxpayer|tax\s+id|itin)\b")


def ssn_valid_match(match: re.Match[bytes], data: bytes) -> bool:
    """Area not 000/666/9xx, group not 00, serial not 0000; undashed only next to an SSN word."""
    area, group, serial = (match.group(name).decode() for name in ("ssn_area", "ssn_group", "ssn_serial"))
    if not ssn_valid(area, group, serial):
        return False
    start = match.start()
    return bool(match.group("ssn_sep")) or _SSN_CONTEXT.search(data[max(0, start - 48) : start].lower()) is not None


# After "CCdd": the rest of the IBAN, one optional space or dash between characters.
_IBAN_TAILS = {
    length: re.compile(rb"(?:[ -]?[A-Za-z0-9]){%d}(?![A-Za-z0-9])" % (length - 4))
    for length in set(IBAN_LENGTHS.values())
}
_SEPARATORS = re.compile(rb"[ -]")


def count_ibans(scan: Scan) -> int:
    """IBANs in any case and spacing, checked against the country's length and mod-97."""
    data, skeleton = scan.data, scan.skeleton
    found = 0
    hit = skeleton.find(b"aa00")
    while hit >= 0:
        country = data[hit : hit + 2]
        length = IBAN_LENGTHS.get(country.upper().decode()) if country.isalpha() else None
        if length is not None and not word_byte_before(data, hit):
            tail = _IBAN_TAILS[length].match(data, hit + 4)
            if tail is not None:
                compact = (data[hit : hit + 4] + _SEPARATORS.sub(b"", tail.group())).upper().decode()
                if iban_valid(compact):
                    found += 1
        hit = skeleton.find(b"aa00", hit + 1)
    return found
