"""The vocabularies every layer shares, each written once: sensitivity levels, localities,
capabilities, endpoints, objectives, tasks, budget periods and key roles."""

from __future__ import annotations

from enum import IntEnum
from typing import Literal, get_args

Level = Literal["public", "internal", "confidential", "restricted"]
LEVELS: tuple[str, ...] = get_args(Level)

Locality = Literal["self_hosted", "hosted"]
Capability = Literal["chat", "completions", "embeddings", "tools", "vision", "json_schema"]
Endpoint = Literal["chat", "completions", "embeddings"]
Objective = Literal["cheapest", "fastest", "best"]
Period = Literal["daily", "weekly", "monthly", "total"]
Role = Literal["app", "finance", "admin"]  # what an API key may do (gateway/roles.py)
ROLES: tuple[str, ...] = get_args(Role)

Task = Literal["chat", "code", "reasoning", "summarize", "extract", "classify", "translate", "embed", "tool_use"]
TASKS: tuple[str, ...] = get_args(Task)


class Sensitivity(IntEnum):
    """How far a request's data may travel. Ordered: a higher level is never lowered."""

    PUBLIC = 0
    INTERNAL = 1
    CONFIDENTIAL = 2
    RESTRICTED = 3

    @classmethod
    def parse(cls, value: str | Sensitivity) -> Sensitivity:
        if isinstance(value, Sensitivity):
            return value
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown sensitivity {value!r}; expected one of {', '.join(LEVELS)}") from None

    @property
    def label(self) -> str:
        return self.name.lower()
