"""Server-sent events out to the client, with prompt cancellation and a guaranteed close hook.

Starlette's StreamingResponse notices a vanished client only on its next write and leaves the
generator to the garbage collector. Here a watcher task waits for ``http.disconnect``; on it the
pump is cancelled at once (so the upstream call is cancelled too) and ``on_close`` always runs
afterwards — that is where a stream is billed, however it ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

log = logging.getLogger("switchyard.sse")


class EventStreamResponse(Response):
    """``text/event-stream`` response over an async generator of already framed events."""

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncGenerator[bytes, None],
        *,
        headers: Mapping[str, str] | None = None,
        on_close: Callable[[bool], Awaitable[None]] | None = None,
    ) -> None:
        self.events = events
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        self.init_headers({"cache-control": "no-cache", "x-accel-buffering": "no", **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client_gone = False
        pump = asyncio.create_task(self._pump(send))
        watcher = asyncio.create_task(_wait_for_disconnect(receive))
        try:
            done, _ = await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if pump not in done:
                client_gone = True
                pump.cancel()
            try:
                await pump
            except asyncio.CancelledError:
                if not client_gone:
                    raise
            except OSError:
                client_gone = True  # the transport failed while writing
        finally:
            watcher.cancel()
            if not pump.done():  # this response itself was cancelled (drain deadline, shutdown)
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            await self.events.aclose()
            if self.on_close is not None:
                try:
                    await asyncio.shield(self.on_close(client_gone))
                except Exception:
                    log.exception("closing a stream failed")

    async def _pump(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        async for event in self.events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
