"""One shared pass over the numbers of a text: payment cards, US SSNs, phone numbers, IPv4.

People write the same number many ways: ``4111 1111 1111 1111``, ``4111.1111.1111.1111``,
``4111 - 1111 - 1111 - 1111``, one group per line, ``John,4111111111111111,12/26`` in a CSV row,
``[4111,1111,1111,1111]`` in compact JSON. So numbers are read as *chains*: digit groups joined
by runs of at most :data:`MAX_SEPARATOR_RUN` separators (space, ``.,-_/()+"'`` -- after
normalisation every space and dash of any script is one of these), and each family looks for its
shapes among a chain's groups, confirmed by a validator (issuer prefix + Luhn, SSA rules, NANP
area codes) or, where the digits alone are ambiguous, by a nearby word ("SSN", "phone").

Linear by construction: seeds (the start of a shape some family looks for, ``+`` before a digit)
are found by one C-level pass over the skeleton; each seed's region is delimited with one C-level
match forward and a bounded ``rstrip`` backward, and regions never overlap, so every byte is parsed
once. Within a chain every shape has a fixed number of groups, so the work per group is bounded.

Dotted quads (IPv4) are found separately, by a pattern with a two-byte literal prefix.
"""

from __future__ import annotations

import re
from typing import cast

from routing.detectors.base import CHAIN_SEPARATORS, Scan
from routing.detectors.checks import card_network_valid, ssn_valid
from routing.detectors.contact import ipv4_valid

ENTITIES = ("credit_card", "us_ssn", "phone", "ip_address")
MAX_SEPARATOR_RUN = 4
LOOKBACK = 160  # a chain read backwards further than this is too long to be any one entity
ENOUGH = 256  # restricted numbers in one scan after which no more are counted (the level is final);
# phones past this many are not looked for where that needs a nearby word (counts are "at least")

_CHAIN_BYTES = b"0" + CHAIN_SEPARATORS
_REGION_REST = re.compile(rb"[0 .,\-_/()+\"']*")
# one chain: digit groups joined by short separator runs ("+" starts a new one). Separators and
# digits never overlap, so the engine never has more than four ways to read a gap.
_CHAIN = re.compile(rb"0+(?:[ .,\-_/()\"']{1,4}0+)*")
_DIGIT_RUN = re.compile(rb"0+")
_NOT_DIGITS = bytes(b for b in range(256) if not 48 <= b <= 57)
_WEAK = b".-_"  # separators that also join the parts of one token (versions, ids, dates)
_PHONE_GAP = re.compile(rb"[ .\-/()]{1,3}\Z")
_NANP_GAP = re.compile(rb"[ .\-()]{1,3}\Z")
_PHONE_CHAIN = re.compile(rb"0+(?:[ .\-/()]{1,3}0+)*\Z")
_DOTTED_QUAD = re.compile(rb"0\.0{1,3}\.0{1,3}\.0{1,3}")  # starts at the last digit of the first octet
_NOT_BEFORE_QUAD = frozenset(b"0.a_")
_NOT_AFTER_QUAD = frozenset(b"0a_")

# A chain's group sizes as one character each (1-9, then A=10 ... Z=35), so that the shapes of
# every family are found with C-level string searches instead of a Python loop over groups.
_SIZE_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# a single run of 13-19 digits, and where a card in groups may start (4-4-4-4[-1..3], 4-4-4-1..3, 4-6-4/5)
_CARD_RUN = frozenset("DEFGHIJ")
_CARD_START = re.compile(r"[D-J]|4(?=[46])")

SSN_CONTEXT = re.compile(
    rb"\b(?:ssns?|ss#|social(?: security)?(?: number| no\.?| #)?|soc\.? ?sec\.?|taxpayer(?: id)?|tax ?id|itin)\b"
)
PHONE_CONTEXT = re.compile(
    rb"\b(?:phones?|ph|tel|tele(?:phone|fon)|mobile|mob|mobil|cell(?:phone)?|call(?: me)?|fax|whatsapp|sms|"
    rb"text me|ring|contact|handy|rufnummer|portable|t\xc3\xa9l\xc3\xa9phone|t\xc3\xa9l|tel\xc3\xa9fono|"
    rb"telefono|cellulare|tlf|tfn)\b"
)
_CONTEXT_BEFORE = 48
_CONTEXT_AFTER = 24


def has_context(scan: Scan, pattern: re.Pattern[bytes], start: int, end: int) -> bool:
    """A word of ``pattern`` shortly before ``start`` or after ``end``, in the same text."""
    lower = scan.lower
    low = max(0, start - _CONTEXT_BEFORE)
    cut = lower.rfind(b"\x00", low, start)
    if cut >= 0:
        low = cut + 1
    if pattern.search(lower, low, start) is not None:
        return True
    high = min(len(lower), end + _CONTEXT_AFTER)
    cut = lower.find(b"\x00", end, high)
    return pattern.search(lower, end, cut if cut >= 0 else high) is not None


_LUHN_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")


def card_ok(digits: bytes) -> bool:
    """Issuer prefix and length (one dict look-up), then Luhn over the bytes."""
    if not card_network_valid(digits):
        return False
    kept, doubled = digits[-1::-2], digits[-2::-2].translate(_LUHN_DOUBLED)
    return (sum(kept) + sum(doubled) - 48 * len(digits)) % 10 == 0


class _Chain:
    """The digit groups of one chain, read lazily: sizes as a string for shape searches, offsets,
    and digits or separators only for the few windows a shape search proposes."""

    __slots__ = ("open_left", "scan", "sizes", "spans", "total", "used")

    def __init__(self, scan: Scan, start: int, end: int, total: int, open_left: bool) -> None:
        skeleton = scan.skeleton
        spans = [m.span() for m in _DIGIT_RUN.finditer(skeleton, start, end)]
        if start > 0 and skeleton[start - 1] == 97:  # "a": glued to a word ("ID4111..."), not a number
            first = spans.pop(0)
            total -= first[1] - first[0]
            open_left = False
        if spans and end < len(skeleton) and skeleton[end] == 97:
            last = spans.pop()
            total -= last[1] - last[0]
        self.scan = scan
        self.spans = spans
        self.sizes = "".join([_SIZE_CHARS[min(e - s, 35)] for s, e in spans])
        self.used = bytearray(len(spans))
        self.open_left = open_left
        self.total = total

    def digits(self, i: int, k: int) -> bytes:
        return self.scan.data[self.spans[i][0] : self.spans[i + k - 1][1]].translate(None, _NOT_DIGITS)

    def gap(self, i: int) -> bytes:
        """The separators between group ``i`` and group ``i + 1``."""
        return self.scan.skeleton[self.spans[i][1] : self.spans[i + 1][0]]

    def strong(self, i: int) -> bool:
        return bool(self.gap(i).translate(None, _WEAK))

    def delimited(self, i: int, k: int) -> bool:
        """Groups ``i..i+k-1`` stand apart from their neighbours (not one dotted or dashed token)."""
        left = (i == 0 and not self.open_left) or (i > 0 and self.strong(i - 1))
        return left and (i + k == len(self.spans) or self.strong(i + k - 1))

    def commas(self, i: int, k: int) -> bool:
        skeleton, spans = self.scan.skeleton, self.spans
        return skeleton.find(b",", spans[i][1], spans[i + k - 1][0]) >= 0

    def free(self, i: int, k: int) -> bool:
        return self.used.find(1, i, i + k) < 0

    def take(self, i: int, k: int) -> None:
        self.used[i : i + k] = b"\x01" * k

    def whole(self) -> bool:
        return not self.open_left and not any(self.used)


def _phone_after_plus(chain: _Chain) -> bool:
    """``+CC ...``: up to 15 digits (E.164) in groups joined by phone separators, at least 8."""
    total = 0
    count = 0
    for i, span in enumerate(chain.spans[:15]):
        if i and not _PHONE_GAP.search(chain.gap(i - 1)):
            break
        size = span[1] - span[0]
        if total + size > 15:
            break
        total += size
        count += 1
    if total >= 8:
        chain.take(0, count)
        return True
    return False


def _card_shapes_at(sizes: str, i: int) -> tuple[str, ...]:
    """The grouped-card shapes the sizes at ``i`` allow, longest first (at most two)."""
    if sizes.startswith("4444", i):
        tail = sizes[i + 4 : i + 5]
        return ("4444" + tail, "4444") if tail in ("1", "2", "3") else ("4444",)
    tail = sizes[i + 1 : i + 4]
    if tail in ("441", "442", "443", "65", "64") or tail[:2] in ("65", "64"):
        return ("4" + (tail if tail[0] == "4" else tail[:2]),)
    return ()


def _cards(chain: _Chain) -> int:
    n = len(chain.spans)
    if n > 1 and 13 <= chain.total <= 19 and chain.whole() and card_ok(chain.digits(0, n)):
        chain.take(0, n)
        return 1
    sizes, used = chain.sizes, chain.used
    spans = chain.spans
    any_comma = chain.scan.skeleton.find(b",", spans[0][0], spans[-1][1]) >= 0
    found = 0
    i = 0
    while True:
        match = _CARD_START.search(sizes, i)
        if match is None:
            return found
        i = match.start()
        if used[i]:
            i += 1
            continue
        if sizes[i] in _CARD_RUN:
            # "0.4111111111111111" is a fraction, not a card
            if card_ok(chain.digits(i, 1)) and not (i and chain.gap(i - 1) == b"."):
                chain.take(i, 1)
                found += 1
            i += 1
            continue
        if found >= ENOUGH:
            return found
        # (only the groups of a phone at the chain's start can be taken already, and i is past them)
        for shape in _card_shapes_at(sizes, i):
            k = len(shape)
            # comma-separated groups are a card only as a whole array or row: [4111,1111,1111,1111]
            if any_comma and chain.commas(i, k) and not (i == 0 and i + k == n and not chain.open_left):
                continue
            if card_ok(chain.digits(i, k)) and chain.delimited(i, k):
                chain.take(i, k)
                found += 1
                i += k - 1
                break
        i += 1


def _ssn_ok(digits: bytes) -> bool:
    text = digits.decode()
    return ssn_valid(text[:3], text[3:5], text[5:])


def _ssns(chain: _Chain) -> int:
    found = 0
    sizes, spans, scan = chain.sizes, chain.spans, chain.scan
    i = sizes.find("324")
    while i >= 0 and found < ENOUGH:
        if chain.free(i, 3) and chain.delimited(i, 3) and _ssn_ok(chain.digits(i, 3)):
            # "512, 45, 1024" is a list of numbers unless someone says SSN
            if not chain.commas(i, 3) or has_context(scan, SSN_CONTEXT, spans[i][0], spans[i + 2][1]):
                chain.take(i, 3)
                found += 1
                i += 2
        i = sizes.find("324", i + 1)
    if found:
        return found
    # nine digits in any grouping, next to a word that says what they are ("my social is 123456789")
    if chain.whole() and chain.total == 9:
        candidates = [(0, len(spans))]
    else:
        candidates = []
        i = sizes.find("9")
        while i >= 0 and len(candidates) < 64:
            if not chain.used[i]:
                candidates.append((i, 1))
            i = sizes.find("9", i + 1)
    for i, k in candidates:
        if _ssn_ok(chain.digits(i, k)) and has_context(scan, SSN_CONTEXT, spans[i][0], spans[i + k - 1][1]):
            chain.take(i, k)
            found += 1
    return found


def _nanp(chain: _Chain) -> int:
    """North American numbers with separators: (415) 555-2671, 415.555.2671, 1-800-555-0199."""
    found = 0
    sizes = chain.sizes
    i = sizes.find("334")
    while i >= 0:
        k = 3
        if i and sizes[i - 1] == "1" and chain.digits(i - 1, 1) == b"1" and not chain.used[i - 1]:
            i, k = i - 1, 4
        if chain.free(i, k) and chain.delimited(i, k) and all(_NANP_GAP.search(chain.gap(j)) for j in range(i, i + k - 1)):
            digits = chain.digits(i + k - 3, 3)
            if digits[0] in b"23456789" and digits[1] != 57 and digits[3] in b"23456789":
                chain.take(i, k)
                found += 1
                i += k - 1
        i = sizes.find("334", i + 1)
    return found


def _contextual_phone(chain: _Chain) -> int:
    """National formats (020 7946 0958, 030 12345678) and bare 10-digit numbers, next to a phone word."""
    if not chain.spans or not 9 <= chain.total <= 13 or not chain.whole():
        return 0
    start, end = chain.spans[0][0], chain.spans[-1][1]
    if _PHONE_CHAIN.match(chain.scan.skeleton, start, end) is None:
        return 0
    if has_context(chain.scan, PHONE_CONTEXT, start, end):
        chain.take(0, len(chain.spans))
        return 1
    return 0


def _plus_before(skeleton: bytes, start: int) -> bool:
    """A ``+`` that follows no digit, word or other ``+`` opens the chain ("+44 20", "(+49) 30", not "1+2")."""
    before = skeleton[max(0, start - 3) : start]
    plus = before.rfind(b"+")
    if plus < 0 or before[plus + 1 :].strip(b"( ") != b"":
        return False
    at = start - (len(before) - plus)
    return at == 0 or skeleton[at - 1] not in b"0+a"


_SEP = rb"[ .,\-_/()\"']"
# C-level checks on a short chain before any Python work on its groups: an SSN or a NANP number
# somewhere in it (the Python pass then decides which groups and whether they are valid)
_MAYBE_SSN = re.compile(rb"(?<!0)000" + _SEP + rb"{1,4}00" + _SEP + rb"{1,4}0000(?!0)")
_MAYBE_NANP = re.compile(rb"(?<!0)000[ .\-()]{1,3}000[ .\-()]{1,3}0000(?!0)")


def _worth_reading(scan: Scan, start: int, end: int, total: int, phones: int) -> bool:
    """Whether a chain of 9-12 digits (too few for a card) may hold an SSN or a phone number; once
    :data:`ENOUGH` phones are counted, a phone needing a nearby word is not looked for."""
    skeleton = scan.skeleton
    if _MAYBE_SSN.search(skeleton, start, end) or _MAYBE_NANP.search(skeleton, start, end):
        return True
    if total == 9 and has_context(scan, SSN_CONTEXT, start, end):
        return True
    return (
        phones < ENOUGH and _PHONE_CHAIN.match(skeleton, start, end) is not None and has_context(scan, PHONE_CONTEXT, start, end)
    )


def _count_region(scan: Scan, start: int, end: int, open_left: bool, counts: dict[str, int]) -> None:
    skeleton = scan.skeleton
    for match in _CHAIN.finditer(skeleton, start, end):
        chain_start, chain_end = match.span()
        total = skeleton.count(b"0", chain_start, chain_end)
        if total < 8:
            continue  # too few digits for any entity: the groups are never even listed
        plus = _plus_before(skeleton, chain_start)
        if not plus and total < 13 and not (total >= 9 and _worth_reading(scan, chain_start, chain_end, total, counts["phone"])):
            continue
        chain = _Chain(scan, chain_start, chain_end, total, open_left and chain_start == start)
        if not chain.spans:
            continue
        if plus and _phone_after_plus(chain):
            counts["phone"] += 1
        if chain.total < 9:
            continue
        counts["credit_card"] += _cards(chain)
        counts["us_ssn"] += _ssns(chain)
        counts["phone"] += _nanp(chain) or _contextual_phone(chain)


def _next_plus(skeleton: bytes, position: int) -> int:
    plus = skeleton.find(b"+", position)
    while plus >= 0 and skeleton[plus + 1 : plus + 2] not in (b"0", b"("):
        plus = skeleton.find(b"+", plus + 1)
    return plus


def _count_ipv4(scan: Scan, counts: dict[str, int]) -> None:
    skeleton, data = scan.skeleton, scan.data
    for match in _DOTTED_QUAD.finditer(skeleton):
        start, end = match.span()
        back = 0
        while back < 2 and start > 0 and skeleton[start - 1] == 48:
            start -= 1
            back += 1
        if start > 0 and skeleton[start - 1] in _NOT_BEFORE_QUAD:
            continue
        if end < len(skeleton) and (skeleton[end] in _NOT_AFTER_QUAD or skeleton[end : end + 2] == b".0"):
            continue
        if ipv4_valid(data, start, end):
            counts["ip_address"] += 1


_MEMO_KEY = "numeric"


# Where a number worth reading starts, found in C before any Python runs: every shape a family
# looks for begins with three digits -- a run of 13-19 (a card), of 9-10 (an SSN or phone next to
# its name), groups of four (a card), 4-6-4/5 (Amex, Diners), 3-2-4 (an SSN) or 3-3-4 (a NANP
# number), or 3-3-3 (an SSN next to its name). Dates, times, prices and versions match none, so most
# of the digits in ordinary text are never looked at from Python. Separator runs and digits never overlap, so each alternative is
# read one way; the literal prefix "000" lets the engine skip ahead between candidates.
# National phone formats start with a trunk "0" (020 7946 0958, 030 12345678, 0151 23456789): a
# second pattern over the text itself, from each "0" digit.
_S = rb"[ .,\-_/()\"']"
_SCREEN = re.compile(
    rb"000(?:0{6,16}"
    rb"|0" + _S + rb"{1,4}0000" + _S + rb"{1,4}0000" + _S + rb"{1,4}0"
    rb"|0" + _S + rb"{1,4}000000" + _S + rb"{1,4}0000"
    rb"|" + _S + rb"{1,4}00" + _S + rb"{1,4}0000"
    rb"|[ .\-()]{1,3}000[ .\-()]{1,3}0000"
    rb"|" + _S + rb"{1,4}000" + _S + rb"{1,4}000(?!0))"  # 3-3-3: an SSN written so, next to its name
)
# 020 7946 0958, 030 12345678, 0151 23456789; 01 23 45 67 89 (France)
_NATIONAL = re.compile(rb"0[0-9]{1,4}\)?[ .\-/()]{1,3}[0-9]{3,8}|0[1-9](?:[ .\-][0-9]{2}){4}")
_NOT_BEFORE_NATIONAL = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_.-")


def numeric_counts(scan: Scan) -> dict[str, int]:
    """Counts for every numeric entity, computed once per scan and shared by their detectors."""
    cached = scan.memo.get(_MEMO_KEY)
    if cached is not None:
        return cast("dict[str, int]", cached)
    counts = dict.fromkeys(ENTITIES, 0)
    skeleton = scan.skeleton
    seeds = [m.start() for m in _SCREEN.finditer(skeleton)]
    data = scan.data
    national = [m.start() for m in _NATIONAL.finditer(data) if not m.start() or data[m.start() - 1] not in _NOT_BEFORE_NATIONAL]
    if national:
        seeds.extend(national)
        seeds.sort()
    if b"+" in skeleton:
        plus = _next_plus(skeleton, 0)
        while plus >= 0:
            seeds.append(plus)
            plus = _next_plus(skeleton, plus + 1)
        seeds.sort()
    position = 0
    for seed in seeds:
        if seed < position:
            continue  # inside a region already read: every region is read once
        if counts["credit_card"] + counts["us_ssn"] >= ENOUGH:
            break  # restricted already, and counts past this say nothing more
        low = max(position, seed - LOOKBACK)
        back = skeleton[low:seed]
        start = seed - (len(back) - len(back.rstrip(_CHAIN_BYTES)))
        end = _REGION_REST.match(skeleton, seed).end()  # type: ignore[union-attr]  # always matches
        _count_region(scan, start, end, start == low and low > position, counts)
        position = max(end, seed + 1)
    if b"." in skeleton:
        _count_ipv4(scan, counts)
    scan.memo[_MEMO_KEY] = counts
    return counts
