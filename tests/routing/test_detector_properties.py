"""Properties of normalisation and detection over generated input: any valid card, IBAN or SSN --
written with any run of separators from the space, dash and punctuation families, its digits in
any Unicode digit script, zero-width characters anywhere -- is found; normalising is idempotent;
detection never raises."""

from __future__ import annotations

import sys
import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.detectors.checks import IBAN_LENGTHS
from routing.detectors.normalize import normalize
from tests.routing.factories import DETECTORS, entities, luhn_complete, make_iban

# every script's zero, from the running Python's Unicode database
DIGIT_ZEROS = [c for c in range(0x30, 0x20000) if unicodedata.category(chr(c)) == "Nd" and unicodedata.decimal(chr(c)) == 0]
SPACES = [" ", "\u00a0", "\u202f", "\u2009", "\u2007", "\u2002", "\u3000", "\u205f", "\t"]
DASHES = ["-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2212", "\ufe63", "\uff0d"]
OTHERS = [".", "_", "/", "\n", "\r\n", "\uff0e", "\u3002"]
FORMAT_CHARS = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u200e", "\u200f", "\u202a", "\u2066", "\U000e0041"]
WORDS = st.lists(
    st.sampled_from(["please", "pay", "with", "the", "card", "account", "number", "ok", "thanks", "merci", "付款"]), max_size=4
).map(" ".join)


def separator_runs(extra: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """One to three separators of the families, mixed (a run of at most four characters)."""
    single = st.sampled_from([*SPACES, *DASHES, *OTHERS, *extra])
    return st.lists(single, min_size=1, max_size=3).map("".join).filter(lambda run: len(normalize(run)) <= 4)


@st.composite
def written(draw: st.DrawFn, groups: list[str], extra: tuple[str, ...] = ()) -> str:
    """``groups`` joined by separator runs (or nothing), digits in any scripts, format characters
    sprinkled anywhere."""
    if draw(st.booleans()):
        text = "".join(groups)
    else:
        text = groups[0]
        for group in groups[1:]:
            text += draw(separator_runs(extra)) + group
    zeros = draw(st.lists(st.sampled_from(DIGIT_ZEROS), min_size=1, max_size=3))
    chars = [chr(draw(st.sampled_from(zeros)) + int(c)) if c.isdigit() else c for c in text]
    for _ in range(draw(st.integers(0, 4))):
        chars.insert(draw(st.integers(0, len(chars))), draw(st.sampled_from(FORMAT_CHARS)))
    return "".join(chars)


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix, length = draw(
        st.sampled_from(
            [
                ("4", 16),
                ("51", 16),
                ("2720", 16),
                ("6011", 16),
                ("65", 16),
                ("3530", 16),
                ("34", 15),
                ("37", 15),
                ("4", 13),
                ("4", 19),
            ]
        )
    )
    number = luhn_complete(prefix + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=2, max_size=2))), length)
    if length == 16:
        groups = [number[i : i + 4] for i in range(0, 16, 4)]
    elif length == 15:
        groups = [number[:4], number[4:10], number[10:]]
    else:
        groups = [number]
    return draw(written(groups, extra=(",", ", ")))


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(sorted(IBAN_LENGTHS)))
    bban = "".join(
        draw(st.lists(st.sampled_from("0123456789"), min_size=IBAN_LENGTHS[country] - 4, max_size=IBAN_LENGTHS[country] - 4))
    )
    iban = make_iban(country, bban)
    return draw(written([iban[i : i + 4] for i in range(0, len(iban), 4)]))


@st.composite
def ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    group, serial = draw(st.integers(1, 99)), draw(st.integers(1, 9999))
    return draw(written([f"{area:03d}", f"{group:02d}", f"{serial:04d}"]))


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(card=cards(), before=WORDS, after=WORDS)
def test_any_valid_card_in_any_writing_is_found(card: str, before: str, after: str) -> None:
    assert "credit_card" in entities(f"{before} {card} {after}"), ascii(card)


@SETTINGS
@given(iban=ibans(), before=WORDS, after=WORDS)
def test_any_valid_iban_in_any_writing_is_found(iban: str, before: str, after: str) -> None:
    assert "iban" in entities(f"{before} {iban} {after}"), ascii(iban)


@SETTINGS
@given(ssn=ssns(), after=WORDS)
def test_any_valid_ssn_in_any_writing_is_found_next_to_its_name(ssn: str, after: str) -> None:
    assert "us_ssn" in entities(f"SSN: {ssn} {after}"), ascii(ssn)


ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=200) | st.text(
    alphabet="0123456789 -.,+()/:@\\nu\"'_aDEkxsAKIhfMI\u00a0\u200b\uff14\u0664\u2013", max_size=300
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ANY_TEXT)
def test_normalising_is_idempotent(text: str) -> None:
    once = normalize(text)
    assert normalize(once) == once


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=ANY_TEXT)
def test_normalised_text_has_no_format_characters_or_foreign_digits(text: str) -> None:
    for char in normalize(text):
        category = unicodedata.category(char)
        assert category != "Cf", ascii(char)
        assert category != "Nd" or char.isascii(), ascii(char)
        assert category != "Zs" or char == " ", ascii(char)
        assert category != "Pd" or char == "-", ascii(char)
        assert char != "\x00"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(ANY_TEXT, max_size=6))
def test_detection_never_raises_and_counts_are_positive(texts: list[str]) -> None:
    for hit in DETECTORS.scan_texts(texts):
        assert hit.count > 0


def test_the_digit_scripts_cover_every_script_python_knows() -> None:
    assert len(DIGIT_ZEROS) >= 60 and 0xFF10 in DIGIT_ZEROS and 0x0660 in DIGIT_ZEROS and 0x0966 in DIGIT_ZEROS
    assert sys.maxunicode >= 0x1FFFF
