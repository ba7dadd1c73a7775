"""Email addresses, phone numbers and IP addresses, and what merely resembles them."""

from __future__ import annotations

import pytest

from tests.routing.factories import entities


@pytest.mark.parametrize(
    "text", ["mail bob@example.com", "x.y+tag@sub.example.co.uk,", "<Jane.Doe@Example.ORG>", "first_last@company-name.io."]
)
def test_email_addresses_are_found(text: str) -> None:
    assert entities(text) == {"email": 1}


@pytest.mark.parametrize(
    "text",
    [
        "@decorator and @app.route",
        "user@localhost",
        "icon@2x.png and logo@3x.svg",
        "npm i react@18.2.0",
        "a..b@example.com is not valid",
        "postgres://user:pa55word@db.example.com/app",  # a URL password, not an address
    ],
)
def test_email_look_alikes_do_not_fire(text: str) -> None:
    assert "email" not in entities(text)


@pytest.mark.parametrize(
    "text",
    [
        "call +44 20 7946 0958",
        "+33 1 23 45 67 89",
        "+1 (415) 555-2671",
        "+4915123456789",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "1-800-555-0199",
    ],
)
def test_phone_numbers_are_found_once(text: str) -> None:
    assert entities(text) == {"phone": 1}


@pytest.mark.parametrize(
    "text",
    [
        "10 + 20 = 30",
        "x = +12",
        "4155552671 as a bare id",
        "123-456-7890",  # area code cannot start with 1
        "ISBN 978-0-306-40615-7",
        "zip 94103-1234",
        "version 2.4.1 and 3.11.7",
        "2023-11-07 14:32:05",
    ],
)
def test_phone_look_alikes_do_not_fire(text: str) -> None:
    assert "phone" not in entities(text)


@pytest.mark.parametrize(
    "text",
    [
        "host 10.20.30.40",
        "dns 8.8.8.8.",
        "IP:192.168.1.10",
        "v6 2001:db8::1",
        "fe80::1ff:fe23:4567:890a",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "[2001:db8::42]:8080",
    ],
)
def test_ip_addresses_are_found(text: str) -> None:
    assert entities(text) == {"ip_address": 1}


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3.4",
        "v1.2.3.4",
        "ver. 10.0.0.1",
        "release 4.3.2.1",
        "999.1.1.1",
        "1.2.3.4.5",
        "127.0.0.1 and ::1",
        "0.0.0.0",
        "mask 255.255.255.0",
        "std::vector<int> v;",
        "a[1::2]",
        "12:30:45",
        "mac 00:1A:2B:3C:4D:5E",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "pi 3.14159",
    ],
)
def test_ip_look_alikes_do_not_fire(text: str) -> None:
    assert "ip_address" not in entities(text)


def test_a_dotted_quad_not_written_as_a_version_fires() -> None:
    assert entities("see section 1.2.3.4") == {"ip_address": 1}
