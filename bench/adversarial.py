"""Inputs built to make text scanners slow: the known killers (a PEM header followed by lines with
a literal backslash-n; digit-heavy text for the phone patterns), repeated prefixes and separators
of every detector, and Unicode-heavy text. Shared by the detector benchmark and the linear-time
tests: ``adversarial(name, size)`` repeats a unit to ``size`` bytes of UTF-8."""

from __future__ import annotations

UNITS: dict[str, str] = {
    "pem header + literal \\n lines": "-----BEGIN RSA PRIVATE KEY-----\\nProc-Type: a\\nA:\\nA:\\nA:\\n",
    "pem header repeated": "-----BEGIN PRIVATE KEY-----",
    "-----BEGIN repeated": "-----BEGIN ",
    "key body prefixes": "MIIEpAIBAAK ",
    "phone: +1 digits": "+1 ",
    "phone: +(1) 2-3.4/": "+(1) 2-3.4/",
    "digits and spaces": "1 ",
    "digits and dashes": "1-",
    "digit run": "1234567890",
    "card groups": "4111 ",
    "card groups, commas": "4111,",
    "valid cards in CSV": "4111111111111111,",
    "ssn shapes": "123-45-",
    "ssn context": "ssn 123456789 ",
    "phone context": "call 4155552671 ",
    "dotted digits": "1.",
    "dotted quads": "1.1.1.1.",
    "sk- repeated": "sk-",
    "sk-sk- token": "sk-sk-sk-sk-a1",
    "AKIA- repeated": "AKIA-",
    "xoxb- repeated": "xoxb-",
    "ghp_ repeated": "ghp_",
    "hf_ / AIza repeated": "hf_AIza",
    "eyJ repeated": "eyJ",
    "slack webhook prefix": "hooks.slack.com/",
    "PuTTY header": "PuTTY-User-Key-File-",
    "@@@@": "@",
    "a@b.": "a@b.",
    "@a.": "@a.",
    "::::": ":",
    "1::": "1::",
    "a:1:": "a:1:",
    "password=": "password=",
    "token is": "token is ",
    "api_key json": '"api_key": "',
    "url userinfo": "a://b:c@",
    "://": "://",
    "DE89 repeated": "DE89 ",
    "DE89 glued": "DE89",
    "escaped \\n": "\\n",
    "escaped \\u00a0": "4\\u00a0",
    "full-width digits": "４",
    "Arabic-Indic digits and spaces": "٤ ",
    "zero-width space": "\u200b",
    "narrow NBSP digits": "4111\u202f",
    "CJK text": "中文の文章、",
    "accented letters": "é",
    "mixed Unicode": "４\u200b٤\u00a0－＠ｅ",
}


def adversarial(name: str, size: int) -> str:
    """``UNITS[name]`` repeated to about ``size`` bytes of UTF-8."""
    unit = UNITS[name]
    return unit * max(1, size // len(unit.encode("utf-8")))
