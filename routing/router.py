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
from routing.signals import RequestView, SignalExtractor
from routing.spec import Route, RoutingDefaults, Rule, SensitivityPolicy
from routing.task import TaskClassifier
from routing.types import (
    Candidate,
    DeploymentProfile,
    Exclusion,
    Objective,
    Plan,
    RoutingRequest,
    Sensitivity,
    TokenDecoder,
)


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

    # ---- planning

    def _decide(self, decision: Decision, health: Mapping[str, bool]) -> None:
        request = decision.request
        route = self.routes.get(request.model)
        pinned = None if route is not None else self.deployments.get(request.model)
        if route is None and pinned is None:
            raise UnknownModel(request.model)
        if pinned is not None:
            route = self._route_of.get(pinned.name)
        decision.route = route
        default_max_tokens = route.default_max_tokens if route else None
        view = decision.view = self.signals.view(request, default_max_tokens)
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
        problems = hard_reasons(pinned, view.needs, soft, health)
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
        for index, deployment in compiled.pool:
            if deployment.name == skip:
                continue
            cost = deployment.prices.cost(prompt, output)
            reasons = (
                governance_reasons(deployment, request.requires)
                + policy_reasons(deployment, rule, sensitivity, cost, unscannable)
                + hard_reasons(deployment, needs, soft, health)
            )
            if reasons:
                decision.excluded.append(Exclusion(deployment.name, "; ".join(reasons)))
            else:
                permitted.append((deployment, cost, index))
        candidates = order_candidates(
            permitted, decision.objective, rule.prefer if rule else (), rule.name if rule else None, route.fallbacks
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


def _blamed(excluded: Sequence[Exclusion]) -> str | None:
    """The pseudo-rule a refusal without a matched rule names: the invariant, else governance."""
    if any(INVARIANT in e.reason for e in excluded):
        return INVARIANT
    if any(r.startswith(REASON_PREFIXES) for e in excluded for r in e.reason.split("; ")):
        return GOVERNANCE
    return None
