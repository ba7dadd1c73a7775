"""Email addresses (IDN domains too), IPv4 validation and IPv6 addresses (confidential by default).

Phone numbers and dotted IPv4 addresses are found by the shared numeric pass (:mod:`.numeric`).
"""

from __future__ import annotations

import ipaddress
import re

from routing.detectors.base import Scan, word_byte_before

# ---- email: one pattern from the "@" (a literal the engine skips to) over the domain, iterated in
# C: labels cannot contain "." so each is read one way, and every repetition is bounded; the local
# part is then read backwards with a bytes.rstrip. An internationalised domain is UTF-8 here, so
# bytes >= 0x80 are label characters; its top-level domain is ASCII letters, punycode, or non-ASCII.

_LOCAL_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-"
_AT_DOMAIN = re.compile(
    rb"@(?:[A-Za-z0-9\x80-\xff][A-Za-z0-9\x80-\xff-]{0,62}\.){1,8}"
    rb"([A-Za-z]{2,24}|xn--[A-Za-z0-9-]{1,59}|[\x80-\xff]{2,64})(?![A-Za-z0-9\x80-\xff-]|\.[A-Za-z0-9\x80-\xff])"
)
# "icon@2x.png", "pkg@1.2.js": file names, not addresses.
_FILE_SUFFIXES = frozenset({b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"bmp", b"ico", b"js", b"css", b"json", b"ts"})
# "scheme://user:pass@host": the url_password detector's business, not an address.
_IN_URL_USERINFO = re.compile(rb"://[^\s/@]*\Z")


def count_emails(scan: Scan) -> int:
    """``local@domain.tld`` with RFC 5321 length limits and no empty or dotted-edge local part."""
    data = scan.data
    if b"@" not in data:
        return 0
    found = 0
    for match in _AT_DOMAIN.finditer(data):
        at = match.start()
        if match.group(1).lower() in _FILE_SUFFIXES:
            continue
        window = data[max(0, at - 65) : at]
        name = window[len(window.rstrip(_LOCAL_CHARS)) :]
        if not 1 <= len(name) <= 64 or name.startswith(b".") or name.endswith(b".") or b".." in name:
            continue
        if not _IN_URL_USERINFO.search(data, max(0, at - 300), at):
            found += 1
    return found


# ---- IPv4 (the numeric pass finds dotted quads; this decides whether one is an address)

_VERSION_BEFORE = re.compile(rb"(?:\bv|\bversion|\bver|\brelease|\brev)\.?\s*[:=]?\s*\Z")


def _reportable(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # loopback, 0.0.0.0 / ::, and reserved ranges (255.255.255.0 masks) identify nobody
    return not (address.is_loopback or address.is_unspecified or address.is_reserved)


def ipv4_valid(data: bytes, start: int, end: int) -> bool:
    """``ipaddress`` accepts ``data[start:end]``, and it is not written as a version ("v 1.2.3.4")."""
    try:
        address = ipaddress.IPv4Address(data[start:end].decode())
    except ValueError:
        return False
    return _reportable(address) and not _VERSION_BEFORE.search(data[max(0, start - 12) : start].lower())


# An IPv6 address contains "::" or seven ":"; both kinds of seed are found by literal searches,
# and each run of hex digits, colons and dots around them is read once.
_V6_FULL_SEED = re.compile(rb":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_V6_CHARS = b"0123456789ABCDEFabcdef:."
_V6_RUN = re.compile(rb"[0-9A-Fa-f:.]*")
_V6_GROUP = re.compile(rb"[0-9A-Fa-f]{3,4}")
_V6_LONGEST = 45  # "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"


def _v6_seeds(data: bytes) -> list[int]:
    seeds = []
    hit = data.find(b"::")
    while hit >= 0:
        seeds.append(hit)
        hit = data.find(b"::", hit + 2)
    if data.count(b":") >= 7:
        seeds.extend(m.start() for m in _V6_FULL_SEED.finditer(data))
        seeds.sort()
    return seeds


def count_ipv6(scan: Scan) -> int:
    """Full or ``::``-compressed IPv6 addresses that ``ipaddress`` accepts.

    At least one group of 3-4 hex digits is required, so ``std::vector`` or ``a[1::2]`` are not
    addresses.
    """
    data = scan.data
    found = 0
    covered = -1
    for seed in _v6_seeds(data):
        if seed < covered:
            continue
        end = _V6_RUN.match(data, seed).end()  # type: ignore[union-attr]  # always matches
        covered = end
        window = data[max(0, seed - _V6_LONGEST) : seed]
        start = seed - (len(window) - len(window.rstrip(_V6_CHARS)))
        text = data[start:end].rstrip(b".")
        if len(text) > _V6_LONGEST or word_byte_before(data, start) or data[end : end + 1] in _WORD_TAIL:
            continue
        if (b"::" in text or text.count(b":") == 7) and _V6_GROUP.search(text):
            try:
                address = ipaddress.IPv6Address(text.decode())
            except ValueError:
                continue
            if _reportable(address):
                found += 1
    return found


_WORD_TAIL = frozenset(bytes([b]) for b in b"GHIJKLMNOPQRSTUVWXYZghijklmnopqrstuvwxyz_")
