"""Policy simulation, pure: replaying recorded requests plans them as live ones were planned, the
token signature is enough to tell two decisions apart, and the sums are exact."""

from __future__ import annotations

import random
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from routing.pricing import exact_cost
from routing.router import Router
from routing.simulate import LedgerRow, Policy, simulate
from routing.spec import Route, RoutingDefaults, SensitivityPolicy
from routing.types import RecordedRequest, Sensitivity
from tests.routing.factories import catalogue, chat, deployment, route, router

D = Decimal
RULES = [
    {"name": "keep-home", "when": {"sensitivity": ["confidential", "restricted"]}, "allow": {"locality": ["self_hosted"]}},
    {"name": "code", "when": {"task": ["code"]}, "prefer": ["vllm-8b"]},
]


def _policy(routes: list[Route] | None = None, deployments: list | None = None) -> Policy:
    deps = deployments if deployments is not None else catalogue()
    built = router(routes if routes is not None else [route(rules=RULES)], deps)
    return Policy(built, {d.name: d for d in deps})


def _row(deployment_name: str, cost: str | Decimal = "0", **fields) -> LedgerRow:
    base = {
        "project": "web",
        "requested_model": "auto",
        "endpoint": "chat",
        "sensitivity": "public",
        "task": "chat",
        "prompt_tokens": 1000,
        "cached_tokens": 0,
        "completion_tokens": 200,
        "deployment": deployment_name,
        "locality": "hosted" if deployment_name in ("gpt-mini", "claude-haiku") else "self_hosted",
        "cost_usd": D(cost),
        "status": 200,
    }
    return LedgerRow(**(base | fields))


def _priced(name: str, prompt: int = 1000, completion: int = 200, cached: int = 0) -> Decimal:
    profile = next(d for d in catalogue() if d.name == name)
    return exact_cost(profile.prices, prompt, cached, completion)


def test_a_recorded_request_is_planned_like_the_live_request_it_was() -> None:
    live = router([route(rules=RULES)])
    for level, task, tokens in (("public", "chat", 40), ("confidential", "chat", 40), ("internal", "code", 3000)):
        request = chat(
            hints={"sensitivity": level, "task": task},
            prompt_tokens=tokens,
            body={"messages": [{"role": "user", "content": "hello"}], "max_tokens": 100, "tools": [{"type": "function"}]},
        )
        plan = live.plan(request, {})
        recorded = RecordedRequest("auto", "chat", Sensitivity.parse(level), task, tokens, 100, frozenset({"tools", "stream"}))
        replayed = live.decide_recorded(recorded).plan()
        assert (replayed.deployments, replayed.rule, replayed.route) == (plan.deployments, plan.rule, plan.route)
        assert replayed.signals.sensitivity == plan.signals.sensitivity and replayed.signals.task == task


def test_recorded_needs_are_enforced_as_live_ones_are() -> None:
    live = router([route(rules=RULES)])
    # an image keeps the request off hosted deployments (unscannable), and no self-hosted one sees images
    vision = live.decide_recorded(RecordedRequest("auto", "chat", Sensitivity.PUBLIC, "chat", 10, 10, frozenset({"vision"})))
    assert vision.error is not None and "vision" in str(vision.error)
    embeddings = live.decide_recorded(RecordedRequest("auto", "embeddings", Sensitivity.PUBLIC, "embed", 10, 0))
    assert embeddings.plan().deployments == ("local-small",)
    too_long = live.decide_recorded(RecordedRequest("local-small", "chat", Sensitivity.PUBLIC, "chat", 8000, 500))
    assert too_long.error is not None and "context window" in str(too_long.error)


def test_an_identical_policy_changes_nothing_whatever_the_history() -> None:
    rows = [
        _row("gpt-mini", _priced("gpt-mini")),  # not the running policy's first choice (history: a fallback, a breaker)
        _row("vllm-8b", _priced("vllm-8b"), task="code"),
        _row("claude-haiku", "1.2345678901", needs=frozenset({"vision"})),  # refused today too: left as it was
        _row("local-small", "0", endpoint="embeddings", task="embed", completion_tokens=0),
        _row("gpt-mini", "0", status=502, prompt_tokens=0, completion_tokens=0),
        _row("gpt-mini", _priced("gpt-mini"), project="shop", sensitivity="confidential"),  # against today's policy
    ]
    result = simulate(rows, _policy(), _policy())
    assert result.rows == len(rows)
    for project in result.projects:
        assert project.delta_usd == 0 and project.moved.requests == 0 and not project.classes
    web = result.projects[1]
    assert web.current_usd == sum(r.cost_usd for r in rows if r.project == "web")
    assert (web.failed.requests, web.already_refused.requests) == (1, 1)


def test_forbidding_hosted_deployments_moves_their_requests_home_at_home_prices() -> None:
    rows = [_row("gpt-mini", _priced("gpt-mini"), task="summarize") for _ in range(3)] + [_row("vllm-8b", _priced("vllm-8b"))]
    home = [{"name": "summaries-home", "when": {"task": ["summarize"]}, "allow": {"locality": ["self_hosted"]}}, *RULES]
    result = simulate(rows, _policy(), _policy([route(rules=home)]))
    (web,) = result.projects
    assert web.moved.requests == 3 and web.shifts[("gpt-mini", "vllm-8b")].requests == 3  # vllm-8b: cheapest at home
    assert web.simulated_usd == 3 * _priced("vllm-8b") + _priced("vllm-8b")
    assert web.delta_usd == 3 * (_priced("vllm-8b") - _priced("gpt-mini"))
    assert (web.current_share.self_hosted_requests, web.simulated_share.self_hosted_requests) == (1, 4)
    assert web.current_share.by_tokens == 0.25 and web.simulated_share.by_tokens == 1.0


def test_removing_a_deployment_shows_what_becomes_unservable_and_blocked() -> None:
    rows = [
        _row("local-small", "0", endpoint="embeddings", task="embed", completion_tokens=0),
        _row("local-small", "0", endpoint="embeddings", task="embed", completion_tokens=0),
        _row("vllm-8b", _priced("vllm-8b"), requested_model="vllm-8b"),  # pinned
        _row("vllm-8b", _priced("vllm-8b", 20000), sensitivity="restricted", prompt_tokens=20000),
    ]
    without = [d for d in catalogue() if d.name != "vllm-8b"]
    candidate = _policy([route(candidates=[d.name for d in without], rules=[RULES[0]])], without)
    (web,) = simulate(rows, _policy(), candidate).projects
    classes = {(c.kind, c.requested_model): (tally.requests, c.reason) for c, tally in web.classes.items()}
    assert (
        classes[("unservable", "vllm-8b")][0] == 1 and "neither a route nor a deployment" in classes[("unservable", "vllm-8b")][1]
    )
    # the restricted long prompt: only self-hosted is allowed, and local-small's window is too small
    blocked = classes[("blocked", "auto")]
    assert blocked[0] == 1 and "local-small: context window 8192 too small" in blocked[1] and "keep-home" in blocked[1]
    assert web.blocked.current_usd == _priced("vllm-8b", 20000)
    # the embeddings still have local-small: unchanged
    assert web.deployments["local-small"][1].requests == 2
    assert web.simulated_usd == 0 and web.delta_usd == -web.current_usd


def test_a_new_price_reprices_the_requests_that_stay() -> None:
    rows = [_row("gpt-mini", _priced("gpt-mini"), task="code")]
    dearer = [
        d
        if d.name != "gpt-mini"
        else deployment(
            "gpt-mini",
            "hosted",
            prices=(0.3, 1.2),
            quality=4,
            capabilities=("chat", "tools", "vision", "json_schema"),
            context_window=128000,
        )
        for d in catalogue()
    ]
    (web,) = simulate(rows, _policy(), _policy(deployments=dearer)).projects
    assert web.delta_usd == _priced("gpt-mini")  # twice the price: the request costs twice as much


def test_the_project_floor_of_the_candidate_raises_recorded_levels() -> None:
    rows = [_row("gpt-mini", _priced("gpt-mini"))]
    running, strict = _policy(), _policy()
    strict = Policy(strict.router, strict.profiles, {"web": Sensitivity.CONFIDENTIAL})
    (web,) = simulate(rows, running, strict).projects
    assert web.shifts[("gpt-mini", "vllm-8b")].requests == 1


ROUTER = Router(
    [
        Route.model_validate(
            {
                "name": "auto",
                "candidates": ["local-small", "vllm-8b", "gpt-mini", "claude-haiku"],
                "rules": [
                    {"name": "short", "when": {"prompt_tokens": {"max": 300}}, "prefer": ["claude-haiku"]},
                    {"name": "cheap", "when": {"task": ["summarize"]}, "allow": {"max_cost_usd": 0.0004}},
                    {"name": "mid", "when": {"prompt_tokens": {"min": 2000, "max": 9000}}, "deny": {"max_cost_usd": 0.002}},
                ],
            }
        )
    ],
    catalogue(),
    SensitivityPolicy(),
    RoutingDefaults(),
)


def _decided(model: str, endpoint: str, task: str, prompt: int, output: int) -> tuple:
    d = ROUTER.decide_recorded(RecordedRequest(model, endpoint, Sensitivity.PUBLIC, task, prompt, output))  # type: ignore[arg-type]
    return (d.plan().deployments, d.rule.name if d.rule else None) if d.error is None else (type(d.error).__name__,)


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(["auto", "local-small", "gpt-mini"]),
    endpoint=st.sampled_from(["chat", "embeddings"]),
    task=st.sampled_from(["chat", "summarize"]),
    seed=st.integers(0, 2**32),
)
def test_requests_with_one_token_signature_are_planned_alike(model: str, endpoint: str, task: str, seed: int) -> None:
    rng = random.Random(seed)
    seen: dict[tuple, tuple] = {}
    for _ in range(100):  # spread across every bound, window and ceiling above
        prompt, output = int(rng.lognormvariate(7, 1.5)), int(rng.lognormvariate(6, 1.4))
        signature = ROUTER.token_signature(model, endpoint, prompt, output)  # type: ignore[arg-type]
        decided = _decided(model, endpoint, task, prompt, output)
        assert seen.setdefault(signature, decided) == decided, (prompt, output)
    assert len(seen) >= 1


def test_replayed_requests_match_rules_on_needs_and_complexity() -> None:
    rules = [
        {"name": "tools-to-gpt", "when": {"needs": ["tools"]}, "prefer": ["gpt-mini"]},
        {"name": "hard-to-claude", "when": {"complexity": "high"}, "prefer": ["claude-haiku"]},
    ]
    live = router([route(rules=rules)])
    tools = live.decide_recorded(
        RecordedRequest("auto", "chat", Sensitivity.PUBLIC, "chat", 100, 10, frozenset({"tools", "stream"}))
    )
    assert tools.plan().rule == "tools-to-gpt" and tools.plan().deployments[0] == "gpt-mini"
    # a long prompt and a demanding task are two points: high (the text's markers are not recorded)
    hard = live.decide_recorded(RecordedRequest("auto", "chat", Sensitivity.PUBLIC, "reasoning", 2500, 10))
    assert hard.plan().rule == "hard-to-claude" and hard.plan().signals.complexity == "high"
    easy = live.decide_recorded(RecordedRequest("auto", "chat", Sensitivity.PUBLIC, "reasoning", 1500, 10))
    assert easy.plan().rule is None
    assert live.token_signature("auto", "chat", 2500, 10) != live.token_signature("auto", "chat", 1500, 10)
