"""Client dialects: the wire formats apps speak to the gateway, over one request lifecycle.

Inside, every request is an OpenAI chat, completion or embeddings body, and every backend answers
in OpenAI's format. A :class:`Dialect` translates at the edges only: the client's body into an
OpenAI body before the checks, routing and admission; the OpenAI reply, stream and errors back
into the client's format. So routing, sensitivity, budgets and the ledger are the same whatever
the client speaks.

- :mod:`~gateway.dialects.openai`: the identity (the hot path forwards the backend's bytes untouched).
- :mod:`~gateway.dialects.anthropic`: Anthropic's Messages API (``POST /v1/messages``).
- :mod:`~gateway.dialects.responses`: OpenAI's Responses API (``POST /v1/responses``).

The OpenAI dialect is one shared object; the others keep what they need of the client's request
(the model it named, the tools it declared) between ``to_openai`` and the answer, so a new one
is made per request (it costs a small object).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from core.errors import GatewayError
from gateway.dialects.openai import DONE, OPENAI, OpenAIDialect

__all__ = ["DONE", "OPENAI", "Dialect", "OpenAIDialect", "sse_event"]


class Dialect(Protocol):
    """How one client wire format maps onto the OpenAI format the lifecycle speaks."""

    name: str

    def to_openai(self, body: dict[str, Any]) -> dict[str, Any]:
        """The client's request as an OpenAI body; raises InvalidRequest naming the param."""
        ...

    def reply(self, data: dict[str, Any], raw: bytes) -> bytes:
        """A whole OpenAI reply (parsed, and as the backend's bytes) in the client's format."""
        ...

    def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """OpenAI chunk payloads in, the client's framed SSE events out (the end marker included)."""
        ...

    def error(self, error: GatewayError) -> bytes:
        """An error body in the client's format."""
        ...

    def stream_error(self, error: GatewayError) -> bytes:
        """A framed SSE event that ends a broken stream, in the client's format."""
        ...


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    """One named server-sent event (``event:`` and ``data:`` lines), as Anthropic and the
    Responses API frame theirs."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
