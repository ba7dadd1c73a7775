"""What the router reads of a request: token-id readings, unscannable parts by kind, the scan
budget, and the per-chunk scan cache."""

from __future__ import annotations

import base64

import pytest

from providers.tokens import _encoding, decode_token_ids
from routing.content import extract_content, textual_media_type
from routing.detectors import compile_detectors
from routing.detectors.normalize import normalize
from routing.errors import RequestTooLarge
from routing.sensitivity import SensitivityClassifier
from routing.spec import SensitivityPolicy
from routing.types import RoutingRequest, Sensitivity
from tests.routing.factories import chat, router

CARD = "4111 1111 1111 1111"


def ids(text: str, encoding: str = "cl100k_base") -> list[int]:
    return _encoding(encoding).encode(text)


def classify(body: dict, endpoint: str = "chat", policy: SensitivityPolicy | None = None, decoder=decode_token_ids):
    policy = policy or SensitivityPolicy()
    request = RoutingRequest(model="auto", endpoint=endpoint, body=body)  # type: ignore[arg-type]
    content = extract_content(request.endpoint, body, decoder, policy.max_scan_bytes)
    return SensitivityClassifier(policy).classify(request, content), content


# ---- token ids


@pytest.mark.parametrize("encoding", ["cl100k_base", "o200k_base"])
@pytest.mark.parametrize(
    "endpoint,field,shape",
    [("embeddings", "input", "nested"), ("completions", "prompt", "flat"), ("embeddings", "input", "flat")],
)
def test_token_ids_are_decoded_in_every_vocabulary_and_scanned(encoding: str, endpoint: str, field: str, shape: str) -> None:
    tokens = ids(f"my card is {CARD}", encoding)
    result, content = classify({field: [tokens] if shape == "nested" else tokens}, endpoint)
    assert result.level == Sensitivity.RESTRICTED and "detector:credit_card" in result.sources
    assert content.token_ids == len(tokens) and content.unscannable == {}


def test_token_ids_that_decode_nowhere_or_without_a_decoder_are_unscannable() -> None:
    _, nowhere = classify({"input": [[10**9, 5]]}, "embeddings")
    _, no_decoder = classify({"input": [ids("hello")]}, "embeddings", decoder=None)
    assert nowhere.unscannable == {"token_ids": 1} and no_decoder.unscannable == {"token_ids": 1}
    assert no_decoder.token_ids == len(ids("hello"))  # still counted as prompt tokens


def test_a_decoder_that_raises_leaves_the_ids_unscannable() -> None:
    def broken(_ids):
        raise ValueError("no such token")

    _, content = classify({"input": [[1, 2, 3]]}, "embeddings", decoder=broken)
    assert content.unscannable == {"token_ids": 1}


# ---- unscannable kinds


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "part,kind",
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, "image"),
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64," + _b64(b"\x89PNG\r\n\x1a\n")}}, "image"),
        ({"type": "input_image", "image_url": "https://example.com/a.png"}, "image"),
        ({"type": "input_audio", "input_audio": {"data": _b64(b"RIFF\x00\x00WAVE"), "format": "wav"}}, "audio"),
        (
            {
                "type": "file",
                "file": {"file_data": "data:application/pdf;base64," + _b64(b"%PDF-1.7\n\xe2\xe3\xcf\xd3"), "filename": "a.pdf"},
            },
            "file",
        ),
        ({"type": "file", "file": {"file_data": _b64(b"%PDF-1.7\n\xe2\xe3\xcf\xd3\x00"), "filename": "a.pdf"}}, "file"),
        ({"type": "image_url", "image_url": {"url": "data:video/mp4;base64,AAAA"}}, "video"),
    ],
)
def test_unreadable_parts_are_counted_by_kind(part: dict, kind: str) -> None:
    result, content = classify({"messages": [{"role": "user", "content": [part]}]})
    assert content.unscannable == {kind: 1}
    assert result.level == Sensitivity.PUBLIC  # the level is the detectors'; the policy holds unscannable parts home


@pytest.mark.parametrize(
    "media,textual",
    [
        ("text/plain", True),
        ("text/csv", True),
        ("application/json", True),
        ("application/ld+json", True),
        ("image/svg+xml", True),
        ("application/x-yaml", True),
        ("", True),
        ("image/png", False),
        ("application/pdf", False),
        ("application/octet-stream", False),
        ("audio/wav", False),
    ],
)
def test_textual_media_types(media: str, textual: bool) -> None:
    assert textual_media_type(media) is textual


def test_text_files_and_data_urls_are_decoded_not_unscannable() -> None:
    parts = [
        {"type": "file", "file": {"file_data": _b64(b"plain notes"), "filename": "n.txt"}},
        {"type": "image_url", "image_url": {"url": "data:text/plain,hello%20world"}},
    ]
    _, content = classify({"messages": [{"role": "user", "content": parts}]})
    assert content.unscannable == {} and "plain notes" in content.texts and "hello world" in content.texts


# ---- the scan budget


def test_over_the_budget_is_confidential_but_a_secret_in_the_scanned_part_still_counts() -> None:
    policy = SensitivityPolicy(max_scan_bytes=2048)
    clean, content = classify({"messages": [{"role": "user", "content": "word " * 1000}]}, policy=policy)
    assert content.over_limit and sum(map(len, content.texts)) <= 2048
    assert clean.level == Sensitivity.CONFIDENTIAL and clean.sources == ("scan_limit",)
    secret, _ = classify({"messages": [{"role": "user", "content": f"card {CARD} " + "word " * 1000}]}, policy=policy)
    assert secret.level == Sensitivity.RESTRICTED


def test_over_the_budget_can_be_refused_with_a_413_that_explain_shows() -> None:
    policy = SensitivityPolicy(max_scan_bytes=2048, over_limit="refuse")
    r = router(sensitivity=policy)
    big = chat("auto", "word " * 1000)
    with pytest.raises(RequestTooLarge) as info:
        r.plan(big, {})
    assert info.value.status == 413 and info.value.code == "request_too_large"
    report = r.explain(big, {})
    assert report["decision"] == "refused"
    assert report["error"]["type"] == "RequestTooLarge"  # its status and code: the gateway's refusal table
    assert r.plan(chat("auto", "word " * 100), {}).candidates


def test_non_ascii_text_counts_its_utf8_bytes_against_the_budget() -> None:
    content = extract_content("chat", {"messages": [{"role": "user", "content": "é" * 1500}]}, max_bytes=2048)
    assert content.over_limit and len(content.texts[0].encode()) <= 2048


# ---- the cache


def test_a_chat_whose_earlier_turns_were_scanned_pays_only_for_the_new_turn() -> None:
    detectors = compile_detectors(SensitivityPolicy())
    turns = [f"turn {i}: " + "we discussed the quarterly numbers at length. " * 12 for i in range(30)]
    first = detectors.scan_texts(turns)
    scanned = detectors.chars_scanned
    assert scanned >= sum(map(len, turns))
    grown = [*turns, f"and my card is {CARD}"]
    hits = detectors.scan_texts(grown)
    assert detectors.chars_scanned - scanned <= 2 * 2048 + 100  # the open tail chunk and the new turn
    assert first == () and [h.entity for h in hits] == ["credit_card"]
    assert hits == compile_detectors(SensitivityPolicy()).scan_texts(grown)  # same answer as a cold scan


def test_the_cache_is_bounded_and_keeps_no_text() -> None:
    detectors = compile_detectors(SensitivityPolicy())
    detectors.cache_entries = 64
    for i in range(500):
        detectors.scan(f"unique text number {i} " * 5)
    assert detectors.cached_chunks <= 64
    assert all(isinstance(key, tuple) and all(isinstance(part, int) for part in key) for key in detectors._cache)


def test_no_match_spans_two_texts() -> None:
    detectors = compile_detectors(SensitivityPolicy())
    assert detectors.scan_texts(["pay with 4111 1111", "1111 1111 thanks"]) == ()
    assert detectors.scan_texts(["my SSN?", "123456789"]) == ()
    assert [h.entity for h in detectors.scan_texts(["ok", "4111 1111 1111 1111"])] == ["credit_card"]


# ---- normalisation


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("４１１１－１１１１", "4111-1111"),
        ("٤١١١\u00a0١١١١", "4111 1111"),
        ("४१११\u202f१११", "4111 111"),
        ("41\u200b11\u2060\ufeff11", "411111"),
        ("a\u2013b\u2212c\u2011d", "a-b-c-d"),
        ("bob＠ｅｘａｍｐｌｅ．ｃｏｍ", "bob@example.com"),
        ("4111\\u00a01111\\n2222", "4111 1111\n2222"),
        ('{\\"a\\": \\"\\\\u0034\\"}', '{"a": "4"}'),
        ("ﬁle", "file"),
        ("nul\x00byte", "nul byte"),
        ("東京、大阪。", "東京,大阪."),
    ],
)
def test_normalize_examples(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


def test_ascii_text_takes_the_fast_path_unchanged() -> None:
    text = "plain ASCII text with 4111 1111 1111 1111 and tabs\tand\nlines"
    assert normalize(text) is text
