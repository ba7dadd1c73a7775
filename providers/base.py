"""The one interface every backend adapter implements.

Bodies in and out are OpenAI wire format. Adapters raise only ``core.errors.Upstream*``
errors, so the executor can decide to retry or fall back without knowing the backend.

A stream is an async iterator of JSON chunk payloads (``bytes``, one OpenAI
``chat.completion.chunk`` or ``text_completion`` object each, without the ``data: `` framing
and without the final ``[DONE]``). Errors that happen before the first chunk are raised from the
first ``__anext__`` so the gateway can still fall back; closing the iterator (``aclose``)
cancels the upstream call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import orjson


@dataclass(slots=True)
class Reply:
    """A whole (non-streamed) answer: the bytes to send and the parsed object."""

    body: bytes
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Reply:
        return cls(body=orjson.dumps(data), data=data)

    @property
    def usage(self) -> dict[str, Any] | None:
        usage = self.data.get("usage")
        return usage if isinstance(usage, dict) else None


@runtime_checkable
class Provider(Protocol):
    """A backend family. One instance serves one deployment."""

    name: str  # the deployment name

    async def chat(self, body: dict[str, Any]) -> Reply:
        """POST /chat/completions, non-streamed."""
        ...

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """POST /chat/completions with ``stream: true``; yields chunk payloads."""
        ...

    async def complete(self, body: dict[str, Any]) -> Reply:
        """POST /completions (legacy text completions), non-streamed."""
        ...

    def complete_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """POST /completions with ``stream: true``; yields chunk payloads."""
        ...

    async def embed(self, body: dict[str, Any]) -> Reply:
        """POST /embeddings; one vector per input."""
        ...

    async def models(self) -> list[str]:
        """Model ids the backend reports."""
        ...

    async def health(self) -> bool:
        """Cheap liveness probe of the backend."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and models."""
        ...
