"""The ways real users, apps and hostile callers write sensitive data, each of which must be found
(the outside review's 132 variants, grouped), and the look-alikes that must not fire."""

from __future__ import annotations

import base64
import json

import pytest

from routing.content import extract_content
from routing.sensitivity import SensitivityClassifier
from routing.spec import SensitivityPolicy
from routing.types import RoutingRequest, Sensitivity
from tests.routing.factories import entities

CARD = "4111111111111111"
CARD_GROUPS = ("4111", "1111", "1111", "1111")
SSN = ("123", "45", "6789")
IBAN_GROUPS = ("DE89", "3704", "0044", "0532", "0130", "00")

SEPARATORS = {
    "space": " ",
    "NBSP": "\u00a0",
    "narrow NBSP": "\u202f",
    "thin space": "\u2009",
    "figure space": "\u2007",
    "ideographic space": "\u3000",
    "dash": "-",
    "en-dash": "\u2013",
    "em-dash": "\u2014",
    "minus sign": "\u2212",
    "non-breaking hyphen": "\u2011",
    "dot": ".",
    "underscore": "_",
    "slash": "/",
    "doubled space": "  ",
    "spaced dash": " - ",
    "line break": "\n",
    "CRLF": "\r\n",
    "tab": "\t",
    "literal backslash-n": "\\n",
}
DIGIT_SCRIPTS = {
    "full-width": 0xFF10,
    "Arabic-Indic": 0x0660,
    "Eastern Arabic": 0x06F0,
    "Devanagari": 0x0966,
    "Bengali": 0x09E6,
    "Thai": 0x0E50,
}
ZERO_WIDTH = {
    "ZWSP": "\u200b",
    "ZWNJ": "\u200c",
    "ZWJ": "\u200d",
    "word joiner": "\u2060",
    "BOM": "\ufeff",
    "soft hyphen": "\u00ad",
}


def in_script(text: str, zero: int) -> str:
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in text)


@pytest.mark.parametrize("name", sorted(SEPARATORS))
def test_cards_ssns_and_ibans_with_any_separator(name: str) -> None:
    sep = SEPARATORS[name]
    assert "credit_card" in entities(f"card: {sep.join(CARD_GROUPS)} thanks"), name
    assert "iban" in entities(f"IBAN {sep.join(IBAN_GROUPS)} please"), name
    if sep != "/":  # 123/45/6789 reads as a date-like code; SSNs are written with spaces, dashes, dots
        assert "us_ssn" in entities(f"ssn {sep.join(SSN)}"), name


@pytest.mark.parametrize(
    "mixed", ["4111 1111-1111.1111", "4111\u00a01111\u20131111 1111", "4111 -- 1111 __ 1111  1111", "4111\n1111 \n1111\r\n1111"]
)
def test_cards_with_mixed_or_doubled_separators(mixed: str) -> None:
    assert entities(mixed) == {"credit_card": 1}


@pytest.mark.parametrize("script", sorted(DIGIT_SCRIPTS))
def test_digits_in_any_script(script: str) -> None:
    zero = DIGIT_SCRIPTS[script]
    assert "credit_card" in entities(in_script(" ".join(CARD_GROUPS), zero))
    assert "us_ssn" in entities(in_script("SSN 123-45-6789", zero))
    assert "iban" in entities(in_script(" ".join(IBAN_GROUPS), zero))
    assert "phone" in entities(in_script("+44 20 7946 0958", zero))


@pytest.mark.parametrize("name", sorted(ZERO_WIDTH))
def test_zero_width_characters_inside_anything(name: str) -> None:
    zw = ZERO_WIDTH[name]
    assert "credit_card" in entities(zw.join(CARD))
    assert "us_ssn" in entities(zw.join("123-45-6789"))
    assert "iban" in entities(zw.join("DE89370400440532013000"))
    assert "email" in entities(zw.join("jane.doe@example.com"))
    assert "openai_api_key" in entities("sk-" + zw.join("aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5bC7dE9fG"))


@pytest.mark.parametrize(
    "text,entity",
    [
        ("John,4111111111111111,12/26", "credit_card"),
        ("name,card,exp\nJohn,4111 1111 1111 1111,12/26", "credit_card"),
        ('"John";"4111111111111111";"12/26"', "credit_card"),
        ("[4111,1111,1111,1111]", "credit_card"),
        ('{"card":[4111,1111,1111,1111]}', "credit_card"),
        ('{"card": ["4111", "1111", "1111", "1111"]}', "credit_card"),
        ("(4111111111111111)", "credit_card"),
        ("card#4111111111111111;", "credit_card"),
        ("4111111111111111/12/26", "credit_card"),
        ("Amex 3782-822463-10005", "credit_card"),
        ("John,123-45-6789,NY", "us_ssn"),
        ('{"ssn":"123-45-6789"}', "us_ssn"),
        ("my social is 123456789", "us_ssn"),
        ("SSN 123456789", "us_ssn"),
        ("social security number: 123 45 6789", "us_ssn"),
        ("123456789 is my SSN", "us_ssn"),
        ("my SSN is 123 456 789", "us_ssn"),
        ("iban:DE89370400440532013000,", "iban"),
        ("Kontonummer/IBAN: de89 3704 0044 0532 0130 00.", "iban"),
        ("jane@bücher.de", "email"),
        ("jane@xn--bcher-kva.de", "email"),
        ("jane＠example．com", "email"),
        ("ｊａｎｅ＠ｅｘａｍｐｌｅ．ｃｏｍ", "email"),
        ("用户 bob@例子.广告", "email"),
        ("<jane.doe@example.co.uk>", "email"),
        ("Tel: 020 7946 0958", "phone"),
        ("mobile 07700 900123", "phone"),
        ("Telefon: 030 12345678", "phone"),
        ("Handy 0151 23456789", "phone"),
        ("call me at 4155552671", "phone"),
        ("phone: (020) 7946 0958", "phone"),
        ("tél. 01 23 45 67 89", "phone"),
        ("+44 (0)20 7946 0958", "phone"),
        ("+49 30 12345678", "phone"),
        ("+1\u00a0415\u00a0555\u00a02671", "phone"),
        ("415.555.2671", "phone"),
        ("IP 192.168.1.10,", "ip_address"),
        ("[10.0.0.5]:8080", "ip_address"),
        ("hf_AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh", "huggingface_token"),
        ("key=AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "google_api_key"),
        ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "slack_token"),
        ("xapp-1-A0123456789-1234567890123-abcdef0123456789", "slack_token"),
        ("xoxe.xoxp-1-Mi0yLTEyMzQ1Njc4OTAxMi0xMjM0NTY3ODkwMTIz", "slack_token"),
        ("https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX", "slack_token"),
        ("ghs_16C7e42F292c6912E7710c838347Ae178B4a", "github_token"),
        ("ghr_16C7e42F292c6912E7710c838347Ae178B4a", "github_token"),
        ("github_pat_11ABCDEFG0123456789abcd_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456", "github_token"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "stripe_webhook_secret"),
        ("token: 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "secret_assignment"),
        ('{"api_key": "Zq8vR3tY6wU1pK4mN7bX"}', "secret_assignment"),
        ("the password is Xk9#mP2$vL7q!", "secret_assignment"),
        ("Authorization: Bearer 9f8e7d6c5b4a39281706f5e4d3c2b1a0f", "secret_assignment"),
        ("-----BEGIN RSA PRIVATE KEY-----\\nMIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi0Z1BjP5CEWmRr500P\\n-----END", "private_key"),
        ('{"key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\\n"}', "private_key"),
        ("MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi0Z1BjP5CEWmRr500Pzl4bKx3Yv5/qR", "private_key"),
        ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKjMzEfYyji", "private_key"),
        ("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW", "private_key"),
        ("MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF", "private_key"),
        ("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\nAAAAIGs", "private_key"),
    ],
)
def test_ways_people_and_apps_write_it(text: str, entity: str) -> None:
    assert entity in entities(text), (text, entities(text))


@pytest.mark.parametrize(
    "text",
    [
        # dates, times, timestamps
        "2023-11-07",
        "07/11/2023",
        "2023.11.07 14:32:05",
        "2023-11-07T14:32:05.123Z",
        "1700000000",
        "1700000000123",
        "Mon, 07 Nov 2023 14:32:05 GMT",
        "between 2019, 2020, 2021 and 2022",
        # versions and ids
        "version 1.2.3.4",
        "v10.0.1",
        "python 3.11.7",
        "release 2024.10.1",
        "build 20231107.4",
        "order #20231107-5531",
        "ORD-2023-000123",
        "ticket 123456",
        "invoice INV-0042-2023",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "a4c3e0b2-7d1f-4e8a-9b6c-2f1e0d3c4b5a",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "ISBN 978-0-306-40615-7",
        "zip 94103-1234",
        # prices and quantities
        "$1,249.99",
        "€4.111,11",
        "1,234,567.89",
        "¥ 12,345",
        "total: 4111.11 USD",
        "3.14159 2.71828",
        "sizes 1024, 2048, 4096, 8192",
        "dims [1, 2, 3, 4]",
        "values: 512, 45, 1024",
        # code
        "for i in range(10000): x[i] = i * 2",
        "matrix = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]",
        "int port = 8080;",
        "0x7fffffff and 0xdeadbeef",
        "std::vector<int> v; a[1::2]",
        "@app.route('/users/<int:id>')",
        "npm i react@18.2.0",
        "token = tokenizer.encode(text)",
        "api_key = os.environ['OPENAI_API_KEY']",
        "password: ${DB_PASSWORD}",
        "sk-learn-is-a-great-library",
        "hf_hub_download(repo_id)",
        "icon@2x.png",
        # prose with numbers
        "The meeting moved from 3 pm to 4 pm on 11 November.",
        "Room 1203, floor 12, building 4.",
        "We shipped 4111 units in Q3 and 1111 in Q4.",
        "Chapter 4, section 11.1, page 1111.",
    ],
)
def test_look_alikes_do_not_fire(text: str) -> None:
    assert entities(text) == {}, (text, entities(text))


CLASSIFIER = SensitivityClassifier(SensitivityPolicy())


def level(body: dict, endpoint: str = "chat") -> Sensitivity:
    request = RoutingRequest(model="auto", endpoint=endpoint, body=body)  # type: ignore[arg-type]
    return CLASSIFIER.classify(request, extract_content(request.endpoint, body)).level


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


ASK = {"role": "user", "content": "hi"}
SECRET = "card 4111 1111 1111 1111"


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [ASK], "tools": [{"type": "function", "function": {"name": "f", "description": SECRET}}]},
        {
            "messages": [ASK],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"properties": {"x": {"enum": [SECRET]}}}}}],
        },
        {
            "messages": [ASK],
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"properties": {"x": {"default": 4111111111111111}}}},
                }
            ],
        },
        {"messages": [ASK], "functions": [{"name": "f", "description": SECRET}]},
        {"messages": [ASK], "response_format": {"type": "json_schema", "json_schema": {"schema": {"examples": [SECRET]}}}},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": f"https://x.test/a?{SECRET.replace(' ', '+')}"}}],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:text/plain;base64," + _b64(SECRET)}}],
                }
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/svg+xml," + SECRET.replace(" ", "%20")}}],
                }
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "file", "file": {"filename": f"{SECRET}.pdf", "file_id": "file-1"}}]}
            ]
        },
        {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_data": _b64(SECRET), "filename": "a.txt"}}]}]},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "file", "file": {"file_data": "data:application/json;base64," + _b64(json.dumps({"c": SECRET}))}}
                    ],
                }
            ]
        },
        {"messages": [ASK], "documents": [{"title": "notes", "text": SECRET}]},
        {"messages": [ASK], "prediction": {"type": "content", "content": [{"type": "text", "text": SECRET}]}},
        {"messages": [ASK], "user": SECRET},
        {"messages": [ASK], "metadata": {"note": SECRET}},
        {"messages": [ASK], "metadata": {SECRET: "key, not value"}},
        {"messages": [ASK], "extra_body_field": {"deep": [[{"x": SECRET}]]}},
        {"messages": [ASK], "vendor_option": 4111111111111111},
        {"messages": [ASK], "stop": [SECRET]},
        {"messages": [ASK], "input": SECRET},
        {
            "messages": [
                {
                    "role": "assistant",
                    "tool_calls": [{"function": {"name": "pay", "arguments": {"card": [4111, 1111, 1111, 1111]}}}],
                }
            ]
        },
        {
            "messages": [
                {"role": "assistant", "tool_calls": [{"function": {"name": "pay", "arguments": json.dumps({"card": SECRET})}}]}
            ]
        },
        {"messages": [{"role": "user", "content": "hi", "custom_field": SECRET}]},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "annotation": SECRET}]}]},
        {"messages": [{"role": "user", "content": [{"type": "unknown_part", "payload": SECRET}]}]},
    ],
)
def test_every_part_a_backend_sees_is_scanned(body: dict) -> None:
    assert level(body) == Sensitivity.RESTRICTED


def test_deeply_nested_extra_fields_are_scanned_without_recursion_errors() -> None:
    deep: object = SECRET
    for _ in range(5000):
        deep = [deep]
    assert level({"messages": [ASK], "nested": deep}) == Sensitivity.RESTRICTED
