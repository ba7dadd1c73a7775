"""Routes, rules and ranking: objectives, when/allow/deny/prefer, fallbacks, hard constraints."""

from __future__ import annotations

from dataclasses import replace

import pytest

from routing.errors import NoCandidates, UnknownModel, UnsupportedEndpoint
from routing.spec import RoutingDefaults
from routing.types import Sensitivity
from tests.routing.factories import catalogue, chat, deployment, route, router

CARD = "4111 1111 1111 1111"


def order(r, request, health=None) -> list[str]:
    return list(r.plan(request, health or {}).deployments)


def test_cheapest_ranks_by_estimated_cost_then_quality_then_config_order() -> None:
    deps = [
        deployment("a", prices=(1, 1), quality=2),
        deployment("b", prices=(1, 1), quality=4),
        deployment("c", prices=(0.1, 0.1)),
        deployment("d", prices=(1, 1), quality=4),
    ]
    r = router([route(candidates=["a", "b", "c", "d"])], deps)
    plan = r.plan(chat(), {})
    assert plan.deployments == ("c", "b", "d", "a")
    assert plan.candidates[0].estimated_cost_usd < plan.candidates[1].estimated_cost_usd
    assert plan.candidates[0].reason.startswith("cheapest")


def test_fastest_puts_known_latency_first_then_unknown_by_cost() -> None:
    deps = [
        deployment("slow", latency_ms=900),
        deployment("unknown-cheap"),
        deployment("fast", latency_ms=100, prices=(9, 9)),
        deployment("unknown-dear", prices=(5, 5)),
    ]
    r = router([route(candidates=[d.name for d in deps], objective="fastest")], deps)
    assert order(r, chat()) == ["fast", "slow", "unknown-cheap", "unknown-dear"]


def test_best_ranks_by_quality_then_cost() -> None:
    r = router([route(objective="best")])
    assert order(r, chat()) == ["claude-haiku", "gpt-mini", "vllm-8b", "local-small"]


def test_estimated_cost_uses_prompt_tokens_and_max_tokens() -> None:
    r = router([route(candidates=["gpt-mini"])])
    plan = r.plan(chat(body={"messages": [{"role": "user", "content": "x"}], "max_tokens": 1000}, prompt_tokens=2000), {})
    assert plan.candidates[0].estimated_cost_usd == pytest.approx((2000 * 0.15 + 1000 * 0.6) / 1e6)
    assert plan.signals.prompt_tokens == 2000 and plan.signals.max_output_tokens == 1000


def test_prompt_tokens_are_estimated_from_characters_when_not_given() -> None:
    r = router(defaults=RoutingDefaults(chars_per_token=4))
    assert r.plan(chat("auto", "a" * 400), {}).signals.prompt_tokens == 100


def test_route_default_max_tokens_feeds_the_estimate() -> None:
    r = router([route(candidates=["gpt-mini"], default_max_tokens=1000)])
    assert r.plan(chat(), {}).signals.max_output_tokens == 1000


def test_first_matching_rule_wins() -> None:
    rules = [
        {"name": "private", "when": {"sensitivity": ["confidential", "restricted"]}, "allow": {"locality": ["self_hosted"]}},
        {"name": "catch-all", "deny": {"deployments": ["claude-haiku"]}},
    ]
    r = router([route(rules=rules)])
    assert r.plan(chat("auto", f"card {CARD}"), {}).rule == "private"
    plan = r.plan(chat("auto", "hello"), {})
    assert plan.rule == "catch-all" and "claude-haiku" not in plan.deployments


@pytest.mark.parametrize(
    "when,request_fields,matches",
    [
        ({"task": ["code"]}, {"contents": ["Write a Python function to sort a list"]}, True),
        ({"task": ["code"]}, {"contents": ["hello"]}, False),
        ({"project": ["finance"]}, {"project": "finance"}, True),
        ({"project": ["finance"]}, {"project": "web"}, False),
        ({"key_tags": ["batch", "eval"]}, {"key_tags": frozenset({"eval"})}, True),
        ({"key_tags": ["batch"]}, {"key_tags": frozenset({"eval"})}, False),
        ({"prompt_tokens": {"min": 100}}, {"prompt_tokens": 100}, True),
        ({"prompt_tokens": {"min": 100, "max": 200}}, {"prompt_tokens": 201}, False),
        ({"model": ["auto"]}, {}, True),
        ({"model": ["other"]}, {}, False),
        ({"sensitivity": ["internal"]}, {"hints": {"sensitivity": "internal"}}, True),
        ({}, {}, True),
    ],
)
def test_when_conditions(when: dict, request_fields: dict, matches: bool) -> None:
    r = router([route(rules=[{"name": "r", "when": when}])])
    contents = request_fields.pop("contents", ["hello"])
    assert (r.plan(chat("auto", *contents, **request_fields), {}).rule == "r") is matches


@pytest.mark.parametrize(
    "flt,kept",
    [
        ({"allow": {"locality": ["hosted"]}}, {"gpt-mini", "claude-haiku"}),
        ({"allow": {"deployments": ["vllm-8b", "gpt-mini"]}}, {"vllm-8b", "gpt-mini"}),
        ({"allow": {"capabilities": ["tools", "json_schema"]}}, {"vllm-8b", "gpt-mini"}),
        ({"allow": {"max_price_per_mtok": 0.6}}, {"local-small", "vllm-8b", "gpt-mini"}),
        ({"allow": {"locality": ["hosted"], "max_price_per_mtok": 1}}, {"gpt-mini"}),
        ({"deny": {"locality": ["hosted"]}}, {"local-small", "vllm-8b"}),
        ({"deny": {"deployments": ["local-small"]}}, {"vllm-8b", "gpt-mini", "claude-haiku"}),
        ({"deny": {"capabilities": ["vision"]}}, {"local-small", "vllm-8b"}),
        ({"deny": {"max_price_per_mtok": 1}}, {"local-small", "vllm-8b", "gpt-mini"}),
    ],
)
def test_allow_and_deny_filters(flt: dict, kept: set[str]) -> None:
    r = router([route(rules=[{"name": "f", **flt}])])
    plan = r.plan(chat(), {})
    assert set(plan.deployments) == kept
    assert all("rule 'f'" in e.reason for e in plan.excluded)


def test_max_cost_ceiling_uses_the_request_estimate() -> None:
    r = router([route(rules=[{"name": "budget", "allow": {"max_cost_usd": 0.001}}])])
    small = r.plan(chat(body={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}), {})
    assert set(small.deployments) == {"local-small", "vllm-8b", "gpt-mini", "claude-haiku"}
    big = r.plan(chat(body={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1000}, prompt_tokens=1000), {})
    assert "claude-haiku" not in big.deployments
    assert any("estimated cost" in e.reason for e in big.excluded)


def test_prefer_puts_listed_deployments_first_in_listed_order() -> None:
    r = router([route(rules=[{"name": "p", "prefer": ["claude-haiku", "vllm-8b"]}])])
    plan = r.plan(chat(), {})
    assert plan.deployments == ("claude-haiku", "vllm-8b", "local-small", "gpt-mini")
    assert plan.candidates[0].reason == "preferred by rule 'p'"


def test_prefer_skips_deployments_the_rule_does_not_permit() -> None:
    r = router([route(rules=[{"name": "p", "prefer": ["claude-haiku"], "deny": {"locality": ["hosted"]}}])])
    assert order(r, chat()) == ["vllm-8b", "local-small"]


def test_rule_objective_overrides_the_routes() -> None:
    r = router([route(objective="cheapest", rules=[{"name": "quality", "when": {"project": ["research"]}, "objective": "best"}])])
    assert order(r, chat(project="research"))[0] == "claude-haiku"
    assert order(r, chat(project="web"))[0] == "vllm-8b"


def test_explicit_fallbacks_come_after_the_ranked_candidates_in_listed_order() -> None:
    r = router([route(fallbacks=["local-small", "vllm-8b"])])
    plan = r.plan(chat(), {})
    assert plan.deployments == ("gpt-mini", "claude-haiku", "local-small", "vllm-8b")
    assert plan.candidates[2].reason == "explicit fallback #1"


def test_fallbacks_are_always_permitted_members_of_the_plan() -> None:
    r = router([route(fallbacks=["claude-haiku", "local-small"])])
    plan = r.plan(chat("auto", f"card {CARD}"), {"vllm-8b": False})
    assert plan.deployments == ("local-small",)


def test_unhealthy_deployments_are_excluded_and_missing_means_healthy() -> None:
    r = router()
    plan = r.plan(chat(), {"gpt-mini": False, "local-small": True})
    assert "gpt-mini" not in plan.deployments and ("gpt-mini", "unhealthy") in [(e.deployment, e.reason) for e in plan.excluded]
    assert set(plan.deployments) == {"local-small", "vllm-8b", "claude-haiku"}


def test_endpoint_capability_is_a_hard_constraint() -> None:
    r = router()
    plan = r.plan(chat(endpoint="embeddings", body={"input": "hello"}), {})
    assert plan.deployments == ("local-small",)
    assert {e.deployment: e.reason for e in plan.excluded}["gpt-mini"] == "does not support embeddings"


def test_a_route_none_of_whose_candidates_serves_the_endpoint_is_unsupported() -> None:
    r = router([route(candidates=["gpt-mini", "claude-haiku"])])
    with pytest.raises(UnsupportedEndpoint, match="does not support embeddings"):
        r.plan(chat(endpoint="embeddings", body={"input": "hello"}), {})


def test_tools_need_a_tools_capable_deployment_when_any_candidate_declares_it() -> None:
    r = router()
    plan = r.plan(chat(body={"messages": [{"role": "user", "content": "weather?"}], "tools": [{"type": "function"}]}), {})
    assert set(plan.deployments) == {"vllm-8b", "gpt-mini", "claude-haiku"}
    assert "request needs tools" in {e.deployment: e.reason for e in plan.excluded}["local-small"]


def test_tools_are_not_enforced_when_no_candidate_declares_them() -> None:
    deps = [deployment("a"), deployment("b")]
    r = router([route(candidates=["a", "b"])], deps)
    decision = r.decide(chat(body={"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}), {})
    assert decision.plan().deployments == ("a", "b")
    assert decision.notes == ["request uses tools but no candidate declares it; not enforced"]


def test_images_always_need_vision() -> None:
    deps = [deployment("a"), deployment("b")]
    r = router([route(candidates=["a", "b"])], deps)
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}
    with pytest.raises(NoCandidates, match="request needs vision"):
        r.plan(chat(body=image), {})
    # hosted deployments that accept unscannable content (images) at public: only vision ones serve it
    open_hosted = [replace(d, unscannable=Sensitivity.PUBLIC) if d.locality == "hosted" else d for d in catalogue()]
    assert router(deployments=open_hosted).plan(chat(body=image), {}).deployments == ("gpt-mini", "claude-haiku")


def test_images_stay_self_hosted_unless_a_hosted_deployment_accepts_unscannable_content() -> None:
    image = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}
    deps = [*catalogue(), deployment("vllm-vision", capabilities=("chat", "vision"))]
    plan = router([route(candidates=[d.name for d in deps])], deps).plan(chat(body=image), {})
    assert plan.deployments == ("vllm-vision",)
    assert plan.signals.sensitivity == Sensitivity.PUBLIC and plan.signals.unscannable == (("image", 1),)
    reasons = {e.deployment: e.reason for e in plan.excluded}
    assert "cannot be scanned (image x1)" in reasons["gpt-mini"] and "unscannable: confidential" in reasons["gpt-mini"]


def test_json_schema_response_format_needs_json_schema() -> None:
    body = {"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema", "json_schema": {}}}
    assert set(router().plan(chat(body=body), {}).deployments) == {"vllm-8b", "gpt-mini"}


def test_context_window_must_hold_prompt_and_explicit_max_tokens() -> None:
    r = router()
    plan = r.plan(chat(body={"messages": [{"role": "user", "content": "x"}], "max_tokens": 2000}, prompt_tokens=7000), {})
    assert "local-small" not in plan.deployments
    assert (
        "context window 8192 < 7000 prompt + 2000 output tokens" in {e.deployment: e.reason for e in plan.excluded}["local-small"]
    )


def test_without_max_tokens_only_the_prompt_must_fit() -> None:
    r = router([route(candidates=["local-small"])])
    assert r.plan(chat(prompt_tokens=8100), {}).deployments == ("local-small",)
    with pytest.raises(NoCandidates, match="context window"):
        r.plan(chat(prompt_tokens=8192), {})


def test_candidates_missing_from_the_catalogue_are_reported() -> None:
    r = router([route(candidates=["local-small", "retired"])])
    plan = r.plan(chat(), {})
    assert ("retired", "not available (disabled or not configured)") in [(e.deployment, e.reason) for e in plan.excluded]


def test_no_candidates_names_the_sensitivity_the_rule_and_every_reason() -> None:
    rules = [{"name": "keep-home", "when": {"sensitivity": ["restricted"]}, "allow": {"locality": ["self_hosted"]}}]
    r = router([route(rules=rules)])
    with pytest.raises(NoCandidates) as info:
        r.plan(chat("auto", f"card {CARD}"), {"local-small": False, "vllm-8b": False})
    message = str(info.value)
    assert "restricted data under rule 'keep-home'" in message
    assert "local-small: unhealthy" in message and "gpt-mini: hosted deployments never receive restricted data" in message
    assert info.value.rule == "keep-home" and len(info.value.excluded) == 4


def test_unknown_model() -> None:
    with pytest.raises(UnknownModel):
        router().plan(chat("gpt-9"), {})


def test_model_names_lists_routes_then_deployments() -> None:
    assert router([route("auto"), route("cheap", candidates=["local-small"])]).model_names == [
        "auto",
        "cheap",
        "local-small",
        "vllm-8b",
        "gpt-mini",
        "claude-haiku",
    ]


def test_signals_are_carried_on_the_plan() -> None:
    plan = router().plan(chat("auto", "Summarize this: mail bob@example.com"), {})
    assert plan.signals.sensitivity == Sensitivity.CONFIDENTIAL
    assert plan.signals.task == "summarize"
    assert plan.route == "auto" and plan.requested_model == "auto" and not plan.rerouted
    assert [d.deployment for d in plan.candidates] == list(plan.deployments)
    assert set(plan.deployments) == {"local-small", "vllm-8b"}
    assert {catalogue()[2].name, catalogue()[3].name} == {e.deployment for e in plan.excluded}
