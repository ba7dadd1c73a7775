"""One ``switchyard serve`` process: uvicorn's server, with the gateway's drain on SIGTERM.

Three differences from the stock ``uvicorn.Server``, all about stopping:

1. SIGTERM (or SIGINT) starts the drain the moment it arrives (gateway.drain): ``/readyz``
   fails from then on, and the drain deadline is armed.
2. Closing a listening socket resets every connection the kernel has already accepted but the
   server has not picked up yet. A load balancer that has written a request on one of those sees
   a reset after sending, and must not retry a POST it has sent (it may have been processed):
   the client gets a 502. So before closing, the server takes those connections over and serves
   them, and a connection accepted earlier that has not shown a request yet is not closed at once
   either: its request may be sitting unread in the socket. What is left is the few
   microseconds between the last ``accept()`` and ``close()``, not the length of an event-loop
   iteration; every later connection is refused, which a load balancer retries elsewhere safely
   (nothing was sent).
3. A drained shutdown exits 0 (uvicorn re-raises the signal afterwards: exit status 143).

Waiting: the server waits for open connections and requests for the drain's ``timeout_s``, at
the end of which the drain ends what is still running, plus ``grace_s`` for those endings to be
written; anything still running after that is cancelled, as uvicorn does at its
``timeout_graceful_shutdown``. The lifespan shutdown (ledger flush) runs last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Generator
from types import FrameType
from typing import Any

import uvicorn

from gateway.drain import Drain

logger = logging.getLogger("uvicorn.error")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
ADOPTED_IDLE_S = 5.0  # a connection taken over while closing has this long to send its request (a busy
# load balancer can take over a second to write a request on a connection it has just opened)


class DrainingServer(uvicorn.Server):
    """``uvicorn.Server`` that drains on SIGTERM, loses no accepted connection and exits 0."""

    def __init__(self, config: uvicorn.Config, drain: Drain, grace_s: float = 5.0) -> None:
        super().__init__(config)
        self.drain = drain
        self.grace_s = grace_s
        self.adopted = 0  # connections taken over from the kernel's accept queue while closing

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn's, minus re-raising the captured signal at the end.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.drain.request()
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        logger.info("Shutting down: draining %d request(s)", self.drain.in_flight)
        self.drain.request()
        listeners = _take_over_listeners(self.servers)
        for sock in sockets or []:
            sock.close()
        loop = asyncio.get_running_loop()
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            if cycle is None or cycle.response_complete:
                # No request seen yet: one may already sit unread in the socket (a load balancer
                # writes it right after connecting), and closing now would reset it after it was
                # sent. It gets what an adopted connection gets to show up.
                loop.call_later(ADOPTED_IDLE_S, connection.shutdown)
            else:
                connection.shutdown()  # busy: closes after its response
        self.adopted = await self._adopt(listeners)
        try:
            await asyncio.wait_for(self._wait_tasks_to_complete(), self.drain.timeout_s + self.grace_s)
        except TimeoutError:
            logger.error("Cancel %d running task(s): the drain and its grace period are over", len(self.server_state.tasks))
            for task in self.server_state.tasks:
                task.cancel(msg="drain grace period exceeded")
        self.drain.cancel_timer()
        if not self.force_exit:
            await self.lifespan.shutdown()

    async def _adopt(self, listeners: list[socket.socket]) -> int:
        """Accept what the kernel has queued on ``listeners``, close them, serve what was accepted."""
        accepted: list[socket.socket] = []
        for listener in listeners:  # no await in this loop: nothing can slip in between
            listener.setblocking(False)
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:  # BlockingIOError: the queue is empty
                    break
                accepted.append(conn)
            listener.close()
        loop = asyncio.get_running_loop()
        for conn in accepted:
            try:
                _, protocol = await loop.connect_accepted_socket(self._new_protocol, conn)
            except OSError:
                conn.close()
                continue
            # The drain adds "connection: close" to its response; one that never sends a request
            # is closed after ADOPTED_IDLE_S, so it cannot hold the exit up.
            loop.call_later(ADOPTED_IDLE_S, protocol.shutdown)  # type: ignore[attr-defined]
        if accepted:
            logger.info("Took over %d connection(s) queued while the listener closed", len(accepted))
        return len(accepted)

    def _new_protocol(self) -> asyncio.Protocol:
        # The same construction as uvicorn.Server.startup's create_protocol.
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            _loop=asyncio.get_running_loop(),
        )


def _take_over_listeners(servers: list[Any]) -> list[socket.socket]:
    """Duplicate each listening socket, then close the servers: the sockets stay open (and keep
    queueing connections) until the duplicates are closed, but nothing accepts from them now."""
    duplicates: list[socket.socket] = []
    for server in servers:
        for sock in server.sockets or ():
            try:
                duplicates.append(socket.socket(fileno=os.dup(sock.fileno())))
            except OSError:
                pass
        server.close()
    return duplicates


def run(
    app: Any,
    drain: Drain,
    *,
    host: str,
    port: int,
    log_level: str,
    access_log: bool,
    grace_s: float = 5.0,
    log_config: dict[str, Any] | None = None,
) -> int:
    """Serve ``app`` in this process until SIGTERM/SIGINT, then drain; the exit status to use.
    ``log_config`` (``gateway.logs.logging_config``) replaces uvicorn's own formats."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=access_log,
        log_config=log_config if log_config is not None else uvicorn.config.LOGGING_CONFIG,
        lifespan="on",
        timeout_graceful_shutdown=int(drain.timeout_s + grace_s) + 1,  # unused here; kept consistent
    )
    server = DrainingServer(config, drain, grace_s=grace_s)
    server.run()
    return 0 if server.started else 3  # 3: uvicorn's STARTUP_FAILURE
