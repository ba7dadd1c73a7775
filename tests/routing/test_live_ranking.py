"""Routing with measured conditions (issue 16, item 5), pure: spend caps and budget downgrades
leave deployments out with a reason, ``fastest`` ranks by measured latency, and tied members of
a group are balanced by weight or by least in-flight."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from routing.errors import NoCandidates
from routing.live import LiveState, Measured
from routing.types import DeploymentProfile
from tests.routing.factories import chat, deployment, route, router


def _grouped(name: str, weight: int = 1, **kw) -> DeploymentProfile:
    return replace(deployment(name, **kw), group="llama-70b", weight=weight)


def test_a_capped_deployment_leaves_the_plan_with_the_reason_and_spend_shifts_home() -> None:
    deps = [deployment("hosted-cheap", "hosted", prices=(0.1, 0.1)), deployment("home", prices=(1.0, 1.0))]
    r = router([route(candidates=["hosted-cheap", "home"])], deps)
    assert r.plan(chat(), {}).deployments == ("hosted-cheap", "home")
    live = LiveState(capped={"hosted-cheap": "spend cap reached: $500.00 monthly"})
    plan = r.plan(chat(live=live), {})
    assert plan.deployments == ("home",)
    assert {e.deployment: e.reason for e in plan.excluded} == {"hosted-cheap": "spend cap reached: $500.00 monthly"}
    explained = r.explain(chat(live=live), {})
    assert explained["excluded"] == [{"deployment": "hosted-cheap", "reason": "spend cap reached: $500.00 monthly"}]


def test_a_pinned_capped_deployment_is_refused_with_the_reason() -> None:
    r = router([route(candidates=["paid"])], [deployment("paid", "hosted", prices=(1, 1))])
    with pytest.raises(NoCandidates, match=r"spend cap reached: \$5.00 daily"):
        r.plan(chat("paid", live=LiveState(capped={"paid": "spend cap reached: $5.00 daily"})), {})


def test_a_downgrade_keeps_only_free_deployments_and_the_invariant_still_holds() -> None:
    deps = [
        deployment("paid-home", prices=(1, 1)),
        deployment("free-hosted", "hosted", prices=(0, 0)),
        deployment("free-home", prices=(0, 0)),
    ]
    r = router([route(candidates=[d.name for d in deps])], deps)
    plan = r.plan(chat(live=LiveState(downgrade="budget"), project="team"), {})
    assert plan.deployments == ("free-hosted", "free-home")
    assert "budget exhausted: project 'team' downgrades" in dict((e.deployment, e.reason) for e in plan.excluded)["paid-home"]
    # confidential data: the free hosted deployment is out, whatever the downgrade wants
    private = r.plan(chat("auto", "my card is 4111 1111 1111 1111", live=LiveState(downgrade="budget")), {})
    assert private.deployments == ("free-home",)
    # nothing free: no plan (the gateway answers the budget's 429)
    paid_only = router([route(candidates=["paid-home"])], deps)
    with pytest.raises(NoCandidates):
        paid_only.plan(chat(live=LiveState(downgrade="budget")), {})


def test_fastest_ranks_by_measured_latency_over_the_hint_and_explain_shows_the_value() -> None:
    deps = [deployment("a", latency_ms=100), deployment("b", latency_ms=900), deployment("c")]
    r = router([route(candidates=["a", "b", "c"], objective="fastest")], deps)
    assert r.plan(chat(), {}).deployments == ("a", "b", "c")  # hints only
    measured = {"a": Measured(latency_ms=800, samples=20), "b": Measured(latency_ms=250, samples=20)}
    live = LiveState(latency=measured, min_samples=5)
    plan = r.plan(chat(live=live), {})
    assert plan.deployments == ("b", "a", "c")
    reasons = {c.deployment: c.reason for c in plan.candidates}
    assert reasons["b"] == "fastest: measured latency 250 ms (moving average of 20), then estimated cost"
    assert "no latency measured or hinted" in reasons["c"]
    # too few samples: the hint stands
    few = LiveState(latency={"b": Measured(latency_ms=1, samples=2)}, min_samples=5)
    assert r.plan(chat(live=few), {}).deployments == ("a", "b", "c")
    # a stream ranks by time to first token when measured
    ttft = {
        "a": Measured(latency_ms=800, ttft_ms=50, samples=20, ttft_samples=20),
        "b": Measured(latency_ms=250, ttft_ms=200, samples=20, ttft_samples=20),
    }
    streamed = chat(body={"messages": [{"role": "user", "content": "hi"}], "stream": True}, live=LiveState(latency=ttft))
    plan = r.plan(streamed, {})
    assert plan.deployments[:2] == ("a", "b")
    assert "measured time to first token 50 ms" in plan.candidates[0].reason


def test_weights_three_to_one_share_traffic_about_75_25() -> None:
    deps = [_grouped("big", 3), _grouped("small", 1)]
    r = router([route(candidates=["big", "small"])], deps)
    live = LiveState(rng=random.Random(16).random)
    firsts = Counter(r.plan(chat(live=live), {}).deployments[0] for _ in range(400))
    # binomial(400, 0.75): sd 8.7; a fixed seed makes this exact, the band says what it means
    assert 270 <= firsts["big"] <= 330, firsts
    assert firsts["big"] + firsts["small"] == 400
    plan = r.plan(chat(live=live), {})
    assert set(plan.deployments) == {"big", "small"}  # the other member stays the fallback
    assert "balanced in group 'llama-70b' (weighted: " in plan.candidates[0].reason


def test_without_a_random_source_the_heaviest_member_comes_first() -> None:
    r = router([route(candidates=["x", "y"])], [_grouped("x", 1), _grouped("y", 2)])
    assert {r.plan(chat(), {}).deployments for _ in range(20)} == {("y", "x")}
    assert "heaviest first" in r.plan(chat(), {}).candidates[0].reason


def test_least_in_flight_sends_to_the_idle_member() -> None:
    deps = [_grouped("busy", 5), _grouped("idle", 1), deployment("other", prices=(9, 9))]
    r = router([route(candidates=["busy", "idle", "other"], balance="least_in_flight")], deps)
    plan = r.plan(chat(live=LiveState(in_flight={"busy": 4, "idle": 0})), {})
    assert plan.deployments == ("idle", "busy", "other")
    assert plan.candidates[0].reason.endswith("balanced in group 'llama-70b' (least in flight: 0 now)")
    swapped = r.plan(chat(live=LiveState(in_flight={"busy": 0, "idle": 3})), {})
    assert swapped.deployments[0] == "busy"


def test_members_that_do_not_tie_are_not_balanced() -> None:
    deps = [_grouped("cheap", 1, prices=(0.1, 0.1)), _grouped("dear", 100, prices=(5, 5))]
    r = router([route(candidates=["dear", "cheap"])], deps)
    live = LiveState(rng=random.Random(1).random)
    assert {r.plan(chat(live=live), {}).deployments for _ in range(50)} == {("cheap", "dear")}
