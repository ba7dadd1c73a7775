"""The sensitivity signal: the highest of what the detectors find, the caller's hints, the
project's floor, the configured default, and ``confidential`` when the request carried more text
than the scan budget. Hints and floors can only raise the level."""

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
    ``default_level``, ``scan_limit``), and every detector that fired with its count -- never the
    matched text."""

    level: Sensitivity
    sources: tuple[str, ...]
    detections: tuple[DetectorHit, ...]


class SensitivityClassifier:
    """Detectors compiled once per config; :meth:`classify` is pure CPU over one request.

    The detector set remembers each chunk of text it has scanned (by a hash of its content, no
    text kept), so a chat whose earlier turns were classified before pays only for the new turn.
    """

    def __init__(self, policy: SensitivityPolicy) -> None:
        self.detectors: DetectorSet = compile_detectors(policy)
        self.default_level = Sensitivity.parse(policy.default_level)
        self.policy = policy

    def classify(self, request: RoutingRequest, content: RequestContent) -> SensitivityResult:
        """Raises :class:`~routing.errors.InvalidHint` for an unknown hint value."""
        detections = self.detectors.scan_texts(content.texts)
        contributions: list[tuple[str, Sensitivity]] = [(f"detector:{hit.entity}", hit.level) for hit in detections]
        contributions.extend(sensitivity_hints(request))
        contributions.append(("project_floor", Sensitivity.parse(request.project_floor)))
        contributions.append(("default_level", self.default_level))
        if content.over_limit:
            contributions.append(("scan_limit", Sensitivity.CONFIDENTIAL))
        level = max(lvl for _, lvl in contributions)
        sources = () if level == Sensitivity.PUBLIC else tuple(dict.fromkeys(s for s, lvl in contributions if lvl == level))
        return SensitivityResult(level, sources, detections)
