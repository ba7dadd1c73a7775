"""Project requirements (approved use, region) are hard constraints on the plan, pinned or not,
with a reason for every exclusion; a rule's ``set:`` parameters travel in the plan."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from routing.errors import NoCandidates, PolicyBlocked
from routing.governance import GOVERNANCE, Requires, governance_reasons, region_matches
from routing.spec import Rule
from routing.types import DeploymentProfile
from tests.routing.factories import chat, deployment, route, router

COMMERCIAL = Requires(approved_for=["commercial"])


def _governed(name: str, *, approved: tuple[str, ...] = (), region: str | None = None, **kw: object) -> DeploymentProfile:
    return dataclasses.replace(deployment(name, **kw), approved_for=frozenset(approved), region=region)  # type: ignore[arg-type]


def _catalogue() -> list[DeploymentProfile]:
    """The unapproved deployment is the cheapest, so only the requirement keeps traffic off it."""
    return [
        _governed("cheap-nc", approved=("internal",), region="us", prices=(0.01, 0.01)),
        _governed("approved-eu", approved=("internal", "commercial"), region="eu-west-1", prices=(1, 1)),
        _governed("approved-us", approved=("commercial",), region="us-east-1", prices=(0.5, 0.5)),
    ]


def _router(**fields: object):
    names = [d.name for d in _catalogue()]
    return router([route(candidates=names, **fields)], _catalogue())


def test_without_requirements_the_cheapest_deployment_wins() -> None:
    plan = _router().plan(chat(), {})
    assert plan.deployments[0] == "cheap-nc"


def test_a_commercial_project_never_plans_an_unapproved_deployment_even_as_a_fallback() -> None:
    plan = _router(fallbacks=["cheap-nc"]).plan(chat(requires=COMMERCIAL), {})
    assert plan.deployments == ("approved-us", "approved-eu")
    assert "cheap-nc" not in plan.deployments
    reasons = {e.deployment: e.reason for e in plan.excluded}
    assert reasons == {"cheap-nc": "not approved for commercial use (approved_for: internal)"}


def test_a_rule_that_prefers_the_unapproved_deployment_cannot_bring_it_back() -> None:
    rule = {"name": "cheap-first", "prefer": ["cheap-nc"]}
    plan = _router(rules=[rule]).plan(chat(requires=COMMERCIAL), {})
    assert plan.deployments == ("approved-us", "approved-eu") and plan.rule == "cheap-first"


def test_a_region_constraint_keeps_sub_regions_and_names_the_others() -> None:
    plan = _router().plan(chat(requires=Requires(regions=["eu"])), {})
    assert plan.deployments == ("approved-eu",)
    reasons = {e.deployment: e.reason for e in plan.excluded}
    assert reasons == {"cheap-nc": "region us not in [eu]", "approved-us": "region us-east-1 not in [eu]"}


def test_both_requirements_give_every_reason() -> None:
    requires = Requires(approved_for=["commercial"], regions=["eu"])
    plan = _router().plan(chat(requires=requires), {})
    reasons = {e.deployment: e.reason for e in plan.excluded}
    assert plan.deployments == ("approved-eu",)
    assert reasons["cheap-nc"] == "not approved for commercial use (approved_for: internal); region us not in [eu]"


def test_a_deployment_that_declares_nothing_meets_no_requirement() -> None:
    bare = deployment("bare")
    assert governance_reasons(bare, Requires(approved_for=["commercial"], regions=["eu"])) == [
        "not approved for commercial use (approved_for: none declared)",
        "region not declared, project requires one of [eu]",
    ]
    assert governance_reasons(bare, None) == []


def test_region_matching_is_by_dash_separated_prefix() -> None:
    assert region_matches("eu", "eu") and region_matches("eu-west-1", "eu")
    assert not region_matches("europe", "eu") and not region_matches("us-eu", "eu")


def test_no_permitted_deployment_is_a_refusal_blaming_the_requirements() -> None:
    only_nc = router([route(candidates=["cheap-nc"])], _catalogue())
    with pytest.raises(NoCandidates) as refused:
        only_nc.plan(chat(requires=COMMERCIAL), {})
    assert refused.value.rule == GOVERNANCE
    assert "cheap-nc: not approved for commercial use (approved_for: internal)" in str(refused.value)


def test_a_pinned_unapproved_deployment_is_rerouted_or_blocked() -> None:
    rerouted = _router().plan(chat("cheap-nc", requires=COMMERCIAL), {})
    assert rerouted.rerouted and rerouted.deployments == ("approved-us", "approved-eu")
    with pytest.raises(PolicyBlocked) as blocked:
        _router(on_violation="block").plan(chat("cheap-nc", requires=COMMERCIAL), {})
    assert blocked.value.rule == GOVERNANCE
    assert "not approved for commercial use (approved_for: internal)" in str(blocked.value)


def test_a_pinned_deployment_outside_every_route_is_refused_too() -> None:
    lone = router([], _catalogue())
    with pytest.raises(NoCandidates):
        lone.plan(chat("cheap-nc", requires=COMMERCIAL), {})
    assert lone.plan(chat("approved-us", requires=COMMERCIAL), {}).deployments == ("approved-us",)


def test_explain_shows_the_requirements_and_every_exclusion() -> None:
    report = _router().explain(chat(project="acme", requires=COMMERCIAL), {})
    assert report["project"] == "acme" and report["requires"] == {"approved_for": ["commercial"]}
    assert {e["deployment"]: e["reason"] for e in report["excluded"]} == {
        "cheap-nc": "not approved for commercial use (approved_for: internal)"
    }
    refused = router([route(candidates=["cheap-nc"])], _catalogue()).explain(chat(requires=COMMERCIAL), {})
    assert refused["decision"] == "refused" and GOVERNANCE in refused["error"]["message"]


def test_requirements_accept_one_use_as_a_string_and_compare_in_lower_case() -> None:
    assert Requires.model_validate({"approved_for": "Commercial", "regions": ["EU"]}) == Requires(
        approved_for=["commercial"], regions=["eu"]
    )
    with pytest.raises(ValidationError):
        Requires.model_validate({"approved_for": "paid product!"})
    with pytest.raises(ValidationError):
        Requires.model_validate({"approvedfor": "commercial"})


def test_a_rules_set_parameters_travel_in_the_plan() -> None:
    rules = [
        {"name": "think", "when": {"task": ["reasoning"]}, "set": {"reasoning_effort": "high"}},
        {"name": "extract", "when": {"task": ["extract"]}, "set": {"temperature": 0}},
    ]
    r = _router(rules=rules)
    think = r.plan(chat(hints={"task": "reasoning"}), {})
    assert (think.rule, dict(think.parameters)) == ("think", {"reasoning_effort": "high"})
    assert dict(r.plan(chat(hints={"task": "extract"}), {}).parameters) == {"temperature": 0}
    assert dict(r.plan(chat(hints={"task": "chat"}), {}).parameters) == {}
    assert r.explain(chat(hints={"task": "reasoning"}), {})["set"] == {"reasoning_effort": "high"}


@pytest.mark.parametrize("name", ["max_tokens", "messages", "stream", "n", "model", "x-switchyard-task"])
def test_a_rule_may_not_set_what_decides_the_request_or_its_cost(name: str) -> None:
    with pytest.raises(ValidationError, match="may not set"):
        Rule.model_validate({"name": "r", "set": {name: 1}})
