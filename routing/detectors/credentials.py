"""API keys and tokens by their issuers' formats: OpenAI, Anthropic, AWS, GitHub (every prefix and
fine-grained PATs), Slack (every token kind, app tokens and incoming-webhook URLs), Stripe (secret,
restricted and webhook-signing keys), Hugging Face, Google API keys, JWTs whose header decodes,
and private-key bodies pasted without their PEM header.

Each of them starts a "long token" -- a run of 15+ ``[A-Za-z0-9_-]`` bytes (a JWT's header
segment is one) -- so one pass looks only at those, few in ordinary text. A token is skipped
unless it has letters and an issuer prefix (all-lowercase tokens -- identifiers, hashes, UUIDs --
can only be old Slack tokens). A key may begin only where the token begins or, for the formats
whose keys end at the next ``-`` (Stripe, AWS, GitHub), right after a ``-``: so each byte is read
a bounded number of times, and a token made of a million prefixes costs linear time.
One detector per format shares the counts.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import cast

from routing.detectors.base import FunctionDetector, Scan, word_byte_before
from routing.detectors.checks import shannon_entropy
from routing.types import Sensitivity

_HAS_DIGIT = re.compile(rb"\d")
_HAS_LETTER = re.compile(rb"[A-Za-z]")


def _random_looking(token: bytes, min_entropy: float = 3.0) -> bool:
    """Real keys mix letters and digits; ``sk-learn-is-a-great-library`` does not."""
    return bool(_HAS_DIGIT.search(token) and _HAS_LETTER.search(token)) and shannon_entropy(token.decode()) >= min_entropy


def _mixed_case_or_digits(token: bytes) -> bool:
    """Hugging Face tokens are random letters, sometimes without a digit: mixed case will do."""
    body = token[3:]
    mixed = not body.islower() and not body.isupper()
    return (mixed or bool(_HAS_DIGIT.search(body))) and shannon_entropy(body.decode()) >= 3.0


def _openai_valid(match: re.Match[bytes], data: bytes) -> bool:
    return not word_byte_before(data, match.start(), b"-") and _random_looking(match.group(1))


def _jwt_valid(match: re.Match[bytes], data: bytes) -> bool:
    if word_byte_before(data, match.start(), b"-"):
        return False
    header = match.group(1)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + b"=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return False
    return isinstance(decoded, dict) and "alg" in decoded


Validator = Callable[[re.Match[bytes], bytes], bool]

# detector name -> (issuer prefix, full format matched at the prefix, validator)
FORMATS: dict[str, tuple[bytes, re.Pattern[bytes], Validator]] = {
    "anthropic_api_key": (
        rb"sk-ant-",
        re.compile(rb"sk-ant-([A-Za-z0-9_-]{20,250})(?![A-Za-z0-9_-])"),
        _openai_valid,
    ),
    "openai_api_key": (
        rb"sk-",
        re.compile(rb"sk-(?:proj-|svcacct-|admin-)?([A-Za-z0-9_-]{20,250})(?![A-Za-z0-9_-])"),
        _openai_valid,
    ),
    # sk_/rk_ secret and restricted keys; pk_ (publishable) keys are public by design
    "stripe_secret_key": (
        rb"[sr]k_(?:live|test)_",
        re.compile(rb"[sr]k_(?:live|test)_[A-Za-z0-9]{16,247}(?![A-Za-z0-9])"),
        lambda m, data: not word_byte_before(data, m.start()),
    ),
    # access key ids: AKIA (long-term), ASIA (temporary), ABIA, ACCA, then 16 base-32 characters
    "aws_access_key": (
        rb"A(?:KIA|SIA|BIA|CCA)",
        re.compile(rb"A(?:KIA|SIA|BIA|CCA)[A-Z2-7]{16}(?![A-Za-z0-9])"),
        lambda m, data: not word_byte_before(data, m.start()),
    ),
    "github_token": (
        rb"gh[pousr]_|github_pat_",
        re.compile(rb"(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{50,250})(?![A-Za-z0-9_])"),
        lambda m, data: not word_byte_before(data, m.start()) and _random_looking(m.group()),
    ),
    "stripe_webhook_secret": (
        rb"whsec_",
        re.compile(rb"whsec_[A-Za-z0-9]{24,247}(?![A-Za-z0-9])"),
        lambda m, data: not word_byte_before(data, m.start()),
    ),
    # bot, user, app-level, legacy, refresh, configuration, client and cookie tokens
    "slack_token": (
        rb"xox[abposrcde]-|xapp-",
        re.compile(rb"(?:xox[abposrcde]|xapp)-[A-Za-z0-9-]{10,250}(?![A-Za-z0-9-])"),
        lambda m, data: not word_byte_before(data, m.start(), b"-") and bool(_HAS_DIGIT.search(m.group())),
    ),
    "huggingface_token": (
        rb"hf_",
        re.compile(rb"hf_[A-Za-z0-9]{30,40}(?![A-Za-z0-9_-])"),
        lambda m, data: not word_byte_before(data, m.start()) and _mixed_case_or_digits(m.group()),
    ),
    "google_api_key": (
        rb"AIza",
        re.compile(rb"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
        lambda m, data: not word_byte_before(data, m.start()),
    ),
    "jwt": (
        rb"eyJ",
        re.compile(rb"(eyJ[A-Za-z0-9_-]{8,})\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"),
        _jwt_valid,
    ),
}
_NOT_LETTERS = b"0123456789_-"
_PREFIX_LITERALS = (
    b"sk-",
    b"k_live_",
    b"k_test_",
    b"AKIA",
    b"ASIA",
    b"ABIA",
    b"ACCA",
    b"gh",
    b"github_pat_",
    b"xox",
    b"xapp",
    b"eyJ",
    b"whsec_",
    b"hf_",
    b"AIza",
)
# The DER start of every private-key encoding, as base64 (a body's first bytes): PKCS#1 RSA and
# DSA, PKCS#8 (plain, EC, Ed25519, encrypted), SEC1 EC (P-256/384/521), and OpenSSH's own format.
_KEY_BODY = re.compile(
    rb"(?:MII[A-Za-z0-9+/]{3}(?:IBA(?:AK|DA)|BOBgkqhkiG9w0BBQ)|MIG[A-Za-z0-9+/]AgEAM|MHcCAQEE|MIGkAgEBBD"
    rb"|MIHcAgEBBE|MC4CAQAw|MFECAQEw|b3BlbnNzaC1rZXktdjE)[A-Za-z0-9+/=\s]{40}"
)
_SLACK_WEBHOOK = re.compile(rb"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/-]{20,}")
_ANY_PREFIX = re.compile(b"|".join(b"(?P<%s>%s)" % (name.encode(), fmt[0]) for name, fmt in FORMATS.items()))
# a "-" inside a token that a Stripe, AWS or GitHub key may follow (the others reject a "-" before)
_DASH_THEN_KEY = re.compile(
    rb"-(?=" + b"|".join(FORMATS[name][0] for name in ("stripe_secret_key", "aws_access_key", "github_token")) + rb")"
)
_MEMO_KEY = "credentials"


def credential_counts(scan: Scan) -> dict[str, int]:
    """Matches per format inside the scan's long tokens, computed once and shared."""
    cached = scan.memo.get(_MEMO_KEY)
    if cached is not None:
        return cast("dict[str, int]", cached)
    counts = dict.fromkeys(FORMATS, 0)
    counts["private_key_body"] = 0
    data = scan.data
    for start, end in scan.long_tokens:
        token = data[start:end]
        if token[:1] in b"Mb" and _KEY_BODY.match(data, start) is not None:
            counts["private_key_body"] += 1
            continue
        if token.islower():
            if b"xox" not in token and b"xapp" not in token:
                continue
        elif not token.translate(None, _NOT_LETTERS) or not any(lit in token for lit in _PREFIX_LITERALS):
            continue
        starts = [start]
        if b"-" in token:
            starts.extend(dash.end() for dash in _DASH_THEN_KEY.finditer(data, start, end))
        for at in starts:
            prefix = _ANY_PREFIX.match(data, at, end)
            if prefix is None:
                continue
            name = prefix.lastgroup
            assert name is not None
            _, pattern, validate = FORMATS[name]
            full = pattern.match(data, at)  # not bounded by the token: a JWT runs on past its header
            if full is not None and validate(full, data):
                counts[name] += 1
    hook = data.find(b"hooks.slack.com/")
    while hook >= 0:
        if _SLACK_WEBHOOK.match(data, hook) is not None:
            counts["slack_token"] += 1
        hook = data.find(b"hooks.slack.com/", hook + 16)
    scan.memo[_MEMO_KEY] = counts
    return counts


def private_key_bodies(scan: Scan) -> int:
    """Base64 private-key bodies that start a long token (pasted without a PEM header)."""
    return credential_counts(scan)["private_key_body"]


def _detector(name: str) -> FunctionDetector:
    return FunctionDetector(name, Sensitivity.RESTRICTED, lambda scan: credential_counts(scan)[name])


DETECTORS = tuple(_detector(name) for name in FORMATS)
