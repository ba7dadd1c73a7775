"""Caller hints: ``x-switchyard-*`` headers (passed in as ``RoutingRequest.hints``) and the same
namespaced names inside the body's ``metadata`` object.

Only the namespaced keys are hints: a plain ``metadata.task`` or ``metadata.sensitivity`` is the
client's own data (OpenAI's ``metadata`` is free-form, and a client's ``{"task": "summarize-ticket"}``
must not become a 400), forwarded untouched and scanned like any other metadata value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.literals import LEVELS, TASKS
from routing.errors import InvalidHint
from routing.types import RoutingRequest, Sensitivity


def _lookup(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, Any] | None:
    for key in keys:
        value = mapping.get(key)
        if value is not None:
            return key, value
    return None


def hint_values(request: RoutingRequest, name: str) -> list[tuple[str, str, Any]]:
    """Every value given for hint ``name`` as ``(source, param, value)``; source is hint|metadata."""
    found: list[tuple[str, str, Any]] = []
    header = _lookup(request.hints, (name, f"x-switchyard-{name}")) if request.hints else None
    if header is not None:
        found.append(("hint", f"x-switchyard-{name}", header[1]))
    metadata = request.body.get("metadata")
    if metadata and isinstance(metadata, Mapping):
        meta = _lookup(metadata, (f"x-switchyard-{name}",))
        if meta is not None:
            found.append(("metadata", f"metadata.{meta[0]}", meta[1]))
    return found


def sensitivity_hints(request: RoutingRequest) -> list[tuple[str, Sensitivity]]:
    """``(source, level)`` per sensitivity hint; an unknown value raises :class:`InvalidHint`."""
    levels = []
    for source, param, value in hint_values(request, "sensitivity"):
        if not isinstance(value, str) or value.strip().lower() not in LEVELS:
            raise InvalidHint(param, value, LEVELS)
        levels.append((source, Sensitivity.parse(value)))
    return levels


def task_hint(request: RoutingRequest) -> tuple[str, str] | None:
    """``(source, task)`` of the first task hint (header before metadata), validated."""
    for source, param, value in hint_values(request, "task"):
        task = value.strip().lower() if isinstance(value, str) else None
        if task not in TASKS:
            raise InvalidHint(param, value, TASKS)
        return source, task
    return None
