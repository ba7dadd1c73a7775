"""The hybrid policy's signals: ``when.complexity``, ``when.needs`` and ``when.volume``, each
computed by routing from plain data, matched by rules and shown by explain."""

from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from routing.complexity import ComplexityEstimator, ComplexityPolicy
from routing.spec import RoutingDefaults, When
from routing.volume import VolumePolicy, classify_volume
from tests.routing.factories import chat, route, router

IMAGE = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}

# ---------------------------------------------------------------- complexity


@pytest.mark.parametrize(
    ("text", "tokens", "task", "level", "reason"),
    [
        ("hello there", 5, "chat", "low", "low (0 points, high at 2)"),
        ("Prove it.", 5, "chat", "low", "low (1 point, high at 2): markers: prove"),
        ("Prove it.", 5, "reasoning", "high", "high (2 points, high at 2): task reasoning, markers: prove"),
        ("Summarise this.", 2400, "reasoning", "high", "high (2 points, high at 2): 2,400 prompt tokens, task reasoning"),
        ("Think it through step by step.", 9, "chat", "low", "low (1 point, high at 2): markers: step by step"),
        ("Work through it step by step.", 9, "chat", "high", "markers: step by step, work through"),
        ("Fix:\n```py\nx = 1\n```\nthen \\frac{a}{b}", 9, "code", "high", "markers: code block, maths"),
        ("x ≤ y, and ∑ of them?", 9, "chat", "low", "markers: maths"),
        ("Who? What? Where?", 9, "chat", "low", "markers: 3 questions"),
        ("Who? What?", 9, "chat", "low", "low (0 points, high at 2)"),
    ],
)
def test_complexity_counts_points_and_names_each(text: str, tokens: int, task: str, level: str, reason: str) -> None:
    result = ComplexityEstimator().estimate(text, tokens, task)
    assert result.level == level
    assert reason in result.reason and result.reason.startswith(level)


@pytest.mark.parametrize(
    "text", ["How can I improve this?", "It was approved.", "Proofread this", "a stepping stone", "tradeoffsies"]
)
def test_a_marker_is_a_whole_word(text: str) -> None:
    assert ComplexityEstimator().markers(text.lower()) == []


def test_markers_ignore_case() -> None:
    assert ComplexityEstimator().markers("PROVE IT STEP BY STEP") == ["step by step", "prove"]


def test_thresholds_and_phrases_are_configurable() -> None:
    policy = ComplexityPolicy(
        high_at=1, long_prompt_tokens=100, tasks=["code"], multi_part_questions=2, phrases=["Audit", "in depth"]
    )
    estimator = ComplexityEstimator(policy)
    assert estimator.estimate("Audit this in depth", 5, "chat").reason == "high (2 points, high at 1): markers: audit, in depth"
    assert estimator.estimate("Prove it", 5, "chat").level == "low"  # the built-in list is replaced
    assert estimator.estimate("x", 100, "code").reason == "high (2 points, high at 1): 100 prompt tokens, task code"
    assert estimator.estimate("a? b?", 5, "chat").reason == "high (1 point, high at 1): markers: 2 questions"
    with pytest.raises(ValidationError):
        ComplexityPolicy(tasks=["poetry"])
    with pytest.raises(ValidationError):
        ComplexityPolicy(high_at=0)


def test_markers_are_read_from_the_ends_of_a_long_message_only() -> None:
    middle = "filler text " * 1000
    assert ComplexityEstimator().markers(middle + "prove" + middle) == []
    assert ComplexityEstimator().markers("prove " + middle) == ["prove"]
    assert ComplexityEstimator().markers(middle + " prove") == ["prove"]
    # phrases (instructions) from the first and last 400 characters; code, maths and questions wider
    near = "x" * 1000
    assert ComplexityEstimator().markers(near + " prove ``` \\frac{1}{2} " + near) == ["code block", "maths"]


def test_hostile_text_full_of_anchors_is_bounded() -> None:
    """Every position an anchor that is not a word: the word-boundary walk stays within the window."""
    hostile = "xprove" * 200_000  # 1.2 MB
    started = time.perf_counter()
    for _ in range(10):
        assert ComplexityEstimator().markers(hostile) == []
    assert time.perf_counter() - started < 2.0  # about 1 ms each; generous for a shared machine


def test_complexity_reaches_signals_and_rules() -> None:
    rules = [{"name": "hard", "when": {"complexity": "high"}, "allow": {"locality": ["hosted"]}}]
    hard = router([route(rules=rules)]).plan(chat("auto", "Prove step by step that 2 + 2 = 4."), {})
    assert hard.rule == "hard" and hard.signals.complexity == "high"
    assert hard.signals.complexity_reason.startswith("high (") and "prove" in hard.signals.complexity_reason
    easy = router([route(rules=rules)]).plan(chat("auto", "Say hi."), {})
    assert easy.rule is None and easy.signals.complexity == "low"


def test_a_given_complexity_wins_over_the_estimate() -> None:
    """What a replay of ledger rows needs: the class recorded then, not re-estimated from text it no longer has."""
    plan = router([route()]).plan(chat("auto", "Say hi.", complexity="high"), {})
    assert (plan.signals.complexity, plan.signals.complexity_reason) == ("high", "high: given by the caller")


def test_complexity_uses_the_configured_policy() -> None:
    defaults = RoutingDefaults(complexity=ComplexityPolicy(high_at=1, tasks=[]))
    plan = router([route()], defaults=defaults).plan(chat("auto", "Prove it."), {})
    assert plan.signals.complexity == "high"


# ---------------------------------------------------------------- needs


@pytest.mark.parametrize(
    ("body", "needs"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, ()),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, IMAGE]}]}, ("vision",)),
        ({"messages": [{"role": "user", "content": "hi"}], "tools": [TOOL]}, ("tools",)),
        ({"messages": [{"role": "user", "content": "hi"}], "functions": [TOOL["function"]]}, ("tools",)),
        ({"messages": [{"role": "user", "content": "hi"}], "response_format": SCHEMA}, ("json_schema",)),
        ({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}, ()),
        (
            {"messages": [{"role": "user", "content": [IMAGE]}], "tools": [TOOL], "response_format": SCHEMA},
            ("json_schema", "tools", "vision"),
        ),
    ],
)
def test_needs_is_a_sorted_tuple_of_what_the_request_uses(body: dict, needs: tuple[str, ...]) -> None:
    view = router().decide(chat("auto", body=body), {}).view  # with an image, no candidate may serve it
    assert view is not None and view.signals.needs == needs


def test_a_needs_rule_matches_only_when_every_listed_need_is_there() -> None:
    rules = [{"name": "both", "when": {"needs": ["tools", "json_schema"]}, "prefer": ["gpt-mini"]}]
    planner = router([route(rules=rules)])
    tools_only = {"messages": [{"role": "user", "content": "hi"}], "tools": [TOOL]}
    both = {**tools_only, "response_format": SCHEMA}
    assert planner.plan(chat("auto", body=tools_only), {}).rule is None
    assert planner.plan(chat("auto", body=both), {}).rule == "both"


def test_when_needs_refuses_unknown_or_empty_lists() -> None:
    with pytest.raises(ValidationError, match="needs"):
        When.model_validate({"needs": ["telepathy"]})
    with pytest.raises(ValidationError, match="needs"):
        When.model_validate({"needs": []})
    with pytest.raises(ValidationError, match="volume"):
        When.model_validate({"volume": "busy"})
    with pytest.raises(ValidationError, match="complexity"):
        When.model_validate({"complexity": "medium"})


# ---------------------------------------------------------------- volume


def test_volume_class_against_the_thresholds() -> None:
    policy = VolumePolicy(window_s=60, high_rpm=600, projects={"batch": {"high_rpm": 50}})
    assert classify_volume(policy, "web", None) == ("normal", "normal: not measured")
    assert classify_volume(policy, "web", 599.5)[0] == "normal"
    volume, reason = classify_volume(policy, "web", 600.0)
    assert volume == "high" and reason == "high: 600.0 requests/min over the last 60 s, at or above 600"
    assert classify_volume(policy, "batch", 50.0)[0] == "high"  # the project's own threshold
    assert classify_volume(policy, "batch", 49.0)[0] == "normal"
    assert classify_volume(policy, "web", 0.0, given="high") == ("high", "high: given by the caller")


def test_volume_rule_reads_the_measured_rate() -> None:
    rules = [{"name": "busy", "when": {"volume": "high", "task": ["classify"]}, "allow": {"deployments": ["local-small"]}}]
    defaults = RoutingDefaults(volume=VolumePolicy(high_rpm=100))
    planner = router([route(rules=rules)], defaults=defaults)
    ask = "Classify the sentiment of this review: great pasta."
    busy = planner.plan(chat("auto", ask, project="p", volume_rpm=120.0), {})
    assert busy.rule == "busy" and busy.deployments == ("local-small",) and busy.signals.volume == "high"
    quiet = planner.plan(chat("auto", ask, project="p", volume_rpm=20.0), {})
    assert quiet.rule is None and quiet.signals.volume == "normal"
    unmeasured = planner.plan(chat("auto", ask, project="p"), {})
    assert unmeasured.signals.volume == "normal" and unmeasured.signals.volume_reason == "normal: not measured"
    replayed = planner.plan(chat("auto", ask, project="p", volume="high"), {})
    assert replayed.rule == "busy"


# ---------------------------------------------------------------- explain


def test_explain_shows_complexity_needs_volume_and_the_rule() -> None:
    rules = [{"name": "images", "when": {"needs": ["vision"]}, "allow": {"locality": ["self_hosted", "hosted"]}}]
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Prove this step by step."}, IMAGE]}]}
    report = router([route(rules=rules)]).explain(chat("auto", body=body, project="p", volume_rpm=12.0), {})
    signals = report["signals"]
    assert report["rule"] == "images"
    assert signals["needs"] == ["vision"]
    assert signals["complexity"] == "high" and "markers: step by step, prove" in signals["complexity_reason"]
    assert signals["volume"] == "normal" and signals["volume_reason"] == (
        "normal: 12.0 requests/min over the last 60 s, below 600"
    )
