"""Policy over one candidate at a time: does a rule apply, may this deployment see this request,
can it serve it -- and the ordering of the ones that remain.

Exclusions are reasons, not booleans, so a plan can say why every candidate was left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from routing.spec import Filter, Rule, When
from routing.types import Candidate, DeploymentProfile, Endpoint, Objective, Sensitivity

INVARIANT = "confidential-data-stays-self-hosted"
"""Pseudo-rule name of the one constraint no config can lift."""

_ENDPOINT_CAPABILITY = {"chat": "chat", "completions": "completions", "embeddings": "embeddings"}


@dataclass(slots=True)  # not frozen: built per request, and frozen ones cost 4x to construct
class Facts:
    """What ``when:`` conditions are evaluated against."""

    sensitivity: Sensitivity
    task: str
    project: str | None
    key_tags: frozenset[str]
    prompt_tokens: int
    model: str
    volume: str = "normal"
    complexity: str = "low"
    needs: tuple[str, ...] = ()  # Signals.needs: vision / tools / json_schema


@dataclass(slots=True)  # not frozen: built per request, and frozen ones cost 4x to construct
class Needs:
    """What the request requires of any deployment, whatever the rules say."""

    endpoint: Endpoint
    capabilities: frozenset[str]  # tools / vision / json_schema, beyond the endpoint's own
    prompt_tokens: int
    output_tokens: int  # per completion: what must fit in the context window next to the prompt
    endpoint_capability: str = ""

    def __post_init__(self) -> None:
        if not self.endpoint_capability:
            self.endpoint_capability = _ENDPOINT_CAPABILITY[self.endpoint]


def when_matches(when: When, facts: Facts) -> bool:
    """Every condition given must hold; an empty ``when`` always matches."""
    if when.sensitivity is not None and facts.sensitivity.label not in when.sensitivity:
        return False
    if when.task is not None and facts.task not in when.task:
        return False
    if when.project is not None and facts.project not in when.project:
        return False
    if when.key_tags is not None and facts.key_tags.isdisjoint(when.key_tags):
        return False
    if when.model is not None and facts.model not in when.model:
        return False
    if when.volume is not None and facts.volume != when.volume:
        return False
    if when.complexity is not None and facts.complexity != when.complexity:
        return False
    if when.needs is not None and not all(need in facts.needs for need in when.needs):
        return False  # the request must need every one listed
    bounds = when.prompt_tokens
    if bounds is not None:
        if bounds.min is not None and facts.prompt_tokens < bounds.min:
            return False
        if bounds.max is not None and facts.prompt_tokens > bounds.max:
            return False
    return True


def first_matching_rule(rules: Sequence[Rule], facts: Facts) -> Rule | None:
    return next((rule for rule in rules if when_matches(rule.when, facts)), None)


def effective_sensitivity(deployment: DeploymentProfile, sensitivity: Sensitivity, unscannable: str = "") -> Sensitivity:
    """The request's level as ``deployment`` must treat it: raised to the deployment's
    ``unscannable`` level when part of the request could not be scanned (``unscannable`` names it)."""
    if unscannable and deployment.unscannable > sensitivity:
        return deployment.unscannable
    return sensitivity


def invariant_reason(deployment: DeploymentProfile, sensitivity: Sensitivity, unscannable: str = "") -> str | None:
    """Confidential and restricted data never go to a hosted deployment, whatever the config says.

    Content the detectors could not read (``unscannable``, e.g. ``"image x1"``) counts as the
    deployment's ``unscannable`` level: by default confidential, so it stays self-hosted.
    """
    if deployment.locality != "hosted":
        return None
    if sensitivity >= Sensitivity.CONFIDENTIAL:
        return f"hosted deployments never receive {sensitivity.label} data ({INVARIANT})"
    effective = effective_sensitivity(deployment, sensitivity, unscannable)
    if effective >= Sensitivity.CONFIDENTIAL:
        return (
            f"request has content that cannot be scanned ({unscannable}), which this deployment treats as "
            f"{effective.label} (unscannable: {deployment.unscannable.label}); hosted deployments never receive "
            f"{effective.label} data ({INVARIANT})"
        )
    return None


def _allow_reasons(rule: str, flt: Filter, deployment: DeploymentProfile, cost: float) -> Iterable[str]:
    if flt.locality is not None and deployment.locality not in flt.locality:
        yield f"rule '{rule}' allows only locality {', '.join(flt.locality)}"
    if flt.deployments is not None and deployment.name not in flt.deployments:
        yield f"rule '{rule}' allows only deployments {', '.join(flt.deployments)}"
    if flt.capabilities is not None:
        missing = [c for c in flt.capabilities if c not in deployment.capabilities]
        if missing:
            yield f"rule '{rule}' allows only deployments with {', '.join(missing)}"
    yield from _ceiling_reasons(rule, "allows", flt, deployment, cost)


def _deny_reasons(rule: str, flt: Filter, deployment: DeploymentProfile, cost: float) -> Iterable[str]:
    if flt.locality is not None and deployment.locality in flt.locality:
        yield f"rule '{rule}' denies locality {deployment.locality}"
    if flt.deployments is not None and deployment.name in flt.deployments:
        yield f"rule '{rule}' denies deployment {deployment.name}"
    if flt.capabilities is not None:
        denied = [c for c in flt.capabilities if c in deployment.capabilities]
        if denied:
            yield f"rule '{rule}' denies deployments with {', '.join(denied)}"
    yield from _ceiling_reasons(rule, "denies", flt, deployment, cost)


def _ceiling_reasons(rule: str, verb: str, flt: Filter, deployment: DeploymentProfile, cost: float) -> Iterable[str]:
    # a ceiling means the same under allow and deny: above it is out
    price = deployment.prices.output_per_mtok
    if flt.max_price_per_mtok is not None and price > flt.max_price_per_mtok:
        yield f"rule '{rule}' {verb} output price ${price:g}/Mtok over ${flt.max_price_per_mtok:g}/Mtok"
    if flt.max_cost_usd is not None and cost > flt.max_cost_usd:
        yield f"rule '{rule}' {verb} estimated cost ${cost:.6f} over ${flt.max_cost_usd:g}"


def rule_reasons(deployment: DeploymentProfile, rule: Rule | None, cost: float) -> list[str]:
    """Why the matched rule's ``allow`` / ``deny`` filters drop ``deployment``; empty if they keep it."""
    if rule is None:
        return []
    reasons: list[str] = []
    if rule.allow is not None:
        reasons.extend(_allow_reasons(rule.name, rule.allow, deployment, cost))
    if rule.deny is not None:
        reasons.extend(_deny_reasons(rule.name, rule.deny, deployment, cost))
    return reasons


def policy_reasons(
    deployment: DeploymentProfile, rule: Rule | None, sensitivity: Sensitivity, cost: float, unscannable: str = ""
) -> list[str]:
    """Why policy forbids ``deployment`` for this request (the invariant, then the rule); empty if it may."""
    violation = invariant_reason(deployment, sensitivity, unscannable)
    return ([violation] if violation else []) + rule_reasons(deployment, rule, cost)


def hard_reasons(deployment: DeploymentProfile, needs: Needs, soft: frozenset[str], health: Mapping[str, bool]) -> list[str]:
    """Why ``deployment`` cannot serve the request (capability, context window, health).

    Capabilities in ``soft`` are not enforced (no candidate of the route declares them).
    """
    reasons = []
    capabilities = deployment.capabilities
    if needs.endpoint_capability not in capabilities:
        reasons.append(f"does not support {needs.endpoint}")
    if deployment.kind == "base" and needs.endpoint == "chat":
        reasons.append("kind base: a base model continues text instead of answering a chat")
    elif deployment.kind == "embedding" and needs.endpoint != "embeddings":
        reasons.append(f"kind embedding: an embedding model cannot serve {needs.endpoint}")
    if needs.capabilities:
        for capability in sorted(needs.capabilities - soft - capabilities):
            reasons.append(f"request needs {capability}, which it does not declare")
    if needs.prompt_tokens + needs.output_tokens > deployment.context_window:
        reasons.append(
            f"context window {deployment.context_window} < {needs.prompt_tokens} prompt + {needs.output_tokens} output tokens"
        )
    if health and not health.get(deployment.name, True):
        reasons.append("unhealthy")
    return reasons


SOFT_CAPABILITIES = frozenset({"tools", "json_schema"})


def soft_capabilities(needed: frozenset[str], declared: frozenset[str]) -> frozenset[str]:
    """``tools`` / ``json_schema`` that no candidate declares: the admin has not described them, so
    they are not enforced (vision always is: an image to a text-only model cannot work)."""
    if not needed:
        return needed
    return (needed & SOFT_CAPABILITIES) - declared


def _cheapest(item: tuple[DeploymentProfile, float, int]) -> tuple[Any, ...]:
    deployment, cost, index = item
    return (cost, -deployment.quality, index)


def _fastest(item: tuple[DeploymentProfile, float, int]) -> tuple[Any, ...]:
    deployment, cost, index = item
    latency = deployment.latency_ms
    return (latency is None, latency or 0.0, cost, index)


def _best(item: tuple[DeploymentProfile, float, int]) -> tuple[Any, ...]:
    deployment, cost, index = item
    return (-deployment.quality, cost, index)


RANK_KEYS = {"cheapest": _cheapest, "fastest": _fastest, "best": _best}
"""Sort keys over ``(deployment, estimated cost, config index)``: cheapest (cost, then quality
desc), fastest (known latency first, ascending, then cost), best (quality desc, then cost);
config order breaks remaining ties."""


_RANK_REASONS = {
    "cheapest": "cheapest: ranked by estimated cost, then quality",
    "fastest": "fastest: ranked by latency hint, then estimated cost",
    "best": "best: ranked by quality, then estimated cost",
}


def rank_reason(objective: Objective, deployment: DeploymentProfile, cost: float) -> str:
    if objective == "fastest" and deployment.latency_ms is None:
        return "fastest: no latency hint, so after those with one"
    return _RANK_REASONS[objective]


def order_candidates(
    permitted: Sequence[tuple[DeploymentProfile, float, int]],
    objective: Objective,
    prefer: Sequence[str] = (),
    prefer_rule: str | None = None,
    fallbacks: Sequence[str] | None = None,
) -> tuple[Candidate, ...]:
    """Preferred first (in listed order), then the rest by objective; explicit fallbacks last.

    ``permitted`` holds ``(deployment, estimated cost, config index)``; only those can appear.
    """
    if not prefer and not fallbacks:
        ranked = sorted(permitted, key=RANK_KEYS[objective])
        return tuple(Candidate(d.name, d.locality, c, rank_reason(objective, d, c)) for d, c, _ in ranked)
    by_name = {dep.name: (dep, cost, index) for dep, cost, index in permitted}
    tail = [name for name in dict.fromkeys(fallbacks or ()) if name in by_name]
    ordered: list[Candidate] = []
    listed: set[str] = set()
    for name in prefer:
        if name in by_name and name not in listed:
            dep, cost, _ = by_name[name]
            ordered.append(Candidate(name, dep.locality, cost, f"preferred by rule '{prefer_rule}'"))
            listed.add(name)
    rest = sorted(
        (item for item in permitted if item[0].name not in listed and item[0].name not in tail),
        key=RANK_KEYS[objective],
    )
    for dep, cost, _ in rest:
        ordered.append(Candidate(dep.name, dep.locality, cost, rank_reason(objective, dep, cost)))
        listed.add(dep.name)
    for position, name in enumerate(tail, start=1):
        if name not in listed:
            dep, cost, _ = by_name[name]
            ordered.append(Candidate(name, dep.locality, cost, f"explicit fallback #{position}"))
            listed.add(name)
    return tuple(ordered)
