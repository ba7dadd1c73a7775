"""The sensitivity signal: the highest of what the detectors find, the caller's hints, the
project's floor and the configured default. Hints and floors can only raise the level."""

from __future__ import annotations

from dataclasses import dataclass

from routing.content import RequestContent
from routing.detectors import DetectorSet, compile_detectors
from routing.hints import sensitivity_hints
from routing.spec import SensitivityPolicy
from routing.types import DetectorHit, RoutingRequest, Sensitivity


@dataclass(slots=True)  # not frozen: built per request, and frozen ones cost 4x to construct
class SensitivityResult:
    """The level, what decided it (``detector:<name>``, ``hint``, ``metadata``, ``project_floor``,
    ``default_level``), and every detector that fired with its count -- never the matched text."""

    level: Sensitivity
    sources: tuple[str, ...]
    detections: tuple[DetectorHit, ...]


class SensitivityClassifier:
    """Detectors compiled once per config; :meth:`classify` is pure CPU over one request."""

    def __init__(self, policy: SensitivityPolicy) -> None:
        self.detectors: DetectorSet = compile_detectors(policy)
        self.default_level = Sensitivity.parse(policy.default_level)

    def classify(self, request: RoutingRequest, content: RequestContent) -> SensitivityResult:
        """Raises :class:`~routing.errors.InvalidHint` for an unknown hint value."""
        detections = self.detectors.scan(content.joined())
        contributions: list[tuple[str, Sensitivity]] = [(f"detector:{hit.entity}", hit.level) for hit in detections]
        contributions.extend(sensitivity_hints(request))
        contributions.append(("project_floor", Sensitivity.parse(request.project_floor)))
        contributions.append(("default_level", self.default_level))
        level = max(lvl for _, lvl in contributions)
        sources = () if level == Sensitivity.PUBLIC else tuple(dict.fromkeys(s for s, lvl in contributions if lvl == level))
        return SensitivityResult(level, sources, detections)
