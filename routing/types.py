"""Plain data that flows into and out of the router."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from core.literals import TASKS, Capability, Endpoint, Locality, Objective, Sensitivity

if TYPE_CHECKING:
    from routing.governance import Requires

__all__ = [
    "TASKS",
    "Candidate",
    "Capability",
    "DeploymentProfile",
    "DetectorHit",
    "Endpoint",
    "Exclusion",
    "Locality",
    "Objective",
    "Plan",
    "Prices",
    "RoutingRequest",
    "Sensitivity",
    "Signals",
    "TokenDecoder",
]


class TokenDecoder(Protocol):
    """Token ids back to text: every plausible reading (one per vocabulary that holds them all).

    A client does not say which tokenizer made its ids, so whoever scans reads them all; an empty
    result means the ids decode in no vocabulary the decoder knows, and they stay unscannable.
    """

    def __call__(self, ids: Sequence[int]) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    cached_input_per_mtok: float | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached_price = self.input_per_mtok if self.cached_input_per_mtok is None else self.cached_input_per_mtok
        uncached = max(0, prompt_tokens - cached_tokens)
        return (uncached * self.input_per_mtok + cached_tokens * cached_price + completion_tokens * self.output_per_mtok) / 1e6


@dataclass(frozen=True, slots=True)
class DeploymentProfile:
    """What the router knows about one deployment (no credentials, no URLs)."""

    name: str
    provider: str
    model: str
    locality: Locality
    capabilities: frozenset[str]
    context_window: int
    quality: int = 3
    prices: Prices = Prices()
    latency_ms: float | None = None  # a static hint for the "fastest" objective
    # the least level a request with unscannable parts (images, audio, binary files, undecodable
    # token ids) is treated as, for this deployment: by default such a request stays self-hosted
    unscannable: Sensitivity = Sensitivity.CONFIDENTIAL
    kind: str = "instruct"  # base | instruct | embedding: a base model never serves a chat
    # governance (routing.governance): what a project's ``requires`` is checked against
    approved_for: frozenset[str] = frozenset()
    region: str | None = None
    license: str | None = None


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    """One request as the router sees it: the parsed body plus caller context."""

    model: str
    endpoint: Endpoint
    body: Mapping[str, Any]
    hints: Mapping[str, str] = field(default_factory=dict)  # sensitivity / task / project-tag
    project: str | None = None
    project_floor: Sensitivity = Sensitivity.PUBLIC
    key_tags: frozenset[str] = frozenset()
    prompt_tokens: int | None = None  # counted by the caller; estimated from characters when None
    requires: Requires | None = None  # the project's hard requirements on deployments (routing.governance)
    # the project's request rate (requests/min over routing.volume.window_s, every replica), as
    # the gateway measured it; None: not measured. ``volume`` gives the class outright (a
    # replayed ledger row) and wins over the rate.
    volume_rpm: float | None = None
    volume: str | None = None
    complexity: str | None = None  # low | high given outright (a replayed ledger row); None: estimated


@dataclass(frozen=True, slots=True)
class DetectorHit:
    entity: str  # e.g. "credit_card", "aws_access_key"; never the matched value
    count: int
    level: Sensitivity


@dataclass(frozen=True, slots=True)
class Signals:
    sensitivity: Sensitivity
    sensitivity_sources: tuple[str, ...]  # "detector:email", "hint", "project_floor"
    detections: tuple[DetectorHit, ...]
    task: str
    task_reason: str
    prompt_tokens: int
    max_output_tokens: int
    images: int = 0  # image parts, which the prompt's text does not account for
    unscannable: tuple[tuple[str, int], ...] = ()  # (kind, parts) the detectors could not read
    scan_limited: bool = False  # more text than sensitivity.max_scan_bytes: not all of it was scanned
    needs: tuple[str, ...] = ()  # sorted: vision (image parts), tools (tools/functions), json_schema
    complexity: str = "low"  # low | high (routing.complexity)
    complexity_reason: str = ""
    volume: str = "normal"  # normal | high: the project's request rate (routing.volume)
    volume_reason: str = ""

    @property
    def unscannable_summary(self) -> str:
        """``"image x2, audio x1"``; empty when everything was scanned."""
        return ", ".join(f"{kind} x{count}" for kind, count in self.unscannable)


@dataclass(frozen=True, slots=True)
class Candidate:
    deployment: str
    locality: Locality
    estimated_cost_usd: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Exclusion:
    deployment: str
    reason: str


@dataclass(frozen=True, slots=True)
class Plan:
    """The ranked candidates (execution walks them in order) and everything left out, with why."""

    requested_model: str
    route: str | None
    rule: str | None
    signals: Signals
    candidates: tuple[Candidate, ...]
    excluded: tuple[Exclusion, ...] = ()
    rerouted: bool = False  # a pinned deployment was not allowed and another was chosen
    # request parameters the matched rule sets (``set:``); the gateway sends each only to a
    # deployment that supports it, attempt by attempt
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def deployments(self) -> tuple[str, ...]:
        return tuple(c.deployment for c in self.candidates)
