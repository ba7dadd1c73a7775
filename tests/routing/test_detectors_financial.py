"""Payment cards, IBANs and US SSNs: checksums and rules, and the look-alikes that must not fire."""

from __future__ import annotations

import pytest

from tests.routing.factories import entities, luhn_complete, make_iban


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1111 exp 12/27",
        "4111-1111-1111-1111",
        "pay with 4111111111111111.",
        "Mastercard 5500 0000 0000 0004",
        "2-series MC 2221 0000 0000 0009",
        "Amex 3782 822463 10005",
        "Discover 6011000990139424",
        "JCB 3530111333300000",
        "Diners 3056 9309 0259 04",
        "Visa 13 digits 4222222222222",
        "card:4012888888881881",
    ],
)
def test_card_numbers_in_common_formats_are_found(text: str) -> None:
    assert entities(text) == {"credit_card": 1}


@pytest.mark.parametrize(
    "prefix,length",
    [("4", 16), ("4", 19), ("51", 16), ("2720", 16), ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("62", 19)],
)
def test_generated_valid_cards_of_each_network_are_found(prefix: str, length: int) -> None:
    number = luhn_complete(prefix, length)
    assert entities(f"number {number} thanks") == {"credit_card": 1}


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn fails
        "order number 1234567890123456",  # no issuer starts with 1
        "timestamp 1700000000000 and 1700000000123456789",  # epoch milli/nanoseconds
        "tracking 9400111899223100001234",  # 22 digits: too long for a card
        "ISBN 978-0-306-40615-7",
        "ISBN-13 9780306406157",
        "commit 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "price $4,111.11 and 4111.1111",
        "order #20231107-5531 on 2023-11-07 14:32:05",
        "0.4111111111111111 is a float",
        "ID4111111111111111 glued to a word",
    ],
)
def test_card_look_alikes_do_not_fire(text: str) -> None:
    assert "credit_card" not in entities(text)


def test_each_card_is_counted_once_and_none_is_returned() -> None:
    text = "cards 4111 1111 1111 1111 and 5500-0000-0000-0004 and again 4111111111111111"
    assert entities(text) == {"credit_card": 3}


@pytest.mark.parametrize(
    "text",
    [
        "IBAN DE89 3704 0044 0532 0130 00",
        "iban: de89370400440532013000",
        "GB82 WEST 1234 5698 7654 32.",
        "gb82west12345698765432",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91ABNA0417164300",
        "pay to NO9386011117947 today",
        "BE68-5390-0754-7034",
    ],
)
def test_ibans_in_any_case_and_spacing_are_found(text: str) -> None:
    assert entities(text) == {"iban": 1}


@pytest.mark.parametrize(
    "country,bban",
    [
        ("DE", "370400440532013000"),
        ("ES", "21000418450200051332"),
        ("IT", "X0542811101000000123456"),
        ("CH", "0076201162385295"),
        ("PL", "109010140000071219812874"),
    ],
)
def test_generated_ibans_are_found(country: str, bban: str) -> None:
    assert entities(f"send it to {make_iban(country, bban)} please") == {"iban": 1}


@pytest.mark.parametrize(
    "text",
    [
        "IBAN DE89 3704 0044 0532 0130 01",  # mod-97 fails
        "DE8937040044053201300099",  # too long for Germany
        "XX89370400440532013000",  # no such country
        "FY24 results were up 12 percent",
        "model gpt4 and py311 and utf8",
        "IBANDE89370400440532013000",  # glued to a word
    ],
)
def test_iban_look_alikes_do_not_fire(text: str) -> None:
    assert "iban" not in entities(text)


@pytest.mark.parametrize(
    "text", ["ssn 123-45-6789", "SSN: 123 45 6789", "my social security number is 123456789", "SSN#078-05-1120"]
)
def test_ssns_are_found(text: str) -> None:
    assert entities(text) == {"us_ssn": 1}


@pytest.mark.parametrize(
    "text",
    [
        "000-12-3456",  # area 000
        "666-12-3456",  # area 666
        "912-12-3456",  # area 9xx
        "123-00-4567",  # group 00
        "123-45-0000",  # serial 0000
        "order 123456789 shipped",  # bare nine digits without an SSN word nearby
        "phone 415-555-2671",
        "date 2023-11-07",
        "part 1234-56-789",
    ],
)
def test_ssn_look_alikes_do_not_fire(text: str) -> None:
    assert "us_ssn" not in entities(text)
