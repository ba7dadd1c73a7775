"""Secrets that are not token-shaped: private-key blocks, passwords in connection URLs, and
``password = value`` style assignments whose value looks random."""

from __future__ import annotations

import re

from routing.detectors.base import FunctionDetector, RegexDetector, Scan
from routing.detectors.checks import looks_like_placeholder, shannon_entropy
from routing.types import Sensitivity

RESTRICTED = Sensitivity.RESTRICTED
_HAS_LETTER = re.compile(rb"[A-Za-z]")

# A header, optional "Proc-Type:"-style lines, then key material (a header alone is not a key).
PRIVATE_KEY = RegexDetector(
    "private_key", RESTRICTED,
    re.compile(
        rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        rb"(?:\s|\\n|\\r){0,16}(?:[A-Za-z-]{1,40}:[^\n]{0,200}?(?:\n|\\n)(?:\s|\\n|\\r){0,16}){0,8}[A-Za-z0-9+/=]{32}"
    ),
)

# ---- passwords in connection URLs: anchored on each "://"

_SCHEME = re.compile(rb"(?:^|[^A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,30}\Z")
_USERINFO = re.compile(rb"[^\s:/@?#\[\]]{0,128}:([^\s/?#]{1,256})@[A-Za-z0-9\[]")


def _count_url_passwords(scan: Scan) -> int:
    data = scan.data
    found = 0
    hit = data.find(b"://")
    while hit >= 0:
        userinfo = _USERINFO.match(data, hit + 3)
        if userinfo and _SCHEME.search(data, max(0, hit - 32), hit):
            if not looks_like_placeholder(userinfo.group(1).decode("utf-8", "replace")):
                found += 1
        hit = data.find(b"://", hit + 3)
    return found


URL_PASSWORD = FunctionDetector("url_password", RESTRICTED, _count_url_passwords)

# ---- generic "password = value" assignments, judged by the value's entropy

# Where a secret's name may be: each anchor, then the rest of the name (``password`` -> ``pass`` +
# ``word``, ``aws_secret_access_key`` -> ``secret`` + ``_access_key``). "key" only counts after
# "api", "_" or "-" (``api_key``, ``access-key``), not in "primary key" or "keyboard".
_SECRET_ANCHORS = (b"pass", b"pwd", b"secret", b"token", b"credential", b"key")
_KEY_PREFIXES = (b"api", b"_", b"-")
_ASSIGNED_VALUE = re.compile(
    rb"[a-z0-9_.-]{0,30}[\"']?[ \t]{0,3}(?::=|=>|:|=)[ \t]{0,3}[\"'`]?"
    rb"([^\s\"'`,;()\[\]{}<>]{8,256})(?=[\s\"'`,;)\]}]|\Z)"
)
_DOTTED_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_SYMBOL_OR_DIGIT = re.compile(rb"[^A-Za-z_.]")


def _secret_value(value: bytes) -> bool:
    if _DOTTED_NAME.fullmatch(value) or not _HAS_LETTER.search(value) or not _SYMBOL_OR_DIGIT.search(value):
        return False  # attribute access, a plain identifier, or a number: code, not a secret
    text = value.decode("utf-8", "replace")
    return not looks_like_placeholder(text) and shannon_entropy(text) >= 3.0


_VALUE_RUN = re.compile(rb"[^\s\"'`,;()\[\]{}<>]*")


def _count_secret_assignments(scan: Scan) -> int:
    lower = scan.lower
    values: set[int] = set()  # value offsets: "secret_key=..." is one secret, not two
    for anchor in _SECRET_ANCHORS:
        hit = lower.find(anchor)
        while hit >= 0:
            resume = hit + len(anchor)
            if anchor != b"key" or lower[max(0, hit - 3) : hit].endswith(_KEY_PREFIXES):
                assigned = _ASSIGNED_VALUE.match(lower, resume)
                if assigned is None:
                    # nothing in the rest of this unbroken run can be a bounded value either
                    resume = max(resume, _VALUE_RUN.match(lower, resume).end())  # type: ignore[union-attr]
                elif assigned.start(1) not in values:
                    if _secret_value(scan.data[assigned.start(1) : assigned.end(1)]):
                        values.add(assigned.start(1))
            hit = lower.find(anchor, resume)
    return len(values)


SECRET_ASSIGNMENT = FunctionDetector("secret_assignment", RESTRICTED, _count_secret_assignments)

DETECTORS = (PRIVATE_KEY, URL_PASSWORD, SECRET_ASSIGNMENT)
