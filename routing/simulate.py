"""Policy simulation: replay recorded requests (ledger rows) through a candidate policy.

Pure: the gateway loads the rows and compiles the two policies (the running one and the
candidate), this module plans every row with :meth:`~routing.router.Router.decide_recorded`
(the same rules, filters and ranking as live traffic, no backend called) and adds up what would
change, per project.

What a row becomes -- the change from the running policy to the candidate, applied to what
really happened:

* A row whose status is 400 or more (a failed attempt, a client that left) is not replayed: a
  failure cannot be simulated. It is counted apart (``failed``) and keeps its recorded cost in
  both columns (most such rows cost nothing).
* A row the candidate refuses (no permitted or capable deployment, a pinned deployment blocked,
  an unknown model) is *blocked* or *unservable* and costs nothing in the simulation; it is
  listed in its request class with the reason. When the running policy refuses it too (a row
  from before some earlier config change), nothing changes: it keeps its recorded deployment
  and cost and is counted as ``already_refused``.
* A row the candidate serves keeps its recorded deployment when the candidate ranks it first,
  or ranks first the same deployment the running policy ranks first and still permits the
  recorded one (or decides exactly as the running policy does): a fallback, a breaker that was
  open at the time, or any other history stays as it was. Otherwise it moves to the
  candidate's first choice.
* Its simulated cost is its recorded token counts at the simulated deployment's prices in the
  candidate, exactly as the ledger prices a request (:func:`routing.pricing.exact_cost`); a row
  that keeps its deployment at unchanged prices keeps its recorded cost to the last digit. So a
  candidate identical to the running policy yields a zero delta for every project.

Sensitivity is the recorded (final) level, raised to the candidate project's
``sensitivity_floor``; the detectors cannot run again without the body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, NamedTuple, TypeVar

from routing.errors import NoCandidates, PolicyBlocked, UnknownModel, UnsupportedEndpoint
from routing.policy import INVARIANT
from routing.pricing import exact_cost
from routing.router import Decision, Router
from routing.types import DeploymentProfile, Endpoint, RecordedRequest, Sensitivity

SELF_HOSTED = "self_hosted"
BLOCKED = "(blocked)"
UNSERVABLE = "(unservable)"
ENDPOINTS: dict[str, Endpoint] = {
    "chat": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
    "messages": "chat",  # Anthropic's Messages API is planned as a chat
    "responses": "chat",  # so is OpenAI's Responses API
}
"""Recorded endpoint (the API the client called) -> the endpoint the router plans; NULL (rows
older than the column) and anything unknown plan as ``chat``."""

RefusalKind = Literal["blocked", "unservable"]
_NOT_ROUTED = frozenset({"stream"})  # a recorded need no policy reads: request classes leave it out
_K = TypeVar("_K")


class LedgerRow(NamedTuple):
    """What the simulation reads of one ledger row (a tuple: a hundred thousand are made per run)."""

    project: str | None
    requested_model: str
    endpoint: str | None
    sensitivity: str | None
    task: str | None
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    deployment: str | None
    locality: str | None
    cost_usd: Decimal
    status: int = 200
    needs: frozenset[str] = frozenset()
    key_tags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Policy:
    """One side of a simulation: a compiled router, its deployments and the projects' floors."""

    router: Router
    profiles: Mapping[str, DeploymentProfile]
    floors: Mapping[str, Sensitivity] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A policy's decision for one kind of request: served (first choice, every permitted
    deployment) or refused (kind and reason)."""

    first: str | None
    permitted: frozenset[str]
    route: str | None
    rule: str | None
    sensitivity: str
    refusal: RefusalKind | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RequestClass:
    """Requests that would become blocked or unservable for one reason: a project's requests
    for one model, under one rule of the candidate."""

    project: str
    kind: RefusalKind
    requested_model: str
    route: str | None
    rule: str | None
    reason: str


@dataclass(slots=True)
class Tally:
    """Requests, tokens and money of one group of rows."""

    requests: int = 0
    tokens: int = 0
    current_usd: Decimal = Decimal(0)
    simulated_usd: Decimal = Decimal(0)

    def add(self, tokens: int, current: Decimal, simulated: Decimal) -> None:
        self.requests += 1
        self.tokens += tokens
        self.current_usd += current
        self.simulated_usd += simulated


@dataclass(slots=True)
class ClassTally(Tally):
    """A request class's rows, and what they were: sensitivities, tasks, endpoints, needs."""

    sensitivities: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    endpoints: set[str] = field(default_factory=set)
    needs: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Share:
    """Requests and tokens served, and how many of them on self-hosted deployments."""

    requests: int = 0
    tokens: int = 0
    self_hosted_requests: int = 0
    self_hosted_tokens: int = 0

    def add(self, tokens: int, self_hosted: bool) -> None:
        self.requests += 1
        self.tokens += tokens
        if self_hosted:
            self.self_hosted_requests += 1
            self.self_hosted_tokens += tokens

    @property
    def by_requests(self) -> float | None:
        return self.self_hosted_requests / self.requests if self.requests else None

    @property
    def by_tokens(self) -> float | None:
        return self.self_hosted_tokens / self.tokens if self.tokens else None


@dataclass(slots=True)
class ProjectResult:
    """Everything the simulation found for one project."""

    project: str
    requests: int = 0  # every row in the range
    current_usd: Decimal = Decimal(0)  # the ledger's sum over those rows
    simulated_usd: Decimal = Decimal(0)
    failed: Tally = field(default_factory=Tally)  # status >= 400: not replayed
    moved: Tally = field(default_factory=Tally)  # served on another deployment
    blocked: Tally = field(default_factory=Tally)
    unservable: Tally = field(default_factory=Tally)
    already_refused: Tally = field(default_factory=Tally)  # the running policy refuses them too: unchanged
    current_share: Share = field(default_factory=Share)
    simulated_share: Share = field(default_factory=Share)
    deployments: dict[str, tuple[Tally, Tally]] = field(default_factory=dict)  # name -> (current, simulated)
    shifts: dict[tuple[str, str], Tally] = field(default_factory=dict)  # (from, to) -> moved rows
    classes: dict[RequestClass, ClassTally] = field(default_factory=dict)

    @property
    def delta_usd(self) -> Decimal:
        return self.simulated_usd - self.current_usd

    def deployment(self, name: str) -> tuple[Tally, Tally]:
        found = self.deployments.get(name)
        if found is None:
            found = self.deployments[name] = (Tally(), Tally())
        return found


@dataclass(slots=True)
class SimulationResult:
    """Per project, in name order, and the rows read."""

    projects: list[ProjectResult]
    rows: int


_CONTEXT = re.compile(r"context window (\d+) < \d+ prompt \+ \d+ output tokens")
_COST = re.compile(r"estimated cost \$[0-9.]+ over")


def _generic(reason: str) -> str:
    """An exclusion reason without the numbers of one request, so that a class is one line."""
    return _COST.sub("estimated cost over", _CONTEXT.sub(r"context window \1 too small for the request", reason))


def refusal_of(decision: Decision) -> tuple[RefusalKind, str]:
    """Whether a refused decision is a policy block or an impossibility, and why (per class)."""
    error = decision.error
    if isinstance(error, PolicyBlocked):
        return "blocked", f"rule '{error.rule}' forbids the pinned deployment '{error.deployment}' (on_violation: block)"
    if isinstance(error, NoCandidates):
        reasons = [f"{e.deployment}: {_generic(e.reason)}" for e in error.excluded]
        by_policy = any("rule '" in e.reason or INVARIANT in e.reason for e in error.excluded)
        return ("blocked" if by_policy else "unservable"), "no permitted deployment: " + (
            "; ".join(reasons) or "the route has no candidates"
        )
    if isinstance(error, UnknownModel):
        return "unservable", f"'{error.model}' is neither a route nor a deployment"
    if isinstance(error, UnsupportedEndpoint):
        return "unservable", f"no candidate of '{error.model}' supports {error.endpoint}"
    return "unservable", str(error)


_Key = tuple[str, str, str, str, frozenset[str], str | None, frozenset[str], tuple[object, ...]]


class _Planner:
    """One policy's decisions, each computed once per kind of request (token counts reduced to
    the router's :meth:`~routing.router.Router.token_signature`)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.router = policy.router
        self.cache: dict[_Key, Outcome] = {}
        self.levels: dict[tuple[str | None, str | None], Sensitivity] = {}

    def level(self, recorded: str | None, project: str | None) -> Sensitivity:
        found = self.levels.get((recorded, project))
        if found is None:
            try:
                level = Sensitivity.parse(recorded) if recorded else Sensitivity.PUBLIC
            except ValueError:
                level = Sensitivity.PUBLIC
            floor = self.policy.floors.get(project or "", Sensitivity.PUBLIC)
            found = self.levels[(recorded, project)] = max(level, floor)
        return found

    def outcome(self, row: LedgerRow, endpoint: Endpoint) -> Outcome:
        signature = self.router.token_signature(row.requested_model, endpoint, row.prompt_tokens, row.completion_tokens)
        key = (
            row.requested_model,
            row.endpoint or "chat",
            row.sensitivity or "",
            row.task or "chat",
            row.needs,
            row.project,
            row.key_tags,
            signature,
        )
        found = self.cache.get(key)
        if found is not None:
            return found
        level = self.level(row.sensitivity, row.project)
        recorded = RecordedRequest(
            model=row.requested_model,
            endpoint=endpoint,
            sensitivity=level,
            task=row.task or "chat",
            prompt_tokens=row.prompt_tokens,
            output_tokens=row.completion_tokens,
            needs=row.needs,
            project=row.project,
            key_tags=row.key_tags,
        )
        decision = self.router.decide_recorded(recorded)
        route = decision.route.name if decision.route else None
        rule = decision.rule.name if decision.rule else None
        if decision.error is None:
            names = [c.deployment for c in decision.candidates]
            found = Outcome(names[0], frozenset(names), route, rule, level.label)
        else:
            kind, reason = refusal_of(decision)
            found = Outcome(None, frozenset(), route, rule, level.label, kind, reason)
        self.cache[key] = found
        return found


def _keeps(recorded: str, now: Outcome, new: Outcome) -> bool:
    """Whether a request the candidate serves stays on its recorded deployment (see the module docstring)."""
    if new.first == recorded:
        return True
    if now.refusal is not None:  # the running policy refuses it: keep history where the candidate allows it
        return recorded in new.permitted
    # the same first choice as today, and either the recorded deployment is still permitted or the
    # decision is the same as today's (history that neither policy explains stays as it was)
    return now.first == new.first and (recorded in new.permitted or now.permitted == new.permitted)


def simulate(rows: Iterable[LedgerRow], running: Policy, candidate: Policy) -> SimulationResult:
    """Replay ``rows`` under ``candidate`` against ``running``; see the module docstring."""
    now, new = _Planner(running), _Planner(candidate)
    same_prices = frozenset(
        name
        for name, profile in candidate.profiles.items()
        if name in running.profiles and running.profiles[name].prices == profile.prices
    )
    projects: dict[str, ProjectResult] = {}
    count = 0
    zero = Decimal(0)
    for row in rows:
        count += 1
        name = row.project or ""
        result = projects.get(name)
        if result is None:
            result = projects[name] = ProjectResult(name)
        cost = row.cost_usd
        result.requests += 1
        result.current_usd += cost
        tokens = row.prompt_tokens + row.completion_tokens
        recorded = row.deployment or ""
        current, _ = result.deployment(recorded)
        current.add(tokens, cost, zero)
        if row.status >= 400:  # kept as it was, on both sides
            result.failed.add(tokens, cost, cost)
            _served(result, recorded, tokens, cost, None, count_share=False)
            continue
        result.current_share.add(tokens, _locality(row.locality, recorded, running) == SELF_HOSTED)
        endpoint = ENDPOINTS.get(row.endpoint or "chat", "chat")
        outcome = new.outcome(row, endpoint)
        if outcome.refusal is not None:
            if now.outcome(row, endpoint).refusal is not None:  # refused today as well: nothing changes
                result.already_refused.add(tokens, cost, cost)
                _served(result, recorded, tokens, cost, _locality(row.locality, recorded, running))
                continue
            tally = result.blocked if outcome.refusal == "blocked" else result.unservable
            tally.add(tokens, cost, zero)
            _count(result.shifts, (recorded, BLOCKED if outcome.refusal == "blocked" else UNSERVABLE), tokens, cost, zero)
            klass = RequestClass(name, outcome.refusal, row.requested_model, outcome.route, outcome.rule, outcome.reason)
            found = result.classes.get(klass)
            if found is None:
                found = result.classes[klass] = ClassTally()
            found.add(tokens, cost, zero)
            found.sensitivities.add(outcome.sensitivity)
            found.tasks.add(row.task or "chat")
            found.endpoints.add(row.endpoint or "chat")
            found.needs.update(row.needs - _NOT_ROUTED)
            continue
        target = (
            recorded
            if _keeps(recorded, now.outcome(row, endpoint) if outcome.first != recorded else outcome, outcome)
            else outcome.first
        )
        assert target is not None
        profile = candidate.profiles.get(target)
        if profile is None or (target == recorded and target in same_prices):
            simulated = cost  # unchanged, or a deployment the candidate does not price: as recorded
        else:
            simulated = exact_cost(profile.prices, row.prompt_tokens, row.cached_tokens, row.completion_tokens)
        locality = profile.locality if profile is not None else _locality(row.locality, target, running)
        _served(result, target, tokens, simulated, locality)
        if target != recorded:
            result.moved.add(tokens, cost, simulated)
            _count(result.shifts, (recorded, target), tokens, cost, simulated)
    return SimulationResult([projects[n] for n in sorted(projects)], count)


def _served(
    result: ProjectResult, deployment: str, tokens: int, simulated: Decimal, locality: str | None, count_share: bool = True
) -> None:
    result.simulated_usd += simulated
    if count_share:
        result.simulated_share.add(tokens, locality == SELF_HOSTED)
    _, after = result.deployment(deployment)
    after.add(tokens, Decimal(0), simulated)


def _locality(recorded: str | None, deployment: str, running: Policy) -> str | None:
    if recorded:
        return recorded
    profile = running.profiles.get(deployment)
    return profile.locality if profile else None


def _count(groups: dict[_K, Tally], key: _K, tokens: int, current: Decimal, simulated: Decimal) -> None:
    tally = groups.get(key)
    if tally is None:
        tally = groups[key] = Tally()
    tally.add(tokens, current, simulated)
