"""Email addresses, phone numbers and IP addresses (confidential by default)."""

from __future__ import annotations

import ipaddress
import re

from routing.detectors.base import Scan, word_byte_before

# ---- email: anchored on each "@", so a long run of word characters costs nothing

_LOCAL_PART = re.compile(rb"(?:^|[^A-Za-z0-9._%+-])([A-Za-z0-9._%+-]{1,64})\Z")
_DOMAIN = re.compile(
    rb"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}([A-Za-z]{2,24})(?![A-Za-z0-9-]|\.[A-Za-z0-9])"
)
# "icon@2x.png", "pkg@1.2.js": file names, not addresses.
_FILE_SUFFIXES = frozenset({b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"bmp", b"ico", b"js", b"css", b"json", b"ts"})
# "scheme://user:pass@host": the url_password detector's business, not an address.
_IN_URL_USERINFO = re.compile(rb"://[^\s/@]*\Z")


def count_emails(scan: Scan) -> int:
    """``local@domain.tld`` with RFC 5321 length limits and no empty or dotted-edge local part."""
    data = scan.data
    found = 0
    at = data.find(b"@")
    while at >= 0:
        local = _LOCAL_PART.search(data, max(0, at - 65), at)
        domain = _DOMAIN.match(data, at + 1) if local else None
        if local and domain and not _IN_URL_USERINFO.search(data, max(0, at - 300), at):
            name = local.group(1)
            tld = domain.group(1).lower()
            if not (name.startswith(b".") or name.endswith(b".") or b".." in name or tld in _FILE_SUFFIXES):
                found += 1
        at = data.find(b"@", at + 1)
    return found


# ---- phones and IPv4: patterns run inside the numeric windows found by .numeric

# "+CC" then more digits in groups; the digit count (8-15, E.164) is checked afterwards.
INTERNATIONAL_PHONE_PATTERN = rb"(?<![\w+])\+[1-9](?:[ .-]?\(?\d{1,5}\)?){1,7}(?![\w-]|[.,]\d)"
# NANP: area code [2-9][0-8]x, exchange [2-9]xx, separators required (bare 10-digit runs are ids).
NORTH_AMERICAN_PHONE_PATTERN = (
    rb"(?<![\w+.-])(?:1[ .-]?)?(?:\([2-9][0-8]\d\)[ .-]?|[2-9][0-8]\d[ .-])[2-9]\d{2}[ .-]\d{4}(?![\w-]|[.,]\d)"
)
_DIGIT = re.compile(rb"\d")


def international_phone_valid(match: re.Match[bytes], data: bytes) -> bool:
    return 8 <= len(_DIGIT.findall(match.group())) <= 15


IPV4_PATTERN = rb"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)"
_VERSION_BEFORE = re.compile(rb"(?:\bv|\bversion|\bver|\brelease|\brev)\.?\s*[:=]?\s*\Z")


def _reportable(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # loopback, 0.0.0.0 / ::, and reserved ranges (255.255.255.0 masks) identify nobody
    return not (address.is_loopback or address.is_unspecified or address.is_reserved)


def ipv4_valid(match: re.Match[bytes], data: bytes) -> bool:
    """``ipaddress`` accepts it, and it is not written as a version ("v 1.2.3.4")."""
    try:
        address = ipaddress.IPv4Address(match.group().decode())
    except ValueError:
        return False
    start = match.start()
    return _reportable(address) and not _VERSION_BEFORE.search(data[max(0, start - 12) : start].lower())


# An IPv6 address contains "::" or seven ":"; both kinds of seed are found by literal searches.
_V6_FULL_SEED = re.compile(rb":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_V6_BACK = re.compile(rb"[0-9A-Fa-f:]{0,39}\Z")
_V6_CANDIDATE = re.compile(rb"[0-9A-Fa-f:]{2,39}(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?![\w:.])")
_V6_GROUP = re.compile(rb"[0-9A-Fa-f]{3,4}")


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
        back = _V6_BACK.search(data, max(0, seed - 39), seed)
        start = back.start() if back else seed
        candidate = _V6_CANDIDATE.match(data, start)
        if candidate is None or word_byte_before(data, start, b":."):
            continue
        covered = candidate.end()
        text = candidate.group()
        if (b"::" in text or text.count(b":") == 7) and _V6_GROUP.search(text):
            try:
                address = ipaddress.IPv6Address(text.decode())
            except ValueError:
                continue
            if _reportable(address):
                found += 1
    return found
