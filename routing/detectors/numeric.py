"""One shared pass that finds the numeric stretches of a text worth a closer look.

Cards, SSNs, phone numbers and IPv4 addresses all live in a run of digits and separators. Rather
than letting a regex walk every byte of the prompt, the skeleton (digits -> ``0``) is searched for
the few seeds every such entity contains -- four consecutive digits, ``+`` then a digit, or
``d.d..d.d`` -- with plain substring searches, and one combined pattern with each family as a
named alternative runs only on the run of digits and separators around a seed.
"""

from __future__ import annotations

import re
from itertools import product

from routing.detectors.base import Scan
from routing.detectors.contact import (
    INTERNATIONAL_PHONE_PATTERN,
    IPV4_PATTERN,
    NORTH_AMERICAN_PHONE_PATTERN,
    international_phone_valid,
    ipv4_valid,
)
from routing.detectors.financial import (
    CARD_PATTERN,
    SSN_PATTERN,
    card_valid,
    ssn_valid_match,
)

# (alternative name, entity it counts as, pattern, validator); earlier alternatives win a position
_FAMILIES = (
    ("credit_card", "credit_card", CARD_PATTERN, card_valid),
    ("us_ssn", "us_ssn", SSN_PATTERN, ssn_valid_match),
    ("phone_international", "phone", INTERNATIONAL_PHONE_PATTERN, international_phone_valid),
    ("phone", "phone", NORTH_AMERICAN_PHONE_PATTERN, None),
    ("ip_address", "ip_address", IPV4_PATTERN, ipv4_valid),
)
ENTITIES = tuple(dict.fromkeys(entity for _, entity, _, _ in _FAMILIES))
_DISPATCH = {name: (entity, validate) for name, entity, _, validate in _FAMILIES}


def _combined(possible: tuple[bool, ...]) -> re.Pattern[bytes]:
    """The families flagged in ``possible`` as the named alternatives of one pattern."""
    chosen = (b"(?P<%s>%s)" % (name.encode(), p) for (name, _, p, _), on in zip(_FAMILIES, possible) if on)
    return re.compile(b"|".join(chosen))


# every non-empty subset of the families, compiled once at import (~15 ms) rather than mid-request
_PATTERNS = {possible: _combined(possible) for possible in product((False, True), repeat=len(_FAMILIES)) if any(possible)}
_FOUR_DIGITS = re.compile(rb"0000[0 .()/+-]*")  # a seed and the rest of its run (one per run)
_DOTTED_QUAD = re.compile(rb"0\.0{1,3}\.0{1,3}\.0")
_RUN_REST = re.compile(rb"[0 .()/+-]*")
_MEMO_KEY = "numeric"


def _seeds(skeleton: bytes) -> list[int]:
    """Seed offsets in order: four digits in a row, ``+`` then a digit (found with a one-byte
    search: ``+`` is rare), a dotted quad."""
    seeds = [match.start() for match in _FOUR_DIGITS.finditer(skeleton)]
    plus = skeleton.find(b"+")
    extra = []
    while plus >= 0:
        if skeleton[plus + 1 : plus + 2] == b"0":
            extra.append(plus)
        plus = skeleton.find(b"+", plus + 1)
    extra.extend(match.start() for match in _DOTTED_QUAD.finditer(skeleton))
    if extra:
        seeds.extend(extra)
        seeds.sort()
    return seeds


def numeric_counts(scan: Scan) -> dict[str, int]:
    """Counts for every numeric entity, computed once per scan and shared by their detectors."""
    cached = scan.memo.get(_MEMO_KEY)
    if cached is not None:
        return cached
    counts = dict.fromkeys(ENTITIES, 0)
    skeleton, data = scan.skeleton, scan.data
    find, rfind, count = skeleton.find, skeleton.rfind, skeleton.count
    covered = -1
    run_rest = _RUN_REST.match
    for seed in _seeds(skeleton):
        if seed < covered:
            continue  # inside a run already looked at: every run is read once
        end = run_rest(skeleton, seed).end()  # type: ignore[union-attr]  # always matches
        covered = end
        start = rfind(b"a", 0, seed) + 1
        # which families a run with this many digits, dots and plus signs could hold
        digits = count(b"0", start, end)
        quad = digits >= 4 and count(b".", start, end) >= 3
        if digits < 8 and not quad:
            continue
        possible = (digits >= 13, digits >= 9, digits >= 8 and find(b"+", start, end) >= 0, digits >= 10, quad)
        if not any(possible):
            continue
        for match in _PATTERNS[possible].finditer(data, start, min(len(data), end + 2)):  # look-aheads see past
            entity, validate = _DISPATCH[match.lastgroup]  # type: ignore[index]
            if validate is None or validate(match, data):
                counts[entity] += 1
    scan.memo[_MEMO_KEY] = counts
    return counts
