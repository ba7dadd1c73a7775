"""Graceful drain: what a replica does between SIGTERM and its exit.

::

    SIGTERM ─► Drain.request()    draining: /readyz answers 503 on every connection, and every
               │                  response carries ``connection: close`` so that clients and load
               │                  balancers stop reusing this replica's connections
               ├─ the server stops listening (gateway.server): a new connection is refused, so a
               │  load balancer retries it on another replica before it has sent anything
               ├─ requests and streams in flight run on, for up to ``server.drain_timeout_s``
               ├─ Drain.expire()   whatever still runs is ended: a stream with one OpenAI error
               │                   event (and no ``[DONE]``), a request without a response yet
               │                   with a 503; both are billed as usual for what was sent
               └─ lifespan shutdown: the ledger writer flushes; the process exits 0

:class:`DrainMiddleware` keeps the set of requests in flight, which is what :meth:`Drain.expire`
ends. It wraps ``send`` only to note whether the response has started; nothing else is added to
the request path.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import ShuttingDown, error_body

log = logging.getLogger("switchyard.drain")


SHUTTING_DOWN = ShuttingDown("This Switchyard replica is shutting down and could not finish the request in time; retry it.")


@dataclass(eq=False, slots=True)
class _Exchange:
    """One HTTP request in flight and how far its response has got."""

    task: asyncio.Task[Any]
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    started: bool = False
    finished: bool = False
    cut: bool = False


class Drain:
    """The replica's drain state, shared by the server, the middleware and ``/readyz``."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.draining = False
        self.expired = False
        self.cut = 0  # requests ended by expire()
        self._active: set[_Exchange] = set()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def request(self) -> None:
        """Start draining. Safe to call from a signal handler, and more than once."""
        if self.draining:
            return
        self.draining = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no event loop: nothing can be in flight
        # A signal handler runs between two bytecodes of whatever the loop was doing: only
        # schedule from here, never touch the loop's state directly.
        loop.call_soon_threadsafe(self._arm, loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        log.info("draining: %d request(s) in flight, %.0fs to finish", self.in_flight, self.timeout_s)
        self._timer = loop.call_later(self.timeout_s, self.expire)

    def expire(self) -> int:
        """End every request still in flight (see the module docstring); returns how many."""
        self.expired = True
        ended = 0
        for exchange in list(self._active):
            if exchange.finished or exchange.cut:
                continue
            exchange.cut = True
            exchange.task.cancel(msg="drain timeout")
            ended += 1
        self.cut += ended
        if ended:
            log.warning("drain timeout: ended %d request(s) still in flight", ended)
        return ended

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class DrainMiddleware:
    """Pure ASGI: registers each HTTP request with the :class:`Drain` and ends it when told to."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        drain = self.drain
        task = asyncio.current_task()
        assert task is not None
        exchange = _Exchange(task)

        async def tracked(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                exchange.started = True
                exchange.headers = message.get("headers") or []
                if drain.draining:
                    message["headers"] = [*exchange.headers, (b"connection", b"close")]
            elif kind == "http.response.body" and not message.get("more_body", False):
                exchange.finished = True
            await send(message)

        drain._active.add(exchange)
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not exchange.cut:
                raise
        finally:
            drain._active.discard(exchange)
        if exchange.cut:
            if task.cancelling():
                task.uncancel()
            if not exchange.finished:
                await _end(exchange, send, str(scope.get("state", {}).get("request_id", "")))


async def _end(exchange: _Exchange, send: Send, request_id: str) -> None:
    """Finish a response the drain cut short, in the shape the client is already reading."""
    body = error_body(SHUTTING_DOWN)
    try:
        if not exchange.started:
            headers = [
                (b"content-type", b"application/json"),
                (b"connection", b"close"),
                (b"retry-after", b"1"),
                (b"x-should-retry", b"true"),  # the OpenAI SDKs retry on this header
            ]
            if request_id:
                headers.append((b"x-request-id", request_id.encode("latin-1")))
            await send({"type": "http.response.start", "status": SHUTTING_DOWN.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif any(k == b"content-type" and v.startswith(b"text/event-stream") for k, v in exchange.headers):
            # As a failure mid-stream always ends (gateway.streaming.relay): one error event, no [DONE].
            await send({"type": "http.response.body", "body": b"data: " + body + b"\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        pass  # the client is gone as well


SignalHandler = Callable[[int, FrameType | None], Any]


def drain_on_signals(drain: Drain, signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Chain ``drain.request()`` in front of the handlers installed now (a uvicorn worker's own).

    For ``--workers N``, where each worker runs uvicorn's stock server: draining (``/readyz``
    failing, the deadline armed) then starts the moment the signal arrives.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in signals:
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue  # no server handler to chain to: leave the default (terminate) alone

        def handler(signum: int, frame: FrameType | None, previous: SignalHandler = previous) -> None:
            drain.request()
            previous(signum, frame)

        signal.signal(sig, handler)
