"""Everything the policy looks at, computed once per request: sensitivity, task, token counts,
the capabilities the request needs, its complexity and the project's volume."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from routing.complexity import Complexity, ComplexityEstimator
from routing.content import RequestContent, extract_content
from routing.errors import RequestTooLarge
from routing.policy import Needs
from routing.pricing import OutputBudget, output_budget
from routing.sensitivity import SensitivityClassifier
from routing.spec import RoutingDefaults, SensitivityPolicy
from routing.task import HeuristicTaskClassifier, TaskClassifier, detect_task
from routing.types import RoutingRequest, Signals, TokenDecoder
from routing.volume import classify_volume


@dataclass(slots=True)  # not frozen: built per request, and frozen ones cost 4x to construct
class RequestView:
    """The signals of one request plus what the planner needs beyond them."""

    signals: Signals
    needs: Needs
    output: OutputBudget
    content: RequestContent


def _needed_capabilities(body: Mapping[str, Any], content: RequestContent) -> frozenset[str]:
    needed = set()
    tools = body.get("tools") or body.get("functions")
    if isinstance(tools, list) and tools:
        needed.add("tools")
    if content.images:
        needed.add("vision")
    response_format = body.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_schema":
        needed.add("json_schema")
    return frozenset(needed)


class SignalExtractor:
    """The per-config classifiers (detectors compiled once) and the defaults they fall back on."""

    def __init__(
        self,
        sensitivity: SensitivityPolicy,
        defaults: RoutingDefaults,
        task_classifier: TaskClassifier | None = None,
        token_decoder: TokenDecoder | None = None,
    ) -> None:
        self.sensitivity = SensitivityClassifier(sensitivity)
        self.task_classifier = task_classifier or HeuristicTaskClassifier()
        self.defaults = defaults
        self.token_decoder = token_decoder
        self.max_scan_bytes = sensitivity.max_scan_bytes
        self.refuse_over_limit = sensitivity.over_limit == "refuse"
        self.complexity = ComplexityEstimator(defaults.complexity)
        self.volume = defaults.volume

    def prompt_tokens(self, request: RoutingRequest, content: RequestContent) -> int:
        """The caller's count when given, else characters / ``chars_per_token`` plus token-id inputs."""
        if request.prompt_tokens is not None:
            return request.prompt_tokens
        return math.ceil(content.chars / self.defaults.chars_per_token) + content.token_ids

    def view(self, request: RoutingRequest, default_max_tokens: int | None = None) -> RequestView:
        """Raises :class:`~routing.errors.InvalidHint` when a caller hint has an unknown value, and
        :class:`~routing.errors.RequestTooLarge` when the text is over the scan budget and the
        policy refuses such requests (before any detector runs)."""
        content = extract_content(request.endpoint, request.body, self.token_decoder, self.max_scan_bytes)
        if content.over_limit and self.refuse_over_limit:
            raise RequestTooLarge(self.max_scan_bytes)
        sensitivity = self.sensitivity.classify(request, content)
        task = detect_task(request, content, self.task_classifier)
        prompt_tokens = self.prompt_tokens(request, content)
        output = output_budget(request.endpoint, request.body, default_max_tokens or self.defaults.default_max_tokens)
        capabilities = _needed_capabilities(request.body, content)
        if request.complexity is None:
            complexity = self.complexity.estimate(content.last_user_text, prompt_tokens, task.task)
        else:
            complexity = Complexity(request.complexity, 0, f"{request.complexity}: given by the caller")
        volume, volume_reason = classify_volume(self.volume, request.project, request.volume_rpm, request.volume)
        signals = Signals(
            sensitivity=sensitivity.level,
            sensitivity_sources=sensitivity.sources,
            detections=sensitivity.detections,
            task=task.task,
            task_reason=task.reason,
            prompt_tokens=prompt_tokens,
            max_output_tokens=output.per_choice,
            images=content.images,
            unscannable=tuple(sorted(content.unscannable.items())),
            scan_limited=content.over_limit,
            needs=tuple(sorted(capabilities)) if capabilities else (),
            complexity=complexity.level,
            complexity_reason=complexity.reason,
            volume=volume,
            volume_reason=volume_reason,
        )
        # Without an explicit max_tokens only the prompt must fit: the upstream stops at the window.
        needs = Needs(
            endpoint=request.endpoint,
            capabilities=capabilities,
            prompt_tokens=prompt_tokens,
            output_tokens=output.per_choice if output.explicit else 1,
        )
        return RequestView(signals, needs, output, content)
