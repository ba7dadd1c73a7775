"""Project requirements (approved use, region) are hard constraints on the plan, pinned or not,
with a reason for every exclusion; a rule's ``set:`` parameters travel in the plan."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from routing.errors import NoCandidates, PolicyBlocked, RoutingError
from routing.governance import GOVERNANCE, REASON_PREFIXES, Requires, governance_reasons, region_matches
from routing.router import Router
from routing.spec import Route, Rule
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


@pytest.mark.parametrize("name", ["max_tokens", "messages", "stream", "n", "model", "tools", "x-switchyard-task"])
def test_a_rule_may_not_set_what_decides_the_request_or_its_cost(name: str) -> None:
    with pytest.raises(ValidationError, match="may not set"):
        Rule.model_validate({"name": "r", "set": {name: 1}})


USES = ["internal", "commercial", "research"]
REGIONS = [None, "eu", "eu-west-1", "us", "us-east-1", "ap"]


@st.composite
def governed_catalogues(draw: st.DrawFn) -> list[DeploymentProfile]:
    count = draw(st.integers(min_value=1, max_value=5))
    return [
        _governed(
            f"d{i}",
            approved=tuple(draw(st.lists(st.sampled_from(USES), unique=True, max_size=3))),
            region=draw(st.sampled_from(REGIONS)),
            locality=draw(st.sampled_from(["self_hosted", "hosted"])),
            prices=(draw(st.floats(0, 10)), draw(st.floats(0, 10))),
            quality=draw(st.integers(1, 5)),
        )
        for i in range(count)
    ]


@settings(max_examples=300, deadline=None)
@given(
    catalogue=governed_catalogues(),
    data=st.data(),
    approved_for=st.none() | st.lists(st.sampled_from(USES), min_size=1, max_size=2, unique=True),
    regions=st.none() | st.lists(st.sampled_from(["eu", "us", "ap"]), min_size=1, max_size=2, unique=True),
)
def test_property_no_plan_ever_holds_a_deployment_the_project_may_not_use(
    catalogue: list[DeploymentProfile], data: st.DataObject, approved_for: list[str] | None, regions: list[str] | None
) -> None:
    """Any catalogue, any prefer/fallbacks/objective/on_violation, pinned or routed, any health."""
    names = [d.name for d in catalogue]
    prefer = data.draw(st.lists(st.sampled_from(names), max_size=3))
    fallbacks = data.draw(st.none() | st.lists(st.sampled_from(names), max_size=3, unique=True))
    objective = data.draw(st.sampled_from(["cheapest", "fastest", "best"]))
    on_violation = data.draw(st.sampled_from(["reroute", "block"]))
    rules = [{"name": "r", "prefer": prefer}] if prefer else []
    routes = [
        Route.model_validate(
            {
                "name": "auto",
                "candidates": names,
                "fallbacks": fallbacks,
                "objective": objective,
                "rules": rules,
                "on_violation": on_violation,
            }
        )
    ]
    model = data.draw(st.sampled_from(["auto", *names]))
    health = {n: data.draw(st.booleans()) for n in names}
    requires = Requires(approved_for=approved_for, regions=regions)
    by_name = {d.name: d for d in catalogue}
    decision = Router(routes, catalogue).decide(chat(model, requires=requires), health)
    for candidate in decision.candidates:
        assert governance_reasons(by_name[candidate.deployment], requires) == []
    excluded = {e.deployment: e.reason for e in decision.excluded}
    for name in names:
        if governance_reasons(by_name[name], requires) and name in excluded:
            assert any(r.startswith(REASON_PREFIXES) for r in excluded[name].split("; "))
    if decision.error is None:
        assert decision.candidates
    else:
        assert isinstance(decision.error, RoutingError)
