"""A small pipelined Redis client for the request path: one connection, commands written as they
come, replies matched in order.

Admission is one script call per request, and redis-py's asyncio client spends about 100-150 µs
of CPU on each (connection-pool checkout, command packing, reply parsing), more than the rest of
a routed request's own work. Here a call packs its command into one buffer, writes it on the one
shared connection and awaits a future; a single reader task feeds every reply through hiredis's
C parser and resolves the futures in order (Redis answers one connection's commands in the order
they were sent). Concurrent requests therefore share round trips for free (pipelining), and a
call costs about 10-35 µs (measured on this project's 2-core CI machine; see docs/benchmarks.md).

Commands issued in the same turn of the event loop are written together, in one system call.

A call waits at most ``call_timeout_s`` for its reply. Replies come in order, so the oldest call
waiting is the first that can be late: one timer per connection watches it (re-armed for the next
oldest when it is answered in time), instead of a timeout per call. A late reply means Redis
answers nothing on this connection: every call in flight fails and the next one reconnects.

Scripts are called by their SHA-1 (``EVALSHA``) and loaded again after a ``NOSCRIPT`` (a Redis
restart or a ``SCRIPT FLUSH``). A lost connection fails every call in flight with
:class:`ConnectionError` (admission then fails closed) and the next call reconnects.
Supported URLs: ``redis://[user:password@]host[:port][/db]`` and ``rediss://`` (TLS).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import unquote, urlparse

import hiredis

Arg = bytes | str | int | float


class RedisError(Exception):
    """An error reply from Redis (e.g. a script that failed)."""


def _encode(args: Sequence[Arg]) -> bytes:
    """One command in RESP: hiredis packs it in C (str, bytes, int and float arguments, the same
    bytes as :func:`_encode_py`), about 3x faster than Python; anything else goes the slow way."""
    try:
        # cast: hiredis's stub types the argument as a 1-tuple, though any length is packed
        packed: bytes = hiredis.pack_command(cast(Any, args if type(args) is tuple else tuple(args)))
        return packed
    except TypeError:
        return _encode_py(args)


def _encode_py(args: Sequence[Arg]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else (str(arg).encode() if not isinstance(arg, str) else arg.encode())
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class Script:
    """A Lua script, called by SHA-1 and loaded on demand."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class PipelinedRedis:
    """One connection to one Redis, shared by every coroutine of the process."""

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0, call_timeout_s: float = 5.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss"):
            raise ValueError(f"unsupported Redis URL scheme {parsed.scheme!r}: use redis:// or rediss://")
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 6379
        self._tls = parsed.scheme == "rediss"
        self._username = unquote(parsed.username) if parsed.username else None
        self._password = unquote(parsed.password) if parsed.password else None
        path = (parsed.path or "/").lstrip("/")
        self._db = int(path) if path else 0
        self._connect_timeout_s = connect_timeout_s
        self._call_timeout_s = call_timeout_s
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._sent_at: deque[float] = deque()  # loop time each waiting call was written, in the same order
        self._watchdog: asyncio.TimerHandle | None = None
        self._unsent: list[bytes] = []  # commands of this loop iteration, written together (see _flush)
        self._flushing: asyncio.Handle | None = None
        self._connecting: asyncio.Lock | None = None
        self._closed = False

    # ------------------------------------------------------------ commands

    async def call(self, *args: Arg) -> Any:
        """One command; its reply (an error reply raises :class:`RedisError`)."""
        future = await self._send(_encode(args), 1)
        reply = await future[0]
        if isinstance(reply, hiredis.ReplyError):
            raise RedisError(str(reply))
        return reply

    async def pipeline(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Several commands in one write; their replies (error replies returned, not raised)."""
        if not commands:
            return []
        futures = await self._send(b"".join(_encode(c) for c in commands), len(commands))
        return [await f for f in futures]

    def _watch(self) -> None:
        """The watchdog's turn: fail everything if the oldest call waiting is late, else wait for it."""
        self._watchdog = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        deadline = self._sent_at[0] + self._call_timeout_s
        if loop.time() >= deadline:
            # A Redis that does not answer one call answers none: start again on a new connection.
            self._drop(ConnectionError(f"Redis did not answer within {self._call_timeout_s:g}s"))
        else:
            self._watchdog = loop.call_at(deadline, self._watch)

    async def evalsha(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run ``script`` (loading it first if Redis does not have it)."""
        try:
            return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self.call("SCRIPT", "LOAD", script.source)
        return await self.call("EVALSHA", script.sha, len(keys), *keys, *args)

    async def evalsha_many(self, script: Script, calls: Sequence[tuple[Sequence[Arg], Sequence[Arg]]]) -> list[Any]:
        """The script over many (keys, args), pipelined; error replies are returned in place."""
        commands = [("EVALSHA", script.sha, len(keys), *keys, *args) for keys, args in calls]
        replies = await self.pipeline(commands)
        if any(isinstance(r, hiredis.ReplyError) and str(r).startswith("NOSCRIPT") for r in replies):
            await self.call("SCRIPT", "LOAD", script.source)
            replies = await self.pipeline(commands)
        return replies

    # ------------------------------------------------------------ the connection

    async def _send(self, data: bytes, replies: int) -> list[asyncio.Future[Any]]:
        if self._writer is None or self._writer.is_closing():
            await self._connect()
        writer = self._writer
        assert writer is not None
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in range(replies)]
        self._waiting.extend(futures)
        now = loop.time()
        self._sent_at.extend(now for _ in futures)
        if self._watchdog is None:
            self._watchdog = loop.call_at(now + self._call_timeout_s, self._watch)
        self._unsent.append(data)
        if self._flushing is None:
            self._flushing = loop.call_soon(self._flush, writer)
        return futures

    def _flush(self, writer: asyncio.StreamWriter) -> None:
        """Write every command of this loop iteration in one go: many concurrent requests admitted
        together cost one system call (and one wake-up of Redis) instead of one each."""
        self._flushing = None
        unsent, self._unsent = self._unsent, []
        if writer is not self._writer or not unsent:
            return  # the connection was dropped meanwhile: _drop failed these calls already
        # no drain: the reply is what we wait for; Redis reads as fast as we write
        writer.write(unsent[0] if len(unsent) == 1 else b"".join(unsent))

    async def _connect(self) -> None:
        if self._closed:
            raise ConnectionError("the Redis client is closed")
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return
            if self._writer is not None:
                # Closed under us (the server went away) before the reader noticed: the calls
                # written or queued on it get no reply there, and must not wait for one here.
                self._drop(ConnectionError("the connection to Redis was closed"))
            context = ssl.create_default_context() if self._tls else None
            async with asyncio.timeout(self._connect_timeout_s):
                reader, writer = await asyncio.open_connection(self._host, self._port, ssl=context)
            self._writer = writer
            self._reader_task = asyncio.ensure_future(self._read(reader, writer))
            handshake: list[Sequence[Arg]] = []
            if self._password is not None:
                handshake.append(("AUTH", self._username, self._password) if self._username else ("AUTH", self._password))
            if self._db:
                handshake.append(("SELECT", self._db))
            if handshake:
                for reply in await self.pipeline(handshake):
                    if isinstance(reply, hiredis.ReplyError):
                        self._drop(ConnectionError(f"Redis refused the connection set-up: {reply}"))
                        raise ConnectionError(f"Redis refused the connection set-up: {reply}")

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        waiting, sent_at = self._waiting, self._sent_at
        error: BaseException = ConnectionError("the connection to Redis was closed")
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    if waiting:
                        future = waiting.popleft()
                        sent_at.popleft()
                        if not future.done():
                            future.set_result(reply)
        except asyncio.CancelledError:
            error = ConnectionError("the Redis client is closing")
            raise
        except Exception as exc:  # noqa: BLE001 - every waiter learns the connection is gone
            error = ConnectionError(f"the connection to Redis failed: {exc}")
        finally:
            if self._writer is writer:
                self._drop(error)

    def _drop(self, error: BaseException) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self._unsent.clear()  # never written: they must not reach the next connection
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        self._sent_at.clear()
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    async def ping(self) -> bool:
        try:
            return await self.call("PING") in (b"PONG", "PONG")
        except Exception:  # noqa: BLE001 - a probe answers yes or no
            return False

    async def aclose(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        task = self._reader_task
        self._drop(ConnectionError("the Redis client is closed"))
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
