"""Headers the gateway adds to the upstream request of the attempt being made: the W3C trace
context (``traceparent``, ``tracestate``) of that attempt's span when tracing is on.

The gateway sets :data:`ATTEMPT_HEADERS` around each attempt (a context variable, so concurrent
requests never see each other's); adapters that speak HTTP add it to the request they send. When
tracing is off it stays ``None`` and reading it is the only cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar

ATTEMPT_HEADERS: ContextVar[Mapping[str, str] | None] = ContextVar("switchyard_attempt_headers", default=None)


def with_attempt_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    """``headers`` plus the current attempt's (which win); ``headers`` itself when there are none."""
    extra = ATTEMPT_HEADERS.get()
    return headers if not extra else {**headers, **extra}
