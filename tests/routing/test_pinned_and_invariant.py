"""Deployments asked for by name, on_violation, and the invariant no rule can lift."""

from __future__ import annotations

import pytest

from routing.errors import NoCandidates, PolicyBlocked, UnsupportedEndpoint
from routing.policy import INVARIANT
from tests.routing.factories import chat, route, router

CARD = "4111 1111 1111 1111"
KEEP_HOME = {"name": "keep-home", "when": {"sensitivity": ["confidential", "restricted"]}, "allow": {"locality": ["self_hosted"]}}


def test_a_permitted_pinned_deployment_is_the_whole_plan() -> None:
    plan = router([route(rules=[KEEP_HOME])]).plan(chat("gpt-mini", "hello"), {})
    assert plan.deployments == ("gpt-mini",) and plan.route == "auto" and not plan.rerouted
    assert plan.candidates[0].reason == "requested by name"


def test_a_forbidden_pinned_deployment_is_rerouted_over_its_route_by_default() -> None:
    plan = router([route(rules=[KEEP_HOME])]).plan(chat("gpt-mini", f"card {CARD}"), {})
    assert plan.rerouted and plan.rule == "keep-home" and plan.requested_model == "gpt-mini"
    assert set(plan.deployments) == {"local-small", "vllm-8b"}
    reasons = {e.deployment: e.reason for e in plan.excluded}
    assert "rule 'keep-home'" in reasons["gpt-mini"] and INVARIANT in reasons["gpt-mini"]


def test_block_refuses_a_forbidden_pinned_deployment_naming_the_rule() -> None:
    r = router([route(rules=[KEEP_HOME], on_violation="block")])
    with pytest.raises(PolicyBlocked) as info:
        r.plan(chat("gpt-mini", f"card {CARD}"), {})
    assert info.value.rule == "keep-home" and info.value.deployment == "gpt-mini"
    assert "Policy rule 'keep-home' forbids" in str(info.value) and "restricted data" in str(info.value)


def test_a_rule_can_forbid_a_pinned_deployment_for_public_data_too() -> None:
    r = router(
        [
            route(
                rules=[{"name": "no-claude", "when": {"project": ["web"]}, "deny": {"deployments": ["claude-haiku"]}}],
                on_violation="block",
            )
        ]
    )
    with pytest.raises(PolicyBlocked, match="no-claude"):
        r.plan(chat("claude-haiku", "hello", project="web"), {})
    assert r.plan(chat("claude-haiku", "hello", project="api"), {}).deployments == ("claude-haiku",)


def test_the_first_route_listing_a_pinned_deployment_is_its_policy() -> None:
    first = route("private", candidates=["local-small", "gpt-mini"], rules=[KEEP_HOME], on_violation="block")
    second = route("open", candidates=["gpt-mini", "claude-haiku"])
    with pytest.raises(PolicyBlocked):
        router([first, second]).plan(chat("gpt-mini", f"card {CARD}"), {})


def test_without_rules_the_invariant_still_reroutes_sensitive_data_off_hosted() -> None:
    plan = router([route()]).plan(chat("claude-haiku", "mail bob@example.com"), {})
    assert plan.rerouted and plan.rule is None and set(plan.deployments) == {"local-small", "vllm-8b"}
    assert {e.deployment: e.reason for e in plan.excluded}["claude-haiku"] == (
        f"hosted deployments never receive confidential data ({INVARIANT})"
    )


def test_block_without_a_rule_names_the_invariant() -> None:
    with pytest.raises(PolicyBlocked) as info:
        router([route(on_violation="block")]).plan(chat("claude-haiku", f"card {CARD}"), {})
    assert info.value.rule == INVARIANT


def test_a_pinned_deployment_in_no_route_gets_only_hard_constraints_and_the_invariant() -> None:
    r = router([route(candidates=["local-small"])])
    assert r.plan(chat("gpt-mini", "hello"), {}).deployments == ("gpt-mini",)
    with pytest.raises(NoCandidates, match=INVARIANT) as info:
        r.plan(chat("gpt-mini", f"card {CARD}"), {})
    assert info.value.rule == INVARIANT


def test_an_unhealthy_pinned_deployment_is_not_silently_replaced() -> None:
    with pytest.raises(NoCandidates, match="vllm-8b: unhealthy"):
        router().plan(chat("vllm-8b", "hello"), {"vllm-8b": False})


def test_a_pinned_deployment_without_the_endpoint_is_unsupported() -> None:
    with pytest.raises(UnsupportedEndpoint):
        router().plan(chat("gpt-mini", endpoint="embeddings", body={"input": "x"}), {})


@pytest.mark.parametrize("level", ["confidential", "restricted"])
def test_admin_rules_allowing_hosted_cannot_send_sensitive_data_there(level: str) -> None:
    rules = [{"name": "hosted-please", "allow": {"locality": ["hosted"]}, "prefer": ["claude-haiku"]}]
    r = router([route(rules=rules, fallbacks=["gpt-mini"])])
    with pytest.raises(NoCandidates) as info:
        r.plan(chat("auto", "hello", hints={"sensitivity": level}), {})
    assert f"{level} data under rule 'hosted-please'" in str(info.value)
    assert all(INVARIANT in e.reason for e in info.value.excluded if e.deployment in ("gpt-mini", "claude-haiku"))


def test_a_project_floor_alone_keeps_data_home() -> None:
    from routing.types import Sensitivity

    plan = router().plan(chat("auto", "hello", project_floor=Sensitivity.CONFIDENTIAL), {})
    assert {c.locality for c in plan.candidates} == {"self_hosted"}


def test_when_every_self_hosted_deployment_is_down_sensitive_data_is_refused_not_sent_out() -> None:
    with pytest.raises(NoCandidates, match=INVARIANT):
        router().plan(chat("auto", f"card {CARD}"), {"local-small": False, "vllm-8b": False})
