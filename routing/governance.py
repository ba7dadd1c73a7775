"""Model governance: what a project requires of the deployments that may serve it.

A deployment declares its licence, the uses it is approved for (``approved_for: [internal,
commercial]``) and its ``region``; a project may require (``projects[].requires``) that every
deployment serving it is approved for some use and sits in one of some regions. These are hard
constraints, like the privacy invariant: a deployment that does not meet them leaves the plan with
its reason (shown by ``/v1/route/explain``), whatever a rule prefers or a client pins, and since
the executor falls back only along the plan it is never reached on fallback either.

A required region matches a deployment's region that is the same or a sub-region written with a
dash: ``eu`` admits ``eu`` and ``eu-west-1``, not ``europe``. A deployment that declares no region
or no approval meets no requirement on it: governance is opt-in per project, never guessed.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from core.strict import Strict
from routing.types import DeploymentProfile

GOVERNANCE = "project-requirements"
"""Pseudo-rule name a refusal blames when a project's requirements excluded the deployments."""

REASON_PREFIXES = ("not approved for ", "region ")
"""How every governance exclusion reason begins (the refusal table and the router tell them apart)."""

APPROVAL_PATTERN = r"^[a-z][a-z0-9_.-]*$"
"""A use a deployment is approved for: ``internal``, ``commercial``, ``research``, ..."""


def _as_list(value: Any) -> Any:
    """``commercial`` and ``[commercial]`` mean the same; names compare in lower case."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [v.strip().lower() if isinstance(v, str) else v for v in value]
    return value


class Requires(Strict):
    """``projects[].requires``: what every deployment serving the project must declare."""

    approved_for: list[str] | None = Field(default=None, min_length=1)  # every use listed
    regions: list[str] | None = Field(default=None, min_length=1)  # any one of these

    @field_validator("approved_for", "regions", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _as_list(value)

    @field_validator("approved_for")
    @classmethod
    def _uses(cls, value: list[str] | None) -> list[str] | None:
        import re

        for use in value or []:
            if not re.match(APPROVAL_PATTERN, use):
                raise ValueError(f"'{use}' is not a use name (letters, digits, '_', '.', '-'; e.g. commercial)")
        return value

    @property
    def empty(self) -> bool:
        return not self.approved_for and not self.regions


def region_matches(region: str, allowed: str) -> bool:
    """``eu-west-1`` is in ``eu``; ``eu`` is in ``eu``; ``europe`` is not in ``eu``."""
    return region == allowed or region.startswith(allowed + "-")


def governance_reasons(deployment: DeploymentProfile, requires: Requires | None) -> list[str]:
    """Why ``deployment`` may not serve a project with ``requires``; empty when it may."""
    if requires is None:
        return []
    reasons = []
    for use in requires.approved_for or ():
        if use not in deployment.approved_for:
            declared = ", ".join(sorted(deployment.approved_for)) or "none declared"
            reasons.append(f"not approved for {use} use (approved_for: {declared})")
    if requires.regions:
        allowed = ", ".join(requires.regions)
        if deployment.region is None:
            reasons.append(f"region not declared, project requires one of [{allowed}]")
        elif not any(region_matches(deployment.region, r) for r in requires.regions):
            reasons.append(f"region {deployment.region} not in [{allowed}]")
    return reasons


def requires_summary(requires: Requires) -> str:
    """``approved_for commercial, regions eu|us`` for a command line."""
    parts = []
    if requires.approved_for:
        parts.append(f"approved_for {', '.join(requires.approved_for)}")
    if requires.regions:
        parts.append(f"regions {'|'.join(requires.regions)}")
    return "; ".join(parts)


def requires_dict(requires: Requires | None) -> dict[str, Any] | None:
    """What explain shows of the project's requirements."""
    if requires is None or requires.empty:
        return None
    return requires.model_dump(exclude_none=True)
