"""Decisions the router refuses, as plain exceptions; ``gateway`` maps them to HTTP."""

from __future__ import annotations

from routing.types import Exclusion, Signals


class RoutingError(Exception):
    """Base for every routing refusal. A refusal whose HTTP answer does not follow from its type
    carries it in ``status`` and ``code`` (the gateway maps the others by type)."""

    status: int | None = None
    code: str | None = None


class UnknownModel(RoutingError):
    """The requested model names neither a route nor a deployment."""

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist or you do not have access to it.")
        self.model = model


class UnsupportedEndpoint(RoutingError):
    """No candidate of the route can serve this endpoint (e.g. embeddings on a chat-only route)."""

    def __init__(self, model: str, endpoint: str) -> None:
        super().__init__(f"The model '{model}' does not support {endpoint}.")
        self.model = model
        self.endpoint = endpoint


class PolicyBlocked(RoutingError):
    """A pinned deployment is forbidden and the route's ``on_violation`` is ``block``."""

    def __init__(self, deployment: str, rule: str, signals: Signals, reason: str | None = None) -> None:
        if reason:
            message = f"Policy rule '{rule}' forbids sending this request to '{deployment}': {reason}."
        else:
            message = f"Policy rule '{rule}' forbids sending this request ({signals.sensitivity.label} data) to '{deployment}'."
        super().__init__(message)
        self.deployment = deployment
        self.rule = rule
        self.signals = signals


class NoCandidates(RoutingError):
    """Every candidate was excluded; ``excluded`` says why each one was."""

    def __init__(self, model: str, rule: str | None, signals: Signals, excluded: tuple[Exclusion, ...]) -> None:
        reasons = "; ".join(f"{e.deployment}: {e.reason}" for e in excluded) or "no candidates"
        where = f" under rule '{rule}'" if rule else ""
        super().__init__(
            f"No permitted deployment is available for '{model}' ({signals.sensitivity.label} data{where}): {reasons}."
        )
        self.model = model
        self.rule = rule
        self.signals = signals
        self.excluded = excluded


class RequestTooLarge(RoutingError):
    """More text than ``sensitivity.max_scan_bytes`` to scan, and ``over_limit: refuse``: a 413."""

    status = 413
    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request carries more than {limit} bytes of text to scan for sensitive data, and this gateway "
            "refuses larger requests (sensitivity.over_limit: refuse). Send less text per request."
        )
        self.limit = limit


class InvalidHint(ValueError):
    """A caller hint (header or ``metadata``) has a value the router does not know; a 400.

    A ``ValueError`` rather than a :class:`RoutingError`: it is a bad request, not a refusal.
    """

    def __init__(self, param: str, value: object, expected: tuple[str, ...]) -> None:
        super().__init__(f"Invalid value {value!r} for '{param}'; expected one of {', '.join(expected)}.")
        self.param = param
        self.value = value
        self.expected = expected
