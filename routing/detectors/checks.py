"""Checksums and plausibility tests that turn a regex candidate into a confident detection."""

from __future__ import annotations

import math
from collections import Counter

# ISO 13616 IBAN lengths per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24,
    "AE": 23,
    "AL": 28,
    "AT": 20,
    "AZ": 28,
    "BA": 20,
    "BE": 16,
    "BG": 22,
    "BH": 22,
    "BI": 27,
    "BR": 29,
    "BY": 28,
    "CH": 21,
    "CR": 22,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DJ": 27,
    "DK": 18,
    "DO": 28,
    "EE": 20,
    "EG": 29,
    "ES": 24,
    "FI": 18,
    "FK": 18,
    "FO": 18,
    "FR": 27,
    "GB": 22,
    "GE": 22,
    "GI": 23,
    "GL": 18,
    "GR": 27,
    "GT": 28,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IL": 23,
    "IQ": 23,
    "IS": 26,
    "IT": 27,
    "JO": 30,
    "KW": 30,
    "KZ": 20,
    "LB": 28,
    "LC": 32,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "LY": 25,
    "MC": 27,
    "MD": 24,
    "ME": 22,
    "MK": 19,
    "MN": 20,
    "MR": 27,
    "MT": 31,
    "MU": 30,
    "NI": 28,
    "NL": 18,
    "NO": 15,
    "OM": 23,
    "PK": 24,
    "PL": 28,
    "PS": 29,
    "PT": 25,
    "QA": 29,
    "RO": 24,
    "RS": 22,
    "RU": 33,
    "SA": 24,
    "SC": 31,
    "SD": 18,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "SO": 23,
    "ST": 25,
    "SV": 28,
    "TL": 23,
    "TN": 24,
    "TR": 26,
    "UA": 29,
    "VA": 22,
    "VG": 24,
    "XK": 20,
    "YE": 30,
}

# (prefix ranges, allowed lengths) per card network; prefixes compared on the leading digits.
_CARD_NETWORKS: tuple[tuple[tuple[tuple[int, int], ...], frozenset[int]], ...] = (
    (((4, 4),), frozenset({13, 16, 19})),  # Visa
    (((51, 55), (2221, 2720)), frozenset({16})),  # Mastercard
    (((34, 34), (37, 37)), frozenset({15})),  # American Express
    (((6011, 6011), (644, 649), (65, 65)), frozenset({16, 17, 18, 19})),  # Discover
    (((3528, 3589),), frozenset({16, 17, 18, 19})),  # JCB
    (((300, 305), (36, 36), (38, 39)), frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    (((62, 62),), frozenset({16, 17, 18, 19})),  # UnionPay
    (((2200, 2204),), frozenset({16, 17, 18, 19})),  # Mir
    (
        ((5018, 5018), (5020, 5020), (5038, 5038), (5893, 5893), (6304, 6304), (6759, 6759), (6761, 6763)),
        frozenset({12, 13, 14, 15, 16, 17, 18, 19}),
    ),  # Maestro
)

PLACEHOLDER_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "changeme",
        "example",
        "redacted",
        "hidden",
        "none",
        "null",
        "undefined",
        "true",
        "false",
        "your_password",
        "yourpassword",
        "mypassword",
        "your-password",
        "your_api_key",
        "your-api-key",
        "your_token",
        "placeholder",
        "xxxxxxxx",
    }
)


_DOUBLED = str.maketrans("0123456789", "0246813579")  # 2d, minus 9 when that is above 9


def luhn_valid(digits: str) -> bool:
    """The Luhn mod-10 check used by every payment card number."""
    kept, doubled = digits[-1::-2], digits[-2::-2].translate(_DOUBLED)
    return (sum(map(int, kept)) + sum(map(int, doubled))) % 10 == 0


def _network_lengths() -> dict[str | bytes, frozenset[int]]:
    """Card lengths allowed per four-digit issuer prefix (every prefix any network uses)."""
    by_prefix: dict[str, set[int]] = {}
    for ranges, lengths in _CARD_NETWORKS:
        for low, high in ranges:
            scale = 10 ** (4 - len(str(low)))
            for number in range(low * scale, (high + 1) * scale):
                by_prefix.setdefault(str(number), set()).update(lengths)
    table: dict[str | bytes, frozenset[int]] = {}
    for prefix, allowed in by_prefix.items():
        table[prefix] = table[prefix.encode()] = frozenset(allowed)
    return table


_LENGTHS_BY_PREFIX = _network_lengths()


def card_network_valid(digits: str | bytes) -> bool:
    """True when the number's leading digits and length belong to a known card network."""
    lengths = _LENGTHS_BY_PREFIX.get(digits[:4])
    return lengths is not None and len(digits) in lengths


def card_valid(digits: str) -> bool:
    """Issuer prefix, the length for that network, and the Luhn check."""
    return card_network_valid(digits) and luhn_valid(digits)


def iban_valid(compact: str) -> bool:
    """Country length and ISO 7064 mod-97 check of an upper-case IBAN without separators."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum() or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """SSA rules: no 000/666/9xx area, no 00 group, no 0000 serial."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value``'s own character distribution."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def looks_like_placeholder(value: str) -> bool:
    """Template values (``<password>``, ``${DB_PASS}``, ``****``) that carry no secret."""
    lowered = value.lower().strip("'\"")
    if lowered in PLACEHOLDER_WORDS or len(set(lowered)) <= 2:
        return True
    return lowered[:1] in "<{[$%*" or lowered.startswith(("your", "my_", "example", "xxx"))
