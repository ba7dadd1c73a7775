"""Secrets that are not token-shaped: private keys, passwords in connection URLs, and
``password = value`` / ``"api_key": "value"`` / ``token is value`` assignments whose value looks
random."""

from __future__ import annotations

import re

from routing.detectors.base import FunctionDetector, Scan
from routing.detectors.checks import looks_like_placeholder, shannon_entropy
from routing.detectors.credentials import private_key_bodies
from routing.types import Sensitivity

RESTRICTED = Sensitivity.RESTRICTED
_HAS_LETTER = re.compile(rb"[A-Za-z]")

# ---- private keys: a PEM header whose label names a private key, then key material within a few
# lines (a header alone is not a key); or a body without its header (credentials.private_key_bodies)

# the label's class excludes "-", so the run ends at the first dash: no backtracking into it
_PEM_HEADER = re.compile(rb"-----BEGIN ([A-Z0-9 ]{0,48})-----")
_PEM_LABELS = (b"PRIVATE KEY", b"PRIVATE KEY BLOCK")
_KEY_MATERIAL = re.compile(rb"[A-Za-z0-9+/=]{32}")
_BODY_WINDOW = 4096
_BODY_LINES = 12
_LINE_PREFIX = 80


def _material_follows(data: bytes, position: int) -> bool:
    """Base64 within the next few lines, skipping blank lines and ``Proc-Type:``-style headers.
    Reads at most :data:`_BODY_LINES` lines of :data:`_LINE_PREFIX` bytes, whatever the input."""
    limit = min(len(data), position + _BODY_WINDOW)
    cut = data.find(b"\x00", position, limit)
    if cut >= 0:
        limit = cut
    for _ in range(_BODY_LINES):
        if position >= limit:
            return False
        newline = data.find(b"\n", position, limit)
        line_end = limit if newline < 0 else newline
        line = data[position : min(line_end, position + _LINE_PREFIX)].strip()
        position = line_end + 1
        if not line or b":" in line[:40]:
            continue  # blank, or Proc-Type: 4,ENCRYPTED / DEK-Info: ... / Comment: ...
        return _KEY_MATERIAL.match(line) is not None
    return False


def _count_pem_headers(data: bytes) -> int:
    found = 0
    hit = data.find(b"-----BEGIN ")
    while hit >= 0:
        header = _PEM_HEADER.match(data, hit)
        resume = hit + 11
        if header is not None:
            label = header.group(1).rstrip()
            if label.endswith(_PEM_LABELS) and _material_follows(data, header.end()):
                found += 1
            resume = header.end()
        hit = data.find(b"-----BEGIN ", resume)
    hit = data.find(b"PuTTY-User-Key-File-")
    while hit >= 0:
        window_end = data.find(b"\x00", hit, hit + _BODY_WINDOW)
        if data.find(b"Private-Lines:", hit, window_end if window_end >= 0 else hit + _BODY_WINDOW) >= 0:
            found += 1
        hit = data.find(b"PuTTY-User-Key-File-", hit + 20)
    return found


def _count_private_keys(scan: Scan) -> int:
    """Headed blocks, or (when there is none) bodies without a header: never the same key twice."""
    return _count_pem_headers(scan.data) or private_key_bodies(scan)


PRIVATE_KEY = FunctionDetector("private_key", RESTRICTED, _count_private_keys)

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
_SECRET_ANCHORS = (b"pass", b"pwd", b"secret", b"token", b"credential", b"key", b"bearer")
_KEY_PREFIXES = (b"api", b"_", b"-", b"api ")
# the rest of the name and the operator (``=``, ``:``, ``:=``, ``=>``, `` is ``, or just a space,
# as in "Bearer <token>"); every repetition is bounded, and the value is read separately below
_ASSIGNMENT = re.compile(
    rb"[a-z0-9_.-]{0,30}[\"']?(?:[ \t]{0,3}(?::=|=>|:|=)[ \t]{0,3}|[ \t]{1,3}(?:is|was)[ \t]{1,3}|[ \t]{1,3})[\"'`]?"
)
_VALUE_RUN = re.compile(rb"[^\s\"'`,;()\[\]{}<>\x00]*")
_VALUE_END = frozenset(b" \t\n\r\x0b\x0c\"'`,;)]}\x00")
_DOTTED_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_SYMBOL_OR_DIGIT = re.compile(rb"[^A-Za-z_.]")


def _secret_value(value: bytes) -> bool:
    if _DOTTED_NAME.fullmatch(value) or not _HAS_LETTER.search(value) or not _SYMBOL_OR_DIGIT.search(value):
        return False  # attribute access, a plain identifier, or a number: code, not a secret
    text = value.decode("utf-8", "replace")
    return not looks_like_placeholder(text) and shannon_entropy(text) >= 3.0


def _assigned_value(lower: bytes, position: int) -> tuple[int, int] | None:
    """``(start, end)`` of an 8-256 byte value assigned at ``position``, ended by a delimiter."""
    assignment = _ASSIGNMENT.match(lower, position)
    if assignment is None:
        return None
    start = assignment.end()
    end = _VALUE_RUN.match(lower, start).end()  # type: ignore[union-attr]  # always matches
    if not 8 <= end - start <= 256 or (end < len(lower) and lower[end] not in _VALUE_END):
        return None
    return start, end


def _count_secret_assignments(scan: Scan) -> int:
    lower = scan.lower
    values: set[int] = set()  # value offsets: "secret_key=..." is one secret, not two
    for anchor in _SECRET_ANCHORS:
        hit = lower.find(anchor)
        while hit >= 0:
            resume = hit + len(anchor)
            if anchor != b"key" or lower[max(0, hit - 4) : hit].endswith(_KEY_PREFIXES):
                value = _assigned_value(lower, resume)
                if value is None:
                    # nothing in the rest of this unbroken run can be a bounded value either
                    resume = max(resume, _VALUE_RUN.match(lower, resume).end())  # type: ignore[union-attr]
                elif value[0] not in values and _secret_value(scan.data[value[0] : value[1]]):
                    values.add(value[0])
            hit = lower.find(anchor, resume)
    return len(values)


SECRET_ASSIGNMENT = FunctionDetector("secret_assignment", RESTRICTED, _count_secret_assignments)

DETECTORS = (PRIVATE_KEY, URL_PASSWORD, SECRET_ASSIGNMENT)
