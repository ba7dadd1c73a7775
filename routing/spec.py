"""The policy half of the config file (``routes:`` and ``sensitivity:``), as strict models.

``gateway.config`` embeds these in the whole-file schema; the router compiles them once per
config. Unknown keys are rejected everywhere.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.literals import TASKS, Capability, Level, Locality, Sensitivity
from core.strict import Strict
from routing.complexity import ComplexityPolicy
from routing.volume import VolumePolicy

Need = Literal["vision", "tools", "json_schema"]


class TokenRange(Strict):
    """Inclusive bounds on a token count; either may be omitted."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)


class When(Strict):
    """A rule matches when every given condition holds (an empty ``when`` always matches)."""

    sensitivity: list[Level] | None = None
    task: list[str] | None = None
    project: list[str] | None = None
    key_tags: list[str] | None = None  # any of these tags on the caller's key
    prompt_tokens: TokenRange | None = None
    model: list[str] | None = None  # the model name the client asked for
    # the hybrid policy's signals: the project's measured request rate (routing.volume), an
    # estimate of how hard the request is (routing.complexity), and what it needs of a
    # deployment: images (vision), tools or functions (tools), a json_schema response format.
    # ``needs`` matches when the request needs every one listed.
    volume: Literal["high", "normal"] | None = None
    complexity: Literal["low", "high"] | None = None
    needs: list[Need] | None = Field(default=None, min_length=1)

    @field_validator("task")
    @classmethod
    def _known_tasks(cls, value: list[str] | None) -> list[str] | None:
        for task in value or []:
            if task not in TASKS:
                raise ValueError(f"unknown task '{task}'; expected one of {', '.join(TASKS)}")
        return value


class Filter(Strict):
    """Conditions on deployments, used by ``allow`` and ``deny``.

    ``allow`` keeps a deployment only if it meets every condition given; ``deny`` drops it if it
    meets any (its locality or name is listed, it has a listed capability). The two ceilings mean
    the same in both: a deployment whose output price or estimated request cost is above is dropped.
    """

    locality: list[Locality] | None = None
    deployments: list[str] | None = None
    capabilities: list[Capability] | None = None
    max_price_per_mtok: float | None = Field(default=None, ge=0)  # output price ceiling, USD / 1M tokens
    max_cost_usd: float | None = Field(default=None, ge=0)  # estimated cost ceiling for this request


UNSETTABLE = frozenset(
    {
        "model",
        "messages",
        "prompt",
        "input",
        "stream",
        "stream_options",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "metadata",
        "user",
        "tools",
        "functions",
        "tool_choice",
        "function_call",
        "audio",
        "modalities",
    }
)
"""Request fields a rule may not ``set``: what the request is (its content, its tools, what it
must produce), which routing has already matched against capabilities, and what admission and
accounting read (output caps, choices, streaming); a rule shapes how a request is answered."""


class Rule(Strict):
    """``when`` the request matches, narrow (``allow``/``deny``) and reorder (``prefer``) candidates,
    and ``set`` request parameters (e.g. ``reasoning_effort: high``) on every deployment that
    supports them. A rule's value wins over the client's own (the admin's policy decides)."""

    name: str = Field(min_length=1)
    when: When = When()
    allow: Filter | None = None
    deny: Filter | None = None
    prefer: list[str] = Field(default_factory=list)
    objective: Literal["cheapest", "fastest", "best"] | None = None  # overrides the route's
    set: dict[str, Any] = Field(default_factory=dict)  # request parameters, applied where supported

    @field_validator("set")
    @classmethod
    def _settable(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if name in UNSETTABLE or name.startswith("x-switchyard-"):
                raise ValueError(f"a rule may not set '{name}' (it decides what the request is or costs)")
            if value[name] is None:
                raise ValueError(f"'{name}' is null; leave the parameter out instead")
        return value


class Route(Strict):
    """A model name clients can ask for, resolved by policy to one of its candidates."""

    name: str = Field(min_length=1)
    objective: Literal["cheapest", "fastest", "best"] = "cheapest"
    candidates: list[str] = Field(min_length=1)
    rules: list[Rule] = Field(default_factory=list)
    fallbacks: list[str] | None = None  # explicit order after the ranked ones; members of candidates
    on_violation: Literal["reroute", "block"] = "reroute"
    default_max_tokens: int | None = Field(default=None, ge=1)
    # how tied deployments of one ``group`` share traffic: by weight, or fewest in flight first
    balance: Literal["weighted", "least_in_flight"] = "weighted"

    @model_validator(mode="after")
    def _names_unique(self) -> Route:
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules[{i}].name: duplicate rule name '{rule.name}'")
            seen.add(rule.name)
        return self


class Detector(Strict):
    """An admin-defined detector: a regex or a keyword list, and the level a hit implies."""

    name: str = Field(min_length=1)
    level: Level
    regex: str | None = None
    keywords: list[str] | None = None
    case_sensitive: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> Detector:
        if (self.regex is None) == (self.keywords is None):
            raise ValueError("give exactly one of 'regex' or 'keywords'")
        if self.regex is not None:
            import re

            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from None
        return self


DEFAULT_MAX_SCAN_BYTES = 512 * 1024
"""512 KiB of text, about 128k tokens: a whole context window of most hosted models, so ordinary
long prompts are scanned in full (ordinary text costs tens of µs per KB: about 10 ms here). The
bound is for hostile input: the costliest input measured (digit groups packed with valid-looking
numbers) scans at 0.5-1.5 ms per KB on a busy 2-core machine (docs/benchmarks.md, "Detectors"),
so one request holds a worker for well under a second at worst. Raise it for longer prompts."""


class SensitivityPolicy(Strict):
    """Tuning of the sensitivity signal."""

    detectors: list[Detector] = Field(default_factory=list)
    disable: list[str] = Field(default_factory=list)  # built-in detector names to switch off
    levels: dict[str, Level] = Field(default_factory=dict)  # override a built-in's level
    default_level: Level = "public"
    # Bounded scanning work: text beyond this many bytes (UTF-8) is not scanned. Such a request is
    # classified at least confidential (``over_limit: confidential``), or refused with a 413
    # ``request_too_large`` (``over_limit: refuse``).
    max_scan_bytes: int = Field(default=DEFAULT_MAX_SCAN_BYTES, ge=1024)
    over_limit: Literal["confidential", "refuse"] = "confidential"

    @model_validator(mode="after")
    def _known_names(self) -> SensitivityPolicy:
        from routing.detectors.registry import (
            BUILTIN_LEVELS,  # the registry imports this module
        )

        known = ", ".join(BUILTIN_LEVELS)
        errors = []
        for i, name in enumerate(self.disable):
            if name not in BUILTIN_LEVELS:
                errors.append(f"disable[{i}]: unknown built-in detector '{name}'; expected one of {known}")
        for name in self.levels:
            if name not in BUILTIN_LEVELS:
                errors.append(f"levels.{name}: unknown built-in detector '{name}'; expected one of {known}")
        seen: set[str] = set()
        for i, detector in enumerate(self.detectors):
            if detector.name in BUILTIN_LEVELS or detector.name in seen:
                errors.append(f"detectors[{i}].name: '{detector.name}' is already a detector name")
            seen.add(detector.name)
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def level_of(self, name: str) -> Sensitivity:
        """The level a hit of detector ``name`` implies under this policy."""
        if name in self.levels:
            return Sensitivity.parse(self.levels[name])
        for detector in self.detectors:
            if detector.name == name:
                return Sensitivity.parse(detector.level)
        from routing.detectors.registry import BUILTIN_LEVELS

        return BUILTIN_LEVELS[name]


class RoutingDefaults(Strict):
    """Numbers the router assumes when the request does not say."""

    default_max_tokens: int = Field(default=256, ge=1)  # expected output when max_tokens is absent (ranking, estimates)
    # max_tokens the gateway sets on a chat request that has none (also bounded by the context
    # window and by what the key's and project's budgets still afford)
    default_output_cap: int = Field(default=4096, ge=1)
    chars_per_token: float = Field(default=4.0, gt=0)  # estimate when no tokenizer count is given
    # What guesses a request's task from its text when no hint or structure decides it
    # (routing/task.py): the keyword heuristic, or the bundled model's embeddings read by a trained
    # head (providers/task_embedding.py). Accuracy and cost of both: docs/task-classification.md.
    task_classifier: Literal["heuristic", "embedded"] = "heuristic"
    # The longest a request waits for the embedded classifier before the heuristic answers instead.
    task_classifier_budget_ms: float = Field(default=250.0, gt=0, le=10_000)
    volume: VolumePolicy = VolumePolicy()  # when.volume: thresholds of the project's request rate
    complexity: ComplexityPolicy = ComplexityPolicy()  # when.complexity: what counts as a hard request
