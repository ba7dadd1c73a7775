"""The request path's own ASGI plumbing, without a framework in between: the incoming request
(headers, a bounded and timed body), JSON answers, and a watch for a client that goes away.

The OpenAI routes are served by plain ASGI callables (``gateway.api.openai``): a framework's
request and response objects and middleware stack cost more CPU per request than the rest of a
routed request together. Everything here is small and does one thing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from core.errors import (
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    error_body,
)

# Starlette's own aliases (MutableMapping), so our callables and theirs are interchangeable
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_JSON_DEPTH = 64
"""Deeper JSON than this is refused with a 400 before anything else reads it. OpenAI's own
structured outputs stop at 10 levels; backends' JSON encoders fail somewhere past 255, and a
body that only a backend cannot serialise must be the caller's 400, never a backend failure."""


class ClientGone(Exception):
    """The client closed the connection before its request body arrived."""


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How much body, and how slowly, a client may send."""

    max_bytes: int
    idle_timeout_s: float  # between two chunks (and before the first)
    total_timeout_s: float  # for the whole body


class Incoming:
    """One HTTP request: lower-cased headers, a request id, and a body read at most once."""

    __slots__ = ("headers", "receive", "request_id", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.headers: dict[str, str] = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = self.headers.get("x-request-id", "")[:128]
        # same shape as uuid4().hex (128 random bits) at a fifth of the cost
        self.request_id = request_id or "req_" + os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = self.request_id

    @property
    def client_host(self) -> str | None:
        client = self.scope.get("client")
        return client[0] if client else None

    async def body(self, limits: BodyLimits) -> bytes:
        """The whole body, or PayloadTooLarge / RequestTimeout / ClientGone."""
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
            raise PayloadTooLarge(f"Request body is {declared} bytes; the limit is {limits.max_bytes} bytes.")
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.total_timeout_s
        while True:
            wait = min(limits.idle_timeout_s, deadline - loop.time())
            try:
                async with asyncio.timeout(max(wait, 0)):
                    message = await self.receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body did not arrive in time ({size} bytes received"
                    + (f" of the {declared} declared" if declared else "")
                    + ")."
                ) from None
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limits.max_bytes:
                    raise PayloadTooLarge(f"Request body exceeds the limit of {limits.max_bytes} bytes.")
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def json(self, limits: BodyLimits) -> dict[str, Any]:
        """The body as a JSON object, or a 400/408/413 that says what is wrong with it."""
        return parse_json_object(await self.body(limits))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object no deeper than :data:`MAX_JSON_DEPTH`, or a 400."""
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    # Counting brackets is C-speed; only a body with that many opening brackets can be that deep.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth(body) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.", code="invalid_json")
    return body


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (iterative: no recursion limit to hit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in node if isinstance(child, (dict, list)))
    return deepest


def encode_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items]


async def send_json(send: Send, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
    """One complete JSON response."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if headers:
        raw += encode_headers(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_error(
    send: Send, error: GatewayError, request_id: str, extra: Mapping[str, str] | None = None, body: bytes | None = None
) -> None:
    """An error with its own headers (Retry-After, ...) and the request id; in OpenAI's shape
    unless ``body`` is given (another dialect's shape)."""
    headers = {"x-request-id": request_id, **error.headers, **(extra or {})}
    if isinstance(error, (RequestTimeout, PayloadTooLarge)):
        headers["connection"] = "close"  # the rest of the body may still be on the wire
    await send_json(send, error.status, body if body is not None else error_body(error), headers)


class DisconnectWatch:
    """Cancels ``task`` when the client disconnects while its (fully read) request is served.

    After the body, the server's ``receive`` only returns when the client goes away or the
    response is complete, so one pending ``receive`` is all it takes. :meth:`stop` must be called
    when the response is done.
    """

    __slots__ = ("_waiter", "fired")

    def __init__(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        self.fired = False
        self._waiter = asyncio.ensure_future(receive())

        def on_message(waiter: asyncio.Future[Message]) -> None:
            if waiter.cancelled() or waiter.exception() is not None:
                return
            if waiter.result().get("type") == "http.disconnect":
                self.fired = True
                task.cancel()

        self._waiter.add_done_callback(on_message)

    def stop(self) -> None:
        if not self._waiter.done():
            self._waiter.cancel()
