"""The sensitivity signal over every part of a request an upstream would see, hints and floors."""

from __future__ import annotations

import pytest

from routing.content import extract_content
from routing.errors import InvalidHint
from routing.sensitivity import SensitivityClassifier
from routing.spec import SensitivityPolicy
from routing.types import RoutingRequest, Sensitivity

CARD = "4111 1111 1111 1111"
CLASSIFIER = SensitivityClassifier(SensitivityPolicy())


def classify(body: dict, endpoint: str = "chat", **request: object):
    req = RoutingRequest(model="auto", endpoint=endpoint, body=body, **request)  # type: ignore[arg-type]
    return CLASSIFIER.classify(req, extract_content(req.endpoint, body))


def level(body: dict, endpoint: str = "chat", **request: object) -> Sensitivity:
    return classify(body, endpoint, **request).level


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": f"card {CARD}"}],
        [{"role": "developer", "content": f"card {CARD}"}],
        [{"role": "user", "content": f"card {CARD}"}],
        [{"role": "assistant", "content": f"card {CARD}"}],
        [{"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "text", "text": f"card {CARD}"}]}],
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}, {"type": "text", "text": CARD}],
            }
        ],
        [{"role": "user", "name": f"card {CARD}", "content": "hi"}],
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "1", "type": "function", "function": {"name": "pay", "arguments": f'{{"card": "{CARD}"}}'}}
                ],
            }
        ],
        [{"role": "assistant", "tool_calls": [{"function": {"name": "pay", "arguments": {"card": CARD}}}]}],
        [{"role": "tool", "tool_call_id": "1", "content": f'{{"card_on_file": "{CARD}"}}'}],
        [{"role": "function", "name": "lookup", "content": f"card {CARD}"}],
        [{"role": "assistant", "function_call": {"name": "pay", "arguments": f'{{"card": "{CARD}"}}'}}],
        [{"role": "assistant", "content": [{"type": "refusal", "refusal": f"I will not store {CARD}"}]}],
        [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": CARD}],
    ],
)
def test_every_message_position_is_scanned(messages: list) -> None:
    result = classify({"messages": messages})
    assert result.level == Sensitivity.RESTRICTED
    assert result.sources == ("detector:credit_card",)
    assert [(h.entity, h.count) for h in result.detections] == [("credit_card", 1)]


@pytest.mark.parametrize(
    "body,endpoint",
    [
        ({"prompt": f"card {CARD}"}, "completions"),
        ({"prompt": ["hello", f"card {CARD}"]}, "completions"),
        ({"prompt": "hello", "suffix": CARD}, "completions"),
        ({"input": f"card {CARD}"}, "embeddings"),
        ({"input": ["a", f"card {CARD}"]}, "embeddings"),
        ({"messages": [{"role": "user", "content": "hi"}], "user": "bob@example.com"}, "chat"),
        ({"messages": [{"role": "user", "content": "hi"}], "metadata": {"customer": "bob@example.com"}}, "chat"),
        ({"messages": [{"role": "user", "content": "hi"}], "prediction": {"type": "content", "content": CARD}}, "chat"),
    ],
)
def test_prompts_inputs_and_other_fields_an_upstream_sees_are_scanned(body: dict, endpoint: str) -> None:
    assert level(body, endpoint) >= Sensitivity.CONFIDENTIAL


def test_tool_definitions_and_schemas_are_scanned_too() -> None:
    # written by the developer, but sent upstream all the same: a card in a description leaks
    tool = {
        "messages": [{"role": "user", "content": "what is the weather"}],
        "tools": [{"type": "function", "function": {"name": "weather", "description": f"example card {CARD}", "parameters": {}}}],
    }
    schema = {
        "messages": [{"role": "user", "content": "extract"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"examples": ["bob@example.com"]}}},
    }
    assert level(tool) == Sensitivity.RESTRICTED
    assert level(schema) == Sensitivity.CONFIDENTIAL


def test_token_id_inputs_carry_no_text_but_count_as_tokens() -> None:
    content = extract_content("embeddings", {"input": [[1, 2, 3], [4, 5]]})
    assert content.texts == () and content.token_ids == 5
    assert level({"input": [101, 4111, 1111]}, "embeddings") == Sensitivity.PUBLIC


def test_image_parts_are_not_text_but_are_counted() -> None:
    content = extract_content(
        "chat",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,4111111111111111"}},
                        {"type": "text", "text": "what is this"},
                    ],
                }
            ]
        },
    )
    assert content.texts == ("what is this",) and content.images == 1


def test_a_clean_request_is_public_with_no_sources() -> None:
    result = classify({"messages": [{"role": "user", "content": "Summarize the plot of Hamlet."}]})
    assert (result.level, result.sources, result.detections) == (Sensitivity.PUBLIC, (), ())


def test_the_highest_detector_level_wins_and_all_hits_are_reported() -> None:
    result = classify({"messages": [{"role": "user", "content": f"mail bob@example.com, card {CARD}, ip 10.0.0.1"}]})
    assert result.level == Sensitivity.RESTRICTED
    assert result.sources == ("detector:credit_card",)
    assert {h.entity: (h.count, h.level) for h in result.detections} == {
        "credit_card": (1, Sensitivity.RESTRICTED),
        "email": (1, Sensitivity.CONFIDENTIAL),
        "ip_address": (1, Sensitivity.CONFIDENTIAL),
    }


def test_matched_values_never_appear_in_the_result() -> None:
    result = classify({"messages": [{"role": "user", "content": f"card {CARD} mail bob@example.com"}]})
    assert CARD not in repr(result) and "bob@example.com" not in repr(result)


@pytest.mark.parametrize(
    "request_fields,body_metadata,expected,source",
    [
        ({"hints": {"sensitivity": "confidential"}}, None, Sensitivity.CONFIDENTIAL, "hint"),
        ({}, {"x-switchyard-sensitivity": "restricted"}, Sensitivity.RESTRICTED, "metadata"),
        ({}, {"x-switchyard-sensitivity": "internal"}, Sensitivity.INTERNAL, "metadata"),
        ({"project_floor": Sensitivity.INTERNAL}, None, Sensitivity.INTERNAL, "project_floor"),
    ],
)
def test_hints_and_the_project_floor_raise_the_level(
    request_fields: dict, body_metadata: dict | None, expected: Sensitivity, source: str
) -> None:
    body: dict = {"messages": [{"role": "user", "content": "hello"}]}
    if body_metadata:
        body["metadata"] = body_metadata
    result = classify(body, **request_fields)
    assert result.level == expected and result.sources == (source,)


def test_hints_never_lower_what_detectors_found() -> None:
    body = {"messages": [{"role": "user", "content": f"card {CARD}"}], "metadata": {"sensitivity": "public"}}
    assert level(body, hints={"sensitivity": "public"}, project_floor=Sensitivity.PUBLIC) == Sensitivity.RESTRICTED


def test_a_lower_header_hint_cannot_mask_a_higher_metadata_hint() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "metadata": {"x-switchyard-sensitivity": "restricted"}}
    assert level(body, hints={"sensitivity": "public"}) == Sensitivity.RESTRICTED


def test_default_level_applies_to_every_request() -> None:
    classifier = SensitivityClassifier(SensitivityPolicy(default_level="internal"))
    req = RoutingRequest(model="auto", endpoint="chat", body={"messages": [{"role": "user", "content": "hi"}]})
    result = classifier.classify(req, extract_content("chat", req.body))
    assert result.level == Sensitivity.INTERNAL and result.sources == ("default_level",)


@pytest.mark.parametrize(
    "hints,metadata,param",
    [
        ({"sensitivity": "secret"}, None, "x-switchyard-sensitivity"),
        ({}, {"x-switchyard-sensitivity": "top"}, "metadata.x-switchyard-sensitivity"),
        ({}, {"x-switchyard-sensitivity": 3}, "metadata.x-switchyard-sensitivity"),
    ],
)
def test_an_unknown_hint_value_raises_invalid_hint(hints: dict, metadata: dict | None, param: str) -> None:
    body: dict = {"messages": [{"role": "user", "content": "hi"}]}
    if metadata:
        body["metadata"] = metadata
    with pytest.raises(InvalidHint) as info:
        classify(body, hints=hints)
    assert info.value.param == param and isinstance(info.value, ValueError)
    assert "expected one of public, internal, confidential, restricted" in str(info.value)


@pytest.mark.parametrize(
    "metadata", [{"sensitivity": "top"}, {"task": "summarize-ticket"}, {"sensitivity": 3, "project-tag": None}]
)
def test_plain_metadata_keys_are_the_clients_data_not_hints(metadata: dict) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "metadata": metadata}
    result = classify(body)
    assert result.level == Sensitivity.PUBLIC and result.sources == ()
    content = extract_content("chat", body)
    assert any(str(next(iter(metadata.values()))) in text for text in content.texts)  # scanned like any metadata


def test_plain_metadata_values_are_scanned() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "metadata": {"sensitivity": f"card {CARD}"}}
    assert level(body) == Sensitivity.RESTRICTED


def test_malformed_bodies_do_not_crash_the_scan() -> None:
    for body in ({}, {"messages": None}, {"messages": "text"}, {"messages": [None, 3, {"content": 5}]}, {"prompt": {"a": 1}}):
        assert level(body) == Sensitivity.PUBLIC
