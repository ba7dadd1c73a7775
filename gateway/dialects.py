"""Client dialects: the wire formats apps speak to the gateway, over one request lifecycle.

Inside, every request is an OpenAI chat, completion or embeddings body, and every backend answers
in OpenAI's format. A :class:`Dialect` translates at the edges only: the client's body into an
OpenAI body before the checks, routing and admission; the OpenAI reply, stream and errors back
into the client's format. The OpenAI dialect translates nothing (the hot path forwards the
backend's bytes untouched); others (Anthropic Messages, OpenAI Responses) build on the same seam,
so routing, sensitivity, budgets and the ledger are the same whatever the client speaks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from core.errors import GatewayError, error_body

DONE = b"data: [DONE]\n\n"


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


class OpenAIDialect:
    """The identity: OpenAI in, OpenAI out, the backend's bytes forwarded as they came."""

    name = "openai"

    def to_openai(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def reply(self, data: dict[str, Any], raw: bytes) -> bytes:
        return raw

    async def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield b"data: " + chunk + b"\n\n"
        yield DONE

    def error(self, error: GatewayError) -> bytes:
        return error_body(error)

    def stream_error(self, error: GatewayError) -> bytes:
        return b"data: " + error_body(error) + b"\n\n"


OPENAI = OpenAIDialect()
