"""What each provider family does with each OpenAI chat request parameter, declared once.

Every adapter owns a :class:`ParameterPolicy` and its request mapping reads it: the embedded
model refuses what its policy refuses (:meth:`ParameterPolicy.refuse`), the HTTP adapter sends
on what its policy forwards. ``docs/parameters.md`` is rendered from the same policies (see
``scripts/parameter_table.py``), so the table cannot drift from the code; a test regenerates it.

Each parameter is one of:

* **forwarded**: sent to the backend as the client wrote it;
* **translated**: mapped onto the backend's own mechanism (the note says how, and when a value
  is refused);
* **refused**: answered with a 400 naming it (``code: unsupported_parameter``), unless the value
  is one the note lists as harmless (e.g. the default);
* **ignored**: accepted and without effect, for the reason in the note (listed so that nothing
  is dropped unseen).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from core.errors import InvalidRequest


class Handling(StrEnum):
    FORWARDED = "forwarded"
    TRANSLATED = "translated"
    REFUSED = "refused"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class Rule:
    """One parameter's handling, with the note shown in docs/parameters.md."""

    handling: Handling
    note: str = ""
    harmless: Callable[[Any], bool] | None = None  # REFUSED only: values accepted anyway


def forwarded(note: str = "") -> Rule:
    return Rule(Handling.FORWARDED, note)


def translated(note: str) -> Rule:
    return Rule(Handling.TRANSLATED, note)


def refused(note: str, harmless: Callable[[Any], bool] | None = None) -> Rule:
    return Rule(Handling.REFUSED, note, harmless)


def ignored(note: str) -> Rule:
    return Rule(Handling.IGNORED, note)


@dataclass(frozen=True)
class ParameterPolicy:
    """One provider family's handling of the chat request: named parameters, then the rest."""

    family: str
    rules: Mapping[str, Rule]
    others: Rule  # any field the rules do not name (vendor extras, newer parameters)
    summary: str = ""
    _refused: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        names = tuple(n for n, r in self.rules.items() if r.handling is Handling.REFUSED)
        object.__setattr__(self, "_refused", names)

    def rule(self, name: str) -> Rule:
        return self.rules.get(name, self.others)

    def refuse(self, body: Mapping[str, Any], deployment: str = "this deployment") -> None:
        """A 400 naming the first parameter in ``body`` this family refuses (``null`` = absent)."""
        candidates = body if self.others.handling is Handling.REFUSED else self._refused
        for name in candidates:
            value = body.get(name)
            if value is None:
                continue
            rule = self.rule(name)
            if rule.handling is Handling.REFUSED and not (rule.harmless is not None and rule.harmless(value)):
                raise unsupported(name, f"{deployment} {rule.note}" if rule.note else f"{deployment} does not support it")

    def takes(self, name: str, value: Any) -> bool:
        """Whether a request parameter set by the gateway (a route rule's ``set:``) has an effect
        here: forwarded or translated, or a refused parameter's harmless value. An ignored one
        has none, so it is not sent either."""
        rule = self.rule(name)
        if rule.handling is Handling.REFUSED:
            return rule.harmless is not None and rule.harmless(value)
        return rule.handling is not Handling.IGNORED

    def forwardable(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The fields of ``body`` this family sends on untouched."""
        return {k: v for k, v in body.items() if self.rule(k).handling is Handling.FORWARDED}


def unsupported(param: str, why: str) -> InvalidRequest:
    """OpenAI's own shape for a parameter a model does not take."""
    return InvalidRequest(f"Unsupported parameter: '{param}': {why}.", param=param, code="unsupported_parameter")


__all__ = [
    "Handling",
    "ParameterPolicy",
    "Rule",
    "forwarded",
    "ignored",
    "refused",
    "translated",
    "unsupported",
]
