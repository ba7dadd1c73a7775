"""The router: a requested model name plus a request -> a ranked, explainable :class:`Plan`.

A name that is a route plans over the route's candidates. A name that is a deployment is
"pinned": it is checked against the first route listing it (or, if none does, only against the
hard constraints and the invariant); when policy forbids it, the route's ``on_violation`` either
re-plans over that route (``reroute``, ``Plan.rerouted``) or refuses (``block``).

A project's ``requires`` (approved use, region: :mod:`routing.governance`) is a hard constraint
too: a deployment that does not meet it is excluded from every plan for that project, pinned or not.

Whatever the config says, a request whose final sensitivity is confidential or restricted is never
planned onto a hosted deployment (:data:`routing.policy.INVARIANT`); nor is a request with content
the detectors cannot read (images, audio, binary files, undecodable token ids), unless that
deployment's ``unscannable`` level is below confidential. A request with more text than
``sensitivity.max_scan_bytes`` is confidential at least, or refused (``RequestTooLarge``).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from routing.errors import (
    InvalidHint,
    NoCandidates,
    PolicyBlocked,
    RoutingError,
    UnknownModel,
    UnsupportedEndpoint,
)
from routing.explain import explain_decision
from routing.governance import GOVERNANCE, REASON_PREFIXES, governance_reasons
from routing.live import NO_LIVE_STATE, downgrade_reason
from routing.policy import (
    INVARIANT,
    Facts,
    first_matching_rule,
    hard_reasons,
    invariant_reason,
    order_candidates,
    policy_reasons,
    rule_reasons,
    soft_capabilities,
)
from routing.ranking import Ranker
from routing.signals import RequestView, SignalExtractor, recorded_view
from routing.spec import Route, RoutingDefaults, Rule, SensitivityPolicy, TokenRange
from routing.task import TaskClassifier
from routing.types import (
    Candidate,
    DeploymentProfile,
    Endpoint,
    Exclusion,
    Objective,
    Plan,
    RecordedRequest,
    RoutingRequest,
    Sensitivity,
    TokenDecoder,
)

_ALL_HEALTHY: Mapping[str, bool] = {}
# per model: the candidates' (input, output) prices and context windows, the rules' prompt bounds and cost ceilings
_TokenParts = tuple[tuple[tuple[float, float], ...], tuple[int, ...], tuple[TokenRange, ...], tuple[float, ...]]
_NO_BODY: Mapping[str, Any] = {}


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """A route with its candidates resolved against the deployment catalogue, once per config."""

    route: Route
    pool: tuple[tuple[int, DeploymentProfile], ...]  # (config index, deployment), duplicates dropped
    missing: tuple[str, ...]  # candidates not in the catalogue (disabled or not configured)
    declared: frozenset[str]  # every capability some candidate declares

    @classmethod
    def build(cls, route: Route, deployments: Mapping[str, DeploymentProfile]) -> CompiledRoute:
        names = tuple(dict.fromkeys(route.candidates))
        pool = tuple((i, deployments[n]) for i, n in enumerate(names) if n in deployments)
        declared = frozenset().union(*(d.capabilities for _, d in pool))
        return cls(route, pool, tuple(n for n in names if n not in deployments), declared)


@dataclass(slots=True)
class Decision:
    """Everything a planning attempt found out, whether it ends in a plan or a refusal."""

    request: RoutingRequest
    view: RequestView | None = None
    route: Route | None = None
    rule: Rule | None = None
    objective: Objective | None = None
    candidates: tuple[Candidate, ...] = ()
    excluded: list[Exclusion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rerouted: bool = False
    error: RoutingError | InvalidHint | None = None

    def plan(self) -> Plan:
        if self.error is not None:
            raise self.error
        assert self.view is not None
        return Plan(
            requested_model=self.request.model,
            route=self.route.name if self.route else None,
            rule=self.rule.name if self.rule else None,
            signals=self.view.signals,
            candidates=self.candidates,
            excluded=tuple(self.excluded),
            rerouted=self.rerouted,
            parameters=self.rule.set if self.rule and self.rule.set else {},
        )


class Router:
    """Routes, deployments and sensitivity policy compiled once per config; ``plan`` is pure CPU."""

    def __init__(
        self,
        routes: Sequence[Route],
        deployments: Sequence[DeploymentProfile],
        sensitivity: SensitivityPolicy = SensitivityPolicy(),
        defaults: RoutingDefaults = RoutingDefaults(),
        task_classifier: TaskClassifier | None = None,
        token_decoder: TokenDecoder | None = None,
    ) -> None:
        """``token_decoder`` reads token-id inputs back into text for the scan; without one they
        are unscannable (see :mod:`routing.content`)."""
        self.routes: dict[str, Route] = {r.name: r for r in routes}
        self.deployments: dict[str, DeploymentProfile] = {d.name: d for d in deployments}
        self.defaults = defaults
        self.signals = SignalExtractor(sensitivity, defaults, task_classifier, token_decoder)
        self._compiled = {r.name: CompiledRoute.build(r, self.deployments) for r in routes}
        self._signature_parts: dict[str, _TokenParts] = {}
        # routes with a group of deployments to balance (the others rank as they always have)
        self._grouped = {name for name, compiled in self._compiled.items() if any(d.group is not None for _, d in compiled.pool)}
        self._route_of: dict[str, Route] = {}  # deployment -> first route listing it
        for route in routes:
            for name in route.candidates:
                self._route_of.setdefault(name, route)

    @property
    def model_names(self) -> list[str]:
        """Names a client may ask for: routes, then deployments."""
        return [*self.routes, *(d for d in self.deployments if d not in self.routes)]

    def plan(self, request: RoutingRequest, health: Mapping[str, bool]) -> Plan:
        """The ranked plan for ``request`` given ``health`` (deployment -> healthy; missing = healthy).

        Raises UnknownModel, UnsupportedEndpoint, InvalidHint, PolicyBlocked or NoCandidates.
        """
        return self.decide(request, health).plan()

    def explain(self, request: RoutingRequest, health: Mapping[str, bool]) -> dict[str, Any]:
        """A JSON-ready account of the decision; a refusal is reported, not raised."""
        return explain_decision(self.decide(request, health))

    def decide(self, request: RoutingRequest, health: Mapping[str, bool]) -> Decision:
        """What :meth:`plan` and :meth:`explain` share: the decision, a refusal kept in ``error``."""
        decision = Decision(request)
        try:
            self._decide(decision, health)
        except (RoutingError, InvalidHint) as error:
            decision.error = error
        return decision

    def decide_recorded(self, recorded: RecordedRequest, health: Mapping[str, bool] = _ALL_HEALTHY) -> Decision:
        """:meth:`decide` for a request known only by its recorded signals (a ledger row): the
        same rules, filters and ranking, with the recorded signals in place of the body's.
        Used by policy simulation; calls no backend and reads no body."""
        request = RoutingRequest(
            model=recorded.model,
            endpoint=recorded.endpoint,
            body=_NO_BODY,
            project=recorded.project,
            key_tags=recorded.key_tags,
        )
        decision = Decision(request)
        try:
            pinned = self._resolve(decision)
            complexity = self.signals.complexity.estimate("", recorded.prompt_tokens, recorded.task)
            decision.view = recorded_view(recorded, complexity)
            self._plan(decision, pinned, health)
        except (RoutingError, InvalidHint) as error:
            decision.error = error
        return decision

    def token_signature(self, model: str, endpoint: Endpoint, prompt_tokens: int, output_tokens: int) -> tuple[object, ...]:
        """Every comparison planning makes on a request's token counts, for requests to ``model``:
        which rules' ``prompt_tokens`` bounds hold, which candidates' context windows fit the
        request, which ``max_cost_usd`` ceilings it stays under, the candidates in order of
        estimated cost (ties marked), and whether the prompt is long enough to be a complexity
        point. ``output_tokens`` is the output as :func:`recorded_view` takes it. Requests that
        differ only in token counts and have equal signatures are planned alike, so policy
        simulation plans each signature once. A new condition on token counts
        in planning belongs here too (tests/routing/test_simulate.py checks the claim)."""
        parts = self._signature_parts.get(model)
        if parts is None:
            parts = self._signature_parts[model] = self._token_parts(model)
        prices, windows, bounds, ceilings = parts
        output = 0 if endpoint == "embeddings" else output_tokens
        total = prompt_tokens + output
        # Prices.cost with no cached tokens, bit for bit: (prompt * input + output * output) / 1e6
        costs = [(prompt_tokens * i + output * o) / 1e6 for i, o in prices]
        order = sorted(range(len(costs)), key=costs.__getitem__)
        signature: list[object] = [total <= window for window in windows]
        signature += order
        signature += [costs[a] == costs[b] for a, b in itertools.pairwise(order)]
        for bound in bounds:
            signature.append(
                (bound.min is None or prompt_tokens >= bound.min) and (bound.max is None or prompt_tokens <= bound.max)
            )
        for ceiling in ceilings:
            signature += [cost > ceiling for cost in costs]
        signature.append(prompt_tokens >= self.signals.complexity.long_prompt)  # a complexity point
        return tuple(signature)

    def _token_parts(self, model: str) -> _TokenParts:
        route = self.routes.get(model)
        pinned = self.deployments.get(model) if route is None else None
        if pinned is not None:
            route = self._route_of.get(pinned.name)
        pool = [d for _, d in self._compiled[route.name].pool] if route else []
        if pinned is not None and pinned not in pool:
            pool.append(pinned)
        rules = route.rules if route else []
        return (
            tuple((d.prices.input_per_mtok, d.prices.output_per_mtok) for d in pool),
            tuple(d.context_window for d in pool),
            tuple(r.when.prompt_tokens for r in rules if r.when.prompt_tokens is not None),
            tuple(f.max_cost_usd for r in rules for f in (r.allow, r.deny) if f is not None and f.max_cost_usd is not None),
        )

    # ---- planning

    def _resolve(self, decision: Decision) -> DeploymentProfile | None:
        """The route the requested model names (or that lists the pinned deployment); the pinned
        deployment when the name is one. Raises UnknownModel."""
        model = decision.request.model
        route = self.routes.get(model)
        pinned = None if route is not None else self.deployments.get(model)
        if route is None and pinned is None:
            raise UnknownModel(model)
        if pinned is not None:
            route = self._route_of.get(pinned.name)
        decision.route = route
        return pinned

    def _decide(self, decision: Decision, health: Mapping[str, bool]) -> None:
        pinned = self._resolve(decision)
        route = decision.route
        default_max_tokens = route.default_max_tokens if route else None
        decision.view = self.signals.view(decision.request, default_max_tokens)
        self._plan(decision, pinned, health)

    def _plan(self, decision: Decision, pinned: DeploymentProfile | None, health: Mapping[str, bool]) -> None:
        """Match the rule and plan, from the view's signals however they were obtained."""
        request, route, view = decision.request, decision.route, decision.view
        assert view is not None
        signals = view.signals
        facts = Facts(
            signals.sensitivity,
            signals.task,
            request.project,
            request.key_tags,
            signals.prompt_tokens,
            request.model,
            signals.volume,
            signals.complexity,
            signals.needs,
        )
        decision.rule = first_matching_rule(route.rules, facts) if route else None
        decision.objective = (decision.rule.objective if decision.rule else None) or (route.objective if route else "cheapest")
        if pinned is not None:
            self._plan_pinned(decision, pinned, health)
        else:
            self._plan_route(decision, health)

    # Every comparison below on token counts (rule bounds, context windows, cost ceilings, ranking
    # by estimated cost) is mirrored in token_signature, which policy simulation caches decisions by.

    def _cost(self, deployment: DeploymentProfile, view: RequestView) -> float:
        return deployment.prices.cost(view.signals.prompt_tokens, view.output.total)

    def _plan_pinned(self, decision: Decision, pinned: DeploymentProfile, health: Mapping[str, bool]) -> None:
        view, route, rule = decision.view, decision.route, decision.rule
        assert view is not None
        request = decision.request
        if view.needs.endpoint_capability not in pinned.capabilities:
            raise UnsupportedEndpoint(request.model, request.endpoint)
        governed = governance_reasons(pinned, request.requires)
        by_rule = rule_reasons(pinned, rule, self._cost(pinned, view))
        violation = invariant_reason(pinned, view.signals.sensitivity, view.signals.unscannable_summary)
        if governed or by_rule or violation:
            reasons = governed + ([violation] if violation else []) + by_rule
            decision.excluded.append(Exclusion(pinned.name, "; ".join(reasons)))
            blamed = GOVERNANCE if governed else (rule.name if by_rule and rule else INVARIANT)
            if route is None:
                raise NoCandidates(request.model, blamed, view.signals, tuple(decision.excluded))
            if route.on_violation == "block":
                raise PolicyBlocked(pinned.name, blamed, view.signals, reason="; ".join(governed) if governed else None)
            decision.rerouted = True
            decision.notes.append(f"'{pinned.name}' is not permitted; rerouted over route '{route.name}'")
            self._plan_route(decision, health, skip=pinned.name)
            return
        soft = soft_capabilities(view.needs.capabilities, pinned.capabilities)
        problems = hard_reasons(pinned, view.needs, soft, health) + live_reasons(pinned, request)
        if problems:
            decision.excluded.append(Exclusion(pinned.name, "; ".join(problems)))
            raise NoCandidates(request.model, rule.name if rule else None, view.signals, tuple(decision.excluded))
        cost = self._cost(pinned, view)
        decision.candidates = (Candidate(pinned.name, pinned.locality, cost, "requested by name"),)

    def _plan_route(self, decision: Decision, health: Mapping[str, bool], skip: str | None = None) -> None:
        view, route, rule = decision.view, decision.route, decision.rule
        assert view is not None and route is not None and decision.objective is not None
        compiled = self._compiled[route.name]
        request, needs, sensitivity = decision.request, view.needs, view.signals.sensitivity
        decision.excluded.extend(Exclusion(n, "not available (disabled or not configured)") for n in compiled.missing)
        if compiled.pool and needs.endpoint_capability not in compiled.declared:
            raise UnsupportedEndpoint(request.model, request.endpoint)
        soft = soft_capabilities(needs.capabilities, compiled.declared)
        for capability in sorted(soft):
            decision.notes.append(f"request uses {capability} but no candidate declares it; not enforced")
        prompt, output = view.signals.prompt_tokens, view.output.total
        unscannable = view.signals.unscannable_summary
        permitted: list[tuple[DeploymentProfile, float, int]] = []
        live = request.live
        live_checks = live is not None and bool(live.capped or live.downgrade)
        for index, deployment in compiled.pool:
            if deployment.name == skip:
                continue
            cost = deployment.prices.cost(prompt, output)
            reasons = (
                governance_reasons(deployment, request.requires)
                + policy_reasons(deployment, rule, sensitivity, cost, unscannable)
                + hard_reasons(deployment, needs, soft, health)
            )
            if live_checks:
                reasons += live_reasons(deployment, request)
            if reasons:
                decision.excluded.append(Exclusion(deployment.name, "; ".join(reasons)))
            else:
                permitted.append((deployment, cost, index))
        ranker = None  # measurements matter to "fastest" only; balancing to routes with a group
        if route.name in self._grouped or (live is not None and decision.objective == "fastest"):
            streaming = bool(request.body.get("stream"))
            ranker = Ranker(decision.objective, live or NO_LIVE_STATE, streaming=streaming, balance=route.balance)
        candidates = order_candidates(
            permitted, decision.objective, rule.prefer if rule else (), rule.name if rule else None, route.fallbacks, ranker
        )
        decision.candidates = self._guard(decision, candidates)
        if not decision.candidates:
            blamed = rule.name if rule else _blamed(decision.excluded)
            raise NoCandidates(request.model, blamed, view.signals, tuple(decision.excluded))

    def _guard(self, decision: Decision, candidates: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
        """Last line of defence for the invariant and the project's requirements, independent of
        how the list was built."""
        assert decision.view is not None
        sensitivity = decision.view.signals.sensitivity
        unscannable = decision.view.signals.unscannable_summary
        requires = decision.request.requires
        if sensitivity < Sensitivity.CONFIDENTIAL and not unscannable and requires is None:
            return candidates
        kept = []
        for candidate in candidates:
            deployment = self.deployments[candidate.deployment]
            reason = invariant_reason(deployment, sensitivity, unscannable)
            reasons = ([reason] if reason else []) + governance_reasons(deployment, requires)
            if reasons:
                decision.excluded.append(Exclusion(candidate.deployment, "; ".join(reasons)))
            else:
                kept.append(candidate)
        return tuple(kept)


def live_reasons(deployment: DeploymentProfile, request: RoutingRequest) -> list[str]:
    """Why measured conditions keep ``deployment`` out: a spend cap reached, or a budget
    downgrade that allows only deployments that cost nothing (``request.live``)."""
    live = request.live
    if live is None:
        return []
    reasons = []
    capped = live.capped.get(deployment.name)
    if capped:
        reasons.append(capped)
    if live.downgrade and (deployment.prices.input_per_mtok or deployment.prices.output_per_mtok):
        reasons.append(downgrade_reason(request.project))
    return reasons


def _blamed(excluded: Sequence[Exclusion]) -> str | None:
    """The pseudo-rule a refusal without a matched rule names: the invariant, else governance."""
    if any(INVARIANT in e.reason for e in excluded):
        return INVARIANT
    if any(r.startswith(REASON_PREFIXES) for e in excluded for r in e.reason.split("; ")):
        return GOVERNANCE
    return None
